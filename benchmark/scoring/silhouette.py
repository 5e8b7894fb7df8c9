"""Exact silhouette by chunked matrix products in torch (on the GPU when given one).

For each pair of row blocks (i <= j; the distance matrix is symmetric, so half the blocks suffice),
squared distances come from one matrix product (|a|^2 + |b|^2 - 2ab, on mean-centred data for precision),
then per-cluster distance sums from a product with the one-hot cluster matrix, for both blocks:
N^2 D / 2 multiply-adds, O(chunk^2 + N k) memory. Matches scikit-learn's definition: a = mean distance to
the own cluster (excluding the point), b = smallest mean distance to another cluster,
s = (b - a) / max(a, b), and s = 0 for points in singleton clusters."""
from __future__ import annotations

import numpy as np
import torch


def silhouette_samples_torch(X: np.ndarray, labels: np.ndarray, device: str = "cpu",
                             dtype: torch.dtype | None = None, chunk: int = 1024) -> np.ndarray:
    """Per-point silhouette values (N,) for X (N, D) and labels (N,) with at least 2 clusters."""
    uniq, inv = np.unique(labels, return_inverse=True)
    k = uniq.size
    if k < 2:
        raise ValueError(f"silhouette needs at least 2 clusters, got {k}")
    dtype = dtype or (torch.float64 if X.shape[0] <= 5000 else torch.float32)
    x = torch.as_tensor(X, dtype=dtype, device=device)
    x = x - x.mean(dim=0, keepdim=True)
    lab = torch.as_tensor(inv, device=device)
    onehot = torch.nn.functional.one_hot(lab, k).to(dtype)
    counts = onehot.sum(0)
    sq = (x * x).sum(1)
    n = x.shape[0]
    sums = torch.zeros(n, k, dtype=dtype, device=device)  # distance sums of each point to each cluster
    starts = list(range(0, n, chunk))
    for bi, i0 in enumerate(starts):  # blocks (i, j >= i) only: the distance matrix is symmetric
        i1 = min(i0 + chunk, n)
        for j0 in starts[bi:]:
            j1 = min(j0 + chunk, n)
            d = torch.addmm(sq[None, j0:j1], x[i0:i1], x[j0:j1].T, beta=1.0, alpha=-2.0)
            d.add_(sq[i0:i1, None]).clamp_min_(0).sqrt_()
            if i0 == j0:
                d.fill_diagonal_(0.0)  # exact zero self-distance
            sums[i0:i1] += d @ onehot[j0:j1]
            if j0 != i0:
                sums[j0:j1] += d.T @ onehot[i0:i1]
    rows = torch.arange(n, device=device)
    own_n = counts[lab]
    a = sums[rows, lab] / (own_n - 1).clamp_min(1)
    means = sums / counts[None, :]
    means[rows, lab] = float("inf")
    b = means.min(dim=1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(torch.finfo(dtype).tiny)
    out = torch.where(own_n > 1, s, torch.zeros_like(s))
    return out.double().cpu().numpy()


def silhouette_torch(X: np.ndarray, labels: np.ndarray, device: str = "cpu", sample_size: int | None = None,
                     seed: int = 0) -> float:
    """Mean silhouette; with ``sample_size``, on a seeded random sample (as scikit-learn's sample_size)."""
    if sample_size is not None and sample_size < X.shape[0]:
        idx = np.random.RandomState(seed).permutation(X.shape[0])[:sample_size]
        X, labels = X[idx], labels[idx]
    return float(np.mean(silhouette_samples_torch(X, labels, device)))
