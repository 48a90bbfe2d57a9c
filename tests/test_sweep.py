"""warpkit.kit.sweep: the resumable-run helper the long experiments share (fingerprint, checkpoint, resume,
refuse a mismatch naming the fields)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from warpkit.kit.checkpoint import CheckpointError, Checkpointer
from warpkit.kit.sweep import ResumableRun, SettingsMismatch, differences, fingerprint


@dataclass(frozen=True)
class Config:
    lr: float = 0.1
    interval: tuple = (-1.0, 1.0)


def test_fingerprint_is_plain_and_order_free():
    settings = fingerprint(config=Config(), seed=np.int64(3), device=torch.device("cpu"), path=Path("a/b"),
                           scale=torch.tensor(2.0))
    assert settings == {"config": {"interval": [-1.0, 1.0], "lr": 0.1}, "device": "cpu", "path": "a/b",
                        "scale": 2.0, "seed": 3}
    assert fingerprint(b=1, a=2) == fingerprint(a=2, b=1)


def test_differences_name_nested_fields_and_absent_ones():
    saved = fingerprint(seed=0, config=Config(), data="omniglot")
    now = fingerprint(seed=0, config=Config(lr=0.2), source="glyphs")
    assert differences(saved, now) == ["config.lr (saved 0.1, now 0.2)", "data (saved 'omniglot', now '<absent>')",
                                       "source (saved '<absent>', now 'glyphs')"]
    assert differences(saved, saved) == []


def test_resume_continues_and_a_mismatch_is_refused_untouched(tmp_path):
    path = tmp_path / "run.pt"
    run = ResumableRun(path, "toy", fingerprint(seed=0, config=Config()), every=2)
    assert run.restore() is None
    assert run.maybe_save(1, lambda: {"step": 1}) is None  # not a multiple of every
    assert run.maybe_save(2, lambda: {"step": 2}) == path
    assert ResumableRun(Checkpointer(path), "toy", fingerprint(seed=0, config=Config())).restore() == {"step": 2}
    saved = path.read_bytes()
    with pytest.raises(SettingsMismatch, match=r"config.lr \(saved 0.1, now 0.5\); seed \(saved 0, now 1\)") as error:
        ResumableRun(path, "toy", fingerprint(seed=1, config=Config(lr=0.5))).restore()
    assert isinstance(error.value, ValueError) and isinstance(error.value, CheckpointError)
    with pytest.raises(CheckpointError, match="not a other checkpoint"):
        ResumableRun(path, "other", fingerprint(seed=0, config=Config())).restore()
    assert path.read_bytes() == saved


def test_no_path_means_no_checkpointing(tmp_path):
    run = ResumableRun(None, "toy", fingerprint(seed=0))
    assert run.restore() is None and run.maybe_save(10, lambda: {"step": 10}, final=True) is None
    assert run.path is None and not list(tmp_path.iterdir())


def test_an_unreadable_checkpoint_is_reported_and_never_overwritten(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"not a checkpoint")
    run = ResumableRun(path, "toy", fingerprint(seed=0))
    with pytest.raises(CheckpointError, match="cannot be read"):
        run.restore()
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        run.maybe_save(1, lambda: {}, final=True)
    assert path.read_bytes() == b"not a checkpoint"
