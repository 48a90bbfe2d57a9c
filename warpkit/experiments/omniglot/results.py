"""What a sweep returns: one :class:`RunResult` per (method, n, seed) and :class:`SweepResults`, the whole sweep
with the summaries lesson 04 shows (mean ± sample std over seeds, the table beside the paper's numbers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from warpkit.experiments.omniglot.config import OmniglotConfig
from warpkit.experiments.omniglot.paper import METHOD_LABELS, PAPER_ACCURACY_25


@dataclass
class RunResult:
    """One (method, n, seed): meta-training, then evaluation on every test task."""

    method: str
    alphabets: int
    seed: int
    accuracy: float  # mean held-out accuracy over the test tasks
    task_accuracies: list[float]
    test_loss: float  # mean held-out loss
    adaptation_losses: list[float]  # mean over test tasks of the training-batch loss at steps 0..K (K = final)
    meta_history: list[dict] = field(default_factory=list)  # per meta-iteration: losses, warp objective, seconds
    seconds_meta_training: float = 0.0
    seconds_evaluation: float = 0.0
    validation_curve: list[list] = field(default_factory=list)  # [meta-iterations done, validation accuracy]
    selected_iteration: int | None = None  # the meta-iterations done at the point that was evaluated

    @property
    def seconds_per_meta_iteration(self) -> float:
        return self.seconds_meta_training / len(self.meta_history) if self.meta_history else float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


class SweepResults:
    """Every :class:`RunResult` of a sweep, with the summaries the notebook shows."""

    def __init__(self, config: OmniglotConfig, runs: Sequence[RunResult], source: str = "omniglot"):
        self.config, self.runs, self.source = config, list(runs), source

    def get(self, method: str, alphabets: int, seed: int) -> RunResult:
        for run in self.runs:
            if (run.method, run.alphabets, run.seed) == (method, alphabets, seed):
                return run
        raise KeyError(f"no run for method={method!r}, n={alphabets}, seed={seed}")

    def accuracies(self, method: str, alphabets: int | None = None) -> np.ndarray:
        """Accuracy of ``method`` at n = ``alphabets`` (default: the largest), one value per seed."""
        n = self.config.largest_n if alphabets is None else alphabets
        return np.array([r.accuracy for r in self.runs if r.method == method and r.alphabets == n])

    def by_seed(self, method: str, alphabets: int | None = None) -> dict[int, float]:
        """seed → accuracy of ``method`` at n = ``alphabets`` (default: the largest)."""
        n = self.config.largest_n if alphabets is None else alphabets
        return {r.seed: r.accuracy for r in self.runs if r.method == method and r.alphabets == n}

    def mean_std(self, method: str, alphabets: int | None = None) -> tuple[float, float]:
        values = self.accuracies(method, alphabets)
        if len(values) == 0:
            raise KeyError(f"no runs for {method!r} at n={alphabets}")
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def overall_mean(self, method: str) -> float:
        """Mean accuracy of ``method`` over every run of the sweep (all n and seeds)."""
        values = [r.accuracy for r in self.runs if r.method == method]
        if not values:
            raise KeyError(f"no runs for {method!r}")
        return float(np.mean(values))

    @property
    def methods(self) -> list[str]:
        return [m for m in self.config.methods if any(r.method == m for r in self.runs)]

    @property
    def alphabet_counts(self) -> list[int]:
        return sorted({r.alphabets for r in self.runs})

    def adaptation_curves(self, method: str, alphabets: int | None = None) -> np.ndarray:
        """``[seeds, K+1]`` mean training-loss curves of the test-task adaptations."""
        n = self.config.largest_n if alphabets is None else alphabets
        return np.array([r.adaptation_losses for r in self.runs if r.method == method and r.alphabets == n])

    def seconds_per_meta_iteration(self, method: str = "warp-leap") -> float:
        """Mean wall time of one meta-iteration of ``method`` over the whole sweep."""
        seconds = sum(r.seconds_meta_training for r in self.runs if r.method == method)
        count = sum(len(r.meta_history) for r in self.runs if r.method == method)
        return seconds / count if count else float("nan")

    def table(self) -> list[dict]:
        """One row per method: mean ± std over seeds of the held-out accuracy (%) at every n."""
        rows = []
        for method in self.methods:
            row: dict[str, Any] = {"method": method, "label": METHOD_LABELS[method]}
            for n in self.alphabet_counts:
                values = self.accuracies(method, n)
                if len(values):
                    mean, std = self.mean_std(method, n)
                    row[n] = (100 * mean, 100 * std, len(values))
            rows.append(row)
        return rows

    def format_table(self) -> str:
        """:meth:`table` as aligned text (accuracy % mean ± std over seeds)."""
        counts = self.alphabet_counts
        header = ["method"] + [f"n = {n}" for n in counts]
        lines = [header]
        for row in self.table():
            cells = [row["label"]]
            for n in counts:
                if n not in row:
                    cells.append("—")
                else:  # a std over one seed would be a meaningless "± 0.0"
                    cells.append(f"{row[n][0]:5.1f}" + (f" ± {row[n][1]:4.1f}" if row[n][2] > 1 else ""))
            lines.append(cells)
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        seeds = len(self.config.seeds)
        text.append(f"(held-out accuracy %, {'mean ± std over ' if seeds > 1 else ''}{seeds} seed{'s' if seeds > 1 else ''}; "
                    f"chance {100 / self.config.ways:.1f} %)")
        return "\n".join(text)

    def paper_table(self) -> list[dict]:
        """Our accuracy at the largest n next to the paper's at 25 alphabets (Flennerhag et al., 2020, Section 4.2)."""
        rows = []
        for method in self.methods:
            mean, std = self.mean_std(method)
            paper = PAPER_ACCURACY_25.get(method)
            rows.append({"method": method, "label": METHOD_LABELS[method], "ours": (100 * mean, 100 * std),
                         "ours_alphabets": self.config.largest_n, "paper": paper})
        return rows

    def format_paper_table(self) -> str:
        lines = [["method", f"this run (n = {self.config.largest_n}, {self.source})", "paper (n = 25, Omniglot)"]]
        for row in self.paper_table():
            paper = row["paper"]
            paper_text = "—" if paper is None else (f"{paper[0]:.1f}" + (f" ± {paper[1]:.1f}" if paper[1] else ""))
            ours = f"{row['ours'][0]:.1f}" + (f" ± {row['ours'][1]:.1f}" if len(self.config.seeds) > 1 else "")
            lines.append([row["label"], ours, paper_text])
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(text)

    def state(self) -> list[dict]:
        return [r.as_dict() for r in self.runs]


__all__ = ["RunResult", "SweepResults"]
