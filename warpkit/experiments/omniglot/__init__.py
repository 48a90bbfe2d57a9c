"""Lesson 04's experiment: Omniglot with one alphabet per task, Warp-Leap against the paper's baselines
(Flennerhag et al., 2020, Section 4.2).

One concept per module:

* :mod:`~warpkit.experiments.omniglot.paper`: the paper's protocol, setting by setting with its source
  (:data:`PAPER_PROTOCOL`), its reported numbers, and the methods compared;
* :mod:`~warpkit.experiments.omniglot.config`: :class:`OmniglotConfig` and the runnable :data:`SIZES`
  (``full`` equals the protocol except :data:`FULL_DEPARTURES`);
* :mod:`~warpkit.experiments.omniglot.tasks`: test, validation and training alphabets, and the tasks drawn
  from them;
* :mod:`~warpkit.experiments.omniglot.experiment`: :class:`OmniglotExperiment`: build a method, meta-train it
  for one seed and n (validation and model selection), evaluate it on the test tasks;
* :mod:`~warpkit.experiments.omniglot.sweep`: every (seed, n, method), checkpointed and resumable through
  :class:`warpkit.kit.sweep.ResumableRun`;
* :mod:`~warpkit.experiments.omniglot.results`: :class:`RunResult`, :class:`SweepResults` and their tables;
* :mod:`~warpkit.experiments.omniglot.replay`: the replay schedule of Algorithm 2, measured (|Δφ|, φ-steps,
  accuracy, seconds);
* :mod:`~warpkit.experiments.omniglot.reference`: the committed reference run (``results/03_omniglot_medium.json``);
* :mod:`~warpkit.experiments.omniglot.report`: the lesson's sentences, generated from recorded numbers.

Everything a lesson, test or benchmark uses is re-exported here: ``from warpkit.experiments.omniglot import X``.
"""

from warpkit.experiments.omniglot.config import (EVALUATION_MODES, SIZES, OmniglotConfig, checkpoint_path,
                                                 config_for, differences_from_paper, paper_config)
from warpkit.experiments.omniglot.experiment import (OmniglotExperiment, build_method, loss_fn,
                                                     warp_vs_plain_at_initialisation)
from warpkit.experiments.omniglot.paper import (FULL_DEPARTURES, METHOD_LABELS, METHODS_COMPARED, NOT_PROTOCOL,
                                                PAPER_ACCURACY_25, PAPER_PROTOCOL, PAPER_WARP_LEAP_BY_ALPHABETS,
                                                ProtocolSetting, record_name)
from warpkit.experiments.omniglot.reference import (REFERENCE_LESSON, read_reference, reference_record,
                                                    reference_runs)
from warpkit.experiments.omniglot.replay import compare_replay_schedules
from warpkit.experiments.omniglot.report import (compare_methods, data_banner, describe_adaptation,
                                                 describe_comparison, describe_motion, describe_parameters,
                                                 describe_reference, describe_schedules, evidence_note, size_note,
                                                 total_change, warp_motion)
from warpkit.experiments.omniglot.results import RunResult, SweepResults
from warpkit.experiments.omniglot.sweep import run_sweep, sweep_fingerprint
from warpkit.experiments.omniglot.tasks import AlphabetTaskInstance, OmniglotTasks

__all__ = [
    "EVALUATION_MODES", "FULL_DEPARTURES", "NOT_PROTOCOL", "PAPER_PROTOCOL", "ProtocolSetting", "REFERENCE_LESSON",
    "compare_methods", "compare_replay_schedules", "describe_adaptation", "describe_comparison",
    "describe_motion", "describe_reference", "describe_schedules", "evidence_note", "paper_config", "total_change",
    "warp_motion", "read_reference", "reference_record", "reference_runs",
    "METHODS_COMPARED", "METHOD_LABELS", "PAPER_ACCURACY_25", "PAPER_WARP_LEAP_BY_ALPHABETS", "SIZES",
    "AlphabetTaskInstance", "OmniglotConfig", "OmniglotExperiment", "OmniglotTasks", "RunResult", "SweepResults",
    "checkpoint_path", "config_for", "data_banner", "describe_parameters", "differences_from_paper", "size_note",
    "build_method", "loss_fn", "record_name", "run_sweep", "sweep_fingerprint", "warp_vs_plain_at_initialisation",
]
