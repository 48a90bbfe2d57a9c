"""warpkit: a notebook-first teaching kit for WarpGrad (Meta-Learning with Warped Gradient Descent, Flennerhag et
al., ICLR 2020, arXiv 1909.00025).

Two layers (ARCHITECTURE.md):

* ``warpkit.engine``: the method. Warp layers (θ task parameters, φ warp parameters), tasks, the functional inner
  loop, the trajectory buffer, the warp objectives (Eq. 11 exact, Eq. 12 first-order), the meta-learners
  (Algorithm 2 offline, Algorithm 1 online) with Leap, Reptile, FOMAML, MAML, and the geometry of warping;
* ``warpkit.experiments``: the experiments behind the lessons, built from the engine and from ``warpkit.data``,
  ``warpkit.envs`` and ``warpkit.models``;

with the drawing in ``warpkit.viz`` and the tooling (notebook helpers, runner, assignments) in ``warpkit.kit``.
What a user needs most is re-exported here:

>>> import torch, warpkit
>>> model = torch.nn.Sequential(torch.nn.Linear(1, 8), warpkit.LinearWarp(8), torch.nn.Linear(8, 1))
>>> sorted(warpkit.warp_parameters(model))
['1.weight']
"""

from warpkit.data.classification import ClassificationTask
from warpkit.data.images import load_image
from warpkit.engine.adapt import Trajectory, adapt, evaluate
from warpkit.engine.guard import NonFiniteError
from warpkit.engine.init_learners import FOMAML, MAML, Leap, MetaSGD, Reptile
from warpkit.engine.meta import MetaLearner
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.engine.persist import load_learner
from warpkit.engine.tasks import SupervisedTask, Task
from warpkit.engine.warp import (ConvWarp, LinearWarp, MultiplicativeRecurrentWarp, ResidualConvWarp,
                                 ResidualMLPWarp, ScaleWarp, task_parameters, warp_parameters)
from warpkit.kit.notebook import (RECORD_MIMETYPE, defer_records, figures_dir, pick_device, progress, read_records,
                                  record, save_figure, seed_everything, show_figure, show_records)

__version__ = "0.1.0"

__all__ = [
    "FOMAML", "MAML", "Leap", "MetaLearner", "MetaSGD", "Reptile", "InitTraining", "InnerLoop", "WarpTraining",
    "ClassificationTask", "SupervisedTask", "Task", "Trajectory", "adapt", "evaluate", "load_image", "load_learner",
    "NonFiniteError",
    "ConvWarp", "LinearWarp", "MultiplicativeRecurrentWarp", "ResidualConvWarp", "ResidualMLPWarp", "ScaleWarp",
    "task_parameters", "warp_parameters",
    "RECORD_MIMETYPE", "defer_records", "figures_dir", "pick_device", "progress", "read_records", "record",
    "save_figure", "seed_everything", "show_figure", "show_records",
]
