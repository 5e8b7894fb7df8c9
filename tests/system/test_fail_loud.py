"""Fail loud, never wrong: every bad input is one line naming the value and what is allowed, exit 2, before
any compute, with no cache or output file created; internal errors are exit 1; failed cells are exit 3."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch

from benchmark.cli.main import main
from tests import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class _Evil:
    """A pickle that runs code when unpickled (it must never be)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _files(tmp: Path) -> dict[str, str]:
    """Bad files of every kind the tests hand over."""
    import torchvision

    out = {}
    (tmp / "text.pt").write_text("these are not weights\n")
    out["text"] = str(tmp / "text.pt")
    torch.save([torch.zeros(3)], tmp / "list.pt")
    out["list"] = str(tmp / "list.pt")
    torch.save(torchvision.models.resnet34().state_dict(), tmp / "r34.pt")
    out["r34"] = str(tmp / "r34.pt")
    (tmp / "evil.pt").write_bytes(pickle.dumps(_Evil(tmp / "pwned")))
    out["evil"] = str(tmp / "evil.pt")
    torch.save(torchvision.models.resnet18().state_dict(), tmp / "r18.pt")
    out["r18"] = str(tmp / "r18.pt")
    (tmp / "one_col.csv").write_text("just_one_column\nfoo\n")
    out["one_col"] = str(tmp / "one_col.csv")
    (tmp / "a_file").write_text("x")
    out["file"] = str(tmp / "a_file")
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, str]:
    return _files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """24 small PNGs in two class folders (as the shared photo_folder fixture, made once per module)."""
    from tests.conftest import write_photo_folder

    return write_photo_folder(tmp_path_factory.mktemp("data") / "photos", size=(40, 36))


# (extra args, patterns the one-line message must contain: the bad value and what is allowed)
RUN_CASES = {
    "lr inf": (["--lr", "inf"], ["inf", "finite number > 0"]),
    "lr nan": (["--lr", "nan"], ["nan", "finite number > 0"]),
    "lr zero": (["--lr", "0"], ["learning rate 0", "> 0"]),
    "weight decay nan": (["--weight-decay", "nan"], ["nan", ">= 0"]),
    "eps negative": (["--eps", "-1"], ["eps -1", "> 0"]),
    "eps inf": (["--eps", "inf"], ["eps inf", "finite"]),
    "max steps 0": (["--max-steps", "0"], ["max steps 0", ">= 1"]),
    "batch size 0": (["--batch-size", "0"], ["batch size 0", ">= 1"]),
    "image size 5000": (["--image-size", "5000"], ["5000", "8..1024"]),
    "probe k 1": (["--probe-k", "1"], ["probe k 1", ">= 2"]),
    "seed negative": (["--seeds", "-1"], ["seed -1", "in 0..2147481646"]),
    "k 5000 on 24 images": (["--k", "5000"], ["--k 5000", "at most the number of images (24"]),
    "executor": (["--executor", "dask"], ["'dask'", "allowed: serial"]),
    "dataset folder missing": (["--dataset", "/no/such/folder"], ["/no/such/folder", "allowed"]),
    "labels missing": (["--labels", "/no/such.csv"], ["/no/such.csv", "no such file"]),
    "labels one column": (["--labels", "@one_col"], ["one_col.csv", "two columns filename,label"]),
    "weights missing": (["--backbones", "resnet18", "--weights", "/no/w.pt"], ["/no/w.pt", "no such file"]),
    "weights text": (["--backbones", "resnet18", "--weights", "@text"], ["text.pt", "weights-only state_dict"]),
    "weights list": (["--backbones", "resnet18", "--weights", "@list"], ["list.pt", "need a state_dict", "list"]),
    "weights other architecture": (["--backbones", "resnet18", "--weights", "@r34"],
                                   ["r34.pt", "does not match ResNet", "unexpected"]),
    "weights pickle with code": (["--backbones", "resnet18", "--weights", "@evil"],
                                 ["evil.pt", "weights-only state_dict"]),
    "bare weights, two deep backbones": (["--backbones", "resnet18,resnet34", "--weights", "@r18"],
                                         ["r18.pt", "2 deep backbones", "resnet18=PATH,resnet34=PATH2"]),
    "weights for a backbone not in the grid": (["--backbones", "resnet18", "--weights", "resnet50=@r18"],
                                               ["'resnet50'", "allowed: the grid's deep backbones (resnet18)"]),
    "weights item without path": (["--backbones", "resnet18", "--weights", "resnet18="],
                                  ["'resnet18='", "backbone=PATH"]),
    "out is a file": (["--out", "@file"], ["--out", "a_file", "it is a file; need a directory"]),
    "cache dir is a file": (["--cache-dir", "@file"], ["--cache-dir", "a_file", "need a directory"]),
    "cache dir under a file": (["--cache-dir", "@file/sub"], ["--cache-dir", "a_file", "need a directory"]),
    "unknown flag": (["--colour", "x"], ["--colour"]),
    "preset": (["--preset", "nope"], ["'nope'", "quick"]),
    "pretext option": (["--jigsaw-gap", "-0.1"], ["-0.1", "allowed"]),
}


def _resolve(arg: str, files: dict[str, str]) -> str:
    """@name -> the bad file of that name (also inside name=@file or @file/sub)."""
    return re.sub(r"@(\w+)", lambda m: files[m.group(1)], arg)


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_run_bad_input_is_one_line_exit_2_before_any_compute(case, folder, bad_files, tmp_path, capsys):
    extra, expect = RUN_CASES[case]
    extra = [_resolve(a, bad_files) for a in extra]
    out, cache = tmp_path / "out", tmp_path / "cache"
    base = ["run", "--dataset", str(folder), "--backbones", "raw_pixels", "--pretexts", "none", "--clusterers",
            "kmeans", "--probe-k", "4", "--no-progress", "--image-size", "32"]
    flags = {a for a in extra if a.startswith("--")}
    args = base + (["--out", str(out)] if "--out" not in flags else []) + \
        (["--cache-dir", str(cache)] if "--cache-dir" not in flags else []) + extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for pattern in expect:
        assert pattern in err, (pattern, err)
    assert not out.exists() and not cache.exists(), "a bad input created files"
    assert not (Path(bad_files["evil"]).parent / "pwned").exists(), "a pickle ran code"


BENCH_CASES = {
    "image size 0": (["--image-size", "0"], ["--image-size 0", "8..1024"]),
    "batch size 0": (["--batch-size", "0"], ["--batch-size 0", ">= 1"]),
    "iters 0": (["--iters", "0"], ["--iters 0", ">= 1"]),
    "warmup -1": (["--warmup", "-1"], ["--warmup -1", ">= 0"]),
    "precision": (["--precision", "fp8"], ["'fp8'", "fp32, bf16, fp16"]),
    "channels last": (["--channels-last", "maybe"], ["'maybe'", "off, on, both"]),
    "backbone": (["--backbones", "resnet99"], ["'resnet99'", "resnet18"]),
    "vgg too small": (["--backbones", "vgg16", "--image-size", "16"], ["16", "at least 32"]),
    "pretext without training": (["--pretexts", "none"], ["'none'", "training pretext"]),
}


@pytest.mark.parametrize("case", list(BENCH_CASES))
def test_bench_bad_input(case, tmp_path, capsys):
    extra, expect = BENCH_CASES[case]
    assert main(["bench", "--out", str(tmp_path / "h.jsonl"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(p in err for p in expect), err
    assert not (tmp_path / "h.jsonl").exists()


def _entry(key: str = "infer/resnet18", ips: float = 100.0, fid: str = "m1") -> str:
    return json.dumps({"key": key, "fingerprint": {"id": fid}, "img_per_s": ips})


COMPARE_CASES = {
    "threshold nan": ([_entry()], [_entry()], ["--max-regression", "nan"], ["nan", "0 <= value < 100"]),
    "threshold negative": ([_entry()], [_entry()], ["--max-regression", "-5"], ["-5", "0 <= value < 100"]),
    "empty new history": ([_entry()], [], [], ["new.jsonl", "no entries"]),
    "non-object line": ([_entry()], ["[1, 2]"], [], ["line 1 is list", "JSON object"]),
    "not json": ([_entry()], ["{oops"], [], ["line 1 is not JSON"]),
    "missing key": ([_entry()], [json.dumps({"fingerprint": {"id": "m1"}, "img_per_s": 3})], [], ["no 'key'"]),
    "missing fingerprint": ([json.dumps({"key": "a", "img_per_s": 3})], [_entry()], [], ["'fingerprint.id'"]),
    "zero baseline": ([_entry(ips=0.0)], [_entry()], [], ["img_per_s 0.0", "finite number > 0"]),
    "nothing comparable": ([_entry(fid="m1")], [_entry(fid="m2")], [], ["nothing to compare"]),
}


@pytest.mark.parametrize("case", list(COMPARE_CASES))
def test_compare_bad_input_exit_2(case, tmp_path, capsys):
    base, new, extra, expect = COMPARE_CASES[case]
    (tmp_path / "base.jsonl").write_text("".join(x + "\n" for x in base))
    (tmp_path / "new.jsonl").write_text("".join(x + "\n" for x in new))
    assert main(["compare", str(tmp_path / "base.jsonl"), str(tmp_path / "new.jsonl"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert all(p in err for p in expect), err


def test_compare_exit_1_on_regression_and_0_when_compared(tmp_path, capsys):
    (tmp_path / "base.jsonl").write_text(_entry(ips=100.0) + "\n")
    (tmp_path / "slow.jsonl").write_text(_entry(ips=10.0) + "\n")
    (tmp_path / "same.jsonl").write_text(_entry(ips=99.0) + "\n")
    assert main(["compare", str(tmp_path / "base.jsonl"), str(tmp_path / "slow.jsonl")]) == 1
    assert main(["compare", str(tmp_path / "base.jsonl"), str(tmp_path / "same.jsonl")]) == 0


def test_other_commands_name_the_bad_folder(tmp_path, capsys):
    for args, word in ((["report", str(tmp_path / "nope")], "nope"), (["recommend", str(tmp_path)], "no cells.csv"),
                       (["predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "p.csv")], "manifest.json")):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_an_internal_error_is_exit_1_never_a_usage_error(folder, tmp_path, capsys, monkeypatch):
    import benchmark.driver.run

    def broken(*a, **k):
        raise ValueError("an internal bug")  # a plain ValueError from library code is not the user's fault

    monkeypatch.setattr(benchmark.driver.run, "make_plan", broken)
    rc = main(["run", "--dataset", str(folder), "--backbones", "raw_pixels", "--pretexts", "none", "--clusterers",
               "kmeans", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("internal error") and "an internal bug" in err and "\n" not in err


def test_a_failed_cell_gives_exit_3_with_a_summary_and_its_traceback_in_run_log(folder, tmp_path, capsys,
                                                                              monkeypatch):
    from registry.clusterers import CLUSTERERS, Clusterer

    class Boom(Clusterer):
        def fit(self, X):
            raise RuntimeError("boom on purpose")

    monkeypatch.setitem(CLUSTERERS._members, "boom", Boom)
    out = tmp_path / "o"
    rc = main(["run", "--dataset", str(folder), "--backbones", "raw_pixels", "--pretexts", "none", "--clusterers",
               "kmeans,boom", "--probe-k", "4", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
               "--no-progress", "--seed", "0"])
    err = capsys.readouterr().err
    assert rc == 3 and "1 of 2 cells failed" in err and "boom on purpose" in err
    log = (out / "run.log").read_text()
    assert "boom on purpose" in log and "Traceback" in log and "finished: 2 cells, 1 failed" in log
    assert json.loads((out / "run.json").read_text())["failed_cells"] == 1


def _tiny(folder: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--dataset", str(folder), "--backbones", "raw_pixels,resnet18", "--pretexts", "none,rotation",
            "--clusterers", "kmeans", "--probe-k", "4", "--image-size", "16", "--max-steps", "2", "--batch-size", "8",
            "--cache-dir", str(tmp_path / "c"), "--no-progress",
            *([] if "--seeds" in extra else ["--seed", "0"]), *extra]


def test_resume_refuses_other_settings_naming_them_even_without_run_json(folder, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_tiny(folder, tmp_path, "--out", str(out))) == 0
    rows = (out / "cells.csv").read_text()
    assert main(_tiny(folder, tmp_path, "--out", str(out), "--resume", "--max-steps", "3", "--seeds", "5")) == 2
    err = capsys.readouterr().err
    assert "computed with another configuration" in err and "train.max_steps (2 -> 3)" in err
    (out / "run.json").unlink()
    assert main(_tiny(folder, tmp_path, "--out", str(out), "--resume", "--max-steps", "3", "--seeds", "5")) == 2
    err = capsys.readouterr().err
    assert "resnet18/random/rotation/kmeans/0 computed with another configuration" in err
    assert "run.json is missing" in err
    assert (out / "cells.csv").read_text() == rows  # nothing mixed in
    # adding seeds with the same settings is an extension: the old rows are kept, the new ones computed
    assert main(_tiny(folder, tmp_path, "--out", str(out), "--resume", "--seeds", "5")) == 0
    df = __import__("pandas").read_csv(out / "cells.csv")
    assert sorted(set(df.seed)) == [0, 5] and len(df) == 8


def test_resume_uses_the_runs_thread_count(folder, tmp_path, capsys):
    out = tmp_path / "o"
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert main(_tiny(folder, tmp_path, "--out", str(out))) == 0
        rows = (out / "cells.csv").read_text()
        torch.set_num_threads(2)
        with pytest.warns(UserWarning, match="the run used 1 torch threads and this process has 2; using 1"):
            assert main(_tiny(folder, tmp_path, "--out", str(out), "--resume")) == 0
        assert torch.get_num_threads() == 1 and (out / "cells.csv").read_text() == rows
        assert json.loads((out / "run.json").read_text())["threads"]["torch_intra_op"] == 1
    finally:
        torch.set_num_threads(before)


def test_two_runs_cannot_write_one_folder(folder, tmp_path, capsys):
    from benchmark.store.artifacts import RunFolder

    out = tmp_path / "o"
    with RunFolder(out).lock():
        assert main(_tiny(folder, tmp_path, "--out", str(out))) == 2
    err = capsys.readouterr().err
    assert "another run (pid" in err and str(out) in err
    assert not (out / "cells.csv").exists()


def test_disk_space_is_checked_before_the_decode(folder, tmp_path, capsys, monkeypatch):
    import shutil

    import benchmark.config.checks

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(benchmark.config.checks.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    assert main(_tiny(folder, tmp_path, "--out", str(tmp_path / "o"))) == 2
    err = capsys.readouterr().err
    assert "bad --cache-dir" in err and "MB are free" in err
    assert not (tmp_path / "c" / "images").exists() and not (tmp_path / "o").exists()


def test_files_respect_the_umask_and_warnings_reach_run_log(folder, tmp_path):
    import os
    import stat

    out = tmp_path / "o"
    with pytest.warns(UserWarning, match="fewer than"):
        assert main(_tiny(folder, tmp_path, "--out", str(out), "--probe-k", "20")) == 0
    mask = os.umask(0)
    os.umask(mask)
    for p in [out / "cells.csv", out / "run.json", *(tmp_path / "c").rglob("*.json")]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, p
    log = (out / "run.log").read_text()
    assert "fewer than 21 labeled images" in log and "finished: 4 cells, 0 failed" in log


def test_a_umask_is_honoured_by_every_writer(tmp_path):
    import subprocess
    import sys

    code = ("import os; os.umask(0o027)\n"
            "from pathlib import Path\nimport numpy as np\n"
            "from benchmark.store.files import write_json, save_npy, write_record, save_checked_bytes\n"
            f"d = Path({str(tmp_path)!r})\n"
            "write_json(d / 'a.json', {}); save_npy(d / 'b.npy', np.zeros(2)); save_checked_bytes(d / 'c.px', b'x')\n"
            "write_record(d / 'd.json', {}, {'npy': d / 'b.npy'})\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    import stat

    for name in ("a.json", "b.npy", "c.px", "d.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
