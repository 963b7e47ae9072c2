"""The course's Dask cluster: one shared client, started once, on 127.0.0.1 only.

:func:`get_client` starts a ``LocalCluster`` of worker processes (one thread each, BLAS capped at one thread,
an explicit memory limit, scheduler, workers and dashboard on 127.0.0.1, no per-worker dashboards) the first
time it is called and returns the same client afterwards, so rerunning a notebook cell never starts a second
cluster. When Dask's config names a scheduler (``DASK_SCHEDULER_ADDRESS`` or ``scheduler-address``), it
connects to that cluster instead. This module knows nothing of models. Every notebook from 00 on calls
:func:`get_client`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, TypeVar

import dask
from distributed import Client, LocalCluster

from ._checks import check_float, check_int

T = TypeVar("T")
DASHBOARD_PORT = 8787
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CONNECT_TIMEOUT = "20s"

_lock = threading.Lock()
_state: dict[str, Any] = {"client": None, "cluster": None, "n_workers": 0}


def get_client(
    n_workers: int = 2,
    memory_limit: str = "1.5GiB",
    *,
    address: str | None = None,
) -> Client:
    """The course's shared Dask client; the same object on every call while it is running.

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
        client = _state["client"]
        if client is not None and client.status == "running":
            return client
        close_client()
        address = address or dask.config.get("scheduler-address", None)
        if address:
            try:
                client = Client(address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(
                    f"could not reach the Dask scheduler at {address!r} within {CONNECT_TIMEOUT}: is it running, "
                    "and is the address right? Unset DASK_SCHEDULER_ADDRESS to use a local cluster instead"
                ) from exc
            try:  # a scheduler started a moment ago may not have its workers yet
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                client.close()
                raise ConnectionError(
                    f"the Dask scheduler at {address!r} has no workers after {CONNECT_TIMEOUT}: start some "
                    "(dask worker ADDRESS), or unset DASK_SCHEDULER_ADDRESS to use a local cluster instead"
                ) from exc
            cluster = None
        else:
            # A LocalCluster closes a worker's nanny for good when no worker of that name is up 15 s (this
            # setting) after a worker of that name was lost. With faults a few seconds apart (notebook 07, the
            # fault tests) that check can land while the nanny is restarting its worker, and the cluster
            # shrinks. Here the nanny restarts every worker it loses, so the check is put out of reach.
            dask.config.set({"distributed.deploy.lost-worker-timeout": "3650 days"})
            with _machine_lock():  # two notebooks starting at once must not both pick port 8787
                cluster = _local_cluster(n_workers, memory_limit)
            client = Client(cluster, timeout=CONNECT_TIMEOUT, direct_to_workers=True)
        _state.update(client=client, cluster=cluster, n_workers=n_workers)
        return client


def _local_cluster(n_workers: int, memory_limit: str) -> LocalCluster:
    """Worker processes with one thread each, capped BLAS and a memory limit; every address on 127.0.0.1."""
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        host="127.0.0.1",
        dashboard_address=f"127.0.0.1:{_free_dashboard_port()}",
        worker_dashboard_address=None,  # no per-worker dashboards: each one costs a worker ~0.3 s to start
        env=dict(WORKER_ENV),
        silence_logs=logging.ERROR,
    )


WAIT_TIMEOUT = 60.0
"""Seconds any single wait on the cluster (a run on the workers, a gather, a compute) may take."""


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
        raise TimeoutError(f"{what} did not finish within {timeout:.0f} s: the cluster may be stuck or overloaded; "
                           "restart it with dml.close_client() and rerun the cell") from None
    finally:
        pool.shutdown(wait=False)


def check_client(client: Client | None) -> Client:
    """The given client if it is running, ``get_client()`` for None, else a clear error."""
    if client is None:
        return get_client()
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
    if client.status != "running":
        raise ValueError(f"client is {client.status}, not running: pass client=None (or dml.get_client()) "
                         "to use the course's cluster")
    return client


def close_client() -> None:
    """Close the shared client and the local cluster it started (nothing happens if none is running)."""
    client, cluster = _state["client"], _state["cluster"]
    _state.update(client=None, cluster=None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


def worker_addresses(client: Client | None = None) -> list[str]:
    """Addresses of the running workers, sorted: node ``i`` of a run lives on worker ``i % n_workers``."""
    client = client or get_client()
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def worker_table(client: Client | None = None) -> list[dict[str, Any]]:
    """One row per worker: address, process id, threads and memory limit (notebook 00)."""
    client = client or get_client()
    info = client.scheduler_info(n_workers=-1)["workers"]
    pids = bounded("asking the workers for their process ids", client.run, _getpid)
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
    alive = set(client.scheduler_info(n_workers=-1)["workers"])
    for name, nanny in list(cluster.workers.items()):
        if nanny.status.name not in ("running", "init", "starting") or (
            nanny.status.name == "running" and nanny.worker_address not in alive
        ):
            cluster.worker_spec.pop(name, None)
            cluster.workers.pop(name, None)
            cluster.sync(nanny.close, timeout=5, reason="dml-lesson-restore")
    if len(cluster.worker_spec) < wanted:
        cluster.scale(wanted)
    try:
        client.wait_for_workers(wanted, timeout=timeout)
    except (TimeoutError, OSError) as exc:
        back = len(worker_addresses(client))
        raise TimeoutError(f"only {back} of {wanted} workers came back within {timeout:.0f} s: "
                           "restart the cluster with dml.close_client() and dml.get_client()") from exc
    return len(worker_addresses(client))


def dashboard_link(client: Client | None = None) -> str:
    """The URL of the cluster's dashboard (task stream, memory, workers)."""
    client = client or get_client()
    return client.dashboard_link


def _getpid() -> int:
    import os

    return os.getpid()


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Hold a lock file shared by every course process on this machine (where ``fcntl`` exists), so that
    the dashboard port is chosen and taken by one cluster at a time."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a port clash there costs only a warning from Dask
        yield
        return
    path = os.path.join(tempfile.gettempdir(), "dml-lesson-cluster.lock")
    with open(path, "a+") as handle:
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another course process has held {path} for 60 s: is a cluster stuck "
                                       "starting? Close it, or delete the file") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_dashboard_port() -> int:
    """8787 when it is free on 127.0.0.1, else 0 (any free port): never a warning about a taken port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", DASHBOARD_PORT))
        except OSError:
            return 0
    return DASHBOARD_PORT


atexit.register(close_client)


class PeakMemory:
    """Context manager measuring each worker's peak resident memory while the block runs (notebook 00).

    Each worker samples its own process every 10 ms in a background thread, so short peaks are caught.
    After the block, ``peaks`` maps worker address to peak bytes and ``limits`` to the memory limit.
    """

    def __init__(self, client: Client | None = None) -> None:
        self.client = client or get_client()
        self.peaks: dict[str, int] = {}
        self.limits: dict[str, int] = {}

    def __enter__(self) -> PeakMemory:
        bounded("starting the memory samplers", self.client.run, _start_sampler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.peaks = bounded("reading the memory samplers", self.client.run, _stop_sampler)
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        self.limits = {addr: info[addr]["memory_limit"] for addr in self.peaks}


def _start_sampler() -> None:
    import psutil

    proc, state = psutil.Process(), {"peak": 0, "run": True}

    def sample() -> None:
        while state["run"]:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            threading.Event().wait(0.01)

    state["thread"] = threading.Thread(target=sample, daemon=True)
    state["thread"].start()
    globals()["_sampler_state"] = state


def _stop_sampler() -> int:
    state = globals().pop("_sampler_state")
    state["run"] = False
    state["thread"].join()
    return int(state["peak"])
