"""Command line: the measurement commands `bench`, `compare` and `scale`."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from benchmark.cli.common import UsageError, _split, choices_of, user_errors
from benchmark.interfaces import BadInput
from benchmark.perf import scale
from benchmark.perf.bench import FINGERPRINT_FIELDS, BenchSpec, compare, load_history, run_bench
from benchmark.runtime.device import detect_runtime
from registry.backbones import check_backbone, check_image_size
from registry.pretexts import PRETEXTS, pretext_class

SCALE_PARTS = ("silhouette", "kmeans", "decode", "hdbscan")


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
    ks = tuple(int(k) for k in _split(args.ks))
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
    cmp.add_argument("--ignore-fingerprint", help="fingerprint fields not to match, e.g. torch,driver (a GPU "
                                                  "machine's own torch differs from the pin)")
    cmp.set_defaults(func=cmd_compare)
    sc = sub.add_parser("scale", help="silhouette / k-means / HDBSCAN at scale vs scikit-learn (minutes)")
    sc.add_argument("--only", default=",".join(SCALE_PARTS), help=f"a comma list of {', '.join(SCALE_PARTS)}")
    sc.add_argument("--n", type=int, default=100_000)
    sc.add_argument("--silhouette-n", type=int, default=20_000)
    sc.add_argument("--dims", type=int, default=512)
    sc.add_argument("--ks", default="10,100,1000")
    sc.add_argument("--device", default="auto")
    sc.add_argument("--out", help="JSON file for the measurements")
    sc.set_defaults(func=cmd_scale)
