"""Differentially private SGD on the parameter server: clip each example's gradient, add Gaussian noise (notebook 10).

DP-SGD changes two things in distributed SGD, and both fit the server's existing hooks:

1. **Clipping**, in the model: :func:`clipped_model` wraps a :class:`~dml_lesson.core.models.Model` so that its
   gradient sum is the sum of per-example gradients, each scaled down to norm at most ``clip_norm`` (C). One
   row then moves the sum by at most C (its *sensitivity*).
2. **Noise**, in the codec: :class:`GaussianNoise` adds ``N(0, (sigma C)^2 / N)`` to each of the ``N`` nodes'
   gradient sums before they leave the node. The sum of ``N`` independent Gaussians of variance
   ``(sigma C)^2 / N`` has variance ``(sigma C)^2``: the server's total carries exactly the noise of the
   textbook algorithm, added once to the sum. Splitting it means the server never sees a noise-free sum
   (with secure aggregation, :mod:`dml_lesson.variants.secagg`, it sees only the noisy total), but it trusts every
   node to add its share: a node that skips it, or drops out, leaves less noise than was accounted. And the
   budget of noise multiplier sigma holds for whoever sees only the sum (the weights, or the server under
   secure aggregation); a server that reads each node's message sees a row's node with noise sigma C / sqrt(N),
   so for it the noise multiplier is sigma / sqrt(N).

The noise is drawn from the codec's generator, seeded by ``(seed, node, step)``, so a run repeats exactly. That
is for teaching only: whoever knows the seed can regenerate the noise and subtract it, so no epsilon holds. A real
deployment draws the noise from a cryptographically secure generator with a secret seed.
The server then divides by the global batch ``N * batch_size`` (fixed: every batch has exactly ``batch_size`` rows).

**The privacy budget** (:func:`privacy_budget`) comes from Google's ``dp-accounting`` library (the optional
extra ``dml-lesson[privacy]``, imported only when needed). A number needs two choices stated with it:

* **how the batches were drawn.** The library's accountants know Poisson sampling (each row joins each step
  independently with probability q); this code, like most DP-SGD code in practice, shuffles each shard once per
  epoch and cuts it into batches. No accountant in the library covers shuffled batches, so ``"poisson"`` is the
  number practitioners usually report (not a proven guarantee for this code), ``"fixed-size"`` the number for a
  fresh batch of exactly b rows drawn without replacement every step (RDP, replace-one only; Wang, Balle and
  Kasiviswanathan 2019), also not this code's sampler, and ``"no-amplification"`` a valid
  bound for the code as it runs (each row is used in a known number of steps, each a Gaussian mechanism; no
  credit for sampling), which is larger.
* **which datasets are neighbours.** ``"zero-out"``: one row replaced by a row whose clipped gradient is 0
  (Kairouz et al. 2021; the library's ``REPLACE_SPECIAL``), sensitivity C. Under Poisson sampling this gives the
  same number as add/remove-one (Abadi et al. 2016): a zero row adds nothing and leaves the other rows' draws
  alone. ``"replace-one"``: one row's value changed, sensitivity 2C. The library's RDP accountant has no Poisson
  analysis for replace-one (its PLD accountant has), so that combination raises a ``ValueError`` rather than a guess.
* **which accountant.** ``"rdp"`` (Renyi DP, Mironov 2017) is fast and an upper bound; ``"pld"`` (privacy loss
  distributions) is tight up to its discretization, and smaller. Both are upper bounds on the true epsilon.

The library's Gaussian event takes sigma as noise std over the per-row norm bound C, but its RDP formulas read it as
std over the sensitivity, which is 2C under replace-one (google/differential-privacy issue 378). This module
therefore passes ``sigma / sensitivity`` with a relation that does not rescale it, and the PLD accountant's own
replace-one relation (which doubles the sensitivity itself) only for Poisson sampling.

:func:`budget_table` puts the four combinations side by side, so that a gap between two numbers can be split into
the part the sampling explains and the part the neighbour definition explains (notebook 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client

from ..core.checks import check_choice, check_float, check_int
from ..core.models import LINEAR, LOGISTIC, Model, get_model, sigmoid
from ..core.result import TrainingResult
from ..ps.server import distributed_sgd

SAMPLINGS = ("poisson", "fixed-size", "no-amplification")
NEIGHBOURS = ("zero-out", "replace-one")
ACCOUNTANTS = ("rdp", "pld")
PLD_DISCRETIZATION = 1e-3  # the PLD accountant's grid: coarser is faster and still an upper bound


def _per_example_coefficients(model: Model, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """For the course's models each row's gradient is ``c_j * x_j``: return the ``c_j`` (None for other models)."""
    z = X @ w
    if model.sums is LINEAR.sums:
        return 2.0 * (z - y)
    if model.sums is LOGISTIC.sums:
        return sigmoid(z) - y
    return None


@dataclass(frozen=True)
class ClippedSums:
    """The ``sums`` function of a clipped model: loss sum, and the sum of per-example gradients clipped to C.

    Picklable (a module-level class), so Dask can send it to the workers inside a :class:`Model`.
    """

    model: Model
    clip_norm: float

    def __call__(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return self.model.loss_sum(w, X, y), clipped_gradient_sum(self.model, w, X, y, self.clip_norm)


def clipped_gradient_sum(model: Model, w: np.ndarray, X: np.ndarray, y: np.ndarray, clip_norm: float) -> np.ndarray:
    """Sum over the rows of each row's gradient scaled to norm at most ``clip_norm`` (notebook 10).

    Linear and logistic regression are vectorized (a row's gradient is ``c_j * x_j``, its norm
    ``|c_j| * ||x_j||``); any other model is clipped row by row through ``model.sums``.
    """
    coef = _per_example_coefficients(model, w, X, y)
    if coef is not None:
        norms = np.abs(coef) * np.linalg.norm(X, axis=1)
        scale = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-300))
        return X.T @ (coef * scale)
    total = np.zeros(len(w))
    for j in range(len(y)):
        g = model.sums(w, X[j : j + 1], y[j : j + 1])[1]
        total += g * min(1.0, clip_norm / max(float(np.linalg.norm(g)), 1e-300))
    return total


def clipped_model(model: str | Model = "linear", clip_norm: float = 1.0) -> Model:
    """``model`` with every per-example gradient clipped to norm ``clip_norm`` (C) before summing (notebook 10).

    The loss and predictions are the model's own; only the gradient sum changes.
    """
    base = get_model(model)
    clip_norm = check_float("clip_norm", clip_norm, low=0.0, low_open=True)
    return Model(f"{base.name}, clipped at {clip_norm:g}", ClippedSums(base, clip_norm), base.loss_sum, base.predict)


def gradient_norms(model: str | Model, w: Any, X: Any, y: Any) -> np.ndarray:
    """The norm of each row's gradient at ``w`` (notebook 10 draws their histogram against C)."""
    base = get_model(model)
    X, y, w = np.asarray(X, dtype=float), np.asarray(y, dtype=float), np.asarray(w, dtype=float)
    coef = _per_example_coefficients(base, w, X, y)
    if coef is None:
        return np.array([np.linalg.norm(base.sums(w, X[j : j + 1], y[j : j + 1])[1]) for j in range(len(y))])
    return np.abs(coef) * np.linalg.norm(X, axis=1)


def clipped_share(model: str | Model, w: Any, X: Any, y: Any, clip_norm: float) -> float:
    """Share of the rows whose gradient at ``w`` is longer than ``clip_norm`` (so clipping changes it)."""
    return float(np.mean(gradient_norms(model, w, X, y) > clip_norm))


@dataclass(frozen=True)
class GaussianNoise:
    """A "codec" that adds each node's share of the DP noise: ``N(0, (sigma C)^2 / n_nodes)`` per entry.

    With ``n_nodes`` nodes the shares add up to ``N(0, (sigma C)^2)`` on the server's sum. The payload is the
    noisy vector itself (8 bytes per entry); the server's decode is the identity.
    """

    noise_multiplier: float
    clip_norm: float
    n_nodes: int = 1
    name = "gaussian noise"

    def __post_init__(self) -> None:
        check_float("noise_multiplier", self.noise_multiplier, low=0.0)
        check_float("clip_norm", self.clip_norm, low=0.0, low_open=True)
        check_int("n_nodes", self.n_nodes, low=1)

    @property
    def node_std(self) -> float:
        """Standard deviation of one node's share of the noise."""
        return self.noise_multiplier * self.clip_norm / math.sqrt(self.n_nodes)

    def encode(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return g + rng.normal(0.0, self.node_std, len(g))

    def decode(self, payload: Any, d: int, rng: np.random.Generator) -> np.ndarray:
        return payload

    def nbytes(self, d: int) -> int:
        return 8 * d


def dp_sgd(
    X: Any,
    y: Any,
    n_nodes: int = 2,
    lr: float = 0.05,
    batch_size: int = 64,
    n_steps: int = 200,
    seed: int = 0,
    client: Client | None = None,
    *,
    noise_multiplier: float = 1.0,
    clip_norm: float = 1.0,
    model: str | Model = "linear",
    w0: Any = None,
    layout: str = "contiguous",
    transport: str = "actors",
) -> TrainingResult:
    """Distributed DP-SGD: per-example clipping to ``clip_norm`` and Gaussian noise ``noise_multiplier * C``.

    :func:`~dml_lesson.ps.server.distributed_sgd` with :func:`clipped_model` as the model and
    :class:`GaussianNoise` as the codec (notebook 10). ``noise_multiplier=0`` gives clipped SGD without noise.
    The recorded losses are the true training losses, for teaching: publishing them is not private. The run's
    ``params`` gain ``noise_multiplier``, ``clip_norm`` and ``noise_std`` (of the noise on the summed gradient).
    """
    noise_multiplier = check_float("noise_multiplier", noise_multiplier, low=0.0, high=100.0)
    clip_norm = check_float("clip_norm", clip_norm, low=0.0, low_open=True)
    n_nodes = check_int("n_nodes", n_nodes, low=1)
    res = distributed_sgd(X, y, n_nodes=n_nodes, lr=lr, batch_size=batch_size, n_steps=n_steps, seed=seed,
                          client=client, w0=w0, model=clipped_model(model, clip_norm), layout=layout,
                          transport=transport, codec=GaussianNoise(noise_multiplier, clip_norm, n_nodes))
    res.params.update(noise_multiplier=noise_multiplier, clip_norm=clip_norm, noise_std=noise_multiplier * clip_norm)
    return res


def participations(n_steps: int, batch_size: int, shard_sizes: list[int]) -> int:
    """The most steps any one row takes part in, with the course's shuffled batches
    (:func:`~dml_lesson.core.optim.minibatch_indices`).

    A shard of ``n`` rows gives ``n // batch_size`` batches per epoch, each row in at most one of them; a
    batch at least as large as the shard is the whole shard, every step.
    """
    counts = []
    for n in shard_sizes:
        if batch_size >= n:
            counts.append(n_steps)
        else:
            counts.append(math.ceil(n_steps / (n // batch_size)))
    return max(counts)


def privacy_budget(
    noise_multiplier: float,
    n_steps: int,
    batch_size: int,
    shard_sizes: list[int],
    delta: float = 1e-5,
    sampling: str = "poisson",
    neighbours: str = "zero-out",
    accountant: str = "rdp",
) -> float:
    """The epsilon of (epsilon, delta)-differential privacy after ``n_steps`` of DP-SGD (notebook 10).

    Computed with ``dp-accounting``'s RDP or PLD accountant (install ``dml-lesson[privacy]``).

    Parameters
    ----------
    noise_multiplier : float
        sigma: the noise's standard deviation divided by the clipping norm C (0 means no privacy: inf).
    n_steps, batch_size, shard_sizes
        The run: steps, rows per node per step, and rows of each node's shard.
    delta : float
        The delta of (epsilon, delta)-DP, in (0, 1); take it well below 1 / number of rows.
    sampling : ``"poisson"``, ``"fixed-size"`` or ``"no-amplification"``
        ``"poisson"``: the accountant assumes each row joins each step independently with probability
        ``q = batch_size / smallest shard``. That is what DP-SGD papers and libraries usually report, but this
        code shuffles each epoch instead: the number is *not* a proven guarantee for it. ``"fixed-size"``: a fresh
        batch of exactly ``batch_size`` rows drawn without replacement every step (not this code either; RDP and
        replace-one only). ``"no-amplification"``:
        a valid bound for the code as it runs. Each row is used in at most :func:`participations` steps, the
        batches do not depend on the data, and in each of those steps the row moves the sum by at most its
        sensitivity under noise sigma C: a Gaussian mechanism, composed over those steps.
    neighbours : ``"zero-out"`` or ``"replace-one"``
        Which datasets differ "in one row". ``"zero-out"``: one row replaced by a row whose clipped gradient is 0
        (sensitivity C, noise multiplier sigma); with Poisson sampling the same number as add/remove-one.
        ``"replace-one"``: one row's value changed (sensitivity 2C, noise multiplier sigma / 2).
        :func:`no_accountant` says which combinations have no accountant (ValueError).
    accountant : ``"rdp"`` or ``"pld"``
        Renyi DP (fast, looser) or privacy loss distributions (tight up to :data:`PLD_DISCRETIZATION`).

    Returns
    -------
    float
        epsilon (``inf`` when ``noise_multiplier`` is 0).
    """
    noise_multiplier = check_float("noise_multiplier", noise_multiplier, low=0.0)
    n_steps = check_int("n_steps", n_steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    delta = check_float("delta", delta, low=0.0, high=1.0, low_open=True)
    sampling = check_choice("sampling", sampling, SAMPLINGS)
    neighbours = check_choice("neighbours", neighbours, NEIGHBOURS)
    accountant = check_choice("accountant", accountant, ACCOUNTANTS)
    if len(shard_sizes) == 0:
        raise ValueError("shard_sizes must list at least one shard, got an empty list")
    shard_sizes = [check_int(f"shard_sizes[{i}]", s, low=1) for i, s in enumerate(shard_sizes)]
    reason = no_accountant(sampling, neighbours, accountant)
    if reason is not None:
        raise ValueError(f"sampling={sampling!r}, neighbours={neighbours!r}, accountant={accountant!r}: {reason}")
    if noise_multiplier == 0.0:
        return math.inf
    dpa = _dp_accounting()
    relation = dpa.NeighboringRelation
    sensitivity = 1.0 if neighbours == "zero-out" else 2.0  # in units of C
    n_min = min(shard_sizes)
    if sampling == "poisson":  # the library's own relation: REPLACE_SPECIAL is zero-out; PLD's REPLACE_ONE doubles C
        rel = relation.REPLACE_SPECIAL if neighbours == "zero-out" else relation.REPLACE_ONE
        p = min(1.0, batch_size / n_min)
        event, count = dpa.PoissonSampledDpEvent(p, dpa.GaussianDpEvent(noise_multiplier)), n_steps
    elif sampling == "fixed-size" and batch_size < n_min:  # RDP reads sigma per unit of sensitivity (2C here)
        rel = relation.REPLACE_ONE
        event = dpa.SampledWithoutReplacementDpEvent(n_min, batch_size, dpa.GaussianDpEvent(noise_multiplier / 2))
        count = n_steps
    else:  # a Gaussian mechanism of sensitivity 1 after dividing sigma by the sensitivity
        rel = relation.ADD_OR_REMOVE_ONE
        event = dpa.GaussianDpEvent(noise_multiplier / sensitivity)
        count = n_steps if sampling == "fixed-size" else participations(n_steps, batch_size, shard_sizes)
    if accountant == "rdp":
        acc = dpa.rdp.RdpAccountant(neighboring_relation=rel)
    else:
        acc = dpa.pld.PLDAccountant(neighboring_relation=rel, value_discretization_interval=PLD_DISCRETIZATION)
    acc.compose(event, count)
    return float(acc.get_epsilon(delta))


def no_accountant(sampling: str, neighbours: str, accountant: str = "rdp") -> str | None:
    """Why ``dp-accounting`` has no accountant for this combination, or None if it has one (notebook 10)."""
    if sampling == "poisson" and neighbours == "replace-one" and accountant == "rdp":
        return "the RDP accountant has no Poisson analysis for replace-one neighbours (the PLD accountant has)"
    if sampling == "fixed-size" and neighbours == "zero-out":
        return "sampling without replacement is analysed only for replace-one neighbours (Wang et al. 2019)"
    if sampling == "fixed-size" and accountant == "pld":
        return "the PLD accountant has no event for sampling without replacement"
    return None


def budget_table(
    noise_multiplier: float,
    n_steps: int,
    batch_size: int,
    shard_sizes: list[int],
    delta: float = 1e-5,
    accountant: str = "rdp",
) -> dict[tuple[str, str], float | None]:
    """Epsilon for every ``(sampling, neighbours)`` pair, ``None`` where no accountant exists (notebook 10).

    Reading along a row changes only the neighbour definition, along a column only the sampling: the gap between
    the usual Poisson number and the proven shuffled one splits into those two parts.
    """
    table: dict[tuple[str, str], float | None] = {}
    for sampling in SAMPLINGS:
        for neighbours in NEIGHBOURS:
            known = no_accountant(sampling, neighbours, accountant) is None
            table[sampling, neighbours] = (privacy_budget(noise_multiplier, n_steps, batch_size, shard_sizes, delta,
                                                          sampling, neighbours, accountant) if known else None)
    return table


def _dp_accounting() -> Any:
    """Import ``dp_accounting`` lazily, with an error that says how to install it."""
    try:
        import dp_accounting
        import dp_accounting.pld  # noqa: F401  (the subpackages are not imported by the package itself)
        import dp_accounting.rdp  # noqa: F401
    except ImportError as exc:
        raise ImportError("the privacy budget needs Google's dp-accounting library: "
                          "pip install 'dml-lesson[privacy]' (or pip install dp-accounting)") from exc
    return dp_accounting
