"""The weighted kNN accuracy (benchmark.probe.knn): against scikit-learn's NearestNeighbors with the exp(s/T)
vote written out here, a hand-computed case, k capped at the references, ties, chunking, the probe's draws,
the full-label protocol, and its planning."""
from dataclasses import replace

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

from benchmark.config.specs import GridSpec, ProbeSpec
from benchmark.interfaces import BadInput
from benchmark.probe import knn
from benchmark.probe.knn import knn_draws, knn_full, knn_predict, knn_probe, shared_classes
from benchmark.probe.protocol import labeled_draws, linear_probe


def direct(R: np.ndarray, yR: np.ndarray, Q: np.ndarray, k: int, t: float, n_classes: int) -> np.ndarray:
    """The rule computed another way: scikit-learn's cosine neighbours, weights exp(s / T), summed per class."""
    k = min(k, len(R))
    dist, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(R).kneighbors(Q)
    votes = np.zeros((len(Q), n_classes))
    for i in range(len(Q)):
        np.add.at(votes[i], yR[idx[i]], np.exp((1.0 - dist[i]) / t))
    return votes.argmax(1)


@pytest.mark.parametrize("k, t", [(20, 0.07), (5, 0.5), (1, 0.07)])
def test_knn_equals_scikit_learn_neighbours_with_the_weighted_vote(k, t):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    y = rng.integers(0, 4, 400)
    refs, queries = np.arange(60), np.arange(60, 400)
    ours = knn_predict(X, queries, X, refs[None], y[refs][None], 4, k, t)[0]
    ref = direct(X[refs].astype(np.float64), y[refs], X[queries].astype(np.float64), k, t, 4)
    assert ours.shape == (340,) and (ours == ref).all()


def test_a_hand_computed_case():
    """Query (1, 0.2); references (1, 0) of class 0, (0, 1) and (1, 1) of class 1. Cosines 0.9806, 0.1961,
    0.8321. k=3, T=1: class 0 gets e^0.9806 = 2.666, class 1 e^0.1961 + e^0.8321 = 1.217 + 2.298 = 3.515 -> 1.
    k=2 drops (0, 1): 2.666 vs 2.298 -> 0. k=3, T=0.07: e^14.01 vs e^11.89 + e^2.80 -> 0."""
    R = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    yR = np.array([0, 1, 1])
    Q = np.array([[1, 0.2]], np.float32)
    s = np.array([1, 0.2, 1.2]) / np.linalg.norm(Q) / np.linalg.norm(R, axis=1)
    assert s == pytest.approx([0.9806, 0.1961, 0.8321], abs=1e-4)
    assert np.exp(s[0]) < np.exp(s[1]) + np.exp(s[2]) and np.exp(s[0]) > np.exp(s[2])

    def pred(k: int, t: float) -> int:
        return int(knn_predict(Q, np.array([0]), R, np.arange(3)[None], yR[None], 2, k, t)[0, 0])

    assert (pred(3, 1.0), pred(2, 1.0), pred(3, 0.07)) == (1, 0, 0)


def test_k_is_capped_at_the_references_and_a_tie_goes_to_the_smaller_class_index():
    rng = np.random.default_rng(1)
    R, Q = rng.normal(size=(4, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    yR = np.array([0, 1, 2, 1])
    big = knn_predict(Q, np.arange(30), R, np.arange(4)[None], yR[None], 3, 1000, 0.07)
    assert (big == knn_predict(Q, np.arange(30), R, np.arange(4)[None], yR[None], 3, 4, 0.07)).all()
    # (1, 1) is equally similar to (1, 0) of class 1 and (0, 1) of class 0: equal votes -> class 0
    tie = knn_predict(np.array([[1, 1]], np.float32), np.array([0]), np.array([[1, 0], [0, 1]], np.float32),
                      np.array([[0, 1]]), np.array([[1, 0]]), 2, 2, 0.07)
    assert tie.tolist() == [[0]]


def test_chunked_queries_and_references_give_the_same_predictions(monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    rows = np.stack([rng.permutation(300)[:50] for _ in range(3)])  # 3 problems of 50 references
    whole = knn_predict(X, np.arange(300), X, rows, y[rows], 3, 7, 0.1)
    monkeypatch.setattr(knn, "REF_ROWS", 30)  # 10 references per problem a chunk, a running top-k
    monkeypatch.setattr(knn, "SIM_BLOCK", 600)  # 11 queries a chunk
    assert (knn_predict(X, np.arange(300), X, rows, y[rows], 3, 7, 0.1) == whole).all()
    for b in range(3):
        assert (whole[b] == direct(X[rows[b]].astype(np.float64), y[rows[b]], X.astype(np.float64), 7, 0.1, 3)).all()


def test_knn_on_the_probes_draws_scores_each_draws_test_images():
    X, y = make_blobs(n_samples=240, centers=3, n_features=10, cluster_std=3.0, random_state=0)
    y = y.copy()
    y[::7] = -1  # unlabeled images are neither references nor queries
    spec = ProbeSpec(k_per_class=5, draws=4)
    draws = labeled_draws(y, spec, seed=0)
    accs = knn_draws(X, y, draws, 20, 0.07)
    for (train, _fit, _val), acc in zip(draws.splits, accs, strict=True):
        test = np.setdiff1d(draws.labeled, train)
        pred = direct(X[train], y[train], X[test], 20, 0.07, 3)
        assert acc == pytest.approx((pred == y[test]).mean())
    r = knn_probe(X, y, spec, seed=0)
    assert r.accuracies == tuple(accs) and r.k == 15 and r.mean == pytest.approx(np.mean(accs))
    assert r.std == pytest.approx(np.std(accs)) and r.mean > 0.8
    assert len(linear_probe(X, y, spec, seed=0).accuracies) == len(r.accuracies)  # the same draws
    few = knn_probe(X, np.where(y == 0, 0, -1), spec, seed=0)  # one class: no draws, no kNN
    assert (few.mean, few.accuracies) == (None, ())


def test_the_full_label_protocol_and_class_alignment():
    X, y = make_blobs(n_samples=300, centers=4, n_features=8, cluster_std=2.0, random_state=3)
    ref, ours = X[:200], X[200:]
    acc, n_ref, n_query = knn_full(ours, y[200:], ref, y[:200], 200, 0.1)
    assert (n_ref, n_query) == (200, 100)
    assert acc == pytest.approx((direct(ref, y[:200], ours, 200, 0.1, 4) == y[200:]).mean())
    assert knn_full(ours, np.full(100, -1), ref, y[:200], 200, 0.1)[0] is None
    # reference classes by name: b -> 1, a -> 0, c (not in the scored split) -> 2, unlabeled stays -1
    assert shared_classes(["a", "b"], ["b", "c", "a"], np.array([0, 2, 1, -1])).tolist() == [1, 0, 2, -1]


def test_knn_settings_are_checked_and_part_of_the_probe_key():
    from benchmark.interfaces import stable_hash

    with pytest.raises(BadInput, match="bad knn k 0: allowed: an integer >= 1"):
        ProbeSpec(knn_k=0)
    with pytest.raises(BadInput, match="bad knn T 0"):
        ProbeSpec(knn_t=0.0)
    with pytest.raises(BadInput, match="bad knn full T -1"):
        ProbeSpec(knn_full_t=-1.0)
    assert stable_hash([ProbeSpec()]) != stable_hash([ProbeSpec(knn_k=10)])
    assert ProbeSpec().knn_k == 20 and ProbeSpec().knn_t == 0.07
    assert (ProbeSpec().knn_full_k, ProbeSpec().knn_full_t, ProbeSpec().knn_reference) == (200, 0.1, None)


def test_the_knn_reference_is_planned_as_a_decode_and_an_extraction_with_the_same_weights():
    from benchmark.pipeline.plan import DataInfo, ExtractTask, ProbeTask, RuntimeInfo, TrainTask, plan

    rt = RuntimeInfo("cpu", "fp32", False, True, 2)
    spec = GridSpec(dataset="fashion_mnist", backbones=("resnet18",), pretexts=("none", "rotation"),
                    clusterers=("kmeans",), split="test", probe=ProbeSpec(knn_reference="train"))
    data = DataInfo("fashion_mnist", None, "img0", "lab0", 100, 10, split="test", knn_images_key="imgR",
                    knn_labels_key="labR")
    p = plan(spec, data, rt)
    decodes = [t for t in p.tasks if t.kind == "decode"]
    assert [(t.key, t.split) for t in decodes] == [("img0", "test"), ("imgR", "train")]
    train = {t.key for t in p.tasks if isinstance(t, TrainTask)}
    ex = [t for t in p.tasks if isinstance(t, ExtractTask)]
    assert sorted(t.images_key for t in ex) == ["img0", "img0", "imgR", "imgR"]
    probes = [t for t in p.tasks if isinstance(t, ProbeTask)]
    by_key = {t.key: t for t in ex}
    for pr in probes:
        main, other = by_key[pr.features_key], by_key[pr.reference_features_key]
        assert other.images_key == "imgR" and other.train_key == main.train_key and other.pretext == main.pretext
        assert pr.deps == (pr.features_key, pr.reference_features_key) and pr.reference_labels_key == "labR"
    assert {by_key[pr.features_key].train_key for pr in probes} == train | {None}
    off = plan(replace(spec, probe=ProbeSpec()), replace(data, knn_images_key=None, knn_labels_key=None), rt)
    assert {t.key for t in off.tasks if t.kind == "probe"}.isdisjoint(t.key for t in probes)
    assert {t.key for t in off.tasks if t.kind == "extract"} < {t.key for t in ex}  # the run's features unchanged
    with pytest.raises(BadInput, match="bad --knn-reference 'train' for data set 'digits'"):
        plan(replace(spec, dataset="digits", split=None), data, rt)
