"""Command line: `reproduce` (published numbers vs ours, benchmark/reproductions.toml)."""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

from benchmark.cli.common import PATH, RESULTS, UsageError, add_arg, ints_of, user_errors
from benchmark.config.presets import spec_from_config
from benchmark.config.specs import MAX_SEED
from benchmark.driver.run import run_grid
from benchmark.interfaces import Constraint, Status
from benchmark.outputs import reproduce


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _config(name: str, args: argparse.Namespace, override: dict[str, Any] | None = None) -> dict[str, Any]:
    e = reproduce.entry(name)
    cfg = e["grid"]
    if args.full and "full" in e:  # the paper's whole training budget (opt-in: long)
        cfg = _merge(cfg, e["full"])
    cfg = _merge(cfg, override or {})  # a variant's own settings come last (the conv autoencoder keeps its epoch)
    if args.smoke:  # a CI-sized run of the protocol: a few hundred images, one seed, no verdict
        cfg.update(e.get("smoke", {}))
        cfg["seeds"] = cfg["seeds"][:1]
        cfg.setdefault("train", {})["max_steps"] = min(int(cfg.get("train", {}).get("max_steps") or 3), 3)
        cfg["train"]["epochs"] = 1
    if args.seeds:
        cfg["seeds"] = list(ints_of("--seeds", args.seeds, SEEDS))
    return cfg


def cmd_reproduce(args: argparse.Namespace) -> int:

    with user_errors():
        if args.list or not args.name:
            for name in reproduce.names():
                print(f"{name:22} {reproduce.entry(name).get('title', '')}")
            return 0
        runs = [(v, spec_from_config(_config(args.name, args, over))) for v, over in reproduce.variants(args.name)]
    out = Path(args.out) if args.out else RESULTS / f"reproduce-{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    cache = Path(args.cache_dir) if args.cache_dir else RESULTS.parent / ".cache"
    t0 = time.perf_counter()
    n_images = 0
    for variant, spec in runs:
        folder = reproduce.run_folder(out, variant)
        with user_errors():
            result = run_grid(spec, folder, cache, resume=args.resume, progress=not args.no_progress)
        failed = [r for r in result.rows if r["status"] == Status.FAILED]
        if failed:
            raise RuntimeError(f"{len(failed)} cells failed, e.g. {failed[0]['error']} (see {folder / 'run.log'})")
        n_images = result.images.n
    rows = reproduce.evaluate(args.name, out, verdicts=not args.smoke)
    facts = f"seeds {list(runs[0][1].seeds)}, {n_images} images, {time.perf_counter() - t0:.1f} s; run folder {out}"
    html, _md = reproduce.write_report(args.name, out, rows, facts)
    print(f"{args.name}: {reproduce.entry(args.name).get('title', '')}")
    print(facts)
    print(reproduce.table(rows))
    for line in reproduce.ordering_lines(rows) + reproduce.largest_gaps(rows):
        print(line)
    print(f"report: {html}")
    if args.smoke:
        print("smoke run: no verdict (a few hundred images)")
        return 0
    bad = [r for r in rows if r.failed]
    print(f"{len(rows) - len(bad)} of {len(rows)} rows within tolerance or reported"
          + (f"; outside: {', '.join(r.metric for r in bad)}" if bad else ""))
    return 1 if bad else 0


SEEDS = Constraint("ints", 0, MAX_SEED)


def add_reproduce_command(sub: Any) -> None:
    rp = sub.add_parser("reproduce", help="run a reproduction of published numbers; published vs ours")
    add_arg(rp, "name", constraint=Constraint("text"), nargs="?", help="a reproduction (see --list)")
    rp.add_argument("--list", action="store_true", help="list the reproductions")
    rp.add_argument("--smoke", action="store_true", help="a CI-sized run (few hundred images, one seed), no verdict")
    add_arg(rp, "--seeds", constraint=SEEDS, help="override the seeds, e.g. 0,1,2")
    rp.add_argument("--full", action="store_true", help="the paper's whole training budget where the reproduction "
                                                        "has a shorter default (fmnist-ae-kmeans: 300 epochs, hours)")
    add_arg(rp, "--out", constraint=PATH, help="run folder (default results/reproduce-<name>-<time>)")
    add_arg(rp, "--cache-dir", constraint=PATH, help="the artifact store")
    rp.add_argument("--resume", action="store_true")
    rp.add_argument("--no-progress", action="store_true")
    rp.set_defaults(func=cmd_reproduce)


__all__ = ["add_reproduce_command", "UsageError"]
