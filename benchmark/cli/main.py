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
from pathlib import Path
from typing import Any, Sequence

from benchmark.cli.common import RESULTS, UsageError, _Parser, _split, user_errors
from benchmark.cli.measure import add_measurement_commands
from benchmark.cli.reproduce import add_reproduce_command
from benchmark.cli.run_folders import add_run_folder_commands
from benchmark.config.presets import load_preset, preset_names, spec_from_config
from benchmark.config.specs import GridSpec
from benchmark.driver.results import cell_id
from benchmark.store.artifacts import DEFAULT_CACHE, STAGE_ARTIFACT, RunFolder

EXIT_OK, EXIT_REGRESSION, EXIT_INTERNAL, EXIT_USAGE, EXIT_CELLS_FAILED = 0, 1, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
_current_out: list[Path] = []  # the run folder being written, for the interruption message


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


# flag -> (section of the configuration, field); sections as in the preset files
RUN_FLAGS: dict[str, tuple[str | None, str]] = {
    "dataset": (None, "dataset"), "labels": (None, "labels"), "backbones": (None, "backbones"),
    "pretexts": (None, "pretexts"), "clusterers": (None, "clusterers"), "image_size": (None, "image_size"),
    "seeds": (None, "seeds"), "device": (None, "device"), "weights": (None, "weights"),
    "epochs": ("train", "epochs"), "max_steps": ("train", "max_steps"), "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"), "optimizer": ("train", "optimizer"), "weight_decay": ("train", "weight_decay"),
    "k": ("cluster", "k"), "eps": ("cluster", "eps"), "probe_k": ("probe", "k_per_class"),
    "probe_draws": ("probe", "draws"), "probe_solver": ("probe", "solver"), "reduce": (None, "reduce"),
    "deterministic": (None, "deterministic"), "compile": (None, "compile"), "split": (None, "split"), "limit": (None, "limit"),
    "train_split": (None, "train_split"), "feature_layer": (None, "feature_layer"),
}
LIST_FLAGS = {"backbones", "pretexts", "clusterers"}


def _boolean(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"bad value {text!r}: allowed: true, false")


def _k_value(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad value {text!r}: allowed: an integer >= 2, or auto") from None


def _pretext_flags() -> list[tuple[str, str, str, Any]]:
    """(pretext, field, flag, dataclass field) for every option every registered pretext declares."""
    from registry.pretexts import PRETEXTS, pretext_class

    out = []
    for name in PRETEXTS.names():
        cls = pretext_class(name).Options
        for flag, f in cls.flags():
            out.append((name, f.name, flag, f))
    return out


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default", help=f"a grid file of benchmark/presets: {', '.join(preset_names())}")
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
    p.add_argument("--seeds", help="comma list of seeds, e.g. 0,1,2 (every cell runs once per seed)")
    p.add_argument("--seed", type=int, help="shorthand for --seeds N")
    p.add_argument("--device", help="auto, cpu or cuda (auto: cuda when a GPU is visible)")
    p.add_argument("--k", type=_k_value, help="clusters for k-means types (default: the number of classes); "
                                             "auto: chosen per cell by silhouette and stability")
    p.add_argument("--eps", type=float, help="DBSCAN eps (default: k-distance knee)")
    p.add_argument("--reduce", help="step before clustering: none, standardize, l2, pca[:D], umap[:D], for all or "
                                    "per clusterer (kmeans=standardize,hdbscan=umap:10); default: umap:10 for "
                                    "density clusterers, standardize for the rest")
    p.add_argument("--probe-k", type=int, help="labeled images per class for the linear probe (default 10)")
    p.add_argument("--probe-draws", type=int, help="seeded draws of the probe's labeled subset (default 20; "
                                                   "presets set their own)")
    p.add_argument("--probe-solver", help="torch (batched, on the run's device; default) or sklearn (the "
                                          "reference LogisticRegression, one fit at a time)")
    p.add_argument("--weights", help="local checkpoint (state_dict) for the deep backbones")
    p.add_argument("--split", help="split of a data set that has them: fashion_mnist train, test (default), all")
    p.add_argument("--limit", type=int, help="a seeded subset of N images of the data set")
    p.add_argument("--feature-layer", help="features of an intermediate stage, pooled: layer1..layer4 (ResNet), "
                                           "pool1..pool5 (VGG16), a timm model's feature_info stage")
    p.add_argument("--train-split", help="train the pretexts on this split (e.g. train) and take features of "
                                         "--split (e.g. test)")
    p.add_argument("--deterministic", action="store_const", const=True,
                   help="deterministic kernels: CUDA reruns and resumes bit-identical (slower; see README)")
    p.add_argument("--compile", action="store_const", const=True,
                   help="torch.compile the backbones for training and extraction (compile time kept apart in run.json)")
    for pretext, _field, flag, f in _pretext_flags():
        kind = type(f.default) if f.default is not None else str
        kind = _boolean if kind is bool else kind
        p.add_argument(f"--{flag}", dest=f"opt__{pretext}__{f.name}", type=kind, metavar=f.name.upper(),
                       help=f"{pretext}: {f.metadata.get('help', f.name)}")
    p.add_argument("--out", help="run folder (default results/<preset>-<time>)")
    p.add_argument("--resume", action="store_true", help="finish or extend the run in --out; finished cells are kept")
    p.add_argument("--cache-dir", help=f"artifact store: decoded images, weights, features, cells (default {DEFAULT_CACHE})")
    p.add_argument("--executor", default="serial", help="how stage tasks run: serial (default, this process) or "
                                                        "ray (Ray tasks on a private local instance or a cluster)")
    p.add_argument("--ray-address", help="Ray: auto joins the running cluster, HOST:PORT that one; default: a "
                                         "private local instance")
    p.add_argument("--gpus-per-task", type=float, default=1.0,
                   help="Ray on CUDA: GPUs a train/extract task asks for (a fraction shares a GPU; default 1)")
    p.add_argument("--extract-with", default="auto", help="Ray: task (one task per feature set), ray-data (Ray "
                                                          "Data map_batches with a GPU actor pool) or auto")
    p.add_argument("--ray-num-cpus", type=int, help="Ray: CPUs the private local instance declares (default all)")
    p.add_argument("--ray-num-gpus", type=int, help="Ray: GPUs the private local instance declares (default all)")
    p.add_argument("--ray-batch-size", type=int, default=256, help="Ray Data extraction: rows per batch (default 256)")
    p.add_argument("--ray-pool", type=int, help="Ray Data extraction: actors in the pool (default one per GPU, or "
                                                "per CPU slot without GPUs)")
    p.add_argument("--dry-run", action="store_true", help="print the task graph (cached / to compute) and stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true", help="write report.html / report.md at the end (run_all.py does)")


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's configuration with explicit flags applied (nested as in the preset files)."""
    with user_errors():
        cfg = load_preset(args.preset)
    for flag, (section, name) in RUN_FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag in LIST_FLAGS:
            value = list(_split(value))
        elif flag == "seeds":
            try:
                value = [int(v) for v in _split(value)]
            except ValueError:
                raise UsageError(f"bad --seeds {value!r}: need a comma list of integers >= 0") from None
        target = cfg.setdefault(section, {}) if section else cfg
        target[name] = value
    if getattr(args, "seed", None) is not None:
        if args.seeds is not None:
            raise UsageError("give --seed or --seeds, not both")
        cfg["seeds"] = [args.seed]
    for key, value in vars(args).items():
        if key.startswith("opt__") and value is not None:
            _, pretext, field_name = key.split("__")
            cfg.setdefault("pretext_options", {}).setdefault(pretext, {})[field_name] = value
    return cfg


def build_spec(args: argparse.Namespace) -> GridSpec:
    """Merge the preset with explicit flags and validate everything before any compute."""
    from benchmark.pipeline.plan import validate_names

    with user_errors():
        spec = spec_from_config(build_config(args))
        validate_names(spec)
    return spec


def executor_spec(args: argparse.Namespace) -> "ExecutorSpec":
    """The executor flags as a validated spec (the executor is not part of the run's configuration)."""
    from benchmark.executors.base import ExecutorSpec
    with user_errors():
        spec = ExecutorSpec(name=args.executor, address=args.ray_address, gpus_per_task=args.gpus_per_task,
                            extract_with=args.extract_with, num_cpus=args.ray_num_cpus, num_gpus=args.ray_num_gpus,
                            data_batch_size=args.ray_batch_size, data_pool=args.ray_pool)
        if spec.name == "ray":
            from benchmark.executors.ray.executor import require_ray

            require_ray()
    return spec


def cmd_run(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    executor = executor_spec(args)
    if args.dry_run:
        return print_plan(spec, args)
    import pandas as pd

    from benchmark.driver.results import COLUMNS
    from benchmark.driver.run import run_grid
    from benchmark.driver.summary import leaderboard_text

    out = Path(args.out) if args.out else RESULTS / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if RunFolder(out).holds_run() and not args.resume:
        raise UsageError(f"bad --out {str(out)!r}: it already holds a run; add --resume to finish it or choose "
                         "another --out")
    cache = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE
    _current_out[:] = [out]
    with user_errors():
        result = run_grid(spec, out, cache, resume=args.resume, progress=not args.no_progress, executor=executor)
    print(leaderboard_text(pd.DataFrame(result.rows, columns=COLUMNS)))
    s = result.stats
    print(f"\n{len(result.rows)} cells, {result.images.n} images ({result.images.n_labeled} labeled, "
          f"{len(result.images.skipped)} skipped) in {result.wall_s:.1f} s; computed: {s.trained} trainings, "
          f"{s.extracted} extractions, {s.computed['probed']} probes, {s.clustered} clusterings; "
          f"{s.resumed_cells} cells resumed")
    if result.images.skipped:
        print(f"skipped files listed in {out / 'skipped.csv'}")
    print(f"results: {out / 'cells.csv'} (and summary.csv, run.json, assignments.csv, run.log)")
    if args.report:
        from benchmark.outputs.report import write_report

        html_path, _ = write_report(out)
        print(f"report: {html_path}")
    failed = [r for r in result.rows if r["status"] == "failed"]
    if failed:
        first = failed[0]
        print(f"error: {len(failed)} of {len(result.rows)} cells failed, e.g. {cell_id(first)}: {first['error']} "
              f"(tracebacks in {out / 'run.log'}; fix and rerun with --resume --out {out})", file=sys.stderr)
        return EXIT_CELLS_FAILED
    return EXIT_OK


def print_plan(spec: GridSpec, args: argparse.Namespace) -> int:
    """The task graph of a grid: per stage, how many tasks are cached in the store and how many would run."""
    from tabulate import tabulate

    from benchmark.driver.run import make_plan
    from benchmark.store.artifacts import ArtifactStore

    store = ArtifactStore(Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE)
    with user_errors():
        plan_, _rec, rt = make_plan(spec, store)
    kinds = STAGE_ARTIFACT
    rows = []
    for kind, artifact in kinds.items():
        tasks = [t for t in plan_.tasks if t.kind == kind]
        cached = sum(store.has(artifact, t.key) for t in tasks)
        rows.append({"stage": kind, "tasks": len(tasks), "cached": cached, "to compute": len(tasks) - cached})
    print(tabulate(rows, headers="keys", tablefmt="github"))
    print(f"\n{len(plan_.cells)} cells ({len(spec.backbones)} backbones x {len(spec.pretexts)} pretexts x "
          f"{len(spec.clusterers)} clusterers x {len(spec.seeds)} seeds), k = {plan_.k}, "
          f"{plan_.data.n_listed} images listed, runtime {rt.describe()}")
    if getattr(args, "verbose", False):
        for t in plan_.tasks:
            mark = "cached" if store.has(kinds[t.kind], t.key) else "to compute"
            what = "/".join(str(getattr(t, a)) for a in ("backbone", "pretext", "clusterer", "method", "seed")
                            if hasattr(t, a))
            print(f"{t.kind:8s} {t.key} {mark:10s} {what}  <- {', '.join(t.deps) or '-'}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """Report the store's size per artifact kind; with --prune, free what no run folder under --runs uses."""
    from tabulate import tabulate

    from benchmark.driver.results import read_cells
    from benchmark.store.artifacts import ArtifactStore

    store = ArtifactStore(Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE)
    usage = store.usage()
    print(tabulate([{"kind": k, "files": n, "MB": b / 1e6} for k, (n, b) in usage.items()], headers="keys",
                   tablefmt="github", floatfmt=".1f"))
    if not args.prune:
        return 0
    keep: set[str] = set()
    runs = Path(args.runs)
    for folder in RunFolder.find(runs):
        info = folder.read_info() or {}
        keep.update(str(info.get(k, "")) for k in ("images_key", "labels_key"))
        for r in read_cells(folder.cells):
            keep.update(str(r.get(k) or "") for k in ("feature_key", "probe_key", "cell_key"))
            fmeta = store.get_meta("features", str(r.get("feature_key") or "")) or {}
            keep.add(str(fmeta.get("train_key") or ""))
    n, size = store.prune(keep, older_than_s=args.older_than_days * 86400, dry_run=args.dry_run)
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {n} files, {size / 1e6:.1f} MB (artifacts used by no run under {runs} and older than "
          f"{args.older_than_days:g} days; decoded files and reductions are rebuilt on demand)")
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
    pl.set_defaults(func=lambda a: print_plan(build_spec(a), a))
    cache = sub.add_parser("cache", help="artifact store size per kind; --prune frees what no run uses")
    cache.add_argument("--cache-dir")
    cache.add_argument("--prune", action="store_true")
    cache.add_argument("--runs", default=str(RESULTS), help="run folders whose artifacts are kept (default results/)")
    cache.add_argument("--older-than-days", type=float, default=0.0, help="prune only artifacts untouched this long")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every outcome is an exit code with at most one line of explanation on stderr."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    _current_out.clear()
    try:
        args = make_parser().parse_args(argv)
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
    except OSError as exc:  # the machine, not the input nor a bug: a full disk, a vanished mount
        where = _save_traceback()
        resume = f"; finished cells are kept, resume with --resume --out {_current_out[0]}" if _current_out else ""
        print(f"error: {exc.strerror or exc} ({exc.filename or 'a file'}){resume}{where}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001  a bug: one line, the traceback where it can be read
        where = _save_traceback()
        print(f"internal error (a bug, not a bad input): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
              f"{where}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _save_traceback() -> str:
    """Append the current traceback to the run's run.log (or print it with SSLBENCH_DEBUG=1)."""
    text = traceback.format_exc()
    if os.environ.get("SSLBENCH_DEBUG"):
        print(text, file=sys.stderr)
        return ""
    if _current_out and _current_out[0].is_dir():
        log = _current_out[0] / "run.log"
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} internal error\n{text}")
        return f" (traceback in {log})"
    return " (rerun with SSLBENCH_DEBUG=1 for the traceback)"
