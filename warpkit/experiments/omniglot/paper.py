"""The paper's Omniglot protocol and reported numbers (Flennerhag et al., 2020, Section 4.2), setting by setting.

:data:`PAPER_PROTOCOL` lists every setting of the protocol with its source (the paper, or the authors' code where
the paper is silent; where the two disagree the paper wins and the source says so). The runnable sizes are
separate (:data:`warpkit.experiments.omniglot.config.SIZES`): ``full`` equals this table field by field except
:data:`FULL_DEPARTURES`, and ``tests/test_omniglot_experiment.py`` compares every field.

The methods of the comparison and their labels live here too, since the protocol names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the methods of the comparison, in the order tables and figures list them
METHODS_COMPARED = ("warp-leap", "leap", "reptile", "fomaml", "maml", "multi-head", "no-pretraining")
METHOD_LABELS = {
    "warp-leap": "Warp-Leap", "leap": "Leap", "reptile": "Reptile", "fomaml": "FOMAML", "maml": "MAML",
    "multi-head": "Multi-head finetuning", "no-pretraining": "No pretraining", "kfac": "K-FAC",
}
#: methods with nothing to meta-train: they adapt from the random initialisation (K-FAC is not in
#: METHODS_COMPARED, so that the medium reference keeps its configuration: results/omniglot_kfac_medium.json)
NOT_META_TRAINED = ("no-pretraining", "kfac")
#: held-out accuracy (%) as reported in the WarpGrad paper for 25 training alphabets on full Omniglot
#: (Flennerhag et al., 2020, Section 4.2; quoted by secondary sources; "—" = not quoted there)
PAPER_ACCURACY_25 = {"warp-leap": (83.6, 1.9), "multi-head": (76.4, None), "leap": (75.5, None),
                     "reptile": (70.8, None), "maml": (56.7, None)}
#: Warp-Leap's reported held-out accuracy (%) against the number of training alphabets (Flennerhag et al., 2020, Section 4.2)
PAPER_WARP_LEAP_BY_ALPHABETS = {1: 49.5, 3: 68.8, 5: 75.0, 10: 81.2, 15: 82.7, 20: 82.0, 25: 83.8}


def record_name(method: str) -> str:
    """``"warp-leap"`` → ``"warp_leap"`` (what the notebook records as ``acc_<name>``)."""
    return method.replace("-", "_")


@dataclass(frozen=True)
class ProtocolSetting:
    """One setting of the paper's Omniglot protocol: its value and where it comes from."""

    value: Any
    source: str


_WG_CODE = "authors' WarpGrad code (src/omniglot)"
_LEAP_CODE = "authors' Leap code (Flennerhag et al., 2019)"
#: The WarpGrad paper's Omniglot protocol (Flennerhag et al., 2020, §4 and its appendix on the Omniglot
#: experiment), setting by setting, each with its source. Where the paper is silent the authors' code decides;
#: where paper and code disagree the paper wins and the source says so. Sizes are separate (:data:`SIZES`);
#: ``full`` must equal this table field by field except for :data:`FULL_DEPARTURES` (tested).
PAPER_PROTOCOL: dict[str, ProtocolSetting] = {
    "ways": ProtocolSetting(20, "§4 (Omniglot): 20-way tasks, one alphabet per task; alphabets with < 20 characters dropped"),
    "train_images": ProtocolSetting(15, f"{_WG_CODE}: 5 of 20 images per character held out (HOLD_OUT = 5)"),
    "batch_size": ProtocolSetting(128, f"{_WG_CODE}: task batch size 128 (the Leap code used 20)"),
    "augment": ProtocolSetting(True, f"{_WG_CODE}: random affine, rotation 0-360°, shift 0.2, scale 0.8-1.2"),
    "fixed_training_tasks": ProtocolSetting(
        True, f"{_WG_CODE}: each training alphabet's 20 characters and labels are drawn once"),
    "multi_head_fixed_tasks": ProtocolSetting(True, f"{_WG_CODE}: multi-head finetuning keeps one head per alphabet"),
    "test_alphabets": ProtocolSetting(10, f"§4 (Omniglot) and {_WG_CODE}: 10 held-out test alphabets"),
    "test_repeats": ProtocolSetting(1, f"{_WG_CODE}: one task per test alphabet"),
    "validation_alphabets": ProtocolSetting(
        11, f"{_WG_CODE}: the alphabets left after n training and 10 test ones (46 − 10 − 25 = 11 at n = 25)"),
    "validation_repeats": ProtocolSetting(1, f"{_WG_CODE}: one task per validation alphabet"),
    "validation_every": ProtocolSetting(20, f"{_WG_CODE}: validation every 20 meta-iterations (test_ival)"),
    "model_selection": ProtocolSetting(
        "final", f"{_WG_CODE}: the test uses the model saved at the last validation, i.e. the final one"),
    "alphabet_counts": ProtocolSetting((1, 3, 5, 10, 15, 20, 25), "§4 (Omniglot): n ∈ {1, 3, 5, 10, 15, 20, 25} alphabets"),
    "seeds": ProtocolSetting(tuple(range(10)), "§4 (Omniglot): mean ± std over 10 seeds"),
    "data_sets": ProtocolSetting(("images_background", "images_evaluation"),
                                 "§4 (Omniglot): all 50 Omniglot alphabets (Lake et al., 2015)"),
    "filters": ProtocolSetting(64, f"§4 (Omniglot) and {_WG_CODE}: 4 conv blocks of 64 filters"),
    "warp": ProtocolSetting("conv3", f"§4 (Omniglot) and {_WG_CODE}: one 3×3 conv warp (64 filters) after each block"),
    "inner_steps": ProtocolSetting(100, "§4 (Omniglot): 100 SGD steps per task"),
    "inner_lr": ProtocolSetting(0.1, f"{_WG_CODE}: inner SGD lr 0.1"),
    "evaluation_batchnorm": ProtocolSetting(
        "running", f"{_WG_CODE} and {_LEAP_CODE}: model.eval() on held-out images (running statistics)"),
    "methods": ProtocolSetting(METHODS_COMPARED, "§4 (Omniglot): Warp-Leap against Leap, Reptile, FOMAML, MAML, "
                                                 "finetuning and no pretraining (the paper's K-FAC comparison is "
                                                 "not implemented in warpkit)"),
    "meta_iterations": ProtocolSetting(1000, f"{_WG_CODE}: 1000 meta-training steps"),
    "meta_batch_size": ProtocolSetting(20, f"{_WG_CODE}: 20 tasks per meta-batch"),
    "warp_objective": ProtocolSetting("exact", "§3, Eq. 11 (the reported Warp-Leap; Eq. 12 is the first-order "
                                               "ablation)"),
    "warp_lr": ProtocolSetting(0.1, f"{_WG_CODE}: outer SGD lr 0.1"),
    "warp_optimizer": ProtocolSetting("sgd", f"{_WG_CODE}: outer optimiser SGD"),
    "init_lr": ProtocolSetting(0.1, f"{_WG_CODE}: outer SGD lr 0.1"),
    "init_optimizer": ProtocolSetting("sgd", f"{_WG_CODE}: outer optimiser SGD"),
    "maml_init_lr": ProtocolSetting(0.5, f"{_WG_CODE}: MAML and FOMAML run with outer lr 0.5"),
    "maml_meta_split": ProtocolSetting("held-out", f"{_WG_CODE}: MAML's meta loss on the task's held-out split"),
    "replay_chunk_size": ProtocolSetting(1, "Algorithm 2 as run by the authors' code: one φ-step per buffered point"),
    "replay_epochs": ProtocolSetting(1, "Algorithm 2 as run by the authors' code: one pass over the buffer"),
    "maml_steps": ProtocolSetting(5, "§4 (Omniglot): MAML meta-trains through 5 inner steps"),
    "leap_simplified": ProtocolSetting(False, f"§4 (Omniglot): the Leap baseline is the {_LEAP_CODE}, loss term kept"),
    "warp_leap_simplified": ProtocolSetting(True, f"{_WG_CODE}: Warp-Leap's θ_0 by Leap without the loss term"),
    "leap_stabilizer": ProtocolSetting(True, f"{_LEAP_CODE}: stabiliser on (its default)"),
}

#: settings of OmniglotConfig that are not part of the protocol: where data lives, how a run is computed
#: (replay batching gives the same gradient), checkpointing, and which fixed alphabets are chosen
NOT_PROTOCOL = ("split_seed", "data_source", "replay", "checkpoint_every")

#: deliberate departures of the ``full`` size from :data:`PAPER_PROTOCOL`, each with its reason
FULL_DEPARTURES: dict[str, str] = {
    "model_selection": "warpkit keeps the best validation point (the authors test the last one): longer "
                       "meta-training can then never make the reported numbers worse",
}

#: every protocol setting in words, for the lesson's size note
READABLE = {
    "ways": "ways per task", "train_images": "training images per character", "batch_size": "batch size",
    "augment": "augmentation", "test_alphabets": "test alphabets", "test_repeats": "tasks per test alphabet",
    "validation_alphabets": "validation alphabets", "validation_repeats": "tasks per validation alphabet",
    "validation_every": "meta-iterations between validation points", "model_selection": "model selection",
    "alphabet_counts": "numbers of training alphabets n", "seeds": "seeds", "data_sets": "Omniglot sets",
    "filters": "filters per conv layer", "warp": "warp layers", "inner_steps": "SGD steps per task",
    "inner_lr": "SGD step size", "evaluation_batchnorm": "BatchNorm at evaluation", "methods": "methods",
    "meta_iterations": "meta-iterations", "meta_batch_size": "tasks per meta-batch",
    "warp_objective": "warp objective", "warp_lr": "warp learning rate", "warp_optimizer": "warp meta-optimiser",
    "init_lr": "initialisation learning rate", "init_optimizer": "initialisation meta-optimiser",
    "maml_init_lr": "FOMAML/MAML learning rate", "maml_meta_split": "FOMAML/MAML meta-loss split",
    "replay_chunk_size": "buffered points per φ-step", "replay_epochs": "φ-passes over the buffer",
    "maml_steps": "MAML inner steps", "leap_simplified": "simplified Leap baseline",
    "warp_leap_simplified": "simplified Leap in Warp-Leap", "leap_stabilizer": "Leap stabiliser",
    "fixed_training_tasks": "one fixed task per training alphabet",
    "multi_head_fixed_tasks": "multi-head finetuning on fixed tasks",
}

__all__ = ["FULL_DEPARTURES", "METHODS_COMPARED", "METHOD_LABELS", "NOT_PROTOCOL", "PAPER_ACCURACY_25",
           "PAPER_PROTOCOL", "PAPER_WARP_LEAP_BY_ALPHABETS", "READABLE", "ProtocolSetting", "record_name"]
