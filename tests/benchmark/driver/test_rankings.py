"""Rankings a user can trust: intervals over seeds, paired ties, stability, rankability guards, UMAP."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.driver.summary import interval, leaderboard_text, paired_tie, summarize
from benchmark.outputs.recommend import recommend
from benchmark.scoring import columns
from benchmark.scoring.metrics import effective_clusters, rankability, silhouette_with_noise, stability


def _row(**kw) -> dict:
    row = {c: None for c in columns.names()}
    row.update(dataset="d", weights="random", status="ok", notes="", error="", rankable=True, rank_reason="",
               images_per_s=100.0, n_clusters=3, noise_fraction=0.0, stability=1.0)
    row.update(kw)
    return row


def test_interval_is_student_t_and_paired_ties():
    m, sd, lo, hi = interval(np.array([0.5, 0.6, 0.7]))
    assert m == pytest.approx(0.6) and sd == pytest.approx(0.1)
    assert lo == pytest.approx(0.6 - 4.302653 * 0.1 / np.sqrt(3), abs=1e-6)
    # overlapping noise: tied; a clear, consistent gap: not tied
    assert paired_tie(np.array([0.70, 0.62, 0.75]), np.array([0.66, 0.69, 0.71])) is True
    assert paired_tie(np.array([0.80, 0.82, 0.81]), np.array([0.60, 0.61, 0.63])) is False
    assert paired_tie(np.array([0.8]), np.array([0.6])) is None  # one seed: no verdict


def test_cells_with_overlapping_intervals_are_marked_tied_and_clear_losers_are_not():
    rows = []
    nmi = {"a": [0.70, 0.62, 0.75], "b": [0.66, 0.69, 0.71], "c": [0.40, 0.41, 0.43]}
    for b, vals in nmi.items():
        for seed, v in enumerate(vals):
            rows.append(_row(backbone=b, pretext="none", clusterer="kmeans", seed=seed, nmi=v, silhouette=0.3,
                             linear_probe_acc=0.8, probe_accuracies="0.8;0.81"))
    s = summarize(pd.DataFrame(rows, columns=columns.names())).set_index("backbone")
    assert s.loc["a", "tied_with_leader"] == "leader"
    assert s.loc["b", "tied_with_leader"] == "tied" and s.loc["c", "tied_with_leader"] == "no"
    assert s.loc["a", "nmi_lo"] < s.loc["a", "nmi_mean"] < s.loc["a", "nmi_hi"] and s.loc["a", "seeds"] == 3
    text = leaderboard_text(pd.DataFrame(rows, columns=columns.names()))
    assert "3 seeds: mean [95% interval]" in text and "= tied" in text and "leader" in text


def test_rankability_and_the_noise_aware_silhouette():
    giant = np.r_[np.zeros(1764), np.ones(4), -np.ones(29)].astype(int)  # the audit's raw_pixels/dbscan cell
    assert effective_clusters(giant) == pytest.approx(1.02, abs=0.01)
    ok, why = rankability(giant, "ok")
    assert not ok and "one cluster holds nearly everything" in why
    noisy = np.r_[np.zeros(10), np.ones(10), -np.ones(80)].astype(int)
    ok, why = rankability(noisy, "ok")
    assert not ok and "80% of the points are noise" in why
    assert rankability(np.r_[np.zeros(80), np.ones(20)].astype(int), "ok") == (True, "")
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (50, 2)), rng.normal(8, 1, (50, 2))].astype(np.float32)
    lab = np.r_[np.zeros(50), np.ones(50)].astype(int)
    lab[:20] = -1  # noise inside cluster 0 drags the silhouette down when it is counted
    assert silhouette_with_noise(X, lab) < silhouette_with_noise(X, np.r_[np.zeros(50), np.ones(50)].astype(int))


def test_stability_of_seeded_k_means():
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(600, centers=4, random_state=0, cluster_std=0.5)
    runs = [KMeans(4, n_init=1, random_state=s).fit_predict(X) for s in range(3)]
    assert stability(runs)[0] == pytest.approx(1.0)
    U = np.random.default_rng(0).uniform(size=(600, 2))
    runs = [KMeans(6, n_init=1, random_state=s, init="random").fit_predict(U) for s in range(3)]
    assert stability(runs)[0] < 0.95  # uniform noise: the partition depends on the seed


def test_recommend_on_unlabeled_data_never_picks_a_giant_cluster_plus_outliers():
    rows = []
    for seed in (0, 1):
        # raw pixels: the best silhouette, but one cluster of 1764 + 4 + 29 noise: not rankable
        rows.append(_row(backbone="raw_pixels", pretext="none", clusterer="dbscan", seed=seed, silhouette=0.269,
                         n_clusters=2, noise_fraction=0.016, rankable=False,
                         rank_reason="one cluster holds nearly everything: 1.02 effective clusters (under 1.5)"))
        rows.append(_row(backbone="raw_pixels", pretext="none", clusterer="kmeans", seed=seed, silhouette=0.168))
        # a well-separated density cell on another feature set must be picked
        rows.append(_row(backbone="resnet18", pretext="rotation", clusterer="hdbscan", seed=seed, silhouette=0.41,
                         n_clusters=9, noise_fraction=0.08, images_per_s=50.0))
        rows.append(_row(backbone="resnet18", pretext="rotation", clusterer="kmeans", seed=seed, silhouette=0.20,
                         images_per_s=50.0))
    rec = recommend(pd.DataFrame(rows, columns=columns.names()))
    c = rec.cell
    assert (c["backbone"], c["pretext"], c["clusterer"]) == ("resnet18", "rotation", "hdbscan")
    rows2 = [r for r in rows if r["backbone"] == "raw_pixels"]
    rec2 = recommend(pd.DataFrame(rows2, columns=columns.names()))
    assert rec2.cell["clusterer"] == "kmeans"
    assert "passed over 2 unrankable cells" in rec2.why and "one cluster holds nearly everything" in rec2.why


def test_recommend_prefers_the_cheaper_of_tied_feature_sets_and_says_so():
    rows = []
    for seed in (0, 1, 2):
        rows.append(_row(backbone="resnet34", pretext="none", clusterer="kmeans", seed=seed, nmi=0.6,
                         images_per_s=200.0, probe_accuracies=";".join(str(0.855 + 0.02 * ((seed + d) % 3 - 1))
                                                                     for d in range(4))))
        rows.append(_row(backbone="raw_pixels", pretext="none", clusterer="kmeans", seed=seed, nmi=0.6,
                         images_per_s=30000.0, probe_accuracies=";".join(str(0.85 + 0.02 * ((seed + d + 1) % 3 - 1))
                                                                        for d in range(4))))
        rows.append(_row(backbone="resnet18", pretext="none", clusterer="kmeans", seed=seed, nmi=0.5,
                         images_per_s=90000.0, probe_accuracies=";".join(str(0.5 + 0.001 * d) for d in range(4))))
    rec = recommend(pd.DataFrame(rows, columns=columns.names()))
    assert rec.cell["backbone"] == "raw_pixels"
    assert "ties with the best linear-probe feature set" in rec.why and "is faster" in rec.why


def test_umap_reduction_is_exported_as_arrays_and_places_training_points_on_their_embedding():
    from sklearn.datasets import make_blobs

    from benchmark.scoring.reduce import Reduction, fit_reduction

    X, _ = make_blobs(300, n_features=60, centers=3, random_state=0)
    red, _std, Xc, params = fit_reduction(X.astype(np.float32), "umap", 5, seed=0)
    assert Xc.shape == (300, 5) and params["umap_n_neighbors"] == 15 and params["umap_pre_pca"] == 50
    again = Reduction.from_arrays({k: np.asarray(v) for k, v in red.arrays().items()})
    np.testing.assert_allclose(again.transform(X.astype(np.float32)), Xc, atol=1e-3)


def test_k_auto_chooses_k_by_silhouette_and_stability_and_the_report_plots_it(photo_folder, tmp_path):
    import json

    from benchmark.cli.main import main

    out = tmp_path / "run"
    assert main(["run", "--dataset", str(photo_folder), "--backbones", "raw_pixels", "--pretexts", "none",
                 "--clusterers", "kmeans,hdbscan", "--k", "auto", "--probe-k", "4", "--seed", "0", "--out", str(out),
                 "--cache-dir", str(tmp_path / "c"), "--no-progress", "--report"]) == 0
    df = pd.read_csv(out / "cells.csv").set_index("clusterer")
    params = json.loads(df.loc["kmeans", "cluster_params"])
    assert params["k"] == 2 and params["k_from"].startswith("auto")  # two well-separated classes
    ks = [c[0] for c in params["k_curve"]]
    assert ks[0] == 2 and len(ks) >= 1
    assert json.loads((out / "run.json").read_text())["k"] == "auto"
    page = (out / "report.html").read_text()
    assert "Choosing k (--k auto)" in page and 'class="sortable"' in page and "position:sticky" in page
    assert "Clusters x labels" in page
    text = (out / "report.md").read_text()
    assert "1 seed: no intervals" in text


def test_resume_compares_the_blas_libraries_as_a_set():
    from benchmark.driver.resume import libraries

    a = [{"api": "openmp", "version": "4.5"}, {"api": "blas", "version": "0.3.27"}]
    assert libraries(a) == libraries(a[::-1])  # the same libraries in another order: no warning
    assert libraries(a) != libraries(a[:1])


def test_a_warning_outside_a_run_log_is_one_line_of_ours(tmp_path):
    import subprocess
    import sys

    from tests import ROOT
    from tests.conftest import write_photo_folder

    folder = write_photo_folder(tmp_path / "photos", n_per_class=4, size=(16, 16))
    (tmp_path / "w.pt").write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "benchmark", "run", "--dataset", str(folder), "--backbones",
                        "raw_pixels", "--pretexts", "none", "--clusterers", "kmeans", "--image-size", "8",
                        "--probe-k", "2", "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "run"),
                        "--cache-dir", str(tmp_path / "c"), "--no-progress"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if "--weights" in x]
    assert len(lines) == 1 and lines[0].startswith("warning: --weights"), r.stderr
    assert "UserWarning" not in r.stderr and "warnings.warn(" not in r.stderr, r.stderr
