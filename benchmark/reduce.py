"""The reduction step between features and clusterers, shared by the grid runner and `export`.

Features are standardized (per-dimension zero mean, unit variance); density clusterers get a PCA copy of
at most ``dims`` dimensions. Internal scores are computed on the standardized features."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA


@dataclass
class Reduction:
    mean: np.ndarray
    scale: np.ndarray
    pca_components: np.ndarray | None = None
    pca_mean: np.ndarray | None = None

    def standardize(self, feats: np.ndarray) -> np.ndarray:
        x = np.asarray(feats, dtype=np.float64) - self.mean
        x /= self.scale
        return x.astype(np.float32)

    def cluster_space(self, standardized: np.ndarray) -> np.ndarray:
        if self.pca_components is None:
            return standardized
        return ((standardized - self.pca_mean) @ self.pca_components.T).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "scale": self.scale}
        if self.pca_components is not None:
            out.update(pca_components=self.pca_components, pca_mean=self.pca_mean)
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "Reduction":
        return cls(a["mean"], a["scale"], a.get("pca_components"), a.get("pca_mean"))


def fit_reduction(feats: np.ndarray, density: bool, dims: int, seed: int) -> tuple[Reduction, np.ndarray, np.ndarray]:
    """Fit on ``feats`` (N, D). Returns (reduction, standardized (N, D) float32, cluster space (N, D') float32)."""
    f = np.asarray(feats, dtype=np.float64)
    mean = f.mean(axis=0)
    std = f.std(axis=0)
    scale = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)  # constant dims stay put
    red = Reduction(mean, scale)
    X = red.standardize(feats)
    if density and dims and X.shape[1] > dims:
        pca = PCA(n_components=min(dims, X.shape[0]), random_state=seed).fit(X)
        red.pca_components = pca.components_.astype(np.float32)
        red.pca_mean = pca.mean_.astype(np.float32)
    return red, X, red.cluster_space(X)
