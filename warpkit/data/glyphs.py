"""An offline stand-in for Omniglot: "glyph alphabets" drawn from fonts, 20 synthetic drawers per character.

For machines without the Omniglot files. Each alphabet is the letters of one script (Latin capitals, Greek,
Cyrillic, Armenian, Georgian, Hebrew, N'Ko, Tifinagh, Ogham, Old Italic, Braille a–z, Lao, Lisu, Arabic), taken
from the DejaVu fonts that ship with matplotlib, plus further scripts (Devanagari, Thai, Ethiopic, Cherokee, Runic,
...) when the system has Noto fonts that cover them. The result is an :class:`~warpkit.data.omniglot.AlphabetDataset`
with ``source="glyphs"``: the same layout and API as Omniglot (``images(alphabet)`` → ``[chars, 20, 1, 28, 28]``,
ink = 1), deterministic from a seed, cached like Omniglot.

How a character is "drawn" by one drawer
----------------------------------------
Lengths are given in *Omniglot pixels* (of a 105×105 image); the work is done on a canvas of twice the output
size (56 px for 28), at most 105 px.

1. **Render** the letter with a font face (a script may have several faces, e.g. DejaVu Sans, Serif, Oblique,
   Serif Italic; each drawer picks one) with one scale per alphabet, so the letters keep their relative sizes
   (the largest spans 74 of 105 px), each letter centred horizontally on its ink, the baseline shared.
2. **Skeletonise** the filled glyph (Zhang–Suen thinning, keeping dots that thinning would delete; for dot
   scripts such as Braille: erode the glyph by 2 px instead) and take the distance to that core, D(x) (a 3×3
   chamfer distance, exact along the axes and diagonals). A pen of radius r inks where D(x) ≤ r: the letter
   "written" with a pen of constant width, as Omniglot's drawers did, instead of a font's filled outline.
3. **Distort** per drawer: an affine map (rotation ~ N(0, 8°) clipped at ±20°, shear ±0.15, scales 0.85–1.15 per
   axis, shift ±0.06 of the half-width) plus a smooth elastic displacement (4×4 Gaussian control grid,
   σ = 0.035 of the half-width, upsampled bicubically), applied to D with ``grid_sample``; a pen radius
   r ~ U(2.0, 3.2) px (Omniglot's strokes are ≈ 5 px wide); and *noise*: a smooth random field (σ = 0.45 px,
   12×12 control grid) added to r, so the stroke's edge wobbles.
4. **Threshold** (binary, like Omniglot) and shrink to ``image_size`` by the same exact area averaging as the
   real data (from twice the size that is 2×2 average pooling).

Missing glyphs: a code point is used only if the face's ``cmap`` (read with fontTools, a matplotlib dependency)
maps it; a rendering equal to the font's ``.notdef`` box, an empty rendering, or a duplicate of another letter of
the same alphabet is dropped. Alphabets keep at most ``max_characters`` letters (55, Omniglot's largest) and need
at least ``min_characters`` (20, so 20-way tasks work).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import unicodedata
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from warpkit.kit.notebook import progress

from warpkit.data.omniglot import (
    AlphabetDataset,
    _pack,
    _unpack,
    area_resize,
    default_cache_dir,
    save_npz_atomic,
    to_uint8,
)

GLYPH_VERSION = 4  # bump when the drawing changes: old caches are then ignored
CANVAS = 105  # Omniglot's resolution: lengths below are in these pixels ("Omniglot pixels")
GLYPH_BOX = 74 / 105  # the largest letter of an alphabet spans this fraction of the canvas
PEN_RADIUS = (2.0, 3.2)  # Omniglot pixels; Omniglot's strokes are about 5 px wide (area / skeleton length)
PEN_WOBBLE = 0.45  # Omniglot pixels, std of the smooth noise added to the pen radius


@dataclass(frozen=True)
class Script:
    """One glyph alphabet: a name, the candidate code points in order, and what the pen traces: ``"skeleton"``
    (strokes: the glyph's centre line) or ``"eroded"`` (dots, as in Braille: the glyph shrunk by 2 px, so a dot
    stays a dot of about its printed size instead of shrinking to the pen's)."""

    name: str
    codepoints: tuple[int, ...]
    pen_core: str = "skeleton"


def _letters(first: int, last: int, step: int = 1) -> tuple[int, ...]:
    """Code points in [first, last] that are letters (Unicode categories Lu, Ll, Lo; not modifier letters such as
    the Arabic tatweel)."""
    return tuple(c for c in range(first, last + 1, step) if unicodedata.category(chr(c)) in ("Lu", "Ll", "Lo"))


# English Braille a–z as dot numbers (dot k sets bit k−1 of U+2800 + pattern); Braille cells are symbols (So)
_BRAILLE_DOTS = ("1", "12", "14", "145", "15", "124", "1245", "125", "24", "245", "13", "123", "134", "1345",
                 "135", "1234", "12345", "1235", "234", "2345", "136", "1236", "2456", "1346", "13456", "1356")
BRAILLE_LETTERS = tuple(0x2800 + sum(1 << (int(d) - 1) for d in dots) for dots in _BRAILLE_DOTS)

#: scripts DejaVu Sans covers (the always-available stand-in)
DEJAVU_SCRIPTS = (
    Script("Latin", _letters(0x41, 0x5A)),
    Script("Greek", _letters(0x391, 0x3A9)),
    Script("Cyrillic", (0x401,) + _letters(0x410, 0x42F)),
    Script("Armenian", _letters(0x531, 0x556)),
    Script("Georgian", _letters(0x10D0, 0x10F0)),
    Script("Hebrew", _letters(0x5D0, 0x5EA)),
    Script("NKo", _letters(0x7CA, 0x7EA)),
    Script("Tifinagh", _letters(0x2D30, 0x2D67)),
    Script("Ogham", _letters(0x1681, 0x169A)),
    Script("Old_Italic", _letters(0x10300, 0x1031F)),
    Script("Braille", BRAILLE_LETTERS, pen_core="eroded"),
    Script("Lao", _letters(0xE81, 0xEAE)),
    Script("Lisu", _letters(0xA4D0, 0xA4F7)),
    Script("Arabic", _letters(0x627, 0x64A)),
)

#: scripts used when a system font (Noto) covers them
EXTRA_SCRIPTS = (
    Script("Devanagari", _letters(0x915, 0x939)),
    Script("Bengali", _letters(0x995, 0x9B9)),
    Script("Gurmukhi", _letters(0xA15, 0xA39)),
    Script("Gujarati", _letters(0xA95, 0xAB9)),
    Script("Tamil", _letters(0xB85, 0xBB9)),
    Script("Telugu", _letters(0xC15, 0xC39)),
    Script("Kannada", _letters(0xC95, 0xCB9)),
    Script("Malayalam", _letters(0xD15, 0xD39)),
    Script("Sinhala", _letters(0xD9A, 0xDC6)),
    Script("Thai", _letters(0xE01, 0xE2E)),
    Script("Tibetan", _letters(0xF40, 0xF6C)),
    Script("Myanmar", _letters(0x1000, 0x1020)),
    Script("Ethiopic", _letters(0x1200, 0x1357, step=8)),
    Script("Cherokee", _letters(0x13A0, 0x13F4)),
    Script("Runic", _letters(0x16A0, 0x16EA)),
    Script("Mongolian", _letters(0x1820, 0x1842)),
    Script("Thaana", _letters(0x780, 0x7A5)),
    Script("Syriac", _letters(0x710, 0x72F)),
    Script("Samaritan", _letters(0x800, 0x815)),
    Script("Glagolitic", _letters(0x2C00, 0x2C2E)),
    Script("Coptic", _letters(0x2C80, 0x2CB0, step=2)),
    Script("Javanese", _letters(0xA984, 0xA9B2)),
    Script("Balinese", _letters(0x1B05, 0x1B33)),
    Script("Ol_Chiki", _letters(0x1C5A, 0x1C77)),
    Script("Gothic", _letters(0x10330, 0x1034A)),
    Script("Deseret", _letters(0x10400, 0x10427)),
    Script("Phoenician", _letters(0x10900, 0x10915)),
    Script("Old_Turkic", _letters(0x10C00, 0x10C48)),
    Script("Hangul_Jamo", _letters(0x3131, 0x314E)),
    Script("Hiragana", _letters(0x3041, 0x3093)),
)


# ------------------------------------------------------------------------------------------------------ fonts
@dataclass
class FontFace:
    """A font file and the code points its cmap maps."""

    path: Path
    codepoints: frozenset = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.stem

    def covers(self, codepoints: Iterable[int]) -> bool:
        return all(c in self.codepoints for c in codepoints)


def _read_face(path: str | os.PathLike) -> FontFace | None:
    """The face's cmap (None when the file cannot be read); memoised per (path, size, mtime)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _read_face_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _read_face_cached(path: str, size: int, mtime_ns: int) -> FontFace | None:
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(str(path), lazy=True, fontNumber=0)
        cmap = font.getBestCmap() or {}
        font.close()
    except Exception:  # an unreadable system font is simply not used
        return None
    return FontFace(Path(path), frozenset(cmap))


def dejavu_font_paths() -> list[Path]:
    """matplotlib's bundled DejaVu faces used for drawing: Sans first (it covers the most scripts)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif-Italic.ttf")
    return [folder / n for n in names if (folder / n).is_file()]


def system_noto_font_paths() -> list[Path]:
    """Regular-weight Noto fonts installed on this system (none is fine)."""
    from matplotlib import font_manager

    paths = []
    for path in font_manager.findSystemFonts():
        stem = Path(path).stem
        if stem.startswith("Noto") and "Regular" in stem and Path(path).suffix.lower() in (".ttf", ".otf", ".ttc"):
            paths.append(Path(path))
    return sorted(set(paths))


def _faces_for(script: Script, faces: Sequence[FontFace], min_characters: int, max_characters: int):
    """The first face covering at least ``min_characters`` of the script decides the letters; every face that
    covers all those letters becomes a drawing style. Returns ``(letters, styles)`` or ``None``."""
    for primary in faces:
        letters = [c for c in script.codepoints if c in primary.codepoints][:max_characters]
        if len(letters) >= min_characters:
            styles = [f for f in faces if f.covers(letters)]
            return letters, styles
    return None


# -------------------------------------------------------------------------------------------------- rendering
def _render_alphabet(letters: Sequence[int], face: FontFace, canvas: int = CANVAS, box: float = GLYPH_BOX):
    """Filled glyphs ``[n, canvas, canvas]`` (bool) with one scale for the whole alphabet, and the ``.notdef``
    rendering at the same placement rule (to recognise a missing glyph)."""
    from PIL import Image, ImageDraw, ImageFont

    probe_size = 100
    probe = ImageFont.truetype(str(face.path), probe_size)
    boxes = [probe.getbbox(chr(c), anchor="ls") for c in letters]
    width = max(b[2] - b[0] for b in boxes)
    top, bottom = min(b[1] for b in boxes), max(b[3] for b in boxes)
    scale = box * canvas / max(width, bottom - top, 1)
    font = ImageFont.truetype(str(face.path), max(int(round(probe_size * scale)), 4))
    sized = [font.getbbox(chr(c), anchor="ls") for c in letters]
    top, bottom = min(b[1] for b in sized), max(b[3] for b in sized)
    baseline = canvas / 2 - (top + bottom) / 2

    def draw(text: str, bbox) -> np.ndarray:
        image = Image.new("L", (canvas, canvas), 0)
        x = canvas / 2 - (bbox[0] + bbox[2]) / 2
        ImageDraw.Draw(image).text((x, baseline), text, font=font, fill=255, anchor="ls")
        return np.asarray(image) >= 128

    glyphs = np.stack([draw(chr(c), b) for c, b in zip(letters, sized)])
    missing = chr(0x10FFFD)  # a private-use code point no font maps: renders as .notdef
    notdef = draw(missing, font.getbbox(missing, anchor="ls"))
    return glyphs, notdef


def _zhang_suen_tables() -> np.ndarray:
    """For each 8-neighbourhood code (bit i = neighbour P_{i+2}, clockwise from north) and each of the two
    sub-iterations: may the centre pixel be removed? (Zhang & Suen, CACM 1984.)"""
    tables = np.zeros((2, 256), dtype=bool)
    for code in range(256):
        p2, p3, p4, p5, p6, p7, p8, p9 = ((code >> i) & 1 for i in range(8))
        ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
        neighbours = sum(ring[:8])
        transitions = sum(1 for i in range(8) if ring[i] == 0 and ring[i + 1] == 1)
        base = 2 <= neighbours <= 6 and transitions == 1
        tables[0, code] = base and p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        tables[1, code] = base and p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return tables


_ZS_TABLES = _zhang_suen_tables()


def skeletonize(images: np.ndarray) -> np.ndarray:
    """Zhang–Suen thinning of a batch of binary images ``[n, H, W]`` to one-pixel-wide skeletons (bool)."""
    image = np.pad(np.asarray(images, dtype=np.uint8), ((0, 0), (1, 1), (1, 1)))
    active = np.arange(len(image))
    while len(active):
        changed = np.zeros(len(active), dtype=bool)
        for sub in (0, 1):
            x = image[active]
            code = (x[:, :-2, 1:-1] | (x[:, :-2, 2:] << 1) | (x[:, 1:-1, 2:] << 2) | (x[:, 2:, 2:] << 3)
                    | (x[:, 2:, 1:-1] << 4) | (x[:, 2:, :-2] << 5) | (x[:, 1:-1, :-2] << 6) | (x[:, :-2, :-2] << 7))
            remove = _ZS_TABLES[sub][code] & (x[:, 1:-1, 1:-1] == 1)
            changed |= remove.reshape(len(active), -1).any(axis=1)
            x[:, 1:-1, 1:-1][remove] = 0
            image[active] = x
        active = active[changed]
    return image[:, 1:-1, 1:-1].astype(bool)


def pen_core(filled: np.ndarray, reach: int) -> torch.Tensor:
    """What the pen traces for filled glyphs ``[n, H, W]``: their Zhang–Suen skeleton, plus every part of a glyph
    not within ``reach`` steps (inside the glyph) of that skeleton. Thinning deletes small blobs entirely (a 2×2
    square has no skeleton), so without this the dots of ب, ت, ث or ï would vanish.
    Returns ``[n, 1, H, W]`` bool."""
    skeleton = torch.from_numpy(skeletonize(filled)).unsqueeze(1)
    inside = torch.from_numpy(np.ascontiguousarray(filled)).unsqueeze(1)
    reached = skeleton.float()
    for _ in range(reach):  # geodesic dilation of the skeleton within the glyph
        reached = F.max_pool2d(reached, 3, stride=1, padding=1) * inside
    return skeleton | (inside & (reached == 0))


def chamfer_distance(mask: torch.Tensor, max_distance: float = 8.0) -> torch.Tensor:
    """Distance from every pixel to the nearest ``True`` pixel of ``mask`` ``[n, 1, H, W]``, by the 3×3 chamfer
    metric (steps 1 and √2; exact along axes and diagonals, ≤ 8 % high in between), clipped at ``max_distance``."""
    far = float(max_distance)
    distance = torch.where(mask, torch.zeros((), dtype=torch.float32), torch.full((), far))
    diagonal = 2.0 ** 0.5
    for _ in range(int(np.ceil(max_distance))):
        padded = F.pad(distance, (1, 1, 1, 1), value=far)
        h, w = distance.shape[-2:]
        best = distance
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                step = diagonal if dy and dx else 1.0
                neighbour = padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] + step
                best = torch.minimum(best, neighbour)
        distance = best.clamp_(max=far)
    return distance


def _upsampling_matrix(grid: int, size: int) -> torch.Tensor:
    """``[size, grid]`` matrix of bicubic interpolation (``align_corners=True``) from ``grid`` to ``size`` points;
    bicubic upsampling is separable, so ``A @ X @ Aᵀ`` equals ``F.interpolate(X, mode="bicubic")`` and is far
    faster on a CPU."""
    basis = torch.eye(grid).reshape(grid, 1, 1, grid)
    return F.interpolate(basis, size=(1, size), mode="bicubic", align_corners=True).reshape(grid, size).T


def _smooth_field(generator: torch.Generator, n: int, channels: int, grid: int, size: int, sigma: float):
    """Smooth Gaussian random fields ``[n, channels, size, size]``: a ``grid``×``grid`` control grid of N(0, σ²)
    values, upsampled bicubically."""
    coarse = torch.randn(n, channels, grid, grid, generator=generator) * sigma
    upsample = _upsampling_matrix(grid, size)
    return upsample @ coarse @ upsample.T


def draw_drawers(distance: torch.Tensor, style_index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Binary drawings ``[n, W, W]`` (bool) of ``n`` (character, drawer) pairs.

    ``distance[style_index[i]]`` is the pen-distance field D ``[W, W]`` (in pixels of that canvas) of the
    character in the drawer's style; the drawer applies its affine + elastic warp to D, then inks
    ``D ≤ r + noise`` (see the module docstring; r and the noise are given in Omniglot pixels and rescaled).
    """
    n = len(style_index)
    out_size = distance.shape[-1]
    pixel = out_size / CANVAS  # one Omniglot pixel in this canvas's pixels
    angle = torch.randn(n, generator=generator).mul(8.0).clamp(-20, 20).deg2rad()
    shear = (torch.rand(n, generator=generator) * 2 - 1) * 0.15
    scales = 0.85 + torch.rand(n, 2, generator=generator) * 0.30
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.06
    cos, sin = angle.cos(), angle.sin()
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shear_matrix = torch.eye(2).repeat(n, 1, 1)
    shear_matrix[:, 0, 1] = shear
    forward = rotation @ shear_matrix @ torch.diag_embed(scales)
    inverse = torch.linalg.inv(forward)  # the sampling grid maps output coordinates to input coordinates
    # pixel centres in [-1, 1] (align_corners=False), as F.affine_grid would make them, but as one einsum
    centres = (torch.arange(out_size, dtype=torch.float32) * 2 + 1) / out_size - 1
    xy = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)  # [S, S, 2] as (x, y)
    grid = torch.einsum("nij,hwj->nhwi", inverse, xy) - (inverse @ shift.unsqueeze(-1)).reshape(n, 1, 1, 2)
    grid = grid + _smooth_field(generator, n, 2, 4, out_size, 0.035).permute(0, 2, 3, 1)
    warped = F.grid_sample(distance[style_index], grid, mode="bilinear", padding_mode="border", align_corners=False)
    low, high = PEN_RADIUS
    radius = (low + torch.rand(n, 1, 1, 1, generator=generator) * (high - low)) * pixel
    wobble = _smooth_field(generator, n, 1, 12, out_size, PEN_WOBBLE * pixel)
    return (warped <= radius + wobble)[:, 0]


def _working_size(image_size: int) -> int:
    """The letters are rendered, thinned and drawn at twice the output size (then 2×2 area-averaged), at most at
    Omniglot's 105 px."""
    return min(2 * image_size, CANVAS)


def _area_downsample(binary: torch.Tensor, image_size: int) -> np.ndarray:
    """Binary ``[n, H, W]`` → ``uint8`` ink coverage ``[n, S, S]`` by exact area averaging (as for Omniglot; for
    H = 2S that is 2×2 average pooling)."""
    if binary.shape[-1] == 2 * image_size:
        coverage = F.avg_pool2d(binary.float().unsqueeze(1), 2)[:, 0].numpy()
    else:
        coverage = area_resize(binary.numpy().astype(np.float32), image_size)
    return to_uint8(coverage)


def _alphabet_seed(seed: int, name: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def draw_alphabet(script: Script, letters: Sequence[int], styles: Sequence[FontFace], seed: int,
                  n_drawers: int = 20, image_size: int = 28):
    """One glyph alphabet → ``(uint8 [chars, n_drawers, S, S], character names, style names)``.

    Letters whose rendering is empty, equals ``.notdef`` or duplicates an earlier letter (in the first style) are
    dropped, in every style.
    """
    rendered = []
    keep = np.ones(len(letters), dtype=bool)
    canvas = _working_size(image_size)
    for s, face in enumerate(styles):
        glyphs, notdef = _render_alphabet(letters, face, canvas)
        keep &= glyphs.reshape(len(glyphs), -1).any(axis=1)
        keep &= ~(glyphs == notdef).reshape(len(glyphs), -1).all(axis=1)
        if s == 0:
            seen = set()
            for i, glyph in enumerate(glyphs):
                digest = hashlib.md5(np.packbits(glyph).tobytes()).hexdigest()
                if digest in seen:
                    keep[i] = False
                seen.add(digest)
        rendered.append(glyphs)
    letters = [c for c, k in zip(letters, keep) if k]
    filled = np.stack([g[keep] for g in rendered], axis=1)  # [chars, styles, H, W]
    chars, n_styles = filled.shape[:2]
    canvas = filled.shape[-1]
    filled = filled.reshape(chars * n_styles, 1, canvas, canvas)
    if script.pen_core == "skeleton":
        core = pen_core(filled[:, 0], reach=max(int(np.ceil(8 * canvas / CANVAS)), 2))
    elif script.pen_core == "eroded":
        erosion = max(int(round(2 * canvas / CANVAS)), 1)  # 2 Omniglot pixels
        core = -F.max_pool2d(-torch.from_numpy(filled).float(), 2 * erosion + 1, stride=1, padding=erosion) > 0.5
    else:
        raise ValueError(f"Script {script.name!r}: pen_core must be 'skeleton' or 'eroded', got {script.pen_core!r}")
    reach = (PEN_RADIUS[1] + 3 * PEN_WOBBLE) / 0.85 * canvas / CANVAS + 1  # farthest distance a drawer can ink
    distance = chamfer_distance(core, max_distance=float(np.ceil(reach)))

    generator = torch.Generator().manual_seed(_alphabet_seed(seed, script.name))
    drawer_style = torch.randint(n_styles, (chars, n_drawers), generator=generator)
    style_index = (torch.arange(chars).unsqueeze(1) * n_styles + drawer_style).reshape(-1)
    drawings = draw_drawers(distance, style_index, generator)
    images = _area_downsample(drawings, image_size).reshape(chars, n_drawers, image_size, image_size)
    names = [f"{chr(c)} U+{c:04X}" for c in letters]
    return images, names, [f.name for f in styles]


# ---------------------------------------------------------------------------------------------------- loading
def load_glyphs(seed: int = 0, image_size: int = 28, n_drawers: int = 20, scripts: Sequence[Script] | None = None,
                fonts: Sequence[str | os.PathLike] | None = None, system_fonts: bool = True,
                min_characters: int = 20, max_characters: int = 55, cache_dir: str | os.PathLike | None = None,
                use_cache: bool = True, show_progress: bool = False) -> AlphabetDataset:
    """Build (or read from the cache) the glyph alphabets as an :class:`AlphabetDataset` with ``source="glyphs"``.

    ``fonts``: font files in priority order (default: matplotlib's DejaVu faces, then system Noto fonts when
    ``system_fonts``). ``scripts``: the candidate alphabets (default: DEJAVU_SCRIPTS + EXTRA_SCRIPTS); a script no
    font covers with ``min_characters`` letters is skipped. Same ``seed`` and fonts → the same images, bit for bit.
    """
    if not isinstance(image_size, int) or not 4 <= image_size <= CANVAS:
        raise ValueError(f"image_size must be an int between 4 and {CANVAS}, got {image_size!r}")
    if not isinstance(n_drawers, int) or n_drawers < 1:
        raise ValueError(f"n_drawers must be a positive int, got {n_drawers!r}")
    scripts = tuple(scripts) if scripts is not None else DEJAVU_SCRIPTS + EXTRA_SCRIPTS
    paths = [Path(p) for p in fonts] if fonts is not None else (
        dejavu_font_paths() + (system_noto_font_paths() if system_fonts else []))
    faces = [f for f in (_read_face(p) for p in paths) if f is not None]
    if not faces:
        raise FileNotFoundError(f"load_glyphs(): none of the font files could be read: {[str(p) for p in paths]}")

    plan = _glyph_plan(scripts, faces, min_characters, max_characters)
    path, meta_small = _cache_file(plan, seed, image_size, n_drawers, cache_dir)
    if use_cache and path.exists():
        try:
            arrays, names = _unpack(path, meta_small, image_size, n_drawers)
            origin = {s.name: "+".join(f.name for f in styles) for s, _, styles in plan if s.name in arrays}
            return AlphabetDataset(arrays, names, "glyphs", origin, _description(faces))
        except Exception as error:
            warnings.warn(f"glyph cache {path} is corrupt or stale ({type(error).__name__}: {error}); rebuilding it.",
                          RuntimeWarning, stacklevel=2)
    arrays, names, origin = _draw_plan(plan, seed, n_drawers, image_size, min_characters, show_progress)
    if use_cache:
        try:
            save_npz_atomic(path, **_pack(arrays, names, meta_small))
        except OSError as error:
            warnings.warn(f"could not write the glyph cache {path}: {error}", RuntimeWarning, stacklevel=2)
    return AlphabetDataset(arrays, names, "glyphs", origin, _description(faces))


def _glyph_plan(scripts, faces, min_characters: int, max_characters: int) -> list[tuple]:
    """``(script, letters, styles)`` for every script some font covers with ``min_characters`` letters."""
    plan = []
    for script in scripts:
        chosen = _faces_for(script, faces, min_characters, max_characters)
        if chosen is not None:
            plan.append((script, *chosen))
    if not plan:
        raise ValueError(f"load_glyphs(): no script has {min_characters} letters in the fonts "
                         f"{[f.name for f in faces]}")
    return plan


def _cache_file(plan, seed: int, image_size: int, n_drawers: int, cache_dir) -> tuple[Path, dict]:
    """The cache file for this plan (named by a hash of everything that changes the images) and the small
    metadata stored in it."""
    meta = {
        "kind": "glyphs", "version": GLYPH_VERSION, "seed": seed, "image_size": image_size, "drawers": n_drawers,
        "plan": [[s.name, s.pen_core, list(letters), [f"{f.name}:{f.path.stat().st_size}" for f in styles]]
                 for s, letters, styles in plan],
    }
    key = hashlib.md5(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache_dir / f"glyphs-{image_size}px-seed{seed}-v{GLYPH_VERSION}-{key[:16]}.npz", {"kind": "glyphs", "key": key}


def _draw_plan(plan, seed: int, n_drawers: int, image_size: int, min_characters: int, show_progress: bool):
    """Draw every planned alphabet; ``(arrays, names, origin)`` by script name."""
    arrays, names, origin = {}, {}, {}
    with _single_threaded():
        for script, letters, styles in progress(plan, show=show_progress, desc="drawing glyph alphabets"):
            images, characters, style_names = draw_alphabet(script, letters, styles, seed, n_drawers, image_size)
            if len(characters) < min_characters:
                continue
            arrays[script.name], names[script.name], origin[script.name] = images, characters, "+".join(style_names)
    return arrays, names, origin


@contextlib.contextmanager
def _single_threaded():
    """Draw with one intra-op thread, then restore the setting. The drawing is many small tensor operations, for
    which torch's thread pool costs more than it saves (on a busy 2-core machine: 8 s of CPU instead of 1.7 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _description(faces: Sequence[FontFace]) -> str:
    return "synthetic glyph alphabets drawn from the fonts " + ", ".join(f.name for f in faces)
