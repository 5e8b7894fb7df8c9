"""Ray vs serial on one machine, as interleaved pairs: ``python benchmarks/ray_overhead.py --preset default
--pairs 3 --out benchmarks/ray-overhead.json [-- extra run flags]``. Any two configurations the same way:
``--a "--executor ray --ray-num-cpus 1" --b "--executor ray --ray-num-cpus 2"`` (Ray's scaling with its CPUs).

Each run is a fresh process with an empty cache of its own (so the Ray run computes, never reads the serial
run's artifacts); the order alternates serial, ray, serial, ray, ... so drift of the machine's speed falls on
both. Prints and writes the wall time of every run (the whole command, Ray's start-up included), the
ratio per pair and its median, the stage seconds from run.json, and whether every pair's cells.csv are equal
(every non-timing column)."""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_run(preset: str, label: str, flags: list[str], extra: list[str], keep: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"overhead-{label}-"))
    cmd = [sys.executable, "-m", "benchmark", "run", "--preset", preset, *flags, "--out",
           str(work / "out"), "--cache-dir", str(work / "cache"), "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{label} run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    info = json.loads((work / "out" / "run.json").read_text())
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "out" / "cells.csv", keep / "cells.csv")
    shutil.rmtree(work, ignore_errors=True)
    return {"config": label, "flags": flags, "wall_s": round(wall, 2), "grid_wall_s": round(info["wall_s"], 2),
            "stage_s": {k: round(v, 1) for k, v in info["stage_s"].items()}, "cells": str(keep / "cells.csv")}


def equal_cells(a: str, b: str) -> bool:
    from benchmark.scoring.columns import timing_columns  # importable once ROOT is on sys.path

    x, y = (pd.read_csv(p).drop(columns=timing_columns()) for p in (a, b))
    return x.equals(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ray-overhead.json")
    ap.add_argument("--a", default="--executor serial", help="flags of the first run of each pair")
    ap.add_argument("--b", default="--executor ray", help="flags of the second run of each pair")
    ap.add_argument("extra", nargs="*", help="run flags for both (after --)")
    args = ap.parse_args()
    configs = {"serial" if args.a == "--executor serial" else "a": args.a.split(),
               "ray" if args.b == "--executor ray" else "b": args.b.split()}
    (name_a, name_b) = configs
    keep = Path(tempfile.mkdtemp(prefix="overhead-cells-"))
    runs, pairs = [], []
    for i in range(args.pairs):
        pair = {}
        for ex, flags in configs.items():
            r = one_run(args.preset, ex, flags, args.extra, keep / f"{i}-{ex}")
            runs.append(r)
            pair[ex] = r
            print(f"pair {i} {ex:6s} {r['wall_s']:8.1f} s  stages {r['stage_s']}", flush=True)
        pairs.append({"ratio": round(pair[name_b]["wall_s"] / pair[name_a]["wall_s"], 4),
                      "equal_cells": equal_cells(pair[name_a]["cells"], pair[name_b]["cells"])})
        print(f"pair {i}: {name_b} / {name_a} = {pairs[-1]['ratio']:.3f}, cells equal: {pairs[-1]['equal_cells']}",
              flush=True)
    ratios = [p["ratio"] for p in pairs]
    result = {"preset": args.preset, "a": args.a, "b": args.b, "extra": args.extra, "pairs": pairs, "runs": runs,
              "median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
              "all_equal": all(p["equal_cells"] for p in pairs),
              "first_across_pairs_equal": all(equal_cells(runs[0]["cells"], r["cells"]) for r in runs[2::2])}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"median {name_b} / {name_a} {result['median_ratio']:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
          f"cells equal in every pair: {result['all_equal']}; written to {args.out}")


if __name__ == "__main__":
    main()
