"""Starting and closing the course's local cluster so that a Stop (KeyboardInterrupt) never leaves half of it.

:func:`start_or_undo` builds a cluster in a helper thread, so that a Stop lands in the caller's wait and never
inside Dask's start; on a Stop it closes what was built. :func:`close_quietly` closes within a bound and kills
worker processes still up. :func:`machine_lock` and :func:`free_dashboard_port` let two course processes start
their clusters at once without both taking port 8787. Used by :mod:`dml_lesson.cluster.client` only; this module knows
nothing of models or of the course's shared client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
from distributed import Client, LocalCluster

from .._dask import worker_pids
from ..core.settings import CLOSE_TIMEOUT

DASHBOARD_PORT = 8787
Made = tuple[Client, LocalCluster | None]


def start_or_undo(build: Callable[[], Made], adopt: Callable[[Made], None], stop_wait: float) -> None:
    """``adopt(build())``, with ``build`` run in a helper thread: a Stop lands in this thread's wait, never
    inside Dask's start. On a Stop the start is waited for (up to ``stop_wait`` s, further Stops ignored) and
    closed, then the KeyboardInterrupt goes on; a start still running after that closes itself when done."""
    box: dict[str, Any] = {}
    lock, done = threading.Lock(), threading.Event()

    def run() -> None:
        try:
            made = build()
        except BaseException as exc:
            box["error"] = exc
        else:
            with lock:
                box["made"], orphan = made, box.get("abandoned", False)
            if orphan:
                close_quietly(*made)
        finally:
            done.set()

    threading.Thread(target=run, name="dml-start", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
        if "error" in box:
            raise box["error"]
        adopt(box["made"])
        box["adopted"] = True
    except KeyboardInterrupt:
        wait_through_stops(done, stop_wait)
        with lock:
            box["abandoned"], made = True, box.get("made")
        if made is not None and not box.get("adopted"):
            wait_through_stops(in_background(close_quietly, *made), 2 * CLOSE_TIMEOUT + 10)
        raise


def wait_through_stops(done: threading.Event, timeout: float) -> bool:
    """Wait for ``done`` up to ``timeout`` s through Stops; True if one came. (Not ``Thread.join``: a
    KeyboardInterrupt inside ``join`` can mark a running thread as stopped.)"""
    deadline, stopped = time.monotonic() + timeout, False
    while True:
        try:
            if done.wait(0.1) or time.monotonic() > deadline:
                return stopped
        except KeyboardInterrupt:
            stopped = True


def in_background(fn: Callable[..., Any], *args: Any) -> threading.Event:
    """Start ``fn(*args)`` in a daemon thread; the event is set when it returns."""
    done = threading.Event()

    def run() -> None:
        try:
            fn(*args)
        finally:
            done.set()

    threading.Thread(target=run, name="dml-close", daemon=True).start()
    return done


class _Mute(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def close_quietly(client: Client | None, cluster: LocalCluster | None) -> None:
    """Close both, each within ``CLOSE_TIMEOUT`` s, errors swallowed; then kill worker processes still up."""
    pids = worker_pids(cluster)
    log, mute = logging.getLogger("distributed.client"), _Mute()  # closing a client that lost its scheduler
    log.addFilter(mute)  # logs the cancelled reconnection as an error with a traceback
    try:
        for closable in (client, cluster):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close(timeout=CLOSE_TIMEOUT)
    finally:
        log.removeFilter(mute)
    for pid in pids:
        with contextlib.suppress(psutil.Error, TypeError, ValueError):
            proc = psutil.Process(pid)
            if proc.ppid() == os.getpid():
                proc.kill()


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
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


def free_dashboard_port() -> int:
    """8787 when it is free on 127.0.0.1, else 0 (any free port): never a warning about a taken port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", DASHBOARD_PORT))
        except OSError:
            return 0
    return DASHBOARD_PORT


def add_filter_once(logger: str, log_filter: logging.Filter) -> None:
    """Add ``log_filter`` to the logger named ``logger`` unless a filter of its class is already there."""
    log = logging.getLogger(logger)
    if not any(type(f) is type(log_filter) for f in log.filters):
        log.addFilter(log_filter)


class HandledRestartFailure(logging.Filter):
    """Drops the nanny's "Failed to restart worker after its process exited": the course handles it
    (``restore_workers``, ``faults.wait_until_replaced``), and logged in the notebook's process it would land in
    the running cell as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to restart worker")


class ClosedTransfer(logging.Filter):
    """Drops a worker's "failed during get data" error when the other side closed the connection: a client
    stopped in the middle of fetching a result (Stop in the notebook), or a worker that was killed. Dask recovers
    from both; in a worker of the course's cluster the log would land in the running cell. Installed by
    ``dml_lesson/__init__.py`` in every process that imports the package: every worker that runs a course task.
    (A ``WorkerPlugin`` doing the same delayed the nanny's replacement workers: shards placed right after a kill
    then went to the other worker, measured in the 20-kill test.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (str(record.msg).startswith("failed during get data") and isinstance(error, OSError))
