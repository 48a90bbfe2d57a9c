"""``python -m warpkit``: the command line.

* ``python -m warpkit run [NOTEBOOK ...] [--size fast|full] [--device auto|cpu|cuda] [-p NAME VALUE ...]``
  executes lessons headlessly (see :mod:`warpkit.kit.runner`);
* ``python -m warpkit assign SOURCE --out DIR`` writes student and solution notebooks (see :mod:`warpkit.kit.assign`);
* ``python -m warpkit train omniglot|continual|maze --size SIZE --out DIR`` trains a lesson's experiment outside
  the notebook, also under ``torchrun`` on several processes (see :mod:`warpkit.experiments.train`).
* ``python -m warpkit site [--source DIR] [--out DIR]`` builds a static website of the executed lessons
  (see :mod:`warpkit.kit.site`).
* ``python -m warpkit reference LESSON --size SIZE`` re-makes a lesson's reference results file
  ``results/<lesson>_<size>.json`` (see :mod:`warpkit.kit.results`).
"""

from __future__ import annotations

import sys

USAGE = """usage: python -m warpkit {run,assign,train,site,reference} ...

commands:
  run      execute notebooks headlessly through papermill and summarise their recorded values
  assign   generate the student and solution copies of an assignment and prove the solution passes
  train    meta-train a lesson's experiment outside the notebook (one process, or many under torchrun)
  site     build a static website of the executed lessons (offline)
  reference  re-make a lesson's reference results (results/<lesson>_<size>.json)

Run `python -m warpkit COMMAND --help` for a command's options."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        from warpkit.kit.runner import main as run_main  # lazy: papermill is slow to import; assign needs none of it

        return run_main(rest)
    if command == "assign":
        from warpkit.kit.assign import main as assign_main  # lazy: only the command that runs is imported

        return assign_main(rest)
    if command == "train":
        from warpkit.experiments.train import main as train_main  # lazy: torch and the experiment load only here

        return train_main(rest)
    if command == "site":
        from warpkit.kit.site import main as site_main  # lazy: only the command that runs is imported

        return site_main(rest)
    if command == "reference":
        from warpkit.kit.results import main as reference_main  # lazy: only the command that runs is imported

        return reference_main(rest)
    print(f"python -m warpkit: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
