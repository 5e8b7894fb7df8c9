"""The column table: a new metric is its function plus one row, and every output finds it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.cli.main import main
from benchmark.driver import summary
from benchmark.outputs import recommend, report
from benchmark.scoring import columns
from benchmark.scoring.columns import Column

DUMMY = 0.123457


@pytest.fixture()
def dummy_metric():
    col = columns.register(Column("dummy_score", "score", "dummy", "higher", "interval",
                                  frozenset({"leaderboard", "heatmap", "diff", "export"}), 13,
                                  compute=lambda fit: DUMMY))
    yield col
    columns.unregister(col.name)


def test_a_metric_registered_at_test_time_reaches_every_output(dummy_metric, tmp_path, capsys):
    from tests.conftest import write_photo_folder

    folder = write_photo_folder(tmp_path / "photos", n_per_class=8, size=(24, 24))
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["run", "--dataset", str(folder), "--backbones", "raw_pixels", "--pretexts", "none",
                 "--clusterers", "kmeans", "--seeds", "0,1", "--image-size", "16", "--probe-k", "3",
                 "--out", str(out), "--cache-dir", str(cache), "--no-progress"]) == 0
    cells = pd.read_csv(out / "cells.csv")
    assert "dummy_score" in cells.columns and (cells["dummy_score"] == DUMMY).all()
    s = pd.read_csv(out / "summary.csv")
    assert s["dummy_score_mean"].iloc[0] == pytest.approx(DUMMY) and "dummy_score_lo" in s.columns
    knn = [float(a) for accs in cells["knn_accuracies"] for a in accs.split(";")]  # seeds x draws, as the probe
    assert len(knn) == sum(len(a.split(";")) for a in cells["probe_accuracies"]) == 20
    assert cells["knn_acc"].notna().all() and cells["knn_full_acc"].isna().all()
    assert s["knn_pooled_mean"].iloc[0] == pytest.approx(np.mean(knn)) and s["knn_acc_lo"].notna().all()

    assert main(["report", str(out)]) == 0
    assert "dummy_score" in (out / "report.md").read_text()
    heat = report.heatmap_figs(cells)
    assert heat  # the heatmaps now carry one panel more, titled from the row
    assert "dummy (higher is better)" in [c.title for c in columns.shown_in("heatmap")]

    d = recommend.diff_runs(cells, cells.assign(dummy_score=DUMMY + 1))
    assert d["d_dummy_score"].tolist() == pytest.approx([1.0, 1.0])

    capsys.readouterr()
    exp = tmp_path / "recipe"
    assert main(["export", str(out), "--cell", "raw_pixels/none/kmeans", "--to", str(exp)]) == 0
    assert json.loads((exp / "manifest.json").read_text())["scores"]["dummy_score"] == pytest.approx(DUMMY)
    assert "dummy_score" in summary.summarize(cells).columns.str.replace("_mean", "").tolist()


def test_the_views_come_in_their_published_order():
    assert [c.name for c in columns.shown_in("diff")] == [
        "nmi", "ari", "cluster_acc", "silhouette", "davies_bouldin", "linear_probe_acc", "knn_acc", "knn_full_acc",
        "images_per_s"]
    assert [c.name for c in columns.shown_in("heatmap")] == ["nmi", "silhouette", "davies_bouldin",
                                                               "linear_probe_acc"]
    assert columns.summary_columns("interval")[:4] == ["nmi", "ari", "cluster_acc", "silhouette"]
    assert columns.timing_columns() == ["train_s", "extract_s", "cluster_s", "images_per_s"]


def test_a_column_is_registered_once_and_checked():
    with pytest.raises(ValueError, match="already in the table"):
        columns.register(Column("nmi", "score"))
    with pytest.raises(ValueError, match="bad column"):
        Column("x", "score", seeds="median")


@pytest.mark.parametrize("name, value, ok", [
    ("linear_probe_acc", "0.9", True), ("linear_probe_acc", "1.5", False), ("knn_acc", "0.9", True),
    ("knn_acc", "1.5", False), ("knn_acc", "-0.1", False), ("knn_acc", "high", False), ("knn_std", "0.02", True),
    ("knn_std", "1.2", False), ("knn_full_acc", "0.85", True), ("knn_full_acc", "nan", False),
    ("probe_accuracies", "0.8;0.9", True), ("probe_accuracies", "0.8;1.2", False),
    ("knn_accuracies", "0.8;0.9", True), ("knn_accuracies", "0.8;1.2", False), ("knn_accuracies", "0.8;x", False)])
def test_read_back_knn_values_are_checked_like_the_probes(name, value, ok):
    problem = columns.row_problem({"status": "ok", name: value})
    assert (problem == "") is ok and (ok or problem.startswith(name))


def test_the_knn_accuracy_is_aggregated_diffed_and_recommended_beside_the_probe():
    rows = [dict(dataset="d", backbone=b, weights="random", pretext="none", clusterer="kmeans", seed=seed,
                 status="ok", rankable=True, nmi=0.5, silhouette=0.3, images_per_s=100.0, notes="",
                 linear_probe_acc=acc, probe_accuracies=f"{acc};{acc}", knn_acc=knn,
                 knn_accuracies=f"{knn - 0.01};{knn + 0.01}")
            for seed in (0, 1) for b, acc, knn in (("resnet18", 0.8 + 0.01 * seed, 0.7 + 0.02 * seed),
                                                   ("raw_pixels", 0.6, 0.75))]
    cells = pd.DataFrame(rows, columns=columns.names())
    s = summary.summarize(cells).set_index("backbone")
    assert s.loc["resnet18", "knn_acc_mean"] == pytest.approx(0.71) and s.loc["resnet18", "knn_acc_lo"] < 0.71
    assert s.loc["resnet18", "knn_pooled_mean"] == pytest.approx(0.71)
    assert s.loc["resnet18", "knn_pooled_hi"] > s.loc["resnet18", "knn_acc_mean"]
    assert "knn" in summary.leaderboard_text(cells)
    rec = recommend.recommend(cells)
    assert rec.cell["backbone"] == "resnet18" and "kNN accuracy is 0.710" in rec.why
    assert "best kNN: raw_pixels/none/none, 0.750" in rec.why and "knn_acc" in rec.pareto.columns
    d = recommend.diff_runs(cells, cells.assign(knn_acc=cells["knn_acc"] + 0.1))
    assert d["d_knn_acc"].tolist() == pytest.approx([0.1] * 4)
