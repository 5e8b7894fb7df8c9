"""Member-specific checks: HDBSCAN's array export predicts as hdbscan.approximate_predict does;
agglomerative (Ward) fits a sample and assigns the rest."""
import numpy as np
import pytest
from sklearn.datasets import load_digits, make_blobs
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score

from benchmark.interfaces import ClusterSpec
from registry.clusterers import Clusterer, build_clusterer


def _digits10():
    X = load_digits().data
    return PCA(10, random_state=0).fit_transform((X - X.mean(0)) / (X.std(0) + 1e-9)).astype(np.float32)


@pytest.mark.parametrize("data", ["blobs", "digits"])
def test_hdbscan_array_predict_agrees_with_approximate_predict(data, tmp_path):
    import hdbscan

    if data == "blobs":
        X, _ = make_blobs(n_samples=900, centers=4, n_features=5, cluster_std=1.2, random_state=0)
        X = X.astype(np.float32)
    else:
        X = _digits10()
    rng = np.random.default_rng(0)
    held = rng.permutation(len(X))[: len(X) // 5]
    train = np.setdiff1d(np.arange(len(X)), held)
    c = build_clusterer("hdbscan", 10 if data == "digits" else 4, ClusterSpec(), seed=0)
    labels = c.fit(X[train])
    assert len(set(labels) - {-1}) >= 2
    own, _ = c.predict(X[train])
    assert (own == labels).mean() >= 0.99
    model = hdbscan.HDBSCAN(min_cluster_size=c.params["min_cluster_size"], min_samples=c.params["min_samples"],
                            prediction_data=True).fit(X[train].astype(np.float64))
    ref, ref_prob = hdbscan.approximate_predict(model, X[held].astype(np.float64))
    c.save(tmp_path)
    got, prob = Clusterer.load(tmp_path).predict(X[held])
    assert (got == ref).mean() >= 0.95
    assert np.allclose(prob[got == ref], ref_prob[got == ref], atol=1e-6)


def test_agglomerative_fits_a_sample_above_its_cap_and_assigns_the_rest(monkeypatch):
    import registry.clusterers.agglomerative as agg

    monkeypatch.setattr(agg, "FIT_MAX", 150)
    X, y = make_blobs(n_samples=500, centers=3, n_features=4, cluster_std=0.6, random_state=0)
    c = build_clusterer("agglomerative", 3, ClusterSpec(), seed=0)
    labels = c.fit(X.astype(np.float32))
    assert c.params["fit_on"] == 150 and labels.shape == (500,) and labels.min() >= 0
    assert normalized_mutual_info_score(y, labels) > 0.9
