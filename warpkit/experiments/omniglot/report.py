"""The text of lesson 04 generated from recorded numbers: banners and notes about the data and the size, the
parameter table, and sentences about a run, the reference run and the replay comparison. Nothing here states a
result that is not computed from the numbers it is given."""

from __future__ import annotations

import numpy as np

from warpkit.engine.warp import count_parameters, task_parameters, warp_parameters
from warpkit.experiments.omniglot.config import SIZES, OmniglotConfig, differences_from_paper
from warpkit.experiments.omniglot.paper import FULL_DEPARTURES, METHOD_LABELS, READABLE
from warpkit.experiments.omniglot.results import SweepResults
from warpkit.kit.results import compare_methods as compare_any


# ----------------------------------------------------------------------------------------------------------
# the data, the size, the network
# ----------------------------------------------------------------------------------------------------------
def data_banner(dataset) -> str:
    """A Markdown banner naming the data; loud when it is the synthetic stand-in rather than Omniglot."""
    if dataset.source == "omniglot":
        return (f"**Data: Omniglot** ({len(dataset.alphabets)} alphabets, {dataset.total_characters} characters; "
                f"{getattr(dataset, 'description', '')}).")
    return ("> ## ⚠ NOT OMNIGLOT: synthetic glyph stand-in\n"
            "> This run uses **glyph alphabets rendered from fonts**, with distorted 'drawers', because Omniglot was "
            "not found (set `WARPKIT_DATA` to a folder holding `omniglot/`; see `warpkit.data.omniglot`) or the "
            "stand-in was asked for. Every number and figure below is about the stand-in and must not be compared "
            f"with the paper's Omniglot numbers. ({len(dataset.alphabets)} glyph alphabets.)")


def describe_parameters(model) -> str:
    """One line per parameter tensor: name, shape, and whether it is θ (task) or φ (warp); totals at the end."""
    theta, phi = task_parameters(model), warp_parameters(model)
    lines = []
    for name, p in model.named_parameters():
        role = "θ task" if name in theta else ("φ warp" if name in phi else "other")
        lines.append(f"  {role:7s} {name:28s} {str(tuple(p.shape)):18s} {p.numel():7d}")
    lines.append(f"  θ: {count_parameters(theta)} task parameters (moved by SGD in every task), "
                 f"φ: {count_parameters(phi)} warp parameters (frozen in tasks, meta-learned)")
    return "\n".join(lines)


def size_note(config: OmniglotConfig, size: str) -> str:
    """Markdown: how the run departs from the paper's protocol (:data:`PAPER_PROTOCOL`), or that it follows it;
    at ``full`` size the deliberate departures are given with their reasons."""
    changes = differences_from_paper(config)
    if not changes:
        return f"**Size `{size}`: the paper's protocol.**"
    text = f"**Size `{size}` departs from the paper's protocol in:** " + "; ".join(changes) + "."
    if size == "full":
        text += " Why: " + " ".join(f"{READABLE.get(k, k)}: {why}." for k, why in FULL_DEPARTURES.items())
    return text


def evidence_note(size: str, reference) -> str:
    """Markdown: what this size of run can show, and where the evidence is (the reference run)."""
    where = ("the reference run in section g (`results/03_omniglot_medium.json`)" if reference is not None else
             "a reference run, which is not committed in this checkout (make it with "
             "`python -m warpkit reference 04 --size medium`)")
    if size == "fast":
        return ("**This `fast` run checks that everything works; the evidence is " + where + ".** A fast run "
                "meta-trains for a minute on one seed: its ranking of the methods moves from seed to seed.")
    if size == "medium":
        return "**This is the size of the reference run;** compare your numbers with " + where + "."
    return "**The `full` size is the paper's protocol** (departures listed above); compare with " + where + "."


# ----------------------------------------------------------------------------------------------------------
# a comparison of methods (this run's or the reference's)
# ----------------------------------------------------------------------------------------------------------
def compare_methods(by_method: dict[str, dict[int, float]], focus: str = "warp-leap") -> dict:
    """:func:`warpkit.kit.results.compare_methods` of ``{method: {seed: accuracy}}``, Warp-Leap in focus."""
    return compare_any(by_method, focus)


def describe_comparison(summary: dict, what: str) -> str:
    """Markdown sentences generated from :func:`compare_methods`' numbers (nothing in them is fixed text about
    results): who ranks first in ``what`` (e.g. "this run"), the focus method's margin over the best other method
    and whether the paired 95 % interval excludes zero."""
    stats, ranking, focus, best = summary["stats"], summary["ranking"], summary["focus"], summary["best_other"]
    if focus not in stats or best is None:
        return f"In {what} there is nothing to compare."
    label = METHOD_LABELS
    seeds = stats[focus]["seeds"]
    text = (f"In {what} ({seeds} seed{'s' if seeds != 1 else ''}), **{label[ranking[0]]}** has the highest mean "
            f"held-out accuracy ({100 * stats[ranking[0]]['mean']:.1f} %); {label[focus]} ranks "
            f"{ranking.index(focus) + 1} of {len(ranking)} at {100 * stats[focus]['mean']:.1f} %. ")
    difference = 100 * (stats[focus]["mean"] - stats[best]["mean"])
    text += f"{label[focus]} minus {label[best]} (the best other method): {difference:+.1f} points"
    interval = summary["interval"]
    if interval is None:
        return text + " (too few seeds for an interval)."
    low, high = 100 * interval["low"], 100 * interval["high"]
    verdict = ("above zero: larger than its spread over these seeds (on the same test tasks)" if low > 0 else
               "below zero" if high < 0 else "containing zero: these seeds cannot tell the two apart")
    return text + f", paired 95 % interval over {interval['n']} seeds [{low:+.1f}, {high:+.1f}], {verdict}."


def describe_reference(reference, size: str = "medium") -> str:
    """Markdown generated from the reference file: what made it, whether it matches the current size, and its
    comparison (ranking and paired interval of Warp-Leap against the best other method)."""
    if reference is None:
        return ("No reference run is committed in this checkout. Make one with "
                "`python -m warpkit reference 04 --size medium` (it writes `results/03_omniglot_medium.json`).")
    data = reference.data
    stale = reference.stale_fields(SIZES[size].as_dict())
    text = (f"The reference run was made by `{data['command']}` at commit `{data['commit'][:12]}` on "
            f"{data['created'][:10]} in {data['seconds'] / 60:.0f} min on a machine with "
            f"{data['machine'].get('cpus')} CPUs. ")
    if stale:
        text += (f"**It is stale:** the `{size}` size has changed since (in {', '.join(stale)}); its numbers are "
                 "not those of the current code. ")
    by_method = {m: {int(k): v for k, v in reference.accuracies(m).items()} for m in reference.methods}
    return text + describe_comparison(compare_methods(by_method), f"the reference run at n = {reference.largest_n}")


# ----------------------------------------------------------------------------------------------------------
# how far φ and θ₀ moved, adaptation, the replay schedules
# ----------------------------------------------------------------------------------------------------------
def warp_motion(results: SweepResults, alphabets: int | None = None) -> dict[str, list[list[float | None]]]:
    """Per seed, the per-meta-iteration |Δφ| and |Δθ₀| of Warp-Leap and |Δθ₀| of Leap at n = ``alphabets``
    (default: the largest), for :func:`warpkit.viz.omniglot_results.plot_warp_motion`."""
    n = results.config.largest_n if alphabets is None else alphabets
    motion = {}
    if "warp-leap" in results.methods:
        motion["Warp-Leap |Δφ|"] = _per_seed(results, "warp-leap", n, "warp_change")
        motion["Warp-Leap |Δθ₀|"] = _per_seed(results, "warp-leap", n, "init_change")
    if "leap" in results.methods:
        motion["Leap |Δθ₀|"] = _per_seed(results, "leap", n, "init_change")
    return motion


def _per_seed(results: SweepResults, method: str, alphabets: int, key: str) -> list[list[float | None]]:
    """Per seed, the meta-history's ``key`` of ``method`` at n = ``alphabets``."""
    return [[h.get(key) for h in r.meta_history] for r in results.runs
            if r.method == method and r.alphabets == alphabets]


def total_change(runs: list[list[float | None]]) -> float:
    """Mean over seeds of the summed per-iteration changes (0 when nothing was recorded)."""
    sums = [sum(v for v in run if v is not None) for run in runs if run]
    return float(np.mean(sums)) if sums else 0.0


def describe_motion(motion: dict[str, list[list[float | None]]]) -> str:
    """Markdown generated from :func:`warp_motion`: how far φ and θ₀ moved, per iteration and in total."""
    phi = motion.get("Warp-Leap |Δφ|") or []
    if not phi or not phi[0]:
        return "Warp-Leap did not meta-train in this run, so there is no |Δφ| to show."
    first = np.nanmean([run[0] for run in phi])
    last = np.nanmean([run[-1] for run in phi])
    text = (f"Over {len(phi[0])} meta-iterations Warp-Leap's φ moved {first:.3g} in the first and {last:.3g} in the "
            f"last (mean over {len(phi)} seed{'s' if len(phi) != 1 else ''}); the summed |Δφ| is "
            f"{total_change(phi):.3g}, so the warp {'did' if total_change(phi) > 0 else 'did not'} change.")
    warp_theta, leap_theta = motion.get("Warp-Leap |Δθ₀|"), motion.get("Leap |Δθ₀|")
    if warp_theta and leap_theta:
        text += (f" θ₀ moved {total_change(warp_theta):.3g} in total under Warp-Leap and "
                 f"{total_change(leap_theta):.3g} under Leap.")
    return text


def describe_adaptation(curves: dict[str, np.ndarray]) -> str:
    """Markdown generated from mean adaptation loss curves: the loss after a quarter of the steps and at the end."""
    if not curves:
        return ""
    steps = len(next(iter(curves.values()))) - 1
    quarter = max(1, steps // 4)
    parts = [f"{METHOD_LABELS[m]} {c[quarter]:.2f} → {c[-1]:.2f}" for m, c in curves.items()]
    lowest = min(curves, key=lambda m: curves[m][-1])
    return (f"Training-batch loss after {quarter} and after {steps} steps (mean over test tasks and seeds): "
            + "; ".join(parts) + f". Lowest at the end in this run: {METHOD_LABELS[lowest]}. A lower training loss "
            "is faster learning of the task, which is not the same as higher held-out accuracy (section f).")


def describe_schedules(comparison: dict) -> str:
    """Markdown generated from :func:`compare_replay_schedules`."""
    schedules = comparison["schedules"]
    names = list(schedules)
    parts = [f"*{n}*: {schedules[n]['warp_steps']} φ-steps, summed |Δφ| {sum(schedules[n]['warp_change']):.3g}, "
             f"held-out accuracy {100 * schedules[n]['accuracy']:.1f} %, {schedules[n]['seconds']:.0f} s"
             for n in names]
    text = (f"Over {comparison['iterations']} meta-iterations (seed {comparison['seed']}, n = "
            f"{comparison['alphabets']}): " + "; ".join(parts) + ".")
    if len(names) >= 2:
        a, b = (sum(schedules[n]["warp_change"]) for n in names[:2])
        text += f" The first schedule moved φ {a / b:.1f}× as far as the second."
    return text + " One seed and a few iterations: this shows the mechanism, not which schedule scores better."


__all__ = ["compare_methods", "data_banner", "describe_adaptation", "describe_comparison", "describe_motion",
           "describe_parameters", "describe_reference", "describe_schedules", "evidence_note", "size_note",
           "total_change", "warp_motion"]
