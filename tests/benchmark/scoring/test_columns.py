"""The column table: a new metric is its function plus one row, and every output finds it."""
from __future__ import annotations

import json

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
        "nmi", "ari", "cluster_acc", "silhouette", "davies_bouldin", "linear_probe_acc", "images_per_s"]
    assert [c.name for c in columns.shown_in("heatmap")] == ["nmi", "silhouette", "davies_bouldin",
                                                               "linear_probe_acc"]
    assert columns.summary_columns("interval")[:4] == ["nmi", "ari", "cluster_acc", "silhouette"]
    assert columns.timing_columns() == ["train_s", "extract_s", "cluster_s", "images_per_s"]


def test_a_column_is_registered_once_and_checked():
    with pytest.raises(ValueError, match="already in the table"):
        columns.register(Column("nmi", "score"))
    with pytest.raises(ValueError, match="bad column"):
        Column("x", "score", seeds="median")
