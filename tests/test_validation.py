"""Bad input gets a clear error that names the parameter and its valid range."""

import numpy as np
import pytest

import dml_lesson as dml

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
