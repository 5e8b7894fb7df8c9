import numpy as np
import pytest
from sklearn.datasets import make_blobs

from benchmark.probe import linear_probe
from benchmark.specs import ProbeSpec


def test_probe_on_separable_features_is_accurate_and_reports_mean_std():
    X, y = make_blobs(n_samples=300, centers=3, n_features=10, cluster_std=1.0, random_state=0)
    r = linear_probe(X, y, ProbeSpec(k_per_class=10, draws=5), seed=0)
    assert r.mean > 0.95 and len(r.accuracies) == 5 and r.std == pytest.approx(np.std(r.accuracies))
    assert r.k_per_class == 10 and r.n_test == 300 - 30
    assert all(c in ProbeSpec().c_grid for c in r.chosen_c)


def test_probe_on_noise_features_is_near_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    r = linear_probe(rng.normal(size=(400, 20)), y, ProbeSpec(), seed=0)
    assert r.mean < 0.4


def test_probe_ignores_unlabeled_and_is_seeded():
    X, y = make_blobs(n_samples=200, centers=2, n_features=5, random_state=1)
    y2 = y.copy()
    y2[::2] = -1
    a = linear_probe(X, y2, ProbeSpec(), seed=3)
    b = linear_probe(X, y2, ProbeSpec(), seed=3)
    assert a == b and a.n_test == 100 - 20


def test_probe_with_too_few_labels_says_why():
    X = np.random.default_rng(0).normal(size=(10, 3))
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1, -1, -1])
    r = linear_probe(X, y, ProbeSpec(), seed=0)
    assert r.mean is None and "need at least 3" in r.reason
    r = linear_probe(X, np.zeros(10, int), ProbeSpec(), seed=0)
    assert r.mean is None and "fewer than 2 labeled classes" in r.reason


def test_the_probe_stage_runs_with_one_blas_thread_and_run_json_says_so():
    from threadpoolctl import threadpool_info

    from benchmark.threads import describe, stage_threads

    with stage_threads("probe"):
        assert all(i["num_threads"] == 1 for i in threadpool_info())
    d = describe()
    assert d["stage_blas_threads"]["probe"] == 1 and d["torch_intra_op"] >= 1 and d["blas"]
