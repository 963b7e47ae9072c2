"""Dask internals: only ``dml_lesson/_dask.py`` touches them, and each of its touchpoints is checked here.

One test per touchpoint of ``_dask.py`` runs it against the installed Dask and fails with a message naming the
Dask version and what changed, so that a Dask release that moves an internal breaks a test, not a notebook. The
last tests parse every other module of the package and fail on any reach into Dask's internals.

No ``distributed.<submodule>`` is allowed outside the shim: even ``ps/comm.py``'s byte counts go through
:func:`dml_lesson._dask.serialize_bytes`.
"""

from __future__ import annotations

import ast
import inspect
import os
from collections.abc import Mapping
from pathlib import Path

import dask
import distributed
import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson import _dask

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dml_lesson"
SHIM = PACKAGE / "_dask.py"
VERSION = f"distributed {distributed.__version__}"
ALLOWED_SUBMODULES: set[str] = set()
"""``distributed.<submodule>`` imports allowed outside the shim (see the module docstring)."""
INTERNAL_ATTRIBUTES = {"_worker_rpc", "_future", "transfer_incoming_log", "worker_spec", "scheduler"}
"""Attributes of Dask objects that only ``_dask.py`` may read (as ``obj.name`` or ``getattr(obj, "name")``):
``scheduler`` is a ``Client``'s connection to the scheduler (``client.scheduler.identity(...)`` is an RPC) or
a ``LocalCluster``'s ``Scheduler`` object."""
INTERNAL_PARAMETERS = {"dask_worker", "dask_scheduler"}
"""A function taking these (what ``Client.run`` and ``Client.run_on_scheduler`` pass) works on Dask's live
``Worker`` or ``Scheduler``, whose attributes are internals: it belongs in ``_dask.py``."""


def changed(what: str, where: str) -> str:
    """The failure message of a touchpoint test."""
    return (f"{VERSION} changed {what}. dml_lesson/_dask.py:{where} relies on it: adapt that function to this "
            "Dask (or replace it with a public API if this release added one)")


@pytest.fixture()
def two_workers(client):
    """The course's cluster with both its workers up (a fault test before may have killed one)."""
    client.wait_for_workers(2, timeout=60)
    return dml.worker_addresses(client)


# ---- one test per touchpoint of _dask.py ---------------------------------------------------------------------

@pytest.mark.cluster
def test_the_transfer_log_lists_each_received_key_with_its_size_and_sender(client, two_workers):
    """``Worker.transfer_incoming_log``: :func:`_dask.incoming_transfers`, :func:`_dask.clear_incoming_transfers`."""
    sender, receiver = two_workers[:2]
    try:
        client.run(_dask.clear_incoming_transfers)
    except AttributeError as exc:
        pytest.fail(changed(f"the Worker's transfer log ({exc})", "clear_incoming_transfers"))
    x = client.submit(np.ones, 1000, workers=[sender], pure=False)  # 8,000 bytes made on one worker,
    total = client.submit(np.sum, x, workers=[receiver], pure=False)  # used on the other: one transfer
    assert total.result(timeout=60) == 1000
    try:
        logs = client.run(_dask.incoming_transfers)
    except (AttributeError, KeyError, TypeError) as exc:
        pytest.fail(changed(f"Worker.transfer_incoming_log or its entries ({type(exc).__name__}: {exc})",
                            "incoming_transfers"))
    entries = [e for e in logs[receiver] if x.key in e["keys"]]
    assert len(entries) == 1, changed(f"what Worker.transfer_incoming_log records: {logs[receiver]} has no single "
                                      f"entry for the key {x.key} moved from {sender}", "incoming_transfers")
    assert entries[0]["who"] == sender and entries[0]["keys"][x.key] >= 8000, changed(
        f"the fields of a Worker.transfer_incoming_log entry: {entries[0]} (expected 'who' = {sender}, "
        f"'keys' = {{key: bytes >= 8000}})", "incoming_transfers")
    client.run(_dask.clear_incoming_transfers)
    assert not any(client.run(_dask.incoming_transfers).values()), changed(
        "Worker.transfer_incoming_log: clear() leaves entries", "clear_incoming_transfers")
    del x, total


def test_serialize_bytes_packs_header_and_frames_into_one_byte_string():
    """``distributed.protocol.serialize_bytes``: :func:`_dask.serialize_bytes` (the bytes notebooks 04 and 06 count)."""
    w = np.arange(21, dtype=np.float64)
    packed = _dask.serialize_bytes((w, 3, True))
    assert isinstance(packed, bytes), changed(f"serialize_bytes (returns {type(packed).__name__})", "serialize_bytes")
    assert len(packed) > w.nbytes, changed("serialize_bytes (no longer includes the array's bytes)", "serialize_bytes")
    back = distributed.protocol.deserialize_bytes(packed)
    assert np.array_equal(back[0], w) and back[1:] == (3, True), changed(
        "serialize_bytes / deserialize_bytes (no longer a round trip)", "serialize_bytes")
    assert len(_dask.serialize_bytes((np.arange(41.0), 3, True))) - len(packed) == 20 * 8, changed(
        "serialize_bytes (20 more float64 values no longer cost exactly 160 bytes)", "serialize_bytes")


@pytest.mark.cluster
def test_killed_worker_carries_the_allowed_failures_as_its_third_argument():
    """``KilledWorker(key, last_worker, allowed_failures)``: :func:`_dask.killed_worker_deaths`, from a real
    KilledWorker: a task that kills its worker, on a one-worker cluster of its own with ``allowed-failures`` 0."""
    def die():
        os._exit(1)

    config = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.work-stealing": False}
    with dask.config.set(config), distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as own:
        with pytest.raises(distributed.KilledWorker) as info:
            own.submit(die, pure=False).result(timeout=60)
    deaths = _dask.killed_worker_deaths(info.value)
    assert deaths is not None, changed(f"KilledWorker.args ({info.value.args!r}: no int third argument)",
                                       "killed_worker_deaths")
    assert deaths == 1, changed(f"KilledWorker.args ({info.value.args!r}: allowed failures 0 should give 1 death)",
                                "killed_worker_deaths")


@pytest.mark.cluster
def test_the_scheduler_lists_every_worker_when_asked_for_its_identity(client, two_workers):
    """``Client.scheduler.identity(n_workers=-1)``: :func:`_dask.scheduler_identity` (the course's worker table)."""
    identity = client.sync(lambda: _dask.scheduler_identity(client))
    assert isinstance(identity, Mapping) and isinstance(identity.get("workers"), Mapping), changed(
        f"Client.scheduler.identity (returns {type(identity).__name__} without a 'workers' table)",
        "scheduler_identity")
    assert sorted(identity["workers"]) == two_workers, changed(
        f"Client.scheduler.identity(n_workers=-1) (lists {sorted(identity['workers'])}, the cluster runs "
        f"{two_workers})", "scheduler_identity")
    for addr in two_workers:
        assert {"nthreads", "memory_limit"} <= set(identity["workers"][addr]), changed(
            "Client.scheduler.identity (a worker's entry lacks nthreads or memory_limit)", "scheduler_identity")


@pytest.mark.cluster
def test_the_local_cluster_names_its_worker_processes_where_worker_pids_reads_them(client, two_workers):
    """``SpecCluster.workers`` and ``Nanny.pid``: :func:`_dask.worker_pids`."""
    pids = _dask.worker_pids(client.cluster)
    running = sorted(client.run(os.getpid).values())
    assert sorted(pids) == running, changed(
        f"SpecCluster.workers / Nanny.pid (read {pids}, the workers run as {running})", "worker_pids")


@pytest.mark.cluster
def test_the_local_cluster_keeps_its_spec_and_nannies_where_drop_failed_workers_reads_them(client, two_workers):
    """``SpecCluster.worker_spec``, ``SpecCluster.workers``, ``Nanny.status``, ``Nanny.worker_address``,
    ``Nanny.close(timeout, reason)`` and ``Cluster.sync``: :func:`_dask.drop_failed_workers`."""
    cluster = client.cluster
    assert isinstance(cluster, distributed.SpecCluster), "the course's cluster is a LocalCluster (a SpecCluster)"
    spec, workers = getattr(cluster, "worker_spec", None), getattr(cluster, "workers", None)
    assert isinstance(spec, dict) and isinstance(workers, dict), changed(
        f"SpecCluster.worker_spec / .workers (now {type(spec).__name__} / {type(workers).__name__}, "
        "expected two dicts keyed by worker name)", "drop_failed_workers")
    assert set(spec) == set(workers) and len(workers) == len(two_workers), changed(
        f"SpecCluster.worker_spec {sorted(spec)} / .workers {sorted(workers)}: not one entry per worker of the "
        f"{len(two_workers)} running", "drop_failed_workers")
    assert callable(getattr(cluster, "sync", None)), changed("Cluster.sync (gone)", "drop_failed_workers")
    for name, nanny in workers.items():
        status = getattr(getattr(nanny, "status", None), "name", None)
        assert status in _dask.RUNNING_NANNY, changed(
            f"Nanny.status: worker {name}'s is {getattr(nanny, 'status', None)!r}, not an enum with a name in "
            f"{_dask.RUNNING_NANNY}", "drop_failed_workers")
        address = getattr(nanny, "worker_address", None)  # after a kill it may name the dead worker for a while
        assert isinstance(address, str) and address.startswith("tcp://127.0.0.1:"), changed(
            f"Nanny.worker_address: worker {name}'s is {address!r}, not a worker address", "drop_failed_workers")
        params = inspect.signature(nanny.close).parameters
        assert {"timeout", "reason"} <= set(params), changed(
            f"Nanny.close's parameters ({list(params)}; timeout= and reason= expected)", "drop_failed_workers")
    assert _dask.drop_failed_workers(cluster, frozenset(two_workers)) == [], "a healthy cluster loses no worker"
    assert set(cluster.worker_spec) == set(spec)


@pytest.mark.cluster
def test_the_scheduler_lists_its_workers_and_removes_one_on_request(client, two_workers):
    """``Scheduler.workers`` and ``Scheduler.remove_worker(address, stimulus_id=, close=)``:
    :func:`_dask.forget_worker`."""
    remove = getattr(distributed.Scheduler, "remove_worker", None)
    assert remove is not None and inspect.iscoroutinefunction(remove), changed(
        "Scheduler.remove_worker (gone, or no longer a coroutine)", "forget_worker")
    params = inspect.signature(remove).parameters
    assert {"address", "stimulus_id", "close"} <= set(params), changed(
        f"Scheduler.remove_worker's parameters ({list(params)}; address, stimulus_id=, close= expected)",
        "forget_worker")
    listed = client.run_on_scheduler(_scheduler_workers)
    assert listed is not None and set(two_workers) <= set(listed), changed(
        f"Scheduler.workers (not a mapping keyed by worker address: {listed!r})", "forget_worker")
    try:  # an address the scheduler does not know: nothing to remove, no error
        client.run_on_scheduler(_dask.forget_worker, "tcp://127.0.0.1:9")
    except (AttributeError, TypeError) as exc:
        pytest.fail(changed(f"the Scheduler attributes forget_worker uses ({type(exc).__name__}: {exc})",
                            "forget_worker"))
    assert set(dml.worker_addresses(client)) == set(two_workers)


@pytest.mark.cluster
def test_the_client_knows_its_scheduler_address_without_asking(client):
    """``Client.scheduler.address``: :func:`_dask.scheduler_address`."""
    address = _dask.scheduler_address(client)
    assert address == client.scheduler_info()["address"], changed(
        f"Client.scheduler.address ({address!r}, while scheduler_info() says {client.scheduler_info()['address']!r})",
        "scheduler_address")


def _scheduler_workers(dask_scheduler=None) -> list[str] | None:
    workers = getattr(dask_scheduler, "workers", None)
    return list(workers) if isinstance(workers, Mapping) else None


# ---- nothing else touches Dask internals -----------------------------------------------------------------------

def internals(source: str, where: str) -> list[str]:
    """Each reach into Dask's internals in ``source`` (a module's text), as ``where:line what``."""
    public = set(distributed.__all__)
    found = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{node.lineno} {what}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _internal_module(alias.name):
                    flag(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _internal_module(node.module):
                flag(node, f"imports from {node.module}")
            elif node.module == "distributed":
                for alias in node.names:
                    if alias.name not in public:
                        flag(node, f"imports distributed.{alias.name}, not in distributed.__all__")
        elif isinstance(node, ast.Attribute):
            if node.attr in INTERNAL_ATTRIBUTES:
                flag(node, f"reads .{node.attr}")
            elif (isinstance(node.value, ast.Name) and node.value.id == "distributed" and node.attr not in public
                  and f"distributed.{node.attr}" not in ALLOWED_SUBMODULES):
                flag(node, f"uses distributed.{node.attr}, not in distributed.__all__")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "getattr", "hasattr", "setattr", "delattr"):
            names = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            if names and names[0] in INTERNAL_ATTRIBUTES:
                flag(node, f"{node.func.id}(..., {names[0]!r})")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
            for param in sorted(params & INTERNAL_PARAMETERS):
                flag(node, f"{node.name}() takes {param}: works on Dask's live {param[5:].title()}")
    return found


def _internal_module(name: str) -> bool:
    """``distributed.<submodule>`` (other than the allowed ones), or a private module of dask or distributed."""
    parts = name.split(".")
    if parts[0] not in ("dask", "distributed"):
        return False
    if any(p.startswith("_") for p in parts):
        return True
    return parts[0] == "distributed" and len(parts) > 1 and ".".join(parts[:2]) not in ALLOWED_SUBMODULES


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != SHIM)
PENDING = {
}
"""Modules whose reach into Dask's internals is known and has its replacement ready; delete an entry once its
module uses it (the test then shows XPASS)."""


def _pending(path: Path) -> pytest.MarkDecorator | tuple:
    reason = PENDING.get(str(path.relative_to(PACKAGE)))
    return pytest.mark.xfail(reason=reason, strict=False) if reason else ()


@pytest.mark.parametrize("path", [pytest.param(p, marks=_pending(p)) for p in MODULES],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_but_the_shim_touches_dask_internals(path):
    found = internals(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, ("Dask internals outside dml_lesson/_dask.py (use Dask's public API, or move the "
                       "touchpoint into _dask.py with a test here):\n" + "\n".join(found))


def test_the_internals_check_catches_each_kind_of_reach():
    source = '''
import distributed.comm
from distributed.utils import sync
from distributed.scheduler import KilledWorker
from distributed import Client, KilledWorker, utils
from distributed.protocol import serialize_bytes
from dask._task_spec import TaskRef
from dask.base import tokenize
import distributed

def f(actor, cluster, w, client):
    actor._worker_rpc, cluster.worker_spec, w.transfer_incoming_log, client.scheduler.identity
    getattr(actor, "_future", None)
    return distributed.utils.sync, distributed.Client

async def g(address, dask_scheduler=None):
    return dask_scheduler.workers
'''
    found = [line.split(" ", 1)[1] for line in internals(source, "x.py")]
    assert sorted(found) == sorted([
        "imports distributed.comm",
        "imports from distributed.utils",
        "imports from distributed.scheduler",
        "imports from distributed.protocol",
        "imports distributed.utils, not in distributed.__all__",
        "imports from dask._task_spec",
        "reads ._worker_rpc",
        "reads .worker_spec",
        "reads .transfer_incoming_log",
        "reads .scheduler",
        "getattr(..., '_future')",
        "uses distributed.utils, not in distributed.__all__",
        "g() takes dask_scheduler: works on Dask's live Scheduler",
    ]), found


def test_each_worker_keeps_its_clock_offset_where_scheduler_delay_reads_it(client, two_workers):
    """``Worker.scheduler_delay``: :func:`_dask.scheduler_delay` (timelines of notebooks 03 and 07)."""
    try:
        delays = client.run(_dask.scheduler_delay)
    except AttributeError as exc:
        pytest.fail(changed(f"the Worker's clock offset ({exc})", "scheduler_delay"))
    assert set(delays) == set(dml.worker_addresses(client)), changed("one offset per worker", "scheduler_delay")
    # one machine, one clock: the estimate is a round-trip error, well under a second
    assert all(isinstance(d, float) and abs(d) < 1.0 for d in delays.values()), changed(
        f"Worker.scheduler_delay as seconds, got {delays}", "scheduler_delay")
