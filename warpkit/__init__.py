"""warpkit: a notebook-first teaching kit for WarpGrad (Meta-Learning with Warped Gradient Descent, ICLR 2020).

The folders say what lives where (see ARCHITECTURE.md):

* ``warpkit.warp``        warp layers; which parameters are θ (task) and which are φ (warp)
* ``warpkit.tasks``       what a task is: batches for the inner loop and for the meta-objective
* ``warpkit.adapt``       the functional inner loop on θ only, returning a detached trajectory
* ``warpkit.buffer``      trajectory points and their replay
* ``warpkit.objectives``  the warp meta-objectives: exact (Eq. 11), first-order (Eq. 12), approx
* ``warpkit.meta``        WarpGrad's algorithms (offline, online) and the initialisation meta-learners
* ``warpkit.geometry``    Jacobians, metrics G⁻¹ = JJᵀ, Riemannian steps, 2-D toy surfaces
* ``warpkit.data``, ``warpkit.envs``, ``warpkit.models``  the three experiments' data, maze and networks
* ``warpkit.viz``         plotting and interactive explorers
* ``warpkit.notebook``    record(), figure saving, seeding, device choice
* ``warpkit.runner``      ``python -m warpkit run``;  ``warpkit.assign``: ``python -m warpkit assign``
"""

from warpkit.notebook import (
    RECORD_MIMETYPE,
    figures_dir,
    pick_device,
    progress,
    read_records,
    record,
    save_figure,
    seed_everything,
)

__version__ = "0.1.0"

__all__ = [
    "RECORD_MIMETYPE",
    "figures_dir",
    "pick_device",
    "progress",
    "read_records",
    "record",
    "save_figure",
    "seed_everything",
]
