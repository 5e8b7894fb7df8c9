"""scikit-learn KMeans."""
from __future__ import annotations

import numpy as np

from registry.clusterers import CLUSTERERS, CentroidClusterer


@CLUSTERERS.register("kmeans")
class SkKMeans(CentroidClusterer):
    """scikit-learn KMeans, k-means++ init, best of 4 restarts."""

    name = "kmeans"
    seeded = True

    def fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans

        self.params = {"k": self.k, "n_init": 4}
        model = KMeans(n_clusters=self.k, n_init=4, random_state=self.seed)
        labels = model.fit_predict(X)
        return self._finish_fit(X, model.cluster_centers_, labels)
