"""Each notebook's widget, driven from Python: a slider change reruns, redraws and updates the status line."""

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.teaching import experiments, plots, widgets


@pytest.fixture(scope="module")
def two_weights():
    X, y, _ = dml.make_regression(1000, 1, noise=0.1, seed=0, w_true=[1.0, -2.0], x_mean=1.0).to_numpy()
    return X, y


@pytest.fixture(scope="module")
def blocks():
    return dml.make_regression(1000, 1, noise=0.1, seed=0, w_true=[1.0, -2.0], x_mean=1.0, block_size=125)[:2]


def move(explorer, name, value):
    """Set a control as a learner's release would, and return the previous figure."""
    before, redraws = explorer.png, explorer.redraws
    explorer.controls[name].value = value
    assert explorer.redraws == redraws + 1, explorer.status.value
    assert explorer.png != before, "the figure did not change"
    return explorer.status.value


def test_controls_redraw_only_on_release(two_weights):
    e = widgets.lr_explorer(*two_weights)
    assert all(c.continuous_update is False for c in e.controls.values())


def test_lr_slider_crosses_the_stability_bound(two_weights):
    X, y = two_weights
    e = widgets.lr_explorer(X, y, lr=0.1)
    assert e.redraws == 1 and e.png.startswith(b"\x89PNG") and "converging smoothly" in e.status.value
    assert "oscillating" in move(e, "lr", 0.3)
    status = move(e, "lr", 0.8)
    assert "diverged at step" in status and "#b00" in status
    assert "converging" in move(e, "lr", 0.05)


def test_the_status_colour_follows_the_regime_not_a_word(two_weights):
    """Just above 2/L the loss grows without having diverged yet: red, like a divergence; oscillating is amber."""
    X, y = two_weights
    bound = 2 / dml.lipschitz_constant(X)
    e = widgets.lr_explorer(X, y, lr=0.1)
    assert "#060" in e.status.value  # converging smoothly: green
    status = move(e, "lr", round(1.01 * bound, 4))
    assert "above 2/L" in status and "diverged" not in status and "#b00" in status
    assert "oscillating" in (status := move(e, "lr", round(0.75 * bound, 4))) and "#b60" in status
    slow = experiments.lr_status(dml.gradient_descent(X, y, lr=bound / 40, n_steps=5), bound)
    assert "slowly" in slow and slow.severity == "warn"


def test_batch_size_slider(two_weights):
    e = widgets.sgd_explorer(*two_weights, batch_size=16, lr=0.05)
    assert "batch 16" in e.status.value
    assert "batch 1, lr 0.05:" in move(e, "batch_size", 1)
    assert "batch 1000, lr 0.05: 3 steps" in move(e, "batch_size", 1000)
    assert "batch 1000, lr 0.02:" in move(e, "lr", 0.02)
    move(e, "batch_size", 16)
    assert "diverged at step" in move(e, "lr", 1.0)


def test_node_count_slider_changes_the_layout(client, blocks):
    e = widgets.layout_explorer(*blocks, n_nodes=4, client=client)
    assert "shard sizes [250, 250, 250, 250]" in e.status.value
    assert "shard sizes [375, 250, 375]" in move(e, "n_nodes", 3)
    assert "1000 rows in all" in move(e, "layout", "skewed")


def test_aggregate_slider_shows_the_sum_diverging(client, blocks):
    e = widgets.aggregate_explorer(*blocks, lr=0.15, n_nodes=1, client=client)
    assert "diverged" not in e.status.value
    status = move(e, "n_nodes", 4)
    assert "sum (source's formula): diverged at step" in status
    assert "weighted mean: loss" in status


def test_dsgd_sliders(client, blocks):
    e = widgets.dsgd_explorer(*blocks, lr=0.02, n_nodes=2, batch_size=8, scale_lr=False, client=client)
    assert "global batch = 2 nodes × 8 = 16 rows per step" in e.status.value
    assert "global batch = 4 nodes × 8 = 32" in move(e, "n_nodes", 4)
    assert "4 nodes × 32 = 128" in move(e, "batch_size", 32)
    assert "lr 0.08" in move(e, "scale_lr", True)


def test_a_bad_value_shows_an_error_not_a_traceback(two_weights):
    X, y = two_weights
    e = widgets.lr_explorer(X, y)
    e._step = lambda values: (_ for _ in ()).throw(ValueError("lr must be > 0"))
    e.update()
    assert "error:" in e.status.value and "lr must be > 0" in e.status.value


def test_static_figure_equals_the_widget_at_its_defaults(two_weights):
    X, y = two_weights
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    res = dml.gradient_descent(X, y, lr=0.1, n_steps=40)
    static = plots.to_png(plots.lr_figure(res, X, y, w_star, 2 / dml.lipschitz_constant(X)))
    assert widgets.lr_explorer(X, y, lr=0.1, n_steps=40).png == static


@pytest.mark.parametrize("lrs", [[0.5, 0.02, 0.9, 0.1], [0.9, 0.3]])
def test_a_redrawn_lr_frame_equals_a_new_figure(two_weights, lrs):
    """The explorer draws into its last figure (plots.recycle): pixel for pixel what a new figure shows,
    whatever the frames before it (diverged ones included)."""
    X, y = two_weights
    w_star, bound = np.linalg.lstsq(X, y, rcond=None)[0], 2 / dml.lipschitz_constant(X)
    e = widgets.lr_explorer(X, y, lr=0.1, n_steps=40)
    first = e._step(e.values)[0]
    for lr in lrs:
        e.controls["lr"].value = lr
        res = dml.gradient_descent(X, y, lr=lr, n_steps=40)
        assert e.png == plots.to_png(plots.lr_figure(res, X, y, w_star, bound)), lr
    assert e._step(e.values)[0] is first  # one figure, reused


def test_a_redrawn_sgd_frame_equals_a_new_figure(two_weights):
    X, y = two_weights
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    fig = None
    for b in [16, 1, 512, 4]:
        runs = experiments.sgd_runs(X, y, b, 0.05, 2, 0)
        fig = plots.sgd_figure(runs, X, y, w_star, into=fig)
        assert plots.to_png(fig) == plots.to_png(plots.sgd_figure(runs, X, y, w_star)), b


def test_redrawn_loss_frames_equal_new_figures(two_weights):
    """Notebooks 04-06's figures drawn into the last frame: pixel for pixel new figures, diverged runs included."""
    X, y = two_weights

    def runs(lr: float, steps: int) -> dict:
        gd = dml.gradient_descent(X, y, lr=lr, n_steps=steps)
        return {"weighted mean": gd, "sum": dml.sgd(X, y, lr=2 * lr, batch_size=8, n_steps=steps, seed=1)}

    draws = {
        "aggregate": lambda r, into: plots.aggregate_figure(r, 4, into=into),
        "dsgd": lambda r, into: plots.dsgd_figure(r, floor=0.01, into=into),
        "bytes": lambda r, into: plots.bytes_figure(r, into=into),
    }
    for name, draw in draws.items():
        fig = None
        for lr, steps in [(0.1, 40), (0.9, 60), (0.02, 10), (0.3, 40)]:
            r = runs(lr, steps)
            fig = draw(r, fig)
            assert plots.to_png(fig) == plots.to_png(draw(r, None)), (name, lr)


def _as_async(res, staleness):
    """A training record dressed as an asynchronous one (one staleness per update), for the figures only."""
    from dataclasses import fields

    from dml_lesson.core.result import TrainingResult
    from dml_lesson.variants.async_server import AsyncResult

    values = {f.name: getattr(res, f.name) for f in fields(TrainingResult)}
    k = len(staleness)
    return AsyncResult(**values, nodes=np.arange(k) % 4, clocks=np.arange(k) // 4, versions_read=np.arange(k),
                       staleness=np.asarray(staleness), arrival_times=np.linspace(0, 1, k))


def test_redrawn_frames_of_notebooks_07_08_and_10_equal_new_figures(two_weights):
    """Bars (the timeline, the staleness histogram), an inverted axis (the timeline), log-log axes and fixed
    ticks (epsilon against sigma) drawn into the last frame: pixel for pixel a new figure, however many bars or
    runs the frame before had."""
    from dml_lesson.teaching.experiments import epsilon_curve
    from dml_lesson.teaching.plots import asynchronous as plots_async
    from dml_lesson.teaching.plots import privacy as plots_privacy

    X, y = two_weights
    rng = np.random.default_rng(0)
    frames = []
    for lr, steps, top in [(0.1, 40, 6), (0.9, 60, 2), (0.02, 10, 9), (0.3, 40, 0)]:
        gd = dml.gradient_descent(X, y, lr=lr, n_steps=steps)
        sgd = dml.sgd(X, y, lr=lr, batch_size=8, n_steps=steps, seed=1)
        stale = {"asynchronous": _as_async(gd, rng.integers(0, top + 1, steps)), "bound 2": _as_async(sgd, [0] * steps)}
        frames.append((stale, {"H = 1": gd, f"H = {steps}": sgd}, {"non-private SGD": gd, "DP-SGD": sgd}, top))
    curve = epsilon_curve(40, 20, (500, 500), 1e-5)
    from dml_lesson.cluster.timeline import NodeStep

    def timeline(seed: int) -> list:
        r = np.random.default_rng(seed)
        rows, t = [], 0.0
        for step in range(int(r.integers(2, 7))):
            stops = t + r.uniform(0.002, 0.03, 4)
            rows += [NodeStep(n, step, f"w{n % 2}", t, float(stops[n]), float(stops.max())) for n in range(4)]
            t = float(stops.max()) + 0.001
        return rows

    draws = {
        "timeline": lambda f, into: plots.timeline_figure(timeline(f[3]), f"seed {f[3]}", into=into),
        "staleness": lambda f, into: plots_async.staleness_figure(f[0], f[3] or None, 0.01, into=into),
        "local": lambda f, into: plots_async.local_figure(f[1], 0.01, into=into),
        "dp": lambda f, into: plots_privacy.dp_figure(f[2], curve, float(f[3]), into=into),
    }
    for name, draw in draws.items():
        fig = None
        for frame in frames:
            fig = draw(frame, fig)
            assert plots.to_png(fig) == plots.to_png(draw(frame, None)), (name, frame[3])


def test_log_axes_label_ticks_as_plain_text():
    """10⁻³ and 2×10⁴ as text, not mathtext (parsed again on every redraw with new limits); the values are
    matplotlib's own labels."""
    fmt = plots.PlainLogFormatter(10, labelOnlyBase=False)
    assert [fmt(v) for v in [1e-3, 1.0, 10.0, 2e-3, 3e4]] == ["10⁻³", "10⁰", "10¹", "2×10⁻³", "3×10⁴"]
    assert plots.PlainLogFormatter(2)(1024) == "2¹⁰"
    fig = plots.new_figure()
    plots.log_scale(fig.axes[0], "y")
    fig.axes[0].plot([1, 2], [1e-3, 1e2])
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert "10⁻²" in labels and not any("$" in t for t in labels)


def test_a_figure_of_another_shape_is_not_recycled():
    fig = plots.new_figure(2, 1, width=10.0, height=3.4)
    assert plots.new_figure(2, 1, width=10.0, height=3.4, into=fig) is fig
    assert plots.new_figure(3, 1, width=10.0, height=3.4, into=fig) is not fig
    assert plots.new_figure(2, 1, width=9.0, height=3.4, into=fig) is not fig


def test_codec_widget(client):
    X, y, _ = dml.make_regression(2000, 99, seed=0, block_size=250)
    e = widgets.codec_explorer(X, y, n_nodes=2, lr=0.2, n_steps=20, client=client)
    assert "top-k 10%:" in e.status.value and "of the bytes," in e.status.value  # both directions counted
    assert "no compression: 100% of the bytes" in e.status.value
    assert "top-k 10% + error feedback" in move(e, "error_feedback", True)
    assert e.controls["bits"].disabled and not e.controls["percent"].disabled  # top-k: the share is its knob
    assert "quantize 4 bits + error feedback" in move(e, "codec", "quantize")
    assert not e.controls["bits"].disabled and e.controls["percent"].disabled
    assert "quantize 2 bits" in move(e, "bits", 2)
    move(e, "codec", "sign")
    assert e.controls["bits"].disabled and e.controls["percent"].disabled


def test_straggler_widget(client):
    X, y, _ = dml.make_regression(200_000, 10, seed=2)
    e = widgets.straggler_explorer(X, y, n_nodes=4, n_steps=4, client=client)
    assert "worker 1 4x slower, 0 backup(s)" in e.status.value
    assert "2 backup(s)" in move(e, "backups", 2)
    assert "worker 1 1x slower" in move(e, "factor", 1.0)


@pytest.mark.parametrize("when", ["while training", "while drawing into the last frame"])
def test_stop_during_a_redraw_says_so_and_the_next_redraw_works(two_weights, when):
    """Stop (KeyboardInterrupt) in a redraw: the status line says stopped, not running; the next release redraws
    a figure equal to a new one, even when the Stop left the recycled frame half drawn."""
    X, y = two_weights
    w_star, bound = np.linalg.lstsq(X, y, rcond=None)[0], 2 / dml.lipschitz_constant(X)
    e = widgets.lr_explorer(X, y, lr=0.1, n_steps=40)
    step, redraws = e._step, e.redraws

    def stopped(values):
        if when != "while training":
            for ax in e.figure.axes:  # what a Stop halfway through plots.recycle could leave
                ax.clear()
        raise KeyboardInterrupt

    e._step = stopped
    with pytest.raises(KeyboardInterrupt):
        e.controls["lr"].value = 0.3
    assert e.status.value == widgets.STOPPED and "running" not in e.status.value
    assert "stopped (interrupted)" in e.status.value and "move a slider to run again" in e.status.value
    assert e.redraws == redraws
    e._step = step
    assert "lr = 0.5 " in move(e, "lr", 0.5)
    res = dml.gradient_descent(X, y, lr=0.5, n_steps=40)
    assert e.png == plots.to_png(plots.lr_figure(res, X, y, w_star, bound))


def test_an_unexpected_error_in_a_redraw_is_shown_not_left_running(two_weights):
    e = widgets.lr_explorer(*two_weights)
    e._step = lambda values: {}["no such key"]
    with pytest.raises(KeyError):
        e.controls["lr"].value = 0.3
    assert "failed:" in e.status.value and "KeyError" in e.status.value and "running" not in e.status.value
