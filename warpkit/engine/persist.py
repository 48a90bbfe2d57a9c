"""Saving a meta-learner to one file and rebuilding it from that file alone.

:func:`save_learner` (``learner.save(path)``) writes, atomically (a temporary file renamed into place, so an
interrupted save never leaves a half-written file):

* the model itself, architecture and weights (the module, pickled);
* the loss function (a reference to a module-level function, or a loss module) and the initialisation learner;
* the learner's configuration (inner loop, warp objective, algorithm, optimisers and their learning rates, replay
  options) and :meth:`~warpkit.engine.meta.MetaLearner.state_dict` (weights, optimiser states, iteration, the
  replay generator);
* a format name and version, and the warpkit and torch versions that wrote it.

:func:`load_learner` (``warpkit.load_learner``) rebuilds the model and the learner. It unpickles with
``torch.load(weights_only=True)`` and allows only the module classes (``nn.Module`` subclasses) and initialisation
learners of ``torch.nn`` and ``warpkit``; the loss function is stored by name and looked up, never called while
loading. A file that names anything else (your own network class, a loss function of yours) is refused unless
you trust it and pass ``trusted=True`` (unpickling can then run code from the modules it names). A file of an
unknown format, of a newer format version, or naming classes this installation does not have is refused with a
``ValueError`` saying which.

>>> import os, tempfile, torch
>>> from torch import nn
>>> from warpkit.engine.meta import MetaLearner
>>> from warpkit.engine.warp import LinearWarp
>>> model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), LinearWarp(8), nn.Linear(8, 1))
>>> learner = MetaLearner(model, nn.functional.mse_loss, inner_steps=5)
>>> path = learner.save(os.path.join(tempfile.mkdtemp(), "learner.pt"))
>>> again = load_learner(path)
>>> again.inner_steps, torch.equal(again.model[2].weight, model[2].weight)
(5, True)
"""

from __future__ import annotations

import importlib
import io
import os
import tempfile
from pathlib import Path

import torch

FORMAT = "warpkit-learner"
FORMAT_VERSION = 1
#: modules whose classes and functions a learner file may name without ``trusted=True``
TRUSTED_PREFIXES = ("torch.nn.", "warpkit.")
LEARNER_CLASS = "warpkit.engine.meta.MetaLearner"


def _warpkit_version() -> str:
    try:
        from importlib.metadata import version

        return version("warpgrad-kit")
    except Exception:  # not installed as a distribution (a bare checkout on sys.path)
        return "unknown"


def _qualified_name(obj) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def learner_config(learner) -> dict:
    """The constructor arguments of a :class:`~warpkit.engine.meta.MetaLearner` that ``state_dict`` does not hold."""

    def optimizer(opt, default_name: str, default_lr: float) -> tuple[str, float]:
        if opt is None:
            return default_name, default_lr
        name = {"SGD": "sgd", "Adam": "adam"}.get(type(opt).__name__)
        if name is None:
            raise ValueError(f"save(): unknown optimiser {type(opt).__name__}; a saved learner uses 'sgd' or 'adam'")
        return name, float(opt.param_groups[0]["lr"])

    warp_name, warp_lr = optimizer(learner.warp_optimizer, "sgd", 0.1)
    init_name, init_lr = optimizer(learner.init_optimizer, "sgd", 0.1)
    inner_lr = learner.inner_lr
    if not isinstance(inner_lr, (int, float)):
        raise ValueError("save(): inner_lr must be a number to be saved (per-parameter step sizes belong to MetaSGD)")
    return {
        "inner_lr": float(inner_lr), "inner_steps": int(learner.inner_steps),
        "inner_momentum": float(learner.inner_momentum), "warp_objective": learner.warp_objective,
        "algorithm": learner.algorithm, "warp_lr": warp_lr, "warp_optimizer": warp_name, "init_lr": init_lr,
        "init_optimizer": init_name, "replay_chunk_size": int(learner.replay_chunk_size),
        "replay_epochs": int(learner.replay_epochs), "replay": learner.replay, "lookahead": learner.lookahead,
        "batched_adaptation": bool(learner.batched_adaptation),
    }


def save_learner(learner, path: str | os.PathLike) -> Path:
    """Write ``learner`` (a :class:`~warpkit.engine.meta.MetaLearner`) to ``path`` (module docstring); returns
    the path. A loss function that cannot be stored (a lambda, a function defined inside another) is left out:
    pass it to :func:`load_learner` then."""
    if _qualified_name(learner) != LEARNER_CLASS:
        raise ValueError(f"save(): saving supports MetaLearner itself, not {type(learner).__name__}, which keeps "
                         "state of its own; save its state_dict() with torch.save instead")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"save(): path must be a file name, but {path} is a folder")
    loss_fn, loss_name = learner.loss_fn, None
    if not isinstance(loss_fn, torch.nn.Module):  # a function is stored by its dotted name, when it has one
        module, qualname = getattr(loss_fn, "__module__", None), getattr(loss_fn, "__qualname__", "")
        try:
            found = _resolve(f"{module}.{qualname}") is loss_fn
        except Exception:
            found = False
        loss_fn, loss_name = None, f"{module}.{qualname}" if found else None
        loss_missing = None if found else getattr(learner.loss_fn, "__qualname__", repr(learner.loss_fn))
    else:
        loss_missing = None
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "warpkit_version": _warpkit_version(),
        "torch_version": str(torch.__version__), "learner_class": LEARNER_CLASS,
        "model": learner.model, "loss_fn": loss_fn, "loss_fn_name": loss_name, "loss_fn_missing": loss_missing,
        "init_learner": learner.init_learner, "config": learner_config(learner), "state": learner.state_dict(),
    }
    data = io.BytesIO()
    try:
        torch.save(payload, data)
    except Exception as error:
        raise ValueError(f"save(): the model cannot be stored ({type(error).__name__}: {error}); a saved model "
                         "must be picklable (no lambdas or open files among its attributes)") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.getvalue())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _resolve(name: str):
    """The object called ``name`` (``package.module.Attribute``, nested attributes allowed)."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(name)


def _safe_class(obj) -> bool:
    """A class the unpickler may rebuild without ``trusted``: an ``nn.Module`` or an initialisation learner."""
    if not isinstance(obj, type):
        return False
    init_learner = _resolve("warpkit.engine.meta.InitLearner")  # by name: meta imports this module
    return issubclass(obj, (torch.nn.Module, init_learner))


def load_learner(path: str | os.PathLike, loss_fn=None, trusted: bool = False, map_location="cpu"):
    """Rebuild the :class:`~warpkit.engine.meta.MetaLearner` saved at ``path`` (model, loss function, initialisation
    learner, configuration, optimiser states) from the file alone; tensors go to ``map_location``.

    ``loss_fn`` replaces the stored loss function (needed when it could not be stored). ``trusted=True`` allows a
    file that names classes or functions outside ``torch.nn`` and ``warpkit`` (your own network): only for files
    you trust, since unpickling them imports and runs their modules' code.
    """
    path = Path(path)
    allowed = _allowed_globals(path, trusted)
    payload = _read_payload(path, allowed, trusted, map_location)
    loss = _stored_loss(path, payload, trusted) if loss_fn is None else loss_fn
    if not callable(loss):
        raise ValueError(f"load_learner(): loss_fn must be callable, got {loss!r}")
    return _rebuild(path, payload, loss)


def _allowed_globals(path: Path, trusted: bool) -> list:
    """The classes and functions the file names, imported; refused when they are outside torch.nn and warpkit,
    or not network modules / initialisation learners, unless ``trusted``."""
    if not path.is_file():
        raise FileNotFoundError(f"load_learner(): no file {path}")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as error:
        raise ValueError(f"load_learner(): {path} is not a learner file written by learner.save() "
                         f"({type(error).__name__}: {error})") from error
    foreign = [name for name in names if not name.startswith(TRUSTED_PREFIXES)]
    if foreign and not trusted:
        raise ValueError(
            f"load_learner(): {path} names {foreign}, outside torch.nn and warpkit; loading it would import and run "
            "that code. If you trust the file, pass trusted=True (and make those modules importable)")
    allowed = []
    for name in names:
        try:
            allowed.append(_resolve(name))
        except (ImportError, AttributeError) as error:
            raise ValueError(
                f"load_learner(): {path} needs {name}, which this installation does not have: the file was "
                "written by an incompatible version of warpkit or torch, or needs a module of yours on the path"
            ) from error
    unexpected = [name for name, obj in zip(names, allowed) if not _safe_class(obj)]
    if unexpected and not trusted:
        raise ValueError(
            f"load_learner(): {path} names {unexpected}, which are not network modules or initialisation learners; "
            "learner.save() never writes those, so the file was made otherwise. Pass trusted=True only if you "
            "trust it")
    return allowed


def _read_payload(path: Path, allowed: list, trusted: bool, map_location) -> dict:
    """Unpickle the file with only ``allowed`` globals and check its format and version."""
    try:
        with torch.serialization.safe_globals(allowed):
            payload = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as error:
        raise ValueError(f"load_learner(): cannot read {path} ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"load_learner(): {path} is not a learner file written by learner.save() (it holds "
                         f"{type(payload).__name__} without the format {FORMAT!r})")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ValueError(
            f"load_learner(): {path} has learner-file format version {version!r} (written by warpkit "
            f"{payload.get('warpkit_version', '?')}); this warpkit ({_warpkit_version()}) reads version "
            f"{FORMAT_VERSION} only. " + ("Upgrade warpkit to load it." if newer else
                                          "Re-save it with a matching warpkit."))
    return payload


def _stored_loss(path: Path, payload: dict, trusted: bool):
    """The loss function the file stores (by object or by dotted name)."""
    loss = payload["loss_fn"]
    name = payload.get("loss_fn_name")
    if loss is None and name:
        if not (trusted or name.startswith(TRUSTED_PREFIXES)):
            raise ValueError(f"load_learner(): {path} names the loss function {name}, outside torch.nn and warpkit; "
                             "pass loss_fn= (or trusted=True to import it)")
        try:
            loss = _resolve(name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"load_learner(): the loss function {name} of {path} is not importable here; pass "
                             "loss_fn=") from error
    if loss is None or not callable(loss):
        raise ValueError(f"load_learner(): {path} holds no loss function (it was "
                         f"{payload.get('loss_fn_missing')}, which cannot be stored); pass loss_fn=")
    return loss


def _rebuild(path: Path, payload: dict, loss):
    """The MetaLearner of ``payload`` around its model, with its state loaded."""
    if payload.get("learner_class") != LEARNER_CLASS:
        raise ValueError(f"load_learner(): {path} does not fit this warpkit ({_warpkit_version()}): it holds a "
                         f"{payload.get('learner_class')!r}, and this warpkit loads {LEARNER_CLASS} only")
    try:
        learner_class = _resolve(LEARNER_CLASS)
        config = dict(payload["config"])
        if "batched_replay" in config:  # files written before the replay mode replaced the flag
            config["replay"] = "batched" if config.pop("batched_replay") else "looped"
        learner = learner_class(payload["model"], loss, init_learner=payload["init_learner"], **config)
        learner.load_state_dict(payload["state"])
    except (TypeError, KeyError, RuntimeError, ImportError, AttributeError) as error:
        raise ValueError(f"load_learner(): {path} does not fit this warpkit ({_warpkit_version()}; written by "
                         f"{payload.get('warpkit_version', '?')}): {type(error).__name__}: {error}") from error
    return learner
