"""Command line: ``python -m benchmark run|list|...`` (``run_all.py`` is ``run``).

Exit codes (CONVENTIONS 6): 0 success; 1 a regression (``compare``) or an internal error (a bug: one line,
the traceback in run.log or with SSLBENCH_DEBUG=1); 2 a usage error, one line naming the value and what is
allowed, before any compute; 3 the run finished but at least one cell failed; 130 interrupted (Ctrl-C) and
143 terminated (SIGTERM), each with one line saying what is kept and how to resume."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Sequence

from benchmark.cli.common import PATH, RESULTS, UsageError, _Parser, add_arg, user_errors
from benchmark.cli.measure import add_measurement_commands
from benchmark.cli.reproduce import add_reproduce_command
from benchmark.cli.run_flags import add_executor_args, apply_run_flags, executor_spec_from_args
from benchmark.cli.run_flags import add_run_args as add_grid_args
from benchmark.cli.run_folders import add_run_folder_commands
from benchmark.config.environment import check_environment
from benchmark.config.presets import load_preset, preset_names, spec_from_config
from benchmark.config.specs import GridSpec
from benchmark.driver.results import cell_id
from benchmark.driver.run import make_plan, run_grid
from benchmark.driver.summary import leaderboard_text
from benchmark.executors.base import ExecutorSpec
from benchmark.executors.ray.executor import require_ray
from benchmark.interfaces import BadInput, Constraint, Status
from benchmark.outputs.prune import prune_cache
from benchmark.outputs.report import write_report
from benchmark.pipeline import footprint
from benchmark.pipeline.kinds import STAGE_KINDS
from benchmark.pipeline.plan import validate_names
from benchmark.scoring import columns
from benchmark.store.artifacts import DEFAULT_CACHE, ArtifactStore, RunFolder
from registry.backbones import backbone_names
from registry.clusterers import CLUSTERERS
from registry.datasets import DATASETS
from registry.pretexts import PRETEXTS
from registry.weights import ALLOW_ENV, allow_downloads

EXIT_OK, EXIT_REGRESSION, EXIT_INTERNAL, EXIT_USAGE, EXIT_CELLS_FAILED = 0, 1, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
DAYS = Constraint("real", 0, cap=36500)
_current_out: list[Path] = []  # the run folder being written, for the interruption message


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def add_run_args(p: argparse.ArgumentParser) -> None:
    """`run` / `plan`: the generated grid flags (``run_flags``), then where results go and how tasks run."""
    add_grid_args(p)
    add_arg(p, "--out", constraint=PATH, help="run folder (default results/<preset>-<time>)")
    p.add_argument("--resume", action="store_true", help="finish or extend the run in --out; finished cells are kept")
    p.add_argument("--allow-download", action="store_true",
                   help=f"fetch missing ImageNet weights into the torch hub / Hugging Face cache (or set "
                        f"{ALLOW_ENV}=1); not part of the run's configuration")
    add_arg(p, "--cache-dir", constraint=PATH,
                   help=f"artifact store: decoded images, weights, features, cells (default {DEFAULT_CACHE})")
    add_executor_args(p)
    p.add_argument("--dry-run", action="store_true", help="print the task graph (cached / to compute) and stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true", help="write report.html / report.md at the end (run_all.py does)")


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's configuration with explicit flags applied (nested as in the preset files)."""
    with user_errors():
        cfg = load_preset(args.preset)
    return apply_run_flags(cfg, args)


def build_spec(args: argparse.Namespace) -> GridSpec:
    """Merge the preset with explicit flags and validate everything before any compute."""

    with user_errors():
        spec = spec_from_config(build_config(args))
        validate_names(spec)
    return spec


def executor_spec(args: argparse.Namespace) -> ExecutorSpec:
    """The executor flags as a validated spec (the executor is not part of the run's configuration)."""
    with user_errors():
        spec = executor_spec_from_args(args)
        if spec.name == "ray":

            require_ray()
    return spec


def cmd_run(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    executor = executor_spec(args)
    if args.dry_run:
        return print_plan(spec, args)
    import pandas as pd

    out = Path(args.out) if args.out else RESULTS / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if RunFolder(out).holds_run() and not args.resume:
        raise UsageError(f"bad --out {str(out)!r}: it already holds a run; add --resume to finish it or choose "
                         "another --out")
    cache = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE
    _current_out[:] = [out]
    with user_errors(), allow_downloads(args.allow_download):
        result = run_grid(spec, out, cache, resume=args.resume, progress=not args.no_progress, executor=executor)
    print(leaderboard_text(pd.DataFrame(result.rows, columns=columns.names())))
    s = result.stats
    print(f"\n{len(result.rows)} cells, {result.images.n} images ({result.images.n_labeled} labeled, "
          f"{len(result.images.skipped)} skipped) in {result.wall_s:.1f} s; computed: {s.trained} trainings, "
          f"{s.extracted} extractions, {s.computed['probed']} probes, {s.clustered} clusterings; "
          f"{s.resumed_cells} cells resumed")
    if result.images.skipped:
        print(f"skipped files listed in {out / 'skipped.csv'}")
    print(f"results: {out / 'cells.csv'} (and summary.csv, run.json, assignments.csv, run.log)")
    if args.report:
        with user_errors():
            html_path, _ = write_report(out)
        print(f"report: {html_path}")
    failed = [r for r in result.rows if r["status"] == Status.FAILED]
    if failed:
        first = failed[0]
        print(f"error: {len(failed)} of {len(result.rows)} cells failed, e.g. {cell_id(first)}: {first['error']} "
              f"(tracebacks in {out / 'run.log'}; fix and rerun with --resume --out {out})", file=sys.stderr)
        return EXIT_CELLS_FAILED
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    executor_spec(args)  # its flags are checked too, though a plan starts no executor
    return print_plan(spec, args)


def print_plan(spec: GridSpec, args: argparse.Namespace) -> int:
    """The task graph of a grid: per stage, how many tasks are cached in the store and how many would run."""
    from tabulate import tabulate

    store = ArtifactStore(Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE)
    with user_errors(), allow_downloads(getattr(args, "allow_download", False)):
        _store_folder(store.root)
        plan_, _rec, rt = make_plan(spec, store)
    rows = []
    peaks = footprint.table(plan_, {t.key for t in plan_.tasks})
    for kind in STAGE_KINDS.values():
        tasks = [t for t in plan_.tasks if t.kind == kind.kind]
        cached = sum(store.has(kind.artifact, t.key) for t in tasks)
        peak = f"{peaks[kind.kind] / 2**20:,.0f}" if kind.kind in peaks else "-"
        rows.append({"stage": kind.kind, "tasks": len(tasks), "cached": cached, "to compute": len(tasks) - cached,
                     "peak MiB (model)": peak})
    print(tabulate(rows, headers="keys", tablefmt="github"))
    print(f"\n{len(plan_.cells)} cells ({len(spec.backbones)} backbones x {len(spec.pretexts)} pretexts x "
          f"{len(spec.clusterers)} clusterers x {len(spec.seeds)} seeds), k = {plan_.k}, "
          f"{plan_.data.n_listed} images listed, runtime {rt.describe()}"
          + "".join(f"; {b}: only {', '.join(ps)}" for b in spec.backbones
                    if (ps := spec.pretexts_for(b)) != spec.pretexts))
    if getattr(args, "verbose", False):
        for t in plan_.tasks:
            mark = "cached" if store.has(STAGE_KINDS[t.kind].artifact, t.key) else "to compute"
            what = "/".join(str(getattr(t, a)) for a in ("backbone", "pretext", "clusterer", "method", "seed")
                            if hasattr(t, a))
            print(f"{t.kind:8s} {t.key} {mark:10s} {what}  <- {', '.join(t.deps) or '-'}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """Report the store's size per artifact kind; with --prune, free what no run folder under --runs uses."""
    from tabulate import tabulate

    store = ArtifactStore(Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE)
    with user_errors():
        _store_folder(store.root)
    usage = store.usage()
    print(tabulate([{"kind": k, "files": n, "MB": b / 1e6} for k, (n, b) in usage.items()], headers="keys",
                   tablefmt="github", floatfmt=".1f"))
    if not args.prune:
        return 0
    runs = Path(args.runs)
    with user_errors():
        n, size = prune_cache(store, runs, args.older_than_days, args.dry_run)
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {n} files, {size / 1e6:.1f} MB (artifacts used by no run under {runs} and older than "
          f"{args.older_than_days:g} days; decoded files and reductions are rebuilt on demand)")
    return 0


def _store_folder(root: Path) -> None:
    """The store is a folder (or not there yet): a file given as --cache-dir is refused by every command."""
    if root.exists() and not root.is_dir():
        raise BadInput(f"bad --cache-dir {str(root)!r}: it is a file; need a directory")


def cmd_list(args: argparse.Namespace) -> int:

    print("backbones:  " + ", ".join(backbone_names()))
    print("pretexts:   " + ", ".join(PRETEXTS.names()))
    print("clusterers: " + ", ".join(CLUSTERERS.names()))
    print("datasets:   " + ", ".join(DATASETS.names() + ["<folder path>"]))
    print("presets:    " + ", ".join(preset_names()))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark", description="Backbone x pretext x clusterer benchmark harness.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a grid and print the leaderboard")
    add_run_args(run)
    run.set_defaults(func=cmd_run)
    pl = sub.add_parser("plan", help="print a grid's task graph: what is cached and what would be computed")
    add_run_args(pl)
    pl.add_argument("--verbose", action="store_true", help="every task with its key and dependencies")
    pl.set_defaults(func=cmd_plan)
    cache = sub.add_parser("cache", help="artifact store size per kind; --prune frees what no run uses")
    add_arg(cache, "--cache-dir", constraint=PATH, help=f"the artifact store (default {DEFAULT_CACHE})")
    cache.add_argument("--prune", action="store_true")
    add_arg(cache, "--runs", constraint=PATH, default=str(RESULTS),
            help="run folders whose artifacts are kept (default results/)")
    add_arg(cache, "--older-than-days", constraint=DAYS, default=0.0, help="prune only artifacts untouched this long")
    cache.add_argument("--dry-run", action="store_true", help="say what --prune would free")
    cache.set_defaults(func=cmd_cache)
    lst = sub.add_parser("list", help="list registered backbones, pretexts, clusterers, data sets")
    lst.set_defaults(func=cmd_list)
    add_measurement_commands(sub)
    add_reproduce_command(sub)
    add_run_folder_commands(sub)
    return parser


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """A warning raised outside a run's log (which writes its own) is one line of ours, not Python's two."""
    return f"warning: {str(message).splitlines()[0] if str(message) else category.__name__}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every outcome is an exit code with at most one line of explanation on stderr."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    _current_out.clear()
    formatter, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        args = make_parser().parse_args(argv)
        with user_errors():
            check_environment()
        return int(args.func(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, Terminated) as exc:
        code = EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_TERMINATED
        what = "interrupted" if code == EXIT_INTERRUPTED else "terminated"
        if _current_out:
            print(f"{what}; finished cells are kept, resume with --resume --out {_current_out[0]}", file=sys.stderr)
        else:
            print(what, file=sys.stderr)
        return code
    except BrokenPipeError:  # the reader of our output went away (`| head`): nothing to say to it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except OSError as exc:  # the machine, not the input nor a bug: a full disk, a vanished mount
        where = _save_traceback()
        resume = f"; finished cells are kept, resume with --resume --out {_current_out[0]}" if _current_out else ""
        where_file = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where_file}{resume}{where}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001  a bug: one line, the traceback where it can be read
        where = _save_traceback()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"internal error (a bug, not a bad input): {type(exc).__name__}: {first}{where}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        warnings.formatwarning = formatter
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _save_traceback() -> str:
    """Append the current traceback to the run's run.log (or print it with SSLBENCH_DEBUG=1)."""
    text = traceback.format_exc()
    if os.environ.get("SSLBENCH_DEBUG") == "1":
        print(text, file=sys.stderr)
        return ""
    if _current_out and _current_out[0].is_dir():
        log = _current_out[0] / "run.log"
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} internal error\n{text}")
        return f" (traceback in {log})"
    return " (rerun with SSLBENCH_DEBUG=1 for the traceback)"
