"""Lever study of the Omniglot lesson (issue 13): one lever at a time from the medium size, Warp-Leap against
Reptile and Leap, several seeds per setting (:mod:`warpkit.experiments.omniglot_levers` defines it).

    nohup nice -n 5 .venv/bin/python benchmarks/omniglot_levers.py --workers 2 > levers.log 2>&1 &
    .venv/bin/python benchmarks/omniglot_levers.py --table     # writes results/omniglot_levers/TABLE.md

Every (setting, seed) is one unit, written to ``<out>/<setting>_seed<k>.json`` when done and checkpointed under
``checkpoints/levers/`` meanwhile, so a killed study resumes where it stopped; finished units are skipped. Units
run over ``--workers`` processes (one torch thread each), in the order of the settings, seeds innermost.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch

from warpkit.experiments import omniglot_levers as levers
from warpkit.kit.notebook import REPO_ROOT

HEADER = """# Omniglot lever study (benchmarks/omniglot_levers.py --table)

Base: the `medium` size (the reference run's configuration: n = 4 training alphabets, 20 meta-iterations of 3
resampled tasks, 50 inner steps, one φ-step per buffered point, 3×3 conv warps, no augmentation, running-statistics
evaluation, best validation point). The base row is the committed reference run (`results/03_omniglot_medium.json`);
every other row changes one lever and runs Warp-Leap and Reptile (the best baseline of the reference run) at the
seeds shown. Held-out accuracy (%) on the same test tasks for every row, mean ± sample std over seeds; the paired
difference is Warp-Leap minus the row's best baseline over the same seeds, with its 95 % t-interval. The
`points per φ-step` and `warp family` rows run Warp-Leap alone and borrow the base row's baselines at their seeds
(the baselines have no warp). Generated from the JSON files in this folder and the reference run.

"""


def _unit(setting: str, seed: int, out: str, checkpoints: str) -> tuple[str, int, float, str]:
    torch.set_num_threads(1)
    record = levers.run_unit(setting, seed, out, checkpoints)
    return setting, seed, record["seconds"], f"{os.getloadavg()[0]:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "omniglot_levers"))
    parser.add_argument("--settings", nargs="*", default=list(levers.SETTINGS))
    parser.add_argument("--seeds", nargs="*", type=int, default=list(levers.BASE.seeds))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="only write TABLE.md from the finished units")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        checkpoints = str(REPO_ROOT / "checkpoints" / "levers")
        Path(checkpoints).mkdir(parents=True, exist_ok=True)
        units = [(s, k) for s in args.settings for k in (levers.BASE_CHECK_SEEDS if s == "base" else args.seeds)
                 if not levers.unit_path(out, s, k).exists()]
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_unit, s, k, str(out), checkpoints) for s, k in units]
            for future in as_completed(futures):
                setting, seed, seconds, load = future.result()
                print(f"{setting} seed {seed}: {seconds:.0f} s (load {load}; "
                      f"{time.perf_counter() - started:.0f} s since start)", flush=True)
    note = levers.study_note(out)
    (out / "TABLE.md").write_text(HEADER + note + "\n")
    print(note)


if __name__ == "__main__":
    main()
