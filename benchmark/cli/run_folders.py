"""Command line: the commands that read run folders: `report`, `recommend`, `export`, `predict`, `diff`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmark.cli.common import DEVICE, PATH, add_arg, user_errors
from benchmark.config.checks import check_writable_file
from benchmark.driver.results import cell_id
from benchmark.interfaces import Constraint
from benchmark.outputs.export import export_cell, predict
from benchmark.outputs.recommend import RULE, diff_runs, recommend
from benchmark.outputs.report import write_report
from benchmark.outputs.run_folder import load_run

MIN_THROUGHPUT = Constraint("real", 0)


def cmd_report(args: argparse.Namespace) -> int:

    with user_errors():
        html_path, md_path = write_report(Path(args.run), n_best=args.best)
    print(f"wrote {html_path} and {md_path}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    with user_errors():
        MIN_THROUGHPUT.check("--min-throughput", args.min_throughput)
        rec = recommend(load_run(Path(args.run)).cells, args.min_throughput)
    c = rec.cell
    print(f"recommended: {cell_id(c)} (weights {c['weights']})")
    print(f"rule: {RULE}")
    print(f"why: {rec.why}")
    print("\nquality vs. throughput Pareto front (feature sets):")
    print(tabulate(rec.pareto, headers="keys", tablefmt="github", showindex=False, floatfmt=".3f"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:

    with user_errors():
        m = export_cell(Path(args.run), Path(args.to), args.cell, force=args.force)
    print(f"exported {m['cell']} to {args.to} (labels reproduce the run: {m['labels_match_run']})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:

    with user_errors():
        r = predict(Path(args.export), Path(args.images), Path(args.out), args.device, not args.no_progress)
    print(f"{r['n']} images assigned ({r['clusters']} clusters, {r['outliers']} outliers = -1), {r['skipped']} "
          f"skipped, {r['images_per_s']:.1f} images/s end to end; wrote {args.out}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    with user_errors():
        if args.out:
            check_writable_file(Path(args.out), "--out", inputs=(Path(args.a), Path(args.b)))
        d = diff_runs(load_run(Path(args.a)).cells, load_run(Path(args.b)).cells)
    print(tabulate(d, headers="keys", tablefmt="github", showindex=False, floatfmt="+.3f", missingval="-"))
    if args.out:
        d.to_csv(args.out, index=False)
    return 0


def add_run_folder_commands(sub: Any) -> None:
    """report, recommend, export, predict, diff: they read run folders."""
    rep = sub.add_parser("report", help="write report.html and report.md into a run folder")
    add_arg(rep, "run", constraint=PATH)
    add_arg(rep, "--best", constraint=Constraint("int", 0, cap=100), default=3,
            help="best cells to project and montage")
    rep.set_defaults(func=cmd_report)
    rec = sub.add_parser("recommend", help="the production recipe by a stated rule, and the Pareto front")
    add_arg(rec, "run", constraint=PATH)
    add_arg(rec, "--min-throughput", constraint=MIN_THROUGHPUT, default=0.0,
            help="images/s floor for feature extraction")
    rec.set_defaults(func=cmd_recommend)
    exp = sub.add_parser("export", help="export a cell (default: the recommended one) as a recipe folder")
    add_arg(exp, "run", constraint=PATH)
    add_arg(exp, "--cell", constraint=Constraint("text"), help="backbone/pretext/clusterer[/seed] (default seed: the "
                                                            "run's first)")
    add_arg(exp, "--to", constraint=PATH, required=True, help="the export folder: empty or new (or --force)")
    exp.add_argument("--force", action="store_true", help="replace a non-empty --to whole")
    exp.set_defaults(func=cmd_export)
    pre = sub.add_parser("predict", help="assign new photos with an exported recipe")
    add_arg(pre, "export", constraint=PATH)
    add_arg(pre, "images", constraint=PATH)
    add_arg(pre, "--out", constraint=PATH, required=True, help="CSV of path, cluster, score")
    add_arg(pre, "--device", constraint=DEVICE, default="auto")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(func=cmd_predict)
    dif = sub.add_parser("diff", help="per-cell score changes between two runs (b - a)")
    add_arg(dif, "a", constraint=PATH)
    add_arg(dif, "b", constraint=PATH)
    add_arg(dif, "--out", constraint=PATH, help="CSV of the differences")
    dif.set_defaults(func=cmd_diff)
