"""Layouts: which rows of a dataset each node holds (its shard).

A dataset is a sequence of blocks (dask chunks of rows). A layout groups them into one shard per node:

- ``contiguous``: node 0 gets the first blocks, node 1 the next, ... (sizes as equal as blocks allow);
- ``shuffled``: the same, after a seeded shuffle of the blocks;
- ``skewed``: contiguous blocks, but the largest shard holds about ``skew`` times the rows of the smallest;
- ``noniid``: rows sorted by a key (the target or a feature) and cut into equal ranges, so each node sees a
  different slice of the data (the "data distribution" challenge of notebooks 03, 07 and 08);
- ``weighted``: contiguous blocks in proportion to given node weights, e.g. the speeds of their workers
  (load balancing, notebook 07).

The rows are the same under every layout: only who holds them changes. Notebook 03 draws the map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import check_choice, check_float, check_int, check_seed

LAYOUTS = ("contiguous", "shuffled", "skewed", "noniid", "weighted")


@dataclass(frozen=True)
class Layout:
    """How blocks become shards.

    Parameters
    ----------
    kind : str
        One of ``"contiguous"``, ``"shuffled"``, ``"skewed"``, ``"noniid"``.
    seed : int
        Seed of the block shuffle (``shuffled``).
    skew : float
        Ratio of the largest to the smallest shard (``skewed``), >= 1.
    sort_by : ``"y"`` or int
        Key of a ``noniid`` layout: the target, or the index of a column of X.
    weights : tuple of float
        Relative share of rows of each node (``weighted``): one positive number per node.
    """

    kind: str = "contiguous"
    seed: int = 0
    skew: float = 4.0
    sort_by: str | int = "y"
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_choice("layout", self.kind, LAYOUTS)
        check_seed("layout seed", self.seed)
        check_float("skew", self.skew, low=1.0)
        if self.sort_by != "y":
            check_int("sort_by", self.sort_by, low=0)
        if self.kind == "weighted":
            if not self.weights or not all(np.isfinite(self.weights)) or min(self.weights) <= 0:
                raise ValueError(f"a weighted layout needs positive finite weights, got {self.weights!r}")


def as_layout(layout: str | Layout) -> Layout:
    """Accept a layout name or a :class:`Layout`."""
    if isinstance(layout, Layout):
        return layout
    if not isinstance(layout, str):
        raise TypeError(f"layout must be a name {LAYOUTS} or a Layout, got {type(layout).__name__}")
    return Layout(kind=layout)


def assign_rows(
    layout: str | Layout, n_nodes: int, block_sizes: Any, key: np.ndarray | None = None
) -> list[np.ndarray]:
    """Global row indices of each node's shard (ascending), for blocks of the given sizes.

    ``key`` (one value per row) is needed by the ``noniid`` layout only.
    """
    layout = as_layout(layout)
    sizes = np.asarray(block_sizes, dtype=np.int64)
    n_nodes = check_int("n_nodes", n_nodes, low=1, high=len(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if layout.kind == "noniid":
        if key is None or len(key) != starts[-1]:
            raise ValueError("a noniid layout needs a key with one value per row")
        order = np.argsort(np.asarray(key), kind="stable")
        return [np.sort(part) for part in np.array_split(order, n_nodes)]
    block_ids = np.arange(len(sizes))
    if layout.kind == "shuffled":
        block_ids = np.random.default_rng([layout.seed, len(sizes)]).permutation(len(sizes))
    if layout.kind == "skewed":
        weights = layout.skew ** -np.linspace(0.0, 1.0, n_nodes) if n_nodes > 1 else np.ones(1)
        cuts = _cuts(sizes, weights)
    elif layout.kind == "weighted":
        if len(layout.weights) != n_nodes:
            raise ValueError(f"a weighted layout needs one weight per node: {n_nodes} nodes, "
                             f"{len(layout.weights)} weights")
        cuts = _cuts(sizes, np.asarray(layout.weights, dtype=float))
    else:
        cuts = _cuts(sizes[block_ids], np.ones(n_nodes))
    groups = [np.sort(block_ids[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return [_rows_of_blocks(g, starts, sizes) for g in groups]


def _rows_of_blocks(blocks: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Row indices of the given blocks, in block order (vectorized: numpy inputs have one row per block)."""
    lens = sizes[blocks]
    first_of_run = np.cumsum(lens) - lens
    return np.repeat(starts[blocks] - first_of_run, lens) + np.arange(lens.sum())


def _cuts(sizes: np.ndarray, weights: np.ndarray) -> list[int]:
    """Block boundaries giving each of ``len(weights)`` groups at least one block and rows close to its share."""
    k, n_blocks = len(weights), len(sizes)
    targets = np.cumsum(weights / weights.sum())[:-1] * sizes.sum()
    ends = np.cumsum(sizes)
    cuts = [0]
    for i, target in enumerate(targets):
        cut = int(np.searchsorted(ends, target, side="left")) + 1
        if cut > 1 and abs(ends[cut - 2] - target) <= abs(ends[cut - 1] - target):
            cut -= 1
        cut = min(max(cut, cuts[-1] + 1), n_blocks - (k - 1 - i))
        cuts.append(cut)
    cuts.append(n_blocks)
    return cuts


def node_of_rows(shards: list[np.ndarray], n_rows: int) -> np.ndarray:
    """For each row, the node whose shard holds it (notebook 03's map)."""
    owner = np.full(n_rows, -1)
    for node, rows in enumerate(shards):
        owner[rows] = node
    return owner
