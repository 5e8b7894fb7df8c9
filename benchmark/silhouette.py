"""Exact silhouette by chunked matrix products in torch (on the GPU when given one).

For a chunk of rows, squared distances to all points come from one matrix product
(|a|^2 + |b|^2 - 2ab, on mean-centred data for precision), then per-cluster distance sums from a second
product with the one-hot cluster matrix: O(N^2 D) work, O(chunk x N) memory. Matches scikit-learn's
definition: a = mean distance to the own cluster (excluding the point), b = smallest mean distance to another
cluster, s = (b - a) / max(a, b), and s = 0 for points in singleton clusters."""
from __future__ import annotations

import numpy as np
import torch


def silhouette_samples_torch(X: np.ndarray, labels: np.ndarray, device: str = "cpu",
                             dtype: torch.dtype | None = None, chunk: int = 2048) -> np.ndarray:
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
    out = torch.empty(x.shape[0], dtype=dtype, device=device)
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        d2 = sq[start:start + chunk, None] + sq[None, :] - 2.0 * (xc @ x.T)
        d = d2.clamp_min_(0).sqrt_()
        rows = torch.arange(xc.shape[0], device=device)
        d[rows, rows + start] = 0.0  # exact zero self-distance
        sums = d @ onehot  # (c, k) distance sums per cluster
        own = lab[start:start + chunk]
        own_n = counts[own]
        a = sums[rows, own] / (own_n - 1).clamp_min(1)
        means = sums / counts[None, :]
        means[rows, own] = float("inf")
        b = means.min(dim=1).values
        s = (b - a) / torch.maximum(a, b).clamp_min(torch.finfo(dtype).tiny)
        out[start:start + chunk] = torch.where(own_n > 1, s, torch.zeros_like(s))
    return out.double().cpu().numpy()


def silhouette_torch(X: np.ndarray, labels: np.ndarray, device: str = "cpu", sample_size: int | None = None,
                     seed: int = 0) -> float:
    """Mean silhouette; with ``sample_size``, on a seeded random sample (as scikit-learn's sample_size)."""
    if sample_size is not None and sample_size < X.shape[0]:
        idx = np.random.RandomState(seed).permutation(X.shape[0])[:sample_size]
        X, labels = X[idx], labels[idx]
    return float(np.mean(silhouette_samples_torch(X, labels, device)))
