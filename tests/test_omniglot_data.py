"""Omniglot reader: counts and shapes on the real small subsets, preprocessing against a direct PIL reference,
the cache (hit, atomic write, corruption), the download path (file:// URL, md5 mismatch, interruption) and the
error messages (not found, md5, corrupt zip, too few characters). No test touches the network."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from warpkit.data import omniglot
from warpkit.data.omniglot import (
    OmniglotChecksumError,
    OmniglotCorruptError,
    OmniglotNotFoundError,
    TooFewCharactersError,
    download_file,
    download_omniglot,
    find_omniglot_sets,
    load_omniglot,
    search_locations,
)

REPO = Path(__file__).resolve().parents[1]
SMALL_COUNTS = {  # characters per alphabet in images_background_small1 + small2 (Latin, Greek in both)
    "Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26,
    "Sanskrit": 42, "Tagalog": 17,
}


def _real_data_dir() -> Path | None:
    candidates = []
    if os.environ.get("WARPKIT_DATA"):
        candidates.append(Path(os.environ["WARPKIT_DATA"]) / "omniglot")
    candidates.append(REPO.parent / "shared" / "data" / "omniglot")
    for folder in candidates:
        if all((folder / f"{s}.zip").is_file() for s in omniglot.SMALL_SETS):
            return folder
    return None


REAL = _real_data_dir()
needs_real = pytest.mark.skipif(
    REAL is None,
    reason="real Omniglot subsets not found: put images_background_small1.zip and images_background_small2.zip in "
           "$WARPKIT_DATA/omniglot or <repo>/../shared/data/omniglot",
)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def real_cold(tmp_path_factory):
    """Both small subsets loaded cold into a fresh cache: (dataset, seconds, cache_dir)."""
    if REAL is None:
        pytest.skip("real Omniglot subsets not found")
    cache = tmp_path_factory.mktemp("omniglot-cache")
    start = time.perf_counter()
    dataset = load_omniglot(REAL, sets=omniglot.SMALL_SETS, cache_dir=cache)
    return dataset, time.perf_counter() - start, cache


@pytest.fixture(scope="module")
def mini_zip(tmp_path_factory) -> Path:
    """A tiny Omniglot-layout zip cut from the real data: 2 alphabets × 3 characters × 20 drawers."""
    if REAL is None:
        pytest.skip("real Omniglot subsets not found")
    source = zipfile.ZipFile(REAL / "images_background_small1.zip")
    keep = [n for n in source.namelist() if n.endswith(".png")
            and n.split("/")[1] in ("Greek", "Latin") and n.split("/")[2] in ("character01", "character02",
                                                                                 "character03")]
    path = tmp_path_factory.mktemp("mini") / "images_background_small1.zip"
    with zipfile.ZipFile(path, "w") as out:
        for name in keep:
            out.writestr(name, source.read(name))
    assert len(keep) == 2 * 3 * 20
    return path


# --------------------------------------------------------------------------------------------- counts & shapes
@needs_real
def test_find_sets_lists_the_small_subsets():
    found = find_omniglot_sets(REAL)
    assert set(found) == set(omniglot.SMALL_SETS)
    assert all(s.kind == "zip" for s in found.values())


@needs_real
def test_counts_shapes_and_values(real_cold):
    dataset, _, _ = real_cold
    assert dataset.source == "omniglot"
    assert dataset.alphabets == sorted(SMALL_COUNTS)
    assert {a: dataset.num_characters(a) for a in dataset.alphabets} == SMALL_COUNTS
    assert dataset.total_characters == 242
    images = dataset.images("Korean")
    assert images.shape == (40, 20, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    # ink is the foreground: most pixels are background 0, the mean ink coverage is a few percent
    assert 0.02 < images.mean() < 0.15
    assert (images[..., 0, :, :].flatten(-2) > 0).any(-1).all(), "every image has ink"
    assert dataset.characters("Latin")[:3] == ["character01", "character02", "character03"]
    assert dataset.origin["Latin"] == "images_background_small1"
    assert dataset.origin["Sanskrit"] == "images_background_small2"


@needs_real
def test_preprocessing_matches_a_direct_float_reference(real_cold):
    """Decode one PNG by hand: ink = 1 − pixel, exact area average to 28×28 in float; must agree to 1/255."""
    dataset, _, _ = real_cold
    with zipfile.ZipFile(REAL / "images_background_small2.zip") as archive:
        names = sorted(n for n in archive.namelist() if "/Sanskrit/character05/" in n and n.endswith(".png"))
        png = archive.read(names[7])
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (105, 105)
        ink = 1.0 - np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    # exact area averaging, computed another way: upsample 4× (nearest), then each output pixel is a 15×15 block
    fine = np.kron(ink, np.ones((4, 4), dtype=np.float32))  # 420 × 420; 420 / 28 = 15
    reference = fine.reshape(28, 15, 28, 15).mean(axis=(1, 3))
    ours = dataset.images("Sanskrit")[4, 7, 0].numpy()
    assert np.abs(ours - reference).max() <= 0.5 / 255 + 1e-6, "equal up to the uint8 rounding"
    assert np.isclose(ours.mean(), ink.mean(), atol=2e-3), "area averaging preserves the ink fraction"


@needs_real
def test_image_size_option(tmp_path, mini_zip):
    dataset = load_omniglot(mini_zip.parent, sets="images_background_small1", image_size=105, cache_dir=tmp_path)
    images = dataset.images("Greek")
    assert images.shape == (3, 20, 1, 105, 105)
    assert set(torch.unique(images).tolist()) == {0.0, 1.0}, "at 105 px the images stay binary"
    with pytest.raises(ValueError, match="image_size"):
        load_omniglot(mini_zip.parent, image_size=200, cache_dir=tmp_path)


@needs_real
def test_unpacked_folder_equals_zip(tmp_path, mini_zip):
    root = tmp_path / "unpacked"
    with zipfile.ZipFile(mini_zip) as archive:
        archive.extractall(root)
    assert find_omniglot_sets(root)["images_background_small1"].kind == "folder"
    from_folder = load_omniglot(root, sets="images_background_small1", cache_dir=tmp_path / "c1")
    from_zip = load_omniglot(mini_zip.parent, sets="images_background_small1", cache_dir=tmp_path / "c2")
    for alphabet in ("Greek", "Latin"):
        assert np.array_equal(from_folder.array(alphabet), from_zip.array(alphabet))


# ---------------------------------------------------------------------------------------------------- caching
@needs_real
def test_second_load_hits_the_cache(real_cold, monkeypatch):
    dataset, cold_seconds, cache = real_cold
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and all(f.endswith(".npz") for f in files), files

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(omniglot, "_read_set", no_decoding)
    start = time.perf_counter()
    again = load_omniglot(REAL, sets=omniglot.SMALL_SETS, cache_dir=cache)
    warm_seconds = time.perf_counter() - start
    assert warm_seconds < cold_seconds / 4, (warm_seconds, cold_seconds)
    assert sorted(p.name for p in cache.iterdir()) == files, "a cache hit writes nothing"
    for alphabet in dataset.alphabets:
        assert np.array_equal(again.array(alphabet), dataset.array(alphabet))


@needs_real
def test_corrupt_cache_is_detected_and_rebuilt(tmp_path, mini_zip):
    first = load_omniglot(mini_zip.parent, sets="images_background_small1", cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.npz")
    _, _, hit = omniglot.load_set(find_omniglot_sets(mini_zip.parent)["images_background_small1"], 28, tmp_path)
    assert hit
    cache_file.write_bytes(cache_file.read_bytes()[: cache_file.stat().st_size // 2])  # a torn write
    with pytest.warns(RuntimeWarning, match="corrupt or stale"):
        rebuilt = load_omniglot(mini_zip.parent, sets="images_background_small1", cache_dir=tmp_path)
    assert np.array_equal(rebuilt.array("Latin"), first.array("Latin"))
    _, _, hit = omniglot.load_set(find_omniglot_sets(mini_zip.parent)["images_background_small1"], 28, tmp_path)
    assert hit, "the rebuilt cache reads back"
    assert not list(tmp_path.glob("*.tmp")), "no temporary file is left behind"


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "cache.npz"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        omniglot.save_npz_atomic(target, images=np.zeros(3))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ download
def test_download_file_checks_md5_and_renames(tmp_path):
    payload = b"omniglot" * 5000
    source = tmp_path / "served.zip"
    source.write_bytes(payload)
    target = tmp_path / "out" / "images_background.zip"
    path = download_file(source.as_uri(), target, hashlib.md5(payload).hexdigest(), show_progress=False)
    assert path == target and target.read_bytes() == payload
    assert sorted(p.name for p in target.parent.iterdir()) == ["images_background.zip"]


def test_download_md5_mismatch_deletes_the_temporary_file(tmp_path):
    source = tmp_path / "served.zip"
    source.write_bytes(b"not the real file")
    target = tmp_path / "out" / "images_background.zip"
    with pytest.raises(OmniglotChecksumError, match="md5 mismatch") as error:
        download_file(source.as_uri(), target, "0" * 32, show_progress=False)
    assert "expected 00000000" in str(error.value)
    assert list(target.parent.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path):
    class Broken:
        headers = {"Content-Length": "100"}

        def __init__(self):
            self.calls = 0

        def read(self, size):
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("connection dropped")
            return b"x" * 10

        def close(self):
            pass

    target = tmp_path / "out" / "images_evaluation.zip"
    with pytest.raises(ConnectionResetError):
        download_file("https://example.invalid/x.zip", target, None, show_progress=False, opener=lambda url: Broken())
    assert list(target.parent.iterdir()) == []


def test_unreachable_url_gives_a_clear_error(tmp_path):
    target = tmp_path / "out" / "images_background.zip"
    with pytest.raises(omniglot.OmniglotError, match="could not download") as error:
        download_file((tmp_path / "nowhere.zip").as_uri(), target, None, show_progress=False)
    assert str(target) in str(error.value) and list(target.parent.iterdir()) == []


@needs_real
def test_load_with_download_from_a_local_url(tmp_path, mini_zip, monkeypatch):
    """download=True end to end, the canonical URL and md5 swapped for a file:// URL to a local zip."""
    monkeypatch.setitem(omniglot.OMNIGLOT_URLS, "images_background", mini_zip.as_uri())
    monkeypatch.setitem(omniglot.OMNIGLOT_MD5, "images_background", _md5(mini_zip))
    root = tmp_path / "data"
    with pytest.raises(OmniglotNotFoundError):
        load_omniglot(root, sets="images_background", cache_dir=tmp_path / "cache")
    dataset = load_omniglot(root, sets="images_background", download=True, cache_dir=tmp_path / "cache")
    assert (root / "images_background.zip").is_file()
    assert dataset.alphabets == ["Greek", "Latin"] and dataset.num_characters("Greek") == 3
    # already there with the right md5: download_omniglot does not fetch again
    monkeypatch.setitem(omniglot.OMNIGLOT_URLS, "images_background", (tmp_path / "missing.zip").as_uri())
    assert download_omniglot(["images_background"], root=root, show_progress=False)["images_background"].is_file()


def test_download_rejects_sets_without_a_url(tmp_path):
    with pytest.raises(ValueError, match="no download location"):
        download_omniglot(["images_background_small1"], root=tmp_path)


# -------------------------------------------------------------------------------------------------- errors
def test_not_found_names_every_place_and_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WARPKIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(OmniglotNotFoundError) as error:
        load_omniglot(sets=("images_evaluation",), cache_dir=tmp_path / "cache")
    message = str(error.value)
    places = search_locations(None)
    assert places[0] == tmp_path / "env" / "omniglot" and places[1] == tmp_path / "xdg" / "warpkit" / "omniglot"
    for place in places:
        assert str(place) in message
    assert "images_evaluation.zip" in message and "download=True" in message
    assert "characterNN/<id>_<drawer>.png" in message
    assert isinstance(error.value, FileNotFoundError)


def test_not_found_with_an_explicit_root_looks_only_there(tmp_path):
    with pytest.raises(OmniglotNotFoundError) as error:
        load_omniglot(tmp_path, sets="images_background_small2", cache_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and str(tmp_path / "omniglot") in message
    assert "shared" not in message
    assert str(tmp_path / "images_background_small2.zip") in message


@needs_real
def test_md5_mismatch_of_a_local_canonical_zip(tmp_path, mini_zip):
    root = tmp_path / "data"
    root.mkdir()
    (root / "images_background.zip").write_bytes(mini_zip.read_bytes())
    with pytest.raises(OmniglotChecksumError) as error:
        load_omniglot(root, sets="images_background", cache_dir=tmp_path / "cache")
    assert omniglot.OMNIGLOT_MD5["images_background"] in str(error.value) and "check_md5=False" in str(error.value)
    dataset = load_omniglot(root, sets="images_background", cache_dir=tmp_path / "cache", check_md5=False)
    assert dataset.alphabets == ["Greek", "Latin"]


@needs_real
def test_truncated_zip_gives_a_clear_error(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    real = (REAL / "images_background_small1.zip").read_bytes()
    broken = root / "images_background_small1.zip"
    broken.write_bytes(real[: len(real) // 2])
    with pytest.raises(OmniglotCorruptError) as error:
        load_omniglot(root, sets="images_background_small1", cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert str(broken) in message and "not a readable zip" in message and "truncated" in message
    assert not list((tmp_path / "cache").glob("*.npz")) if (tmp_path / "cache").exists() else True


@needs_real
def test_damaged_member_gives_a_clear_error(tmp_path, mini_zip):
    root = tmp_path / "data"
    root.mkdir()
    data = bytearray(mini_zip.read_bytes())
    with zipfile.ZipFile(mini_zip) as archive:
        info = archive.infolist()[5]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # first byte of that member's data
    for offset in range(start + 40, start + 60):
        data[offset] ^= 0xFF
    (root / "images_background_small1.zip").write_bytes(bytes(data))
    with pytest.raises(OmniglotCorruptError, match="images_background_small1.zip"):
        load_omniglot(root, sets="images_background_small1", cache_dir=tmp_path / "cache")


@needs_real
def test_too_few_characters_names_alphabet_count_and_ways(real_cold):
    dataset, _, _ = real_cold
    with pytest.raises(TooFewCharactersError) as error:
        dataset.require_ways("Tagalog", 20)
    message = str(error.value)
    assert "'Tagalog'" in message and "17 characters" in message and "20-way" in message
    dataset.require_ways("Tagalog", 17)  # exactly enough is fine
    with pytest.raises(KeyError, match="no alphabet 'Klingon'"):
        dataset.images("Klingon")


def test_unknown_set_name(tmp_path):
    with pytest.raises(ValueError, match="unknown Omniglot set"):
        load_omniglot(tmp_path, sets="images_background_large")


def test_area_resize_preserves_ink_and_constant_images():
    rng = np.random.default_rng(0)
    image = (rng.random((2, 105, 105)) < 0.2).astype(np.float32)
    for size in (28, 13, 105):
        resized = omniglot.area_resize(image, size)
        assert resized.shape == (2, size, size)
        assert np.allclose(resized.mean(axis=(1, 2)), image.mean(axis=(1, 2)), atol=1e-5), "total ink is kept"
    assert np.allclose(omniglot.area_resize(np.ones((1, 105, 105), np.float32), 28), 1.0, atol=1e-6)
    assert np.allclose(omniglot.area_weights(105, 28).sum(1), 1.0, atol=1e-6)
