"""Bounded-memory passes over (N, D) arrays: the reduce and cell stages' arithmetic on features that stay
memory-mapped on disk, so that a day of photos (100k images) fits one machine.

An array of at most SMALL_ELEMENTS values (64 MiB as float64: the 1,797 digits as 32 px raw pixels, 10,000
images of resnet18 features) is processed whole, in exactly the arithmetic of earlier versions (small data,
the default preset and the reproductions among them, keeps its results bit for bit). A larger one is read
in row blocks of about BLOCK_BYTES as float64, accumulations in float64, and nothing of size N x D is held
in memory:

- ``moments``: column mean and standard deviation in two passes (the mean, then the squared deviations:
  the same two-pass formula as ``numpy.std``).
- ``Rows``: an (N, D) float32 space read by rows or blocks, standardized on the fly where it is given a
  mean and a scale: (x - mean) / scale in float64, then float32, elementwise as the whole-array form.
- ``fit_pca``: D <= COV_MAX_DIM: the D x D covariance of the centred rows accumulated in float64 over the
  blocks, then its eigenvectors (scikit-learn's ``covariance_eigh`` solver, the one its 'auto' picks for
  N >= 10 D and D <= 1000, computed here in float64); D > COV_MAX_DIM (the D x D matrix alone would be
  over 128 MiB): randomized SVD (Halko, Martinsson & Tropp 2011, Algorithms 4.4 and 5.1, the method of
  scikit-learn's ``randomized_svd``: 10 oversamples, 7 power iterations with QR normalisation), each
  product with the data one stream over the blocks (2 + 2 x 7 passes). Signs as scikit-learn's
  ``svd_flip(u_based_decision=False)``: each component's largest |loading| positive.
- ``dispersion``: Davies-Bouldin and Calinski-Harabasz as scikit-learn defines them, per-cluster sums in
  one pass (the centroids), distances to the centroids in a second: O(N D) time, O(k D) memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

SMALL_ELEMENTS = 8 << 20  # N x D at most this: the whole array at once (64 MiB as float64)
BLOCK_BYTES = 64 << 20  # a row block as float64
COV_MAX_DIM = 4096  # covariance PCA up to this D (a 128 MiB float64 D x D); randomized SVD above
OVERSAMPLES = 10  # randomized SVD (scikit-learn's defaults)
POWER_ITERATIONS = 7


def small(n: int, d: int) -> bool:
    """Whether an (n, d) array is processed whole (the arithmetic of earlier versions)."""
    return n * max(d, 1) <= SMALL_ELEMENTS


def block_rows(d: int) -> int:
    return max(1, BLOCK_BYTES // (8 * max(d, 1)))


def blocks(n: int, d: int) -> Iterator[slice]:
    """Row slices of about BLOCK_BYTES as float64 each."""
    step = block_rows(d)
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def moments(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and (population) standard deviation of (N, D) features, float64."""
    n, d = feats.shape
    if small(n, d):
        f = np.asarray(feats, dtype=np.float64)
        return f.mean(axis=0), f.std(axis=0)
    total = np.zeros(d)
    for sl in blocks(n, d):
        total += np.asarray(feats[sl], dtype=np.float64).sum(axis=0)
    mean = total / n
    sq = np.zeros(d)
    for sl in blocks(n, d):
        x = np.asarray(feats[sl], dtype=np.float64) - mean
        sq += np.einsum("ij,ij->j", x, x)
    return mean, np.sqrt(sq / n)


@dataclass
class Rows:
    """An (N, D) float32 space read by rows: ``source`` itself, or ``(source - mean) / scale`` where a mean
    and a scale are given (the standardized features of the common scoring space, never stored whole)."""

    source: Any  # (N, D) array, usually a read-only memory map
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.source.shape[0]), int(self.source.shape[1]))

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None or self.scale is None:
            return np.asarray(x, dtype=np.float32)
        y = np.asarray(x, dtype=np.float64) - self.mean
        y /= self.scale
        return y.astype(np.float32)

    def take(self, idx: np.ndarray | slice) -> np.ndarray:
        """Rows ``idx`` (in that order) as float32."""
        if isinstance(idx, slice):
            return self._prepare(self.source[idx])
        idx = np.asarray(idx)
        order = np.argsort(idx, kind="stable")  # a memory map reads fastest in file order
        out = np.empty((idx.size, self.shape[1]), np.float32)
        out[order] = self._prepare(self.source[idx[order]])
        return out

    def blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        for sl in blocks(*self.shape):
            yield sl, self.take(sl)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole space in memory (a custom score that needs it; the built-in ones read blocks)."""
        whole = self.take(slice(None))
        return whole if dtype is None else whole.astype(dtype)


def as_rows(x: np.ndarray | Rows) -> Rows:
    return x if isinstance(x, Rows) else Rows(x)


def _svd_flip_rows(v: np.ndarray) -> np.ndarray:
    """scikit-learn's ``svd_flip(u_based_decision=False)``: the largest |entry| of each row made positive."""
    pick = np.argmax(np.abs(v), axis=1)
    signs = np.sign(v[np.arange(v.shape[0]), pick])
    signs[signs == 0] = 1.0
    return v * signs[:, None]


def fit_pca(rows: Rows, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the rows, streamed: (components (dims, D) float32, mean (D,) float32). See the module text."""
    n, d = rows.shape
    dims = min(dims, n, d)
    total = np.zeros(d)
    for _sl, x in rows.blocks():
        total += x.sum(axis=0, dtype=np.float64)
    mean = total / n
    if d <= COV_MAX_DIM:
        cov = np.zeros((d, d))
        for _sl, x in rows.blocks():
            xc = x.astype(np.float64) - mean
            cov += xc.T @ xc
        cov /= max(n - 1, 1)
        _vals, vecs = np.linalg.eigh(cov)
        comps = vecs[:, ::-1][:, :dims].T
    else:
        comps = _randomized_components(rows, mean, dims, seed)
    return _svd_flip_rows(comps).astype(np.float32), mean.astype(np.float32)


def _randomized_components(rows: Rows, mean: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """Top ``dims`` right singular vectors of the centred rows (randomized range finder, power iterations)."""
    n, d = rows.shape
    width = min(dims + OVERSAMPLES, n, d)
    omega = np.random.RandomState(seed).normal(size=(d, width))

    def times(m: np.ndarray) -> np.ndarray:  # (X - mean) @ m, (N, width)
        out = np.empty((n, m.shape[1]))
        for sl, x in rows.blocks():
            out[sl] = (x.astype(np.float64) - mean) @ m
        return out

    def transposed_times(q: np.ndarray) -> np.ndarray:  # (X - mean).T @ q, (D, width)
        out = np.zeros((d, q.shape[1]))
        for sl, x in rows.blocks():
            out += (x.astype(np.float64) - mean).T @ q[sl]
        return out

    y = times(omega)
    for _ in range(POWER_ITERATIONS):
        q, _r = np.linalg.qr(y)
        z, _r = np.linalg.qr(transposed_times(q))
        y = times(z)
    q, _r = np.linalg.qr(y)
    b = transposed_times(q).T  # (width, D) = Q.T (X - mean)
    _u, _s, vt = np.linalg.svd(b, full_matrices=False)
    return vt[:dims]


def transform(rows: Rows, fn: Any, out: np.ndarray) -> np.ndarray:
    """``out[block] = fn(rows of the block)`` over the blocks; ``out`` may be a writable memory map."""
    for sl, x in rows.blocks():
        out[sl] = fn(x)
    return out


def _encoded(labels: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(labels, return_inverse=True)
    return inv, int(uniq.size)


def _cluster_sums(rows: Rows, core: np.ndarray, lab: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster row sums (k, D) float64 and the sum of all core rows (D,), over the blocks."""
    sums = np.zeros((k, rows.shape[1]))
    for sl, x in rows.blocks():
        keep = core[sl]
        xb, lb = x[keep].astype(np.float64), lab[sl][keep]
        if lb.size == 0:
            continue
        order = np.argsort(lb, kind="stable")
        lb_sorted = lb[order]
        starts = np.flatnonzero(np.r_[True, lb_sorted[1:] != lb_sorted[:-1]])
        sums[lb_sorted[starts]] += np.add.reduceat(xb[order], starts, axis=0)
    return sums, sums.sum(axis=0)


def dispersion(rows: Rows, labels: np.ndarray) -> tuple[float, float]:
    """(Davies-Bouldin, Calinski-Harabasz) of the points with label >= 0, as scikit-learn computes them
    on those points, in two passes over the blocks."""
    labels = np.asarray(labels)
    core = labels >= 0
    lab = np.full(labels.shape, -1, np.int64)
    lab[core], k = _encoded(labels[core])
    counts = np.bincount(lab[core], minlength=k).astype(np.float64)
    n = int(core.sum())
    sums, total = _cluster_sums(rows, core, lab, k)
    centroids = sums / counts[:, None]
    mean = total / n
    intra_dist = np.zeros(k)  # sum of distances to the own centroid
    intra_sq = 0.0  # sum of squared distances to the own centroid
    for sl, x in rows.blocks():
        keep = core[sl]
        lb = lab[sl][keep]
        diff = x[keep].astype(np.float64) - centroids[lb]
        sq = np.einsum("ij,ij->i", diff, diff)
        intra_sq += float(sq.sum())
        np.add.at(intra_dist, lb, np.sqrt(sq))
    intra = intra_dist / counts
    centre_d = _pairwise(centroids)
    if np.allclose(intra, 0.0) or np.allclose(centre_d, 0.0):
        db = 0.0
    else:
        centre_d[centre_d == 0] = np.inf
        db = float(np.mean(np.max((intra[:, None] + intra[None, :]) / centre_d, axis=1)))
    extra = float((counts * ((centroids - mean) ** 2).sum(axis=1)).sum())
    ch = 1.0 if intra_sq == 0.0 else extra * (n - k) / (intra_sq * (k - 1.0))
    return db, float(ch)


def _pairwise(c: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``c`` (as scikit-learn's: |a|^2 + |b|^2 - 2ab, zero diagonal)."""
    sq = (c * c).sum(axis=1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * c @ c.T, 0.0))
    np.fill_diagonal(d, 0.0)
    return d
