"""The baselines and the method registry: multi-head finetuning against a hand-written SGD reference, T-Net's
φ-gradient against finite differences of a hand-written MAML loop, the registry's fairness (same θ init)."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from warpkit.engine.baselines import METHODS, MethodOptions, MultiHeadFinetuning, make_method, meta_sgd, no_pretraining, t_net
from warpkit.engine.options import InnerLoop, WarpTraining
from warpkit.engine.init_learners import MAML
from warpkit.models.omniglot_net import omniglot_net_factory
from warpkit.engine.warp import LinearWarp, ResidualMLPWarp, task_parameters, warp_parameters

torch.set_num_threads(1)  # tiny tensors: intra-op threads only add contention on a shared machine


def mse(output, target):
    return ((output - target) ** 2).mean()


class FixedTask:
    """A task whose batches are fixed tensors (so references can replay them exactly)."""

    def __init__(self, seed, dtype=torch.float64, n=6, inputs=2, outputs=1, task_id=None):
        g = torch.Generator().manual_seed(seed)
        self.a = (torch.randn(n, inputs, generator=g, dtype=dtype), torch.randn(n, outputs, generator=g, dtype=dtype))
        self.b = (torch.randn(n, inputs, generator=g, dtype=dtype), torch.randn(n, outputs, generator=g, dtype=dtype))
        self.task_id = task_id
        self.calls = 0

    def sample_batch(self, step):
        self.calls += 1
        return self.a

    def sample_meta_batches(self, step):
        return self.a, self.b

    def evaluation_batch(self):
        return self.b


class TinyNet(nn.Module):
    """body: Linear(2, 4) → tanh → [warp] ; head: Linear(4, outputs)."""

    def __init__(self, warp="none", outputs=1):
        super().__init__()
        self.body = nn.Linear(2, 4)
        self.head = nn.Linear(4, outputs)
        warps = {"none": None, "linear": LinearWarp(4), "default": ResidualMLPWarp(4, hidden=5)}
        if warp not in warps:
            raise ValueError(warp)
        self.warp = warps[warp]  # built after the task layers: same θ init for every warp kind

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return self.head(self.warp(h) if self.warp is not None else h)


def tiny_factory(warp="none"):
    return TinyNet(warp).double()


# ------------------------------------------------------------------------------------------------ multi-head
def reference_multi_head(model, heads, schedule, lr):
    """Plain autograd SGD: one step per (key, task) in ``schedule`` on the body and that key's head."""
    body = copy.deepcopy(model.body)
    heads = {k: {n: t.clone().requires_grad_(True) for n, t in h.items()} for k, h in heads.items()}
    for key, task in schedule:
        x, y = task.a
        head = heads[key]
        prediction = F.linear(torch.tanh(body(x)), head["head.weight"], head["head.bias"])
        loss = mse(prediction, y)
        grads = torch.autograd.grad(loss, list(body.parameters()) + [head["head.weight"], head["head.bias"]])
        with torch.no_grad():
            for p, g in zip(body.parameters(), grads[:2]):
                p -= lr * g
        heads[key] = {"head.weight": (head["head.weight"] - lr * grads[2]).detach().requires_grad_(True),
                      "head.bias": (head["head.bias"] - lr * grads[3]).detach().requires_grad_(True)}
    return body, {k: {n: t.detach() for n, t in h.items()} for k, h in heads.items()}


def test_multi_head_gives_each_task_its_own_head_and_matches_plain_sgd():
    torch.manual_seed(0)
    model = tiny_factory()
    learner = MultiHeadFinetuning(model, mse, inner=InnerLoop(lr=0.3, steps=1), seed=4)
    tasks = [FixedTask(1, task_id="a"), FixedTask(2, task_id="b")]
    initial_heads = {k: {n: t.clone() for n, t in learner.head_of(k).items()} for k in ("a", "b")}
    assert not torch.equal(initial_heads["a"]["head.weight"], initial_heads["b"]["head.weight"])  # distinct draws
    start = copy.deepcopy(model)
    learner.meta_step(tasks)
    matches = []
    for order in ([0, 1], [1, 0]):  # the interleaving is shuffled: exactly one order must reproduce it
        body, heads = reference_multi_head(start, initial_heads, [(tasks[i].task_id, tasks[i]) for i in order], 0.3)
        matches.append(
            torch.allclose(model.body.weight, body.weight, atol=1e-12)
            and all(torch.allclose(learner.heads[k][n], heads[k][n], atol=1e-12) for k in heads for n in heads[k])
        )
    assert sum(matches) == 1
    # distinct heads got distinct updates, each from its own task's data only
    delta_a = learner.heads["a"]["head.weight"] - initial_heads["a"]["head.weight"]
    delta_b = learner.heads["b"]["head.weight"] - initial_heads["b"]["head.weight"]
    assert delta_a.abs().sum() > 1e-6 and delta_b.abs().sum() > 1e-6 and not torch.allclose(delta_a, delta_b)


def test_multi_head_steps_per_task_and_heads_persist_across_meta_steps():
    torch.manual_seed(0)
    model = tiny_factory()
    learner = MultiHeadFinetuning(model, mse, inner=InnerLoop(lr=0.1, steps=4))
    a, b, c = FixedTask(1, task_id="a"), FixedTask(2, task_id="b"), FixedTask(3, task_id="c")
    stats = learner.meta_step([a, b])
    assert (a.calls, b.calls) == (4, 4)  # inner_steps SGD steps per task, like the meta-learners' inner loops
    assert stats.task_loss_last < stats.task_loss_first
    head_a = {n: t.clone() for n, t in learner.heads["a"].items()}
    learner.meta_step([b, c])
    assert set(learner.heads) == {"a", "b", "c"}
    assert all(torch.equal(head_a[n], learner.heads["a"][n]) for n in head_a)  # a was not in this meta-batch


@pytest.mark.parametrize("head_init", ["mean", "zeros"])
def test_test_head_policy_and_adaptation_budget(head_init):
    torch.manual_seed(0)
    model = tiny_factory()
    learner = MultiHeadFinetuning(model, mse, inner=InnerLoop(lr=0.1, steps=3), head_init=head_init)
    learner.meta_step([FixedTask(1, task_id="a"), FixedTask(2, task_id="b")])
    if head_init == "mean":
        expected = (learner.heads["a"]["head.weight"] + learner.heads["b"]["head.weight"]) / 2
    else:
        expected = torch.zeros_like(model.head.weight)
    assert torch.allclose(model.head.weight, expected, atol=1e-15)
    # test-time adaptation starts from (body, test head) with the same steps and lr as every method
    test = FixedTask(9)
    trajectory = learner.adapt(test, keep_trajectory=True)
    assert trajectory.num_steps == 3
    assert torch.equal(trajectory.params[0]["head.weight"], model.head.weight.detach())
    reference = no_pretraining(copy.deepcopy(model), mse, InnerLoop(lr=0.1, steps=3)).adapt(test)
    assert trajectory.losses == reference.losses


def test_multi_head_checkpoint_resumes_identically():
    def run(resume_after=None):
        torch.manual_seed(0)
        learner = MultiHeadFinetuning(tiny_factory(), mse, inner=InnerLoop(lr=0.1, steps=2), seed=1)
        batches = [[FixedTask(1, task_id="a"), FixedTask(2, task_id="b")], [FixedTask(3, task_id="c")],
                   [FixedTask(2, task_id="b"), FixedTask(3, task_id="c")]]
        for i, tasks in enumerate(batches):
            if i == resume_after:
                state = copy.deepcopy(learner.state_dict())
                torch.manual_seed(123)
                learner = MultiHeadFinetuning(tiny_factory(), mse, inner=InnerLoop(lr=0.1, steps=2), seed=1)
                learner.load_state_dict(state)
            learner.meta_step(tasks)
        return learner

    straight, resumed = run(), run(resume_after=2)
    assert set(straight.heads) == set(resumed.heads) == {"a", "b", "c"}
    for name, p in straight.model.state_dict().items():
        assert torch.equal(p, resumed.model.state_dict()[name]), name
    for key in straight.heads:
        assert all(torch.equal(straight.heads[key][n], resumed.heads[key][n]) for n in straight.heads[key])


def test_multi_head_refuses_unidentified_tasks_and_missing_heads():
    learner = MultiHeadFinetuning(tiny_factory(), mse, inner=InnerLoop(steps=1))
    with pytest.raises(ValueError, match="task_id"):
        learner.meta_step([FixedTask(1)])
    learner.meta_step([FixedTask(1)], task_keys=["x"])
    assert set(learner.heads) == {"x"}
    with pytest.raises(ValueError, match="no submodule 'classifier'"):
        MultiHeadFinetuning(tiny_factory(), mse, head="classifier")
    with pytest.raises(ValueError, match="head_init"):
        MultiHeadFinetuning(tiny_factory(), mse, head_init="random")


# ------------------------------------------------------------------------------------------------------ T-Net
def maml_loss_by_hand(theta0, phi, task, steps, lr):
    """L_meta(θ_K; φ) for Linear → tanh → LinearWarp → Linear written out by hand; θ_k updated by plain SGD with
    autograd inner gradients (no graph kept: this is only evaluated, for finite differences)."""
    def net(theta, x):
        h = torch.tanh(x @ theta["body.weight"].T + theta["body.bias"])
        h = h @ phi["warp.weight"].T + phi["warp.bias"]
        return h @ theta["head.weight"].T + theta["head.bias"]

    theta = {n: t.clone() for n, t in theta0.items()}
    for _ in range(steps):
        variables = {n: t.clone().requires_grad_(True) for n, t in theta.items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(mse(net(variables, task.a[0]), task.a[1]), list(variables.values()))
        theta = {n: theta[n] - lr * g for n, g in zip(theta, grads)}
    return float(mse(net(theta, task.b[0]), task.b[1]))


def test_t_net_warp_gradient_equals_finite_differences_of_the_maml_loss():
    torch.manual_seed(0)
    model = tiny_factory("linear")
    with torch.no_grad():
        model.warp.weight.add_(0.4 * torch.randn(4, 4, dtype=torch.float64))
    learner = t_net(model, mse, steps=3, inner=InnerLoop(lr=0.2, steps=3), init_lr=0.07)
    task = FixedTask(5)
    theta0 = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    phi0 = {n: p.detach().clone() for n, p in warp_parameters(model).items()}
    analytic = learner.init_learner.task_gradient(learner, task, theta0, None)
    eps = 1e-6
    for name in ["warp.weight", "warp.bias", "body.weight", "head.bias"]:
        base = phi0[name] if name in phi0 else theta0[name]
        numeric = torch.zeros(base.numel(), dtype=torch.float64)
        for i in range(base.numel()):
            shift = torch.zeros(base.numel(), dtype=torch.float64)
            shift[i] = eps

            def at(sign):
                moved = base + sign * shift.view_as(base)
                theta = {**theta0, name: moved} if name in theta0 else theta0
                phi = {**phi0, name: moved} if name in phi0 else phi0
                return maml_loss_by_hand(theta, phi, task, 3, 0.2)

            numeric[i] = (at(1) - at(-1)) / (2 * eps)
        error = (analytic[name].flatten() - numeric).norm() / numeric.norm()
        assert error <= 1e-6, (name, float(error))
    # one meta-step: SGD on φ and θ_0 together with init_lr (one outer optimiser, as T-Nets), along that gradient
    learner.meta_step([task])
    assert torch.allclose(model.warp.weight, phi0["warp.weight"] - 0.07 * analytic["warp.weight"], atol=1e-12)
    assert torch.allclose(model.body.weight, theta0["body.weight"] - 0.07 * analytic["body.weight"], atol=1e-12)
    assert (model.warp.weight - phi0["warp.weight"]).abs().max() > 1e-6


def test_t_net_refuses_non_linear_warps():
    with pytest.raises(ValueError, match="linear warps only"):
        t_net(tiny_factory("default"), mse)
    with pytest.raises(ValueError, match="no warp layers"):
        t_net(tiny_factory("none"), mse)


def test_meta_sgd_learns_its_step_sizes_and_adapts_with_them():
    torch.manual_seed(0)
    learner = meta_sgd(tiny_factory(), mse, steps=2, inner=InnerLoop(lr=0.05, steps=2), init_lr=0.5)
    sizes = learner.init_learner.meta_parameters()
    assert all(torch.equal(s, torch.full_like(s, 0.05)) for s in sizes.values())
    before = {n: s.detach().clone() for n, s in sizes.items()}
    learner.meta_step([FixedTask(1), FixedTask(2)])
    assert any((s - before[n]).abs().max() > 1e-6 for n, s in sizes.items())
    lr = learner.current_inner_lr()
    assert isinstance(lr, dict) and torch.equal(lr["head.weight"], sizes["step_size:head.weight"].detach())


def test_no_pretraining_learns_nothing():
    torch.manual_seed(0)
    model = tiny_factory()
    before = copy.deepcopy(model.state_dict())
    learner = no_pretraining(model, mse, InnerLoop(lr=0.1, steps=3))
    learner.meta_step([FixedTask(1), FixedTask(2)])
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items())
    assert learner.adapt(FixedTask(3)).num_steps == 3


# ---------------------------------------------------------------------------------------------------- registry
def test_registry_builds_every_method_from_the_same_initialisation():
    asked = []

    def factory(warp="none"):
        asked.append(warp)
        return tiny_factory(warp)

    theta_of = {}
    for name in METHODS:
        learner = make_method(name, factory, mse, seed=7, inner=InnerLoop(lr=0.1, steps=2),
                              warp=WarpTraining(points_per_step=2), options=MethodOptions(maml_steps=2))
        theta_of[name] = {n: p.detach().clone() for n, p in task_parameters(learner.model).items()}
        warped = bool(warp_parameters(learner.model))
        assert warped == name.startswith(("warp-", "t-net")), name
        tasks = [FixedTask(1, task_id="a"), FixedTask(2, task_id="b")]
        stats = learner.meta_step(tasks)
        assert stats.iteration == 1
        assert learner.adapt(FixedTask(3)).num_steps == 2
    assert asked.count("default") == 4 and asked.count("linear") == 1 and asked.count("none") == 7
    first = theta_of["warp-leap"]
    for name, theta in theta_of.items():  # same seed → same θ init for every method (a fair comparison)
        assert all(torch.equal(theta[n], first[n]) for n in first), name


def test_registry_wires_the_right_learners():
    learner = make_method("warp-leap", tiny_factory, mse, warp=WarpTraining("first_order"),
                          options=MethodOptions(leap_simplified=True))
    assert learner.warp.objective == "first_order" and learner.init_learner.name == "leap-simplified"
    maml = make_method("maml", tiny_factory, mse, options=MethodOptions(maml_steps=4))
    assert isinstance(maml.init_learner, MAML) and maml.init_learner.steps == 4 and maml.warp is None
    tnet = make_method("t-net", tiny_factory, mse)
    assert tnet.init_learner.learn_warps and tnet.warp is None and tnet.warp_optimizer is None
    assert make_method("fomaml", tiny_factory, mse, options=MethodOptions(fomaml_steps=3)).init_learner.steps == 3
    head = make_method("multi-head", tiny_factory, mse, inner=InnerLoop(steps=2, batched=True),
                       options=MethodOptions(pretrain_lr=0.3))
    assert isinstance(head, MultiHeadFinetuning) and head.pretrain_lr == 0.3 and head.inner.steps == 2


def test_registry_bad_input():
    with pytest.raises(ValueError, match="unknown method 'warp-sgd'"):
        make_method("warp-sgd", tiny_factory, mse)
    with pytest.raises(ValueError, match="returned a model with warp layers"):
        make_method("reptile", lambda warp: tiny_factory("default"), mse)


def test_registry_with_the_omniglot_network():
    factory = omniglot_net_factory(ways=3, filters=4)
    warp_leap = make_method("warp-leap", factory, F.cross_entropy, seed=1)
    tnet = make_method("t-net", factory, F.cross_entropy, seed=1)
    leap = make_method("leap", factory, F.cross_entropy, seed=1)
    assert warp_leap.model.warp_kind == "conv3" and tnet.model.warp_kind == "linear"
    assert len(warp_parameters(warp_leap.model)) == 8 and not warp_parameters(leap.model)
    for name, p in task_parameters(leap.model).items():
        assert torch.equal(p, task_parameters(warp_leap.model)[name]) and torch.equal(p, task_parameters(tnet.model)[name])


def test_plain_leap_meta_trains_and_moves_theta0_with_either_adaptation():
    """Leap without warps needs the trajectory's states; batched and per-task adaptation give the same step."""
    moved = []
    for batched in (False, True):
        learner = make_method("leap", tiny_factory, mse, inner=InnerLoop(lr=0.1, steps=3, batched=batched),
                              init_lr=0.1)
        before = {n: p.detach().clone() for n, p in task_parameters(learner.model).items()}
        learner.meta_step([FixedTask(1), FixedTask(2)])
        moved.append({n: p.detach() - before[n] for n, p in task_parameters(learner.model).items()})
    assert any(d.abs().max() > 1e-6 for d in moved[0].values())
    for name in moved[0]:
        assert torch.allclose(moved[0][name], moved[1][name], atol=1e-6), name
