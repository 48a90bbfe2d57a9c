"""The glyph stand-in: the default alphabets (counts, layout, API parity with Omniglot), glyph coverage (no
.notdef boxes, no duplicates, missing code points dropped), font fall-through, determinism and the cache."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from warpkit.data import glyphs
from warpkit.data.glyphs import DEJAVU_SCRIPTS, Script, dejavu_font_paths, load_glyphs

SCRIPTS = {s.name: s for s in DEJAVU_SCRIPTS}
EXPECTED_DEJAVU = {"Arabic", "Armenian", "Braille", "Cyrillic", "Georgian", "Greek", "Hebrew", "Lao", "Latin",
                   "Lisu", "NKo", "Ogham", "Old_Italic", "Tifinagh"}


@pytest.fixture(scope="module")
def default_glyphs(tmp_path_factory):
    """The default DejaVu alphabets (no system fonts, so the test does not depend on the machine)."""
    cache = tmp_path_factory.mktemp("glyph-cache")
    start = time.perf_counter()
    dataset = load_glyphs(seed=0, system_fonts=False, cache_dir=cache)
    return dataset, time.perf_counter() - start, cache


def test_default_alphabets_counts_and_layout(default_glyphs):
    dataset, _, _ = default_glyphs
    assert dataset.source == "glyphs"
    assert set(dataset.alphabets) == EXPECTED_DEJAVU
    assert dataset.alphabets == sorted(dataset.alphabets)
    counts = {a: dataset.num_characters(a) for a in dataset.alphabets}
    assert all(20 <= c <= 55 for c in counts.values()), counts
    assert counts["Latin"] == 26 and counts["Greek"] == 24 and counts["Braille"] == 26 and counts["Ogham"] == 26
    images = dataset.images("Greek")
    assert images.shape == (24, 20, 1, 28, 28) and images.dtype == torch.float32
    assert 0 <= float(images.min()) and float(images.max()) == 1.0
    assert 0.02 < float(images.mean()) < 0.2, "ink is a thin foreground, as in Omniglot"
    every = torch.cat([dataset.images(a).flatten(0, 1) for a in dataset.alphabets])
    assert ((every.flatten(1) > 0.25).sum(-1) >= 3).all(), "every drawing has visible ink"
    assert dataset.characters("Latin")[0] == "A U+0041"
    assert "\u0640" not in "".join(dataset.characters("Arabic")), "the tatweel is not a letter"


def test_no_missing_glyph_boxes_and_no_duplicates(default_glyphs):
    """Within an alphabet, every character differs from every other (a .notdef box would repeat) and from the
    font's .notdef rendering."""
    dataset, _, _ = default_glyphs
    for alphabet in dataset.alphabets:
        mean_drawing = dataset.images(alphabet).mean(1).flatten(1)  # [chars, pixels]
        distances = torch.cdist(mean_drawing, mean_drawing)
        distances.fill_diagonal_(float("inf"))
        assert float(distances.min()) > 0.5, f"{alphabet}: two characters look identical"
    face = glyphs._read_face(dejavu_font_paths()[0])
    for name in ("Tifinagh", "NKo", "Old_Italic"):
        letters = [c for c in SCRIPTS[name].codepoints if c in face.codepoints]
        filled, notdef = glyphs._render_alphabet(letters, face)
        assert not (filled == notdef).reshape(len(filled), -1).all(1).any()


def test_missing_code_points_are_dropped():
    """A code point the font does not map renders as .notdef: the cmap filter drops it, and so does the
    rendering check when the cmap is bypassed."""
    face = glyphs._read_face(dejavu_font_paths()[0])
    missing = [0x10FFFD, 0xE000]  # private use: no font maps these
    assert not any(c in face.codepoints for c in missing)
    script = Script("Mixed", tuple(range(0x41, 0x41 + 20)) + tuple(missing))
    letters, styles = glyphs._faces_for(script, [face], 20, 55)
    assert letters == list(range(0x41, 0x41 + 20))
    images, names, _ = glyphs.draw_alphabet(script, list(range(0x41, 0x41 + 20)) + missing, [face], seed=0,
                                            n_drawers=2)
    assert len(names) == 20 and not any("U+10FFFD" in n or "U+E000" in n for n in names)
    assert images.shape == (20, 2, 28, 28)


def test_duplicate_renderings_are_dropped():
    face = glyphs._read_face(dejavu_font_paths()[0])
    latin_a, cyrillic_a = 0x41, 0x410  # the same drawing in DejaVu Sans
    script = Script("Twins", (latin_a, cyrillic_a) + tuple(range(0x42, 0x42 + 20)))
    _, names, _ = glyphs.draw_alphabet(script, list(script.codepoints), [face], seed=0, n_drawers=1)
    assert len(names) == 21 and "А U+0410" not in names


def test_font_fall_through_and_styles():
    """DejaVu Serif has no Hebrew: the first font that covers the script is used; Latin gets several styles."""
    folder = dejavu_font_paths()[0].parent
    fonts = [folder / "DejaVuSerif.ttf", folder / "DejaVuSans.ttf"]
    dataset = load_glyphs(scripts=[SCRIPTS["Hebrew"], SCRIPTS["Latin"]], fonts=fonts, n_drawers=3, use_cache=False)
    assert dataset.origin == {"Hebrew": "DejaVuSans", "Latin": "DejaVuSerif+DejaVuSans"}
    assert dataset.n_drawers == 3
    with pytest.raises(ValueError, match="no script has 20 letters"):
        load_glyphs(scripts=[SCRIPTS["Hebrew"]], fonts=[folder / "DejaVuSerif.ttf"], use_cache=False)


def test_deterministic_from_the_seed():
    few = [SCRIPTS["Ogham"], SCRIPTS["NKo"]]
    first = load_glyphs(seed=3, scripts=few, system_fonts=False, n_drawers=5, use_cache=False)
    second = load_glyphs(seed=3, scripts=few, system_fonts=False, n_drawers=5, use_cache=False)
    other = load_glyphs(seed=4, scripts=few, system_fonts=False, n_drawers=5, use_cache=False)
    for alphabet in ("Ogham", "NKo"):
        assert np.array_equal(first.array(alphabet), second.array(alphabet))
        assert not np.array_equal(first.array(alphabet), other.array(alphabet))
    # an alphabet's drawings do not depend on which other alphabets are drawn
    alone = load_glyphs(seed=3, scripts=[SCRIPTS["NKo"]], system_fonts=False, n_drawers=5, use_cache=False)
    assert np.array_equal(alone.array("NKo"), first.array("NKo"))


def test_drawers_differ_but_stay_close(default_glyphs):
    """The 20 drawers of a character are different drawings, yet closer to each other than to other letters."""
    images = default_glyphs[0].images("Latin")[:, :, 0].flatten(2)  # [26, 20, 784]
    assert all(not torch.equal(images[c, 0], images[c, d]) for c in range(26) for d in range(1, 20))
    centroids = images.mean(1)
    nearest = torch.cdist(images.reshape(-1, 784), centroids).argmin(1).reshape(26, 20)
    accuracy = (nearest == torch.arange(26).unsqueeze(1)).float().mean()
    assert accuracy > 0.7, f"nearest-centroid accuracy {accuracy:.2f}: the drawers distort too much"


def test_cache_hit_and_corruption(default_glyphs, monkeypatch):
    dataset, cold_seconds, cache = default_glyphs
    (cache_file,) = cache.glob("glyphs-*.npz")

    def no_drawing(*args, **kwargs):
        raise AssertionError("the cache was not used")

    with monkeypatch.context() as patch:
        patch.setattr(glyphs, "draw_alphabet", no_drawing)
        start = time.perf_counter()
        again = load_glyphs(seed=0, system_fonts=False, cache_dir=cache)
        assert time.perf_counter() - start < cold_seconds / 3
    assert np.array_equal(again.array("Tifinagh"), dataset.array("Tifinagh"))

    assert again.origin == dataset.origin
    cache_file.write_bytes(b"PK\x03\x04 torn")
    few = load_glyphs  # the rebuild draws everything again; use a small cache of its own for speed
    small_cache = cache / "small"
    first = few(seed=0, scripts=[SCRIPTS["Ogham"]], system_fonts=False, n_drawers=4, cache_dir=small_cache)
    (small_file,) = small_cache.glob("glyphs-*.npz")
    few(seed=0, scripts=[SCRIPTS["Ogham"]], system_fonts=False, n_drawers=3, cache_dir=small_cache, use_cache=False)
    assert list(small_cache.iterdir()) == [small_file], "use_cache=False writes nothing"
    small_file.write_bytes(small_file.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="corrupt or stale"):
        rebuilt = few(seed=0, scripts=[SCRIPTS["Ogham"]], system_fonts=False, n_drawers=4, cache_dir=small_cache)
    assert np.array_equal(rebuilt.array("Ogham"), first.array("Ogham"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        load_glyphs(image_size=0, use_cache=False)
    with pytest.raises(ValueError, match="n_drawers"):
        load_glyphs(n_drawers=0, use_cache=False)


def test_chamfer_distance_against_exact_distances():
    mask = torch.zeros(1, 1, 21, 21, dtype=torch.bool)
    mask[0, 0, 10, 10] = True
    distance = glyphs.chamfer_distance(mask, max_distance=6.0)[0, 0]
    assert distance[10, 13] == pytest.approx(3.0) and distance[13, 13] == pytest.approx(3 * 2 ** 0.5)
    assert distance[10, 0] == pytest.approx(6.0), "clipped at max_distance"
    rows, cols = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    exact = ((rows - 10) ** 2 + (cols - 10) ** 2).sqrt()
    near = exact <= 5
    assert ((distance[near] - exact[near]) / exact[near].clamp(min=1)).max() <= 0.09
    assert (distance[near] >= exact[near] - 1e-5).all()


def test_skeleton_of_a_bar_is_one_pixel_wide():
    bar = np.zeros((1, 30, 30), dtype=bool)
    bar[0, 10:17, 3:27] = True  # a 7-pixel-thick horizontal bar
    skeleton = glyphs.skeletonize(bar)[0]
    columns = skeleton[:, 8:22]
    assert (columns.sum(0) == 1).all(), "one pixel per column in the middle of the bar"
    assert set(np.nonzero(columns)[0].tolist()) <= {12, 13, 14}


def test_thinning_keeps_dots():
    """Zhang–Suen deletes a 2×2 blob entirely; the pen core keeps it (the dots of Arabic letters)."""
    image = np.zeros((1, 20, 20), dtype=bool)
    image[0, 4:8, 2:18] = True  # a thick bar
    image[0, 12:14, 9:11] = True  # a 2×2 dot
    assert not glyphs.skeletonize(image)[0, 12:14, 9:11].any(), "thinning alone loses the dot"
    core = glyphs.pen_core(image, reach=3)[0, 0].numpy()
    assert core[12:14, 9:11].all()
    assert core[4:8].sum() == glyphs.skeletonize(image)[0, 4:8].sum(), "the bar is still only its skeleton"
