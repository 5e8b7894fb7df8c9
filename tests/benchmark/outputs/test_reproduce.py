"""Reproductions: the data file, the tolerance rule, verdicts, the split purity, and a smoke run of each."""
import json

import numpy as np
import pandas as pd
import pytest

from benchmark.cli.main import main
from benchmark.outputs import reproduce
from tests.registry.datasets.test_fashion_mnist import REAL


def test_every_reproduction_names_its_sources_and_a_grid_that_parses():
    from benchmark.config.presets import spec_from_config

    data = reproduce.load()
    assert "fmnist-kmeans-raw" in data
    for name, e in data.items():
        spec_from_config(dict(e["grid"]))
        assert e["metrics"] and e.get("title")
        for m in e["metrics"]:
            assert m.get("source"), (name, m["name"])  # every number is cited (or says it has none)
            if "published" in m:
                assert 0 <= m["published"] <= 1


def test_tolerance_rule_recomputed_from_the_stored_per_seed_values():
    """max(0.02, 3 x std of our stored per-seed values, published std), for every metric in the file."""
    for e in reproduce.load().values():
        for m in e["metrics"]:
            seeds = m.get("our_seeds", [])
            spread = np.std(seeds, ddof=1) if len(seeds) >= 2 else 0.0
            assert reproduce.tolerance(m) == pytest.approx(max(0.02, 3 * spread, m.get("published_std", 0.0)))
    assert reproduce.tolerance({"our_seeds": [0.50, 0.52, 0.54]}) == pytest.approx(0.06)
    assert reproduce.tolerance({"our_seeds": [0.5, 0.5], "published_std": 0.03}) == 0.03


def test_verdicts():
    m = {"name": "NMI", "published": 0.5, "our_seeds": [0.5, 0.5, 0.5]}
    assert reproduce.judge(m, [0.51, 0.515, 0.505]).verdict == "within"
    assert reproduce.judge(m, [0.45, 0.44, 0.46]).verdict == "outside"
    assert reproduce.judge({"name": "ARI"}, [0.3]).verdict == "reported"
    assert reproduce.judge({"name": "purity", "at_least": 0.9}, [0.95, 0.89]).verdict == "outside"
    assert reproduce.judge(m, []).verdict == "no value"
    gap = {"name": "probe gap", "rule": "positive_gap"}
    assert reproduce.judge(gap, [0.03, 0.04, 0.035]).verdict == "within"
    assert reproduce.judge(gap, [-0.03, 0.04, 0.01]).verdict == "outside (no clear gap)"
    assert reproduce.judge(gap, [-0.05, -0.06, -0.055]).verdict == "outside (reversal found)"
    failed = [reproduce.judge(gap, v).failed for v in ([0.03, 0.04, 0.035], [-0.03, 0.04, 0.01], [-0.05, -0.06])]
    assert failed == [False, True, True]  # a reversal or an unclear gap makes `reproduce` exit 1
    assert reproduce.judge(m, []).failed and not reproduce.judge({"name": "ARI"}, [0.3]).failed


def test_largest_gap_names_the_variant_with_the_largest_mean_gap_per_column():
    rows = [reproduce.judge({"name": f"gap {v}", "rule": "positive_gap", "column": c, "variant": v}, vals)
            for c, v, vals in (("nmi", "layer1", [0.1, 0.12, 0.11]), ("nmi", "layer2", [0.2, 0.3, 0.25]),
                               ("acc", "layer1", [-0.02, -0.03, -0.01]), ("acc", "layer2", [-0.05, -0.06, -0.07]))]
    lines = reproduce.largest_gaps(rows)
    assert lines[0].startswith("largest nmi gap: layer2, +0.250 ± 0.058 (2 SE over 3 seeds; within)")
    assert lines[1].startswith("largest acc gap: layer1, -0.020") and "reversal found" in lines[1]
    assert reproduce.gap_figure(rows)[:4] == b"\x89PNG" and reproduce.gap_figure(rows[:0]) is None
    order = reproduce.ordering_lines(rows)  # where our ordering differs from the published one, it says so
    assert order[0] == "nmi: the published order held in 2 of 2 paired gaps"
    assert order[1] == "acc: the published order held in 0 of 2 paired gaps; reversed in 2 (layer1, layer2)"


def test_stored_verdicts_follow_from_the_stored_per_seed_values():
    """Where the file records our verdict of a full run (``our_verdict``), the rule gives it again from the
    stored per-seed values: the README's verdicts are recomputed, not typed in."""
    stored = [m for e in reproduce.load().values() for m in e["metrics"] if "our_verdict" in m]
    assert len(stored) >= 8
    for m in stored:
        assert reproduce.judge(m, [float(v) for v in m["our_seeds"]]).verdict == m["our_verdict"], m["name"]


def test_split_purity_of_a_two_cluster_split(tmp_path):
    labels = ["Bag", "Sandal", "Coat", "Shirt", "Bag", "Dress"]
    clusters = [0, 0, 1, 1, 1, 1]  # one Bag on the garment side: 5 of 6
    pd.DataFrame({"path": range(6), "label": labels, "b/p/kmeans/0": clusters}).to_csv(tmp_path / "assignments.csv",
                                                                                     index=False)
    row = {"backbone": "b", "pretext": "p", "clusterer": "kmeans", "seed": 0}
    assert reproduce.split_purity(tmp_path, row, ["Bag", "Sandal", "Sneaker", "Ankle boot"]) == pytest.approx(5 / 6)


def test_reproduce_list_and_unknown_name(capsys):
    assert main(["reproduce", "--list"]) == 0
    assert "fmnist-kmeans-raw" in capsys.readouterr().out
    assert main(["reproduce", "fmnist-kmeans"]) == 2
    assert "fmnist-kmeans-raw" in capsys.readouterr().err  # the closest names are suggested


@pytest.mark.skipif(not REAL, reason="dataset-fashion-mnist is not installed (make test installs it where apt-get can)")
@pytest.mark.parametrize("name", reproduce.names())
def test_smoke_run_of_every_reproduction(name, tmp_path, capsys):
    """A CI-sized run of each protocol (a few hundred images, one seed): it runs and writes the table;
    no verdict."""
    assert main(["reproduce", name, "--smoke", "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    out = json.loads((tmp_path / "r" / "reproduce.json").read_text())
    assert out["reproduction"] == name and all(r["ours_mean"] is not None for r in out["rows"])
    infos = [json.loads(p.read_text()) for p in (tmp_path / "r").rglob("run.json")]  # one per variant
    assert len(infos) == len(reproduce.variants(name))
    fmnist = reproduce.entry(name)["grid"]["dataset"] == "fashion_mnist"
    assert all((i["data_version"] or {}).get("package") == ("dataset-fashion-mnist" if fmnist else None) for i in infos)
    printed = capsys.readouterr().out
    assert "published" in printed and f"report: {tmp_path / 'r' / 'report.html'}" in printed
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Published vs ours" in md and all(r["metric"] in md for r in out["rows"])
    gaps = any(r["rule"] == "positive_gap" for r in out["rows"])
    assert ("## Gaps per variant" in md) == gaps and (tmp_path / "r" / "report.html").stat().st_size > 1000


def test_full_gives_the_papers_budget_and_a_variant_keeps_its_own_settings():
    """``--full`` sets DEC-keras's 300 pretraining epochs for the paper's autoencoder; the conv autoencoder
    variant beside it keeps its own 1 epoch; ``--smoke`` cuts every variant to a few steps."""
    import argparse

    from benchmark.cli.reproduce import _config

    def epochs(**flags):
        args = argparse.Namespace(**{"full": False, "smoke": False, "seeds": None, **flags})
        return {v: _config("fmnist-ae-kmeans", args, over)["train"]["epochs"]
                for v, over in reproduce.variants("fmnist-ae-kmeans")}

    assert epochs() == {"dec": 5, "conv": 1}
    assert epochs(full=True) == {"dec": 300, "conv": 1}
    assert epochs(smoke=True) == {"dec": 1, "conv": 1}
