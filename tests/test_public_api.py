"""The public API of ``benchmark``: every name resolves, a grid runs, its run loads, exports and predicts."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import benchmark
from tests.conftest import write_photo_folder


@pytest.mark.parametrize("name", benchmark.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(benchmark, name) is not None


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = "import sys, benchmark, benchmark.data.decode; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_run_load_export_predict_through_the_api(tmp_path) -> None:
    folder = write_photo_folder(tmp_path / "photos", n_per_class=6, size=(20, 20))
    spec = benchmark.spec_from_config({**benchmark.load_preset("quick"), "dataset": str(folder),
                                       "backbones": ["raw_pixels"], "pretexts": ["none"], "clusterers": ["kmeans"],
                                       "image_size": 16, "probe": {"k_per_class": 2, "draws": 2}})
    result = benchmark.run_grid(spec, tmp_path / "run", tmp_path / "cache", progress=False)
    run = benchmark.load_run(result.out)
    assert list(run.cells["clusterer"]) == ["kmeans"] and run.cells["nmi"].notna().all()
    manifest = benchmark.export_cell(result.out, tmp_path / "recipe", "raw_pixels/none/kmeans")
    assert manifest["labels_match_run"] is True
    benchmark.predict(tmp_path / "recipe", folder, tmp_path / "pred.csv", device="cpu", progress=False)
    assert len(pd.read_csv(tmp_path / "pred.csv")) == 12
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        benchmark.__getattr__("nope")
