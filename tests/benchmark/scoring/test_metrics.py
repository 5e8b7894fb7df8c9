"""Every metric against scikit-learn's reference implementation."""
import itertools

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_blobs

from benchmark.scoring.metrics import cluster_accuracy, external_scores, internal_scores


@pytest.fixture
def blobs():
    return make_blobs(n_samples=240, centers=4, n_features=6, random_state=3)


def test_internal_scores_equal_sklearn(blobs):
    X, y = blobs
    s = internal_scores(X, y)
    assert s.silhouette == pytest.approx(skm.silhouette_score(X, y), abs=1e-9)  # float64 path at small N
    assert s.davies_bouldin == pytest.approx(skm.davies_bouldin_score(X, y), abs=1e-9)
    assert s.calinski_harabasz == pytest.approx(skm.calinski_harabasz_score(X, y), rel=1e-9)
    assert s.n_clusters == 4 and s.noise_fraction == 0.0 and s.reason == "" and s.silhouette_sample is None


def test_noise_points_are_left_out_of_internal_scores(blobs):
    X, y = blobs
    noisy = y.copy()
    noisy[:40] = -1
    s = internal_scores(X, noisy)
    keep = noisy >= 0
    assert s.noise_fraction == pytest.approx(40 / 240)
    assert s.silhouette == pytest.approx(skm.silhouette_score(X[keep], y[keep]))
    assert s.davies_bouldin == pytest.approx(skm.davies_bouldin_score(X[keep], y[keep]))


def test_single_cluster_gives_undefined_scores_with_a_reason(blobs):
    X, _ = blobs
    s = internal_scores(X, np.zeros(len(X), int))
    assert s.silhouette is None and s.davies_bouldin is None and "1 cluster found" in s.reason


def test_silhouette_is_sampled_above_max_n(blobs):
    X, y = blobs
    s = internal_scores(X, y, max_n=100, seed=0)
    assert s.silhouette_sample == 100
    assert s.silhouette == pytest.approx(skm.silhouette_score(X, y, sample_size=100, random_state=0))


def test_external_scores_equal_sklearn_on_labeled_points():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.8, t, rng.integers(0, 4, 200))
    t_unl = t.copy()
    t_unl[:50] = -1
    e = external_scores(t_unl, p)
    assert e.n_labeled == 150
    assert e.nmi == pytest.approx(skm.normalized_mutual_info_score(t[50:], p[50:]))
    assert e.ari == pytest.approx(skm.adjusted_rand_score(t[50:], p[50:]))
    assert external_scores(np.full(10, -1), np.zeros(10, int)) is None


def _brute_force_acc(t, p):
    clusters, classes = sorted(set(p) - {-1}), sorted(set(t))
    best = 0
    for perm in itertools.permutations(classes, min(len(clusters), len(classes))):
        mapping = dict(zip(clusters, perm, strict=False))
        best = max(best, sum(mapping.get(pi) == ti for ti, pi in zip(t, p, strict=False)))
    return best / len(t)


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_accuracy_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, 60)
    p = rng.integers(-1, 4, 60)  # includes noise
    assert cluster_accuracy(t, p) == pytest.approx(_brute_force_acc(t, p))


def test_hungarian_accuracy_is_permutation_invariant():
    t = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(t, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert cluster_accuracy(t, np.array([-1, -1, -1, -1, -1, -1])) == 0.0


def test_torch_silhouette_samples_equal_sklearn_including_singletons():
    from benchmark.scoring.silhouette import silhouette_samples_torch

    X, y = make_blobs(n_samples=500, centers=5, n_features=16, random_state=0)
    y[0] = 7  # a singleton cluster: silhouette 0 by definition
    np.testing.assert_allclose(silhouette_samples_torch(X, y, chunk=64), skm.silhouette_samples(X, y), atol=1e-10)
    f32 = silhouette_samples_torch(X.astype(np.float32), y, dtype=__import__("torch").float32, chunk=100)
    assert abs(f32.mean() - skm.silhouette_score(X, y)) < 1e-4
