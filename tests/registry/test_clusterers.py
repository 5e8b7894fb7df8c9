import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from benchmark.interfaces import ClusterSpec
from registry.clusterers import CLUSTERERS, build_clusterer
from registry.clusterers.dbscan import knee_eps


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_every_clusterer_recovers_separated_blobs(name):
    X, y = make_blobs(n_samples=300, centers=4, n_features=8, cluster_std=0.6, random_state=0)
    labels = build_clusterer(name, 4, ClusterSpec(), seed=0).fit_predict(X.astype(np.float32))
    assert labels.shape == (300,) and labels.dtype == np.int64
    assert normalized_mutual_info_score(y, labels) > 0.9


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_clusterers_are_deterministic_for_a_seed(name):
    X, _ = make_blobs(n_samples=200, centers=3, n_features=5, random_state=1)
    a = build_clusterer(name, 3, ClusterSpec(), seed=7).fit_predict(X)
    b = build_clusterer(name, 3, ClusterSpec(), seed=7).fit_predict(X)
    assert np.array_equal(a, b)


def test_knee_eps_lies_between_within_and_between_cluster_distances():
    X, _ = make_blobs(n_samples=400, centers=[[0, 0], [20, 20]], cluster_std=0.5, random_state=0)
    eps = knee_eps(X, 5)
    assert 0.05 < eps < 5.0


def test_given_eps_is_used_and_recorded():
    X, _ = make_blobs(n_samples=100, centers=2, random_state=0)
    c = build_clusterer("dbscan", 2, ClusterSpec(eps=1e6), seed=0)
    labels = c.fit_predict(X)
    assert set(labels) == {0} and c.params["eps"] == 1e6 and c.params["eps_from"] == "given"


def test_hdbscan_above_fit_max_fits_a_sample_and_predicts_the_rest(monkeypatch):
    import registry.clusterers.hdbscan as rc

    monkeypatch.setattr(rc, "FIT_MAX", 150)
    X, y = make_blobs(n_samples=400, centers=3, n_features=4, cluster_std=0.5, random_state=0)
    c = build_clusterer("hdbscan", 3, ClusterSpec(), seed=0)
    labels = c.fit_predict(X)
    assert c.params["fit_on"] == 150 and labels.shape == (400,)
    assert normalized_mutual_info_score(y, labels) > 0.9
