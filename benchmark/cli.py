"""Command line: ``python -m benchmark run|list`` (``run_all.py`` is ``run``). Bad values: one line, exit 2."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmark.presets import PRESETS
from benchmark.specs import ClusterSpec, GridSpec, ProbeSpec, TrainSpec
from benchmark.storage import DEFAULT_CACHE
from registry.base import UnknownNameError, unknown_message

RESULTS = Path(__file__).resolve().parent.parent / "results"


class UsageError(Exception):
    """A user-facing problem with the command line; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(message)


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", help=f"named defaults: {', '.join(PRESETS)}")
    p.add_argument("--dataset", help="digits, sample_photos, or a folder of images")
    p.add_argument("--labels", help="CSV filename,label for a folder (the rest stays unlabeled)")
    p.add_argument("--backbones", help="comma list: vgg16,resnet18,resnet34,resnet50,raw_pixels,timm:<name>")
    p.add_argument("--pretexts", help="comma list of pretext tasks (see `list`)")
    p.add_argument("--clusterers", help="comma list of clusterers (see `list`)")
    p.add_argument("--image-size", type=int, help="images are resized to S x S")
    p.add_argument("--epochs", type=int, help="pretext training epochs")
    p.add_argument("--max-steps", type=int, help="cap on pretext training steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="pretext learning rate")
    p.add_argument("--optimizer", help="sgd or adam")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu or cuda (auto: cuda when a GPU is visible)")
    p.add_argument("--k", type=int, help="clusters for k-means types when the data has no labels")
    p.add_argument("--eps", type=float, help="DBSCAN eps (default: k-distance knee)")
    p.add_argument("--probe-k", type=int, help="labeled images per class for the linear probe (default 10)")
    p.add_argument("--weights", help="local checkpoint (state_dict) for the deep backbones")
    p.add_argument("--out", help="run folder (default results/<preset>-<time>)")
    p.add_argument("--resume", action="store_true", help="finish the run in --out; finished cells are kept")
    p.add_argument("--cache-dir", help=f"cache of decoded images, features and cells (default {DEFAULT_CACHE})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_spec(args: argparse.Namespace) -> GridSpec:
    """Merge the preset with explicit flags and validate everything before any compute."""
    if args.preset not in PRESETS:
        raise UsageError(unknown_message("preset", args.preset, PRESETS))
    cfg: dict[str, Any] = dict(PRESETS[args.preset])
    for name in ("dataset", "backbones", "pretexts", "clusterers", "image_size", "epochs", "max_steps", "batch_size",
                 "lr", "optimizer", "weight_decay", "seed", "device", "k", "eps", "probe_k", "labels", "weights"):
        value = getattr(args, name)
        if value is not None:
            cfg[name] = value
    train_defaults = TrainSpec()
    try:
        spec = GridSpec(
            dataset=cfg["dataset"], backbones=_split(cfg["backbones"]), pretexts=_split(cfg["pretexts"]),
            clusterers=_split(cfg["clusterers"]), image_size=cfg.get("image_size", 32), seed=cfg.get("seed", 0),
            device=cfg.get("device", "auto"), labels=cfg.get("labels"), weights=cfg.get("weights"),
            train=TrainSpec(epochs=cfg.get("epochs", train_defaults.epochs),
                            batch_size=cfg.get("batch_size", train_defaults.batch_size),
                            lr=cfg.get("lr", train_defaults.lr), optimizer=cfg.get("optimizer", "sgd"),
                            weight_decay=cfg.get("weight_decay", train_defaults.weight_decay),
                            max_steps=cfg.get("max_steps")),
            probe=ProbeSpec(k_per_class=cfg.get("probe_k", 10)),
            cluster=ClusterSpec(k=cfg.get("k"), eps=cfg.get("eps")),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_names(spec)
    return spec


def check_names(spec: GridSpec) -> None:
    """Every name must exist in its registry (timm names against timm's list); paths must exist."""
    from registry.backbones import check_backbone, check_image_size
    from registry.clusterers import CLUSTERERS
    from registry.datasets import resolve_dataset
    from registry.pretexts import PRETEXTS

    try:
        for b in spec.backbones:
            check_backbone(b)
            check_image_size(b, spec.image_size)
        for p in spec.pretexts:
            PRETEXTS.get(p)
        for c in spec.clusterers:
            CLUSTERERS.get(c)
        resolve_dataset(spec.dataset, spec.labels)
        if spec.labels and not os.path.isfile(spec.labels):
            raise ValueError(f"bad --labels {spec.labels!r}: no such file")
        if spec.weights and not os.path.isfile(spec.weights):
            raise ValueError(f"bad --weights {spec.weights!r}: no such file")
    except (UnknownNameError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    from benchmark.results import leaderboard
    from benchmark.runner import run_grid

    out = Path(args.out) if args.out else RESULTS / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "cells.csv").exists() and not args.resume:
        raise UsageError(f"bad --out {str(out)!r}: it already holds a run; add --resume to finish it or choose "
                         "another --out")
    cache = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE
    try:
        result = run_grid(spec, out, cache, resume=args.resume, progress=not args.no_progress)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(leaderboard(result.rows))
    s = result.stats
    print(f"\n{len(result.rows)} cells, {result.images.n} images ({result.images.n_labeled} labeled, "
          f"{len(result.images.skipped)} skipped) in {result.wall_s:.1f} s; computed: {s.trained} trainings, "
          f"{s.extracted} extractions, {s.clustered} clusterings; {s.resumed_cells} cells resumed")
    if result.images.skipped:
        print(f"skipped files listed in {out / 'skipped.csv'}")
    print(f"results: {out / 'cells.csv'} (and run.json, assignments.csv)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from registry.backbones import backbone_names
    from registry.clusterers import CLUSTERERS
    from registry.datasets import DATASETS
    from registry.pretexts import PRETEXTS

    print("backbones:  " + ", ".join(backbone_names()))
    print("pretexts:   " + ", ".join(PRETEXTS.names()))
    print("clusterers: " + ", ".join(CLUSTERERS.names()))
    print("datasets:   " + ", ".join(DATASETS.names() + ["<folder path>"]))
    print("presets:    " + ", ".join(PRESETS))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark", description="Backbone x pretext x clusterer benchmark harness.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a grid and print the leaderboard")
    add_run_args(run)
    run.set_defaults(func=cmd_run)
    lst = sub.add_parser("list", help="list registered backbones, pretexts, clusterers, data sets")
    lst.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
