"""HDBSCAN from the ``hdbscan`` package; saved as plain arrays and predicted without the package's model.

``predict`` re-implements ``hdbscan.approximate_predict`` on exported arrays (the fit points, their core
distances, each point's parent and lambda in the condensed tree, the cluster tree, the selected-cluster map
and each cluster's max lambda), so an export holds no pickle and loading it runs no code. Measured with
``tests/registry/test_battery.py`` / ``test_clusterer_members.py``: on the training points the labels equal
the fit's labels (blobs: 100%); on held-back points they equal ``hdbscan.approximate_predict``'s (100% on
blobs and on digits PCA-10; the rule is the same, only floating-point ties could differ)."""
from __future__ import annotations

import numpy as np

from registry.clusterers import CLUSTERERS, Clusterer

FIT_MAX = 50_000  # HDBSCAN fits on at most this many points; the rest get approximate_predict


@CLUSTERERS.register("hdbscan")
class HDBSCANClusterer(Clusterer):
    """HDBSCAN from the ``hdbscan`` package; min_cluster_size = max(5, n_fit / (4k)). Above FIT_MAX points
    it fits on a seeded sample of FIT_MAX and assigns the others with hdbscan.approximate_predict (the fit
    grows faster than linearly: 100,000 x 50 dims took 264 s on 2 cores)."""

    name = "hdbscan"
    density = True
    score_name = "confidence"

    def fit(self, X: np.ndarray) -> np.ndarray:
        import hdbscan

        x = X.astype(np.float64)
        n = x.shape[0]
        fit_idx = np.arange(n)
        if n > FIT_MAX:
            fit_idx = np.sort(np.random.default_rng(self.seed).permutation(n)[:FIT_MAX])
        mcs = max(5, fit_idx.size // (4 * max(self.k, 1)))
        self.params = {"min_cluster_size": mcs, "min_samples": self.spec.min_samples, "fit_on": int(fit_idx.size)}
        model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=self.spec.min_samples, prediction_data=True)
        labels = np.empty(n, np.int64)
        labels[fit_idx] = model.fit_predict(x[fit_idx])
        if fit_idx.size < n:
            rest = np.setdiff1d(np.arange(n), fit_idx)
            labels[rest] = hdbscan.approximate_predict(model, x[rest])[0]
        self._arrays = _export(model, x[fit_idx], self.spec.min_samples)
        return labels

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """hdbscan.approximate_predict's rule on the exported arrays: (labels, membership probability)."""
        from sklearn.neighbors import NearestNeighbors

        a = self._arrays
        x = np.asarray(X, np.float64)
        labels = np.full(len(x), -1, np.int64)
        prob = np.zeros(len(x), np.float64)
        if a["cluster_child"].size == 0 or len(x) == 0:
            return labels, prob
        m = int(a["min_samples"])
        k = min(2 * m, len(a["points"]))
        dist, idx = NearestNeighbors(n_neighbors=k).fit(a["points"]).kneighbors(x)
        lookup = {int(c): (int(p), float(lam)) for c, p, lam in zip(a["cluster_child"], a["cluster_parent"],
                                                                     a["cluster_lambda"])}
        cmap = dict(zip(a["map_cluster"].tolist(), a["map_label"].tolist()))
        max_lambda = dict(zip(a["max_lambda_cluster"].tolist(), a["max_lambda"].tolist()))
        root = int(a["cluster_parent"].min())
        core_new = dist[:, min(m, k - 1)]
        for i in range(len(x)):
            mr = np.maximum(np.maximum(a["core"][idx[i]], core_new[i]), dist[i])
            j = int(np.argmin(mr))
            lam = 1.0 / mr[j] if mr[j] > 0 else np.finfo(np.double).max
            nb = int(idx[i, j])
            cluster = int(a["point_parent"][nb])
            if a["point_lambda"][nb] > lam:  # walk up to the cluster alive at the new point's lambda
                while cluster > root:
                    entry = lookup.get(cluster)
                    if entry is None or not entry[1] >= lam:
                        break
                    cluster = entry[0]
            label = cmap.get(cluster, -1)
            labels[i] = label
            if label >= 0:
                top = max_lambda[cluster]
                prob[i] = min(top, lam) / top if top > 0 else 1.0
        return labels, prob

    def state(self) -> dict[str, np.ndarray]:
        return dict(self._arrays)

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = dict(arrays)


def _export(model: object, points: np.ndarray, min_samples: int) -> dict[str, np.ndarray]:
    """What approximate prediction needs, as arrays (no hdbscan objects)."""
    pd_ = model.prediction_data_  # type: ignore[attr-defined]
    raw = model.condensed_tree_._raw_tree  # type: ignore[attr-defined]
    rows = raw[raw["child_size"] == 1]
    parent = np.full(len(points), -1, np.int64)
    lam = np.zeros(len(points), np.float64)
    parent[rows["child"]] = rows["parent"]
    lam[rows["child"]] = rows["lambda_val"]
    ct = pd_.cluster_tree
    keys = np.array(sorted(pd_.cluster_map), np.int64)
    mkeys = np.array(sorted(pd_.max_lambdas), np.int64)
    return {"points": points.astype(np.float64), "core": np.asarray(pd_.core_distances, np.float64),
            "point_parent": parent, "point_lambda": lam, "cluster_child": ct["child"].astype(np.int64),
            "cluster_parent": ct["parent"].astype(np.int64), "cluster_lambda": ct["lambda_val"].astype(np.float64),
            "map_cluster": keys, "map_label": np.array([pd_.cluster_map[c] for c in keys], np.int64),
            "max_lambda_cluster": mkeys, "max_lambda": np.array([pd_.max_lambdas[c] for c in mkeys], np.float64),
            "min_samples": np.array(min_samples, np.int64)}
