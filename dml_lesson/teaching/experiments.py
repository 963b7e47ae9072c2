"""The experiments behind the course's figures: runs at given settings, and the status line that sums them up.

Each ``*_runs`` function trains the runs a figure compares (on one machine or on the cluster) and returns them as a
``{label: TrainingResult}`` dict; each ``*_status`` function turns runs into the one-line verdict shown under a
figure. Notebooks call these for their static figures; the widgets of :mod:`dml_lesson.teaching.widgets` call the
same functions each time a slider is released, so a static figure is what its widget shows at the defaults.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..core.optim import gradient_descent, sgd
from ..core.result import TrainingResult
from ..ps.server import distributed_gd, distributed_sgd
from ..variants.async_server import async_sgd
from ..variants.dp import dp_sgd, privacy_budget
from ..variants.local_sgd import local_sgd
from .status import Status, join


def lr_status(res: Any, bound: float) -> Status:
    """How a GD run behaved, in words, given the stability bound ``2/L`` (notebook 01).

    Severity by regime: ``"bad"`` above ``2/L`` (the loss grows, whether or not it has passed the divergence
    threshold yet), ``"warn"`` when oscillating (above ``1/L``) or slow (below ``2/L / 20``), ``"ok"`` otherwise.
    """
    lr = res.params["lr"]
    where = f"lr = {lr:.3g} = {lr / bound:.2f} × 2/L"
    if res.diverged:
        return Status(f"{where}: diverged at step {res.diverged_at} (above 2/L every step overshoots more)", "bad")
    regime, severity = "converging smoothly", "ok"
    if lr > bound / 2:
        regime, severity = "oscillating but converging", "warn"
    if lr < bound / 20:
        regime, severity = "converging slowly", "warn"
    if lr > bound:
        regime, severity = "above 2/L, so the loss grows (diverging, slowly this close to the bound)", "bad"
    return Status(f"{where}: {regime}, loss {res.losses[-1]:.4g} after {res.n_steps} steps", severity)


BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def sgd_runs(X: np.ndarray, y: np.ndarray, batch_size: int, lr: float, n_epochs: int, seed: int = 0) -> dict:
    """GD and SGD with ``batch_size`` over the same number of epochs (notebook 02)."""
    steps = n_epochs * (len(y) // batch_size)
    return {
        "GD (all rows)": gradient_descent(X, y, lr=lr, n_steps=n_epochs),
        f"SGD, batch {batch_size}": sgd(X, y, lr=lr, batch_size=batch_size, n_steps=steps, seed=seed),
    }


def sgd_status(res: Any) -> Status:
    """Status line of an SGD run: steps, epochs, final loss or divergence (``"bad"``) (notebook 02)."""
    b, lr = res.params["batch_size"], res.params["lr"]
    if res.diverged:
        return Status(f"batch {b}, lr {lr:.3g}: diverged at step {res.diverged_at}: lower the learning rate", "bad")
    return Status(f"batch {b}, lr {lr:.3g}: {res.n_steps} steps = {res.epochs[-1]:.3g} passes over the data, "
                  f"final loss {res.losses[-1]:.4g}")


def aggregate_runs(X: Any, y: Any, n_nodes: int, lr: float, n_steps: int, client: Any = None) -> dict:
    """Distributed GD with the weighted mean and with the source's sum (notebook 04)."""
    return {
        "weighted mean": distributed_gd(X, y, n_nodes=n_nodes, lr=lr, n_steps=n_steps, client=client),
        "sum (source's formula)": distributed_gd(X, y, n_nodes=n_nodes, lr=lr, n_steps=n_steps,
                                                 aggregate="sum", client=client),
    }


def aggregate_status(results: dict) -> Status:
    """One line per aggregation rule: final loss, or the step where it diverged (``"bad"``) (notebook 04)."""
    parts = [Status(f"{label}: diverged at step {res.diverged_at}", "bad") if res.diverged
             else Status(f"{label}: loss {res.losses[-1]:.4g} after {res.n_steps} steps")
             for label, res in results.items()]
    n = results["weighted mean"].params["n_nodes"]
    line = join(parts)
    return Status(f"{n} node{'s' if n > 1 else ''}: {line}", line.severity)


def dsgd_runs(X: Any, y: Any, lr: float, n_nodes: int, batch_size: int, scale_lr: bool, n_steps: int,
              seed: int = 0, client: Any = None, one_node: dict[int, Any] | None = None) -> dict:
    """One node against ``n_nodes`` nodes with the same per-node batch (notebook 05).

    ``one_node``: one-node runs already made, by batch size (the explorer keeps them: a run is a function of its
    settings, so the same settings give the same run); a new one is added to it.
    """
    kw = dict(batch_size=batch_size, n_steps=n_steps, seed=seed, client=client)
    lr_k = lr * n_nodes if scale_lr else lr
    one_node = {} if one_node is None else one_node
    if batch_size not in one_node:
        one_node[batch_size] = distributed_sgd(X, y, n_nodes=1, lr=lr, **kw)
    return {
        f"1 node, batch {batch_size}, lr {lr:.3g}": one_node[batch_size],
        f"{n_nodes} nodes × batch {batch_size}, lr {lr_k:.3g}": distributed_sgd(X, y, n_nodes=n_nodes, lr=lr_k,
                                                                                **kw),
    }


def dsgd_status(results: dict) -> Status:
    """Global batch of the multi-node run, and the outcome of both runs (``"bad"`` if one diverged) (notebook 05)."""
    one, res = list(results.values())
    n, b = res.params["n_nodes"], res.params["batch_size"]
    head = f"global batch = {n} nodes × {b} = {res.rows_per_step} rows per step, lr {res.params['lr']:.3g}"

    def outcome(r: Any) -> str:
        if r.diverged:
            return f"diverged at step {r.diverged_at}"
        return f"loss {r.losses[-1]:.4g} after {r.n_steps} steps ({r.epochs[-1]:.2f} epochs)"

    severity = "bad" if res.diverged or one.diverged else "ok"
    return Status(f"{head}: {outcome(res)}; one node: {outcome(one)}", severity)


def codec_runs(X: Any, y: Any, codecs: dict[str, Any], n_nodes: int = 4, lr: float = 0.2, n_steps: int = 60,
               client: Any = None) -> dict:
    """Distributed GD with each codec (notebook 06): the same run, different messages."""
    return {label: distributed_gd(X, y, n_nodes=n_nodes, lr=lr, n_steps=n_steps, codec=codec, client=client)
            for label, codec in codecs.items()}


def codec_label(v: dict[str, Any]) -> str:
    """A run's name from the codec widget's values, written as notebook 06 writes it ("top-k 10%")."""
    share = f" {100 * v['ratio']:.3g}%"  # the kept share k/d: 10%, 15.8%, ...
    detail = {"top-k": share, "random-k": share, "quantize": f" {v['bits']} bits",
              "sign": ""}[v["codec"]]
    return v["codec"] + detail + (" + error feedback" if v["error_feedback"] else "")


STALLED = 2.0
"""A compressed run whose final loss is more than this many times the uncompressed run's is shown as a warning."""


def codec_status(results: dict) -> Status:
    """Bytes moved (both directions) and final loss of each run, compared with no compression (notebook 06).

    Severity: ``"bad"`` when a run diverged, ``"warn"`` when its final loss is more than :data:`STALLED` times the
    uncompressed run's (the compression error stalls training).
    """
    def moved(res: Any) -> int:  # both directions: w down, the (encoded) gradients up
        return int(res.bytes_sent.sum() + res.bytes_received.sum())

    base = results["no compression"]
    parts = []
    for label, res in results.items():
        share = moved(res) / moved(base)
        if res.diverged:
            parts.append(Status(f"{label}: {share:.0%} of the bytes, diverged at step {res.diverged_at}", "bad"))
            continue
        stalled = res.losses[-1] > STALLED * base.losses[-1]
        parts.append(Status(f"{label}: {share:.0%} of the bytes, final loss {res.losses[-1]:.4g}",
                            "warn" if stalled else "ok"))
    return join(parts)


BOUNDS = ("0", "1", "2", "4", "8", "none")


def bound_value(label: str) -> int | None:
    """The staleness bound a slider label stands for (``"none"``: no bound)."""
    return None if label == "none" else int(label)


def staleness_runs(X: Any, y: Any, bound: int | None, n_nodes: int = 4, lr: float = 0.05, batch_size: int = 16,
                   n_gradients: int = 400, seed: int = 0, client: Any = None) -> dict:
    """Notebook 08: the asynchronous server without a bound and with ``bound``, on the same number of
    gradients and the same step per gradient: a bounded update combines ``n_nodes`` gradients at ``lr``, so the
    run without a bound applies each gradient at ``lr / n_nodes`` (notebook 05's scaling rule)."""
    kw = dict(n_nodes=n_nodes, batch_size=batch_size, seed=seed, client=client)
    runs = {"asynchronous (no bound)": async_sgd(X, y, n_updates=n_gradients, lr=lr / n_nodes, **kw)}
    if bound is not None:
        runs[f"bound {bound}"] = async_sgd(X, y, n_updates=n_gradients // n_nodes, staleness_bound=bound, lr=lr,
                                           **kw)
    return runs


def staleness_status(results: dict) -> Status:
    """For each run: largest staleness τ (in gradients), server updates per second (a bounded run's update is a
    clock of ``n_nodes`` gradients), final loss; ``"bad"`` if one diverged (notebook 08)."""
    parts = []
    for label, res in results.items():
        if res.diverged:
            parts.append(Status(f"{label}: diverged at update {res.diverged_at}", "bad"))
            continue
        parts.append(Status(f"{label}: τ at most {res.staleness.max()} gradients, "
                            f"{res.updates_per_second:.0f} server updates/s, loss {res.losses[-1]:.4g}"))
    return join(parts)


def local_run(X: Any, y: Any, local_steps: int, layout: str = "contiguous", n_nodes: int = 4, lr: float = 0.2,
              batch_size: int = 16, n_epochs: float = 2.0, seed: int = 0, client: Any = None) -> Any:
    """Local SGD with ``local_steps`` for about ``n_epochs`` passes over the data (notebook 08)."""
    steps = max(1, int(round(n_epochs * len(y) / (n_nodes * batch_size))))
    return local_sgd(X, y, n_nodes=n_nodes, lr=lr, batch_size=batch_size, local_steps=local_steps,
                     n_rounds=max(1, steps // local_steps), seed=seed, layout=layout, client=client)


def local_runs(X: Any, y: Any, local_steps: int, layout: str = "contiguous", **kw: Any) -> dict:
    """Notebook 08: one local step (distributed SGD) against ``local_steps``, over the same epochs (the same
    rows used) on the given layout; ``kw`` as for :func:`local_run`."""
    runs = {"H = 1 (distributed SGD)": local_run(X, y, 1, layout, **kw)}
    if local_steps > 1:
        runs[f"H = {local_steps}"] = local_run(X, y, local_steps, layout, **kw)
    return runs


def local_status(results: dict, prefix: str = "") -> Status:
    """Messages per epoch and final loss of each run, after ``prefix``; ``"bad"`` if one diverged (notebook 08)."""
    parts = []
    for label, res in results.items():
        per_epoch = res.params["messages_per_step"] * res.n_steps / res.epochs[-1]
        end = f"diverged at round {res.diverged_at}" if res.diverged else f"loss {res.losses[-1]:.4g}"
        parts.append(Status(f"{label}: {per_epoch:.0f} messages per epoch, {end}", "bad" if res.diverged else "ok"))
    line = join(parts)
    return Status(prefix + line, line.severity)


CURVE_SIGMAS = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0)


def dp_runs(X: Any, y: Any, noise_multiplier: float = 1.0, clip_norm: float = 1.0, *, n_nodes: int = 2,
            lr: float = 0.1, batch_size: int = 20, n_steps: int = 100, seed: int = 0, client: Any = None,
            baseline: TrainingResult | None = None) -> dict[str, TrainingResult]:
    """Non-private distributed SGD and DP-SGD with the same data, batches and seed (notebook 10).

    ``baseline``: a non-private run already made with these settings (the widget reuses it).
    """
    kw = dict(n_nodes=n_nodes, lr=lr, batch_size=batch_size, n_steps=n_steps, seed=seed, client=client)
    return {
        "non-private SGD": baseline if baseline is not None else distributed_sgd(X, y, **kw),
        f"DP-SGD, σ = {noise_multiplier:g}, C = {clip_norm:g}": dp_sgd(
            X, y, noise_multiplier=noise_multiplier, clip_norm=clip_norm, **kw),
    }


@lru_cache(maxsize=64)
def _epsilon(sigma: float, n_steps: int, batch_size: int, shard_sizes: tuple[int, ...], delta: float,
             sampling: str, neighbours: str = "zero-out") -> float:
    return privacy_budget(sigma, n_steps, batch_size, list(shard_sizes), delta, sampling, neighbours)


def epsilon_curve(n_steps: int, batch_size: int, shard_sizes: list[int], delta: float = 1e-5,
                  sigmas: tuple[float, ...] = CURVE_SIGMAS) -> dict[str, np.ndarray]:
    """Epsilon for each noise multiplier in ``sigmas`` (:func:`~dml_lesson.variants.dp.privacy_budget`), notebook 10.

    Keys: ``"sigma"``; ``"poisson"`` and ``"no-amplification"``, both with zero-out neighbours (like with like: the
    gap between them is sampling); ``"no-amplification, replace-one"`` (the gap to the one above is the neighbour
    definition). Results are cached, so a slider that only changes sigma does not recompute the curve.
    """
    sizes = tuple(int(s) for s in shard_sizes)
    curve = {"sigma": np.array(sigmas, dtype=float)}
    for key, sampling, neighbours in [("poisson", "poisson", "zero-out"),
                                      ("no-amplification", "no-amplification", "zero-out"),
                                      ("no-amplification, replace-one", "no-amplification", "replace-one")]:
        curve[key] = np.array([_epsilon(float(s), n_steps, batch_size, sizes, delta, sampling, neighbours)
                               for s in sigmas])
    return curve


def dp_status(runs: dict[str, TrainingResult], delta: float = 1e-5) -> Status:
    """Final losses of both runs and the DP run's epsilon, both ways, in one line (notebook 10).

    Severity: ``"bad"`` if the DP run diverged, ``"warn"`` without noise (no privacy guarantee), else ``"ok"``.
    """
    base, dp = runs.values()
    p = dp.params
    sigma, sizes = p["noise_multiplier"], tuple(p["shard_sizes"])
    eps = {s: _epsilon(sigma, dp.n_steps, p["batch_size"], sizes, delta, s) for s in ("poisson", "no-amplification")}
    if sigma == 0:
        privacy = "no noise: no privacy guarantee (ε = ∞)"
    else:
        privacy = (f"ε = {eps['poisson']:.3g} if sampling were Poisson, "
                   f"ε ≤ {eps['no-amplification']:.3g} proven for these shuffled batches "
                   f"(zero-out neighbours, δ = {delta:g})")
    severity = "bad" if dp.diverged else "warn" if sigma == 0 else "ok"
    return Status(f"σ = {sigma:g}, C = {p['clip_norm']:g}: final loss {dp.losses[-1]:.4g} "
                  f"(non-private {base.losses[-1]:.4g}); {privacy}", severity)
