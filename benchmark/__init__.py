"""The benchmark harness: backbones x self-supervised pretext tasks x clusterers, scored the same way.

The public API (kept stable; everything else may move between releases)::

    from pathlib import Path
    import benchmark

    spec = benchmark.spec_from_config({**benchmark.load_preset("quick"), "dataset": "digits"})
    result = benchmark.run_grid(spec, Path("results/quick"), Path(".cache"))
    run = benchmark.load_run(result.out)            # cells, summary, run.json, assignments
    print(run.cells[["backbone", "pretext", "clusterer", "nmi"]])
    benchmark.export_cell(result.out, Path("recipe"), "raw_pixels/none/kmeans")
    benchmark.predict(Path("recipe"), Path("new_photos"), Path("clusters.csv"))

Names are imported on first use (PEP 562), so ``import benchmark`` alone loads nothing heavy: worker
processes that import one module (decoding, the Ray reaper) start without torch."""
from __future__ import annotations

import importlib
from typing import Any

_API = {
    "run_grid": "benchmark.driver.run", "RunResult": "benchmark.driver.run",
    "GridSpec": "benchmark.config.specs", "TrainSpec": "benchmark.config.specs", "ProbeSpec": "benchmark.config.specs",
    "ClusterSpec": "benchmark.interfaces", "BadInput": "benchmark.interfaces",
    "load_preset": "benchmark.config.presets", "spec_from_config": "benchmark.config.presets",
    "preset_names": "benchmark.config.presets",
    "load_run": "benchmark.outputs.run_folder", "Run": "benchmark.outputs.run_folder",
    "export_cell": "benchmark.outputs.export", "predict": "benchmark.outputs.export",
    "ExecutorSpec": "benchmark.executors.base",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return __all__
