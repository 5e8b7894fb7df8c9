"""Cluster scores. Internal scores ignore noise points (label -1); external scores count them.

- silhouette, Davies-Bouldin, Calinski-Harabasz: on the non-noise points, in the space given;
  undefined (None) when fewer than 2 clusters remain or every point is its own cluster.
- NMI, ARI: on labeled points; noise is treated as one more cluster.
- cluster accuracy: Hungarian one-to-one matching of clusters to classes; noise points never match."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.interfaces import Status
from benchmark.scoring.silhouette import silhouette_torch
from benchmark.scoring.streamed import Rows, as_rows, dispersion, small


@dataclass(frozen=True)
class InternalScores:
    n_clusters: int
    noise_fraction: float
    silhouette: float | None
    davies_bouldin: float | None
    calinski_harabasz: float | None
    silhouette_sample: int | None  # sample size when silhouette was sampled, else None
    reason: str  # why the scores are undefined ("" when defined)


def internal_scores(X: np.ndarray | Rows, labels: np.ndarray, max_n: int = 20000, seed: int = 0,
                    device: str = "cpu") -> InternalScores:
    """Scores of ``labels`` on X (N, D): an array, or ``Rows`` read by blocks. Silhouette (chunked torch, on
    ``device``) is exact up to ``max_n`` points, computed on a seeded sample of ``max_n`` above: it holds at
    most ``max_n`` rows. Davies-Bouldin and Calinski-Harabasz are O(N D) passes: scikit-learn's on a small
    space (``scoring.streamed.small``), the same formulas over row blocks on a larger one."""
    from sklearn import metrics as skm  # imported when scoring: the CLI starts without it

    labels = np.asarray(labels)
    core = labels >= 0
    clusters = np.unique(labels[core])
    k = int(clusters.size)
    noise = float(1.0 - core.mean()) if labels.size else 0.0
    n_core = int(core.sum())
    if k < 2:
        return InternalScores(k, noise, None, None, None, None,
                              f"{k} cluster{'s' if k != 1 else ''} found: internal scores need at least 2")
    if k >= n_core:
        return InternalScores(k, noise, None, None, None, None, "every point is its own cluster")
    rows = as_rows(X)
    lc = labels[core]
    sample = max_n if n_core > max_n else None
    if small(n_core, rows.shape[1]):
        Xc = rows.source[core] if rows.mean is None else rows.take(np.flatnonzero(core))
        sil = silhouette_torch(Xc, lc, device=device, sample_size=sample, seed=seed)
        return InternalScores(k, noise, sil, float(skm.davies_bouldin_score(Xc, lc)),
                              float(skm.calinski_harabasz_score(Xc, lc)), sample, "")
    sil = _silhouette_rows(rows, np.flatnonzero(core), lc, sample, seed, device)
    db, ch = dispersion(rows, labels)
    return InternalScores(k, noise, sil, db, ch, sample, "")


def _silhouette_rows(rows: Rows, index: np.ndarray, lab: np.ndarray, sample: int | None, seed: int,
                     device: str) -> float:
    """``silhouette_torch`` of the rows ``index`` (with their labels ``lab``), its seeded sample taken first:
    only the rows it uses are read."""
    if sample is not None and sample < index.size:
        pick = np.random.RandomState(seed).permutation(index.size)[:sample]  # silhouette_torch's own sample
        index, lab = index[pick], lab[pick]
    return silhouette_torch(rows.take(index), lab, device=device)


def cluster_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Best one-to-one cluster->class matching (Hungarian), fraction of points matched; -1 never matches."""
    from scipy.optimize import linear_sum_assignment

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    classes = np.unique(y_true)
    clusters = np.unique(y_pred[y_pred >= 0])
    if clusters.size == 0:
        return 0.0
    ci = {c: i for i, c in enumerate(classes)}
    ki = {c: i for i, c in enumerate(clusters)}
    table = np.zeros((clusters.size, classes.size), np.int64)
    for t, p in zip(y_true, y_pred, strict=False):
        if p >= 0:
            table[ki[p], ci[t]] += 1
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / y_true.size)


@dataclass(frozen=True)
class ExternalScores:
    nmi: float
    ari: float
    cluster_acc: float
    n_labeled: int


def external_scores(y_true: np.ndarray, y_pred: np.ndarray) -> ExternalScores | None:
    """NMI, ARI, Hungarian accuracy on the labeled points (y_true >= 0); None when none are labeled."""
    from sklearn import metrics as skm

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    m = y_true >= 0
    if m.sum() == 0:
        return None
    t, p = y_true[m], y_pred[m]
    return ExternalScores(float(skm.normalized_mutual_info_score(t, p)), float(skm.adjusted_rand_score(t, p)),
                          cluster_accuracy(t, p), int(m.sum()))


# rankability (unlabeled ranking guard): internal scores describe a clustering only when it keeps most
# points and splits them; thresholds set by what the scores mean, never tuned on labels (CONVENTIONS 10)
MAX_NOISE = 0.5  # above: the scores describe a minority of the data
MIN_EFFECTIVE_CLUSTERS = 1.5  # below: one cluster holds nearly everything (e.g. 1764 + 4 of 1797 images: 1.02)


def effective_clusters(labels: np.ndarray) -> float:
    """exp(entropy) of the cluster sizes, noise left out: k for k equal clusters, near 1 for one giant cluster."""
    lab = np.asarray(labels)
    _, counts = np.unique(lab[lab >= 0], return_counts=True)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def rankability(labels: np.ndarray, status: str) -> tuple[bool, str]:
    """(rankable, why not): a cell is ranked by internal scores only when it is ok, at most MAX_NOISE of its
    points are noise and it has at least MIN_EFFECTIVE_CLUSTERS effective clusters."""
    if status != Status.OK:
        return False, f"status {status}"
    lab = np.asarray(labels)
    noise = float((lab < 0).mean()) if lab.size else 0.0
    if noise > MAX_NOISE:
        return False, f"{noise:.0%} of the points are noise (over {MAX_NOISE:.0%})"
    eff = effective_clusters(lab)
    if eff < MIN_EFFECTIVE_CLUSTERS:
        return False, (f"one cluster holds nearly everything: {eff:.2f} effective clusters "
                       f"(under {MIN_EFFECTIVE_CLUSTERS:g})")
    return True, ""


def silhouette_with_noise(X: np.ndarray | Rows, labels: np.ndarray, max_n: int = 20000, seed: int = 0,
                          device: str = "cpu") -> float | None:
    """Silhouette with the noise points counted as one more cluster (a cell cannot hide its noise)."""
    lab = np.asarray(labels).copy()
    if (lab < 0).any():
        lab[lab < 0] = lab.max() + 1
    k = np.unique(lab).size
    if k < 2 or k >= lab.size:
        return None
    sample = max_n if lab.size > max_n else None
    rows = as_rows(X)
    if rows.mean is None and small(*rows.shape):
        return silhouette_torch(rows.source, lab, device=device, sample_size=sample, seed=seed)
    return _silhouette_rows(rows, np.arange(lab.size), lab, sample, seed, device)


def stability(label_sets: list[np.ndarray]) -> tuple[float, float]:
    """Mean and std of the pairwise ARI between clusterings of the same points (1.0: identical partitions)."""
    from sklearn import metrics as skm

    aris = [skm.adjusted_rand_score(a, b) for i, a in enumerate(label_sets) for b in label_sets[i + 1:]]
    return (float(np.mean(aris)), float(np.std(aris))) if aris else (1.0, 0.0)
