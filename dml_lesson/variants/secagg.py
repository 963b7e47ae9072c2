"""Secure aggregation by pairwise masks: the server learns the sum of the nodes' gradients, and nothing else
(notebook 10).

Every pair of nodes ``i < j`` shares a random mask ``z_ij``; node ``i`` adds it, node ``j`` subtracts it. Each
masked vector the server receives looks like uniform noise, but in the sum every mask appears once with ``+``
and once with ``-`` and cancels. In floating point the cancellation would leave rounding errors (a mask of
size 1e18 swallows a gradient of size 1), so the nodes first encode their gradients in **fixed point**:
``round(x * 2**frac_bits)`` as 64-bit integers, with wrap-around (modulo 2**64) arithmetic. Integer addition
modulo 2**64 is exact and associative, so the masks cancel exactly and the masked sum equals, bit for bit, the
fixed-point sum of the unmasked vectors. The only error is the fixed-point rounding, at most
``2**-(frac_bits + 1)`` per entry per node (:func:`fixed_point_error_bound`).

Simplifications, said plainly: here each pair's mask comes from a generator seeded by
``(seed, step, i, j)``; in a real protocol (Bonawitz et al., 2017) the pair agrees on a secret seed by a key
exchange, so the server cannot compute the masks, and secret-shares it so the sum survives a node dropping
out. Here a node that does not answer leaves its masks in the sum (:func:`secure_sum` refuses a partial
round). The real protocol also adds a per-node self-mask (double masking), so that rebuilding a dropped node's
pair masks cannot expose a late node's input, and is secure only against a server colluding with fewer than the
secret-sharing threshold of nodes. Distributed DP over secure aggregation adds discrete noise to the integers
(Kairouz, Liu and Steinke, 2021).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from distributed import Client, wait

from ..cluster.shards import Placement
from ..core.checks import check_int, check_seed
from ..core.models import Model, get_model
from ..core.settings import STEP_TIMEOUT
from ..ps.node import NodeConfig, node_step

FRAC_BITS = 32
"""Default fixed-point precision: ``2**-32`` (about 2.3e-10) per unit, values up to about 2**31 / nodes."""
_MASK_TAG = 0x5EC


def to_fixed(x: Any, frac_bits: int = FRAC_BITS, n_nodes: int = 1) -> np.ndarray:
    """``round(x * 2**frac_bits)`` as uint64 (two's complement for negatives), the nodes' encoding.

    Raises a ``ValueError`` when a value is so large that the sum of ``n_nodes`` such values could overflow.
    """
    frac_bits = check_int("frac_bits", frac_bits, low=0, high=52)
    x = np.asarray(x, dtype=float)
    limit = 2.0 ** (62 - frac_bits) / max(n_nodes, 1)
    if not np.all(np.isfinite(x)) or np.any(np.abs(x) >= limit):
        raise ValueError(f"x must be finite with |x| < {limit:.3g} for {n_nodes} node(s) at frac_bits={frac_bits} "
                         f"(else the 64-bit sum overflows), got max |x| = {np.max(np.abs(x)):.3g}")
    return np.rint(x * 2.0**frac_bits).astype(np.int64).view(np.uint64)


def from_fixed(u: np.ndarray, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Decode uint64 fixed point back to floats (the server does this once, on the sum)."""
    return np.asarray(u, dtype=np.uint64).view(np.int64).astype(float) / 2.0**frac_bits


def pair_mask(seed: int, step: int, i: int, j: int, d: int) -> np.ndarray:
    """The mask nodes ``i`` and ``j`` share in ``step``: ``d`` uniform 64-bit integers (same for ``(j, i)``)."""
    lo, hi = min(i, j), max(i, j)
    rng = np.random.default_rng([seed, step, lo, hi, _MASK_TAG])
    return rng.integers(0, np.iinfo(np.uint64).max, size=d, dtype=np.uint64, endpoint=True)


def mask(fixed: np.ndarray, node: int, n_nodes: int, seed: int, step: int) -> np.ndarray:
    """Node ``node``'s masked vector: its fixed-point vector plus ``z_(node, j)`` for every ``j > node`` and
    minus ``z_(j, node)`` for every ``j < node``, modulo 2**64."""
    node = check_int("node", node, low=0, high=n_nodes - 1, why="n_nodes - 1")
    out = np.array(fixed, dtype=np.uint64)
    for other in range(n_nodes):
        if other == node:
            continue
        m = pair_mask(seed, step, node, other, len(out))
        out = out + m if node < other else out - m  # uint64 arrays wrap around silently: exactly mod 2**64
    return out


def masked_vector(g: Any, node: int, n_nodes: int, seed: int = 0, step: int = 0,
                  frac_bits: int = FRAC_BITS) -> np.ndarray:
    """What node ``node`` sends instead of its gradient ``g``: fixed point, then masked (notebook 10)."""
    n_nodes = check_int("n_nodes", n_nodes, low=1)
    return mask(to_fixed(g, frac_bits, n_nodes), node, n_nodes, seed, step)


def modular_sum(vectors: list[np.ndarray]) -> np.ndarray:
    """Sum of uint64 vectors modulo 2**64 (exact, in any order)."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.uint64))
    for v in vectors:
        total = total + np.asarray(v, dtype=np.uint64)
    return total


def secure_sum(masked: list[np.ndarray | None], frac_bits: int = FRAC_BITS) -> np.ndarray:
    """The server's work: add the masked vectors modulo 2**64 (the masks cancel) and decode the sum once."""
    if not masked or any(m is None for m in masked):
        raise ValueError("secure_sum needs every node's masked vector: with one missing, its masks do not cancel "
                         "(real protocols recover them by secret sharing)")
    return from_fixed(modular_sum(masked), frac_bits)


def fixed_point_error_bound(n_nodes: int, frac_bits: int = FRAC_BITS) -> float:
    """Largest error per entry of the decoded sum against the exact sum: ``n_nodes * 2**-(frac_bits + 1)``
    from rounding each node's value, plus nothing from the masks."""
    return check_int("n_nodes", n_nodes, low=1) * 2.0 ** -(check_int("frac_bits", frac_bits, low=0) + 1)


class SecureRound(NamedTuple):
    """One step of secure aggregation on the cluster: what the server saw, and what it learned."""

    masked: list[np.ndarray]
    """The nodes' masked uint64 vectors: the server's whole view."""
    total: np.ndarray
    """Their decoded sum: the sum of the nodes' gradient sums, up to fixed-point rounding."""
    count: int
    """Rows the gradient sums cover (row counts are not secret here)."""


def _masked_node_step(shard: Any, config: NodeConfig, node: int, n_nodes: int, w: np.ndarray, step: int,
                      frac_bits: int) -> tuple[np.ndarray, int]:
    """Runs on a worker: the node's gradient sum (as in notebook 04), masked before it leaves the worker."""
    reply = node_step(shard, config, node, w, step)
    return masked_vector(reply.grad_sum, node, n_nodes, config.seed, step, frac_bits), reply.count


def secure_round(
    client: Client,
    placement: Placement,
    w: Any,
    step: int = 0,
    seed: int = 0,
    *,
    model: str | Model = "linear",
    batch_size: int | None = None,
    frac_bits: int = FRAC_BITS,
) -> SecureRound:
    """One parameter-server step with secure aggregation: each node masks its gradient sum on its worker.

    ``placement`` comes from :func:`~dml_lesson.cluster.shards.place_shards`. The gradient sums are those of
    :func:`~dml_lesson.ps.node.node_step` (whole shard, or a mini-batch of ``batch_size`` rows), so the decoded
    total equals the plain sum of notebook 04 up to :func:`fixed_point_error_bound` (notebook 10).
    """
    step, seed = check_int("step", step, low=0), check_seed("seed", seed)
    w = np.asarray(w, dtype=float)
    config = NodeConfig(get_model(model), batch_size, seed)
    k = placement.n_nodes
    futures = [client.submit(_masked_node_step, shard, config, i, k, w, step, frac_bits, pure=False,
                             workers=[placement.workers[i]], allow_other_workers=True)
               for i, shard in enumerate(placement.futures)]
    done, not_done = wait(futures, timeout=STEP_TIMEOUT)
    if not_done:
        raise TimeoutError(f"{len(not_done)} of {k} nodes did not answer within {STEP_TIMEOUT:.0f} s")
    replies = client.gather(futures)
    masked = [m for m, _ in replies]
    return SecureRound(masked, secure_sum(masked, frac_bits), sum(c for _, c in replies))


def looks_uniform(masked: np.ndarray) -> float:
    """Mean of a masked vector's entries scaled to [0, 1): near 0.5 for uniform noise (notebook 10's check)."""
    return float(np.mean(np.asarray(masked, dtype=np.uint64) / 2.0**64))
