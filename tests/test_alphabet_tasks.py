"""Alphabet tasks: the Task protocol, labels and drawer splits against the dataset, balanced epochs, seeded
batches, the affine augmentation against exact references (identity, 90° turns, whole-pixel shifts), the
alphabet split (test alphabets fixed across n), the task sampler, and the real small Omniglot subsets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from warpkit.data import alphabet_tasks, glyphs
from warpkit.data.alphabet_tasks import (
    AlphabetTask,
    AlphabetTaskSampler,
    eligible_alphabets,
    load_alphabet_dataset,
    split_alphabets,
)
from warpkit.data.augment import (
    IDENTITY_AUGMENTATION,
    OMNIGLOT_AUGMENTATION,
    RandomAffine,
    affine_matrices,
    apply_affine,
    random_affine,
    sampling_grid,
)
from warpkit.data.omniglot import AlphabetDataset, OmniglotNotFoundError, TooFewCharactersError, load_omniglot
from warpkit.engine.tasks import Task

REPO = Path(__file__).resolve().parents[1]


def synthetic_dataset(counts: dict[str, int], seed: int = 0) -> AlphabetDataset:
    """Random sparse 'drawings' with a known layout: uint8 [chars, 20, 28, 28]."""
    rng = np.random.default_rng(seed)
    arrays = {name: (rng.random((n, 20, 28, 28)) < 0.1).astype(np.uint8) * 255 for name, n in counts.items()}
    names = {name: [f"c{i:02d}" for i in range(n)] for name, n in counts.items()}
    return AlphabetDataset(arrays, names, "synthetic")


@pytest.fixture(scope="module")
def small():
    return synthetic_dataset({"Alpha": 25, "Beta": 30, "Gamma": 20, "Delta": 40, "Tiny": 12})


def _real_dir() -> Path | None:
    for folder in ([Path(os.environ["WARPKIT_DATA"]) / "omniglot"] if os.environ.get("WARPKIT_DATA") else []) + [
            REPO.parent / "shared" / "data" / "omniglot"]:
        if (folder / "images_background_small2.zip").is_file():
            return folder
    return None


REAL = _real_dir()


# ---------------------------------------------------------------------------------------------------- tasks
def test_task_follows_the_protocol(small):
    task = AlphabetTask(small, "Beta", seed=1)
    assert isinstance(task, Task)
    inputs, targets = task.sample_batch(0)
    assert inputs.shape == (20, 1, 28, 28) and inputs.dtype == torch.float32
    assert targets.shape == (20,) and targets.dtype == torch.int64
    (a_in, a_t), (b_in, b_t) = task.sample_meta_batches(0)
    assert a_in.shape == b_in.shape == (20, 1, 28, 28) and a_t.shape == b_t.shape == (20,)
    test_inputs, test_targets = task.evaluation_batch()
    assert test_inputs.shape == (100, 1, 28, 28) and test_targets.shape == (100,)
    assert task.train_inputs.shape == (300, 1, 28, 28)
    assert all(t.device.type == "cpu" for t in (inputs, targets, test_inputs, task.train_inputs))


def test_labels_and_drawers_match_the_dataset(small):
    task = AlphabetTask(small, "Delta", ways=20, n_train=15, seed=7)
    images = small.images("Delta")
    assert len(set(task.characters.tolist())) == 20
    train, test = set(task.train_drawers.tolist()), set(task.test_drawers.tolist())
    assert len(train) == 15 and len(test) == 5 and train | test == set(range(20))
    for label in range(20):
        character = int(task.characters[label])
        expected_train = images[character, task.train_drawers]
        assert torch.equal(task.train_inputs[task.train_targets == label], expected_train)
        assert torch.equal(task.test_inputs[task.test_targets == label], images[character, task.test_drawers])
    assert torch.bincount(task.train_targets).tolist() == [15] * 20
    assert torch.bincount(task.evaluation_batch()[1]).tolist() == [5] * 20


def test_labels_are_a_random_permutation(small):
    chosen = [AlphabetTask(small, "Delta", seed=s).characters.tolist() for s in range(6)]
    assert len({tuple(c) for c in chosen}) == 6, "different seeds choose differently"
    assert any(c != sorted(c) for c in chosen), "labels are not assigned in alphabet order"
    assert AlphabetTask(small, "Delta", seed=3).characters.tolist() == chosen[3]


def test_epochs_visit_every_training_image_equally(small):
    task = AlphabetTask(small, "Alpha", seed=2, augmentation=None)
    epoch = torch.cat([task.batch_indices(step) for step in range(15)])  # 300 images / batch 20
    assert sorted(epoch.tolist()) == list(range(300))
    labels = torch.cat([task.sample_batch(step)[1] for step in range(15)])
    assert torch.bincount(labels).tolist() == [15] * 20, "labels balanced over an epoch"
    odd = AlphabetTask(small, "Alpha", seed=2, batch_size=32, augmentation=None)
    seen = torch.cat([odd.batch_indices(step) for step in range(75)])  # 2400 = 8 epochs, batches straddle them
    assert torch.bincount(seen, minlength=300).tolist() == [8] * 300
    inputs, targets = odd.sample_batch(9)
    assert torch.equal(inputs, odd.train_inputs[odd.batch_indices(9)]), "no augmentation when switched off"


def test_batches_are_seeded_and_fresh(small):
    task = AlphabetTask(small, "Beta", seed=5)
    twin = AlphabetTask(small, "Beta", seed=5)
    x3, y3 = task.sample_batch(3)
    assert torch.equal(task.sample_batch(3)[0], x3), "a step's batch is the same whenever it is asked for"
    assert torch.equal(twin.sample_batch(3)[0], x3) and torch.equal(twin.sample_batch(3)[1], y3)
    assert not torch.equal(task.sample_batch(4)[0], x3)
    first = task.sample_meta_batches(3)
    assert torch.equal(twin.sample_meta_batches(3)[0][0], first[0][0]), "seeded"
    assert not torch.equal(first[0][0], first[1][0]), "the two meta batches are different draws"
    assert not torch.equal(first[0][0], x3), "and differ from the inner loop's batch"
    second = task.sample_meta_batches(3)
    assert not torch.equal(second[0][0], first[0][0]), "asking again gives a fresh pair"
    other = AlphabetTask(small, "Beta", seed=6)
    assert not torch.equal(other.sample_batch(3)[0], x3)
    assert torch.equal(task.evaluation_batch()[0], twin.evaluation_batch()[0])


def test_task_argument_errors(small):
    with pytest.raises(TooFewCharactersError) as error:
        AlphabetTask(small, "Tiny", ways=20)
    assert "'Tiny'" in str(error.value) and "12 characters" in str(error.value) and "20-way" in str(error.value)
    AlphabetTask(small, "Tiny", ways=12)
    with pytest.raises(ValueError, match="n_train"):
        AlphabetTask(small, "Beta", n_train=20)
    with pytest.raises(ValueError, match="batch_size"):
        AlphabetTask(small, "Beta", batch_size=301)


# ---------------------------------------------------------------------------------------------- augmentation
def test_identity_parameters_reproduce_the_input():
    images = torch.rand(6, 1, 28, 28)
    assert torch.allclose(IDENTITY_AUGMENTATION(images, torch.Generator().manual_seed(0)), images, atol=1e-5)
    theta = affine_matrices(torch.zeros(6), torch.zeros(6, 2), torch.ones(6))
    assert torch.allclose(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(6, 2, 3))


def test_sampling_grid_equals_affine_grid():
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    reference = torch.nn.functional.affine_grid(theta, [5, 1, 28, 20], align_corners=False)
    assert torch.allclose(sampling_grid(theta, 28, 20), reference, atol=1e-6)


def test_quarter_turns_and_pixel_shifts_are_exact():
    images = torch.rand(3, 1, 28, 28)
    turned = apply_affine(images, affine_matrices(torch.full((3,), 90.0), torch.zeros(3, 2), torch.ones(3)))
    assert torch.allclose(turned, torch.rot90(images, 1, dims=(2, 3)), atol=1e-5), "90° counter-clockwise"
    shift = torch.tensor([[3 / 28, -2 / 28]]).expand(3, 2)  # 3 px right, 2 px up
    moved = apply_affine(images, affine_matrices(torch.zeros(3), shift, torch.ones(3)))
    expected = torch.zeros_like(images)
    expected[..., :-2, 3:] = images[..., 2:, :-3]
    assert torch.allclose(moved, expected, atol=1e-5), "content moves; what comes in is background"


def test_scaling_about_the_centre():
    image = torch.zeros(1, 1, 28, 28)
    image[..., 12:16, 12:16] = 1.0  # a centred 4×4 square
    grown = apply_affine(image, affine_matrices(torch.zeros(1), torch.zeros(1, 2), torch.tensor([1.2])))
    assert grown.sum() == pytest.approx(16 * 1.2 ** 2, rel=0.03), "area grows by s² (bilinear: nearly)"
    rows = torch.arange(28.0).reshape(28, 1)
    assert (grown[0, 0] * rows).sum() / grown.sum() == pytest.approx(13.5, abs=1e-4), "about the centre"


def test_random_affine_is_seeded_and_in_range():
    images = torch.rand(64, 1, 28, 28)
    a = OMNIGLOT_AUGMENTATION(images, torch.Generator().manual_seed(1))
    b = OMNIGLOT_AUGMENTATION(images, torch.Generator().manual_seed(1))
    c = OMNIGLOT_AUGMENTATION(images, torch.Generator().manual_seed(2))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(random_affine(images, torch.Generator().manual_seed(1)), a)
    theta = OMNIGLOT_AUGMENTATION.sample(4000, torch.Generator().manual_seed(0))
    forward = torch.linalg.inv(theta[:, :, :2])
    scales = forward.det().sqrt()
    assert 0.8 - 1e-4 <= scales.min() and scales.max() <= 1.2 + 1e-4
    angles = torch.rad2deg(torch.atan2(-forward[:, 0, 1], forward[:, 0, 0])) % 360
    assert angles.min() < 10 and angles.max() > 350, "rotations cover the circle"
    shifts = (forward @ -theta[:, :, 2:]).squeeze(-1) / 2  # back to fractions of the image size
    assert shifts.abs().max() <= 0.2 + 1e-5 and shifts.abs().max() > 0.19
    with pytest.raises(ValueError):
        RandomAffine(scale=(1.2, 0.8))


def test_task_augmentation_changes_images_but_keeps_ink(small):
    task = AlphabetTask(small, "Gamma", seed=0, augmentation=OMNIGLOT_AUGMENTATION)
    inputs, _ = task.sample_batch(0)
    raw = task.train_inputs[task.batch_indices(0)]
    assert not torch.allclose(inputs, raw)
    assert inputs.min() >= 0 and inputs.max() <= 1 + 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_tasks_on_cuda(small):
    cpu = AlphabetTask(small, "Beta", seed=4)
    gpu = AlphabetTask(small, "Beta", seed=4, device="cuda")
    x, y = gpu.sample_batch(2)
    assert x.device.type == "cuda" and y.device.type == "cuda" and gpu.evaluation_batch()[0].is_cuda
    assert torch.allclose(x.cpu(), cpu.sample_batch(2)[0], atol=1e-4), "the same augmentation on every device"


# -------------------------------------------------------------------------------------------------- splits
def test_test_alphabets_are_fixed_across_n():
    counts = {f"A{i:02d}": 20 + i for i in range(16)} | {"Small1": 5, "Small2": 19}
    dataset = synthetic_dataset(counts)
    eligible = eligible_alphabets(dataset, 20)
    assert "Small1" not in eligible and "Small2" not in eligible and len(eligible) == 16
    splits = [split_alphabets(dataset, n, ways=20, n_test=4, seed=0) for n in range(1, 13)]
    assert len({s.test for s in splits}) == 1, "the test alphabets do not move with n"
    for n, split in enumerate(splits, start=1):
        assert len(split.train) == n and len(split.test) == 4
        assert set(split.train).isdisjoint(split.test) and set(split.validation).isdisjoint(split.test)
        assert sorted(split.train + split.validation + split.test) == eligible
        assert split.train == splits[-1].train[:n], "training sets are nested as n grows"
    assert len({split_alphabets(dataset, 3, n_test=4, seed=s).test for s in range(5)}) > 1, "the seed matters"


def test_split_errors(small):
    with pytest.raises(ValueError, match="n_test=4 must be between 1 and 3"):
        split_alphabets(small, 1, n_test=4)
    with pytest.raises(ValueError, match="n_train=3 but only 2 alphabets remain"):
        split_alphabets(small, 3, n_test=2)


# ------------------------------------------------------------------------------------------------- sampler
def test_sampler_meta_batches(small):
    alphabets = ["Alpha", "Beta", "Gamma", "Delta"]
    sampler = AlphabetTaskSampler(small, alphabets, seed=3)
    tasks = sampler.sample_tasks(0, 20)
    assert sorted(t.alphabet for t in tasks) == sorted(alphabets * 5), "each alphabet equally often"
    assert len({t.seed for t in tasks}) == 20
    again = sampler.sample_tasks(0, 20)
    assert [t.alphabet for t in again] == [t.alphabet for t in tasks]
    assert torch.equal(again[7].sample_batch(1)[0], tasks[7].sample_batch(1)[0])
    later = sampler.sample_tasks(1, 20)
    assert [t.seed for t in later] != [t.seed for t in tasks]
    evaluation = sampler.evaluation_tasks(repeats=2)
    assert [t.alphabet for t in evaluation] == [a for a in alphabets for _ in range(2)]
    with pytest.raises(TooFewCharactersError, match="Tiny"):
        AlphabetTaskSampler(small, ["Alpha", "Tiny"])


# ---------------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(REAL is None, reason="real Omniglot subsets not found in $WARPKIT_DATA/omniglot or "
                                         "<repo>/../shared/data/omniglot")
def test_real_omniglot_tasks(tmp_path):
    dataset = load_omniglot(REAL, sets="images_background_small2", cache_dir=tmp_path)
    assert eligible_alphabets(dataset) == ["Greek", "Japanese_(katakana)", "Latin", "Sanskrit"]
    split = split_alphabets(dataset, 2, n_test=2, seed=0)
    assert split.test == split_alphabets(dataset, 1, n_test=2, seed=0).test
    sampler = AlphabetTaskSampler(dataset, split.train, seed=0)
    task = sampler.sample_tasks(0, 1)[0]
    inputs, targets = task.sample_batch(0)
    assert inputs.shape == (20, 1, 28, 28) and 0.02 < float(inputs.mean()) < 0.2
    held_out, labels = AlphabetTaskSampler(dataset, split.test).evaluation_tasks()[0].evaluation_batch()
    assert held_out.shape == (100, 1, 28, 28) and torch.bincount(labels).tolist() == [5] * 20
    with pytest.raises(TooFewCharactersError, match="'Tagalog' has 17 characters"):
        AlphabetTask(dataset, "Tagalog")
    assert load_alphabet_dataset("auto", root=REAL, sets="images_background_small2", cache_dir=tmp_path).source \
        == "omniglot"


def test_source_choice_never_mixes(tmp_path, monkeypatch):
    stand_in = synthetic_dataset({"Glyphy": 20})
    monkeypatch.setattr(alphabet_tasks, "load_glyphs", lambda **kwargs: stand_in)
    assert load_alphabet_dataset("auto", root=tmp_path, cache_dir=tmp_path) is stand_in
    assert load_alphabet_dataset("glyphs", root=REAL or tmp_path, cache_dir=tmp_path) is stand_in
    with pytest.raises(OmniglotNotFoundError):
        load_alphabet_dataset("omniglot", root=tmp_path, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="source must be"):
        load_alphabet_dataset("both")
    assert alphabet_tasks.derive_seed(1, "a") != alphabet_tasks.derive_seed(1, "b")
