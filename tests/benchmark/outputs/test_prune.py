"""``cache --prune`` is safe by construction: a bad --runs or --older-than-days, or a run folder it cannot
read, is one line and exit 2 with nothing deleted; what it deletes is printed first."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli.main import main


def _store_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def runs_and_cache(tmp_path_factory):
    from tests.conftest import write_photo_folder

    base = tmp_path_factory.mktemp("prune")
    folder = write_photo_folder(base / "photos", n_per_class=6, size=(20, 20))
    args = ["--dataset", str(folder), "--backbones", "raw_pixels", "--pretexts", "none", "--probe-k", "2",
            "--image-size", "16", "--cache-dir", str(base / "cache"), "--no-progress", "--seed", "0"]
    assert main(["run", "--clusterers", "kmeans", "--out", str(base / "runs" / "a"), *args]) == 0
    assert main(["run", "--clusterers", "faiss_kmeans", "--out", str(base / "elsewhere"), *args]) == 0
    return base / "runs", base / "cache"


@pytest.mark.parametrize("case, runs, days, expect", [
    ("mistyped --runs", "no/such/folder", "0", "bad --runs"),
    ("--runs is a file", "@file", "0", "it is a file"),
    ("--runs holds no run", "@empty", "0", "holds no run folder"),
    ("nan days", "@runs", "nan", "bad --older-than-days nan"),
    ("negative days", "@runs", "-3", "bad --older-than-days -3.0"),
    ("an unreadable run folder", "@broken", "0", "its run.json cannot be read"),
    ("an unreadable cells.csv", "@badcells", "0", "its cells.csv"),
])
def test_a_bad_prune_is_one_line_exit_2_and_deletes_nothing(case, runs, days, expect, runs_and_cache, tmp_path,
                                                            capsys):
    good, cache = runs_and_cache
    where = {"@file": tmp_path / "a_file", "@empty": tmp_path / "empty", "@runs": good,
             "@broken": tmp_path / "broken", "@badcells": tmp_path / "badcells"}.get(runs, tmp_path / runs)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty" / "not_a_run").mkdir(parents=True)
    for name in ("broken", "badcells"):
        (tmp_path / name / "r").mkdir(parents=True)
        (tmp_path / name / "r" / "run.json").write_text((good / "a" / "run.json").read_text())
    (tmp_path / "broken" / "r" / "run.json").write_text("{half")
    (tmp_path / "badcells" / "r" / "cells.csv").write_bytes(b"feature_key\n\xff\xfe\x00 not utf-8\n")
    before = _store_files(cache)
    capsys.readouterr()
    assert main(["cache", "--cache-dir", str(cache), "--prune", "--runs", str(where),
                 "--older-than-days", days]) == 2, case
    err = capsys.readouterr().err.strip()
    assert expect in err and err.count("\n") == 0, err
    assert _store_files(cache) == before


def test_prune_says_what_it_deletes_before_it_does(runs_and_cache, capsys):
    runs, cache = runs_and_cache
    n_cells = len(list((cache / "cells").glob("*.json")))
    capsys.readouterr()
    assert main(["cache", "--cache-dir", str(cache), "--prune", "--runs", str(runs), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete" in out and "  cells: 2 files" in out  # the unused cell: its record and its labels
    assert len(list((cache / "cells").glob("*.json"))) == n_cells  # a dry run deletes nothing
