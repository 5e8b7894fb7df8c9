"""The step between features and clusterers (``--reduce``, CONVENTIONS 8), shared by the grid and `export`.

Methods: ``none`` (raw features), ``standardize`` (per-dimension zero mean, unit variance), ``l2`` (raw rows
scaled to unit length), ``pca[:D]`` (standardized, then PCA to D, default 50), ``umap[:D]`` (standardized,
PCA to 50 when wider, then UMAP to D, default 10, with n_neighbors 15 and min_dist 0: the setting umap's
documentation recommends for clustering). Internal scores are always also computed in one common space,
the standardized full-dimensional features, so clusterers stay comparable.

A UMAP reduction is exported as arrays (its training points in the pre-UMAP space and their embedding):
new points are placed at the distance-weighted mean of the embeddings of their nearest training points
(the initialisation ``umap``'s own ``transform`` starts from), so nothing needs pickling."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.interfaces import BadInput
from benchmark.scoring import streamed

UMAP_NEIGHBORS = 15
UMAP_MIN_DIST = 0.0
UMAP_PRE_PCA = 50
UMAP_EPOCHS = 200  # umap's default for small data is 500: 5.5 s vs 3.6 s on digits, same HDBSCAN NMI (0.872 vs 0.869)


@dataclass
class Reduction:
    """A fitted reduction: standardization (always: the common scoring space) and the cluster space."""

    method: str
    mean: np.ndarray
    scale: np.ndarray
    pca_components: np.ndarray | None = None
    pca_mean: np.ndarray | None = None
    umap_train: np.ndarray | None = None  # (N, p) training points in the space UMAP was fitted on
    umap_embedding: np.ndarray | None = None  # (N, D) their embedding

    def standardize(self, feats: np.ndarray) -> np.ndarray:
        x = np.asarray(feats, dtype=np.float64) - self.mean
        x /= self.scale
        return x.astype(np.float32)

    def _pca(self, x: np.ndarray) -> np.ndarray:
        if self.pca_components is None:
            return x
        return ((x - self.pca_mean) @ self.pca_components.T).astype(np.float32)

    def transform(self, feats: np.ndarray) -> np.ndarray:
        """Features (N, D) -> the space the clusterer works in."""
        if self.method == "none":
            return np.asarray(feats, np.float32)
        if self.method == "l2":
            f = np.asarray(feats, np.float64)
            return (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        x = self._pca(self.standardize(feats))
        if self.method == "umap":
            return self._umap_place(x)
        return x

    def _umap_place(self, x: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import NearestNeighbors

        assert self.umap_train is not None and self.umap_embedding is not None
        k = min(UMAP_NEIGHBORS, len(self.umap_train))
        dist, idx = NearestNeighbors(n_neighbors=k).fit(self.umap_train).kneighbors(x)
        w = 1.0 / np.maximum(dist, 1e-9)
        w /= w.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkd->nd", w, self.umap_embedding[idx]).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"method": np.array(self.method), "mean": self.mean, "scale": self.scale}
        for name in ("pca_components", "pca_mean", "umap_train", "umap_embedding"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "Reduction":
        method = str(a["method"]) if "method" in a else ("pca" if "pca_components" in a else "standardize")
        return cls(method, a["mean"], a["scale"], a.get("pca_components"), a.get("pca_mean"), a.get("umap_train"),
                   a.get("umap_embedding"))


def _fit_pca(x: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(dims, x.shape[0], x.shape[1]), random_state=seed).fit(x)
    return pca.components_.astype(np.float32), pca.mean_.astype(np.float32)


def standard_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The scale of a standardization: the standard deviation, 1 for constant dimensions (they stay put)."""
    return np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)


def standardized(feats: np.ndarray) -> streamed.Rows:
    """The common scoring space of ``feats``: its rows standardized on the fly (never stored whole)."""
    mean, std = streamed.moments(feats)
    return streamed.Rows(feats, mean, standard_scale(mean, std))


def fit(feats: np.ndarray, method: str, dims: int, seed: int) -> tuple[Reduction, dict[str, object]]:
    """Fit ``method`` on ``feats`` (N, D), a memory map or an array: (the reduction, what it used: method,
    dims and its parameters). Small arrays whole, larger ones in row blocks (``benchmark.scoring.streamed``)."""
    n, d = feats.shape
    whole = streamed.small(n, d)
    mean, std = streamed.moments(feats)
    red = Reduction(method, mean, standard_scale(mean, std))
    rows = streamed.Rows(feats, red.mean, red.scale)
    X = red.standardize(feats) if whole and method in ("pca", "umap") else None

    def pca(width: int) -> tuple[np.ndarray, np.ndarray]:
        return _fit_pca(X, width, seed) if X is not None else streamed.fit_pca(rows, width, seed)

    params: dict[str, object] = {"reduce": method}
    if not whole:
        params["reduce_streamed"] = True
    if method == "pca" and d > dims:
        red.pca_components, red.pca_mean = pca(dims)
        params["reduce_dims"] = int(red.pca_components.shape[0])
    elif method == "umap":
        if d > UMAP_PRE_PCA:
            red.pca_components, red.pca_mean = pca(UMAP_PRE_PCA)
        pre = red._pca(X) if X is not None else streamed.transform(
            rows, red._pca, np.empty((n, _width(red, d)), np.float32))
        red.umap_train = pre
        red.umap_embedding = _umap(pre, dims, seed)
        params.update(reduce_dims=dims, umap_n_neighbors=min(UMAP_NEIGHBORS, len(pre) - 1),
                      umap_min_dist=UMAP_MIN_DIST, umap_epochs=UMAP_EPOCHS, umap_pre_pca=int(pre.shape[1]))
    return red, params


def _width(red: Reduction, d: int) -> int:
    return d if red.pca_components is None else int(red.pca_components.shape[0])


def space_dim(red: Reduction, d: int) -> int:
    """The dimension of the cluster space of ``red`` on D-dimensional features."""
    if red.method == "umap":
        assert red.umap_embedding is not None
        return int(red.umap_embedding.shape[1])
    return d if red.method in ("none", "l2", "standardize") else _width(red, d)


def cluster_space(red: Reduction, feats: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The features in the cluster space of ``red`` (N, d) float32, written into ``out`` when given (a
    writable memory map: nothing of size N x D is held in memory) or a new array."""
    n, d = feats.shape
    if red.method == "umap":
        assert red.umap_embedding is not None
        result = red.umap_embedding
    elif streamed.small(n, d):
        result = red.transform(feats)
    else:
        return streamed.transform(streamed.Rows(feats), red.transform,
                                  out if out is not None else np.empty((n, space_dim(red, d)), np.float32))
    if out is None:
        return result
    out[:] = result
    return out


def fit_reduction(feats: np.ndarray, method: str, dims: int, seed: int
                  ) -> tuple[Reduction, streamed.Rows, np.ndarray, dict[str, object]]:
    """Fit on ``feats`` (N, D). Returns (reduction, the standardized rows (the common scoring space),
    cluster space float32, what the reduction used: method, dims and its parameters)."""
    red, params = fit(feats, method, dims, seed)
    return red, streamed.Rows(feats, red.mean, red.scale), cluster_space(red, feats), params


def _umap(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    import warnings

    n = len(x)
    if n <= dims + 1:
        raise BadInput(f"bad --reduce umap:{dims}: {n} images are too few for a {dims}-dimensional UMAP")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": seeded UMAP is single-threaded
        import umap  # its import warns that TensorFlow (ParametricUMAP) is absent

        model = umap.UMAP(n_components=dims, n_neighbors=min(UMAP_NEIGHBORS, n - 1), min_dist=UMAP_MIN_DIST,
                          n_epochs=UMAP_EPOCHS, random_state=seed, init="spectral" if n > dims + 2 else "random")
        return np.asarray(model.fit_transform(x), np.float32)
