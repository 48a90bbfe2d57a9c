"""The kit's tooling: what notebooks import (:mod:`~warpkit.kit.notebook`), the papermill runner, assignments and
their checks, and atomic checkpoints."""
