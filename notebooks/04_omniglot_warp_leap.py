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
# The paper's main supervised experiment. Each task is a 20-way classification of the characters of one
# alphabet, learnt by 100 steps of SGD; meta-learning on a few alphabets should make the held-out alphabets faster
# to learn. Warp-Leap meta-learns warp layers (a preconditioner) *and* an initialisation, and is compared with
# Leap, Reptile, FOMAML, MAML, multi-head finetuning and no pretraining under one protocol (Flennerhag et al., 2020, Section 4.2).
#
# The protocol lives in `warpkit.experiments.omniglot` (its docstring lists every choice), the network in
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
from warpkit.experiments import omniglot
from warpkit.kit.notebook import check_size
from warpkit.viz import omniglot as draw_data
from warpkit.viz import omniglot_results as draw

check_size(SIZE, tuple(omniglot.SIZES))
started, cpu_started = time.perf_counter(), time.process_time()
warpkit.record("seed", warpkit.seed_everything(SEED))
device = warpkit.pick_device(DEVICE)
if device.type == "cpu":
    torch.set_num_threads(1)  # small convolutions: extra threads only add synchronisation on a shared CPU
config = omniglot.config_for(SIZE, seed_offset=SEED, data_source=DATA or None)
experiment = omniglot.OmniglotExperiment(config, device=device)
checkpoint = omniglot.checkpoint_path(CHECKPOINT, SIZE, SEED)
print(f"{SIZE}: {config.describe()}\ndevice {device}; checkpoint: {checkpoint or 'off'}")
display(Markdown(omniglot.data_banner(experiment.dataset)))
display(Markdown(omniglot.size_note(config, SIZE)))

# %% [markdown]
# ## a. The data: one alphabet = one task
#
# Omniglot holds 1623 handwritten characters from 50 alphabets, each drawn once by 20 different people
# (Lake et al., 2015). Images are shrunk to 28 × 28 (ink = 1). Only alphabets with at least `ways` characters can
# be tasks. A few of them are set aside **once** as test alphabets, the same ones whatever the number $n$ of
# training alphabets, the seed or the method; the training alphabets are the first $n$ of a seeded shuffle of the
# rest, so the sets grow by nesting.

# %%
alphabets = list(experiment.test_alphabets) + list(experiment.pool)
fig = draw_data.plot_alphabet_grid(experiment.dataset, alphabets, n_characters=12)
warpkit.save_figure(fig, "03_alphabets", SAVE_FIGS)
plt.show()
print("test alphabets (fixed):", ", ".join(experiment.test_alphabets))
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

# %%
task = experiment.test_tasks()[0]
inputs, labels = task.sample_batch(0)
augmentation = "on" if config.augment else "off"
fig = draw_data.plot_batch(inputs[:20], labels[:20], n_columns=10,
                           title=f"{task.alphabet}: inner-loop batch 0 (augmentation {augmentation})")
warpkit.save_figure(fig, "03_task_batch", SAVE_FIGS)
plt.show()
print(task, "| training images", tuple(task.train_inputs.shape), "| held-out images", tuple(task.test_inputs.shape))

# %% [markdown]
# ## c. The warped network: which parameters are θ and which are φ
#
# The task learner is the paper's Omniglot network:
# 4 × [conv 3×3 → max-pool → BatchNorm → ReLU] → linear head.
# Its convolutions, BatchNorm scales and shifts and the head are the **task parameters θ**: the only ones SGD
# moves while learning a task. Warp-Leap inserts a 3×3 convolution **warp layer** ω after every block; their
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
# | **Warp-Leap** | φ and θ₀ | the warp objective (Eq. 11, replayed in batches) + Leap |
# | Leap | θ₀ | shortening the learning path, Σₖ Δθₖ/‖Δθₖ‖ |
# | Reptile | θ₀ | moving toward the adapted parameters |
# | FOMAML | θ₀ | the loss gradient at the end of the task's run |
# | MAML | θ₀ | backpropagation through 5 inner steps |
# | Multi-head finetuning | body | SGD on all training alphabets, one head each |
# | No pretraining | nothing | — |
#
# At test time every method takes the same number of steps with the same step size and batch size, from **one**
# head shared by all test tasks (never a random head per task for some methods only). That includes MAML: it
# meta-trains through only 5 inner steps (backpropagating through more costs memory linear in the steps, the
# limit WarpGrad removes) but is tested with the same full-length adaptation as everyone, as in the paper.
#
# With a `CHECKPOINT` the sweep saves its state as it goes, and running this cell again resumes instead of
# restarting (at `medium` and `full` size one is kept by default under `checkpoints/`).

# %%
results = experiment.run(checkpoint=checkpoint, show_progress=SHOW_PROGRESS)
fig = draw.plot_meta_training(results)
warpkit.save_figure(fig, "03_meta_training", SAVE_FIGS)
plt.show()
warpkit.record("seconds_per_meta_iteration", round(results.seconds_per_meta_iteration("warp-leap"), 3))

# %% [markdown]
# **Notice.** The dashed lines are the meta-batch's loss at θ₀, the solid ones after the inner loop (MAML is
# missing: it only ever runs its 5-step differentiable loop). For Warp-Leap, Leap, Reptile and multi-head
# finetuning the dashed line falls: θ₀ itself comes to fit the training alphabets, whose labels are fixed per
# alphabet as in the authors' code. Fitting the training alphabets is not the goal; what transfers to *new*
# alphabets is measured next.
#
# ## e. Held-out accuracy against the number of training alphabets

# %%
print(results.format_table())
fig = draw.plot_accuracy_vs_alphabets(results)
warpkit.save_figure(fig, "03_accuracy_vs_alphabets", SAVE_FIGS)
plt.show()
for method in results.methods:
    mean, std = results.mean_std(method)
    warpkit.record(f"acc_{omniglot.record_name(method)}", round(mean, 4))
    warpkit.record(f"acc_std_{omniglot.record_name(method)}", round(std, 4))
    warpkit.record(f"acc_mean_{omniglot.record_name(method)}", round(results.overall_mean(method), 4))
warpkit.record("alphabets_largest", config.largest_n)
warpkit.record("chance", 1 / config.ways)

# %% [markdown]
# **Notice.** Compare each method with *no pretraining* (flat: it learns nothing from the training alphabets) and
# with *Leap*, which is Warp-Leap without the warps. The right panel shows what the paper reports on full
# Omniglot after 1000 meta-iterations; at the `fast` size (few steps, few alphabets, one or two seeds) expect the
# order, not the numbers, and expect wide error bars.
#
# ## f. Adaptation with and without warps
#
# The training-batch loss while adapting to the test alphabets, at the largest $n$: Warp-Leap (warped), Leap
# (the same initialisation learner, no warps) and no pretraining in bold, the others faint.

# %%
fig = draw.plot_adaptation_curves(results)
warpkit.save_figure(fig, "03_adaptation_curves", SAVE_FIGS)
plt.show()
shown = [m for m in ("warp-leap", "leap", "no-pretraining") if m in results.methods]
curves = {m: results.adaptation_curves(m).mean(0) for m in shown}
for method, curve in curves.items():
    warpkit.record(f"final_train_loss_{omniglot.record_name(method)}", round(float(curve[-1]), 4))

# %% [markdown]
# **Notice.** All methods take identical plain SGD steps on θ; only Warp-Leap's gradients pass through the
# meta-learned warps. A steeper early descent for the warped learner is the preconditioning at work.
#
# ## g. The paper's reported numbers, side by side

# %%
print(results.format_paper_table())
fig = draw.plot_paper_table(results)
warpkit.save_figure(fig, "03_paper_table", SAVE_FIGS)
plt.show()

# %% [markdown]
# **Notice.** The paper: full Omniglot, 25 training alphabets, 64 filters, 100 steps, 1000 meta-iterations of 20
# tasks, 10 seeds. This run: the size printed in the first cell. Numbers are comparable only at `full` size.
#
# ## h. Why WarpGrad can afford 100 steps: batched replay
#
# WarpGrad's meta-objective is a sum over the points θₖ of the tasks' own trajectories, never a backpropagation
# through them. The authors' code replays the 20 × 100 buffered points one at a time (one φ-step each);
# warpkit stacks a chunk of points and replays it in one vectorised call (`torch.func.vmap`). One meta-iteration,
# from the same state on the same batches, both ways:

# %%
timing = experiment.time_meta_iteration()
fig = draw.plot_replay_speed(timing)
warpkit.save_figure(fig, "03_replay_speed", SAVE_FIGS)
plt.show()
warpkit.record("seconds_meta_iteration_batched", round(timing["variants"]["batched"]["seconds"], 3))
warpkit.record("seconds_meta_iteration_one_point", round(timing["variants"]["one_point"]["seconds"], 3))
warpkit.record("replay_speedup_in_meta_iteration", round(timing["replay_speedup_in_meta_iteration"], 3))
warpkit.record("replay_speedup", round(timing["replay_speedup"], 3))

# %% [markdown]
# **Notice.** The adaptation part is the same in both; the replay part is where batching pays. On this CPU the
# gain is modest because tiny convolutions cost little next to Python's per-call overhead; on a GPU one chunk of
# points keeps the device busy where a single point leaves it idle, so the gap should grow (not measured here).
# Chunked replay is also a different optimiser: fewer φ-steps, each on a gradient averaged over a chunk, which is
# why the warp learning rate is a per-size setting.

# %%
warpkit.record("size", SIZE)
warpkit.record("seconds", round(time.perf_counter() - started, 1))
warpkit.record("cpu_seconds", round(time.process_time() - cpu_started, 1))
