"""A user's own data (issue 16): load_image, ClassificationTask, fit/predict with non-transductive BatchNorm,
save and load_learner, and the cache folder option of OmniglotExperiment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import warpkit
from warpkit.data import area_resize, load_image, load_omniglot, to_uint8
from warpkit.engine.persist import FORMAT_VERSION
from warpkit.models.omniglot_net import OmniglotNet
from warpkit.tasks import ClassificationTask

REPO = Path(__file__).resolve().parent.parent


def _write_png(path: Path, ink: np.ndarray, mode: str = "L") -> Path:
    """Save ink in [0, 1] (ink = 1) as dark strokes on white paper."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8)).convert(mode).save(path)
    return path


# ----------------------------------------------------------------------------------------------- load_image
def test_load_image_is_exactly_the_omniglot_preprocessing(tmp_path):
    """A tiny Omniglot-layout folder read by load_omniglot gives bit for bit what load_image gives per file."""
    rng = np.random.default_rng(0)
    character = tmp_path / "images_background_small1" / "Alpha" / "character01"
    for drawer in range(1, 21):
        _write_png(character / f"0001_{drawer:02d}.png", (rng.random((105, 105)) < 0.2).astype(np.float32), "1")
    dataset = load_omniglot(tmp_path, sets="images_background_small1", cache_dir=tmp_path / "cache")
    expected = dataset.images("Alpha")[0]  # [20, 1, 28, 28]
    got = torch.stack([load_image(character / f"0001_{d:02d}.png") for d in range(1, 21)])
    assert got.dtype == torch.float32 and got.shape == (20, 1, 28, 28)
    assert torch.equal(got, expected)


def test_load_image_sizes_transparency_padding_and_inversion(tmp_path):
    ink = np.zeros((40, 20), dtype=np.float32)
    ink[:, 5:10] = 1.0
    tall = _write_png(tmp_path / "tall.png", ink)
    image = load_image(tall, size=10)
    assert image.shape == (1, 10, 10)
    assert float(image[0, :, :2].sum()) == 0.0 and float(image[0, :, -2:].sum()) == 0.0  # padded with paper
    coverage = to_uint8(area_resize(np.pad(ink, ((0, 0), (10, 10))), 10)) / np.float32(255)
    assert torch.equal(image[0], torch.from_numpy(coverage.astype(np.float32)))
    # a transparent background is paper, not black ink
    rgba = np.zeros((12, 12, 4), dtype=np.uint8)
    rgba[4:8, 4:8] = (0, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    transparent = load_image(tmp_path / "alpha.png", size=12)[0]
    assert float(transparent[0, 0]) == 0.0 and float(transparent[5, 5]) == 1.0
    light_on_dark = _write_png(tmp_path / "light.png", 1 - ink)  # light strokes on a dark background
    assert torch.equal(load_image(light_on_dark, size=10, invert=True), image)  # padding is still paper


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "28", 5000])
def test_load_image_refuses_a_bad_size(tmp_path, size):
    path = _write_png(tmp_path / "a.png", np.zeros((5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="size must be an int between 1 and 1024"):
        load_image(path, size=size)


def test_load_image_names_a_missing_or_undecodable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file"):
        load_image(tmp_path / "nothing.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="cannot decode .*broken.png"):
        load_image(tmp_path / "broken.png")


# ---------------------------------------------------------------------------------------- ClassificationTask
def _task(ways=5, shots=1, queries=2, seed=0, **kwargs) -> ClassificationTask:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(ways, shots + queries, 1, 28, 28, generator=g)
    y = torch.arange(ways)
    return ClassificationTask(x[:, :shots].flatten(0, 1), y.repeat_interleave(shots), x[:, shots:].flatten(0, 1),
                              y.repeat_interleave(queries), seed=seed, **kwargs)


def test_classification_task_batches_are_deterministic_and_cover_the_support_set():
    task = _task(ways=4, shots=3, batch_size=5)
    assert (task.ways, task.shots, task.batch_size) == (4, 3, 5)
    first, again = task.sample_batch(0), task.sample_batch(0)
    assert torch.equal(first[0], again[0]) and first[0].shape == (5, 1, 28, 28)
    seen = torch.cat([task.sample_batch(s)[1] for s in range(12)])  # 60 = 5 passes over 12 examples
    assert torch.bincount(seen, minlength=4).tolist() == [15, 15, 15, 15]
    task_batch, meta_batch = task.sample_meta_batches(0)
    assert task_batch[0].shape == (5, 1, 28, 28) and meta_batch[0].shape == (5, 1, 28, 28)
    assert any(torch.equal(meta_batch[0][0], q) for q in task.query_x)  # the meta loss is on the query set
    assert torch.equal(task.evaluation_batch()[0], task.query_x)
    assert torch.equal(task.training_set()[0], task.support_x)


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=0), "batch_size must be None .* or an int between 1 and 5"),
    (dict(batch_size=6), "between 1 and 5"),
    (dict(support_y=torch.tensor([0, 1, 2, 3, 5])), "every label 0 … ways−1"),
    (dict(support_y=torch.tensor([0.0, 1, 2, 3, 4])), "integer labels"),
    (dict(support_y=torch.tensor([0, 1, 2])), "one label per example"),
    (dict(query_y=None), "both query_x and query_y"),
    (dict(query_x=torch.rand(10, 1, 14, 14)), "must match"),
    (dict(support_x=torch.full((5, 1, 28, 28), float("nan"))), "NaN or infinite"),
])
def test_classification_task_refuses_bad_input(change, message):
    base = _task()
    arguments = dict(support_x=base.support_x, support_y=base.support_y, query_x=base.query_x, query_y=base.query_y)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        ClassificationTask(**arguments)


def _write_class_folder(root: Path, ways: int, per_class: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(ways):
        for k in range(per_class):
            _write_png(root / f"class{c}" / f"img{k}.png", (rng.random((28, 28)) < 0.3).astype(np.float32))
    return root


def test_from_folder_takes_the_first_shots_in_name_order(tmp_path):
    root = _write_class_folder(tmp_path / "data", ways=3, per_class=12)
    (root / "class1" / "notes.txt").write_text("not an image")
    task = ClassificationTask.from_folder(root, shots=2, size=28)
    assert task.class_names == ["class0", "class1", "class2"]
    assert (task.ways, task.shots, len(task.support_x), len(task.query_x)) == (3, 2, 6, 30)
    # natural name order: img0, img1 are the shots (img10 does not sort before img2)
    assert torch.equal(task.support_x[2], load_image(root / "class1" / "img0.png"))
    assert torch.equal(task.support_x[3], load_image(root / "class1" / "img1.png"))
    assert torch.equal(task.query_x[10], load_image(root / "class1" / "img2.png"))


def test_from_folder_explains_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        ClassificationTask.from_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no sub-folders"):
        ClassificationTask.from_folder(tmp_path / "flat")
    root = _write_class_folder(tmp_path / "few", ways=2, per_class=1)
    with pytest.raises(ValueError, match="class 'class0' has 1 image.*shots=2"):
        ClassificationTask.from_folder(root, shots=2)
    with pytest.raises(ValueError, match="shots must be an int >= 1"):
        ClassificationTask.from_folder(root, shots=0)


def _small_learner(ways=5, network_warp="conv3", **kwargs) -> warpkit.MetaLearner:
    torch.manual_seed(0)
    options = dict(inner=warpkit.InnerLoop(lr=0.1, steps=3), warp=warpkit.WarpTraining(lr=0.05),
                   init=warpkit.InitTraining(warpkit.Leap(simplified=True)))
    options.update(kwargs)
    return warpkit.MetaLearner(OmniglotNet(ways=ways, filters=4, warp=network_warp), nn.functional.cross_entropy,
                               **options)


@pytest.mark.parametrize("init", ["leap", "maml"])
def test_every_meta_learner_trains_on_classification_tasks(init):
    options = {"leap": {}, "maml": dict(init=warpkit.InitTraining(warpkit.MAML(steps=1)), warp=None)}[init]
    learner = _small_learner(**options)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    stats = learner.meta_step([_task(seed=1), _task(seed=2)])
    assert stats.iteration == 1
    assert any(not torch.equal(before[n], p) for n, p in learner.model.named_parameters())


# -------------------------------------------------------------------------------------------- fit / predict
def test_fit_predict_works_for_one_image_and_is_not_transductive():
    learner = _small_learner()
    learner.meta_step([_task(seed=1)])
    task = _task(seed=3)
    weights = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    trajectory = learner.fit(task)
    together = learner.predict(trajectory, task.query_x)
    one_by_one = torch.cat([learner.predict(trajectory, task.query_x[i:i + 1]) for i in range(len(task.query_x))])
    assert together.shape == (10,) and torch.equal(together, one_by_one)
    assert torch.equal(learner.fit_predict(task, task.query_x[:1]), together[:1])
    logits = learner.predict(trajectory, task.query_x, raw=True)
    assert logits.shape == (10, 5) and torch.equal(logits.argmax(-1), together)
    assert all(torch.equal(weights[n], p) for n, p in learner.model.named_parameters())  # model untouched
    # transductive mode: a lone image has one value per channel after the last pooling, so BatchNorm refuses it
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        learner.predict(trajectory, task.query_x[:1], batchnorm="batch")
    assert learner.predict(trajectory, task.query_x, batchnorm="batch").shape == (10,)
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        learner.predict(trajectory, task.query_x, batchnorm="eval")


def test_fit_uses_the_support_statistics_and_the_warps():
    """The BatchNorm statistics fit() stores are those of the support set at θ_K, and predictions use φ."""
    learner = _small_learner()
    task = _task(seed=4)
    trajectory = learner.fit(task)
    phi = {n: p.detach() for n, p in warpkit.warp_parameters(learner.model).items()}
    activations = task.support_x
    with torch.no_grad():
        net = OmniglotNet(ways=5, filters=4, warp="conv3")
        net.load_state_dict({**learner.model.state_dict(), **trajectory.final_params, **phi})
        pooled = net.blocks[0].pool(net.blocks[0].conv(activations))
    assert torch.allclose(trajectory.final_buffers["blocks.0.norm.running_mean"], pooled.mean(dim=(0, 2, 3)),
                          atol=1e-5)
    with torch.no_grad():  # changing φ changes the predictions' logits: the warps are included
        logits = learner.predict(trajectory, task.query_x, raw=True)
        learner.model.warps[3].conv.weight.mul_(3.0)
        assert not torch.allclose(learner.predict(trajectory, task.query_x, raw=True), logits)


# --------------------------------------------------------------------------------------------- save / load
def test_save_and_load_learner_in_a_fresh_process(tmp_path):
    learner = _small_learner(warp=warpkit.WarpTraining(lr=0.05, optimizer="adam"))
    learner.meta_step([_task(seed=1), _task(seed=2)])
    path = learner.save(tmp_path / "sub" / "learner.pt")
    task = _task(seed=5)
    torch.save({"support": task.support_x, "labels": task.support_y, "query": task.query_x}, tmp_path / "task.pt")
    expected = learner.predict(learner.fit(task), task.query_x, raw=True)
    script = (
        "import sys, torch, warpkit\n"
        "learner = warpkit.load_learner(sys.argv[1])\n"
        "data = torch.load(sys.argv[2])\n"
        "task = warpkit.ClassificationTask(data['support'], data['labels'])\n"
        "torch.save(learner.fit_predict(task, data['query'], raw=True), sys.argv[3])\n"
        "print(type(learner.init_learner).__name__, type(learner.warp_optimizer).__name__, learner.iteration)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "task.pt"),
                             str(tmp_path / "out.pt")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["Leap", "Adam", "1"]
    assert torch.allclose(torch.load(tmp_path / "out.pt"), expected, atol=1e-5)


def test_a_loaded_learner_resumes_meta_training_identically(tmp_path):
    learner = _small_learner(init=warpkit.InitTraining(warpkit.MetaSGD(steps=1)),
                             warp=warpkit.WarpTraining(lr=0.05, optimizer="adam"))
    learner.meta_step([_task(seed=1)])
    again = warpkit.load_learner(learner.save(tmp_path / "l.pt"))
    learner.meta_step([_task(seed=2)])
    again.meta_step([_task(seed=2)])
    for (name, a), b in zip(learner.model.named_parameters(), again.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_load_learner_refuses_files_it_cannot_trust_or_read(tmp_path):
    learner = _small_learner()
    path = learner.save(tmp_path / "ok.pt")
    payload = torch.load(path, weights_only=False)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1} .*reads version {FORMAT_VERSION} only. Upgrade warpkit"):
        warpkit.load_learner(tmp_path / "newer.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a learner file written by learner.save"):
        warpkit.load_learner(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a learner file"):
        warpkit.load_learner(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError):
        warpkit.load_learner(tmp_path / "missing.pt")
    payload = torch.load(path, weights_only=False)
    payload["extra"] = warpkit.record  # a warpkit function: the unpickler could call it
    torch.save(payload, tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match=r"names \['warpkit.kit.notebook.record'\], which are not network modules"):
        warpkit.load_learner(tmp_path / "crafted.pt")
    payload = torch.load(path, weights_only=False)
    payload["loss_fn_name"] = "os.remove"
    torch.save(payload, tmp_path / "loss.pt")
    with pytest.raises(ValueError, match="loss function os.remove, outside torch.nn and warpkit"):
        warpkit.load_learner(tmp_path / "loss.pt")
    payload = torch.load(path, weights_only=False)
    payload["learner_class"] = "warpkit.engine.meta.NoSuchLearner"
    torch.save(payload, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match="does not fit this warpkit"):
        warpkit.load_learner(tmp_path / "renamed.pt")


class _UserNet(nn.Module):  # a network class outside torch.nn and warpkit
    def __init__(self):
        super().__init__()
        self.body, self.warp = nn.Linear(2, 3), warpkit.LinearWarp(3)

    def forward(self, x):
        return self.warp(self.body(x))


def test_foreign_code_needs_trusted_and_a_lambda_loss_needs_loss_fn(tmp_path):
    learner = warpkit.MetaLearner(_UserNet(), lambda out, y: nn.functional.cross_entropy(out, y),
                                  inner=warpkit.InnerLoop(steps=2))
    path = learner.save(tmp_path / "user.pt")
    with pytest.raises(ValueError, match=r"names \[.*_UserNet'\].*trusted=True"):
        warpkit.load_learner(path)
    with pytest.raises(ValueError, match="holds no loss function .*lambda.*pass loss_fn="):
        warpkit.load_learner(path, trusted=True)
    loaded = warpkit.load_learner(path, loss_fn=nn.functional.cross_entropy, trusted=True)
    assert torch.equal(loaded.model.body.weight, learner.model.body.weight)


def test_save_refuses_what_it_cannot_rebuild(tmp_path):
    from warpkit.engine.baselines import make_method
    from warpkit.models.omniglot_net import omniglot_net_factory

    finetuning = make_method("multi-head", omniglot_net_factory(ways=5, filters=4), nn.functional.cross_entropy)
    with pytest.raises(ValueError, match="saving supports MetaLearner itself"):
        finetuning.save(tmp_path / "f.pt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        _small_learner().save(tmp_path / "folder")


# ------------------------------------------------------------------------------------------- cache folder
def test_omniglot_experiment_takes_a_cache_folder(monkeypatch, tmp_path):
    from warpkit.experiments import omniglot
    from warpkit.experiments.omniglot import tasks

    seen = {}

    def fake_load(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(tasks, "load_alphabet_dataset", fake_load)
    with pytest.raises(RuntimeError, match="stop here"):
        omniglot.OmniglotExperiment(omniglot.config_for("fast"), cache_dir=tmp_path / "cache")
    assert seen["cache_dir"] == tmp_path / "cache"


# ------------------------------------------------------------------------------------- the docstrings run
# (the engine's modules, guard, predict and persist among them, are run by tests/test_docstring_examples.py)
@pytest.mark.parametrize("module", ["warpkit.data.images", "warpkit.data.classification", "warpkit.tasks",
                                    "warpkit.kit.runner"])
def test_the_new_modules_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, result
