"""The memory bound of the reduce and cell stages (issue 24): on N and 4N rows of the same data, in one fresh
process warmed up on a small store first, the peak grows by less than 10% of the added feature bytes as
tracemalloc's exact peak of numpy's allocations (a whole copy of the features would add 100%), and by less
than 35% as sampled anonymous memory; and the check before a run refusing a grid whose modelled peak cannot
fit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.interfaces import BadInput
from benchmark.pipeline import footprint
from benchmark.pipeline.kinds import STAGE_KINDS, Sizes

ROOT = Path(__file__).resolve().parents[3]
N, D = 8000, 768


def _peaks(sizes: list[int]) -> dict[str, dict[str, float]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "tests.benchmark.pipeline.stage_memory", ",".join(map(str, sizes)),
                        str(D)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_reduce_and_cell_peaks_grow_by_less_than_a_tenth_of_the_added_features() -> None:
    peaks = _peaks([N, 4 * N])  # one fresh process, warmed up, then N and 4N
    small, large = peaks[str(N)], peaks[str(4 * N)]
    added = 3 * N * D * 4  # bytes of the features added
    # tracemalloc's peak is exact: under 10% of the added bytes; the sampled RssAnon also moves with the
    # allocator (seen in separate processes per size: up to 38% under the suite's load; one warmed-up process
    # for both sizes, measured: reduce +0.7%, cell +7-11%, the cell's O(N) labels and k-means copies of its
    # 8-D space): under 35%, still far below one whole copy (100%; the whole-array path measured +400%)
    for stage in ("reduce_standardize", "reduce_pca", "cell"):
        for how, bound in (("traced", 0.1), ("anon", 0.35)):
            growth = large[f"{stage}_{how}"] - small[f"{stage}_{how}"]
            assert growth < bound * added, (stage, how, growth / added, small, large)


def test_the_memory_model_grows_with_what_each_stage_holds() -> None:
    from benchmark.interfaces import ClusterSpec
    from benchmark.pipeline.plan import CellTask, ReduceTask

    cell = CellTask("c", "f", "r", "i", "l", "kmeans", 4, ClusterSpec(), 0, "cpu")
    red = ReduceTask("r", "f", "pca", 50, 0)
    mem = STAGE_KINDS["cell"].memory
    # the cluster space's copies grow with N x d; the silhouette's rows stop growing at silhouette_max_n
    assert mem(cell, Sizes(400_000, 512, 50)) - mem(cell, Sizes(100_000, 512, 50)) == pytest.approx(
        2 * 300_000 * 50 * 4 + 300_000 * 8 * 7, rel=1e-9)
    assert mem(cell, Sizes(100_000, 3072, 3072)) > mem(cell, Sizes(100_000, 3072, 50))
    rmem = STAGE_KINDS["reduce"].memory
    assert rmem(red, Sizes(400_000, 512)) == rmem(red, Sizes(100_000, 512))  # streamed: constant in N


@pytest.fixture
def digits_plan(tmp_path: Path):
    from benchmark.config.presets import spec_from_config
    from benchmark.driver.run import make_plan
    from benchmark.store.artifacts import ArtifactStore

    spec = spec_from_config({"dataset": "digits", "limit": 200, "image_size": 16, "backbones": ["raw_pixels",
                             "resnet18"], "pretexts": ["none"], "clusterers": ["kmeans", "hdbscan"]})
    return make_plan(spec, ArtifactStore(tmp_path / "cache"))[0]


def test_the_check_refuses_a_grid_that_cannot_fit_naming_the_stage_and_the_figure(digits_plan) -> None:
    plan = digits_plan
    keys = {t.key for t in plan.tasks}
    worst = max(footprint.per_stage(plan, keys).values(), key=lambda e: e.bytes)
    footprint.check_memory(plan, keys, available=worst.bytes + 1, source="a test")  # fits
    with pytest.raises(BadInput) as err:
        footprint.check_memory(plan, keys, available=worst.bytes - 1, source="a test")
    msg = str(err.value)
    assert "\n" not in msg and f"the {worst.task.kind} stage" in msg and "GB" in msg and "a test" in msg
    footprint.check_memory(plan, set(), available=1, source="a test")  # nothing to compute: nothing to refuse


def test_available_memory_reads_meminfo() -> None:
    avail, source = footprint.available_memory()
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo")
    assert avail is not None and avail > 0 and source


def test_run_refuses_before_any_compute_with_exit_2_and_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from benchmark.cli.main import main

    monkeypatch.setattr(footprint, "available_memory", lambda: (50 << 20, "MemAvailable"))
    out = tmp_path / "run"
    code = main(["run", "--dataset", "digits", "--limit", "100", "--image-size", "16", "--backbones", "raw_pixels",
                 "--pretexts", "none", "--clusterers", "kmeans", "--out", str(out), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "needs about" in err and "0.1 GB are available" in err
    assert not out.exists() and not (tmp_path / "cache" / "images").exists()
