"""Linear probe: logistic regression on frozen, standardized features of k labeled images per class.

Protocol (pinned): for each of ``draws`` seeded draws, take k labeled images per class (the labeled
subset); split it in half, stratified, to pick C from the grid by validation accuracy; refit on the
whole subset with that C; score on every labeled image outside the subset (the test images, never
used to choose anything). Report mean and std over the draws. The weighted kNN accuracy
(``benchmark.probe.knn``) is scored on the same draws (``labeled_draws``).

Two solvers of the same objective: the default batched torch Newton-CG (``benchmark.probe.torch_draws``: every
draw and C value of a stage in one batch, on the run's device) and scikit-learn's LogisticRegression, the
reference it is tested against."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.config.specs import ProbeSpec
from benchmark.probe import torch_draws


@dataclass(frozen=True)
class ProbeResult:
    mean: float | None
    std: float | None
    accuracies: tuple[float, ...]
    chosen_c: tuple[float, ...]
    k_per_class: int
    n_test: int
    reason: str = ""  # why no probe was possible ("" when it ran)


if TYPE_CHECKING:  # the reference solver's types; scikit-learn is imported when it runs
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler


def _fit(X: np.ndarray, y: np.ndarray, c: float, seed: int, tol: float = 1e-4,
         max_iter: int = 500) -> tuple[StandardScaler, LogisticRegression]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=c, tol=tol, max_iter=max_iter, random_state=seed).fit(scaler.transform(X), y)
    return scaler, clf


def _score(model: tuple[StandardScaler, LogisticRegression], X: np.ndarray, y: np.ndarray) -> float:
    scaler, clf = model
    return float((clf.predict(scaler.transform(X)) == y).mean())


def _splits(labels: np.ndarray, labeled: np.ndarray, classes: np.ndarray, k: int, draws: int,
            seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(train, fit, val) indices of each draw: k per class, the fit/val halves of them."""
    out = []
    for draw in range(draws):
        rng = np.random.default_rng([seed, draw])
        train: list[np.intp] = []
        val_a: list[np.intp] = []
        val_b: list[np.intp] = []
        for c in classes:
            pick = rng.permutation(labeled[labels[labeled] == c])[:k]
            train.extend(pick)
            val_a.extend(pick[: (k + 1) // 2])
            val_b.extend(pick[(k + 1) // 2:])
        out.append((np.array(train), np.array(val_a), np.array(val_b)))
    return out


@dataclass(frozen=True)
class Draws:
    """The labeled draws of the protocol: labeled rows, their sorted classes, k per class and each draw's
    (train, fit, val) indices; ``reason`` says why there are none ("" when there are)."""

    labeled: np.ndarray
    classes: np.ndarray
    k: int
    splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    reason: str = ""


def labeled_draws(labels: np.ndarray, spec: ProbeSpec, seed: int) -> Draws:
    """The draws of labels (N,), -1 = unlabeled, for ``spec`` and ``seed``: the linear probe's and the kNN's."""
    labeled = np.flatnonzero(labels >= 0)
    classes, counts = np.unique(labels[labeled], return_counts=True)
    if classes.size < 2:
        return Draws(labeled, classes, spec.k_per_class, [], "fewer than 2 labeled classes")
    k = min(spec.k_per_class, int(counts.min()) - 1)  # keep at least one test image per class
    if k < 2:
        return Draws(labeled, classes, k, [],
                     f"a class has {int(counts.min())} labeled images: need at least 3 for a probe")
    return Draws(labeled, classes, k, _splits(labels, labeled, classes, k, spec.draws, seed))


def _sklearn_draws(features, labels, labeled, splits, c_grid, seed, tol: float = 1e-4,
                   max_iter: int = 500) -> tuple[list[float], list[float]]:
    """The reference: scikit-learn's StandardScaler + LogisticRegression(lbfgs), one fit at a time. Its
    default stopping rule (max |gradient| <= 1e-4) ends some fits early enough to change a validation
    count, hence a chosen C; ``tol``/``max_iter`` let tests and benchmarks run it to convergence."""
    accs, cs = [], []
    for train_idx, fit_idx, val_idx in splits:
        test_idx = np.setdiff1d(labeled, train_idx)
        best_c, best = c_grid[0], -1.0
        for c in c_grid:
            model = _fit(features[fit_idx], labels[fit_idx], c, seed, tol, max_iter)
            acc = _score(model, features[val_idx], labels[val_idx])
            if acc > best:
                best, best_c = acc, c
        model = _fit(features[train_idx], labels[train_idx], best_c, seed, tol, max_iter)
        accs.append(_score(model, features[test_idx], labels[test_idx]))
        cs.append(best_c)
    return accs, cs


def linear_probe(features: np.ndarray, labels: np.ndarray, spec: ProbeSpec, seed: int,
                 device: str = "cpu", *, reference_tol: float | None = None) -> ProbeResult:
    """Run the protocol above on features (N, D) with labels (N,), -1 = unlabeled. ``spec.solver`` picks
    the batched torch solver (on ``device``) or the scikit-learn reference; ``reference_tol`` runs the
    reference with that stopping tolerance (and up to 100,000 iterations) instead of its default."""
    draws = labeled_draws(labels, spec, seed)
    if draws.reason:
        return ProbeResult(None, None, (), (), draws.k, 0, draws.reason)
    labeled, classes, splits = draws.labeled, draws.classes, draws.splits
    if spec.solver == "sklearn" or reference_tol is not None:
        extra: dict[str, Any] = {} if reference_tol is None else {"tol": reference_tol, "max_iter": 100_000}
        accs, cs = _sklearn_draws(features, labels, labeled, splits, spec.c_grid, seed, **extra)
    else:
        accs, cs = torch_draws.torch_draws(features, labels, labeled, classes, splits, spec.c_grid, device)
    n_test = int(labeled.size - splits[0][0].size)
    return ProbeResult(float(np.mean(accs)), float(np.std(accs)), tuple(accs), tuple(cs), draws.k, n_test)
