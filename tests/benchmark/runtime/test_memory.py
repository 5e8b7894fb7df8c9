"""Peak memory of a stage task (benchmark.runtime.memory): anonymous memory of the whole process tree,
file-backed pages left out, recorded per stage in run.json and shown by the report."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmark.cli.main import main
from benchmark.runtime.memory import PeakMemory, tree_anon_bytes

MIB = 2**20


def test_an_allocation_in_the_block_is_seen_and_a_memory_map_is_not(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.ones((64, MIB // 8), np.float64))  # 64 MiB on disk
    with PeakMemory() as mapped:
        m = np.load(path, mmap_mode="r")
        float(m.sum())  # every page read, file-backed
        del m
    with PeakMemory() as alloc:
        a = np.ones((160, MIB // 8), np.float64)  # 160 MiB anonymous
        time.sleep(0.6)  # a dozen samples, even when the suite's load delays the sampling thread
        del a
    base = tree_anon_bytes(__import__("os").getpid())
    assert alloc.peak is not None and alloc.peak - base > 120 * MIB
    assert mapped.peak is not None and mapped.peak - base < 40 * MIB  # the mapped pages are not counted


def test_children_are_counted():
    code = "import numpy as np, time; a = np.ones((96, 2**20 // 8)); time.sleep(1.0)"
    with PeakMemory() as tree:
        child = subprocess.Popen([sys.executable, "-c", code])
        child.wait(timeout=60)
    with PeakMemory() as alone:
        time.sleep(0.1)
    assert tree.peak is not None and alone.peak is not None
    assert tree.peak - alone.peak > 64 * MIB


def test_a_run_records_the_peak_of_each_stage_and_the_report_shows_it(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--preset", "quick", "--dataset", "digits", "--limit", "60", "--backbones", "raw_pixels",
                 "--pretexts", "none", "--clusterers", "kmeans", "--k", "3", "--out", str(out), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress"]) == 0
    peaks = json.loads((out / "run.json").read_text())["peak_anon_mib"]
    if not peaks:
        pytest.skip("no /proc here: nothing sampled")
    assert set(peaks) == {"decode", "extract", "probe", "reduce", "cell"}
    assert all(v > 10 for v in peaks.values())  # at least the interpreter with numpy and torch
    assert main(["report", str(out)]) == 0
    assert "peak memory per stage" in (out / "report.md").read_text()
