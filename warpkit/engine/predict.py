r"""Adapt, then predict: what a meta-learned model is for.

:func:`fit` adapts a fresh copy of θ_0 to a task's support set (K SGD steps, warps φ frozen; the learner's model
is never written) and then measures the task's **BatchNorm statistics**: one forward pass over the task's whole
support set at the adapted θ_K, in train mode with a cumulative average, so every BatchNorm layer holds the mean
and (unbiased) variance of its inputs over the support set. They replace the trajectory's ``final_buffers``.

:func:`predict` classifies new inputs with θ_K, the learner's φ and one of two BatchNorm policies:

=================  ==============================================================================================
``batchnorm=``     what normalises an input
=================  ==============================================================================================
``"running"``      (default) the task's statistics from :func:`fit`: **non-transductive**. Each input is
                   normalised on its own, so a single image works and an image's label never depends on the
                   other images of ``x``.
``"batch"``        the statistics of ``x`` itself (train mode): **transductive**, as in the Leap and WarpGrad
                   Omniglot code, where a whole test batch is classified at once. Labels depend on which images
                   are in ``x``, and a single image fails ("Expected more than 1 value per channel") wherever
                   BatchNorm sees one value per channel.
=================  ==============================================================================================

A trajectory from :meth:`~warpkit.engine.meta.MetaLearner.adapt` (rather than :func:`fit`) also works with
``"running"``; its statistics are then the running averages updated during adaptation (momentum 0.1 from a reset
of mean 0, variance 1), which lag behind for short inner loops.

>>> import torch
>>> from torch import nn
>>> from warpkit.engine.meta import MetaLearner
>>> from warpkit.engine.options import InnerLoop
>>> from warpkit.engine.tasks import SupervisedTask
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
>>> learner = MetaLearner(model, nn.functional.cross_entropy, inner=InnerLoop(steps=20), warp=None)
>>> x = torch.randn(16, 2)
>>> task = SupervisedTask(x, (x[:, 0] > 0).long())
>>> learner.fit_predict(task, x[:1]).shape  # one input: a non-transductive prediction
torch.Size([1])
"""

from __future__ import annotations

import torch
import torch.nn as nn

from warpkit.engine.adapt import Trajectory, forward, fresh_buffers, train_mode
from warpkit.engine.warp import warp_parameters

BATCHNORM_MODES = ("running", "batch")
_BATCHNORM = (nn.modules.batchnorm._BatchNorm,)


def _support_inputs(task) -> torch.Tensor | None:
    """The inputs of a task's support (training) set: ``task.training_set()[0]`` (ClassificationTask,
    AlphabetTask, SupervisedTask), else ``task.train_inputs``; None when the task offers neither."""
    if hasattr(task, "training_set"):
        return task.training_set()[0]
    return getattr(task, "train_inputs", None)


@torch.no_grad()
def task_statistics(model: nn.Module, params: dict, inputs: torch.Tensor) -> dict:
    """The model's buffers with every BatchNorm's running mean and variance set to the statistics of its inputs
    over ``inputs`` (one pass, train mode, cumulative average), at the parameters ``params``. The model is not
    modified.

    >>> model = nn.Sequential(nn.BatchNorm1d(1))
    >>> buffers = task_statistics(model, dict(model.named_parameters()), torch.tensor([[1.0], [2.0], [3.0]]))
    >>> buffers["0.running_mean"].item(), buffers["0.running_var"].item()  # mean 2, variance (1 + 0 + 1) / (3 - 1)
    (2.0, 1.0)
    """
    buffers = fresh_buffers(model)
    norms = [m for m in model.modules() if isinstance(m, _BATCHNORM) and m.track_running_stats]
    if not norms:
        return buffers
    saved = [m.momentum for m in norms]
    try:
        for module in norms:
            module.momentum = None  # cumulative average: one batch gives exactly its statistics
        with train_mode(model):
            forward(model, params, buffers, inputs)
    finally:
        for module, momentum in zip(norms, saved):
            module.momentum = momentum
    return buffers


def fit(learner, task, num_steps: int | None = None) -> Trajectory:
    """Adapt a fresh copy of ``learner``'s θ_0 to ``task`` (``num_steps`` SGD steps, default the learner's
    ``inner.steps``; φ frozen) and measure the task's BatchNorm statistics on its whole support set at θ_K (they
    become ``final_buffers``). Returns the :class:`~warpkit.engine.adapt.Trajectory` for :func:`predict`.

    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.options import InnerLoop
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> learner = MetaLearner(nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 1)), nn.functional.mse_loss,
    ...                       inner=InnerLoop(steps=3), warp=None)
    >>> x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0], [6.0, 4.0]])
    >>> trajectory = fit(learner, SupervisedTask(x, x.sum(dim=1, keepdim=True)))
    >>> len(trajectory.losses), trajectory.final_buffers["0.running_mean"].tolist()  # 3 steps; column means
    (3, [3.0, 4.0])
    """
    trajectory = learner.adapt(task, num_steps=num_steps)
    inputs = _support_inputs(task)
    if inputs is not None:
        phi = {name: p.detach() for name, p in warp_parameters(learner.model).items()}
        trajectory.final_buffers = task_statistics(learner.model, {**trajectory.final_params, **phi}, inputs)
    return trajectory


@torch.no_grad()
def predict(learner, trajectory: Trajectory, x: torch.Tensor, batchnorm: str = "running", raw: bool = False):
    """Labels (arg-max of the outputs; ``raw=True``: the outputs themselves) for the batch ``x`` (``[N, ...]``; one
    image is ``x[None]``) with the adapted task parameters of ``trajectory``, the learner's warp parameters and
    the BatchNorm policy ``batchnorm`` (module docstring). The model is not modified.

    With ``"running"`` an input's label does not depend on the other inputs; ``"batch"`` needs more than one:

    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.options import InnerLoop
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> model = nn.Sequential(nn.BatchNorm1d(2), nn.Linear(2, 2))
    >>> learner = MetaLearner(model, nn.functional.cross_entropy, inner=InnerLoop(steps=3), warp=None)
    >>> x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0], [6.0, 4.0]])
    >>> trajectory = fit(learner, SupervisedTask(x, (x[:, 0] > x[:, 1]).long()))
    >>> one_by_one = torch.cat([predict(learner, trajectory, x[i:i + 1]) for i in range(4)])
    >>> torch.equal(one_by_one, predict(learner, trajectory, x))
    True
    >>> predict(learner, trajectory, x[:1], batchnorm="batch")
    Traceback (most recent call last):
    ...
    ValueError: Expected more than 1 value per channel when training, got input size torch.Size([1, 2])
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"predict(): batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
    if not isinstance(trajectory, Trajectory) or not trajectory.final_params:
        raise ValueError("predict(): trajectory must be what learner.fit(task) or learner.adapt(task) returned, "
                         f"got {type(trajectory).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or len(x) == 0:
        raise ValueError(f"predict(): x must be a non-empty batch tensor [N, ...], got {getattr(x, 'shape', x)!r}")
    model = learner.model
    phi = {name: p.detach() for name, p in warp_parameters(model).items()}
    device = next(iter(trajectory.final_params.values())).device
    buffers = {name: b.detach().clone() for name, b in trajectory.final_buffers.items()}
    with train_mode(model, training=batchnorm == "batch"):
        outputs = forward(model, {**trajectory.final_params, **phi}, buffers, x.to(device))
    return outputs if raw else outputs.argmax(dim=-1)
