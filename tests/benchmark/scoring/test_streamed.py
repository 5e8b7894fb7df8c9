"""The streamed (row-block) arithmetic of the reduce and cell stages against the whole-array computations it
replaces above ``streamed.small``: scikit-learn's PCA, Davies-Bouldin and Calinski-Harabasz, numpy's moments.
The block size and the threshold are set low so that small arrays take the streamed path."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.decomposition import PCA

from benchmark.scoring import reduce as reduction
from benchmark.scoring import streamed
from benchmark.scoring.metrics import internal_scores, silhouette_with_noise


@pytest.fixture
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(streamed, "SMALL_ELEMENTS", 64)
    monkeypatch.setattr(streamed, "BLOCK_BYTES", 8 * 40 * 7)  # 7 rows of 40 float64 per block


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 600)
    x = (rng.normal(0, 4, (5, 40))[y] + rng.normal(0, 1, (600, 40)) * rng.uniform(0.1, 3, 40)).astype(np.float32)
    return x, y


def test_blocks_cover_every_row_once(tiny_blocks):
    rows = [r for sl in streamed.blocks(100, 40) for r in range(sl.start, sl.stop)]
    assert rows == list(range(100)) and streamed.block_rows(40) == 7


def test_moments_equal_numpy(tiny_blocks, data):
    x, _ = data
    mean, std = streamed.moments(x)
    f = x.astype(np.float64)
    np.testing.assert_allclose(mean, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, f.std(0), rtol=1e-12)


def test_rows_standardize_as_the_whole_array_form(tiny_blocks, data):
    x, _ = data
    red, params = reduction.fit(x, "standardize", 0, 0)
    rows = streamed.Rows(x, red.mean, red.scale)
    idx = np.array([5, 1, 599, 1, 300])
    np.testing.assert_array_equal(rows.take(idx), red.standardize(x)[idx])
    np.testing.assert_array_equal(np.asarray(rows), red.standardize(x))
    assert params["reduce_streamed"] is True


@pytest.mark.parametrize("cov_max", [4096, 8])  # covariance eigh, then randomized SVD
def test_streamed_pca_spans_scikit_learns_components(tiny_blocks, data, monkeypatch, cov_max):
    monkeypatch.setattr(streamed, "COV_MAX_DIM", cov_max)
    x, _ = data
    X = reduction.fit(x, "standardize", 0, 0)[0].standardize(x)
    comps, mean = streamed.fit_pca(streamed.Rows(X), 5, seed=0)
    ref = PCA(5, svd_solver="full").fit(X.astype(np.float64))
    np.testing.assert_allclose(mean, ref.mean_, atol=1e-6)
    # the same components with scikit-learn's signs (svd_flip: the largest |loading| positive); randomized: to
    # its accuracy (the 5th component's eigengap is small)
    np.testing.assert_allclose(comps, ref.components_, atol=2e-5 if cov_max > 40 else 2e-3)


def test_streamed_pca_reduction_projects_like_the_whole_one(monkeypatch, data):
    x, _ = data
    whole = reduction.fit_reduction(x, "pca", 5, 0)[2]
    monkeypatch.setattr(streamed, "SMALL_ELEMENTS", 64)
    monkeypatch.setattr(streamed, "BLOCK_BYTES", 8 * 40 * 7)
    red, _rows, part, params = reduction.fit_reduction(x, "pca", 5, 0)
    assert params["reduce_streamed"] is True and part.shape == whole.shape == (600, 5)
    np.testing.assert_allclose(np.abs(part), np.abs(whole), atol=1e-4)


def test_dispersion_equals_scikit_learn_noise_left_out(tiny_blocks, data):
    x, y = data
    lab = y.copy()
    lab[::13] = -1  # noise
    db, ch = streamed.dispersion(streamed.Rows(x), lab)
    keep = lab >= 0
    # scikit-learn averages float32 rows in float32 (its centroids): agreement to its precision
    assert db == pytest.approx(skm.davies_bouldin_score(x[keep], lab[keep]), rel=1e-6)
    assert ch == pytest.approx(skm.calinski_harabasz_score(x[keep], lab[keep]), rel=1e-6)


def test_streamed_internal_scores_equal_the_whole_array_ones(monkeypatch, data):
    x, y = data
    lab = y.copy()
    lab[::17] = -1
    red = reduction.fit(x, "standardize", 0, 0)[0]
    whole = internal_scores(red.standardize(x), lab, max_n=300, seed=3)
    noise_whole = silhouette_with_noise(red.standardize(x), lab, max_n=300, seed=3)
    monkeypatch.setattr(streamed, "SMALL_ELEMENTS", 64)
    monkeypatch.setattr(streamed, "BLOCK_BYTES", 8 * 40 * 7)
    rows = streamed.Rows(x, red.mean, red.scale)
    part = internal_scores(rows, lab, max_n=300, seed=3)
    assert part.silhouette == whole.silhouette and part.silhouette_sample == whole.silhouette_sample == 300
    assert part.davies_bouldin == pytest.approx(whole.davies_bouldin, rel=1e-6)
    assert part.calinski_harabasz == pytest.approx(whole.calinski_harabasz, rel=1e-6)
    assert silhouette_with_noise(rows, lab, max_n=300, seed=3) == noise_whole


def test_cluster_space_is_written_into_the_given_array(tiny_blocks, data):
    x, _ = data
    red, _ = reduction.fit(x, "l2", 0, 0)
    out = np.zeros((600, 40), np.float32)
    reduction.cluster_space(red, x, out)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
