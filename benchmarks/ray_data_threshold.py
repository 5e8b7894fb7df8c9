"""What Ray Data extraction costs over a plain extract task, to set ``--extract-with auto``'s threshold:
``python benchmarks/ray_data_threshold.py [--sizes 1000,4000,16000] [--repeats 2]
[--out benchmarks/ray-data-threshold.json]``.

One Ray session; per image count N (a seeded subset of N of Fashion-MNIST's 70,000 images, resnet18, no pretext, 32 px),
the same extract task is run as a plain Ray task and through Ray Data (one actor, so both do the same
compute on the same cores), each with a fresh store, alternating. The extract task's own seconds (from
run.json's task placement) are fitted as ``seconds = fixed + N * per_image``: Ray Data's extra fixed cost is
the difference of the intercepts, its extra cost per image the difference of the slopes.

With P devices, Ray Data spreads one feature set over P actors and pays ``fixed`` once; a plain task runs on
one device. It wins once ``N * (t * (1 - 1/P) - e) > fixed`` (t: seconds per image on that device, e: Ray
Data's extra seconds per image), so the break-even is ``N* = fixed / (t * (1 - 1/P) - e)``; the script prints
N* for this CPU and for an H100 at the inference throughput measured in ``../shared/measurements``
(resnet50, 224 px, fp32: ~6,200 images/s)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
H100_RESNET50_IMG_S = 6172.8  # ../shared/measurements/h100-2026-11-22/infer-bench.jsonl, resnet50 bs256 224 px fp32


def extract_seconds(n: int, mode: str) -> float:
    from benchmark.cli.main import main

    work = Path(tempfile.mkdtemp(prefix=f"rdt-{mode}-"))
    try:
        flags = ["run", "--dataset", "fashion_mnist", "--split", "all", "--limit", str(n), "--backbones", "resnet18",
                 "--pretexts", "none", "--clusterers", "kmeans", "--image-size", "32", "--seed", "0", "--device", "cpu",
                 "--probe-draws", "1",
                 "--executor", "ray", "--extract-with", mode, "--no-progress", "--out", str(work / "out"),
                 "--cache-dir", str(work / "cache")]
        if mode == "ray-data":
            flags += ["--ray-pool", "1"]
        code = main(flags)
        if code != 0:
            raise SystemExit(f"{mode} run of {n} images failed ({code})")
        info = json.loads((work / "out" / "run.json").read_text())
        ext = [p for p in info["task_placement"] if p["kind"] == "extract" and p["computed"]]
        assert len(ext) == 1, ext
        got = int(pd.read_csv(work / "out" / "cells.csv")["n_images"].iloc[0])
        if got != n:
            raise SystemExit(f"asked for {n} images, the run had {got}")
        return float(ext[0]["ended"] - ext[0]["started"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(rows: list[dict]) -> dict:
    fits = {}
    for mode in ("task", "ray-data"):
        n = np.array([r["n"] for r in rows if r["mode"] == mode], float)
        s = np.array([r["seconds"] for r in rows if r["mode"] == mode], float)
        slope, intercept = np.polyfit(n, s, 1)
        fits[mode] = {"fixed_s": round(float(intercept), 3), "per_image_ms": round(float(slope) * 1e3, 4)}
    fixed = fits["ray-data"]["fixed_s"] - fits["task"]["fixed_s"]
    extra = (fits["ray-data"]["per_image_ms"] - fits["task"]["per_image_ms"]) / 1e3
    t_cpu = fits["task"]["per_image_ms"] / 1e3

    def break_even(t: float, e: float, p: int) -> int | None:
        gain = t * (1 - 1 / p) - e  # seconds saved per image by P actors, less Ray Data's own cost per image
        return int(fixed / gain) if gain > 0 else None

    return {"rows": rows, "fits": fits, "extra_fixed_s": round(fixed, 3), "extra_per_image_ms": round(extra * 1e3, 4),
            "break_even_images": {f"this CPU, P={p}": break_even(t_cpu, extra, p) for p in (2, 4)} | {
                # Ray does not run on the GPU machine: its per-image cost there is not measured, so a lower bound
                f"H100 resnet50 224px, P={p}, fixed cost only": break_even(1 / H100_RESNET50_IMG_S, 0.0, p)
                for p in (2, 4)}}


def main() -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,4000,16000")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ray-data-threshold.json")
    ap.add_argument("--summarize", action="store_true", help="recompute the fits from --out's rows, run nothing")
    args = ap.parse_args()
    if args.summarize:
        write(summarize(json.loads(args.out.read_text())["rows"]), args.out)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    temp = tempfile.mkdtemp(prefix="rdt-ray-", dir="/tmp")
    ray.init(num_cpus=2, log_to_driver=False, configure_logging=False, _temp_dir=temp)
    rows = []
    try:
        extract_seconds(sizes[0], "task")  # warm the workers (imports) before anything is timed
        for _ in range(args.repeats):
            for n in sizes:
                for mode in ("task", "ray-data"):
                    s = extract_seconds(n, mode)
                    rows.append({"n": n, "mode": mode, "seconds": round(s, 3)})
                    print(f"{n:7d} images  {mode:8s} {s:7.2f} s", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    write(summarize(rows), args.out)


def write(result: dict, out: Path) -> None:
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
