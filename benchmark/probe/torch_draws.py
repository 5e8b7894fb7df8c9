"""The probe protocol of ``benchmark.probe.protocol`` with the batched torch solver of ``benchmark.probe.logreg``: every
draw's C-selection fits (draws x C grid problems) in one batch, then every draw's refit in a second one,
then every draw's test predictions in one matrix product over the labeled rows. Same splits, same
standardization (fitted on each fit set, as scikit-learn's StandardScaler), same objective and the same
rule for choosing C (first C of the grid with the best validation accuracy) as the scikit-learn reference.

Measured on the 2-core VM, 1,797 digits as 3,072-D raw pixels, 5 draws x 4 C values, one thread: see
``python -m benchmark.perf.probe_bench`` (the ratio to the scikit-learn path and the per-draw differences)."""
from __future__ import annotations

import numpy as np
import torch

from benchmark.probe.logreg import fit_multinomial, standardize_stats

TEST_CHUNK = 8192  # labeled rows scored per matrix product: bounded memory at 70k x 3k


def _stack(X: np.ndarray, idx: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Rows of the (possibly memory-mapped, read-only) features per draw: (B, n, D) float64 on the device."""
    return torch.from_numpy(np.stack([X[i] for i in idx])).to(device=device, dtype=torch.float64)


def _standardized(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mean, scale = standardize_stats(X)
    return (X - mean[:, None, :]) / scale[:, None, :], mean, scale


def _raw(W: torch.Tensor, c: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor):
    """Fold a standardization into weights W (B, G, D, K) and intercepts c (B, G, K), so raw rows can be
    scored."""
    W = W / scale[:, None, :, None]
    return W, c - torch.einsum("bd,bgdk->bgk", mean, W)


def torch_draws(features: np.ndarray, labels: np.ndarray, labeled: np.ndarray, classes: np.ndarray,
                splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]], c_grid: tuple[float, ...],
                device: str = "cpu") -> tuple[list[float], list[float]]:
    """Per-draw test accuracies and chosen C of the probe protocol in two batches of fits: the C grid on
    each draw's fit half, then each draw's whole subset with its chosen C. (One batch with the whole
    subsets under every C, padded to one size, measured 2-3x slower on 2 cores: 4x the arithmetic.)"""
    dev = torch.device(device)
    X = features  # numpy: only the rows in use are copied (a memory map stays on disk)
    y_all = torch.from_numpy(np.searchsorted(classes, np.where(labels >= 0, labels, classes[0])))
    K, B = classes.size, len(splits)
    grid = torch.tensor(c_grid, dtype=torch.float64, device=dev)
    train, fit, val = ([s[i] for s in splits] for i in range(3))
    Xf, mf, sf = _standardized(_stack(X, fit, dev))
    Xt, mt, st = _standardized(_stack(X, train, dev))
    lam_f = (1.0 / grid)[None].expand(B, -1) / Xf.shape[1]  # scikit-learn's C, per row of the mean loss
    lam_t = (1.0 / grid)[None].expand(B, -1) / Xt.shape[1]

    def labels_of(idx: list[np.ndarray]) -> torch.Tensor:
        return torch.stack([y_all[i] for i in idx]).to(dev)

    [(Wf, cf)] = fit_multinomial([(Xf, labels_of(fit), lam_f)], K)
    Wf, cf = _raw(Wf, cf, mf, sf)
    # choose C: the first C of the grid with the most correct validation images
    G = grid.numel()
    logits = _stack(X, val, dev) @ Wf.permute(0, 2, 1, 3).reshape(B, -1, G * K)  # (B, n_val, G * K)
    logits = logits.reshape(B, -1, G, K).transpose(1, 2) + cf[:, :, None, :]  # (B, G, n_val, K)
    correct = (logits.argmax(-1) == labels_of(val)[:, None, :]).sum(-1)  # (B, G)
    best = correct.argmax(1)
    [(Wt, ct)] = fit_multinomial([(Xt, labels_of(train), lam_t.gather(1, best[:, None]))], K)
    Wt, ct = _raw(Wt, ct, mt, st)
    Wt, ct = Wt[:, 0], ct[:, 0]  # (B, D, K), (B, K)
    # score every draw on the labeled rows outside its subset
    in_train = torch.zeros(B, labels.size, dtype=torch.bool)
    for b, t in enumerate(train):
        in_train[b, torch.as_tensor(t)] = True
    hits = torch.zeros(B, dtype=torch.long)
    lab = torch.as_tensor(labeled)
    # float32 scoring, as scikit-learn's estimator on float32 features: half the time of float64 here
    Wflat = Wt.permute(1, 0, 2).reshape(Wt.shape[1], -1).float()
    ct = ct.float()
    for start in range(0, lab.numel(), TEST_CHUNK):
        rows_ = lab[start:start + TEST_CHUNK]
        Xc = torch.from_numpy(np.ascontiguousarray(X[rows_.numpy()], dtype=np.float32)).to(dev)
        pred = ((Xc @ Wflat).reshape(-1, B, K) + ct[None]).argmax(-1).T.cpu()  # (B, n)
        hits += ((pred == y_all[rows_][None]) & ~in_train[:, rows_]).sum(1)
    n_test = labeled.size - np.array([t.size for t in train])
    return [float(a) for a in hits.numpy() / n_test], [float(c) for c in grid[best].cpu().tolist()]
