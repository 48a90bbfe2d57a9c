# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Omniglot, one alphabet per task: Warp-Leap against the paper's baselines
#
# The paper's main supervised experiment (Flennerhag et al., 2020, Section 4.2). Each task is a 20-way classification of
# the characters of one alphabet, learnt by many steps of SGD; meta-learning on a few alphabets should make
# *new* alphabets faster to learn. Warp-Leap meta-learns warp layers (a preconditioner, by the warp objective of
# Eq. 11 and Algorithm 2) *and* an initialisation (by Leap), and is compared with Leap, Reptile, FOMAML, MAML,
# multi-head finetuning and no pretraining under one protocol.
#
# The protocol lives in `warpkit.experiments.omniglot`: `PAPER_PROTOCOL` lists every setting of the paper's
# protocol with its source (the paper or the authors' code), `SIZES` the sizes you can run. The network is in
# `warpkit.models.omniglot_net`, the methods in `warpkit.engine.baselines`, the tasks in `warpkit.data.alphabet_tasks`.

# %% tags=["parameters"]
SEED = 0
DEVICE = "auto"
SIZE = "fast"  # one of "fast", "medium", "full", "gpu"
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True
CHECKPOINT = "auto"  # auto: a file under checkpoints/ at medium and full size, none at fast; empty: off; or a path
DATA = ""  # empty: the size decides (fast: Omniglot if found, else glyphs); or auto, omniglot, glyphs

# %%
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

import warpkit
from warpkit.engine.replay import last_replay
from warpkit.experiments import omniglot
from warpkit.kit.notebook import check_size
from warpkit.viz import omniglot as draw_data
from warpkit.viz import omniglot_results as draw

check_size(SIZE, tuple(omniglot.SIZES))
started, cpu_started = time.perf_counter(), time.process_time()
warpkit.record("seed", warpkit.seed_everything(SEED))
device = warpkit.pick_device(DEVICE)

# %%
if device.type == "cpu":
    torch.set_num_threads(1)  # small convolutions: extra threads only add synchronisation on a shared CPU
config = omniglot.config_for(SIZE, seed_offset=SEED, data_source=DATA or None)
experiment = omniglot.OmniglotExperiment(config, device=device)
checkpoint = omniglot.checkpoint_path(CHECKPOINT, SIZE, SEED)
reference = omniglot.read_reference("medium")
print(f"{SIZE}: {config.describe()}\ndevice {device}; checkpoint: {checkpoint or 'off'}")
display(Markdown(omniglot.data_banner(experiment.dataset)))
display(Markdown(omniglot.size_note(config, SIZE)))
display(Markdown(omniglot.evidence_note(SIZE, reference)))

# %% [markdown]
# ## a. The data: one alphabet = one task
#
# Omniglot holds 1623 handwritten characters from 50 alphabets, each drawn once by 20 different people
# (Lake et al., 2015). Images are shrunk to 28 × 28 (ink = 1). Only alphabets with at least `ways` characters can
# be tasks. A few of them are set aside **once** as test alphabets, the same ones whatever the number $n$ of
# training alphabets, the seed or the method. Of the rest, each seed keeps a few as **validation** alphabets
# (never trained on, used only to choose when to stop) and trains on the first $n$ of a seeded shuffle of the
# others, so the training sets grow by nesting.

# %%
alphabets = list(experiment.test_alphabets) + list(experiment.pool)
fig = draw_data.plot_alphabet_grid(experiment.dataset, alphabets, n_characters=12)
warpkit.save_figure(fig, "03_alphabets", SAVE_FIGS)
plt.show()
print("test alphabets (fixed):", ", ".join(experiment.test_alphabets))
print(f"validation alphabets of seed {config.seeds[0]}:", ", ".join(experiment.validation_alphabets(config.seeds[0])))
print("training pool:", ", ".join(experiment.pool))
warpkit.record("data_source", experiment.source)

# %% [markdown]
# **Notice.** The rows are whole writing systems: strokes, curvature and density differ between alphabets far
# more than between two characters of one alphabet. Learning a new *alphabet* is the transfer problem here.
#
# ## b. One task
#
# A task takes `ways` characters of one alphabet, labels them $0 \dots$ `ways`$-1$, and splits the 20 drawers
# into 15 training and 5 held-out drawers. The inner loop sees batches of training images, randomly rotated
# (0–360°), shifted (±20 %) and scaled (0.8–1.2) when augmentation is on; the score is the accuracy on the
# held-out drawers' images, never augmented.
#
# In the authors' code a training alphabet is *one fixed task*: its characters and labels are drawn once. With
# few training alphabets θ₀ can then simply memorise those labels. `fixed_training_tasks=False` **resamples**
# the task every time an alphabet is drawn: new characters, new label order, new drawer split, so that what θ₀
# and φ can learn is how to learn an alphabet, not its labels.

# %%
task = experiment.test_tasks()[0]
inputs, labels = task.sample_batch(0)
augmentation = "on" if config.augment else "off"
fig = draw_data.plot_batch(inputs[:20], labels[:20], n_columns=10,
                           title=f"{task.alphabet}: inner-loop batch 0 (augmentation {augmentation})")
warpkit.save_figure(fig, "03_task_batch", SAVE_FIGS)
plt.show()
print(task, "| training images", tuple(task.train_inputs.shape), "| held-out images", tuple(task.test_inputs.shape))
print("training tasks:", "fixed per alphabet" if config.fixed_training_tasks else "resampled every meta-iteration")

# %% [markdown]
# ## c. The warped network: which parameters are θ and which are φ
#
# The task learner is the paper's Omniglot network:
# 4 × [conv 3×3 → max-pool → BatchNorm → ReLU] → linear head.
# Its convolutions, BatchNorm scales and shifts and the head are the **task parameters θ**: the only ones SGD
# moves while learning a task. Warp-Leap inserts a warp layer ω after every block; their
# **warp parameters φ** stay frozen during a task and are meta-learned across tasks. Backpropagation into θ passes
# through the warps above it, so the task's gradient arrives *preconditioned*:
# $\theta \leftarrow \theta - \alpha\, P(\theta;\phi)\,\nabla L(\theta)$, with $P$ never formed.
#
# Warps start at the identity, so before meta-training the warped network must adapt *exactly* like its
# unwarped twin from the same θ. Check it:

# %%
counts = experiment.parameter_counts()
warpkit.record("theta_parameters", counts["theta"])
warpkit.record("phi_parameters", counts["phi"])
print(omniglot.describe_parameters(experiment.model_factory(warp=config.warp)))
check = omniglot.warp_vs_plain_at_initialisation(experiment, seed=config.seeds[0], steps=min(5, config.inner_steps))
print(f"largest |loss difference| over {len(check['warped'])} steps, warped vs plain: {check['max_difference']:.1e}")
warpkit.record("identity_warp_max_difference", check["max_difference"])

# %% [markdown]
# ## d. Meta-training every method
#
# For every seed and every number $n$ of training alphabets, each method meta-trains on meta-batches of tasks
# from the $n$ alphabets, then adapts a fresh copy of what it learnt to every test task. What differs is only
# what is meta-learned:
#
# | method | meta-learned | by |
# |---|---|---|
# | **Warp-Leap** | φ and θ₀ | the warp objective (Eq. 11, Algorithm 2) + Leap without its loss term (the WarpGrad code) |
# | Leap | θ₀ | full Leap (Flennerhag et al., 2019): path length on the loss surface, with its stabiliser |
# | Reptile | θ₀ | moving toward the adapted parameters (Nichol et al., 2018) |
# | FOMAML | θ₀ | the meta-loss gradient at the end of the task's run, meta-loss on the task's held-out split |
# | MAML | θ₀ | backpropagation through 5 inner steps (Finn et al., 2017), meta-loss on the held-out split |
# | Multi-head finetuning | body | SGD on all training alphabets, one head per alphabet |
# | No pretraining | nothing | — |
#
# **Replay schedule.** Algorithm 2 buffers every point θₖ of every task's trajectory, then replays them: the
# paper's schedule takes **one φ-step per buffered point** (`replay_chunk_size = 1`). A chunk of P points
# averaged into one φ-step is a *different optimiser*: P times fewer φ-steps per meta-iteration, each on an
# averaged gradient (section h measures how far each schedule moves φ). Every meta-iteration records |Δφ| and |Δθ₀|.
#
# **Fair comparison.** At test time every method takes the same number of steps with the same step size and
# batch size, from **one** head shared by all test tasks (never a random head per task for some methods only).
# Multi-head finetuning keeps one head per training alphabet, which only means something if an alphabet's labels
# stay put: it therefore always trains on the *fixed* per-alphabet tasks (with labels reshuffled every
# iteration a head per alphabet would have no fixed meaning), while the meta-learners use the size's task
# setting; its test head is the mean of its trained heads. **Model selection** is the same for every method: with `model_selection = "best"` each
# run is validated on its validation alphabets every few meta-iterations and the best point is the one tested.
#
# With a `CHECKPOINT` the sweep saves its state as it goes, and running this cell again resumes instead of
# restarting (at `medium` and `full` size one is kept by default under `checkpoints/`).

# %%
results = experiment.run(checkpoint=checkpoint, show_progress=SHOW_PROGRESS)
fig = draw.plot_meta_training(results)
warpkit.save_figure(fig, "03_meta_training", SAVE_FIGS)
plt.show()
warpkit.record("seconds_per_meta_iteration", round(results.seconds_per_meta_iteration("warp-leap"), 3))
warpkit.record("replay", last_replay())

# %% [markdown]
# **What to look for.** The dashed lines are the meta-batch's loss at θ₀, the solid ones after the inner loop
# (MAML is missing: it only ever runs its 5-step differentiable loop). With fixed tasks a falling dashed line
# means θ₀ fits the training alphabets' labels; with resampled tasks it cannot, and the solid line is what
# matters. Fitting the training alphabets is not the goal; what transfers to *new* alphabets is measured below.
#
# ### Is the warp learning?
#
# |Δφ| is how far one meta-iteration moved the warp parameters, |Δθ₀| how far it moved the initialisation
# (Warp-Leap against Leap, every seed at the largest $n$).

# %%
motion = omniglot.warp_motion(results)
fig = draw.plot_warp_motion(motion, title=f"Warp-Leap and Leap, n = {config.largest_n}: change per meta-iteration")
warpkit.save_figure(fig, "03_warp_motion", SAVE_FIGS)
plt.show()
phi_total = omniglot.total_change(motion["Warp-Leap |Δφ|"])
warpkit.record("phi_moved", round(phi_total, 4))
display(Markdown(omniglot.describe_motion(motion)))

# %% [markdown]
# ## e. Held-out accuracy
#
# Accuracy on the held-out drawers of the test alphabets, scored **non-transductively**: BatchNorm uses the
# running statistics gathered while adapting (`model.eval()` in the authors' code), so each held-out image is
# classified on its own. (`evaluation_batchnorm = "transductive"` would normalise with the held-out batch's own
# statistics, letting the test images inform each other; it gives other numbers.)

# %%
print(results.format_table())
fig = draw.plot_accuracy_vs_alphabets(results)
warpkit.save_figure(fig, "03_accuracy_vs_alphabets", SAVE_FIGS)
plt.show()
summary = omniglot.compare_methods({m: results.by_seed(m) for m in results.methods})
display(Markdown(omniglot.describe_comparison(summary, f"this run at n = {config.largest_n}")))

# %%
for method in results.methods:
    mean, std = results.mean_std(method)
    warpkit.record(f"acc_{omniglot.record_name(method)}", round(mean, 4))
    warpkit.record(f"acc_std_{omniglot.record_name(method)}", round(std, 4))
    warpkit.record(f"acc_mean_{omniglot.record_name(method)}", round(results.overall_mean(method), 4))
warpkit.record("alphabets_largest", config.largest_n)
warpkit.record("chance", 1 / config.ways)

# %% [markdown]
# ## f. This run, the reference run and the paper, side by side
#
# The reference run is the `medium` size made once with `python -m warpkit reference 03 --size medium` and
# committed as `results/03_omniglot_medium.json` (its command, commit, machine and configuration are in the
# file). The paper's numbers are for full Omniglot and 25 training alphabets. Error bars: std over seeds.

# %%
fig = draw.plot_run_reference_paper(results, reference)
warpkit.save_figure(fig, "03_run_reference_paper", SAVE_FIGS)
plt.show()
print(results.format_paper_table())
display(Markdown(omniglot.describe_reference(reference)))
warpkit.record("reference_present", reference is not None)

# %% [markdown]
# ## g. Adaptation with and without warps
#
# The training-batch loss while adapting to the test alphabets, at the largest $n$: Warp-Leap (warped), Leap
# (an initialisation learner, no warps) and no pretraining in bold, the others faint. All methods take identical
# plain SGD steps on θ; only Warp-Leap's gradients pass through the meta-learned warps.

# %%
fig = draw.plot_adaptation_curves(results)
warpkit.save_figure(fig, "03_adaptation_curves", SAVE_FIGS)
plt.show()
shown = [m for m in ("warp-leap", "leap", "no-pretraining") if m in results.methods]
curves = {m: results.adaptation_curves(m).mean(0) for m in shown}
for method, curve in curves.items():
    warpkit.record(f"final_train_loss_{omniglot.record_name(method)}", round(float(curve[-1]), 4))
display(Markdown(omniglot.describe_adaptation(curves)))

# %% [markdown]
# ## h. The replay schedule moves φ: one step per point against chunks
#
# WarpGrad's meta-objective is a sum over the points θₖ of the tasks' own trajectories, never a backpropagation
# through them. The authors' code replays the buffered points one at a time, one φ-step each. Stacking a chunk of
# points into one vectorised call (`torch.func.vmap`) can be cheaper per point, but a chunk gives *one* φ-step on
# an averaged gradient. Below, Warp-Leap meta-trains a few iterations from the same state on the same tasks under
# both schedules.

# %%
iterations = min(config.meta_iterations, 3)
comparison = omniglot.compare_replay_schedules(experiment, iterations=iterations)
fig = draw.plot_replay_schedules(comparison)
warpkit.save_figure(fig, "03_replay_schedules", SAVE_FIGS)
plt.show()
display(Markdown(omniglot.describe_schedules(comparison)))
one, chunked = comparison["schedules"].values()
warpkit.record("replay_phi_ratio", round(sum(one["warp_change"]) / sum(chunked["warp_change"]), 3))
warpkit.record("replay_warp_steps_one_point", one["warp_steps"])

# %%
warpkit.record("size", SIZE)
warpkit.record("seconds", round(time.perf_counter() - started, 1))
warpkit.record("cpu_seconds", round(time.process_time() - cpu_started, 1))
