"""CLI errors: one line naming the bad value and what is allowed, exit code 2, before any compute."""
import subprocess
import sys

import pytest

from benchmark.cli.main import main
from tests import ROOT


@pytest.mark.parametrize("args,expect", [
    (["--backbones", "resnet18,resnt50"], "unknown backbone 'resnt50'.*did you mean 'resnet50'"),
    (["--backbones", "timm:efficientnet_b9x"], "unknown timm model 'efficientnet_b9x'"),
    (["--pretexts", "rotaton"], "unknown pretext 'rotaton'.*did you mean 'rotation'"),
    (["--clusterers", "hdbscn"], "unknown clusterer 'hdbscn'.*did you mean 'hdbscan'"),
    (["--dataset", "digts"], "unknown dataset 'digts'.*did you mean 'digits'"),
    (["--image-size", "3"], "bad image size 3"),
    (["--backbones", "vgg16", "--image-size", "16"], "bad image size 16 for backbone 'vgg16'"),
    (["--epochs", "-2"], "bad epochs -2"),
    (["--optimizer", "lion"], "bad optimizer 'lion'"),
    (["--device", "tpu"], "bad device 'tpu'"),
    (["--k", "1"], "bad k 1"),
    (["--preset", "defalt"], "unknown preset 'defalt'.*did you mean 'default'"),
    (["--batch-size", "ten"], "bad batch size 'ten': allowed: an integer >= 1, at most 65536"),
    (["--color-loss", "huber"], "bad colorization loss 'huber'.*classification, l1, l2"),
    (["--jigsaw-permutations", "1"], "bad jigsaw permutations 1"),
    (["--ae-noise", "-1"], "bad autoencoder noise -1"),
    (["--jigsaw-gap", "0.7"], "bad jigsaw gap 0.7"),
    (["--patch-gap", "nan"], "bad patch gap nan"),
    (["--lr", "inf"], "bad learning rate inf"),
    (["--seeds", "0,x"], "bad --seeds '0,x'"),
    (["--seeds", "1,1"], "duplicate seeds"),
    (["--seed", "1", "--seeds", "2"], "give --seed or --seeds"),
    (["--probe-draws", "0"], "bad probe draws 0"),
])
def test_bad_values_exit_2_with_one_line(args, expect, capsys, tmp_path):
    assert main(["run", "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    import re

    assert re.search(expect, err), err
    assert not (tmp_path / "r").exists()  # nothing computed, nothing written


def test_existing_run_needs_resume(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "cells.csv").write_text("x\n")
    assert main(["run", "--preset", "quick", "--out", str(out)]) == 2
    assert "add --resume" in capsys.readouterr().err


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("vgg16", "timm:<name>", "raw_pixels", "rotation", "faiss_kmeans", "hdbscan", "digits",
                 "sample_photos"):
        assert word in out


def test_run_all_entry_point_reports_errors_the_same_way():
    proc = subprocess.run([sys.executable, "run_all.py", "--clusterers", "kmeanz"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown clusterer 'kmeanz'" in proc.stderr


def test_compile_and_deterministic_reach_run_json_with_compile_time_apart(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("SSLBENCH_COMPILE_BACKEND", "aot_eager")  # inductor: ~40 s per model on 2 cores
    out = tmp_path / "r"
    assert main(["run", "--preset", "quick", "--backbones", "timm:resnet10t", "--pretexts", "rotation",
                 "--clusterers", "kmeans", "--max-steps", "2", "--batch-size", "16", "--image-size", "16",
                 "--compile", "--deterministic", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["stage_s"]["compile"] > 0 and info["gpu_util_pct"] == {"train": None, "extract": None}
    assert info["config"]["compile"] is True and info["config"]["deterministic"] is True


@pytest.mark.parametrize("argv, expect", [
    (["run", "--dataset", "fashion_mnist", "--train-split", "bogus"], "bad --train-split 'bogus': allowed: train"),
    (["run", "--dataset", "digits", "--train-split", "train"], "bad --train-split 'train' for data set 'digits'"),
    (["scale", "--only", "silhouette,bogus"], "bad --only 'bogus': allowed: a comma list of silhouette"),
    (["compare", "a.jsonl", "b.jsonl", "--ignore-fingerprint", "bogus"], "bad --ignore-fingerprint 'bogus'"),
    (["recommend", "no_run", "--min-throughput", "-5"], "bad --min-throughput -5.0: allowed: a finite number >= 0"),
])
def test_more_bad_values_are_named_with_their_own_flag(argv, expect, capsys, tmp_path):
    assert main([*argv, *(["--out", str(tmp_path / "r")] if argv[0] == "run" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and err.count("\n") == 0, err


def test_a_preset_list_given_as_a_string_is_refused_whole(tmp_path):
    from benchmark.config.presets import spec_from_config
    from benchmark.interfaces import BadInput

    with pytest.raises(BadInput, match="bad backbones 'raw_pixels': allowed: a comma list of names"):
        spec_from_config({"dataset": "digits", "backbones": "raw_pixels", "pretexts": ["none"],
                          "clusterers": ["kmeans"]})
