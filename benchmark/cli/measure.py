"""Command line: the measurement commands `bench`, `compare` and `scale`."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from benchmark.cli.common import DEVICE, PATH, UsageError, _split, add_arg, choices_of, ints_of, user_errors
from benchmark.config.checks import check_writable_file
from benchmark.interfaces import BadInput, Constraint
from benchmark.perf import scale
from benchmark.perf.bench import FINGERPRINT_FIELDS, BenchSpec, compare, load_history, run_bench
from benchmark.runtime.device import detect_runtime
from registry.backbones import backbone_info, check_backbone, check_image_size
from registry.pretexts import PRETEXTS, pretext_class

SCALE_PARTS = ("silhouette", "kmeans", "decode", "hdbscan")
KS = Constraint("ints", 2, cap=10**6)


def cmd_bench(args: argparse.Namespace) -> int:
    from tabulate import tabulate

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
            check_image_size(b, spec.image_size)
        for p in spec.pretexts:
            PRETEXTS.get(p)
            if not pretext_class(p).trains:
                raise BadInput(f"bad --pretexts {p!r}: it has no training step; name a training pretext")
        fixed = [b for b in spec.backbones if not backbone_info(b).trainable]
        if spec.pretexts and fixed:
            raise BadInput(f"bad --backbones {fixed[0]!r} with --pretexts: it has no parameters to train; bench its "
                           "inference alone, or name a trainable backbone")
        rt = detect_runtime(args.device)
        if args.out:
            check_writable_file(Path(args.out), "--out")
            if Path(args.out).is_file() and Path(args.out).stat().st_size:
                load_history(Path(args.out))  # appending to a damaged history would glue onto its last line
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

    if not math.isfinite(args.max_regression) or not 0 <= args.max_regression < 100:
        raise UsageError(f"bad --max-regression {args.max_regression!r}: need a percentage, 0 <= value < 100")
    ignore = choices_of("--ignore-fingerprint", args.ignore_fingerprint, FINGERPRINT_FIELDS) \
        if args.ignore_fingerprint else ()
    with user_errors():
        rows, notes, failed = compare(load_history(Path(args.baseline)), load_history(Path(args.new)),
                                      args.max_regression, frozenset(ignore))
    for n in notes:
        print(n)
    if not rows:
        raise UsageError(f"nothing to compare: no entry of {args.new!r} has the key and machine fingerprint of one "
                         f"in {args.baseline!r} (bench the same keys on the same machine)")
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f"))
    print(f"{sum(r['verdict'] == 'REGRESSED' for r in rows)} of {len(rows)} regressed by more than "
          f"{args.max_regression:g}%")
    return 1 if failed else 0


def cmd_scale(args: argparse.Namespace) -> int:
    import json

    from tabulate import tabulate

    only = choices_of("--only", args.only, SCALE_PARTS)
    with user_errors():
        rt = detect_runtime(args.device)
        if args.out:
            check_writable_file(Path(args.out), "--out")
    ks = ints_of("--ks", args.ks, KS)
    rows: list[dict[str, Any]] = []
    if "silhouette" in only:
        rows.append(scale.silhouette_vs_sklearn(args.silhouette_n, args.dims, device=rt.device))
        print(tabulate(rows[-1:], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if "kmeans" in only:
        rows += scale.kmeans_vs_sklearn(args.n, args.dims, ks)
        print(tabulate(rows[-len(ks):], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if "decode" in only:
        rows += scale.decode_speed()
        print(tabulate(rows[-2:], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if "hdbscan" in only:
        rows.append(scale.hdbscan_at_scale(args.n, args.dims))
        print(tabulate(rows[-1:], headers="keys", tablefmt="github", floatfmt=".4g"), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def add_measurement_commands(sub: Any) -> None:
    """bench, compare, scale."""
    bench = sub.add_parser("bench", help="inference / training-step throughput, appended to a history")
    add_arg(bench, "--backbones", constraint=Constraint("names"), default="resnet18", help="comma list of backbones")
    add_arg(bench, "--pretexts", constraint=Constraint("text", empty=True), default="",
            help="training-step benchmarks for these pretexts")
    add_arg(bench, "--batch-size", constraint=Constraint("int", 1, cap=65536), default=32)
    add_arg(bench, "--image-size", constraint=Constraint("int", 8, 1024), default=64)
    add_arg(bench, "--precision", constraint=Constraint("names"), default="fp32",
            help="comma list of fp32, bf16, fp16 (autocast)")
    add_arg(bench, "--channels-last", constraint=Constraint("choice", choices=("off", "on", "both")), default="off",
            help="off, on or both")
    bench.add_argument("--compile", action="store_true", help="torch.compile the model")
    add_arg(bench, "--warmup", constraint=Constraint("int", 0, cap=10000), default=3)
    add_arg(bench, "--iters", constraint=Constraint("int", 1, cap=100000), default=5, help="steps per timed repeat")
    add_arg(bench, "--repeats", constraint=Constraint("int", 1, cap=1000), default=5)
    bench.add_argument("--pipeline", action="store_true", help="also extraction-from-store vs synthetic ratio")
    add_arg(bench, "--device", constraint=DEVICE, default="auto")
    add_arg(bench, "--out", constraint=PATH, help="history file (JSON lines) to append to")
    bench.set_defaults(func=cmd_bench)
    cmp = sub.add_parser("compare", help="new/old throughput ratios of two histories; exit 1 on regression")
    add_arg(cmp, "baseline", constraint=PATH)
    add_arg(cmp, "new", constraint=PATH)
    add_arg(cmp, "--max-regression", constraint=Constraint("real", 0, 100, hi_open=True), default=10.0, help="percent",
            convert=float)  # checked in cmd_compare, which names the allowed range its own way
    add_arg(cmp, "--ignore-fingerprint", constraint=Constraint("names"),
            help="fingerprint fields not to match, e.g. torch,driver (a GPU machine's own torch differs from the pin)")
    cmp.set_defaults(func=cmd_compare)
    sc = sub.add_parser("scale", help="silhouette / k-means / HDBSCAN at scale vs scikit-learn (minutes)")
    add_arg(sc, "--only", constraint=Constraint("names"), default=",".join(SCALE_PARTS),
            help=f"a comma list of {', '.join(SCALE_PARTS)}")
    add_arg(sc, "--n", constraint=Constraint("int", 2, cap=10**8), default=100_000)
    add_arg(sc, "--silhouette-n", constraint=Constraint("int", 2, cap=10**7), default=20_000)
    add_arg(sc, "--dims", constraint=Constraint("int", 1, cap=65536), default=512)
    add_arg(sc, "--ks", constraint=KS, default="10,100,1000", help="comma list of k")
    add_arg(sc, "--device", constraint=DEVICE, default="auto")
    add_arg(sc, "--out", constraint=PATH, help="JSON file for the measurements")
    sc.set_defaults(func=cmd_scale)
