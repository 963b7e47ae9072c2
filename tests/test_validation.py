"""Bad input gets a clear error that names the parameter and its valid range."""

import dask.array as da
import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson.analysis.imbalance import weighted_logistic
from dml_lesson.cluster import client as cluster
from dml_lesson.cluster import faults
from dml_lesson.core import codecs

X = np.ones((10, 2))
y = np.zeros(10)
Xd, yd = da.from_array(X, chunks=(5, 2)), da.from_array(y, chunks=5)
every_other = da.from_array(np.arange(10) % 2 == 0, chunks=5)  # filtering by it leaves the chunk sizes unknown
minus_one_one, zero_two, continuous = np.tile([-1.0, 1.0], 5), np.tile([0.0, 2.0], 5), np.linspace(0, 1, 10)


def dgd(**kw):
    args = dict(X=X, y=y, n_nodes=2, lr=0.1, n_steps=3)
    args.update(kw)
    return dml.distributed_gd(args.pop("X"), args.pop("y"), **args)


def dsgd(**kw):
    args = dict(X=X, y=y, n_nodes=2, lr=0.1, batch_size=2, n_steps=3)
    args.update(kw)
    return dml.distributed_sgd(args.pop("X"), args.pop("y"), **args)


class _OnCluster(tuple):
    """A case that needs the cluster: its error comes after the shards are placed, or from the workers."""


def on_cluster(name, call, error, message):
    return _OnCluster((name, call, error, message))


CASES = [
    ("lr=0", lambda: dml.gradient_descent(X, y, lr=0), ValueError, "lr must be a finite number > 0"),
    ("lr<0", lambda: dml.sgd(X, y, lr=-1), ValueError, "lr must be"),
    ("lr=nan", lambda: dgd(lr=float("nan")), ValueError, "lr must be a finite number"),
    ("lr=inf", lambda: dsgd(lr=float("inf")), ValueError, "lr must be a finite number"),
    ("lr str", lambda: dml.gradient_descent(X, y, lr="0.1"), TypeError, "lr must be a real number"),
    ("n_steps<0", lambda: dml.gradient_descent(X, y, n_steps=-1), ValueError, "n_steps must be >= 0"),
    ("n_steps float", lambda: dgd(n_steps=2.5), TypeError, "n_steps must be an integer"),
    ("batch 0", lambda: dml.sgd(X, y, batch_size=0), ValueError, "batch_size must be between 1 and 10"),
    ("batch > n", lambda: dml.sgd(X, y, batch_size=11), ValueError, "batch_size must be between 1 and 10"),
    on_cluster("batch > shard", lambda: dsgd(batch_size=6), ValueError, "batch_size must be between 1 and 5"),
    ("n_nodes 0", lambda: dgd(n_nodes=0), ValueError, "n_nodes must be between 1 and 10"),
    ("n_nodes > rows", lambda: dgd(n_nodes=11), ValueError, "n_nodes must be between 1 and 10"),
    ("n_nodes > blocks", lambda: dml.distributed_gd(*dml.make_regression(100, 1, block_size=50)[:2],
                                                    n_nodes=3), ValueError, "the number of blocks of X"),
    ("length mismatch", lambda: dml.gradient_descent(X, np.zeros(9)), ValueError, "same number of rows"),
    ("X 1-D", lambda: dgd(X=np.ones(10)), ValueError, "X must be 2-D"),
    ("y 2-D", lambda: dml.sgd(X, np.zeros((10, 1))), ValueError, "y must be 1-D"),
    ("NaN in X", lambda: dgd(X=np.where(np.eye(10, 2) > 0, np.nan, 1.0)), ValueError, "X contains NaN"),
    ("NaN in y", lambda: dml.gradient_descent(X, np.full(10, np.nan)), ValueError, "y contains NaN"),
    ("aggregate", lambda: dgd(aggregate="median"), ValueError, "aggregate must be one of 'mean', 'sum'"),
    ("transport", lambda: dgd(transport="mpi"), ValueError, "transport must be one of"),
    on_cluster("layout", lambda: dgd(layout="round-robin"), ValueError, "layout must be one of"),
    ("model", lambda: dml.gradient_descent(X, y, model="svm"), ValueError, "model must be one of"),
    ("schedule", lambda: dml.sgd(X, y, batch_size=2, schedule="cosine"), ValueError, "schedule must be one of"),
    ("seed<0", lambda: dml.sgd(X, y, batch_size=2, seed=-1), ValueError, "seed must be >= 0"),
    ("w0 shape", lambda: dml.gradient_descent(X, y, w0=[0.0]), ValueError, "w0 must have shape (2,)"),
    ("n_samples 0", lambda: dml.make_regression(0, 2), ValueError, "n_samples must be >= 1"),
    ("noise<0", lambda: dml.make_regression(10, 2, noise=-1), ValueError, "noise must be"),
    ("p=1", lambda: dml.make_classification(10, 2, positive_fraction=1.0), ValueError, "positive_fraction"),
    ("n_workers", lambda: dml.get_client(n_workers=0), ValueError, "n_workers must be between 1 and 16"),
    ("block_size 0", lambda: dml.make_regression(10, 2, block_size=0), ValueError, "block_size must be >= 1"),
    ("x_mean nan", lambda: dml.make_regression(10, 2, x_mean=float("nan")), ValueError, "x_mean must be a finite"),
    ("w_true length", lambda: dml.make_regression(10, 2, w_true=[1.0]), ValueError, "w_true must have shape (3,)"),
    ("class_sep 0", lambda: dml.make_classification(10, 2, class_sep=0), ValueError, "class_sep must be"),
    ("backups", lambda: dgd(backups=2), ValueError, "backups must be between 0 and 1"),
    on_cluster("layout type", lambda: dgd(layout=3), TypeError, "layout must be a name"),
    ("weights", lambda: dml.Layout("weighted", weights=(1.0, -1.0)), ValueError, "positive finite weights"),
    on_cluster("sort_by", lambda: dgd(layout=dml.Layout("noniid", sort_by=7)), ValueError,
               "sort_by must be between 0 and 1"),
    ("codec name", lambda: codecs.make_codec("gzip"), ValueError, "codec must be one of"),
    ("bits 0", lambda: codecs.Quantize(0), ValueError, "bits must be between 1 and 16"),
    ("ratio > 1", lambda: codecs.TopK(1.5), ValueError, "ratio must be"),
    ("step_decay every", lambda: dml.step_decay(0), ValueError, "every must be >= 1"),
    on_cluster("slowdown < 1", lambda: faults.slow_worker(0, 0.5), ValueError, "factor must be"),
    on_cluster("kill index", lambda: faults.kill_worker(9), ValueError, "worker must be between 0 and 1"),
    ("client type", lambda: dgd(client="tcp://127.0.0.1:8786"), TypeError, "client must be a distributed.Client"),
    ("logistic -1/1", lambda: dml.gradient_descent(X, minus_one_one, model="logistic"), ValueError,
     "y must hold only the labels 0 and 1 for model='logistic', got -1"),
    ("logistic 0/2", lambda: dml.sgd(X, zero_two, batch_size=2, model="logistic"), ValueError,
     "y must hold only the labels 0 and 1 for model='logistic', got 2"),
    ("logistic continuous", lambda: dml.gradient_descent(X, continuous, model="logistic"), ValueError,
     "y must hold only the labels 0 and 1"),
    on_cluster("logistic dask", lambda: dgd(X=Xd, y=da.from_array(minus_one_one, chunks=5), model="logistic"),
               ValueError, "y must hold only the labels 0 and 1"),
    on_cluster("logistic tasks", lambda: dsgd(y=zero_two, model="logistic", transport="tasks"), ValueError,
               "y must hold only the labels 0 and 1"),
    on_cluster("logistic local", lambda: dml.local_sgd(X, continuous, n_nodes=2, batch_size=2, n_rounds=2,
                                                       model="logistic"), ValueError, "y must hold only the labels"),
    on_cluster("logistic async", lambda: dml.async_sgd(X, minus_one_one, n_nodes=2, batch_size=2, n_updates=3,
                                                       model="logistic"), ValueError, "y must hold only the labels"),
    ("weighted logistic 0/2", lambda: dml.gradient_descent(X, zero_two, model=weighted_logistic(1.0, 3.0)),
     ValueError, "y must hold only the labels 0 and 1"),
    ("y strings", lambda: dml.gradient_descent(X, np.array(["a", "b"] * 5)), TypeError,
     "y must hold real numbers (floats, integers or booleans), got strings"),
    ("y dask strings", lambda: dgd(X=Xd, y=da.from_array(np.array(["a", "b"] * 5), chunks=5)), TypeError,
     "y must hold real numbers (floats, integers or booleans), got strings"),
    ("X complex", lambda: dml.sgd(X + 1j, y, batch_size=2), TypeError, "X must hold real numbers"),
    ("X ragged", lambda: dml.gradient_descent([[1.0, 2.0], [3.0]], [0.0, 1.0]), ValueError,
     "X must be a rectangular array of real numbers"),
    ("X unknown chunks", lambda: dgd(X=Xd[every_other], y=yd[every_other]), ValueError,
     "X must have known chunk sizes, got shape (nan, 2)"),
    ("y unknown chunks", lambda: dgd(X=Xd, y=yd[every_other]), ValueError, "call y = y.compute_chunk_sizes() first"),
]


@pytest.mark.parametrize(
    "call, error, message",
    [pytest.param(*c[1:], id=c[0], marks=[pytest.mark.cluster] if isinstance(c, _OnCluster) else []) for c in CASES],
)
def test_bad_input_is_named(request, monkeypatch, call, error, message):
    if request.node.get_closest_marker("cluster"):
        request.getfixturevalue("client")
    else:  # the cases without the marker must fail at the door, before reaching for a cluster
        def no_cluster(*args, **kwargs):
            raise AssertionError("this case reached for the cluster: make it on_cluster(...)")

        monkeypatch.setattr(cluster, "get_client", no_cluster)
        monkeypatch.setattr(faults, "get_client", no_cluster)
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


@pytest.mark.cluster
def test_nan_in_dask_input_is_reported_from_the_workers(client):
    X_nan = da.from_array(np.where(np.eye(40, 2) > 0, np.nan, 1.0), chunks=(10, 2))
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        dml.distributed_gd(X_nan, da.zeros(40, chunks=10), n_nodes=2, client=client)


def test_at_least_thirty_distinct_bad_inputs_are_covered():
    assert len({case[0] for case in CASES}) >= 30


@pytest.mark.cluster
def test_a_closed_client_is_named(client):
    from distributed import Client

    closed = Client(client.scheduler.address, set_as_default=False)
    closed.close()
    with pytest.raises(ValueError, match="client is closed"):
        dgd(client=closed)


@pytest.mark.cluster
def test_an_unreachable_scheduler_is_named(client, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    monkeypatch.setattr(cluster, "_state", {"client": None, "cluster": None})  # as in a fresh kernel
    with pytest.raises(ConnectionError, match="could not reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        dml.get_client(address="tcp://127.0.0.1:9")
