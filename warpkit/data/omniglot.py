"""Omniglot (Lake et al., 2015): 1623 handwritten characters from 50 alphabets, 20 drawers each.

The canonical files (github.com/brendenlake/omniglot, ``python/``) are zips of 105×105 binary PNGs laid out as
``<set>/<Alphabet>/characterNN/<id>_<drawer>.png``:

==============================  ==========================================  =======================
set                             content                                     md5 of the zip
==============================  ==========================================  =======================
``images_background``           30 alphabets, 964 characters                68d2efa1b9178cc56df9314c21c6e718
``images_evaluation``           20 alphabets, 659 characters                6b91aef0f799c5bb55b94e3f2daec811
``images_background_small1``    5 alphabets (a subset of the background)    (not checked)
``images_background_small2``    5 alphabets (a subset of the background)    (not checked)
==============================  ==========================================  =======================

The two small subsets share Latin and Greek, so together they hold 8 distinct alphabets: the CI data.

Preprocessing (done once, then cached)
--------------------------------------
A PNG stores ink as black (``False``). We turn it into *ink = 1.0, paper = 0.0* and shrink the 105×105
bitmap to ``image_size``² (28 by default) by exact area averaging (:func:`area_resize`):

    x_out[i, j] = (1 / |A_ij|) ∫_{A_ij} ink(u, v) du dv  ∈ [0, 1],

the fraction of output pixel (i, j)'s footprint A_ij (a 3.75 × 3.75 square of source pixels) covered by ink;
no ringing, no values outside [0, 1], and the total ink is preserved. (PIL's ``BOX`` filter is close but not
this: it weighs whole source pixels by where their centres fall, off by up to 0.13 here.)
The arrays are cached as ``uint8`` (round(255 · coverage); resolution 1/255) in one ``.npz`` per set, named by
the set, the image size and a key made of the source's md5 (zip) or of its file listing with sizes and mtimes
(unpacked folder). A cache file is written to a temporary file and renamed into place, so an interrupted write
never leaves a half-written cache; a cache that does not read back (truncated, wrong key, wrong shapes) is
reported with a warning and rebuilt from the source.

Where the data is looked for (first hit wins, per set)
------------------------------------------------------
1. ``root`` when given (the folder itself, or ``root/omniglot``) -- and nowhere else;
2. ``$WARPKIT_DATA/omniglot``;
3. the user cache folder ``$XDG_CACHE_HOME/warpkit/omniglot`` (default ``~/.cache/warpkit/omniglot``), where
   ``download=True`` puts the zips;
4. ``<repository>/../shared/data/omniglot`` (the course machines' shared copy).

Each place may hold ``<set>.zip`` or the unpacked folder ``<set>/``; a folder wins over a zip.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from warpkit.kit.notebook import progress

OMNIGLOT_SETS = (
    "images_background",
    "images_evaluation",
    "images_background_small1",
    "images_background_small2",
)
FULL_SETS = ("images_background", "images_evaluation")
SMALL_SETS = ("images_background_small1", "images_background_small2")

#: canonical download locations (Brenden Lake's repository) and their md5
OMNIGLOT_URLS = {
    "images_background": "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
    "images_evaluation": "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
}
OMNIGLOT_MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}

DATA_ENV = "WARPKIT_DATA"
ORIGINAL_SIZE = 105
DRAWERS = 20
CACHE_VERSION = 2  # bump when the preprocessing changes: old caches are then ignored
REPO_ROOT = Path(__file__).resolve().parents[2]

_PNG_NAME = re.compile(r"^(\d+)_(\d+)\.png$")


# ----------------------------------------------------------------------------------------------------- errors
class OmniglotError(Exception):
    """Base class of every Omniglot data error."""


class OmniglotNotFoundError(OmniglotError, FileNotFoundError):
    """The requested sets are in none of the places searched."""


class OmniglotChecksumError(OmniglotError, ValueError):
    """A downloaded or local zip does not have the canonical md5."""


class OmniglotCorruptError(OmniglotError, ValueError):
    """A zip or folder cannot be read, or its layout is not Omniglot's."""


class TooFewCharactersError(OmniglotError, ValueError):
    """An alphabet has fewer characters than the ways a task asks for."""


# ------------------------------------------------------------------------------------------ the dataset object
class AlphabetDataset:
    """Characters grouped by alphabet, ``n_drawers`` images each: the layout Omniglot and the glyph stand-in share.

    ``arrays[alphabet]`` is a ``uint8`` array ``[n_characters, n_drawers, H, W]`` with ink = 255; the public
    accessors return float tensors in [0, 1] with ink = 1.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        character_names: Mapping[str, Sequence[str]],
        source: str,
        origin: Mapping[str, str] | None = None,
        description: str = "",
    ):
        if not arrays:
            raise ValueError("AlphabetDataset: no alphabets given")
        shapes = {a.shape[1:] for a in arrays.values()}
        if len(shapes) != 1:
            raise ValueError(f"AlphabetDataset: alphabets disagree on (drawers, H, W): {sorted(shapes)}")
        for name, array in arrays.items():
            if array.dtype != np.uint8 or array.ndim != 4:
                raise ValueError(f"AlphabetDataset: {name!r} must be uint8 [chars, drawers, H, W], got "
                                 f"{array.dtype} {array.shape}")
            if len(character_names[name]) != len(array):
                raise ValueError(f"AlphabetDataset: {name!r} has {len(array)} characters but "
                                 f"{len(character_names[name])} names")
        self._arrays = dict(sorted(arrays.items()))
        self._names = {k: list(character_names[k]) for k in self._arrays}
        self.source = source
        self.origin = dict(origin or {})  # alphabet -> where it came from (set name, font)
        self.description = description
        self.n_drawers, height, width = next(iter(shapes))
        if height != width:
            raise ValueError(f"AlphabetDataset: images must be square, got {height}×{width}")
        self.image_size = height

    # -- what is there
    @property
    def alphabets(self) -> list[str]:
        """Alphabet names, sorted."""
        return list(self._arrays)

    def num_characters(self, alphabet: str) -> int:
        return len(self._array(alphabet))

    def characters(self, alphabet: str) -> list[str]:
        """The names of the alphabet's characters, in the order of :meth:`images`."""
        self._array(alphabet)
        return list(self._names[alphabet])

    @property
    def total_characters(self) -> int:
        return sum(len(a) for a in self._arrays.values())

    def summary(self) -> dict:
        """Counts for a report: source, alphabets, characters, images, image size."""
        return {
            "source": self.source,
            "alphabets": len(self._arrays),
            "characters": self.total_characters,
            "images": self.total_characters * self.n_drawers,
            "image_size": self.image_size,
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (f"AlphabetDataset(source={s['source']!r}, {s['alphabets']} alphabets, {s['characters']} characters "
                f"× {self.n_drawers} drawers, {self.image_size}×{self.image_size})")

    # -- the data
    def _array(self, alphabet: str) -> np.ndarray:
        if alphabet not in self._arrays:
            raise KeyError(f"{self.source}: no alphabet {alphabet!r}; the alphabets are {self.alphabets}")
        return self._arrays[alphabet]

    def array(self, alphabet: str) -> np.ndarray:
        """The raw ``uint8`` array ``[n_chars, n_drawers, H, W]`` (ink = 255), not a copy: do not write to it."""
        return self._array(alphabet)

    def images(self, alphabet: str, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Float tensor ``[n_chars, n_drawers, 1, H, W]`` in [0, 1], ink = 1."""
        array = self._array(alphabet)
        tensor = torch.from_numpy(array).to(device=device, dtype=dtype).div_(255.0)
        return tensor.unsqueeze(2)

    def require_ways(self, alphabet: str, ways: int) -> None:
        """Raise :class:`TooFewCharactersError` unless ``alphabet`` has at least ``ways`` characters."""
        count = self.num_characters(alphabet)
        if count < ways:
            eligible = [a for a in self.alphabets if self.num_characters(a) >= ways]
            raise TooFewCharactersError(
                f"{self.source} alphabet {alphabet!r} has {count} characters, but a {ways}-way task needs "
                f"{ways} distinct characters. Use ways <= {count}, or one of the {len(eligible)} alphabets with "
                f">= {ways} characters: {eligible}"
            )

    def subset(self, alphabets: Iterable[str]) -> "AlphabetDataset":
        """A dataset holding only the given alphabets (shares the arrays)."""
        names = list(alphabets)
        return AlphabetDataset({a: self._array(a) for a in names}, {a: self._names[a] for a in names},
                               self.source, {a: self.origin.get(a, "") for a in names}, self.description)


# ------------------------------------------------------------------------------------------- where the data is
def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/warpkit`` or ``~/.cache/warpkit``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "warpkit"


def search_locations(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for Omniglot, in order (see the module docstring)."""
    if root is not None:
        root = Path(root).expanduser()
        return [root, root / "omniglot"]
    places = []
    if os.environ.get(DATA_ENV):
        places.append(Path(os.environ[DATA_ENV]).expanduser() / "omniglot")
    places.append(user_cache_dir() / "omniglot")
    places.append(REPO_ROOT.parent / "shared" / "data" / "omniglot")
    return places


@dataclass(frozen=True)
class OmniglotSource:
    """One set found on disk: ``kind`` is ``"zip"`` or ``"folder"``."""

    name: str
    path: Path
    kind: str


def _folder_has_pngs(folder: Path) -> bool:
    try:
        return any(folder.glob("*/*/*.png"))
    except OSError:
        return False


def find_omniglot_sets(root: str | os.PathLike | None = None,
                       sets: Iterable[str] = OMNIGLOT_SETS) -> dict[str, OmniglotSource]:
    """Which Omniglot sets are available, ``{set: OmniglotSource}``; each from the first place that has it."""
    found: dict[str, OmniglotSource] = {}
    for place in search_locations(root):
        for name in sets:
            if name in found:
                continue
            folder, archive = place / name, place / f"{name}.zip"
            if folder.is_dir() and _folder_has_pngs(folder):
                found[name] = OmniglotSource(name, folder, "folder")
            elif archive.is_file():
                found[name] = OmniglotSource(name, archive, "zip")
    return {name: found[name] for name in sets if name in found}


def _not_found_message(missing: Sequence[str], root, available: Mapping[str, OmniglotSource]) -> str:
    places = search_locations(root)
    lines = [f"Omniglot set(s) {list(missing)} not found. Looked in:"]
    if root is None and not os.environ.get(DATA_ENV):
        lines.append(f"  - ${DATA_ENV}/omniglot  (the environment variable {DATA_ENV} is not set)")
    for place in places:
        state = "exists" if place.is_dir() else "does not exist"
        lines.append(f"  - {place}  ({state})")
    lines.append("for each set either the zip <place>/<set>.zip or the unpacked folder "
                 "<place>/<set>/<Alphabet>/characterNN/<id>_<drawer>.png.")
    lines.append("To fix it, put the files in one of those places, e.g.")
    target = places[0] if root is not None else (user_cache_dir() / "omniglot")
    for name in missing:
        lines.append(f"  {target / (name + '.zip')}")
    downloadable = [m for m in missing if m in OMNIGLOT_URLS]
    if downloadable:
        lines.append(f"or pass download=True to fetch {downloadable} from github.com/brendenlake/omniglot "
                     "(python/), or set WARPKIT_DATA to a folder that holds omniglot/.")
    else:
        lines.append("or set WARPKIT_DATA to a folder that holds omniglot/ (the small subsets are not downloaded "
                     "by warpkit; the full sets are, with download=True).")
    if available:
        lines.append(f"Sets that were found: {sorted(available)}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- download
def md5_of_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, destination: str | os.PathLike, md5: str | None, show_progress: bool = True,
                  opener: Callable[[str], object] | None = None, chunk: int = 1 << 16) -> Path:
    """Download ``url`` to ``destination``: stream to a temporary file beside it (with a tqdm bar), check its md5,
    then rename into place. On an md5 mismatch, or any interruption, the temporary file is deleted and nothing
    is left at ``destination``.

    ``opener(url)`` returns a readable response (default :func:`urllib.request.urlopen`; ``file://`` URLs work).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    opener = opener or (lambda address: urllib.request.urlopen(address, timeout=60))
    handle, temporary = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
    digest = hashlib.md5()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                response = opener(url)
            except (urllib.error.URLError, OSError) as error:
                raise OmniglotError(
                    f"could not download {url}: {error}. Without a network connection, fetch the file elsewhere "
                    f"and put it at {destination}."
                ) from error
            try:
                headers = getattr(response, "headers", None)
                length = headers.get("Content-Length") if headers is not None else None
                total = int(length) if length else None
                with progress(total=total, unit="B", unit_scale=True, desc=destination.name,
                              show=show_progress) as bar:
                    for block in iter(lambda: response.read(chunk), b""):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
        got = digest.hexdigest()
        if md5 is not None and got != md5:
            raise OmniglotChecksumError(
                f"md5 mismatch for {url}: expected {md5}, got {got}. The download was deleted; nothing was "
                f"written to {destination}. Try again (a proxy or an interrupted transfer can truncate it), or "
                f"download the file by hand and put it at {destination}."
            )
        os.replace(temporary, destination)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return destination


def download_omniglot(sets: Iterable[str] = FULL_SETS, root: str | os.PathLike | None = None,
                      show_progress: bool = True, opener: Callable[[str], object] | None = None,
                      urls: Mapping[str, str] | None = None, checksums: Mapping[str, str] | None = None
                      ) -> dict[str, Path]:
    """Fetch the canonical Omniglot zips into ``root`` (default: the user cache folder), checking their md5.

    ``urls``/``checksums`` override the canonical ones (tests serve a local zip through a ``file://`` URL).
    Sets already present with the right md5 are not fetched again.
    """
    urls = {**OMNIGLOT_URLS, **(urls or {})}
    checksums = {**OMNIGLOT_MD5, **(checksums or {})}
    target = Path(root).expanduser() if root is not None else user_cache_dir() / "omniglot"
    paths = {}
    for name in sets:
        if name not in urls:
            raise ValueError(f"download_omniglot(): no download location for {name!r}; warpkit downloads "
                             f"{sorted(OMNIGLOT_URLS)}. Put {name}.zip in {target} by hand.")
        destination = target / f"{name}.zip"
        if destination.is_file() and md5_of_file(destination) == checksums.get(name):
            paths[name] = destination
            continue
        paths[name] = download_file(urls[name], destination, checksums.get(name), show_progress, opener)
    return paths


# --------------------------------------------------------------------------------------------- reading a set
def area_weights(source: int, target: int) -> np.ndarray:
    """``[target, source]`` matrix W of exact area averaging along one axis: output pixel i covers the source
    interval [i·r, (i+1)·r), r = source/target, and W[i, j] = |[j, j+1) ∩ [i·r, (i+1)·r)| / r (rows sum to 1)."""
    edges = np.arange(target + 1, dtype=np.float64) * source / target
    left, right = np.arange(source, dtype=np.float64), np.arange(1, source + 1, dtype=np.float64)
    overlap = np.minimum(edges[1:, None], right) - np.maximum(edges[:-1, None], left)
    return (np.clip(overlap, 0.0, None) * target / source).astype(np.float32)


def area_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Exact area averaging of float images ``[..., H, W]`` to ``[..., size, size]``: x_out = W_h · x · W_wᵀ."""
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images.astype(np.float32)
    return area_weights(height, size) @ images.astype(np.float32) @ area_weights(width, size).T


def to_uint8(coverage: np.ndarray) -> np.ndarray:
    """Ink coverage in [0, 1] → ``uint8`` 0..255 (rounded)."""
    return np.round(np.clip(coverage, 0.0, 1.0) * 255.0).astype(np.uint8)


def _decode_ink(png: bytes | Path, where: str) -> np.ndarray:
    """One Omniglot PNG → float32 ink image (ink = 1, paper = 0) at its own resolution (105²)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
            paper = np.asarray(image.convert("L"), dtype=np.uint8)
    except Exception as error:  # PIL raises many types for a damaged PNG
        raise OmniglotCorruptError(f"cannot decode the image {where}: {error}") from error
    return 1.0 - paper.astype(np.float32) / 255.0


def _group_members(members: Iterable[str], where: str) -> dict[str, dict[str, list[tuple[int, str]]]]:
    """``alphabet -> character -> [(drawer, member)]`` from the paths ending in
    ``<Alphabet>/<character>/<id>_<drawer>.png``."""
    grouped: dict[str, dict[str, list[tuple[int, str]]]] = {}
    for member in members:
        parts = PurePosixPath(member).parts
        if len(parts) < 3 or not parts[-1].endswith(".png") or parts[-1].startswith("."):
            continue
        match = _PNG_NAME.match(parts[-1])
        if match is None:
            raise OmniglotCorruptError(f"{where}: unexpected file name {member!r} (expected <id>_<drawer>.png)")
        grouped.setdefault(parts[-3], {}).setdefault(parts[-2], []).append((int(match.group(2)), member))
    if not grouped:
        raise OmniglotCorruptError(
            f"{where} holds no Omniglot images (expected <set>/<Alphabet>/characterNN/<id>_<drawer>.png)"
        )
    return grouped


def _character_sort_key(name: str):
    digits = re.findall(r"\d+", name)
    return (int(digits[-1]) if digits else -1, name)


def _read_set(source: OmniglotSource, image_size: int, show_progress: bool) -> tuple[dict, dict]:
    """Decode every image of a set → ``({alphabet: uint8 [chars, 20, S, S]}, {alphabet: [character names]})``."""
    archive = None
    try:
        if source.kind == "zip":
            try:
                archive = zipfile.ZipFile(source.path)
                members = archive.namelist()
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                raise OmniglotCorruptError(_corrupt_zip_message(source.path, error)) from error

            def read(member):
                try:
                    return archive.read(member)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
                    raise OmniglotCorruptError(_corrupt_zip_message(source.path, error, member)) from error
        else:
            members = [p.relative_to(source.path).as_posix() for p in source.path.rglob("*.png")]

            def read(member):
                return source.path / member

        grouped = _group_members(members, str(source.path))
        total = sum(len(v) for chars in grouped.values() for v in chars.values())
        arrays, names = {}, {}
        with progress(total=total, desc=f"decoding {source.name}", unit="img", show=show_progress) as bar:
            for alphabet in sorted(grouped):
                characters = sorted(grouped[alphabet], key=_character_sort_key)
                block = np.zeros((len(characters), DRAWERS, image_size, image_size), dtype=np.uint8)
                for c, character in enumerate(characters):
                    drawings = sorted(grouped[alphabet][character])
                    drawers = [d for d, _ in drawings]
                    if drawers != list(range(1, DRAWERS + 1)):
                        raise OmniglotCorruptError(
                            f"{source.path}: {alphabet}/{character} has drawers {drawers}, expected 1..{DRAWERS}"
                        )
                    ink = [_decode_ink(read(member), f"{source.path}::{member}") for _, member in drawings]
                    if any(i.shape != (ORIGINAL_SIZE, ORIGINAL_SIZE) for i in ink):
                        raise OmniglotCorruptError(f"{source.path}: {alphabet}/{character} has images of sizes "
                                                   f"{sorted({i.shape for i in ink})}, expected 105×105")
                    block[c] = to_uint8(area_resize(np.stack(ink), image_size))
                    bar.update(len(drawings))
                arrays[alphabet], names[alphabet] = block, characters
        return arrays, names
    finally:
        if archive is not None:
            archive.close()


def _corrupt_zip_message(path: Path, error: BaseException, member: str | None = None) -> str:
    inside = f" (reading {member})" if member else ""
    size = path.stat().st_size if path.exists() else 0
    hint = ""
    name = path.name[:-4] if path.name.endswith(".zip") else path.name
    if name in OMNIGLOT_URLS:
        hint = (f" or pass download=True to fetch it again from {OMNIGLOT_URLS[name]} (md5 {OMNIGLOT_MD5[name]})")
    return (f"{path} is not a readable zip{inside}: {error}. It is {size} bytes; a truncated or interrupted "
            f"download looks like this. Delete it and put a fresh copy there{hint}.")


# ---------------------------------------------------------------------------------------------------- caching
def default_cache_dir() -> Path:
    return user_cache_dir() / "arrays"


def _source_key(source: OmniglotSource) -> str:
    """Content key: the zip's md5, or a digest of the folder's listing (relative path, size, mtime)."""
    if source.kind == "zip":
        return "md5-" + md5_of_file(source.path)
    digest = hashlib.md5()
    for path in sorted(source.path.rglob("*.png")):
        stat = path.stat()
        digest.update(f"{path.relative_to(source.path).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return "listing-" + digest.hexdigest()


def cache_path(cache_dir: Path, set_name: str, image_size: int, key: str) -> Path:
    return Path(cache_dir) / f"omniglot-{set_name}-{image_size}px-v{CACHE_VERSION}-{key[:20]}.npz"


def save_npz_atomic(path: Path, **arrays) -> None:
    """``np.savez`` to a temporary file in the same folder, then ``os.replace`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _pack(arrays: dict, names: dict, meta: dict) -> dict:
    alphabets = sorted(arrays)
    return {
        "images": np.concatenate([arrays[a] for a in alphabets]),
        "alphabets": np.array(alphabets),
        "counts": np.array([len(arrays[a]) for a in alphabets], dtype=np.int64),
        "characters": np.array([n for a in alphabets for n in names[a]]),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }


def _unpack(path: Path, meta: dict, image_size: int, drawers: int = DRAWERS) -> tuple[dict, dict]:
    """Read a cache file back; raise ``ValueError`` describing what is wrong when it does not match."""
    with np.load(path, allow_pickle=False) as data:
        stored = json.loads(str(data["meta"]))
        if stored != meta:
            raise ValueError(f"its key {stored} differs from the expected {meta}")
        images, alphabets = data["images"], [str(a) for a in data["alphabets"]]
        counts, characters = data["counts"], [str(c) for c in data["characters"]]
    if images.dtype != np.uint8 or images.shape[1:] != (drawers, image_size, image_size):
        raise ValueError(f"images have dtype {images.dtype} and shape {images.shape}")
    if int(counts.sum()) != len(images) or len(characters) != len(images) or len(counts) != len(alphabets):
        raise ValueError("the alphabet counts do not add up to the number of characters")
    arrays, names, start = {}, {}, 0
    for alphabet, count in zip(alphabets, counts.tolist()):
        arrays[alphabet] = images[start:start + count]
        names[alphabet] = characters[start:start + count]
        start += count
    return arrays, names


def load_set(source: OmniglotSource, image_size: int = 28, cache_dir: str | os.PathLike | None = None,
             check_md5: bool = True, show_progress: bool = False) -> tuple[dict, dict, bool]:
    """Arrays of one set, from the cache when it holds them. Returns ``(arrays, names, from_cache)``."""
    key = _source_key(source)
    if check_md5 and source.kind == "zip" and source.name in OMNIGLOT_MD5 and key != "md5-" + OMNIGLOT_MD5[source.name]:
        raise OmniglotChecksumError(
            f"{source.path} has md5 {key[4:]}, but the canonical {source.name}.zip has {OMNIGLOT_MD5[source.name]}. "
            f"The file is damaged or not the official one: delete it and download it again (download=True), "
            f"or pass check_md5=False to use it anyway."
        )
    meta = {"set": source.name, "image_size": image_size, "key": key, "version": CACHE_VERSION,
            "resampling": "exact area average, ink=1, uint8=round(255 x)"}
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache_path(cache_dir, source.name, image_size, key)
    if path.exists():
        try:
            arrays, names = _unpack(path, meta, image_size)
            return arrays, names, True
        except Exception as error:  # a damaged cache is derived data: say so and rebuild it from the source
            warnings.warn(f"Omniglot cache {path} is corrupt or stale ({type(error).__name__}: {error}); "
                          f"rebuilding it from {source.path}.", RuntimeWarning, stacklevel=3)
    arrays, names = _read_set(source, image_size, show_progress)
    try:
        save_npz_atomic(path, **_pack(arrays, names, meta))
    except OSError as error:  # a read-only cache folder must not stop the lesson
        warnings.warn(f"could not write the Omniglot cache {path}: {error}; pass cache_dir= a writable folder.",
                      RuntimeWarning, stacklevel=3)
    return arrays, names, False


# --------------------------------------------------------------------------------------------------- loading
def _resolve_sets(sets, available: Mapping[str, OmniglotSource]) -> tuple[str, ...]:
    if sets == "auto" or sets is None:
        full = tuple(s for s in FULL_SETS if s in available)
        small = tuple(s for s in SMALL_SETS if s in available)
        return full or small or FULL_SETS
    if isinstance(sets, str):
        sets = (sets,)
    unknown = [s for s in sets if s not in OMNIGLOT_SETS]
    if unknown:
        raise ValueError(f"unknown Omniglot set(s) {unknown}; the sets are {list(OMNIGLOT_SETS)} (or 'auto')")
    return tuple(dict.fromkeys(sets))


def load_omniglot(root: str | os.PathLike | None = None, sets="auto", image_size: int = 28,
                  download: bool = False, cache_dir: str | os.PathLike | None = None, check_md5: bool = True,
                  show_progress: bool = False) -> AlphabetDataset:
    """Load Omniglot as an :class:`AlphabetDataset` (``source="omniglot"``).

    ``sets``: a set name, a tuple of them, or ``"auto"`` (the full background + evaluation sets where present,
    else the two small subsets). An alphabet present in several sets (Latin and Greek in both small subsets) is
    taken once; its copies must agree. ``download=True`` fetches missing canonical zips first (into ``root``, or
    the user cache folder). The arrays are cached in ``cache_dir`` (default ``~/.cache/warpkit/arrays``).
    """
    if not isinstance(image_size, int) or not 4 <= image_size <= ORIGINAL_SIZE:
        raise ValueError(f"image_size must be an int between 4 and {ORIGINAL_SIZE}, got {image_size!r}")
    available = find_omniglot_sets(root)
    wanted = _resolve_sets(sets, available)
    missing = [s for s in wanted if s not in available]
    if missing and download:
        fetchable = [s for s in missing if s in OMNIGLOT_URLS]
        if fetchable:
            download_omniglot(fetchable, root=Path(root) if root is not None else None, show_progress=show_progress)
        available = find_omniglot_sets(root)
        missing = [s for s in wanted if s not in available]
    if missing:
        raise OmniglotNotFoundError(_not_found_message(missing, root, available))

    arrays: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    origin: dict[str, str] = {}
    for name in wanted:
        set_arrays, set_names, _ = load_set(available[name], image_size, cache_dir, check_md5, show_progress)
        for alphabet, block in set_arrays.items():
            if alphabet in arrays:
                if arrays[alphabet].shape != block.shape or not np.array_equal(arrays[alphabet], block):
                    raise OmniglotCorruptError(
                        f"alphabet {alphabet!r} is in both {origin[alphabet]} and {name} with different images; "
                        "these sets cannot be combined"
                    )
                continue
            arrays[alphabet], names[alphabet], origin[alphabet] = block, set_names[alphabet], name
    description = ", ".join(f"{n} ({available[n].path})" for n in wanted)
    return AlphabetDataset(arrays, names, "omniglot", origin, description)
