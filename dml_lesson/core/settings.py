"""How long the course waits on its cluster, how often it looks, and what it tells the learner: in one place.

The timeouts, poll intervals and retry limits that decide how long a notebook waits before it reports a stuck
cluster are defined here, once, and imported where they are used (so a change here takes effect in a fresh
kernel; a teacher with a slower machine raises ``STEP_TIMEOUT`` here). The error messages about a stuck cluster
end with :func:`restart_advice`, which the cluster layer refines for a cluster started outside the notebook
(:func:`dml_lesson.cluster.client.restart_advice`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, TypeVar

T = TypeVar("T")

# --- the synchronous server and its nodes (dml_lesson.ps) ---
STEP_TIMEOUT = 120.0
"""Seconds the server waits for its nodes in one step (or local-SGD round, or ring step) before a clear error."""
MAX_RECOVERIES = 5
"""Lost workers a run survives before it stops with an error."""
RECOVER_WAIT = 20.0
"""Seconds to wait for the nanny's replacement worker before going on with the survivors."""
WATCH_SECONDS = 0.1
"""How often a call to an actor, or a wait for shards, checks that the scheduler still has their workers."""
BACKUP_POLL_SECONDS = 0.0002
"""How often the server looks for finished nodes when it waits for only some of them (backup workers)."""
AGGREGATES = ("mean", "sum", "shard")
"""How the synchronous server combines the nodes' gradients: ``mean`` (the full-data gradient), ``sum`` (the
source's formula 3.3) or ``shard`` (each node's mean weighted by its share of the rows: local SGD's FedAvg)."""
AVERAGES = ("shard", "plain")
"""How local SGD averages the nodes' models: weighted by shard size (FedAvg) or by batch rows (the plain mean)."""

# --- the asynchronous server (dml_lesson.variants) ---
RUN_TIMEOUT = 300.0
"""Seconds the driver waits for a whole asynchronous run before it stops the loops with a clear error."""
STOP_TIMEOUT = 30.0
"""Seconds the driver waits for the asynchronous loops to end after it has told the server to stop."""
ASYNC_POLL_SECONDS = 0.005
"""How often the driver looks at the asynchronous server and the loops while a run goes on."""
CALL_TIMEOUT = 60.0
"""Seconds a node's loop waits for one call to the asynchronous server actor."""
HOLD_POLL_SECONDS = 0.01
"""How often a held node (a deterministic straggler in tests) checks whether it was released."""

# --- the cluster (dml_lesson.cluster) ---
CONNECT_TIMEOUT = "20s"
"""Dask's connect timeout for the course's client."""
GONE_AFTER = 3.0
"""Seconds a scheduler the client lost has to answer again before the course calls it gone."""
STOP_WAIT = 60.0
"""Seconds :func:`~dml_lesson.cluster.client.close_client` waits for the cluster to close."""
CLOSE_TIMEOUT = 10.0
"""Seconds one closing step (client, cluster) may take before the course gives up on it quietly."""
WAIT_TIMEOUT = 60.0
"""Seconds any single wait on the cluster (a run on the workers, a gather) may take."""
PLACE_TIMEOUT = 300.0
"""Seconds placing the shards on the workers may take."""
HOLD_SECONDS = 60.0
"""Longest time a held worker (tests' deterministic straggler) stays held."""
COMPUTE_TIMEOUT = 300.0
"""Seconds computing dask arrays into numpy (:func:`~dml_lesson.core.data.to_numpy`) may take."""

# --- analysis ---
CALIBRATION_TIMEOUT = 120.0
"""Seconds one calibration measurement (notebook 12) may take."""
TRIAL_TIMEOUT = 120.0
"""Seconds one hyperparameter trial (notebook 09) may take."""

RESTART_LOCAL = ("restart the cluster: dml.close_client(), then client = dml.get_client() (or rerun the notebook's "
                 "setup cell), then rerun this cell")
"""The advice that ends every error about a stuck or lost course cluster."""

_advice: list[Callable[[], str]] = [lambda: RESTART_LOCAL]


def restart_advice() -> str:
    """How to restart the cluster, as a clause for an error message (no final full stop).

    :data:`RESTART_LOCAL` until the cluster layer is imported; it then installs its own advice, which also knows
    how to restart a cluster started outside the notebook.
    """
    return _advice[0]()


def set_restart_advice(advice: Callable[[], str]) -> None:
    """Install the function :func:`restart_advice` calls (done once by :mod:`dml_lesson.cluster.client`)."""
    _advice[0] = advice


def bounded(what: str, fn: Callable[..., T], *args: Any, timeout: float = WAIT_TIMEOUT, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or a ``TimeoutError`` saying that ``what`` did not finish within ``timeout`` s.

    For the cluster calls that have no timeout of their own (``Client.run``, ``Client.gather``,
    ``dask.compute``): the call runs in a helper thread, so a stuck cluster cannot hang a notebook cell.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dml-bounded")
    future = pool.submit(fn, *args, **kwargs)
    try:
        return future.result(timeout=timeout)
    except FuturesTimeout:
        raise TimeoutError(f"{what} did not finish within {timeout:.0f} s: the cluster may be stuck or "
                           f"overloaded; {restart_advice()}") from None
    finally:
        pool.shutdown(wait=False)
