"""Linear probe: logistic regression on frozen, standardized features of k labeled images per class.

Protocol (pinned): for each of ``draws`` seeded draws, take k labeled images per class (the labeled
subset); split it in half, stratified, to pick C from the grid by validation accuracy; refit on the
whole subset with that C; score on every labeled image outside the subset (the test images, never
used to choose anything). Report mean and std over the draws."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from benchmark.specs import ProbeSpec


@dataclass(frozen=True)
class ProbeResult:
    mean: float | None
    std: float | None
    accuracies: tuple[float, ...]
    chosen_c: tuple[float, ...]
    k_per_class: int
    n_test: int
    reason: str = ""  # why no probe was possible ("" when it ran)


def _fit(X: np.ndarray, y: np.ndarray, c: float, seed: int) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=c, max_iter=500, random_state=seed).fit(scaler.transform(X), y)
    return scaler, clf


def _score(model: tuple[StandardScaler, LogisticRegression], X: np.ndarray, y: np.ndarray) -> float:
    scaler, clf = model
    return float((clf.predict(scaler.transform(X)) == y).mean())


def linear_probe(features: np.ndarray, labels: np.ndarray, spec: ProbeSpec, seed: int) -> ProbeResult:
    """Run the protocol above on features (N, D) with labels (N,), -1 = unlabeled."""
    labeled = np.flatnonzero(labels >= 0)
    classes, counts = np.unique(labels[labeled], return_counts=True)
    if classes.size < 2:
        return ProbeResult(None, None, (), (), spec.k_per_class, 0, "fewer than 2 labeled classes")
    k = min(spec.k_per_class, int(counts.min()) - 1)  # keep at least one test image per class
    if k < 2:
        return ProbeResult(None, None, (), (), k, 0,
                           f"a class has {int(counts.min())} labeled images: need at least 3 for a probe")
    accs, cs, n_test = [], [], 0
    for draw in range(spec.draws):
        rng = np.random.default_rng([seed, draw])
        train, val_a, val_b = [], [], []
        for c in classes:
            pick = rng.permutation(labeled[labels[labeled] == c])[:k]
            train.extend(pick)
            val_a.extend(pick[: (k + 1) // 2])
            val_b.extend(pick[(k + 1) // 2:])
        train_idx = np.array(train)
        test_idx = np.setdiff1d(labeled, train_idx)
        fit_idx, val_idx = np.array(val_a), np.array(val_b)
        best_c, best = spec.c_grid[0], -1.0
        for c in spec.c_grid:
            acc = _score(_fit(features[fit_idx], labels[fit_idx], c, seed), features[val_idx], labels[val_idx])
            if acc > best:
                best, best_c = acc, c
        model = _fit(features[train_idx], labels[train_idx], best_c, seed)
        accs.append(_score(model, features[test_idx], labels[test_idx]))
        cs.append(best_c)
        n_test = int(test_idx.size)
    return ProbeResult(float(np.mean(accs)), float(np.std(accs)), tuple(accs), tuple(cs), k, n_test)
