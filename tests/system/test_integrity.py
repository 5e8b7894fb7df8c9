"""Integrity of every artifact: for each kind in the store, truncate it, flip bytes at random positions, or
break its header; the rerun recomputes it (with one warning) and the results equal a clean run's. A
tampered export is refused by predict before anything is loaded."""
from __future__ import annotations

import json
import shutil
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli.main import main
from benchmark.config.specs import ClusterSpec, GridSpec, ProbeSpec, TrainSpec
from benchmark.driver.run import run_grid
from benchmark.scoring import columns
from benchmark.store.files import CorruptArtifact

TIMING = set(columns.timing_columns())
MODES = ("truncate", "flip", "header")


def _spec(folder: Path) -> GridSpec:
    return GridSpec(dataset=str(folder), backbones=("raw_pixels", "resnet18"), pretexts=("none", "rotation"),
                    clusterers=("kmeans", "hdbscan"), image_size=16, device="cpu",
                    train=TrainSpec(epochs=1, batch_size=8, max_steps=2), probe=ProbeSpec(k_per_class=3, draws=2),
                    cluster=ClusterSpec(min_samples=3))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A folder with one broken file (a skip record), a clean run and its store."""
    from tests.conftest import write_photo_folder

    base = tmp_path_factory.mktemp("integrity")
    folder = write_photo_folder(base / "photos", n_per_class=10, size=(36, 30))
    (folder / "checks" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run_grid(_spec(folder), base / "run", base / "cache", progress=False)
    return folder, base / "run", base / "cache"


def _frame(out: Path) -> pd.DataFrame:
    df = pd.read_csv(out / "cells.csv")
    return df[[c for c in columns.names() if c not in TIMING]]


def damage(path: Path, mode: str, rng: np.random.Generator) -> None:
    """Truncate at a random length, flip 8 random bytes anywhere in the file, or flip bytes of its first 64."""
    data = bytearray(path.read_bytes())
    if mode == "truncate":
        data = data[:int(rng.integers(0, len(data)))]
    else:
        hi = min(64, len(data)) if mode == "header" else len(data)
        for pos in rng.choice(hi, size=min(8, hi), replace=False):
            data[pos] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))


# artifact kind -> files of that kind to damage (glob under the store), and the artifacts removed so that the
# damaged one is actually consumed by a recomputation (a cached downstream artifact would hide a wrong input)
AFTER_FEATURES = ("probes", "reductions", "cells")
AFTER_IMAGES = ("weights", "features") + AFTER_FEATURES
KINDS = {
    "images": ("images/*", AFTER_IMAGES),
    "files": ("files/*/*/*.px", ("images",) + AFTER_IMAGES),
    "skip records": ("files/*/*/*.skip.json", ("images",) + AFTER_IMAGES),
    "memo": ("files/memo/*.json", AFTER_IMAGES),
    "labels": ("labels/*.json", AFTER_FEATURES),
    "weights": ("weights/*", ("features",) + AFTER_FEATURES),
    "features": ("features/*", AFTER_FEATURES),
    "probes": ("probes/*.json", ()),
    "reductions": ("reductions/*", ("cells",)),
    "cells": ("cells/*", ()),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_damaged_artifact_is_recomputed_and_the_results_equal_a_clean_run(kind, mode, clean, tmp_path):
    folder, ref, cache0 = clean
    cache = tmp_path / "cache"
    shutil.copytree(cache0, cache)
    pattern, drop = KINDS[kind]
    rng = np.random.default_rng(zlib.crc32(f"{kind}/{mode}".encode()))
    files = sorted(cache.glob(pattern))
    assert files, pattern
    targets = [files[int(rng.integers(len(files)))]]
    if kind in ("images", "weights", "features", "reductions", "cells"):  # the data file or its record
        targets = [f for f in files if f.name.split(".")[0] == targets[0].name.split(".")[0]]
        targets = [targets[int(rng.integers(len(targets)))]]
    for t in targets:
        damage(t, mode, rng)
    for kind_ in drop:
        shutil.rmtree(cache / kind_, ignore_errors=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_grid(_spec(folder), tmp_path / "run", cache, progress=False)
    pd.testing.assert_frame_equal(_frame(ref), _frame(tmp_path / "run"))
    said = [str(w.message) for w in caught if issubclass(w.category, CorruptArtifact)]
    if kind == "labels":  # rewritten from the listing by every run before anything reads it
        from benchmark.store.files import read_record

        assert read_record(targets[0]) is not None
    else:
        assert any(targets[0].name in m for m in said), said  # one warning names the damaged file


def test_damaged_weights_are_never_exported(clean, tmp_path, capsys):
    folder, ref, cache0 = clean
    cache = tmp_path / "cache"
    shutil.copytree(cache0, cache)
    out = tmp_path / "run"
    run_grid(_spec(folder), out, cache, progress=False)
    pt = sorted((cache / "weights").glob("*.pt"))[0]
    damage(pt, "flip", np.random.default_rng(1))
    rc = main(["export", str(out), "--cell", "resnet18/rotation/kmeans", "--to", str(tmp_path / "exp")])
    err = capsys.readouterr().err
    assert rc == 2 and "trained weights of resnet18/random/rotation/kmeans/0" in err


def _export(clean, tmp_path) -> tuple[Path, Path]:
    folder, ref, cache0 = clean
    exp = tmp_path / "exp"
    shutil.copytree(ref, tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    info["cache_dir"] = str(cache0)
    (tmp_path / "run" / "run.json").write_text(json.dumps(info))
    assert main(["export", str(tmp_path / "run"), "--cell", "resnet18/rotation/hdbscan", "--to", str(exp)]) == 0
    return folder, exp


@pytest.mark.parametrize("name", ["manifest.json", "backbone.pt", "preprocess.npz", "clusterer.npz",
                                  "clusterer.json"])
def test_predict_refuses_a_tampered_export_before_loading_anything(name, clean, tmp_path, capsys, monkeypatch):
    folder, exp = _export(clean, tmp_path)
    assert main(["predict", str(exp), str(folder), "--out", str(tmp_path / "ok.csv"), "--no-progress"]) == 0
    damage(exp / name, "flip", np.random.default_rng(7))
    import benchmark.outputs.export

    def never(*a, **k):
        raise AssertionError("loaded a tampered export")

    monkeypatch.setattr(benchmark.outputs.export, "_load_recipe", never)
    capsys.readouterr()
    rc = main(["predict", str(exp), str(folder), "--out", str(tmp_path / "p.csv"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "damaged or tampered" in err and "\n" not in err, err
    assert not (tmp_path / "p.csv").exists()


def test_a_consistent_but_hostile_export_still_runs_no_code(clean, tmp_path, capsys):
    """Replace the clusterer's arrays with an object array (a pickle inside the npz) and rewrite the
    manifest's checksums to match: predict refuses to load it, and the pickle never runs."""
    import pickle

    from benchmark.store.files import read_json, write_record

    folder, exp = _export(clean, tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    arr = np.empty(1, dtype=object)
    arr[0] = Evil()
    with open(exp / "clusterer.npz", "wb") as fh:
        np.savez(fh, payload=arr)
    (exp / "backbone.pt").write_bytes(pickle.dumps(Evil()))
    manifest = read_json(exp / "manifest.json")
    listed = manifest.pop("_integrity")["files"]
    write_record(exp / "manifest.json", manifest, {name: exp / name for name in listed})
    rc = main(["predict", str(exp), str(folder), "--out", str(tmp_path / "p.csv"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot load it" in err, err
    assert not marker.exists()
