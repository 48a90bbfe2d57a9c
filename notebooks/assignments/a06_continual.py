# %% [markdown]
# # Assignment 6: the continual meta-loss
#
# In continual sine regression a task is a sequence of 5 sub-tasks on 5 consecutive segments of [−5, 5], learned
# one after the other. WarpGrad's meta-loss at a point met during sub-task t is the mean loss over sub-tasks
# 1..t, so the warp learns to protect what was learned before (lesson 06). You will write the segment rule,
# the meta-loss and a per-segment evaluation, then watch plain SGD forget.
#
# **How this works.** Each exercise is a function with a `NotImplementedError` in its body: replace those two
# lines with your code, then run the cell below it. Those cells run *public checks*; when they pass you see
# "public checks passed". Your instructor may run further tests when grading.

# %%
import torch
from torch.func import functional_call

from warpkit.engine.adapt import adapt
from warpkit.kit.checks import PublicChecks, check_close
from warpkit.data.sine import ContinualSineTask, weighted_mse
from warpkit.models.mlp import plain_mlp

torch.manual_seed(0)
task = ContinualSineTask(amplitudes=[1.0, 2.0, 3.0, 1.5, 2.5], phases=[0.0, 0.5, 1.0, 1.5, 2.0],
                         steps_per_subtask=40, batch_size=10, seed=0)
print(task)
print("segments:", [(round(low, 2), round(high, 2)) for low, high in task.segments])

# %% [markdown]
# ## Exercise 1: which segment an input belongs to
#
# The interval `(low, high)` is cut into `num_subtasks` equal consecutive segments [low + i·w, low + (i+1)·w),
# w = (high − low)/num_subtasks. Write `segment_index(x, interval, num_subtasks)` returning, for a tensor of
# inputs, the 0-based segment of each as a `torch.long` tensor of the same shape. The right end `high` belongs
# to the last segment.

# %%
def segment_index(x, interval, num_subtasks):
    """0-based index of the segment of each input (long tensor, same shape as x); x = high goes to the last."""
    ### BEGIN SOLUTION
    low, high = interval
    position = torch.floor((x - low) / (high - low) * num_subtasks).long()
    return position.clamp(0, num_subtasks - 1)
    ### END SOLUTION


# %%
with PublicChecks("segment_index") as checks:
    x_hand = torch.tensor([-5.0, -3.01, -3.0, 0.0, 2.99, 4.99, 5.0])
    index_hand = segment_index(x_hand, (-5.0, 5.0), 5)
    checks.dtype("integer indices", index_hand, torch.long, hint="use .long() on the result")
    checks.equal("worked by hand on (−5, 5) in 5 segments", index_hand, [0, 0, 1, 2, 3, 4, 4],
                 hint="segments are [−5, −3), [−3, −1), [−1, 1), [1, 3), [3, 5]")
    checks.shape("same shape as x", segment_index(torch.zeros(4, 1), (-5.0, 5.0), 5), (4, 1))
### BEGIN HIDDEN TESTS
x_h = torch.linspace(-5, 5, 101).unsqueeze(-1)
check_close("hidden: agrees with ContinualSineTask.subtask_of_input", segment_index(x_h, task.interval, 5),
            task.subtask_of_input(x_h))
check_close("hidden: another interval", segment_index(torch.tensor([0.0, 0.49, 0.5, 1.0]), (0.0, 1.0), 2),
            [0, 0, 1, 1])
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the continual meta-loss
#
# At a point met while learning sub-task t (counting from 1), the meta-loss is
#
# $$L_{\text{meta}} = \frac{1}{t} \sum_{s=1}^{t} \frac{1}{|B_s|} \sum_{(x, y) \in B_s} \big(f(x) - y\big)^2 ,$$
#
# the mean over the sub-tasks seen so far of each sub-task's mean squared error. Write
# `continual_meta_loss(predict, subtask_batches, t)`: `predict` maps inputs `[N, 1]` to outputs `[N, 1]`,
# `subtask_batches` is a list with one `(x, y)` batch per sub-task (any batch sizes). Sub-tasks after t must not
# enter the loss at all.

# %%
def continual_meta_loss(predict, subtask_batches, t):
    """(1/t) Σ_{s=1..t} MSE of predict on subtask_batches[s-1]."""
    ### BEGIN SOLUTION
    seen = [((predict(x) - y) ** 2).mean() for x, y in subtask_batches[:t]]
    return torch.stack(seen).mean()
    ### END SOLUTION


# %%
def predict_zero(x):
    """A predictor that always says 0, so each sub-task's MSE is the mean of y²."""
    return torch.zeros_like(x)


batches_hand = [(torch.zeros(2, 1), torch.full((2, 1), 1.0)),   # MSE 1
                (torch.zeros(6, 1), torch.full((6, 1), 2.0)),   # MSE 4
                (torch.zeros(3, 1), torch.full((3, 1), 3.0)),   # MSE 9
                (torch.zeros(3, 1), torch.full((3, 1), float("nan")))]  # not seen yet
with PublicChecks("continual_meta_loss") as checks:
    checks.close("t = 1: only the first sub-task", continual_meta_loss(predict_zero, batches_hand, 1), 1.0)
    checks.close("t = 2: (1 + 4) / 2", continual_meta_loss(predict_zero, batches_hand, 2), 2.5,
                 hint=("every seen sub-task counts equally, however many points it has",
                       "average each sub-task's MSE, then average over sub-tasks (not over all points: 3.25)"))
    checks.close("t = 3: (1 + 4 + 9) / 3", continual_meta_loss(predict_zero, batches_hand, 3), 14 / 3,
                 hint="t counts from 1: sub-tasks 1..t are batches 0..t-1")
    checks.true("differentiable", continual_meta_loss(lambda x: x * torch.ones(1, requires_grad=True),
                                                      batches_hand, 2).requires_grad,
                "the loss does not keep the autograd graph; build it from torch operations on predict(x)")
### BEGIN HIDDEN TESTS
model_h = plain_mlp(hidden=8, seed=3)
for t_h in (1, 3, 5):
    x_meta, (y_meta, w_meta) = task.meta_batch(t_h - 1)
    m_h = task.meta_points_per_subtask
    split_h = [(x_meta[s * m_h:(s + 1) * m_h], y_meta[s * m_h:(s + 1) * m_h]) for s in range(5)]
    check_close(f"hidden: t = {t_h} agrees with the library's weighted meta batch",
                continual_meta_loss(model_h, split_h, t_h), weighted_mse(model_h(x_meta), (y_meta, w_meta)),
                rtol=1e-5)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: the loss on every segment
#
# Write `per_segment_losses(predict, task)` returning a list of 5 floats: the mean squared error of `predict`
# on each segment's evaluation grid. `task.segment_grid(s)` returns the grid of segment s as `(x, (y, w))`
# (ignore `w`, the per-point weights).

# %%
def per_segment_losses(predict, task):
    """[MSE of predict on task.segment_grid(s) for every segment s], as floats."""
    ### BEGIN SOLUTION
    losses = []
    for s in range(task.num_subtasks):
        x_grid, (y_grid, _) = task.segment_grid(s)
        losses.append(float(((predict(x_grid) - y_grid) ** 2).mean()))
    return losses
    ### END SOLUTION


# %%
with PublicChecks("per_segment_losses") as checks:
    zero_losses = per_segment_losses(predict_zero, task)
    checks.equal("one loss per segment", len(zero_losses), 5)
    checks.type("plain floats", zero_losses[0], float, hint="float(tensor) turns a one-number tensor into a float")
    evaluation_x, evaluation_target = task.evaluation_batch()
    checks.close("their mean is the library's evaluation loss", sum(zero_losses) / 5,
                 weighted_mse(predict_zero(evaluation_x), evaluation_target), rtol=1e-5)
    checks.close("the first segment by hand: mean of (1·sin x)² on its grid", zero_losses[0],
                 float((torch.sin(task.segment_grid(0)[0]) ** 2).mean()), rtol=1e-5)

# %% [markdown]
# ## What plain SGD does to earlier segments
#
# Train an unwarped MLP through the 5 sub-tasks in order (40 SGD steps each, never revisiting), and compare the
# loss on every segment after the first sub-task and after all five.

# %%
model = plain_mlp(hidden=40, seed=0)
after_first = adapt(model, task.replica(), weighted_mse, num_steps=40, lr=0.05, keep_trajectory=False)
after_all = adapt(model, task.replica(), weighted_mse, num_steps=task.num_steps, lr=0.05, keep_trajectory=False)
segment_losses = {}
for label, run in (("after sub-task 1", after_first), ("after sub-task 5", after_all)):
    predict = lambda x, run=run: functional_call(model, run.final_params, (x,)).detach()  # noqa: E731
    segment_losses[label] = per_segment_losses(predict, task)
    print(f"{label}: " + "  ".join(f"S{s + 1} {loss:6.3f}" for s, loss in enumerate(segment_losses[label])))
growth = segment_losses["after sub-task 5"][0] / segment_losses["after sub-task 1"][0]
print(f"segment 1: the loss grew {growth:.1f}x while sub-tasks 2-5 were learned")

# %% [markdown]
# What to notice: right after sub-task 1 the loss on segment 1 is small; after sub-tasks 2–5 it is many times
# larger, although nothing asked the network to change its answer there: plain SGD overwrote it (catastrophic
# forgetting). WarpGrad's meta-loss (exercise 2) is what teaches a warp to prevent this.
#
# ## Exercise 4 (written): why sub-tasks 1..t?
#
# In two or three sentences: why is the meta-loss the mean over sub-tasks 1..t, rather than the loss of sub-task
# t alone or the mean over all 5 sub-tasks?

# %% [markdown]
# ### BEGIN SOLUTION
# The loss of sub-task t alone would only reward fast learning of the current segment and say nothing about
# interference with the earlier ones, which is exactly what continual learning must avoid. The mean over all 5
# would score segments the learner has not seen yet, asking the warp to predict unseen sine waves instead of
# protecting what was learned. The mean over 1..t rewards learning the current segment while keeping the
# earlier segments' losses low.
# ### END SOLUTION

# %% [markdown]
# ## The lesson's self-check questions (written)
#
# 1. Why must every meta batch contain points of all five segments, with zero weight on those not seen yet?
# 2. A learner has a low forgetting ratio (earlier-to-current close to 1) but a high final loss. What happened?
# 3. Why does a meta-learned initialisation alone not prevent forgetting, whatever it is?

# %% [markdown]
# ### BEGIN SOLUTION
# 1. Replay stacks the meta batches of many points into one tensor (vmap), so every meta batch needs the same
#    shape whatever sub-task its point came from; zero weights keep unseen segments out of the meta loss, which
#    must only ask the learner to remember what it has seen (it cannot know the future waves).
# 2. It underfits: it never learnt the segments well (a high loss right after learning each one), so there was
#    little to forget; the ratio compares earlier and current losses, both high. Look at the diagonal of the
#    forgetting matrix.
# 3. The initialisation only fixes where the sequence starts; after that, plain SGD steps on segment t move the
#    parameters that also produce the fit on segments 1..t−1, in whatever direction lowers segment t's loss. Only
#    a change of the steps themselves (a preconditioner, here one that depends on the input) can steer them away.
# ### END SOLUTION

# %% tags=["instructor"]
# Grading notes (instructor only). Exercise 2's commonest slip is averaging over all points of sub-tasks 1..t
# (3.25 instead of 2.5 at t = 2). Check that forgetting is visible for this seed, as the text claims:
first, final = segment_losses["after sub-task 1"], segment_losses["after sub-task 5"]
assert final[0] > 5 * first[0], f"segment 1 was not forgotten: {first} → {final}"
print("forgetting is visible: segment 1's loss grew", round(final[0] / first[0], 1), "times")
