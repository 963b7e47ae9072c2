"""Real faults for notebook 07: kill a worker's process, or slow a worker down.

``kill_worker`` sends SIGKILL to the worker process itself (not a flag in our code): the scheduler sees the
worker vanish, recomputes the data it held from lineage, and the nanny starts a replacement under a new
address. ``slow_worker`` makes every node step on that worker take ``factor`` times as long, by sleeping
``(factor - 1)`` times the measured compute time inside the step. ``hold_worker`` makes a worker's node steps
wait at their end until ``release_workers``: a straggler as slow as a demonstration or a test needs, with no timing
involved (the tests use it to know which nodes answer a step). ``kill_at`` and friends build the ``on_step``
callbacks that the parameter server calls before each step. This module knows nothing of models.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from distributed import Client

from .._dask import forget_worker
from ..core.checks import check_float, check_int
from ..core.settings import HOLD_SECONDS, bounded
from .client import get_client, restore_workers, worker_addresses

_SLOWDOWN = {"factor": 1.0}
_HOLD: dict = {"released": None, "until": 0.0, "waiting": 0, "lock": threading.Lock()}


def kill_worker(worker: int | str, client: Client | None = None) -> str:
    """SIGKILL the process of worker ``worker`` (its index in sorted order, or its address); return the address.

    Only for a local cluster: the process must run on this machine.
    """
    client = client or get_client()
    addresses = worker_addresses(client)
    if isinstance(worker, str):
        if worker not in addresses:
            raise ValueError(f"worker {worker!r} is not in the cluster; workers: {addresses}")
        address = worker
    else:
        address = addresses[check_int("worker", worker, low=0, high=len(addresses) - 1)]
    pid = bounded("asking the worker for its process id", client.run, os.getpid, workers=[address])[address]
    if pid == os.getpid():
        raise RuntimeError("that worker runs inside this process (a threads-only cluster): refusing to kill it")
    os.kill(pid, signal.SIGKILL)
    # The scheduler would notice the broken connection by itself, a moment later. Telling it now avoids a race
    # seen with distributed 2026.8: the nanny's replacement registers under the same name before the dead
    # worker is removed, is turned away ("name taken"), and the nanny gives up for good.
    bounded("telling the scheduler about the kill", client.run_on_scheduler, forget_worker, address)
    return address


def kill_at(step: int, worker: int = 0, client: Client | None = None) -> Callable[[int], None]:
    """An ``on_step`` callback that kills ``worker`` just before ``step`` (once)."""
    step = check_int("step", step, low=0)
    done: list[str] = []

    def on_step(current: int) -> None:
        if current == step and not done:
            done.append(kill_worker(worker, client))

    on_step.killed = done  # type: ignore[attr-defined]
    return on_step


def slow_worker(worker: int | str, factor: float, client: Client | None = None) -> None:
    """Make every node step on ``worker`` take ``factor`` times as long (1 restores full speed)."""
    client = client or get_client()
    factor = check_float("factor", factor, low=1.0, high=1000.0)
    addresses = worker_addresses(client)
    address = worker if isinstance(worker, str) else addresses[check_int("worker", worker, low=0,
                                                                          high=len(addresses) - 1)]
    bounded("slowing the worker down", client.run, _set_slowdown, factor, workers=[address])


def reset_slowdowns(client: Client | None = None) -> None:
    """Every worker back to full speed: slowdowns undone, held workers released."""
    bounded("resetting the workers' speed", (client or get_client()).run, _reset)


def _set_slowdown(factor: float) -> None:
    _SLOWDOWN["factor"] = factor


def _reset() -> None:
    _set_slowdown(1.0)
    _release()


def hold_worker(worker: int | str, client: Client | None = None, seconds: float = HOLD_SECONDS) -> str:
    """Hold ``worker``: each node step on it waits at its end until :func:`release_workers` (or
    :func:`reset_slowdowns`) is called, at most ``seconds``; return its address.

    A straggler without timing: as long as the hold lasts, the worker's nodes cannot answer, however busy the
    machine is. A synchronous step waits for them; backup workers and the asynchronous server go on without
    them (an asynchronous node also stops waiting when its run is over).
    """
    client = client or get_client()
    seconds = check_float("seconds", seconds, low=0.0, high=3600.0, low_open=True)
    addresses = worker_addresses(client)
    address = worker if isinstance(worker, str) else addresses[check_int("worker", worker, low=0,
                                                                          high=len(addresses) - 1)]
    if address not in addresses:
        raise ValueError(f"worker {address!r} is not in the cluster; workers: {addresses}")
    bounded("holding the worker", client.run, _set_hold, seconds, workers=[address])
    return address


def release_workers(client: Client | None = None) -> None:
    """Let every held worker's node steps finish (see :func:`hold_worker`)."""
    bounded("releasing the held workers", (client or get_client()).run, _release)


def _set_hold(seconds: float) -> None:
    with _HOLD["lock"]:
        if _HOLD["released"] is None:
            _HOLD["released"] = threading.Event()
        _HOLD["until"] = time.monotonic() + seconds


def _release() -> None:
    with _HOLD["lock"]:
        event, _HOLD["released"] = _HOLD["released"], None
    if event is not None:
        event.set()


def held() -> bool:
    """True on a worker held by :func:`hold_worker` and not yet released."""
    event = _HOLD["released"]
    return event is not None and not event.is_set() and time.monotonic() < _HOLD["until"]


def held_steps() -> int:
    """Node steps waiting on this worker's hold right now (run it on the workers with ``client.run``)."""
    return _HOLD["waiting"]


@contextmanager
def waiting_on_hold() -> Iterator[threading.Event | None]:
    """Count a node step as waiting on the hold while inside; yields the event that ends the hold (None: not
    held)."""
    with _HOLD["lock"]:
        event = _HOLD["released"]
        _HOLD["waiting"] += event is not None
    try:
        yield event
    finally:
        with _HOLD["lock"]:
            _HOLD["waiting"] -= event is not None


def slowdown() -> float:
    """This worker's slowdown factor set by :func:`slow_worker` (1: full speed)."""
    return _SLOWDOWN["factor"]


def slowed_down() -> bool:
    """True on a worker that :func:`slow_worker` has slowed down or :func:`hold_worker` holds."""
    return slowdown() > 1.0 or held()


def straggle(started: float) -> None:
    """Called at the end of a node step: sleep so that the step took ``factor`` times its compute time; on a
    held worker, then wait for the release."""
    factor = _SLOWDOWN["factor"]
    if factor > 1.0:
        time.sleep((factor - 1.0) * (time.perf_counter() - started))
    if held():
        with waiting_on_hold() as released:
            if released is not None:
                released.wait(max(_HOLD["until"] - time.monotonic(), 0.0))


def scattered_data_lost(worker: int = 1, client: Client | None = None) -> str:
    """Notebook 07: scatter an array to ``worker``, kill it, and try to use the array; return what happened.

    Scattered data has no lineage (no task made it), so Dask cannot rebuild it. The scheduler's own error
    log about the lost data is silenced here: the returned text tells the story.
    """
    import logging

    import numpy as np

    client = client or get_client()
    addresses = worker_addresses(client)
    address = addresses[check_int("worker", worker, low=0, high=len(addresses) - 1)]
    future = client.scatter(np.arange(1000.0), workers=[address])
    logger = logging.getLogger("distributed.scheduler")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        kill_worker(address, client)
        try:
            total = client.submit(np.sum, future, pure=False).result(timeout=30)
            return f"the scattered array survived (sum {total}): it must have had a copy elsewhere"
        except Exception as exc:  # the lost future's error is what we want to show
            return f"using the scattered array failed: {type(exc).__name__} (its future is now '{future.status}')"
    finally:
        wait_until_replaced(address, len(addresses), client)
        logger.setLevel(level)


def wait_until_replaced(address: str, n_workers: int, client: Client | None = None, timeout: float = 30.0,
                        settle: float = 1.0, nanny_wait: float = 15.0) -> None:
    """Wait until the scheduler has dropped the dead worker ``address`` and ``n_workers`` workers are up
    (the nanny's replacement included), then ``settle`` seconds more.

    When the nanny has not brought a replacement within ``nanny_wait`` seconds (it gives up when a restart
    fails, seen with distributed 2026.8 under load), a fresh worker is started instead
    (:func:`dml_lesson.cluster.client.restore_workers`). The pause matters too: a worker killed while its nanny is
    still finishing its start is not restarted, so faults must not follow each other too closely. Raises
    ``TimeoutError`` with an explanation after ``timeout`` s.
    """
    client = client or get_client()
    n_workers = check_int("n_workers", n_workers, low=1, high=16)
    timeout = check_float("timeout", timeout, low=1.0, high=600.0)
    start = time.monotonic()
    while True:
        alive = worker_addresses(client)
        if address not in alive and len(alive) >= n_workers:
            time.sleep(settle)
            return
        waited = time.monotonic() - start
        if waited > min(nanny_wait, timeout):
            restore_workers(client, timeout=max(1.0, timeout - waited))
            time.sleep(settle)
            return
        time.sleep(0.1)
