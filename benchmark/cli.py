"""Command line: ``python -m benchmark run|list`` (``run_all.py`` is ``run``). Bad values: one line, exit 2."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from benchmark.presets import PRESETS
from benchmark.specs import ClusterSpec, GridSpec, PretextSpec, ProbeSpec, TrainSpec
from benchmark.storage import DEFAULT_CACHE
from registry.base import UnknownNameError, unknown_message

RESULTS = Path(__file__).resolve().parent.parent / "results"


class UsageError(Exception):
    """A user-facing problem with the command line; printed as one line, exit code 2."""


@contextmanager
def user_errors() -> Iterator[None]:
    """ValueErrors raised by the library for bad user input become one-line usage errors (exit 2)."""
    try:
        yield
    except (UnknownNameError, ValueError) as exc:
        raise UsageError(str(exc)) from None


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
    p.add_argument("--jigsaw-permutations", type=int, help="jigsaw permutation set size (default 24; 100 for full-size)")
    p.add_argument("--jigsaw-gap", type=float, help="fraction of a jigsaw cell left as random gap (default 0.15)")
    p.add_argument("--color-loss", help="colorization loss: classification (default), l1 or l2")
    p.add_argument("--color-rebalance", type=float, help="colorization class-rebalancing lambda (default 0.5)")
    p.add_argument("--ae-noise", type=float, help="autoencoder input noise std (> 0: denoising variant)")
    p.add_argument("--probe-k", type=int, help="labeled images per class for the linear probe (default 10)")
    p.add_argument("--weights", help="local checkpoint (state_dict) for the deep backbones")
    p.add_argument("--out", help="run folder (default results/<preset>-<time>)")
    p.add_argument("--resume", action="store_true", help="finish the run in --out; finished cells are kept")
    p.add_argument("--cache-dir", help=f"cache of decoded images, features and cells (default {DEFAULT_CACHE})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true", help="write report.html / report.md at the end (run_all.py does)")


def build_spec(args: argparse.Namespace) -> GridSpec:
    """Merge the preset with explicit flags and validate everything before any compute."""
    if args.preset not in PRESETS:
        raise UsageError(unknown_message("preset", args.preset, PRESETS))
    cfg: dict[str, Any] = dict(PRESETS[args.preset])
    for name in ("dataset", "backbones", "pretexts", "clusterers", "image_size", "epochs", "max_steps", "batch_size",
                 "lr", "optimizer", "weight_decay", "seed", "device", "k", "eps", "probe_k", "labels", "weights",
                 "jigsaw_permutations", "jigsaw_gap", "color_loss", "color_rebalance", "ae_noise"):
        value = getattr(args, name)
        if value is not None:
            cfg[name] = value
    train_defaults = TrainSpec()
    with user_errors():
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
            pretext_opts=PretextSpec(**{f: cfg[o] for f, o in (
                ("jigsaw_permutations", "jigsaw_permutations"), ("jigsaw_gap", "jigsaw_gap"),
                ("color_loss", "color_loss"), ("color_rebalance", "color_rebalance"),
                ("autoencoder_noise", "ae_noise")) if o in cfg}),
            cluster=ClusterSpec(k=cfg.get("k"), eps=cfg.get("eps")),
        )
    check_names(spec)
    return spec


def check_names(spec: GridSpec) -> None:
    """Every name must exist in its registry (timm names against timm's list); paths must exist."""
    from registry.backbones import check_backbone, check_image_size
    from registry.clusterers import CLUSTERERS
    from registry.datasets import resolve_dataset
    from registry.pretexts import PRETEXTS

    with user_errors():
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


def cmd_run(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    from benchmark.results import leaderboard
    from benchmark.runner import run_grid

    out = Path(args.out) if args.out else RESULTS / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "cells.csv").exists() and not args.resume:
        raise UsageError(f"bad --out {str(out)!r}: it already holds a run; add --resume to finish it or choose "
                         "another --out")
    cache = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE
    with user_errors():
        result = run_grid(spec, out, cache, resume=args.resume, progress=not args.no_progress)
    print(leaderboard(result.rows))
    s = result.stats
    print(f"\n{len(result.rows)} cells, {result.images.n} images ({result.images.n_labeled} labeled, "
          f"{len(result.images.skipped)} skipped) in {result.wall_s:.1f} s; computed: {s.trained} trainings, "
          f"{s.extracted} extractions, {s.clustered} clusterings; {s.resumed_cells} cells resumed")
    if result.images.skipped:
        print(f"skipped files listed in {out / 'skipped.csv'}")
    print(f"results: {out / 'cells.csv'} (and run.json, assignments.csv)")
    if args.report:
        from benchmark.report import write_report

        html_path, _ = write_report(out)
        print(f"report: {html_path}")
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


def cmd_bench(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.bench import BenchSpec, run_bench
    from benchmark.runtime import detect_runtime
    from registry.backbones import check_backbone
    from registry.pretexts import PRETEXTS

    cl = {"off": (False,), "on": (True,), "both": (False, True)}
    if args.channels_last not in cl:
        raise UsageError(f"bad --channels-last {args.channels_last!r}: allowed: off, on, both")
    with user_errors():
        spec = BenchSpec(backbones=_split(args.backbones), pretexts=_split(args.pretexts or ""),
                         batch_size=args.batch_size, image_size=args.image_size,
                         precisions=_split(args.precision), channels_last=cl[args.channels_last],
                         compile=args.compile, warmup=args.warmup, iters=args.iters, repeats=args.repeats,
                         pipeline=args.pipeline)
        for b in spec.backbones:
            check_backbone(b)
        for p in spec.pretexts:
            PRETEXTS.get(p)
            if p == "none":
                raise ValueError("bad --pretexts 'none': it has no training step; name a training pretext")
        rt = detect_runtime(args.device)
    records = run_bench(spec, rt, Path(args.out) if args.out else None)
    rows = [{"key": r["key"], "img/s": r.get("img_per_s"), "step ms": r.get("step_ms"),
             "GFLOP/img": r["flops_per_image"] / 1e9 if "flops_per_image" in r else None,
             "of peak": r.get("fraction_of_peak"), "pipeline/synthetic": r.get("ratio")} for r in records]
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f", missingval="-"))
    if args.out:
        print(f"appended {len(records)} entries to {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.bench import compare, load_history

    if args.max_regression < 0:
        raise UsageError(f"bad --max-regression {args.max_regression!r}: need a percentage >= 0")
    with user_errors():
        rows, notes, failed = compare(load_history(Path(args.baseline)), load_history(Path(args.new)),
                                      args.max_regression)
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f") if rows else "no comparable entries")
    for n in notes:
        print(n)
    print(f"{sum(r['verdict'] == 'REGRESSED' for r in rows)} of {len(rows)} regressed by more than "
          f"{args.max_regression:g}%")
    return 1 if failed else 0


def cmd_scale(args: argparse.Namespace) -> int:
    import json

    from tabulate import tabulate

    from benchmark import scale
    from benchmark.runtime import detect_runtime

    with user_errors():
        rt = detect_runtime(args.device)
    ks = tuple(int(k) for k in _split(args.ks))
    rows: list[dict[str, Any]] = []
    if "silhouette" in args.only:
        rows.append(scale.silhouette_vs_sklearn(args.silhouette_n, args.dims, device=rt.device))
        print(tabulate(rows[-1:], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if "kmeans" in args.only:
        rows += scale.kmeans_vs_sklearn(args.n, args.dims, ks)
        print(tabulate(rows[-len(ks):], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if "decode" in args.only:
        rows += scale.decode_speed()
        print(tabulate(rows[-2:], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if "hdbscan" in args.only:
        rows.append(scale.hdbscan_at_scale(args.n, args.dims))
        print(tabulate(rows[-1:], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.report import write_report

    with user_errors():
        html_path, md_path = write_report(Path(args.run), n_best=args.best)
    print(f"wrote {html_path} and {md_path}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.recommend import RULE, recommend
    from benchmark.report import load_run

    with user_errors():
        rec = recommend(load_run(Path(args.run)).cells, args.min_throughput)
    c = rec.cell
    print(f"recommended: {c['backbone']}/{c['pretext']}/{c['clusterer']} (weights {c['weights']})")
    print(f"rule: {RULE}")
    print(f"why: {rec.why}")
    print("\nquality vs. throughput Pareto front (feature sets):")
    print(tabulate(rec.pareto, headers="keys", tablefmt="github", showindex=False, floatfmt=".3f"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from benchmark.export import export_cell

    with user_errors():
        m = export_cell(Path(args.run), Path(args.to), args.cell)
    print(f"exported {m['cell']} to {args.to} (labels reproduce the run: {m['labels_match_run']})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from benchmark.export import predict

    with user_errors():
        r = predict(Path(args.export), Path(args.images), Path(args.out), args.device, not args.no_progress)
    print(f"{r['n']} images assigned ({r['clusters']} clusters, {r['outliers']} outliers = -1), {r['skipped']} "
          f"skipped, {r['images_per_s']:.1f} images/s end to end; wrote {args.out}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from benchmark.recommend import diff_runs
    from benchmark.report import load_run

    with user_errors():
        d = diff_runs(load_run(Path(args.a)).cells, load_run(Path(args.b)).cells)
    print(tabulate(d, headers="keys", tablefmt="github", showindex=False, floatfmt="+.3f", missingval="-"))
    if args.out:
        d.to_csv(args.out, index=False)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark", description="Backbone x pretext x clusterer benchmark harness.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a grid and print the leaderboard")
    add_run_args(run)
    run.set_defaults(func=cmd_run)
    lst = sub.add_parser("list", help="list registered backbones, pretexts, clusterers, data sets")
    lst.set_defaults(func=cmd_list)
    bench = sub.add_parser("bench", help="inference / training-step throughput, appended to a history")
    bench.add_argument("--backbones", default="resnet18")
    bench.add_argument("--pretexts", default="", help="training-step benchmarks for these pretexts")
    bench.add_argument("--batch-size", type=int, default=32)
    bench.add_argument("--image-size", type=int, default=64)
    bench.add_argument("--precision", default="fp32", help="comma list of fp32, bf16, fp16 (autocast)")
    bench.add_argument("--channels-last", default="off", help="off, on or both")
    bench.add_argument("--compile", action="store_true", help="torch.compile the model")
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--iters", type=int, default=5, help="steps per timed repeat")
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--pipeline", action="store_true", help="also extraction-from-store vs synthetic ratio")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--out", help="history file (JSON lines) to append to")
    bench.set_defaults(func=cmd_bench)
    cmp = sub.add_parser("compare", help="new/old throughput ratios of two histories; exit 1 on regression")
    cmp.add_argument("baseline")
    cmp.add_argument("new")
    cmp.add_argument("--max-regression", type=float, default=10.0, help="percent")
    cmp.set_defaults(func=cmd_compare)
    sc = sub.add_parser("scale", help="silhouette / k-means / HDBSCAN at scale vs scikit-learn (minutes)")
    sc.add_argument("--only", default="silhouette,kmeans,decode,hdbscan")
    sc.add_argument("--n", type=int, default=100_000)
    sc.add_argument("--silhouette-n", type=int, default=20_000)
    sc.add_argument("--dims", type=int, default=512)
    sc.add_argument("--ks", default="10,100,1000")
    sc.add_argument("--device", default="auto")
    sc.add_argument("--out", help="JSON file for the measurements")
    sc.set_defaults(func=cmd_scale)
    rep = sub.add_parser("report", help="write report.html and report.md into a run folder")
    rep.add_argument("run")
    rep.add_argument("--best", type=int, default=3, help="best cells to project and montage")
    rep.set_defaults(func=cmd_report)
    rec = sub.add_parser("recommend", help="the production recipe by a stated rule, and the Pareto front")
    rec.add_argument("run")
    rec.add_argument("--min-throughput", type=float, default=0.0, help="images/s floor for feature extraction")
    rec.set_defaults(func=cmd_recommend)
    exp = sub.add_parser("export", help="export a cell (default: the recommended one) as a recipe folder")
    exp.add_argument("run")
    exp.add_argument("--cell", help="backbone/pretext/clusterer")
    exp.add_argument("--to", required=True)
    exp.set_defaults(func=cmd_export)
    pre = sub.add_parser("predict", help="assign new photos with an exported recipe")
    pre.add_argument("export")
    pre.add_argument("images")
    pre.add_argument("--out", required=True)
    pre.add_argument("--device", default="auto")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(func=cmd_predict)
    dif = sub.add_parser("diff", help="per-cell score changes between two runs (b - a)")
    dif.add_argument("a")
    dif.add_argument("b")
    dif.add_argument("--out", help="CSV of the differences")
    dif.set_defaults(func=cmd_diff)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
