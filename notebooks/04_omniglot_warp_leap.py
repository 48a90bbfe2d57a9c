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
# The paper's main supervised experiment (Flennerhag et al., 2020, Section 4.2). Each task is the classification of
# the characters of one alphabet, learnt by many steps of SGD; meta-learning on a few alphabets should make *new*
# alphabets faster to learn. **Warp-Leap** meta-learns warp layers φ (a preconditioner, by the warp objective of
# Eq. 11 and Algorithm 2 of lesson 02) *and* an initialisation θ₀ (by Leap), and is compared with Leap, Reptile,
# FOMAML, MAML, multi-head finetuning and no pretraining under one protocol.
#
# We look at the data and at one task, see which parameters are θ and which are φ, write Warp-Leap's
# meta-iteration in its core lines, then run the comparison and read it beside a committed reference run and the
# paper. Checks and timings of the implementation are in the appendix. The protocol, every setting with its source
# (`PAPER_PROTOCOL`), and the sizes you can run (`SIZES`) live in `warpkit.experiments.omniglot`.

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

import torch
from IPython.display import Markdown, display

import warpkit
from warpkit.engine.buffer import TrajectoryBuffer
from warpkit.engine.replay import last_replay, replay_meta_gradient
from warpkit.experiments import omniglot
from warpkit.kit.notebook import check_size
from warpkit.viz import omniglot as draw_data
from warpkit.viz import omniglot_results as draw

# %%
check_size(SIZE, tuple(omniglot.SIZES))
warpkit.defer_records()  # recorded values are shown once, as a table, at the end of the lesson
started, cpu_started = time.perf_counter(), time.process_time()
warpkit.record("seed", warpkit.seed_everything(SEED))
device = warpkit.pick_device(DEVICE)
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
# Omniglot holds 1623 handwritten characters from 50 alphabets, each drawn by 20 different people (Lake et al.,
# 2015), here at 28 × 28 pixels. A few alphabets are set aside **once** as test alphabets, the same for every
# number $n$ of training alphabets, seed and method. Of the rest, each seed keeps a few as **validation**
# alphabets (never trained on; they choose which meta-parameters are tested) and trains on the first $n$ of a
# seeded shuffle of the others.

# %%
alphabets = list(experiment.test_alphabets) + list(experiment.pool)
fig = draw_data.plot_alphabet_grid(experiment.dataset, alphabets, n_characters=12)
warpkit.show_figure(fig, "04_alphabets", SAVE_FIGS)
print("test alphabets (fixed):", ", ".join(experiment.test_alphabets))
print(f"validation alphabets of seed {config.seeds[0]}:", ", ".join(experiment.validation_alphabets(config.seeds[0])))
print("training pool:", ", ".join(experiment.pool))
warpkit.record("data_source", experiment.source)

# %% [markdown]
# **Notice.** Each row is a whole writing system; compare the strokes, curvature and density *between* rows with
# those *within* a row. Learning a new *alphabet*, not a new character of a known one, is the transfer problem here.
#
# ## b. One task
#
# A task takes `ways` characters of one alphabet, labels them $0 \dots$ `ways`$-1$ in a random order, and splits
# the 20 drawers into `train_images` training and 20 − `train_images` held-out drawers. The inner loop sees
# batches of training images (rotated, shifted and scaled when augmentation is on); the score is the accuracy on
# the held-out drawers' images. In the authors' code each training alphabet is *one fixed task*, drawn once;
# `fixed_training_tasks=False` **resamples** it every time (new characters, label order and drawers).

# %%
task = experiment.test_tasks()[0]
inputs, labels = task.sample_batch(0)
title = (f"{task.alphabet}: the first 20 images of inner-loop batch 0 (augmentation "
         f"{'on' if config.augment else 'off'})\nthe number above each image is its label in this task")
fig = draw_data.plot_batch(inputs[:20], labels[:20], n_columns=10, title=title)
warpkit.show_figure(fig, "04_task_batch", SAVE_FIGS)
print(task, "| training images", tuple(task.train_inputs.shape), "| held-out images", tuple(task.test_inputs.shape))
print("training tasks:", "fixed per alphabet" if config.fixed_training_tasks else "resampled every meta-iteration")

# %% [markdown]
# **Notice.** The labels are arbitrary: the same character gets another label in another task of the same
# alphabet. Nothing about a label can transfer between tasks; only how to learn them quickly can.
#
# ## c. The warped network: which parameters are θ and which are φ
#
# The task learner is the paper's Omniglot network:
# 4 × [conv 3×3 → max-pool → BatchNorm → ReLU] → linear head.
# Its convolutions, BatchNorm scales and shifts and the head are the **task parameters θ**: the only ones SGD
# moves while learning a task. Warp-Leap inserts a warp layer ω (a 3×3 convolution) after every block; their
# **warp parameters φ** stay frozen during a task and are meta-learned across tasks. Backpropagation into θ passes
# through the warps above it, so the task's gradient arrives *preconditioned*:
# $\theta \leftarrow \theta - \alpha\, P(\theta;\phi)\,\nabla L(\theta)$, with $P$ never formed (lesson 01).
# Warps start at the identity, so before meta-training the warped network adapts exactly like its unwarped twin
# from the same θ (checked in appendix A).

# %%
counts = experiment.parameter_counts()
warpkit.record("theta_parameters", counts["theta"])
warpkit.record("phi_parameters", counts["phi"])
print(omniglot.describe_parameters(experiment.model_factory(warp=config.warp)))

# %% [markdown]
# ## d. One Warp-Leap meta-iteration, in its core lines
#
# Warp-Leap is the paper's Algorithm 2 with Leap as the learner of θ₀. For a meta-batch of tasks τ:
#
# 1. **Adapt and buffer.** From θ₀, take K steps $\theta_{k+1} = \theta_k - \alpha\,\nabla_\theta
#    L^\tau_{\text{task}}(\theta_k;\phi)$ with φ frozen, and keep every point θ_k of the task's own run.
# 2. **Move θ₀ by Leap** (Flennerhag et al., 2019), in the WarpGrad code's form without the loss term: the
#    direction of the tasks' paths, $\nabla C(\theta_0) = -\frac{1}{|\mathcal{B}|}\sum_\tau \sum_k
#    \frac{\Delta\theta^\tau_k}{\lVert\Delta\theta^\tau_k\rVert}$ with $\Delta\theta_k = \theta_{k+1} - \theta_k$,
#    and $\theta_0 \leftarrow \theta_0 - \beta\,\nabla C(\theta_0)$.
# 3. **Replay** the buffered points in a shuffled order, one φ-step per point (the paper's schedule) on the warp
#    objective (Eq. 11): $L(\phi) = L^\tau_{\text{meta}}\big(\theta_k - \alpha\,\nabla_\theta
#    L^\tau_{\text{task}}(\theta_k;\phi);\ \phi\big)$, with a task batch for the look-ahead step and a *different*
#    meta batch to score it, and $\phi \leftarrow \phi - \eta\,\nabla_\phi L(\phi)$.
#
# No step backpropagates through the K steps of a task: each buffered point contributes one look-ahead step.
# Below, the library supplies the inner loop (`adapt`), the buffer, Leap's per-task direction and the gradient of
# Eq. 11; the loop that ties them together is Warp-Leap. The size's meta-optimisers take the steps on θ₀ and φ.

# %%
def apply(optimiser, parameters, gradient):
    """One meta-optimiser step with the given gradient (by parameter name)."""
    optimiser.zero_grad(set_to_none=True)
    for name, p in parameters.items():
        p.grad = gradient[name].detach().clone()
    optimiser.step()


def meta_optimiser(name, parameters, lr):
    """The size's meta-optimiser ("sgd" or "adam") over the given parameters."""
    return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[name](parameters.values(), lr=lr)


leap = warpkit.Leap(simplified=config.warp_leap_simplified)  # True: the WarpGrad code's Leap, no loss term


# %%
def warp_leap_meta_iteration(model, tasks, optimisers, generator):
    theta0 = {name: t.detach().clone() for name, t in warpkit.task_parameters(model).items()}
    buffer, leap_gradient = TrajectoryBuffer(), {name: torch.zeros_like(t) for name, t in theta0.items()}
    for index, task in enumerate(tasks):
        trajectory = warpkit.adapt(model, task, omniglot.loss_fn, config.inner_steps, config.inner_lr)  # φ frozen
        buffer.add(index, trajectory)  # Algorithm 2: keep every point θ_k of the task's own run
        for name, g in leap.task_gradient(None, task, theta0, trajectory).items():  # (needs no learner: None)
            leap_gradient[name] += g / len(tasks)  # ∇C(θ₀) = −Σ_k Δθ_k / ‖Δθ_k‖, averaged over the tasks
    apply(optimisers["theta0"], warpkit.task_parameters(model), leap_gradient)  # θ₀ ← θ₀ − β ∇C(θ₀)
    phi = warpkit.warp_parameters(model)
    for points in buffer.chunks(config.replay_chunk_size, generator=generator):  # shuffled points
        # ∇φ Eq. 11 at each point, averaged over the chunk; a task batch and a different meta batch per point
        gradient, _ = replay_meta_gradient(model, omniglot.loss_fn, phi, points, tasks, config.inner_lr,
                                           config.warp_objective, config.replay, lookahead="fresh")
        apply(optimisers["phi"], phi, gradient)  # φ ← φ − η ∇φ L(φ)


# %% [markdown]
# Run it once on the first meta-batch of the sweep below, from the network the sweep starts from (the same θ₀,
# identity warps, the same meta-optimisers), and measure how far θ₀ and φ moved.

# %%
seed, n = config.seeds[0], config.largest_n
network = experiment.build("warp-leap", seed).model
optimisers = {"theta0": meta_optimiser(config.init_optimizer, warpkit.task_parameters(network), config.init_lr),
              "phi": meta_optimiser(config.warp_optimizer, warpkit.warp_parameters(network), config.warp_lr)}
start = {name: p.detach().clone() for name, p in network.named_parameters()}
meta_batch = experiment.tasks_for("warp-leap", seed, n, 0)
warp_leap_meta_iteration(network, meta_batch, optimisers, torch.Generator().manual_seed(seed))
moved = {role: sum(float((p.detach() - start[name]).pow(2).sum()) for name, p in params.items()) ** 0.5
         for role, params in (("θ₀", warpkit.task_parameters(network)), ("φ", warpkit.warp_parameters(network)))}
points = len(meta_batch) * config.inner_steps
print(f"{len(meta_batch)} tasks × {config.inner_steps} steps = {points} buffered points → "
      f"{-(-points // config.replay_chunk_size)} φ-steps; |Δθ₀| = {moved['θ₀']:.3g}, |Δφ| = {moved['φ']:.3g}")

# %% [markdown]
# **Notice.** The number of φ-steps is the number of buffered points divided by `replay_chunk_size` (1 in the
# paper): in every meta-iteration θ₀ takes one step and φ takes that many. `MetaLearner.meta_step`
# does exactly this (appendix B checks that both give the same parameters), plus bookkeeping: statistics, a
# guard against non-finite values, and other schedules and learners.
#
# ## e. Meta-training every method
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
# **Fair comparison.** At test time every method takes the same steps from **one** head shared by all test
# tasks. Multi-head finetuning keeps one head per training alphabet, which needs stable labels, so it always
# trains on fixed tasks; its test head is the mean of its heads. Every method is validated alike and tested at
# its best validation point (`model_selection = "best"`). With a `CHECKPOINT` the sweep resumes where it stopped.

# %%
results = experiment.run(checkpoint=checkpoint, show_progress=SHOW_PROGRESS)
fig = draw.plot_meta_training(results)
warpkit.show_figure(fig, "04_meta_training", SAVE_FIGS)
warpkit.record("seconds_per_meta_iteration", round(results.seconds_per_meta_iteration("warp-leap"), 3))
warpkit.record("replay", last_replay())  # how the replay ran: batched or looped (warpkit.engine.replay)

# %% [markdown]
# **Notice.** Dashed: the meta-batch's loss at θ₀; solid: after the inner loop (MAML runs only its 5-step loop,
# no pretraining learns nothing: neither is drawn). With fixed tasks a falling dashed line means θ₀ fits the
# training alphabets' labels; with resampled tasks it cannot. What transfers to *new* alphabets is section f.
#
# ### Is the warp learning?
#
# |Δφ| is how far one meta-iteration moved the warp parameters, |Δθ₀| how far it moved the initialisation
# (Warp-Leap against Leap, every seed at the largest $n$).

# %%
motion = omniglot.warp_motion(results)
fig = draw.plot_warp_motion(motion, title=f"Warp-Leap and Leap, n = {config.largest_n}: change per meta-iteration")
warpkit.show_figure(fig, "04_warp_motion", SAVE_FIGS)
warpkit.record("phi_moved", round(omniglot.total_change(motion["Warp-Leap |Δφ|"]), 4))
display(Markdown(omniglot.describe_motion(motion)))

# %% [markdown]
# **Notice.** A |Δφ| above zero in every meta-iteration says that the replay moves the warp; whether that motion
# helps is a question for the held-out accuracy below, not for this figure.
#
# ## f. Held-out accuracy
#
# Accuracy on the held-out drawers of the test alphabets, scored **non-transductively**: BatchNorm uses the
# running statistics gathered while adapting (`model.eval()` in the authors' code), so each held-out image is
# classified on its own.

# %%
print(results.format_table())
fig = draw.plot_accuracy_vs_alphabets(results)
warpkit.show_figure(fig, "04_accuracy_vs_alphabets", SAVE_FIGS)
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
# ## g. This run, the reference run and the paper, side by side
#
# The reference run is the `medium` size made once with `python -m warpkit reference 04 --size medium` and
# committed as `results/03_omniglot_medium.json` (its command, commit, machine and configuration are in the
# file). The paper's numbers are for full Omniglot and 25 training alphabets. Error bars: std over seeds.

# %%
fig = draw.plot_run_reference_paper(results, reference)
warpkit.show_figure(fig, "04_run_reference_paper", SAVE_FIGS)
print(results.format_paper_table())
display(Markdown(omniglot.describe_reference(reference)))
warpkit.record("reference_present", reference is not None)

# %% [markdown]
# **Notice.** The panels can differ in data, ways, steps and seeds (their titles say how): compare the *order*
# of the methods within a panel, not bars across panels.
#
# ## h. Adaptation with and without warps
#
# The training-batch loss while adapting to the test alphabets, at the largest $n$: Warp-Leap (warped), Leap
# (an initialisation learner, no warps) and no pretraining in bold, the others faint. All methods take identical
# plain SGD steps on θ; only Warp-Leap's gradients pass through the meta-learned warps.

# %%
fig = draw.plot_adaptation_curves(results)
warpkit.show_figure(fig, "04_adaptation_curves", SAVE_FIGS)
shown = [m for m in ("warp-leap", "leap", "no-pretraining") if m in results.methods]
curves = {m: results.adaptation_curves(m).mean(0) for m in shown}
for method, curve in curves.items():
    warpkit.record(f"final_train_loss_{omniglot.record_name(method)}", round(float(curve[-1]), 4))
display(Markdown(omniglot.describe_adaptation(curves)))

# %%
from warpkit.experiments import omniglot_levers  # the committed lever study and K-FAC run (benchmarks/)

display(Markdown(omniglot_levers.study_note()))

# %% [markdown]
# ## Summary
#
# * A task is one alphabet; test alphabets are fixed once, validation alphabets choose what is tested.
# * θ (convolutions, BatchNorm, head) is trained in every task, φ (a 3×3 convolution after each block) only across
#   tasks; identity warps make the warped network plain SGD at the start.
# * A Warp-Leap meta-iteration adapts each task with φ frozen, buffers the points, moves θ₀ along Leap's average
#   path direction and takes one φ-step per buffered point on Eq. 11, never backpropagating through K steps.
# * All methods share one protocol; one seed cannot rank them, so the ranking and its paired interval are read
#   from the reference run.
#
# ## Check yourself
#
# 1. MAML in this lesson backpropagates through 5 inner steps while every task takes `inner_steps` steps; Warp-Leap
#    meta-learns φ from all of them. Why can Warp-Leap afford every step, and what does each buffered point cost?
# 2. With fixed training tasks and a few training alphabets, the loss at θ₀ (dashed in section e) can fall close
#    to zero. What has θ₀ learnt then, and why does resampling the tasks prevent it?
# 3. Why does the lesson compare Warp-Leap with the best other method by a *paired* interval over seeds, and what
#    would an interval that contains zero tell you?

# %% [markdown]
# ## Appendix A. Identity warps: the warped network starts as plain SGD
#
# Before meta-training the warps are the identity, so the warped network must adapt *exactly* like its unwarped
# twin from the same θ: the same loss at every step.

# %%
check = omniglot.warp_vs_plain_at_initialisation(experiment, seed=config.seeds[0], steps=min(5, config.inner_steps))
print(f"largest |loss difference| over {len(check['warped'])} steps, warped vs plain: {check['max_difference']:.1e}")
warpkit.record("identity_warp_max_difference", check["max_difference"])

# %% [markdown]
# ## Appendix B. The meta-iteration of section d equals `MetaLearner.meta_step`
#
# The sweep meta-trains with `warpkit.MetaLearner`. From the same network, the same meta-batch and the same
# replay order, one `meta_step` must give the parameters our loop of section d gave. (A task counts the replays of
# each point and draws fresh batches for every replay, so the meta-batch is built afresh rather than reused.)
#
# Both compute a chunk's φ-gradient the same way (`config.replay`). A batched and a looped replay agree to rounding,
# but Adam divides each step by the gradient's own running size, so in its first steps a rounding difference on a
# near-zero component can flip a step of ±η: compare the two ways and the parameters differ visibly.

# %%
learner = experiment.build("warp-leap", seed)
learner.meta_step(experiment.tasks_for("warp-leap", seed, n, 0))
with torch.no_grad():
    difference = max(float((p - network.get_parameter(name)).abs().max())
                     for name, p in learner.model.named_parameters())
warpkit.record("handwritten_vs_metalearner_max_abs_diff", difference)
print(f"largest parameter difference after one meta-iteration: {difference:.1e} "
      f"(largest parameter change {max(moved.values()):.3g})")

# %% [markdown]
# ## Appendix C. The replay schedule moves φ: one step per point against chunks
#
# WarpGrad's meta-objective is a sum over the points θₖ of the tasks' own trajectories, never a backpropagation
# through them. The authors' code replays the buffered points one at a time, one φ-step each. Stacking a chunk of
# points into one vectorised call (`torch.func.vmap`) can be cheaper per point, but a chunk gives *one* φ-step on
# an averaged gradient: P times fewer φ-steps per meta-iteration, a different optimiser. Below, Warp-Leap
# meta-trains a few iterations from the same state on the same tasks under both schedules.

# %%
iterations = min(config.meta_iterations, 3)
comparison = omniglot.compare_replay_schedules(experiment, iterations=iterations)
fig = draw.plot_replay_schedules(comparison)
warpkit.show_figure(fig, "04_replay_schedules", SAVE_FIGS)
display(Markdown(omniglot.describe_schedules(comparison)))
one, chunked = comparison["schedules"].values()
warpkit.record("replay_phi_ratio", round(sum(one["warp_change"]) / sum(chunked["warp_change"]), 3))
warpkit.record("replay_warp_steps_one_point", one["warp_steps"])

# %% [markdown]
# ## Appendix D. What this run cost

# %%
warpkit.record("size", SIZE)
warpkit.record("seconds", round(time.perf_counter() - started, 1))
warpkit.record("cpu_seconds", round(time.process_time() - cpu_started, 1))
warpkit.show_records()
