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
# # 06 · Continual learning: a Warp-MLP against catastrophic forgetting
#
# A learner fits five sine waves, one segment of the input interval after another, and never goes back: plain SGD
# overwrites what it learnt before. WarpGrad meta-learns warp layers whose preconditioning steers each new
# segment's learning away from the old ones. The authors never released code for this experiment; this is a
# public implementation (Flennerhag et al., 2020, Section 4.4), compared with a meta-learned initialisation and plain SGD.
#
# The maths lives in the docstrings of `warpkit.data.sine` (the task and its meta loss), `warpkit.models.mlp`
# (the network) and `warpkit.experiments.continual` (the experiment and the forgetting matrix).

# %% tags=["parameters"]
SEED = 0
DEVICE = "auto"
SIZE = "fast"  # one of "fast", "gpu", "full"
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True
CHECKPOINT = ""  # path of a meta-training checkpoint to save and resume from (empty: off)

# %%
import time

import torch
from IPython.display import display

import warpkit
from warpkit.experiments import continual
from warpkit.kit.checkpoint import Checkpointer
from warpkit.data.sine import weighted_mse
from warpkit.kit.notebook import check_size
from warpkit.viz import continual as draw
from warpkit.engine.replay import last_replay
from warpkit.engine.warp import count_parameters, task_parameters, warp_parameters

# %%
check_size(SIZE, tuple(continual.SIZES))
started, cpu_started = time.perf_counter(), time.process_time()
torch.set_num_threads(1)  # tiny networks: extra threads only add synchronisation
warpkit.defer_records()  # recorded values are shown once, as a table, at the end of the lesson
warpkit.record("seed", warpkit.seed_everything(SEED))
device = warpkit.pick_device(DEVICE)
config = continual.SIZES[SIZE]
print(f"{SIZE}: {config.meta_iterations} meta-iterations × {config.meta_batch_size} sequences, "
      f"{config.steps_per_subtask} SGD steps per sub-task (K = {config.inner_steps}), α = {config.inner_lr}, "
      f"device {device}")

# %% [markdown]
# ## a. The task: five sine waves on five consecutive segments
#
# The interval $[-5, 5]$ is cut into $T = 5$ segments $S_1, \dots, S_5$. A continual task draws for every sub-task
# $t$ its own wave $y_t(x) = A_t \sin(x + \varphi_t)$ (amplitude and phase uniform at random) and sub-task $t$ is
# regression of $y_t$ on $S_t$. The learner takes `steps_per_subtask` SGD steps on sub-task 1 (batches from $S_1$),
# then the same number on sub-task 2, and so on, never revisiting: $K = 5 \times$ `steps_per_subtask` steps in all.
# Below, three sequences: each segment's wave in bold, and (faint) how that wave would continue elsewhere.

# %%
train_sampler = config.sampler(seed=SEED, device=device)  # meta-training: a fresh stream of sequences
validation = config.sampler(seed=SEED + 20_000, device=device).sample_many(config.num_validation)
held_out = config.sampler(seed=SEED + 10_000, device=device).sample_many(config.num_held_out)  # the test
fig = draw.plot_task_sequences(held_out[:3])
warpkit.show_figure(fig, "06_task_sequences", SAVE_FIGS)

# %% [markdown]
# **Notice.** The target over the whole interval is piecewise, with jumps at the segment borders: nothing in
# segment 1 predicts segment 2. Remembering is the only way to be right on all five at the end.
#
# ## b. The continual meta-objective, checked by hand
#
# WarpGrad's objective (Eq. 11) evaluates, at every point $\theta_k$ of the learner's own trajectory, a meta loss
# after one lookahead step on the task loss: $L_\text{meta}(\theta_k - \alpha\nabla L_\text{task}(\theta_k))$.
# In continual learning (Algorithm 3) the task loss is the current sub-task's, and the meta loss at a point from
# sub-task $t$ is the **mean loss over sub-tasks $1..t$**:
#
# $$L_\text{meta}(\theta) = \frac1t \sum_{s=1}^t \frac1m \sum_{x\in \text{batch}_s} \big(f(x;\theta) - y_s(x)\big)^2 .$$
#
# For batched replay every meta batch must have one shape, so it always holds $m$ points of *every* segment and the
# target carries a weight per point: $w = 1/(tm)$ on seen segments, $0$ on the others; the loss is
# $\sum_i w_i (f(x_i) - y_i)^2$. Before training anything, check that this is the mean over seen sub-tasks.

# %%
task = held_out[0].replica()
predictor = lambda x: 0.5 * x  # any function will do for this identity
for step in (0, 2 * config.steps_per_subtask, config.inner_steps - 1):
    _, (x, (y, w)) = task.sample_meta_batches(step)
    t = task.subtask_of_step(step) + 1  # sub-tasks 1..t seen
    segment = task.subtask_of_input(x).squeeze(-1)  # which segment each point lies in, from x alone
    per_subtask = torch.stack([((predictor(x) - y)[segment == s] ** 2).mean() for s in range(t)])
    print(f"step {step:3d} (sub-task {t}): weighted loss {float(weighted_mse(predictor(x), (y, w))):.6f}   "
          f"mean of the {t} per-sub-task losses {float(per_subtask.mean()):.6f}")

# %% [markdown]
# ## c. Three learners, one budget
#
# All three have the same task layers (an MLP 1 → 40 → 40 → 1 with ReLU, θ), start from the same random values
# and take the same $K$ SGD steps at the same step size on the same held-out sequences:
#
# * **Warp-MLP**: a residual MLP warp $\omega(z) = z + g(z;\phi)$ after each hidden layer (identity at first).
#   WarpGrad's *offline* algorithm meta-learns φ with the continual objective; jointly, Reptile meta-learns θ₀
#   (θ₀ moves toward the parameters reached at the end of each training sequence).
# * **MLP, meta-learned init**: Reptile on the same sequences, no warps.
# * **MLP, random init**: plain SGD, nothing meta-learned.
#
# Both meta-learners use the *same* initialisation learner, so the warp is the only difference between them.
# Why Reptile rather than Leap (`init_learner="leap"` in the config)? Reptile's θ₀ does nothing about forgetting
# by itself, which keeps the comparison about the warp; Leap shortens the learning path, and on these sequences
# it finds a θ₀ from which SGD moves less, forgetting less *and* fitting each new segment worse. It is also
# slower (it keeps every step's gradient). The last cell says how to try it.
#
# Before meta-training the warps are the identity, so Warp-MLP and its twin learn *exactly* alike.

# %%
learners = continual.build_learners(config, seed=SEED, device=device)
warp_model = learners["warp"].model
print(f"θ: {count_parameters(task_parameters(warp_model))} task parameters, "
      f"φ: {count_parameters(warp_parameters(warp_model))} warp parameters")
before = {name: continual.evaluate_learner(learners[name].model, held_out[:2], config.inner_lr).matrices
          for name in ("warp", "sgd")}
print("largest |difference| of the forgetting matrices before meta-training:",
      f"{float((before['warp'] - before['sgd']).abs().max()):.1e}")

# %% [markdown]
# ## d. Meta-training
#
# Every meta-iteration draws a batch of sequences; each meta-learner runs its own SGD through each sequence
# (φ frozen), buffers the points $\theta_0 \dots \theta_{K-1}$, updates θ₀ with its initialisation learner and then
# (Warp-MLP only) replays the shuffled points in chunks, one φ-step per chunk, with a fresh (task batch, meta
# batch) pair per point. Every `validate_every` iterations both meta-learners are scored on separate
# *validation* sequences, and each keeps its best validation point at the end (model selection; the held-out test
# sequences are never looked at). A learner whose meta-parameters stop being finite is rolled back to its last
# finite state and trains no further (a message says so). Set `CHECKPOINT` to a file path to make an
# interrupted run resume.

# %%
meta_learners = {name: learners[name] for name in ("warp", "sgd_meta_init")}
checkpointer = Checkpointer(CHECKPOINT or None, every=10)
meta_started = time.perf_counter()
training = continual.meta_train(meta_learners, train_sampler, config.meta_iterations, config.meta_batch_size,
                                checkpointer, config, SHOW_PROGRESS, validation, config.validate_every)
seconds_meta_training = warpkit.record("seconds_meta_training", round(time.perf_counter() - meta_started, 1))
warpkit.record("replay", last_replay())
for name, iteration in training.best_iteration.items():
    warpkit.record(f"kept_iteration_{name}", iteration)
    if training.diverged[name]:
        print(f"{name}: meta-parameters stopped being finite after iteration {training.diverged[name]}; rolled back")
fig = draw.plot_meta_training(training.history, training.validation, training.best_iteration)
warpkit.show_figure(fig, "06_meta_training", SAVE_FIGS)

# %% [markdown]
# **Notice.** Left: each learner's loss on the current sub-task at the end of each training sequence (thin: raw,
# bold: running mean); compare the two bold lines to see whether the warps make each new segment faster to learn.
# Middle: the warp objective, the loss over all seen sub-tasks after one lookahead step, averaged over the replayed
# points. Both are noisy because every meta-iteration draws new waves. Right: the final loss on the validation
# sequences, the number we care about; the circle marks the iteration each learner keeps. In long runs (`SIZE="full"`) the Warp-MLP's
# validation loss bottoms out after a few dozen iterations and drifts up again, and so does its warp objective:
# at constant meta learning rates the joint meta-training of φ and θ₀ does not settle. Selecting on validation
# sequences makes the result robust to that.
#
# ## e. Watching a learner forget
#
# One held-out sequence. Each column is the learner after sub-task $j$ (shaded segment); the curves are the
# targets, bold for sub-tasks seen so far, faint for those still to come; the learner's fit is the thin line.

# %%
evaluations = {name: continual.evaluate_learner(learner.model, held_out, config.inner_lr, keep_runs=True,
                                                show_progress=SHOW_PROGRESS, desc=name)
               for name, learner in learners.items()}
inputs = torch.linspace(*config.interval, 400, device=device).unsqueeze(-1)
example = 0
fits = {name: continual.predictions(learners[name].model, evaluations[name].runs[example], inputs).cpu()
        for name in learners}
fig = draw.plot_fits_after_each_subtask(held_out[example], inputs.cpu(), fits)
warpkit.show_figure(fig, "06_fits_after_each_subtask", SAVE_FIGS)

# %% [markdown]
# **Notice.** Two different failures look alike in this picture. A learner can *underfit*: never fit a segment
# well, even right after training on it (its thin line misses the bold wave in the column of that segment). Or it
# can *forget*: fit a segment, then lose it as later segments are learnt (the fit drifts in later columns). Same
# task layers, same steps, same step size: what differs is how the frozen warps shape each gradient step. The
# numbers below separate the two, over all held-out sequences.

# %%
if INTERACTIVE:  # a slider over all held-out sequences
    fits_for = lambda index: {name: continual.predictions(learners[name].model, evaluations[name].runs[index],
                                                          inputs).cpu() for name in learners}
    display(draw.SequenceExplorer(held_out, inputs.cpu(), fits_for).widget)

# %% [markdown]
# ## f. Underfitting or forgetting?
#
# For each segment i: the loss right after learning it (sub-task i just finished) and the loss after the last
# sub-task. A high first number is underfitting; the rise from the first to the second is forgetting.

# %%
mean_matrices = {name: e.matrices.mean(dim=0) for name, e in evaluations.items()}
fig = draw.plot_learnt_then_kept(mean_matrices)
warpkit.show_figure(fig, "06_learnt_then_kept", SAVE_FIGS)
for name, matrix in mean_matrices.items():
    just_learnt = warpkit.record(f"loss_just_learnt_{name}", matrix.diagonal().mean().item())
    rise = warpkit.record(f"forgetting_rise_{name}", (matrix[:-1, -1] / matrix.diagonal()[:-1]).mean().item())
    print(f"{draw.LEARNER_LABELS.get(name, name)}: mean loss on a segment right after learning it {just_learnt:.3f}; "
          f"on segments 1–4, after the last sub-task the loss is {rise:.1f}× what it was right after learning them")

# %% [markdown]
# (On segment 5 the two coincide: it is the last sub-task.) Read the first number as "how well does it learn a segment at all" and the second as "how much of that does it
# lose". A learner with a high first number and a small rise underfits rather than forgets; compare the learners
# on both before calling one of them better at remembering.
#
# ## g. The forgetting matrix
#
# $M_{ij}$ = loss on sub-task $i$ after training through sub-task $j$, averaged over the held-out sequences
# (entries $i > j$, not seen yet, are blank). Read a row left to right to follow one sub-task's loss as later ones
# are learnt; the diagonal is how well the current sub-task was learnt. One shared logarithmic colour scale.

# %%
std_matrices = {name: e.matrices.std(dim=0) for name, e in evaluations.items()}
fig = draw.plot_forgetting_matrices(mean_matrices, std_matrices)
warpkit.show_figure(fig, "06_forgetting_matrices", SAVE_FIGS)

# %% [markdown]
# **Notice.** Read the diagonal first: how well each learner learns the current sub-task (section f's first
# number). Then follow a row: how a sub-task's loss changes once the learner moves on (section f's rise). The
# paper reports that with WarpGrad the loss on earlier segments stays within
# about an order of magnitude of the current one; `earlier_to_current_warp` below is that ratio (last column,
# mean of rows 1–4 over row 5). Do not read it alone: a learner that fits nothing scores 1, and the unwarped
# learners score low partly because they fit the current segment poorly.
#
# ## h. After the whole sequence: mean ± std over held-out sequences

# %%
fig = draw.plot_final_losses({name: e.matrices[:, :, -1] for name, e in evaluations.items()})
warpkit.show_figure(fig, "06_final_losses", SAVE_FIGS)
for name, evaluation in evaluations.items():
    summary = evaluation.summary()
    warpkit.record(f"final_loss_{name}", round(summary["final_loss"], 4))
    warpkit.record(f"final_loss_std_{name}", round(summary["final_loss_std"], 4))
    warpkit.record(f"forgetting_{name}", round(summary["forgetting"], 4))
    warpkit.record(f"earlier_to_current_{name}", round(continual.earlier_to_current_ratio(evaluation.matrices), 2))

# %%
ratio = warpkit.record("final_loss_ratio_warp_to_meta_init",
                       round(evaluations["warp"].final_loss / evaluations["sgd_meta_init"].final_loss, 3))
warpkit.record("num_held_out", len(held_out))
warpkit.record("size", SIZE)
seconds = warpkit.record("seconds", round(time.perf_counter() - started, 1))
warpkit.record("cpu_seconds", round(time.process_time() - cpu_started, 1))  # unaffected by other processes
print(f"final loss (mean over 5 segments, {len(held_out)} held-out sequences): "
      + ", ".join(f"{n} {e.final_loss:.3f} ± {e.final_loss_std:.3f}" for n, e in evaluations.items()))
print(f"Warp-MLP / meta-learned init = {ratio:.2f}; whole notebook {seconds:.0f} s")

# %% [markdown]
# **Notice.** Bars are the mean loss per segment after sub-task 5, dots the individual held-out sequences (log
# scale); the printed line above gives the means. Where the warped learner's bars are lower on segments 1–4, check
# section f for why: a lower loss right after learning (better fitting), a smaller rise (less forgetting), or
# both. A meta-learned initialisation can make each segment faster to learn, but it cannot stop later gradients
# from overwriting earlier segments; that takes a preconditioner that depends on the input, which is what the
# non-linear warp provides.
#
# **Try.** Change `config` in the setup cell with `dataclasses.replace(config, ...)`:
#
# * `warp_objective="first_order"` (Eq. 12): the meta-gradient reaches φ only through the forward pass at the
#   stepped point, not through how the warp shapes the step itself, and shaping the step is the whole point
#   here. In our runs it helped far less than the exact objective.
# * `init_learner="leap", init_optimizer="adam", init_lr=0.01`: Leap instead of Reptile for both meta-learners.
#   With longer meta-training it makes the unwarped baseline stronger (less forgetting, worse fit of each new
#   segment), so the warp's advantage shrinks.
# * fewer `meta_iterations`: how early does the warp start to help? Or `SIZE="full"`, a longer meta-training.

# %% [markdown]
# ## Summary
#
# * Continual learning of sine segments is one task whose sub-tasks arrive in order; WarpGrad's objective
#   (Eq. 11) with the meta loss over all sub-tasks seen so far (Algorithm 3) asks the warp to shape each step so
#   that it does not undo earlier segments.
# * Two failures look alike in a final-loss plot: underfitting (a segment is never learnt well) and forgetting
#   (it is learnt, then lost); the loss right after learning each segment and after the last one separate them.
# * The forgetting matrix holds both: its diagonal is how well each sub-task was learnt, its rows how it was kept.
#
# ## Check yourself
#
# 1. Why must every meta batch contain points of all five segments, with zero weight on those not seen yet?
# 2. A learner has a low forgetting ratio (earlier-to-current close to 1) but a high final loss. What happened?
# 3. Why does a meta-learned initialisation alone not prevent forgetting, whatever it is?

# %%
warpkit.show_records()
