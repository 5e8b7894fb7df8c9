"""Files the harness wrote are verified, not trusted (issue 23, items 2-4): run folders carry a schema version,
the sha256 of each CSV and a digest per cells.csv row; a file fuzz feeds damaged copies of every file kind
read back, with the outcome stated per kind (refusal, or recompute on --resume) and a planted value in no
output. Plus the run-folder boundaries of the same issue: export --force, predict reading only what the
manifest lists, any file name (not UTF-8 included) end to end, the machine failing mid-run (exit 1)."""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli.main import main
from tests.conftest import make_photo

PLANTED = "0.999999"
SCHEMA = 2


def escape_name(name: str) -> str:
    """The documented escape (docs/results.md), written here from the docs: a byte that is not UTF-8 as \\xNN,
    a backslash doubled."""
    raw = os.fsencode(name)
    out, i = [], 0
    while i < len(raw):
        for size in (1, 2, 3, 4):
            try:
                ch = raw[i:i + size].decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append("\\\\" if ch == "\\" else ch)
            i += size
            break
        else:
            out.append(f"\\x{raw[i]:02x}")
            i += 1
    return "".join(out)


def unescape_name(text: str) -> bytes:
    """The file name's bytes of an escaped name."""
    out, i = bytearray(), 0
    while i < len(text):
        if text.startswith("\\\\", i):
            out += b"\\"
            i += 2
        elif text.startswith("\\x", i):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out += text[i].encode("utf-8")
            i += 1
    return bytes(out)


TIMING = ["train_s", "extract_s", "cluster_s", "images_per_s"]


def _argv(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["run", "--preset", "quick", "--dataset", "digits", "--limit", "80", "--backbones", "raw_pixels",
            "--pretexts", "none", "--clusterers", "kmeans,agglomerative", "--k", "4", "--seeds", "0,1", "--out",
            str(out), "--cache-dir", str(cache), "--no-progress", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("integrity")
    out, cache = base / "run", base / "cache"
    assert main(_argv(out, cache)) == 0
    return out, cache


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    out, _ = finished
    dst = tmp_path / "run"
    shutil.copytree(out, dst)
    return dst


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _same_rows(a: Path, b: Path) -> None:
    x = pd.read_csv(a / "cells.csv").drop(columns=TIMING)
    y = pd.read_csv(b / "cells.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(x, y)


def test_run_json_records_the_schema_and_the_checksum_of_every_file(finished):
    out, _ = finished
    ig = json.loads((out / "run.json").read_text())["integrity"]
    assert ig["schema"] == SCHEMA == 2
    assert set(ig["files"]) == {"cells.csv", "summary.csv", "assignments.csv", "skipped.csv"}
    assert len(ig["rows"]) == len(pd.read_csv(out / "cells.csv")) == 4


def test_a_copied_folder_verifies_by_its_own_checksums_with_the_store_gone(copy, tmp_path, capsys):
    info = json.loads((copy / "run.json").read_text())
    info["cache_dir"] = str(tmp_path / "pruned")  # the store pruned away: the folder's own sums suffice
    (copy / "run.json").write_text(json.dumps(info))  # run.json itself is not sealed by its own checksum
    assert main(["recommend", str(copy)]) == 0 and main(["diff", str(copy), str(copy)]) == 0
    _set_field(copy / "cells.csv", 1, "silhouette", PLANTED)
    capsys.readouterr()
    assert main(["recommend", str(copy)]) == 2
    line = _err_line(capsys)
    assert "cells.csv row 2 (raw_pixels/none/" in line and "does not match the digest" in line


# the file fuzz: (file, how it is damaged) -> what the readers do and what --resume does
def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 40])


def _rename_header(p: Path) -> None:
    text = p.read_text()
    p.write_text(text.replace("silhouette", "silhouettex", 1))


def _not_utf8(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:30] + b"\xff\xfe\x00" + p.read_bytes()[30:])


def _set_field(p: Path, row: int, column: str, value: str) -> None:
    """One field of one row changed as text; every other field keeps its exact text (a pandas round trip
    would reformat the floats of other rows too)."""
    with open(p, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    table[row + 1][table[0].index(column)] = value
    with open(p, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(table)


def _out_of_range(p: Path) -> None:
    _set_field(p, 0, "silhouette", "7.5")


def _plant(p: Path) -> None:
    _set_field(p, 0, "silhouette", PLANTED)


def _plant_summary(p: Path) -> None:
    _set_field(p, 0, "silhouette_mean", PLANTED)


def _plant_assignment(p: Path) -> None:
    with open(p, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    col = [c for c in header if c.count("/") == 4][0]  # backbone/init/pretext/clusterer/seed
    _set_field(p, 0, col, "3" if open(p).read().splitlines()[1].split(",")[header.index(col)] != "3" else "2")


FUZZ = {
    # case: (file, damage, readers' message, --resume: "recompute" (exit 0, rows equal) or "refuse" (exit 2))
    "cells truncated": ("cells.csv", _truncate, "cells.csv row 4", "recompute"),
    "cells header renamed": ("cells.csv", _rename_header, "header is not one this harness writes", "refuse"),
    "cells not utf-8": ("cells.csv", _not_utf8, "not UTF-8", "refuse"),
    "cells score out of range": ("cells.csv", _out_of_range, "cells.csv row 1", "recompute"),
    "cells planted score": ("cells.csv", _plant, "cells.csv row 1", "recompute"),
    "summary planted": ("summary.csv", _plant_summary, "summary.csv does not match", "recompute"),
    "assignments edited": ("assignments.csv", _plant_assignment, "assignments.csv does not match", "recompute"),
    "run.json truncated": ("run.json", _truncate, "run.json is not a JSON object", "refuse"),
    "run.json not utf-8": ("run.json", _not_utf8, "not UTF-8", "refuse"),
}


@pytest.mark.parametrize("case", sorted(FUZZ))
def test_file_fuzz_readers_refuse_and_resume_recomputes(case, finished, copy, capsys):
    name, damage, message, on_resume = FUZZ[case]
    out, cache = finished
    damage(copy / name)
    before = sorted(p.name for p in copy.iterdir())
    for argv in (["report", str(copy)], ["recommend", str(copy)], ["diff", str(out), str(copy)],
                 ["export", str(copy), "--to", str(copy.parent / "x")]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        line = _err_line(capsys)
        assert message in line and str(copy) in line, (argv, line)
        assert PLANTED not in line
    assert sorted(p.name for p in copy.iterdir()) == before and not (copy.parent / "x").exists()
    capsys.readouterr()
    rc = main(_argv(copy, cache, "--resume"))
    printed = capsys.readouterr()
    if on_resume == "refuse":
        assert rc == 2 and "bad --resume" in printed.err
        return
    assert rc == 0, printed.err
    _same_rows(out, copy)
    for f in ("cells.csv", "summary.csv", "assignments.csv"):
        assert PLANTED not in (copy / f).read_text()
    assert (copy / "assignments.csv").read_text() == (out / "assignments.csv").read_text()
    assert PLANTED not in printed.out
    assert main(["recommend", str(copy)]) == 0  # sealed again


def test_resume_of_a_folder_without_checksums_compares_rows_with_the_store(finished, copy, capsys):
    """An older folder (schema 1): a hand-edited score differs from the store's checksummed cell record and
    is recomputed, not kept."""
    out, cache = finished
    info = json.loads((copy / "run.json").read_text())
    info.pop("integrity")
    info.pop("run_folder_schema")
    (copy / "run.json").write_text(json.dumps(info))
    _plant(copy / "cells.csv")
    assert main(["recommend", str(copy)]) == 0  # no checksums to check: read as it is (ranges are fine)
    with pytest.warns(UserWarning, match="differs from the store's record of its cell"):
        assert main(_argv(copy, cache, "--resume")) == 0
    _same_rows(out, copy)


def test_export_refuses_a_non_empty_target_and_force_replaces_it_whole(finished, tmp_path, capsys):
    out, _ = finished
    to = tmp_path / "exp"
    assert main(["export", str(out), "--to", str(to)]) == 0
    files = sorted(p.name for p in to.iterdir())
    (to / "stale.txt").write_text("old")
    assert main(["export", str(out), "--to", str(to)]) == 2
    assert "not empty" in _err_line(capsys) and (to / "stale.txt").is_file()
    assert main(["export", str(out), "--to", str(to), "--force"]) == 0
    assert sorted(p.name for p in to.iterdir()) == files  # the stale file went with the old folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp.")]  # no staging folder left
    (tmp_path / "file").write_text("x")
    assert main(["export", str(out), "--to", str(tmp_path / "file")]) == 2
    assert "it is a file" in _err_line(capsys)


def test_predict_loads_only_what_the_manifest_lists(finished, tmp_path, capsys):
    out, _ = finished
    to, images = tmp_path / "exp", tmp_path / "img"
    assert main(["export", str(out), "--to", str(to)]) == 0
    (to / "backbone.pt").write_bytes(b"not a checkpoint, and not listed")  # raw pixels have no weights
    images.mkdir()
    make_photo(0, np.random.default_rng(0), (20, 20)).save(images / "a.png")
    assert main(["predict", str(to), str(images), "--out", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    assert main(["predict", str(to), str(images), "--out", str(tmp_path), "--no-progress"]) == 2
    assert "it is a folder" in _err_line(capsys)


def test_output_files_that_are_folders_are_refused_before_the_work(finished, tmp_path, capsys):
    out, _ = finished
    for argv, message in ((["diff", str(out), str(out), "--out", str(tmp_path)], "it is a folder"),
                          (["bench", "--backbones", "raw_pixels", "--out", str(tmp_path)], "it is a folder"),
                          (["scale", "--only", "silhouette", "--out", str(tmp_path)], "it is a folder")):
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert message in _err_line(capsys)


def test_report_into_an_unwritable_folder_is_refused_before_drawing(finished, copy, monkeypatch, capsys):
    import benchmark.config.checks as checks

    real = os.access
    monkeypatch.setattr(checks.os, "access", lambda p, mode: False if Path(p) == copy else real(p, mode))
    assert main(["report", str(copy)]) == 2
    assert "is not writable" in _err_line(capsys) and not (copy / "report.html").exists()


def _folder_with_odd_names(root: Path) -> list[bytes]:
    rng = np.random.default_rng(0)
    names = [b"plain.png", b"latin1 caf\xe9.png", b"bad \xff\xfe bytes.png", b"back\\slash.png", b"ok \xc3\xa9.png"]
    base = os.fsencode(str(root))
    os.makedirs(base, exist_ok=True)
    for i, n in enumerate(names * 2):
        path = base + b"/" + (b"%d " % i) + n
        with open(path, "wb") as fh:
            make_photo(i % 2, rng, (24, 24)).save(fh, format="PNG")
    with open(base + b"/broken \xff.jpg", "wb") as fh:
        fh.write(b"not an image")
    return names


def test_any_file_name_works_end_to_end(tmp_path, capsys):
    """Names that are not valid UTF-8 are written escaped (\\xNN, a backslash doubled) and read back: run,
    labels, report, export and predict; the harness's escape agrees with the documented one."""
    folder = tmp_path / "photos"
    _folder_with_odd_names(folder)
    listed = sorted(os.listdir(os.fsencode(str(folder))))
    labels = tmp_path / "labels.csv"
    rows = [f"{escape_name(os.fsdecode(n))},{'a' if i % 2 else 'b'}" for i, n in enumerate(listed)
            if not n.startswith(b"broken")]
    labels.write_text("filename,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["run", "--preset", "quick", "--dataset", str(folder), "--labels", str(labels), "--backbones",
                 "raw_pixels", "--pretexts", "none", "--clusterers", "kmeans", "--k", "2", "--probe-k", "2",
                 "--out", str(out), "--cache-dir", str(cache), "--no-progress"]) == 0
    assign = pd.read_csv(out / "assignments.csv", keep_default_na=False)
    assert sorted(unescape_name(p) for p in assign.path) == sorted(n for n in listed if not n.startswith(b"broken"))
    assert (assign.label != "").all()  # every escaped name in the labels file matched its image
    skipped = pd.read_csv(out / "skipped.csv")
    assert [unescape_name(p) for p in skipped.path] == [b"broken \xff.jpg"]
    assert main(["report", str(out)]) == 0
    assert main(["export", str(out), "--to", str(tmp_path / "exp")]) == 0
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "exp"), str(folder), "--out", str(pred), "--no-progress"]) == 0
    got = pd.read_csv(pred)
    assert sorted(got.path) == sorted(assign.path)
    from benchmark.interfaces import escape_name as harness_escape

    for raw in (b"bad \xff\xfe.png", b"back\\slash.png", b"caf\xc3\xa9.png", b"mixed \xc3\xa9\xe9.png"):
        assert harness_escape(os.fsdecode(raw)) == escape_name(os.fsdecode(raw))
        assert unescape_name(escape_name(os.fsdecode(raw))) == raw



def test_the_machine_failing_mid_run_is_exit_1_with_the_resume_hint(tmp_path, monkeypatch, capsys):
    from benchmark.store.artifacts import ArtifactStore

    out, cache = tmp_path / "run", tmp_path / "cache"
    real = ArtifactStore.put_cell
    calls = []

    def full(self, key, record, labels):
        calls.append(key)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.root / "cells"))
        return real(self, key, record, labels)

    monkeypatch.setattr(ArtifactStore, "put_cell", full)
    assert main(_argv(out, cache)) == 1
    line = _err_line(capsys)
    assert "No space left on device" in line and f"--resume --out {out}" in line
    done = pd.read_csv(out / "cells.csv")
    assert len(done) == 1 and (done.status == "ok").all()  # what finished is kept; no failed row
    monkeypatch.setattr(ArtifactStore, "put_cell", real)
    assert main(_argv(out, cache, "--resume")) == 0
    assert len(pd.read_csv(out / "cells.csv")) == 4


def test_a_folder_of_only_broken_files_lists_them_in_skipped_csv(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.png").write_text("no")
    out = tmp_path / "run"
    assert main(["run", "--preset", "quick", "--dataset", str(folder), "--backbones", "raw_pixels", "--pretexts",
                 "none", "--clusterers", "kmeans", "--k", "2", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 2
    assert "skipped.csv" in _err_line(capsys)
    assert sorted(pd.read_csv(out / "skipped.csv").path) == ["a.jpg", "b.png"]


def test_labels_files_that_are_not_text_or_name_one_class_are_one_line(tmp_path, photo_folder, capsys):
    base = ["run", "--preset", "quick", "--dataset", str(photo_folder), "--backbones", "raw_pixels", "--pretexts",
            "none", "--clusterers", "kmeans", "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
            "--no-progress"]
    binary = tmp_path / "labels.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert main([*base, "--labels", str(binary), "--k", "2"]) == 2
    assert "not UTF-8" in _err_line(capsys)
    one = tmp_path / "one.csv"
    one.write_text("\n".join(f"stripes/img_{i:02d}.png,car" for i in range(12)) + "\n")
    assert main([*base, "--labels", str(one)]) == 2
    assert "only 1 class" in _err_line(capsys)


@pytest.mark.parametrize("flags,message", [
    (["--limit", "1798"], "bad --limit 1798: digits has 1797 images"),
    (["--reduce", "pca:81"], "bad --reduce pca:81 (for kmeans): the data has 80 images"),
    (["--reduce", "umap:79"], "bad --reduce umap:79 (for kmeans)"),
    (["--reduce", "pca:"], "bad --reduce dimension in 'pca:'"),
    (["--reduce", "pca:99999"], "bad --reduce dimension in 'pca:99999'"),
])
def test_sizes_are_checked_against_the_data_before_compute(flags, message, tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main([*_argv(out, cache), *flags]) == 2
    assert message in _err_line(capsys)
    assert not out.exists()


def test_seeds_beyond_what_consumers_take_and_a_bad_checkpoint_interval_are_refused_before_compute(
        tmp_path, monkeypatch, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main([*_argv(out, cache), "--seeds", "4294967296"]) == 2  # 2^32: torch and KMeans overflow
    assert "bad seed 4294967296" in _err_line(capsys) and not out.exists() and not cache.exists()
    monkeypatch.setenv("SSLBENCH_CHECKPOINT_EVERY_S", "-1")
    assert main([*_argv(out, cache), "--backbones", "resnet18", "--pretexts", "rotation", "--max-steps", "2"]) == 2
    assert "SSLBENCH_CHECKPOINT_EVERY_S" in _err_line(capsys) and not out.exists() and not cache.exists()


def test_a_folder_without_run_json_is_refused_by_the_readers(copy, tmp_path, capsys):
    (copy / "run.json").unlink()
    for argv in (["export", str(copy), "--to", str(tmp_path / "x")], ["report", str(copy)],
                 ["recommend", str(copy)]):
        assert main(argv) == 2, argv
        assert "no run.json in it" in _err_line(capsys)


# the second audit (a review of this first version): damage the checksums alone do not catch
def _delete_row(folder: Path) -> None:
    lines = (folder / "cells.csv").read_text().splitlines(keepends=True)
    (folder / "cells.csv").write_text("".join(lines[:2] + lines[3:]))


def _repeat_row(folder: Path) -> None:
    lines = (folder / "cells.csv").read_text().splitlines(keepends=True)
    (folder / "cells.csv").write_text("".join(lines + lines[1:2]))


def _edit_info(**changes):
    def edit(folder: Path) -> None:
        info = json.loads((folder / "run.json").read_text())
        for key, value in changes.items():
            if value is KeyError:
                info.pop(key)
            elif key == "integrity.schema":
                info["integrity"]["schema"] = value
            else:
                info[key] = value
        (folder / "run.json").write_text(json.dumps(info))
        _plant(folder / "cells.csv")  # what the edit would let through
    return edit


AUDIT = {
    "a row deleted": (_delete_row, "a row deleted, repeated or reordered"),
    "a row repeated": (_repeat_row, "a row deleted, repeated or reordered"),
    "assignments.csv deleted": (lambda f: (f / "assignments.csv").unlink(), "assignments.csv is missing"),
    "integrity null": (_edit_info(integrity=None), "integrity is None"),
    "integrity deleted": (_edit_info(integrity=KeyError), "says schema 2 but its checksums are missing"),
    "integrity schema 1": (_edit_info(**{"integrity.schema": 1}), "says schema 2 but its checksums are of schema 1"),
    "config seeds text": (lambda f: _set_config(f, seeds="x"), "config.seeds is 'x'"),
}


def _set_config(folder: Path, **values) -> None:
    info = json.loads((folder / "run.json").read_text())
    info["config"].update(values)
    (folder / "run.json").write_text(json.dumps(info))


@pytest.mark.parametrize("case", sorted(AUDIT))
def test_damage_beyond_the_checksums_is_refused_too(case, copy, capsys):
    damage, message = AUDIT[case]
    damage(copy)
    for argv in (["report", str(copy)], ["recommend", str(copy)], ["diff", str(copy), str(copy)]):
        capsys.readouterr()
        assert main(argv) == 2, (case, argv)
        line = _err_line(capsys)
        assert message in line, line


def test_commands_never_overwrite_what_they_read(finished, tmp_path, capsys):
    out, _ = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    cells = (run / "cells.csv").read_bytes()
    for argv, message in ((["export", str(run), "--to", str(run), "--force"], "which the command reads"),
                          (["export", str(run), "--to", str(tmp_path), "--force"], "which the command reads"),
                          (["diff", str(run), str(out), "--out", str(run / "cells.csv")], "which the command reads")):
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert message in _err_line(capsys)
    assert (run / "cells.csv").read_bytes() == cells
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    assert main(["export", str(run), "--to", str(other), "--force"]) == 2
    assert "replaces only an earlier export" in _err_line(capsys) and (other / "mine.txt").is_file()
    exp = tmp_path / "exp"
    assert main(["export", str(run), "--to", str(exp)]) == 0
    assert main(["predict", str(exp), str(run), "--out", str(exp / "manifest.json"), "--no-progress"]) == 2
    assert "which the command reads" in _err_line(capsys)


def test_other_inputs_the_review_found(finished, tmp_path, capsys):
    out, cache = finished
    grid = tmp_path / "g.toml"
    grid.write_text('backbones = ["raw_pixels"]\n')
    labels = tmp_path / "header.csv"
    labels.write_text("filename,label\n")
    (tmp_path / "afile").write_text("x")
    locked = tmp_path / "locked"
    shutil.copytree(out, locked)
    (locked / ".lock").unlink(missing_ok=True)
    (locked / ".lock").mkdir()
    cases = [
        (["plan", "--preset", str(grid)], "it sets no dataset"),
        (["bench", "--backbones", "raw_pixels", "--pretexts", "jigsaw", "--out", str(tmp_path / "b.jsonl")],
         "no parameters to train"),
        (["run", "--preset", "quick", "--dataset", str(_photos(tmp_path)), "--labels", str(labels), "--backbones",
          "raw_pixels", "--pretexts", "none", "--clusterers", "kmeans", "--k", "2", "--out", str(tmp_path / "o"),
          "--cache-dir", str(cache)], "no filename,label rows"),
        (["plan", *_argv(tmp_path / "o", tmp_path / "afile")[1:]], "it is a file"),
        ([*_argv(tmp_path / "o", cache), "--reduce", "kmeans=l2,kmeans=none"], "is given twice"),
        ([*_argv(locked, cache), "--resume"], "its .lock is not a file"),
        ([*_argv(tmp_path / "o", cache), "--limit", "8", "--clusterers", "dbscan"], "default reduction umap:10"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert message in _err_line(capsys), argv
    assert not (tmp_path / "b.jsonl").exists() and not (tmp_path / "o").exists()


def _photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        make_photo(i % 2, rng, (20, 20)).save(folder / f"{i}.png")
    return folder


def test_resume_does_not_warn_about_libraries_a_process_has_not_loaded_yet():
    from benchmark.driver.resume import libraries

    then = libraries([{"api": "openblas", "version": "0.3.15"}, {"api": "openblas", "version": "0.3.31"},
                      {"api": "openmp", "version": None}])
    now = libraries([{"api": "openblas", "version": "0.3.31"}, {"api": "openmp", "version": None}])
    assert now <= then  # a subset: the resume does not warn (resume.adopt_previous)
