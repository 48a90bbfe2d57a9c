# %% [markdown]
# # Assignment 2: meta-gradients of a learned initialisation, and the points WarpGrad replays
#
# Lesson 02 compared four initialisation meta-learners on 2-D quadratic tasks and wrote WarpGrad's offline
# algorithm (Flennerhag et al., 2020, Algorithm 2) from scratch. Here you derive MAML's meta-gradient by hand on a
# quadratic task, write Leap's, and collect the trajectory points that WarpGrad's meta-objective (Eq. 11) replays.
#
# **How this works.** Each exercise is a function with a `NotImplementedError` in its body: replace those two
# lines with your code, then run the cell below it. Those cells run *public checks*; when they pass you see
# "public checks passed". A failing check gives a hint about the idea; run the cell again after a second failure
# for a more explicit one. Your instructor may run further tests when grading.

# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

from warpkit.engine.adapt import adapt
from warpkit.engine.warp import LinearWarp, task_parameters
from warpkit.experiments import meta_learning as meta
from warpkit.kit.checks import PublicChecks, check_close

torch.manual_seed(0)
tasks = meta.toy_task_family(4, seed=3)  # 2-D bowls L(θ) = ½ (θ − c)ᵀ A (θ − c): task.centre, task.curvature
task = tasks[0]
theta0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
LR, STEPS = 0.3, 5
path = meta.inner_path(task, theta0, LR, STEPS)  # θ_0 … θ_K, shape (K + 1, 2)
print("θ_K =", path[-1].numpy().round(4))

# %% [markdown]
# ## Exercise 1: MAML's meta-gradient on a quadratic task, by hand
#
# One gradient step on this task is θ_{k+1} = θ_k − αA(θ_k − c). Write `maml_gradient(task, theta0, lr, steps)`
# returning (dθ_K/dθ₀)ᵀ ∇L(θ_K) **without autograd**: work out what one step does to a small change of θ_k, and
# what K steps do to a small change of θ₀.

# %%
def maml_gradient(task, theta0, lr, steps):
    """(dθ_K/dθ_0)ᵀ ∇L(θ_K) for K = ``steps`` gradient steps of size ``lr`` on the quadratic ``task``."""
    ### BEGIN SOLUTION
    step_jacobian = torch.eye(2, dtype=theta0.dtype) - lr * task.curvature
    jacobian = torch.linalg.matrix_power(step_jacobian, steps)
    final = meta.inner_path(task, theta0, lr, steps)[-1]
    return jacobian.T @ task.gradient(final)
    ### END SOLUTION


# %%
with PublicChecks("maml_gradient") as checks:
    got = maml_gradient(task, theta0, LR, STEPS)
    checks.shape("a 2-vector", got, (2,))
    checks.close("K = 0: no inner loop, so it is the gradient at θ₀", maml_gradient(task, theta0, LR, 0),
                 task.gradient(theta0), hint=("with no steps, θ_K is θ₀ and its Jacobian is the identity",
                                              "the K = 0 case is (I − αA)⁰ ∇L(θ₀) = ∇L(θ₀)"))
    checks.close("matches autograd through the inner loop", got, meta.init_meta_gradient("MAML", task, theta0, LR, STEPS),
                 hint=("each step multiplies a small change of θ by the same matrix; compose K of them (chain rule)",
                       "dθ_{k+1}/dθ_k = I − αA, so dθ_K/dθ₀ = (I − αA)^K (torch.linalg.matrix_power)"))
### BEGIN HIDDEN TESTS
for other in tasks[1:]:
    check_close("hidden: other tasks and K", maml_gradient(other, theta0, 0.1, 7),
                meta.init_meta_gradient("MAML", other, theta0, 0.1, 7))
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: Leap's meta-gradient
#
# With z_k = (θ_k, L(θ_k)), Δθ_k = θ_{k+1} − θ_k and ΔL_k = L(θ_{k+1}) − L(θ_k), Leap's meta-gradient for one task is
#
# $$\nabla C(\theta_0) = -\sum_{k=0}^{K-1} \frac{\Delta\theta_k + \Delta L_k\, \nabla L(\theta_k)}{\lVert z_{k+1} - z_k \rVert_2}.$$
#
# Write `leap_gradient(task, path)` for a given inner path θ_0 … θ_K (use `task.loss` and `task.gradient`).

# %%
def leap_gradient(task, path):
    """Leap's ∇C(θ_0) for the inner ``path`` (shape (K + 1, 2)) on ``task``."""
    ### BEGIN SOLUTION
    gradient = torch.zeros_like(path[0])
    for k in range(len(path) - 1):
        delta, loss_delta = path[k + 1] - path[k], task.loss(path[k + 1]) - task.loss(path[k])
        gradient -= (delta + loss_delta * task.gradient(path[k])) / torch.sqrt(delta.pow(2).sum() + loss_delta**2)
    return gradient
    ### END SOLUTION


# %%
with PublicChecks("leap_gradient") as checks:
    got = leap_gradient(task, path)
    checks.shape("a 2-vector", got, (2,))
    checks.true("it points roughly back along the path (towards shorter paths)",
                float(got @ (path[-1] - path[0])) < 0, "∇C points in the direction the path went",
                hint=("θ₀ moves along −∇C: where should it go to shorten the path?",
                      "the sum has a minus sign in front"))
    checks.close("matches the lesson's Leap", got, meta.init_meta_gradient("Leap", task, theta0, LR, STEPS),
                 hint=("each step's contribution is normalised by the length of that step in (θ, L) space",
                       "the norm includes ΔL_k: sqrt(‖Δθ_k‖² + ΔL_k²)"))
### BEGIN HIDDEN TESTS
other_path = meta.inner_path(tasks[2], theta0, 0.2, 9)
check_close("hidden: another task and K", leap_gradient(tasks[2], other_path),
            meta.init_meta_gradient("Leap", tasks[2], theta0, 0.2, 9))
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: the points Algorithm 2 replays
#
# Offline WarpGrad first adapts every task of a meta-batch with φ frozen and stores each visited point θ_k
# (k = 0 … K−1) with its task and step, then replays the stored points. Write `collect_points(model, tasks, K, lr)`
# returning a list of `(task_index, k, theta_k)` (θ_k a dict of detached tensors) in task-then-step order, using
# `warpkit.engine.adapt.adapt(model, task, loss_fn, num_steps, lr)`, which returns a trajectory whose `.params`
# holds θ_0 … θ_{K−1}.

# %%
model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), LinearWarp(8), nn.Linear(8, 1)).double()
sine = meta.sine_tasks(3, first_seed=7)


def collect_points(model, tasks, K, lr):
    """[(task_index, k, θ_k)] for every task and every step k < K of its inner loop (φ frozen)."""
    ### BEGIN SOLUTION
    points = []
    for index, one_task in enumerate(tasks):
        trajectory = adapt(model, one_task, F.mse_loss, K, lr)
        points += [(index, k, theta) for k, theta in enumerate(trajectory.params)]
    return points
    ### END SOLUTION


# %%
with PublicChecks("collect_points") as checks:
    points = collect_points(model, sine, 4, 0.05)
    checks.equal("one point per task and step", len(points), 12,
                 hint=("K steps visit K points before each step: θ_0 … θ_{K−1}", "3 tasks × K = 4 points each"))
    checks.equal("task-then-step order", [(i, k) for i, k, _ in points], [(i, k) for i in range(3) for k in range(4)])
    start = {name: p.detach() for name, p in task_parameters(model).items()}
    checks.close("every task starts at θ₀", points[4][2]["0.weight"], start["0.weight"],
                 hint=("each task's inner loop starts from the shared initialisation", "the point with k = 0 is θ₀"))
    checks.true("the points move along the inner loop", float((points[3][2]["0.weight"] - start["0.weight"]).abs().max()) > 0,
                "θ_3 equals θ₀", hint="store the states the inner loop visits, not the starting point K times")
### BEGIN HIDDEN TESTS
again = collect_points(model, sine[::-1], 2, 0.1)
check_close("hidden: another order and K", again[2][2]["3.weight"],
            adapt(model, sine[1], F.mse_loss, 2, 0.1).params[0]["3.weight"])
### END HIDDEN TESTS

# %% [markdown]
# ## Lesson 02's self-check questions (written)
#
# 1. Why must the meta batch differ from the task batch? What would the outer loop learn if they were the same?
# 2. MAML's memory grows with K, WarpGrad's does not. Which term of MAML's meta-gradient is responsible, and why
#    does Eq. 11 not need it?
# 3. In the lesson's `one_step_objective`, what does `exact=False` change, and why does the *value* of the
#    objective stay the same?

# %% [markdown]
# ### BEGIN SOLUTION
# 1. The outer loop scores how well an inner step generalises within the task. Scored on the batch the step was
#    taken on, it rewards fitting that batch: larger effective steps that memorise it (overfitting), not steps
#    that lower the task's loss on new data. The meta batch is the task's held-out data inside meta-training.
# 2. The Jacobian dθ_K/dθ₀ = Π_k (I − α∇²L(θ_k)): backpropagating through it keeps all K steps' graphs in memory.
#    Eq. 11 treats every buffered point θ_k as a constant and differentiates through one look-ahead step only,
#    so its memory is that of one step whatever K is.
# 3. With `exact=False` the inner gradient is computed without a graph (and with φ frozen): it is a constant for
#    the φ-gradient, which loses the second-order term −α(∂²L_task/∂φ∂θ)ᵀ∇_θL_meta (Eq. 12). The forward
#    computation is the same numbers, so the value is unchanged; only the gradient differs.
# ### END SOLUTION

# %% tags=["instructor"]
# Grading notes (instructor only). Returning ∇L(θ_K) alone (FOMAML's gradient) or forgetting the K-th power
# fails exercise 1's autograd check; dropping ΔL_k from the norm fails exercise 2's. Reference values:
print("MAML gradient:", maml_gradient(task, theta0, LR, STEPS).numpy().round(6),
      "Leap gradient:", leap_gradient(task, path).numpy().round(6))
