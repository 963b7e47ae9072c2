"""Bad input gets a clear error that names the parameter and its valid range."""

import numpy as np
import pytest

import dml_lesson as dml
from dml_lesson import codecs, faults

X = np.ones((10, 2))
y = np.zeros(10)


def dgd(**kw):
    args = dict(X=X, y=y, n_nodes=2, lr=0.1, n_steps=3)
    args.update(kw)
    return dml.distributed_gd(args.pop("X"), args.pop("y"), **args)


def dsgd(**kw):
    args = dict(X=X, y=y, n_nodes=2, lr=0.1, batch_size=2, n_steps=3)
    args.update(kw)
    return dml.distributed_sgd(args.pop("X"), args.pop("y"), **args)


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
    ("batch > shard", lambda: dsgd(batch_size=6), ValueError, "batch_size must be between 1 and 5"),
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
    ("layout", lambda: dgd(layout="round-robin"), ValueError, "layout must be one of"),
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
    ("layout type", lambda: dgd(layout=3), TypeError, "layout must be a name"),
    ("weights", lambda: dml.Layout("weighted", weights=(1.0, -1.0)), ValueError, "positive finite weights"),
    ("sort_by", lambda: dgd(layout=dml.Layout("noniid", sort_by=7)), ValueError, "sort_by must be between 0 and 1"),
    ("codec name", lambda: codecs.make_codec("gzip"), ValueError, "codec must be one of"),
    ("bits 0", lambda: codecs.Quantize(0), ValueError, "bits must be between 1 and 16"),
    ("ratio > 1", lambda: codecs.TopK(1.5), ValueError, "ratio must be"),
    ("step_decay every", lambda: dml.step_decay(0), ValueError, "every must be >= 1"),
    ("slowdown < 1", lambda: faults.slow_worker(0, 0.5), ValueError, "factor must be"),
    ("kill index", lambda: faults.kill_worker(9), ValueError, "worker must be between 0 and 1"),
    ("client type", lambda: dgd(client="tcp://127.0.0.1:8786"), TypeError, "client must be a distributed.Client"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named(client, call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_nan_in_dask_input_is_reported_from_the_workers(client):
    import dask.array as da

    Xd = da.from_array(np.where(np.eye(40, 2) > 0, np.nan, 1.0), chunks=(10, 2))
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        dml.distributed_gd(Xd, da.zeros(40, chunks=10), n_nodes=2, client=client)


def test_at_least_thirty_distinct_bad_inputs_are_covered():
    assert len({case[0] for case in CASES}) >= 30


def test_a_closed_client_is_named(client):
    from distributed import Client

    closed = Client(client.scheduler.address, set_as_default=False)
    closed.close()
    with pytest.raises(ValueError, match="client is closed"):
        dgd(client=closed)


def test_an_unreachable_scheduler_is_named(client, monkeypatch):
    from dml_lesson import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    monkeypatch.setattr(cluster, "_state", {"client": None, "cluster": None})  # as in a fresh kernel
    with pytest.raises(ConnectionError, match="could not reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        dml.get_client(address="tcp://127.0.0.1:9")
