"""The lever study of the Omniglot experiment: one lever at a time from the ``medium`` size, Warp-Leap against the
best baseline (Reptile, and Leap), several seeds per setting, on the real Omniglot subsets.

A lever is a setting of :class:`warpkit.experiments.omniglot.OmniglotConfig` that the WarpGrad paper (Flennerhag
et al., 2020) or its protocol suggests matters: task resampling (new characters and label order every
meta-iteration, against one fixed task per training alphabet), augmentation, the number of inner SGD steps (the
paper's claim is that warps pay off on long adaptation, Section 4.2), the number of buffered points per φ-step
(Algorithm 2 takes one step per point) and the warp family (3×3 conv against residual conv warps, Appendix C).

One *unit* is one setting at one seed: :func:`run_unit` writes ``<out>/<setting>_seed<k>.json`` (checkpointed, so
a killed study resumes); :func:`lever_table` reads those files and :func:`format_lever_table` writes the
Markdown table (lever, setting, Warp-Leap mean ± std, best baseline mean ± std, paired difference with its 95 %
t-interval over the shared seeds, seeds). The ``base`` row is the committed reference run of the ``medium`` size
(``results/03_omniglot_medium.json``, 6 seeds) when its configuration is the current ``medium`` one; ``base``
units re-run some of its seeds to check that the study reproduces it (:func:`reproduces_reference`). The other
settings run Warp-Leap and Reptile (the best baseline of the reference run); settings that change only how
Warp-Leap learns its warp (``WARP_ONLY``) run Warp-Leap alone: the baselines have no warp, so their ``base`` runs
at the same seeds are the same runs.

>>> sorted(SETTINGS)[:2]
['augment', 'base']
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from warpkit.experiments import omniglot
from warpkit.kit.notebook import REPO_ROOT
from warpkit.kit.results import paired_interval

#: the focus method and the baselines the study runs (the strongest ones in results/03_omniglot_medium.json)
FOCUS = "warp-leap"
BASELINES = ("reptile", "leap")
#: the study's starting point: the ``medium`` size (the reference run's configuration) with the study's methods
BASE = omniglot.SIZES["medium"].replace(methods=(FOCUS,) + BASELINES, seeds=(0, 1, 2))
#: the methods of every setting but ``base``: Warp-Leap and the best baseline of the reference run
LEVER_METHODS = (FOCUS, "reptile")
#: (lever, what changes from BASE), in the order the study runs them (most telling per CPU-second first; on a
#: shared 2-core machine the last ones may not fit a session's budget)
SETTINGS: dict[str, tuple[str, dict]] = {
    "fixed": ("task resampling", {"fixed_training_tasks": True}),
    "chunk25": ("points per φ-step", {"replay_chunk_size": 25, "replay": "batched"}),
    "steps25": ("inner steps", {"inner_steps": 25}),
    "residual": ("warp family", {"warp": "residual_conv"}),
    "steps100": ("inner steps", {"inner_steps": 100}),
    "augment": ("augmentation", {"augment": True}),
    "base": ("base (medium)", {}),  # last: its row is the reference run; these units only check reproduction
}
#: the seeds of the reference run that the ``base`` units re-run (a reproduction check, not new evidence)
BASE_CHECK_SEEDS = (0, 1)
#: settings that touch only Warp-Leap's warp; their baselines are those of ``base`` at the same seeds
WARP_ONLY = ("chunk25", "residual")
#: what a reader must know about a setting to read its row
CAVEATS = {
    "steps25": "the BatchNorm running statistics (momentum 0.1) that score the held-out images average the "
               "activations of the last ten-odd steps of a network that is still changing, and keep 0.9^25 ≈ 7 % of "
               "their reset values after 25 steps (0.5 % after 50): at 25 steps the non-transductive evaluation "
               "partly measures unconverged statistics",
}


def config_of(setting: str, seed: int) -> omniglot.OmniglotConfig:
    """The configuration of one unit: BASE changed by the setting, one seed, Warp-Leap alone for WARP_ONLY."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown lever setting {setting!r}; choose from {list(SETTINGS)}")
    config = BASE.replace(**SETTINGS[setting][1], seeds=(seed,))
    if setting != "base":
        config = config.replace(methods=(FOCUS,) if setting in WARP_ONLY else LEVER_METHODS)
    return config


def unit_path(out: str | Path, setting: str, seed: int) -> Path:
    return Path(out) / f"{setting}_seed{seed}.json"


def run_unit(setting: str, seed: int, out: str | Path, checkpoint_dir: str | Path | None = None) -> dict:
    """Run one setting at one seed (resuming from ``checkpoint_dir`` if given) and write its JSON record:
    setting, lever, change, config, seconds and every run's held-out accuracy with its per-iteration |Δφ|."""
    config = config_of(setting, seed)
    checkpoint = None if checkpoint_dir is None else str(Path(checkpoint_dir) / f"{setting}_seed{seed}.ckpt")
    started = time.perf_counter()
    results = omniglot.OmniglotExperiment(config).run(checkpoint=checkpoint, show_progress=False)
    record = {"setting": setting, "lever": SETTINGS[setting][0], "change": SETTINGS[setting][1], "seed": seed,
              "config": config.as_dict(), "seconds": round(time.perf_counter() - started, 1),
              "runs": [{"method": r.method, "seed": r.seed, "alphabets": r.alphabets, "accuracy": r.accuracy,
                        "selected_iteration": r.selected_iteration,
                        "seconds": round(r.seconds_meta_training + r.seconds_evaluation, 1),
                        "warp_change": [h.get("warp_change") for h in r.meta_history]} for r in results.runs]}
    path = unit_path(out, setting, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def reference_base() -> dict[str, dict[int, float]] | None:
    """method → seed → accuracy (%) of the study's methods in the committed medium reference run, or None when
    there is none or it was made with another configuration than the current ``medium`` size."""
    reference = omniglot.read_reference("medium")
    if reference is None or reference.config != omniglot.SIZES["medium"].as_dict():
        return None
    return {m: {s: 100 * a for s, a in reference.accuracies(m).items()} for m in (FOCUS,) + BASELINES}


def unit_accuracies(out: str | Path, setting: str) -> dict[str, dict[int, float]]:
    """method → seed → accuracy (%) from the unit files of ``setting`` under ``out``."""
    found: dict[str, dict[int, float]] = {}
    for path in sorted(Path(out).glob(f"{setting}_seed*.json")):
        for run in json.loads(path.read_text())["runs"]:
            found.setdefault(run["method"], {})[run["seed"]] = 100 * run["accuracy"]
    return found


def reproduces_reference(out: str | Path) -> dict | None:
    """How far the ``base`` units are from the reference run at the same (method, seed): ``{"runs", "largest
    difference"}`` in accuracy points, or None without base units or reference."""
    reference, rerun = reference_base(), unit_accuracies(out, "base")
    if reference is None or not rerun:
        return None
    pairs = [(a, reference[m][s]) for m, seeds in rerun.items() for s, a in seeds.items() if s in reference.get(m, {})]
    return {"runs": len(pairs), "largest difference": max((abs(a - b) for a, b in pairs), default=None)}


def study_accuracies(out: str | Path) -> dict[str, dict[str, dict[int, float]]]:
    """setting → method → seed → held-out accuracy (%): ``base`` from the reference run (:func:`reference_base`;
    the base units only where there is no usable reference), the other settings from their unit files under
    ``out``; WARP_ONLY settings borrow the baselines of ``base`` at their seeds."""
    found: dict[str, dict[str, dict[int, float]]] = {}
    for setting in SETTINGS:
        runs = unit_accuracies(out, setting)
        if runs:
            found[setting] = runs
    base = reference_base()
    if base is not None:
        found["base"] = base
    for setting in WARP_ONLY:
        if setting in found and "base" in found:
            seeds = set(found[setting].get(FOCUS, {}))
            for method in BASELINES:
                found[setting][method] = {s: a for s, a in found["base"].get(method, {}).items() if s in seeds}
    return {setting: found[setting] for setting in ("base",) + tuple(SETTINGS) if setting in found}


def lever_table(out: str | Path) -> list[dict]:
    """One row per setting with results: lever, setting, change, Warp-Leap's and the best baseline's (highest
    mean) mean and sample std, the paired difference Warp-Leap − best baseline with its 95 % t-interval over the
    shared seeds (None with fewer than two), and the seeds."""
    rows = []
    for setting, by_method in study_accuracies(out).items():
        baselines = [m for m in BASELINES if by_method.get(m)]
        if FOCUS not in by_method or not baselines:
            continue
        best = max(baselines, key=lambda m: np.mean(list(by_method[m].values())))
        shared = sorted(set(by_method[FOCUS]) & set(by_method[best]))
        interval = (paired_interval({s: by_method[FOCUS][s] for s in shared}, {s: by_method[best][s] for s in shared})
                    if len(shared) >= 2 else None)
        rows.append({"lever": SETTINGS[setting][0], "setting": setting, "change": SETTINGS[setting][1],
                     "focus": _mean_std(by_method[FOCUS]), "best": best, "best_stats": _mean_std(by_method[best]),
                     "others": {m: _mean_std(by_method[m]) for m in baselines if m != best},
                     "interval": interval, "seeds": shared})
    return rows


def _mean_std(values: dict[int, float]) -> tuple[float, float | None]:
    v = list(values.values())
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)


def _pm(stats: tuple[float, float | None]) -> str:
    mean, std = stats
    return f"{mean:.1f}" + ("" if std is None else f" ± {std:.1f}")


def format_lever_table(rows: list[dict]) -> str:
    """Markdown table of :func:`lever_table`'s rows (accuracies in %, mean ± sample std over seeds), with the
    caveats of the settings shown below it."""
    labels = omniglot.METHOD_LABELS
    lines = ["| lever | setting | Warp-Leap | best baseline | other baseline | Warp-Leap − best (95 % CI) | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        change = ", ".join(f"{k}={v}" for k, v in row["change"].items()) or "medium"
        others = "; ".join(f"{labels[m]} {_pm(s)}" for m, s in row["others"].items()) or "—"
        interval = row["interval"]
        paired = "—" if interval is None else (
            f"{interval['mean']:+.1f} [{interval['low']:+.1f}, {interval['high']:+.1f}]")
        lines.append(f"| {row['lever']} | {change} | {_pm(row['focus'])} | {labels[row['best']]} "
                     f"{_pm(row['best_stats'])} | {others} | {paired} | {', '.join(map(str, row['seeds']))} |")
    notes = [f"- `{row['setting']}`: {CAVEATS[row['setting']]}." for row in rows if row["setting"] in CAVEATS]
    return "\n".join(lines + ([""] + notes if notes else []))


# ----------------------------------------------------------------------------------------------------------
# the study in the lesson: sentences generated from the recorded numbers
# ----------------------------------------------------------------------------------------------------------
#: where the study's unit files and TABLE.md are committed, and the K-FAC run at the medium size
STUDY_DIR = REPO_ROOT / "results" / "omniglot_levers"
KFAC_RESULTS = REPO_ROOT / "results" / "omniglot_kfac_medium.json"


def describe_rows(rows: list[dict]) -> str:
    """One sentence per verdict, from the paired intervals: in which settings Warp-Leap's 95 % interval against
    the best baseline lies above zero, below zero, or contains zero."""
    verdicts: dict[str, list[str]] = {"above zero": [], "below zero": [], "containing zero": []}
    for row in rows:
        interval = row["interval"]
        if interval is None:
            continue
        verdict = ("above zero" if interval["low"] > 0 else "below zero" if interval["high"] < 0 else
                   "containing zero")
        change = "".join(f"{k}={v}, " for k, v in row["change"].items())
        verdicts[verdict].append(f"{row['lever']} ({change}{len(row['seeds'])} seeds)")
    parts = [f"{verdict}: {'; '.join(names)}" for verdict, names in verdicts.items() if names]
    if not parts:
        return "No setting has two seeds or more yet: no interval to read."
    return "Warp-Leap minus the best baseline, paired 95 % interval " + ". Interval ".join(parts) + "."


def describe_kfac(path: str | Path = KFAC_RESULTS) -> str:
    """A sentence on the K-FAC run at the medium size against the reference run's methods at the same seeds (mean
    ± std over seeds, paired interval against no pretraining and against Warp-Leap), or '' without the files."""
    reference = reference_base()
    source = Path(path)
    if reference is None or not source.exists():
        return ""
    kfac = {r["seed"]: 100 * r["accuracy"] for r in json.loads(source.read_text())["runs"]}
    plain = omniglot.read_reference("medium").accuracies("no-pretraining")
    others = {"no pretraining": {s: 100 * a for s, a in plain.items()}, "Warp-Leap": reference[FOCUS]}
    text = (f"K-FAC (Martens & Grosse, 2015), adapting from the random initialisation with no meta-learning, scores "
            f"{_pm(_mean_std(kfac))} % over {len(kfac)} seeds at the medium size")
    for name, values in others.items():
        interval = paired_interval(kfac, values)
        text += (f"; K-FAC minus {name}: {interval['mean']:+.1f} points, paired 95 % interval "
                 f"[{interval['low']:+.1f}, {interval['high']:+.1f}]")
    return text + "."


def study_note(out: str | Path = STUDY_DIR) -> str:
    """Markdown for the lesson: the lever study's table with its verdicts, the reproduction check of the base
    row, and the K-FAC sentence; or where to make the study when it is not in this checkout."""
    rows = lever_table(out)
    if not rows:
        return ("**Lever study:** not in this checkout; make it with `python benchmarks/omniglot_levers.py` "
                "(about two hours on two shared CPU cores).")
    check = reproduces_reference(out)
    text = ("**Lever study** (medium size, one setting changed at a time; held-out accuracy in %, mean ± std over "
            "seeds; the base row is the reference run):\n\n" + format_lever_table(rows) + "\n\n" + describe_rows(rows))
    if check and check["largest difference"] is not None:
        text += (f" Re-running {check['runs']} runs of the reference in the study gave accuracies at most "
                 f"{check['largest difference']:.2f} points away from it.")
    kfac = describe_kfac()
    return text + ("\n\n" + kfac if kfac else "")
