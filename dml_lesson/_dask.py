"""The only module of the course that touches Dask internals: each touchpoint is one small function here.

Everything else in :mod:`dml_lesson` uses Dask's public API (``distributed.Client``, ``Future``, actors and their
``ActorFuture``, ``LocalCluster.scale`` ...). What is left here has no public equivalent; each function says why,
names the attributes it relies on, and ``tests/test_dask_shim.py`` checks them against the installed Dask, so that
a Dask release that changes one fails a test that names it instead of breaking a notebook.

Touchpoints (attributes of Dask objects that Dask does not document):

- ``Worker.transfer_incoming_log``: :func:`incoming_transfers`, :func:`clear_incoming_transfers` (notebook 12's
  byte counts);
- ``SpecCluster.worker_spec`` and ``SpecCluster.workers`` (name -> ``Nanny``, with ``status`` and
  ``worker_address``): :func:`drop_failed_workers` (bringing the course's local cluster back to full size);
- ``Scheduler.workers`` and ``Scheduler.remove_worker``: :func:`forget_worker` (telling the scheduler at once
  about a worker the course killed, notebook 07);
- ``KilledWorker.args``: :func:`killed_worker_deaths` (how many worker deaths made Dask give up on a task);
- ``Client.scheduler.identity``: :func:`scheduler_identity` (the scheduler's table of workers, asked for now);
- ``Client.scheduler.address``: :func:`scheduler_address` (naming a scheduler that is gone in error messages);
- ``SpecCluster.workers`` and ``Nanny.pid``: :func:`worker_pids` (killing worker processes left behind when a
  cluster will not close);
- ``distributed.protocol.serialize_bytes``: :func:`serialize_bytes` (counting a message's bytes exactly as Dask
  sends them, notebooks 04 and 06).
"""

from __future__ import annotations

from typing import Any

import distributed
from distributed.protocol import serialize_bytes as _serialize_bytes

RUNNING_NANNY = ("running", "init", "starting")
"""``Nanny.status.name`` values of a nanny that still runs its worker, or is (re)starting it."""


def scheduler_address(client: distributed.Client) -> str | None:
    """The address of the scheduler ``client`` talks to (or tried to), without asking the scheduler.

    Reads ``client.scheduler.address``: ``Client.scheduler`` is the client's connection pool to the scheduler, an
    undocumented object. The public ``client.scheduler_info()["address"]`` asks the scheduler first, which
    blocks for Dask's connect timeout when the scheduler is gone: exactly when the course needs the address, to
    name the scheduler in its error message.

    Parameters
    ----------
    client : distributed.Client

    Returns
    -------
    str or None
        ``None`` for a client without a scheduler connection.
    """
    return getattr(getattr(client, "scheduler", None), "address", None)


def incoming_transfers(dask_worker: Any) -> list[dict[str, Any]]:
    """The data transfers this worker received, oldest first: ``[{"keys": {key: nbytes}, "who": sender}]``.

    For ``client.run`` (Dask passes the worker as ``dask_worker``). Reads ``Worker.transfer_incoming_log``, a
    bounded deque of one dict per transfer (keys with their sizes, the sending worker's address): what Dask's
    dashboard shows as transfers. Dask has no public API for it (``Client.get_task_stream`` records tasks, and
    the ``transfer-*`` entries it gives have no sizes or keys per message), and notebook 12 needs the bytes per
    message key.

    Parameters
    ----------
    dask_worker : distributed.Worker
        Passed by ``client.run``.

    Returns
    -------
    list of dict
        One dict per transfer, with ``"keys"`` (key -> bytes) and ``"who"`` (the sender's address).
    """
    return [{"keys": dict(entry["keys"]), "who": entry["who"]} for entry in dask_worker.transfer_incoming_log]


def scheduler_delay(dask_worker: Any) -> float:
    """The offset (seconds) this worker adds to its task times to put them on the scheduler's clock.

    For ``client.run``. Reads ``Worker.scheduler_delay``, which the worker re-estimates from a round trip at every
    heartbeat; the task stream's start and stop times include it. Dask has no public API for it, and notebooks 03
    and 07 take it off again when every worker shares one machine's clock (:func:`~dml_lesson.cluster.timeline.
    clock_offsets`).

    Parameters
    ----------
    dask_worker : distributed.Worker
        Passed by ``client.run``.
    """
    return float(dask_worker.scheduler_delay)


def clear_incoming_transfers(dask_worker: Any) -> None:
    """Forget the transfers this worker received so far (see :func:`incoming_transfers`); for ``client.run``.

    Parameters
    ----------
    dask_worker : distributed.Worker
        Passed by ``client.run``.
    """
    dask_worker.transfer_incoming_log.clear()


def drop_failed_workers(cluster: Any, alive: set[str] | frozenset[str]) -> list[Any]:
    """Remove from a ``LocalCluster`` (a ``SpecCluster``) each worker whose nanny gave up; return their names.

    A nanny restarts its worker when the process dies, but gives up for good when that restart fails (for example
    when the worker is killed while its nanny is still starting it). Such a worker stays in the cluster's spec,
    so ``cluster.scale(n)`` counts it as one of the ``n`` and starts no replacement. Dask has no public API to
    drop one given worker from a ``SpecCluster``: ``scale`` down first removes the workers the scheduler does not
    list, the restarting ones included, which would close a nanny about to succeed. ``SpecCluster``'s docstring
    describes ``.worker_spec`` and ``.workers``, but editing them is not a documented operation. This removes the
    worker's entry from both and closes its nanny; the caller then calls ``cluster.scale(n)`` (public) to start
    fresh ones.

    A nanny counts as failed when its status is none of :data:`RUNNING_NANNY`, or when it runs but the scheduler
    does not list its worker (``alive``: the worker addresses the scheduler lists now).

    Parameters
    ----------
    cluster : distributed.SpecCluster
        The course's ``LocalCluster``.
    alive : set of str
        Addresses of the workers the scheduler lists now.

    Returns
    -------
    list
        The names of the workers removed.
    """
    dropped = []
    for name, nanny in list(cluster.workers.items()):
        status = nanny.status.name
        if status not in RUNNING_NANNY or (status == "running" and nanny.worker_address not in alive):
            cluster.worker_spec.pop(name, None)
            cluster.workers.pop(name, None)
            cluster.sync(nanny.close, timeout=5, reason="dml-lesson-restore")
            dropped.append(name)
    return dropped


async def forget_worker(address: str, dask_scheduler: Any = None) -> None:
    """Have the scheduler remove the worker at ``address`` now; for ``client.run_on_scheduler``.

    After the course kills a worker process (notebook 07), the scheduler notices the broken connection by
    itself a moment later. Telling it at once avoids a race seen with distributed 2026.8: the nanny's
    replacement registers under the same name before the dead worker is removed, is turned away ("name taken"),
    and the nanny gives up for good. Dask's public ``Client.retire_workers`` is no substitute: it is a graceful
    retirement, which first copies the worker's data to other workers, and this worker is already dead. Calls
    ``Scheduler.remove_worker`` (a coroutine; ``close=False``: the process is gone) when ``Scheduler.workers``
    still lists it.

    Parameters
    ----------
    address : str
        The worker's address.
    dask_scheduler : distributed.Scheduler
        Passed by ``client.run_on_scheduler``.
    """
    if address in dask_scheduler.workers:
        await dask_scheduler.remove_worker(address, stimulus_id="dml-lesson-kill", close=False)


def serialize_bytes(obj: Any) -> bytes:
    """``obj`` as the bytes Dask would send: header and frames, from ``distributed.protocol.serialize_bytes``.

    Dask documents ``serialize`` and ``deserialize`` (header and frames apart); ``serialize_bytes`` packs both into
    the one byte string whose length is what a message costs, which is what notebooks 04 and 06 count
    (:func:`~dml_lesson.ps.comm.serialized_nbytes`). Counting ``serialize``'s frames instead would leave out the
    header and change every number those notebooks print.
    """
    return _serialize_bytes(obj)


def worker_pids(cluster: Any) -> list[int | None]:
    """Process ids of a local cluster's worker processes, read from its nannies without asking the scheduler.

    Reads ``SpecCluster.workers`` (name -> ``Nanny``) and ``Nanny.pid``. The public way, ``client.run(os.getpid)``,
    needs a scheduler that answers; this is used when closing a cluster that may not (its scheduler gone or
    stuck), to kill the worker processes it would otherwise leave behind. ``None`` for a nanny with no process.
    """
    return [getattr(nanny, "pid", None) for nanny in list(getattr(cluster, "workers", {}).values())]


def scheduler_identity(client: distributed.Client) -> Any:
    """A coroutine asking the scheduler for its identity with every worker: ``{"workers": {address: ...}, ...}``.

    Calls ``client.scheduler.identity(n_workers=-1)`` (an RPC on the client's connection to the scheduler; run it
    on the client's loop). The public ``Client.scheduler_info(n_workers=-1)`` makes the same call but returns the
    client's shared ``_scheduler_identity``, which the client's periodic refresh (every 2 s, ``n_workers=0``)
    overwrites with an empty worker table, and which it leaves stale without an error when the call fails: seen
    in a run of notebook 08 under load, where every worker then looked lost. The course detects lost workers
    from this table, so it needs the answer to its own call.
    """
    return client.scheduler.identity(n_workers=-1)


def killed_worker_deaths(exc: BaseException) -> int | None:
    """How many worker deaths made Dask give up on the task of a ``distributed.KilledWorker``, or None.

    Dask raises ``KilledWorker(key, last_worker, allowed_failures)``; the third argument is not documented, so
    the course reads it here and says "several times" when it is missing. The count is ``allowed_failures + 1``.
    """
    args = getattr(exc, "args", ())
    return args[2] + 1 if len(args) > 2 and isinstance(args[2], int) else None
