"""Member-specific checks: HDBSCAN's array export predicts as hdbscan.approximate_predict does;
agglomerative (Ward) fits a sample and assigns the rest; both survive save -> load."""
import numpy as np
import pytest
from sklearn.datasets import load_digits, make_blobs
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score

from benchmark.interfaces import ClusterSpec
from registry.clusterers import STATE_FILE, Clusterer, build_clusterer


def _digits(dims: int) -> np.ndarray:
    X = load_digits().data
    return PCA(dims, random_state=0).fit_transform((X - X.mean(0)) / (X.std(0) + 1e-9)).astype(np.float32)


def _blobs(n: int = 900, centers: int = 4, dims: int = 5, std: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=n, centers=centers, n_features=dims, cluster_std=std, random_state=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize("data", ["blobs", "digits10", "digits50"])
def test_hdbscan_array_predict_agrees_with_approximate_predict(data, tmp_path):
    import hdbscan

    X, k = (_blobs()[0], 4) if data == "blobs" else (_digits(int(data[6:])), 10)
    held = np.random.default_rng(0).permutation(len(X))[: len(X) // 5]
    train = np.setdiff1d(np.arange(len(X)), held)
    c = build_clusterer("hdbscan", k, ClusterSpec(), seed=0)
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
    assert prob.min() >= 0 and prob.max() <= 1


def test_hdbscan_save_load_reproduces_predictions_from_plain_arrays(tmp_path):
    X, _ = _blobs(n=600)
    c = build_clusterer("hdbscan", 4, ClusterSpec(), seed=0)
    c.fit(X[:500])
    before = c.predict(X[500:])
    c.save(tmp_path)
    with np.load(tmp_path / STATE_FILE, allow_pickle=False) as z:
        assert all(z[f].dtype != object for f in z.files)
        assert z["points"].dtype == np.float32 and z["points"].shape == (500, 5)
    loaded = Clusterer.load(tmp_path)
    assert type(loaded).__name__ == "HDBSCANClusterer" and loaded.params == c.params
    after = loaded.predict(X[500:])
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_agglomerative_save_load_reproduces_predictions(tmp_path):
    X, y = _blobs(n=400, centers=3, dims=4, std=0.6)
    c = build_clusterer("agglomerative", 3, ClusterSpec(), seed=0)
    labels = c.fit(X[:300])
    assert c.params == {"k": 3, "linkage": "ward", "fit_on": 300}
    assert normalized_mutual_info_score(y[:300], labels) > 0.9
    before = c.predict(X[300:])
    c.save(tmp_path)
    loaded = Clusterer.load(tmp_path)
    after = loaded.predict(X[300:])
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert normalized_mutual_info_score(y[300:], after[0]) > 0.9


def test_agglomerative_fits_a_sample_above_its_cap_and_assigns_the_rest(monkeypatch):
    import registry.clusterers.agglomerative as agg

    monkeypatch.setattr(agg, "FIT_MAX", 150)
    monkeypatch.setattr(agg, "ASSIGN_BYTES", 1000)  # several assignment chunks
    X, y = make_blobs(n_samples=500, centers=3, n_features=4, cluster_std=0.6, random_state=0)
    c = build_clusterer("agglomerative", 3, ClusterSpec(), seed=0)
    labels = c.fit(X.astype(np.float32))
    assert c.params["fit_on"] == 150 and labels.shape == (500,) and labels.min() >= 0
    assert normalized_mutual_info_score(y, labels) > 0.9
    assert (c.predict(X.astype(np.float32))[0] == labels).mean() >= 0.99  # the rest went to the nearest centroid
