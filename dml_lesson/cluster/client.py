"""The course's Dask cluster: one shared client, started once, on 127.0.0.1 only.

:func:`get_client` starts a ``LocalCluster`` of worker processes (one thread each, BLAS capped at one thread,
an explicit memory limit, scheduler, workers and dashboard on 127.0.0.1, no per-worker dashboards, no Active
Memory Manager and no work stealing: see :data:`SCHEDULER_CONFIG`) the first
time it is called and returns the same client afterwards, so rerunning a notebook cell never starts a second
cluster. When Dask's config names a scheduler (``DASK_SCHEDULER_ADDRESS`` or ``scheduler-address``), it
connects to that cluster instead. Starting and closing survive a Stop (KeyboardInterrupt): what was started
is closed before the interrupt goes on. A scheduler that went away is reported as gone within seconds, with
:func:`restart_advice` saying how to restart that kind of cluster. This module knows nothing of models. Every
notebook from 00 on calls :func:`get_client`.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, TypeVar

import dask
from distributed import Client, LocalCluster

from .._dask import drop_failed_workers, scheduler_address, scheduler_identity
from ..core.checks import check_float, check_int
from ..core.settings import (
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    GONE_AFTER,
    RESTART_LOCAL,
    STOP_WAIT,
    WAIT_TIMEOUT,
    bounded,
    set_restart_advice,
)
from .startstop import (
    HandledRestartFailure,
    add_filter_once,
    close_quietly,
    free_dashboard_port,
    in_background,
    machine_lock,
    start_or_undo,
    wait_through_stops,
)

T = TypeVar("T")
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_lock = threading.Lock()
_EMPTY: dict[str, Any] = {"client": None, "cluster": None, "n_workers": 0, "address": None}
_state: dict[str, Any] = dict(_EMPTY)  # "address": the external scheduler's, kept to reconnect to after a loss
_lost: weakref.WeakKeyDictionary[Client, str] = weakref.WeakKeyDictionary()  # closed clients: their scheduler


def get_client(
    n_workers: int = 2,
    memory_limit: str = "1.5GiB",
    *,
    address: str | None = None,
) -> Client:
    """The course's shared Dask client; the same object on every call while it is running.

    A Stop (KeyboardInterrupt) while the cluster starts closes whatever was started (workers, ports) before
    the interrupt goes on, so the next call starts one clean cluster. When the external scheduler this client
    was connected to is lost, the next call reconnects to it if it answers again, else raises a
    ``ConnectionError`` saying it is gone.

    Parameters
    ----------
    n_workers : int
        Worker processes of the local cluster (1 to 16); ignored when connecting to an existing scheduler.
    memory_limit : str
        Memory limit of each local worker (Dask's spill and pause thresholds apply below it).
    address : str, optional
        Scheduler to connect to; by default Dask's config ``scheduler-address`` (set by the environment
        variable ``DASK_SCHEDULER_ADDRESS``), else a new local cluster. TLS and other security settings come
        from Dask's config (``distributed.comm.tls.*``).

    Returns
    -------
    distributed.Client
    """
    n_workers = check_int("n_workers", n_workers, low=1, high=16)
    with _lock:
        old = _state["client"]
        if old is not None and _reconnected(old, GONE_AFTER):
            return old
        lost, remembered = old is not None and old.status == "connecting", _state.get("address")
        _close_state(keep_address=True)
        address = address or dask.config.get("scheduler-address", None) or remembered
        known = bool(address) and address == remembered
        if known and lost:
            raise ConnectionError(_gone_message(address))

        def adopt(made: tuple[Client, LocalCluster | None]) -> None:
            _state.update(client=made[0], cluster=made[1], n_workers=n_workers, address=address or None)

        if address:
            start_or_undo(lambda: (_connect(address, known), None), adopt, stop_wait=0.0)
        else:
            # A LocalCluster closes a worker's nanny for good when no worker of that name is up 15 s (this
            # setting) after a worker of that name was lost. With faults a few seconds apart (notebook 07, the
            # fault tests) that check can land while the nanny is restarting its worker, and the cluster
            # shrinks. Here the nanny restarts every worker it loses, so the check is put out of reach.
            dask.config.set({"distributed.deploy.lost-worker-timeout": "3650 days"})
            with machine_lock():  # two notebooks starting at once must not both pick port 8787
                start_or_undo(lambda: _start_local(n_workers, memory_limit), adopt, stop_wait=STOP_WAIT)
        return _state["client"]


def _connect(address: str, known: bool = False) -> Client:
    """A client of the scheduler at ``address`` that has at least one worker, or a clear ``ConnectionError``.

    ``known``: the course was connected to this scheduler before and lost it. It then gets ``GONE_AFTER`` s
    to answer (connect and handshake), not ``CONNECT_TIMEOUT``, and the error says that it is gone.
    """
    try:
        client = Client(address, timeout=GONE_AFTER if known else CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        if known:
            raise ConnectionError(_gone_message(address)) from exc
        raise ConnectionError(
            f"could not reach the Dask scheduler at {address!r} within {CONNECT_TIMEOUT}: is it running, "
            "and is the address right? Unset DASK_SCHEDULER_ADDRESS to use a local cluster instead"
        ) from exc
    try:  # a scheduler started a moment ago may not have its workers yet
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        close_quietly(client, None)
        raise ConnectionError(
            f"the Dask scheduler at {address!r} has no workers after {CONNECT_TIMEOUT}: start some "
            "(dask worker ADDRESS), or unset DASK_SCHEDULER_ADDRESS to use a local cluster instead"
        ) from exc
    return client


def _start_local(n_workers: int, memory_limit: str) -> tuple[Client, LocalCluster]:
    cluster = _local_cluster(n_workers, memory_limit)
    try:
        return Client(cluster, timeout=CONNECT_TIMEOUT, direct_to_workers=True), cluster
    except BaseException:
        close_quietly(None, cluster)
        raise


SCHEDULER_CONFIG = {
    "distributed.scheduler.active-memory-manager.start": False,
    "distributed.scheduler.work-stealing": False,
}
"""Two of the scheduler's own initiatives that the course's cluster runs without, because no lesson is about them
and both make what the notebooks print depend on timing. The Active Memory Manager, at each pass (every 2 s by
default), drops the extra copies of data that several workers hold, keeping one (more while waiting tasks on
other workers need it); when a later task on a worker that lost its copy needs the data, it is fetched again
(before this setting, notebook 12 counted such bytes as the algorithm's). Work stealing moves a task queued on a
busy worker to an idle one: a task placed with ``workers=[addr]`` and ``allow_other_workers=True`` (a preference,
as the course's node tasks are placed) may move anywhere, so a node's step could run on another worker than its
shard's (notebooks 03 and 04 print where tasks ran). A lost worker's tasks still move: that is not stealing."""


def _local_cluster(n_workers: int, memory_limit: str) -> LocalCluster:
    """Worker processes with one thread each, capped BLAS and a memory limit; every address on 127.0.0.1."""
    with dask.config.set(SCHEDULER_CONFIG):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            host="127.0.0.1",
            dashboard_address=f"127.0.0.1:{free_dashboard_port()}",
            worker_dashboard_address=None,  # no per-worker dashboards: each one costs a worker ~0.3 s to start
            env=dict(WORKER_ENV),
            silence_logs=logging.ERROR,
        )
    # A nanny whose restart fails logs an error in this process, and so in the running cell (a failed cell
    # under nbval). The course handles it: restore_workers and faults.wait_until_replaced start a new worker.
    # Only that message is dropped; every other nanny message still shows.
    add_filter_once("distributed.nanny", HandledRestartFailure())
    return cluster


def _reconnected(client: Client, timeout: float) -> bool:
    """True when ``client`` runs, or reconnects within ``timeout`` s (Dask retries every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while client.status == "connecting" and time.monotonic() < deadline:
        time.sleep(0.05)
    return client.status == "running"


def _gone_message(address: str, client: Client | None = None) -> str:
    return (f"the Dask scheduler at {address} is gone: nothing answered there for {GONE_AFTER:.0f} s "
            f"(was it stopped or killed?); {restart_advice(client)}")


def restart_advice(client: Client | None = None) -> str:
    """How to restart the cluster behind ``client``, as a clause for an error message (no final full stop).

    For the course's local cluster: ``dml.close_client()`` and ``dml.get_client()``. For a cluster started
    outside the notebook (``DASK_SCHEDULER_ADDRESS`` or ``get_client(address=...)``) those cannot restart
    it: the advice names its scheduler and how to get back to a local cluster. Every notebook's error
    messages about a stuck or lost cluster end with it.

    Parameters
    ----------
    client : distributed.Client, optional
        The client the error is about; by default the course's (or, with none running, the one
        :func:`get_client` would make).

    Returns
    -------
    str
    """
    if client is None or client is _state["client"]:
        address = _state.get("address") if _state["client"] is not None or _state.get("address") else \
            dask.config.get("scheduler-address", None)
    else:
        address = None if client.cluster is not None else _address_of(client)
    if not address:
        return RESTART_LOCAL
    local = ("stop JupyterLab, unset DASK_SCHEDULER_ADDRESS and start it again (the kernel inherits the variable)"
             if dask.config.get("scheduler-address", None)
             else "call dml.close_client(), then client = dml.get_client() without address=")
    return (f"this cluster runs outside the notebook, so dml.close_client() cannot restart it: restart its "
            f"scheduler at {address} and its workers (shell commands: dask scheduler, then dask worker {address} "
            f"on each worker machine), then rerun the cell; or, for a local cluster instead, {local}")


def check_client(client: Client | None) -> Client:
    """The given client if it is running, ``get_client()`` for None, else a clear error.

    A client that lost its scheduler gets ``GONE_AFTER`` s to reconnect, then a ``ConnectionError``.
    """
    if client is None:
        return get_client()
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
    _require_scheduler(client)
    return client


def _require_scheduler(client: Client) -> None:
    """Return when ``client`` is running; a ``ConnectionError`` when it lost its scheduler for good."""
    if _reconnected(client, GONE_AFTER):
        return
    address = _address_of(client) or "?"
    if client.status != "connecting" and client in _lost:
        raise ConnectionError(f"this client lost the Dask scheduler at {address}: call dml.get_client() for a "
                              f"new one (or pass client=None); if the scheduler is still gone, {restart_advice()}")
    if client.status != "connecting":
        raise ValueError(f"client is {client.status}, not running: pass client=None (or dml.get_client()) "
                         "to use the course's cluster")
    message = _gone_message(address, client)
    with _lock:
        if client is _state["client"]:
            _close_state(keep_address=True)  # the next get_client() tries this address again
    raise ConnectionError(message)


def worker_info(client: Client | None = None) -> dict[str, Any]:
    """The scheduler's table of workers (address -> ``nthreads``, ``memory_limit``, ...); a ``ConnectionError``
    within ``GONE_AFTER`` s when the scheduler is gone. Used by the shards' memory check and notebook 00.

    Asks the scheduler directly (:func:`dml_lesson._dask.scheduler_identity`): the public
    ``client.scheduler_info(n_workers=-1)`` returns the client's shared copy of the answer, which the client's own
    periodic refresh overwrites with a table of no workers, and which goes stale without an error when the
    scheduler does not answer. A ``TimeoutError`` after ``WAIT_TIMEOUT`` s.
    """
    client = client or get_client()
    _require_scheduler(client)
    future = asyncio.run_coroutine_threadsafe(scheduler_identity(client), client.loop.asyncio_loop)
    deadline = time.monotonic() + WAIT_TIMEOUT
    try:
        while True:
            try:
                return dict(future.result(timeout=0.1)["workers"])
            except FuturesTimeout:
                if client.status != "running":
                    _require_scheduler(client)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the Dask scheduler did not list its workers within {WAIT_TIMEOUT:.0f} s: "
                                       f"it may be stuck or overloaded; {restart_advice(client)}") from None
            except OSError as exc:
                _require_scheduler(client)
                raise ConnectionError(f"lost the Dask scheduler while asking for its workers ({exc}): rerun "
                                      "the cell") from exc
    finally:
        future.cancel()


def close_client() -> None:
    """Close the shared client and the local cluster it started (nothing happens if none is running).

    Bounded (a scheduler that is gone costs no wait; workers still up after ``CLOSE_TIMEOUT`` s are killed)
    and finished even when Stop is pressed meanwhile, the KeyboardInterrupt then raised after it.
    """
    client, cluster = _state["client"], _state["cluster"]
    done = None if client is None and cluster is None else in_background(close_quietly, client, cluster)
    _state.update(_EMPTY)
    if done is not None and wait_through_stops(done, 2 * CLOSE_TIMEOUT + 10):
        raise KeyboardInterrupt


def _address_of(client: Client) -> str | None:
    return _lost.get(client) or scheduler_address(client)


def _close_state(keep_address: bool) -> None:
    """Close the course's client, keeping its external scheduler's address to reconnect to when asked."""
    address = _state.get("address")
    if address and _state["client"] is not None:
        _lost[_state["client"]] = address
    close_client()
    if keep_address:
        _state["address"] = address


def worker_addresses(client: Client | None = None) -> list[str]:
    """Addresses of the running workers, sorted: node ``i`` of a run lives on worker ``i % n_workers``."""
    client = client or get_client()
    return sorted(worker_info(client))


def worker_table(client: Client | None = None) -> list[dict[str, Any]]:
    """One row per worker: address, process id, threads and memory limit (notebook 00)."""
    client = client or get_client()
    info = worker_info(client)
    pids = bounded("asking the workers for their process ids", client.run, os.getpid)
    return [
        {
            "address": addr,
            "pid": pids.get(addr),
            "nthreads": info[addr]["nthreads"],
            "memory_limit": info[addr]["memory_limit"],
        }
        for addr in sorted(info)
    ]


def restore_workers(client: Client | None = None, timeout: float = 30.0) -> int:
    """Bring the course's local cluster back to its full number of workers; return how many run.

    A nanny restarts its worker when the process dies, but it gives up when the restart fails (for example
    when a worker is killed while its nanny is still starting it). This drops such nannies, starts fresh
    ones in their place and waits for them; on a cluster the course did not start it only counts. Used by
    notebook 07 and the fault tests after a kill.

    Raises
    ------
    TimeoutError
        When the workers are not back within ``timeout`` seconds.
    """
    client = client or get_client()
    timeout = check_float("timeout", timeout, low=1.0, high=600.0)
    cluster = _state["cluster"] if client is _state["client"] else None
    if cluster is None:
        return len(worker_addresses(client))
    wanted = _state["n_workers"]
    drop_failed_workers(cluster, frozenset(worker_info(client)))
    cluster.scale(wanted)
    try:
        client.wait_for_workers(wanted, timeout=timeout)
    except (TimeoutError, OSError) as exc:
        back = len(worker_addresses(client))
        raise TimeoutError(f"only {back} of {wanted} workers came back within {timeout:.0f} s: "
                           f"{restart_advice(client)}") from exc
    return len(worker_addresses(client))


def dashboard_link(client: Client | None = None) -> str:
    """The URL of the cluster's dashboard (task stream, memory, workers)."""
    client = check_client(client)
    return client.dashboard_link


@atexit.register
def _close_at_exit() -> None:
    """At exit no new thread may start (Python 3.12+): close in this thread."""
    client, cluster = _state["client"], _state["cluster"]
    _state.update(_EMPTY)
    close_quietly(client, cluster)


# Every error about a stuck cluster, in any layer, ends with this module's advice (core.settings.restart_advice).
set_restart_advice(restart_advice)
