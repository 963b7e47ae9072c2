"""Shards on the cluster: a layout's rows for each node, built on a worker and pinned there.

Each node's shard is computed by a task (from the blocks that generate the data, or from the rows of a numpy
array embedded in the task), so the scheduler keeps its lineage: if a worker dies, the shard is recomputed.
Node ``i`` is pinned to worker ``i % n_workers``. Placements are cached per client, workers, data and layout, so
that a slider rerunning a training reuses the shards already in memory. Shard keys name the workers they were
placed on: after a lost worker the shards are built again under new keys, on the workers alive then, and the
old ones are cancelled (:func:`discard`). Before anything is sent, each worker's share of the data is checked
against its memory limit. This module knows nothing of models.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
from distributed import Client, Future, wait

from ..core.checks import check_int
from ..core.data import to_numpy
from ..core.layout import Layout, as_layout, assign_rows
from ..core.settings import PLACE_TIMEOUT, WATCH_SECONDS, bounded
from .client import restart_advice, restore_workers, worker_addresses, worker_info

CACHE_SIZE = 4
MEMORY_SHARE = 0.5
"""The largest share of a worker's memory limit its shards may take: building a shard holds its rows twice
(the blocks or the task's copy, and the shard), and Dask pauses a worker at 80% of its limit."""
_cache: OrderedDict[tuple, Placement] = OrderedDict()


@dataclass
class Placement:
    """One shard per node: the futures holding ``(X_shard, y_shard)``, their workers and global rows."""

    futures: list[Future]
    workers: list[str]
    rows: list[np.ndarray]
    n_rows: int
    n_weights: int
    key: tuple
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> list[int]:
        """Rows held by each node."""
        return [len(r) for r in self.rows]

    @property
    def n_nodes(self) -> int:
        return len(self.futures)

    def healthy(self, client: Client) -> bool:
        """True while every shard is in memory and the workers are the ones it was placed on."""
        return self.workers_now(client) == self.key[1] and all(f.status == "finished" for f in self.futures)

    @staticmethod
    def workers_now(client: Client) -> tuple[str, ...]:
        return tuple(worker_addresses(client))


def place_shards(client: Client, X: Any, y: Any, n_nodes: int, layout: str | Layout = "contiguous") -> Placement:
    """Build (or reuse) the shards of ``(X, y)`` for ``n_nodes`` nodes under ``layout``.

    ``X`` and ``y`` are numpy arrays (a numpy array's blocks are its rows) or dask arrays chunked by rows.
    ``n_nodes`` must be between 1 and the number of blocks.
    """
    layout = as_layout(layout)
    workers = Placement.workers_now(client)
    if not workers:  # workers restarting, or nannies that gave up: bring the course's cluster back first
        try:
            restore_workers(client, timeout=30.0)
        except TimeoutError:
            pass
        workers = Placement.workers_now(client)
    if not workers:
        raise RuntimeError(f"the Dask cluster has no workers: {restart_advice(client)}")
    is_dask = isinstance(X, da.Array)
    if is_dask:
        X = X.rechunk({1: -1}) if X.numblocks[1] > 1 else X
        y = y.rechunk((X.chunks[0],)) if y.chunks[0] != X.chunks[0] else y
        block_sizes, token = X.chunks[0], (X.name, y.name)
    else:
        block_sizes, token = np.ones(len(y), dtype=np.int64), dask.base.tokenize(X, y)
    n_nodes = check_int("n_nodes", n_nodes, low=1, high=len(block_sizes))
    key = (id(client), workers, token, n_nodes, layout)
    _discard_stale(client, workers)
    cached = _cache.get(key)
    if cached is not None and cached.healthy(client):
        _cache.move_to_end(key)
        return cached
    if cached is not None:
        discard(client, cached)
    rows = assign_rows(layout, n_nodes, block_sizes, key=_layout_key(layout, X, y))
    pinned = [workers[i % len(workers)] for i in range(n_nodes)]
    check_memory(client, rows, X.shape[1], pinned)
    name = dask.base.tokenize(key[1:])  # the workers are in the name: a re-placement never reuses a stale task
    if is_dask:
        futures = _place_dask(client, X, y, rows, pinned, name)
    else:
        futures = _place_numpy(client, X, y, rows, pinned, name)
    try:
        _wait_for(futures, client, workers)
    except BaseException:  # an error, a timeout or a Stop: nothing half built stays on the cluster
        client.cancel(futures)
        raise
    placement = Placement(futures, pinned, rows, len(y), X.shape[1], key)
    _cache[key] = placement
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return placement


def _wait_for(futures: list[Future], client: Client | None = None, workers: tuple[str, ...] = ()) -> None:
    """Wait until every shard is in memory; raise a shard's own error (e.g. NaN in X), a clear error as soon as
    one of ``workers`` is lost meanwhile (a shard too large for it, or a fault), or a timeout."""
    deadline = time.monotonic() + PLACE_TIMEOUT
    while True:
        try:
            wait(futures, timeout=min(WATCH_SECONDS, max(deadline - time.monotonic(), 0.0)))
            break
        except (TimeoutError, FuturesTimeout):
            pass
        if any(f.status == "error" for f in futures):
            break
        lost = sorted(set(workers) - set(worker_addresses(client))) if client is not None and workers else []
        if lost:
            raise RuntimeError(
                f"worker {', '.join(lost)} died while the shards were being built, most likely out of memory (the "
                "worker's limit or the machine's; see the memory bars on the dashboard, dml.dashboard_link()). Use "
                f"less data per worker or give the workers more memory; {restart_advice(client)}"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"the shards were not built within {PLACE_TIMEOUT:.0f} s: the cluster may be overloaded; "
                f"{restart_advice(client)}"
            )
    for future in futures:
        if future.status == "error":
            future.result()


def check_memory(client: Client, rows: list[np.ndarray], n_weights: int, pinned: list[str]) -> None:
    """Refuse, before anything is sent, shards that would not fit in their worker's memory.

    Each worker's shards (``X`` and ``y`` as float64) may take at most :data:`MEMORY_SHARE` of its memory
    limit; a worker with no limit is not checked. The error says how large the shards are, the limit, and what
    to do. Used by :func:`place_shards` (notebooks 03-11).
    """
    info = worker_info(client)
    need: dict[str, int] = {}
    for r, addr in zip(rows, pinned):
        need[addr] = need.get(addr, 0) + len(r) * (n_weights + 1) * 8
    for addr, nbytes in need.items():
        limit = int(info.get(addr, {}).get("memory_limit") or 0)
        if limit and nbytes > MEMORY_SHARE * limit:
            raise MemoryError(
                f"the shards for worker {addr} would hold {nbytes / 2**30:.2f} GiB (X and y as float64), more than "
                f"{MEMORY_SHARE:.0%} of its memory limit of {limit / 2**30:.2f} GiB (building a shard briefly holds "
                "its rows twice). Use less data, give each worker more memory, or spread the data over more workers "
                "with at least as many nodes (on the course's cluster: dml.close_client(), then "
                "client = dml.get_client(n_workers=4, memory_limit='3GiB'), and n_nodes=4)"
            )


def forget(placement: Placement) -> None:
    """Drop one placement from the cache (its shards stay while something holds them)."""
    _cache.pop(placement.key, None)


def discard(client: Client, placement: Placement) -> None:
    """Drop a placement from the cache and cancel its futures (shards and the actors built on them).

    After a lost worker its tasks may be pinned to an address that is gone: when every worker was lost at
    once, Dask leaves such tasks waiting for that address for good (the replacement has another one), so
    they are cancelled rather than left to be recomputed.
    """
    forget(placement)
    extra = [f for name, value in placement.extras.items() if name.endswith("_futures") for f in value]
    client.cancel(list(placement.futures) + extra)


def _discard_stale(client: Client, workers: tuple[str, ...]) -> None:
    """Discard every cached placement of ``client`` made on workers of which one is gone."""
    alive = set(workers)
    for stale in [p for k, p in _cache.items() if k[0] == id(client) and not set(k[1]) <= alive]:
        discard(client, stale)


def build_shard(x_blocks: list, y_blocks: list, selectors: list, node: int) -> tuple[np.ndarray, np.ndarray]:
    """The task that makes a node's shard from data blocks (``None`` selector: the whole block)."""
    X = np.concatenate([b if s is None else b[s] for b, s in zip(x_blocks, selectors)])
    y = np.concatenate([b if s is None else b[s] for b, s in zip(y_blocks, selectors)])
    if not np.all(np.isfinite(X)):
        raise ValueError(f"X contains NaN or inf (in the rows of node {node}): clean or impute the data first")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y contains NaN or inf (in the rows of node {node}): clean or impute the data first")
    return X, y


def _place_numpy(client, X, y, rows, pinned, name) -> list[Future]:
    with warnings.catch_warnings():
        # The shard's rows travel inside its task, which is what lets the scheduler rebuild it.
        warnings.filterwarnings("ignore", message="Sending large graph")
        return [
            client.submit(
                build_shard, [X[r]], [y[r]], [None], node, key=f"shard-{name}-{node}",
                workers=[addr], allow_other_workers=True,
            )
            for node, (r, addr) in enumerate(zip(rows, pinned))
        ]


def _place_dask(client, X, y, rows, pinned, name) -> list[Future]:
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
    x_blocks, y_blocks = X.to_delayed().ravel(), y.to_delayed().ravel()
    futures = []
    for node, (r, addr) in enumerate(zip(rows, pinned)):
        block_of_row = np.searchsorted(starts, r, side="right") - 1
        blocks, first = np.unique(block_of_row, return_index=True)
        bounds = np.append(first, len(r))
        selectors = []
        for b, lo, hi in zip(blocks, bounds[:-1], bounds[1:]):
            local = r[lo:hi] - starts[b]
            whole = len(local) == starts[b + 1] - starts[b]
            selectors.append(None if whole else local)
        shard = dask.delayed(build_shard, pure=True)(
            [x_blocks[b] for b in blocks], [y_blocks[b] for b in blocks], selectors, node,
            dask_key_name=f"shard-{name}-{node}",
        )
        futures.append(client.compute(shard, workers=[addr], allow_other_workers=True))
    return futures


def _layout_key(layout: Layout, X: Any, y: Any) -> np.ndarray | None:
    if layout.kind != "noniid":
        return None
    if layout.sort_by != "y":
        check_int("sort_by", layout.sort_by, low=0, high=X.shape[1] - 1)
    key = y if layout.sort_by == "y" else X[:, layout.sort_by]
    return np.asarray(to_numpy(key))


def gather_rows(client: Client, placement: Placement) -> tuple[np.ndarray, np.ndarray]:
    """Bring every shard back and put its rows in dataset order (notebook 03: the data is unchanged).

    Only for small data: everything comes to the client.
    """
    _wait_for(placement.futures, client)
    shards = bounded("gathering the shards", client.gather, placement.futures)
    X = np.empty((placement.n_rows, placement.n_weights))
    y = np.empty(placement.n_rows)
    for (X_s, y_s), rows in zip(shards, placement.rows):
        X[rows], y[rows] = X_s, y_s
    return X, y
