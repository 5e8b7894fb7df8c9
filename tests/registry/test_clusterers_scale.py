"""Density clusterers above their fit size: fit on a seeded sample, assign the rest (bounded memory)."""
import numpy as np
from sklearn.datasets import make_blobs

from benchmark.interfaces import ClusterSpec
from registry.clusterers import build_clusterer


def test_dbscan_above_its_fit_size_fits_a_sample_and_assigns_the_rest(monkeypatch):
    from registry.clusterers import dbscan

    monkeypatch.setattr(dbscan, "FIT_MAX", 300)
    monkeypatch.setattr(dbscan, "PREDICT_CHUNK", 128)
    X, y = make_blobs(n_samples=1200, centers=3, cluster_std=0.5, random_state=0)
    c = build_clusterer("dbscan", 3, ClusterSpec(min_samples=5), seed=0)
    labels = c.fit(X.astype(np.float32))
    assert c.params["fit_on"] == 300 and labels.shape == (1200,)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, labels) > 0.9 and (labels >= 0).mean() > 0.9
    again = build_clusterer("dbscan", 3, ClusterSpec(min_samples=5), seed=0).fit(X.astype(np.float32))
    assert np.array_equal(labels, again)  # the sample is seeded
