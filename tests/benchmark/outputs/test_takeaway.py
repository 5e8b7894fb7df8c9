"""What users take away: report (rendered in headless Chromium), recommend, export, predict, diff."""
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from benchmark.cli.main import main
from benchmark.outputs.recommend import diff_runs, pareto_front, recommend
from registry.clusterers import CLUSTERERS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tests.conftest import write_photo_folder

    base = tmp_path_factory.mktemp("takeaway")
    folder = write_photo_folder(base / "photos", names="{i}.png")
    (folder / "broken.jpg").write_bytes(b"")
    out = base / "run"
    assert main(["run", "--preset", "quick", "--dataset", str(folder), "--backbones", "resnet18,raw_pixels",
                 "--pretexts", "none,rotation,relative_patch", "--clusterers", ",".join(CLUSTERERS.names()),
                 "--image-size", "32", "--max-steps", "3", "--batch-size", "8", "--probe-k", "4", "--out", str(out),
                 "--cache-dir", str(base / "cache"), "--no-progress"]) == 0
    return out, folder


def test_report_renders_with_its_pictures_in_headless_chromium(run_dir, tmp_path):
    out, _ = run_dir
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    n_img = page.count("<img ")
    assert n_img >= 6 and "data:image/png;base64," in page and "src=\"http" not in page  # self-contained
    for section in ("Leaderboard", "Scores over backbone x pretext", "Projection", "Montage",
                    "Pretext training curves", "Throughput", "Skipped files"):
        assert section in page and section in md
    assert "1 × empty file" in page
    assert all((out / m).is_file() for m in re.findall(r"\((report_files/[^)]+)\)", md))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it where apt-get can)")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    total = re.search(r'data-images-total="(\d+)"', dom.stdout)
    ok = re.search(r'data-images-ok="(\d+)"', dom.stdout)
    assert total and ok, dom.stderr[-2000:]
    assert int(total.group(1)) == n_img == int(ok.group(1))  # every picture decoded by the browser
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                    f"--screenshot={shot}", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    assert np.asarray(Image.open(shot).convert("L")).std() > 10  # not a blank page


def test_recommend_rule_and_pareto_front(run_dir, capsys):
    out, _ = run_dir
    assert main(["recommend", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recommended:" in printed and "rule:" in printed and "Pareto front" in printed
    cells = pd.read_csv(out / "cells.csv")
    rec = recommend(cells)
    ok = cells[cells.status == "ok"]
    assert rec.cell["linear_probe_acc"] == ok["linear_probe_acc"].max()
    fast = recommend(cells, min_throughput=1e9 - 1) if (cells.images_per_s >= 1e9 - 1).any() else None
    assert fast is None or fast.cell["images_per_s"] >= 1e9 - 1
    assert main(["recommend", str(out), "--min-throughput", "1e12"]) == 2
    assert "no feature set reaches" in capsys.readouterr().err


def test_pareto_front_keeps_only_undominated():
    fs = pd.DataFrame({"linear_probe_acc": [0.9, 0.8, 0.95, 0.7], "images_per_s": [100, 200, 50, 150]})
    front = pareto_front(fs)
    assert sorted(front.index) == [0, 1, 2]  # row 3 is beaten by row 1 on both


def test_export_predict_kmeans_round_trip_is_exact(run_dir, tmp_path, capsys):
    out, folder = run_dir
    exp = tmp_path / "recipe"
    assert main(["export", str(out), "--cell", "resnet18/rotation/kmeans", "--to", str(exp)]) == 0
    assert "labels reproduce the run: True" in capsys.readouterr().out
    import torch

    state = torch.load(exp / "backbone.pt", weights_only=True)
    assert any(k.endswith("weight") for k in state)
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(exp), str(folder), "--out", str(pred), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "images/s" in printed and "1 skipped" in printed
    p = pd.read_csv(pred)
    a = pd.read_csv(out / "assignments.csv")
    merged = a.merge(p, on="path")
    assert len(merged) == 24 and (merged["resnet18/random/rotation/kmeans/0"] == merged["cluster"]).all()
    assert (p["distance"] >= 0).all() and (p["cluster"] >= 0).all()
    assert pd.read_csv(pred.with_suffix(".skipped.csv")).path.tolist() == ["broken.jpg"]


@pytest.mark.parametrize("cell", [f"resnet18/relative_patch/{c}" if c == "kmeans" else
                                  f"{'resnet18' if i % 2 else 'raw_pixels'}/none/{c}"
                                  for i, c in enumerate(CLUSTERERS.names())])
def test_export_predict_other_clusterers(run_dir, tmp_path, cell):
    out, folder = run_dir
    row = pd.read_csv(out / "cells.csv").set_index(["backbone", "pretext", "clusterer"]).loc[tuple(cell.split("/"))]
    if row["status"] not in ("ok", "degenerate"):
        pytest.skip(f"{cell} did not finish on this tiny data")
    exp = tmp_path / "recipe"
    assert main(["export", str(out), "--cell", cell, "--to", str(exp)]) == 0
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(exp), str(folder), "--out", str(pred), "--no-progress"]) == 0
    p = pd.read_csv(pred)
    assert len(p) == 24 and p["cluster"].min() >= -1 and p.columns[-1] in ("distance", "confidence")
    merged = pd.read_csv(out / "assignments.csv").merge(p, on="path")
    b, p_, c = cell.split("/")
    agree = (merged[f"{b}/{'none' if b == 'raw_pixels' else 'random'}/{p_}/{c}/0"] == merged["cluster"]).mean()
    assert agree > 0.9  # density predict is approximate (hdbscan.approximate_predict, nearest core point)


def test_export_and_predict_errors(run_dir, tmp_path, capsys):
    out, _ = run_dir
    assert main(["export", str(out), "--cell", "resnet18/none/kmean", "--to", str(tmp_path / "x")]) == 2
    assert "did you mean 'resnet18/random/none/kmeans/0'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_diff_reports_per_cell_changes(run_dir, tmp_path, capsys):
    out, _ = run_dir
    other = tmp_path / "other"
    shutil.copytree(out, other)
    df = pd.read_csv(other / "cells.csv")
    df["nmi"] = df["nmi"].astype(float)  # every cell may score a round 1.0 on the two easy classes
    df.loc[0, "nmi"] = df.loc[0, "nmi"] - 0.25
    df = df.iloc[:-1]
    df.to_csv(other / "cells.csv", index=False)
    d = diff_runs(pd.read_csv(out / "cells.csv"), df)
    assert d["d_nmi"].iloc[0] == pytest.approx(-0.25) and (d["in"] == "a only").sum() == 1
    assert main(["diff", str(out), str(other), "--out", str(tmp_path / "d.csv")]) == 2  # an edited folder
    err = capsys.readouterr().err
    assert "cells.csv row 1 (" in err and "does not match the digest in run.json" in err
    assert not (tmp_path / "d.csv").exists()
    same = tmp_path / "same"
    shutil.copytree(out, same)  # a copied folder verifies by its own checksums
    assert main(["diff", str(out), str(same), "--out", str(tmp_path / "d.csv")]) == 0
    assert "d_nmi" in capsys.readouterr().out and (tmp_path / "d.csv").is_file()


def test_run_folders_of_the_previous_layout_still_report_and_diff(run_dir, tmp_path, capsys):
    """Before the artifact store: no labels_key in run.json, cell ids without the seed, no probe/cell keys."""
    import json

    out, _ = run_dir
    old = tmp_path / "old"
    shutil.copytree(out, old)
    info = json.loads((old / "run.json").read_text())
    info.pop("labels_key")
    info.pop("integrity")  # older folders have no checksums
    info.pop("run_folder_schema")
    info["config"] = {"seed": 0, **{k: v for k, v in info["config"].items() if k != "seeds"}}
    (old / "run.json").write_text(json.dumps(info))
    cells = pd.read_csv(old / "cells.csv").drop(columns=["probe_key", "cell_key", "seed"])
    cells["feature_key"] = "0123456789abcdef"  # the old cache layout: nothing the store can find
    cells.to_csv(old / "cells.csv", index=False)
    a = pd.read_csv(old / "assignments.csv")
    a.rename(columns=lambda c: c.rsplit("/", 1)[0] if c.count("/") == 3 else c).to_csv(old / "assignments.csv",
                                                                                   index=False)
    assert main(["report", str(old)]) == 0 and main(["diff", str(old), str(out)]) == 0
    assert main(["recommend", str(old)]) == 0
    capsys.readouterr()
    assert main(["export", str(old), "--to", str(tmp_path / "x")]) == 2
    assert "made by an older version" in capsys.readouterr().err
