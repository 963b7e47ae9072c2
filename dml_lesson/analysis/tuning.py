"""Choosing the learning rate on the cluster: grid search, random search, successive halving, Bayesian search.

A **trial** trains one model with one learning rate for a budget of SGD steps and scores it by its loss on
held-out validation rows. Trials are independent, so they run in parallel, one Dask task each, on the
workers: the parallelism here is over trials, not over the data (each trial is single-machine
:func:`~dml_lesson.core.optim.sgd` on the worker that runs it). The training and validation arrays are
**scattered** once to every worker (:func:`share_data`) and each task receives the future, so the data is not
sent again with every trial. Scattered data has no lineage: a lost worker loses its copy, and the search fails
with a clear error (notebook 07 explains why).

- **grid search** tries every learning rate of a list (log-spaced);
- **random search** draws them log-uniformly from a range with a seed;
- **successive halving** starts many random trials on a small budget, keeps the best ``1/factor`` (the halving
  factor f), multiplies the budget by ``factor`` and repeats until one is left: a fixed budget spread over many
  more candidates than full training could afford (Jamieson and Talwalkar 2016; Li et al. 2018);
- **Bayesian search** (:func:`bayesian_search`) asks Optuna's TPE sampler where to look next, given the
  scores so far (an optional extra: ``pip install dml-lesson[tuning]``).

A trial is a pure function of ``(data, lr, budget, batch_size, seed)``, so every search repeats exactly.
Notebook 09 uses this module.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, Future, get_worker, wait

from ..cluster.client import check_client, worker_addresses
from ..core.checks import check_float, check_int, check_seed
from ..core.models import Model, get_model
from ..core.optim import check_xy, sgd
from ..core.settings import TRIAL_TIMEOUT

_RANDOM = 1


@dataclass(frozen=True)
class Trial:
    """One training run of a search: its learning rate, budget (SGD steps), validation loss and where it ran.

    ``score`` is ``inf`` when the run diverged; ``round`` is the successive-halving round, or the batch of a
    Bayesian search (0 for grid and random search).
    """

    lr: float
    budget: int
    score: float
    round: int = 0
    worker: str = ""
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return not math.isfinite(self.score)


@dataclass(frozen=True)
class SearchResult:
    """All the trials of a search, in the order they were submitted."""

    method: str
    trials: tuple[Trial, ...]

    @property
    def best(self) -> Trial:
        """The trial with the lowest score among those that got the largest budget (ties: the smaller lr)."""
        top = max(t.budget for t in self.trials)
        return min((t for t in self.trials if t.budget == top), key=lambda t: (t.score, t.lr))

    @property
    def total_steps(self) -> int:
        """SGD steps spent by all trials together: the cost of the search."""
        return sum(t.budget for t in self.trials)

    def __repr__(self) -> str:
        b = self.best
        return (f"SearchResult({self.method}: {len(self.trials)} trials, {self.total_steps} steps; "
                f"best lr {b.lr:.3g}, validation loss {b.score:.4g})")


@dataclass(frozen=True)
class SharedData:
    """Training and validation arrays scattered to every worker, and the settings every trial shares."""

    future: Future
    model: Model
    batch_size: int
    n_train: int


def share_data(
    client: Client | None,
    train: tuple[Any, Any],
    valid: tuple[Any, Any],
    *,
    model: str | Model = "linear",
    batch_size: int = 32,
) -> SharedData:
    """Scatter ``(X_train, y_train, X_valid, y_valid)`` to every worker once (broadcast) for the searches.

    Dask arrays are computed first. ``model`` and ``batch_size`` are those of every trial (notebook 09).
    """
    client = check_client(client)
    X, y = check_xy(*train)
    Xv, yv = check_xy(*valid)
    if Xv.shape[1] != X.shape[1]:
        raise ValueError(f"validation X must have {X.shape[1]} columns like the training X, got {Xv.shape[1]}")
    batch_size = check_int("batch_size", batch_size, low=1, high=len(y), why="the training rows")
    [future] = client.scatter([(X, y, Xv, yv)], broadcast=True, hash=False)
    return SharedData(future, get_model(model), batch_size, len(y))


def run_trial(arrays: tuple, model: Model, lr: float, budget: int, batch_size: int, seed: int) -> tuple:
    """The task of one trial, run on a worker: SGD for ``budget`` steps, then the validation loss.

    Returns ``(score, worker address, seconds)``; the score is ``inf`` when the run diverged.
    """
    started = time.perf_counter()
    X, y, Xv, yv = arrays
    res = sgd(X, y, lr=lr, batch_size=batch_size, n_steps=budget, seed=seed, model=model)
    with np.errstate(all="ignore"):
        score = math.inf if res.diverged else float(model.loss(res.w, Xv, yv))
    try:
        worker = get_worker().address
    except ValueError:  # run outside a worker (tests of the function itself)
        worker = ""
    return (score if math.isfinite(score) else math.inf), worker, time.perf_counter() - started


def run_trials(
    data: SharedData,
    lrs: Any,
    budget: int,
    seed: int = 0,
    client: Client | None = None,
    *,
    round: int = 0,
    timeout: float = TRIAL_TIMEOUT,
) -> list[Trial]:
    """Submit one task per learning rate, wait for all of them (at most ``timeout`` seconds), in order."""
    client = check_client(client)
    budget = check_int("budget", budget, low=1)
    seed = check_seed("seed", seed)
    timeout = check_float("timeout", timeout, low=0.0, low_open=True)
    lrs = [check_float("lr", lr, low=0.0, low_open=True) for lr in np.atleast_1d(lrs).tolist()]
    futures = [client.submit(run_trial, data.future, data.model, lr, budget, data.batch_size, seed, pure=False)
               for lr in lrs]
    try:
        wait(futures, timeout=timeout)
    except TimeoutError:
        not_done = [f for f in futures if not f.done()]
        client.cancel(futures)  # a trial already running finishes on its worker, but its result is dropped
        raise TimeoutError(f"{len(not_done)} of {len(futures)} trials did not finish within {timeout} s: "
                           "is the cluster overloaded? Try fewer steps or a longer timeout") from None
    replies = client.gather(futures)
    return [Trial(lr, budget, score, round, worker, seconds) for lr, (score, worker, seconds) in zip(lrs, replies)]


def grid_search(data: SharedData, lrs: Any, budget: int = 100, seed: int = 0,
                client: Client | None = None) -> SearchResult:
    """Every learning rate of ``lrs`` (e.g. ``np.geomspace(1e-3, 1, 8)``), each for ``budget`` steps."""
    lrs = np.atleast_1d(np.asarray(lrs, dtype=float))
    if lrs.ndim != 1 or len(lrs) == 0:
        raise ValueError(f"lrs must be a non-empty list of learning rates, got shape {lrs.shape}")
    return SearchResult("grid search", tuple(run_trials(data, lrs, budget, seed, client)))


def random_lrs(n_trials: int, lr_range: tuple[float, float], seed: int = 0) -> np.ndarray:
    """``n_trials`` learning rates drawn log-uniformly from ``lr_range`` with ``default_rng([seed, 1])``."""
    n_trials = check_int("n_trials", n_trials, low=1)
    low, high = _check_range(lr_range)
    rng = np.random.default_rng([check_seed("seed", seed), _RANDOM])
    return np.exp(rng.uniform(math.log(low), math.log(high), n_trials))


def random_search(data: SharedData, n_trials: int = 8, lr_range: tuple[float, float] = (1e-3, 1.0),
                  budget: int = 100, seed: int = 0, client: Client | None = None) -> SearchResult:
    """``n_trials`` learning rates from :func:`random_lrs`, each for ``budget`` steps."""
    return SearchResult("random search", tuple(run_trials(data, random_lrs(n_trials, lr_range, seed), budget,
                                                          seed, client)))


def successive_halving(data: SharedData, n_trials: int = 27, lr_range: tuple[float, float] = (1e-3, 1.0),
                       min_budget: int = 10, factor: int = 3, seed: int = 0,
                       client: Client | None = None) -> SearchResult:
    """Successive halving: the learning rates of :func:`random_search` (same seed), budgets growing by ``factor``.

    Round ``r`` trains its candidates for ``min_budget * factor**r`` steps, each from scratch; the best
    ``len // factor`` (at least one) go on to the next round, until one is left. With 27 trials and ``factor = 3``
    (the halving factor f of notebook 09): 27 trials of ``b`` steps, 9 of ``3b``, 3 of ``9b``, 1 of ``27b``: 4 rounds
    of ``27 b`` steps each, where random search over the same 27 rates would spend ``27 * 27 b``, and the same
    ``4 * 27 b`` steps would train only 4 rates for ``27 b`` steps each. Each round is a batch of parallel tasks.
    Scores of early rounds are of short runs: they rank the candidates, they are not comparable with full runs.
    """
    min_budget = check_int("min_budget", min_budget, low=1)
    factor = check_int("factor", factor, low=2)
    candidates = list(random_lrs(n_trials, lr_range, seed))
    trials: list[Trial] = []
    budget, rnd = min_budget, 0
    while True:
        results = run_trials(data, candidates, budget, seed, client, round=rnd)
        trials.extend(results)
        if len(results) == 1:
            break
        ranked = sorted(results, key=lambda t: (t.score, t.lr))
        candidates = [t.lr for t in ranked[: max(1, len(results) // factor)]]
        budget, rnd = budget * factor, rnd + 1
    return SearchResult("successive halving", tuple(trials))


def bayesian_search(data: SharedData, n_trials: int = 16, lr_range: tuple[float, float] = (1e-3, 1.0),
                    budget: int = 100, seed: int = 0, client: Client | None = None, *,
                    n_startup: int = 4, batch: int | None = None) -> SearchResult:
    """Bayesian optimization of the learning rate with Optuna's TPE sampler, trials run on the cluster.

    TPE (Tree-structured Parzen Estimator) splits the trials scored so far into the best few and the rest,
    fits a density to the learning rates of each group (a Parzen estimator: a sum of kernels, here on a log
    scale), and proposes the rate where "good density / bad density" is highest, which maximizes the expected
    improvement. The first ``n_startup`` trials are random. Trials are asked ``batch`` at a time (by default
    one per worker), run in parallel, and told their scores in order, so a seeded search repeats exactly.
    Diverged trials are told a score ten times the worst finite one (TPE needs a number).
    """
    optuna = _import_optuna()
    n_trials = check_int("n_trials", n_trials, low=1)
    n_startup = check_int("n_startup", n_startup, low=1)
    seed = check_seed("seed", seed)
    low, high = _check_range(lr_range)
    client = check_client(client)
    batch = len(worker_addresses(client)) if batch is None else batch
    batch = check_int("batch", batch, low=1)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    space = {"lr": optuna.distributions.FloatDistribution(low, high, log=True)}
    trials: list[Trial] = []
    while len(trials) < n_trials:
        asked = [study.ask(space) for _ in range(min(batch, n_trials - len(trials)))]
        results = run_trials(data, [t.params["lr"] for t in asked], budget, seed, client, round=len(trials) // batch)
        finite = [t.score for t in trials + results if not t.diverged]
        penalty = 10 * max(finite) if finite else 1e6
        for t, r in zip(asked, results):
            study.tell(t, penalty if r.diverged else r.score)
        trials.extend(results)
    return SearchResult("Bayesian (TPE)", tuple(trials))


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ImportError("bayesian_search needs Optuna: pip install 'dml-lesson[tuning]' (or pip install optuna)"
                          ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _check_range(lr_range: Any) -> tuple[float, float]:
    if not isinstance(lr_range, tuple | list) or len(lr_range) != 2:
        raise ValueError(f"lr_range must be a pair (low, high), got {lr_range!r}")
    low = check_float("lr_range low", lr_range[0], low=0.0, low_open=True)
    high = check_float("lr_range high", lr_range[1], low=low, low_open=True)
    return low, high
