"""Every explorer callback, driven as a student would: set a control's ``.value`` and check what was drawn
against an independent computation (hand-written gradient descent, the grid's image under the warp)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")

from warpkit.engine import geometry as geo
from warpkit.experiments import mountains
from warpkit.viz import explorers as ex
from warpkit.viz.explorer_base import Explorer
from warpkit.viz.preconditioning import PreconditioningExplorer


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hand_gd_on_bowl(bowl, start, lr, steps, preconditioner=None):
    """γ ← γ − α P H (γ − c): the bowl's gradient is H (γ − c); P = AAᵀ for a linear warp A."""
    hessian = bowl.hessian.numpy()
    centre = bowl.centre.numpy()
    precondition = np.eye(2) if preconditioner is None else preconditioner
    point, path = np.array(start, dtype=float), [np.array(start, dtype=float)]
    for _ in range(steps):
        point = point - lr * precondition @ hessian @ (point - centre)
        path.append(point)
    return np.array(path)


def test_warp_explorer_redraws_the_warp_the_sliders_describe():
    scene = ex.WarpScene(steps=12, resolution=30)
    explorer = ex.WarpExplorer(scene)
    first_png = explorer.image.value
    assert first_png[:8] == b"\x89PNG\r\n\x1a\n"
    # identity warp: the warped grid is the plain grid and warped GD is plain GD
    art = explorer.artists
    np.testing.assert_allclose(art["warped_path"].get_xydata(), art["native_path"].get_xydata(), atol=1e-6)
    plain_vertical = art["grid"].get_segments()[0]
    np.testing.assert_allclose(plain_vertical[:, 0], scene.extent[0], atol=1e-6)

    explorer.controls["strength"].value = 2.0
    explorer.controls["rotation"].value = 0.6
    art = explorer.artists
    assert len(explorer.redraw_ms) == 3 and explorer.image.value != first_png
    # a linear warp A: warped GD in native coordinates is preconditioned GD with P = AAᵀ, exactly
    matrix = geo.PlaneWarp(2.0, 0.6).matrix.numpy()
    expected = _hand_gd_on_bowl(scene.loss, scene.start, scene.lr, scene.steps, matrix @ matrix.T)
    np.testing.assert_allclose(art["warped_path"].get_xydata(), expected, atol=1e-4)
    np.testing.assert_allclose(art["native_path"].get_xydata(),
                               _hand_gd_on_bowl(scene.loss, scene.start, scene.lr, scene.steps), atol=1e-4)
    # the grid drawn is the image of the θ-grid under A
    segment = art["grid"].get_segments()[0]
    theta_line = np.stack([np.full(50, scene.extent[0]), np.linspace(scene.extent[2], scene.extent[3], 50)], 1)
    np.testing.assert_allclose(segment, theta_line @ matrix.T, atol=1e-5)
    # the ellipses' areas are π r² det A (a linear map scales areas by |det A| = strength)
    verts = art["ellipses"].get_paths()[0].vertices
    x, y = verts[:, 0], verts[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    spacing = (scene.extent[1] - scene.extent[0]) / 5
    assert area == pytest.approx(np.pi * (0.22 * spacing) ** 2 * 2.0, rel=0.02)

    # non-linearity bends the grid: a vertical θ-line no longer maps to a straight line
    explorer.controls["nonlinearity"].value = 2.0
    segment = explorer.artists["grid"].get_segments()[5]
    straight = np.linalg.lstsq(np.c_[segment[:, 0], np.ones(len(segment))], segment[:, 1], rcond=None)[1]
    assert straight.size == 0 or straight[0] > 1e-3
    assert explorer.artists["final_loss_warped"] == pytest.approx(
        float(scene.loss(torch.tensor(explorer.artists["warped_path"].get_xydata()[-1]))), rel=1e-4)


def test_descent_explorer_step_size_and_start_point():
    scene = ex.DescentScene(steps=8, resolution=30)
    explorer = ex.DescentExplorer(scene)
    explorer.controls["lr"].value = 0.02
    explorer.controls["start_x"].value = 1.5
    art = explorer.artists
    start = (1.5, explorer.controls["start_y"].value)
    np.testing.assert_allclose(art["native_path"].get_xydata(), _hand_gd_on_bowl(scene.loss, start, 0.02, 8),
                               atol=1e-4)
    for name in ("native_path", "warped_path", "riemannian_path"):
        np.testing.assert_allclose(art[name].get_xydata()[0], start, atol=1e-5)
    gap_small = art["gap"]
    assert gap_small == pytest.approx(np.linalg.norm(art["warped_path"].get_xydata()
                                                     - art["riemannian_path"].get_xydata(), axis=1).max(), rel=1e-4)
    explorer.controls["lr"].value = 0.08
    gap_large = explorer.artists["gap"]
    assert gap_large > 4 * gap_small  # O(α²) per step: the gap grows faster than α
    assert len(explorer.redraw_ms) == 4


def _toy_mountain_scene(steps=10):
    surfaces = mountains.MountainFamily().sample(2, seed=3)
    identity = geo.PlaneWarp()
    bent = geo.PlaneWarp(strength=1.5, rotation=0.3, nonlinearity=1.0)
    snapshots = [ex.MountainSnapshot(0, identity, torch.zeros(2), torch.zeros(2)),
                 ex.MountainSnapshot(10, bent, torch.tensor([0.5, -0.5]), torch.tensor([0.2, 0.1]))]
    return ex.MountainScene(surfaces, snapshots, lr=0.1, steps=steps, resolution=40), bent


def test_mountain_explorer_slider_moves_through_snapshots():
    scene, bent = _toy_mountain_scene()
    explorer = ex.MountainExplorer(scene, snapshot=0)
    art = explorer.artists
    np.testing.assert_allclose(art["warped_path"].get_xydata(), art["sgd_path"].get_xydata(), atol=1e-6)
    assert art["marker"].get_xdata()[0] == 0

    explorer.controls["snapshot"].value = 1
    art = explorer.artists
    assert art["iteration"] == 10 and art["marker"].get_xdata()[0] == 10
    # the warped path starts at Ω(θ_0) of that snapshot and follows GD on θ of L∘Ω (hand-written loop)
    surface = scene.surfaces[0]
    theta = torch.tensor([0.5, -0.5])
    hand = [bent(theta).numpy()]
    for _ in range(scene.steps):
        theta = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(surface(bent(theta)), theta)
        theta = theta - 0.1 * g
        hand.append(bent(theta).detach().numpy())
    np.testing.assert_allclose(art["warped_path"].get_xydata(), np.array(hand), atol=1e-4)
    np.testing.assert_allclose(art["sgd_path"].get_xydata()[0], [0.2, 0.1], atol=1e-6)
    segment = art["grid"].get_segments()[0]
    theta_line = torch.stack([torch.full((50,), -3.0), torch.linspace(-3, 3, 50)], 1)
    np.testing.assert_allclose(segment, bent(theta_line).numpy(), atol=1e-5)

    explorer.controls["surface"].value = 1
    assert explorer.artists["final_loss_sgd"] == pytest.approx(float(scene.final_loss[1, 1, 1]))
    assert explorer.artists["final_loss_warp"] == pytest.approx(
        float(scene.surfaces[1](torch.tensor(explorer.artists["warped_path"].get_xydata()[-1]))), rel=1e-4, abs=1e-6)


def test_static_small_multiples_and_redraw_timing():
    fig, drawn = ex.warp_explorer_small_multiples([{"strength": 1.0}, {"strength": 2.0, "rotation": 0.6}],
                                                  ex.WarpScene(steps=5, resolution=30))
    assert len(fig.axes) == 4 and len(drawn) == 2
    assert drawn[0]["final_loss_warped"] != drawn[1]["final_loss_warped"]
    fig, drawn = ex.descent_explorer_small_multiples([{"lr": 0.02}, {"lr": 0.1}], ex.DescentScene(steps=5, resolution=30))
    assert len(fig.axes) == 4 and drawn[0]["gap"] < drawn[1]["gap"]
    scene, _ = _toy_mountain_scene(steps=5)
    fig, drawn = ex.mountain_small_multiples(scene, [0, 1])
    assert [d["iteration"] for d in drawn] == [0, 10]

    explorer = ex.WarpExplorer(ex.WarpScene(steps=5, resolution=30))
    median = explorer.measure_redraw_ms("strength", [1.5, 2.0, 2.5])
    assert median > 0 and len(explorer.redraw_ms) == 5  # 1 initial + 3 moves + 1 put back
    assert explorer.controls["strength"].value == 1.0
    with pytest.raises(ValueError, match="changed"):
        explorer.measure_redraw_ms("strength", [])


def _full_draw_rgba(explorer) -> np.ndarray:
    """The explorer's current state drawn from scratch on a new figure (no cached background): the reference
    its blitted image must match."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure, axes = explorer.make_figure()
    canvas = FigureCanvasAgg(figure)
    explorer.draw(axes, **explorer.values())
    canvas.draw()
    figure.set_layout_engine("none")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


@pytest.mark.parametrize("make, control, value", [
    (lambda: ex.DescentExplorer(ex.DescentScene(steps=8)), "lr", 0.12),
    (lambda: ex.WarpExplorer(ex.WarpScene(steps=8, resolution=30)), "rotation", 0.9),
    (lambda: PreconditioningExplorer(start=(-1.5, 0.4), steps=10), "condition_number", 300.0),
])
def test_blitted_redraw_matches_a_full_draw(make, control, value):
    import io

    from PIL import Image

    explorer = make()
    before = explorer.image.value
    explorer.controls[control].value = value
    assert explorer.image.value != before
    blitted = np.asarray(Image.open(io.BytesIO(explorer.image.value)).convert("RGBA")).astype(int)
    reference = _full_draw_rgba(explorer).astype(int)
    assert blitted.shape == reference.shape
    different = np.abs(blitted - reference).max(axis=-1) > 40
    assert different.mean() < 0.005, f"{different.mean():.2%} of the pixels differ from a full draw"
    # the titles carry the numbers that change with the slider: they must be the new ones, not the cached ones
    height = blitted.shape[0]
    renderer = explorer.canvas.get_renderer()
    for ax in explorer.axes:
        box = ax.title.get_window_extent(renderer)
        rows = slice(max(0, int(height - box.y1)), int(height - box.y0) + 1)
        columns = slice(max(0, int(box.x0)), int(box.x1) + 1)
        assert different[rows, columns].mean() < 0.02, f"the title {ax.get_title()!r} was not redrawn"


def test_every_explorer_uses_the_one_base_and_no_private_matplotlib_attributes():
    """One way to build an explorer: every ``*Explorer`` class in warpkit.viz derives from
    warpkit.viz.explorer_base.Explorer (no second base, no pyplot/Output-widget variant), and no drawing code
    reads a private attribute of another object (such as matplotlib's ``ax._left_title``; IPython's
    ``_repr_*_`` display protocol is public)."""
    import ast
    import importlib
    import pathlib

    import warpkit.viz

    names = []
    for path in sorted(pathlib.Path(warpkit.viz.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        module = importlib.import_module(f"warpkit.viz.{path.stem}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Explorer") and node.name != "Explorer":
                names.append(node.name)
                assert issubclass(getattr(module, node.name), Explorer), f"{path.name}: {node.name}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("_"):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                assert owner in ("self", "cls"), f"{path.name}:{node.lineno} reads a private attribute .{node.attr}"
    assert len(names) == len(set(names)) >= 5, names  # no two explorers share a name
