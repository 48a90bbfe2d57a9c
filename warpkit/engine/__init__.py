"""The WarpGrad engine: warp layers, tasks, the inner loop, the trajectory buffer, the warp objectives (Eq. 11,
Eq. 12), the meta-learners (Algorithms 1 and 2) and the baselines built from them, and the geometry of warping.

Nothing here imports an experiment, a drawing or the notebook tooling (``tests/test_architecture.py``)."""
