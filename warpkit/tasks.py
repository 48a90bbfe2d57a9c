"""Tasks, by their public names: what a meta-learner adapts to.

* :class:`ClassificationTask`: an N-way K-shot classification task with a support and a query set, from tensors
  or from a folder of images (:meth:`ClassificationTask.from_folder`); in :mod:`warpkit.data.classification`;
* :class:`SupervisedTask`: a training set and a held-out set of tensors (e.g. sine regression);
* :class:`Task`: the protocol every task follows (``sample_batch``, ``sample_meta_batches``,
  ``evaluation_batch``); both in :mod:`warpkit.engine.tasks`.

>>> import torch
>>> from warpkit.tasks import ClassificationTask
>>> task = ClassificationTask(torch.rand(3, 1, 28, 28), torch.arange(3), torch.rand(6, 1, 28, 28),
...                           torch.arange(3).repeat(2))
>>> task
ClassificationTask(3-way 1-shot, 3 support and 6 query examples, batch 3, seed 0)
"""

from warpkit.data.classification import ClassificationTask
from warpkit.engine.tasks import SupervisedTask, Task

__all__ = ["ClassificationTask", "SupervisedTask", "Task"]
