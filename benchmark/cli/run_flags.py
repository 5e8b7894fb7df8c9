"""The `run` / `plan` flags, generated from the specs' fields: every field that declares a ``flag`` in its
metadata (``benchmark.interfaces.setting``) is a flag, parsed by its constraint, with its help text and,
for names, the registry's members; each pretext's ``Options`` adds its own. A flag set on the command line
overrides the preset's value in the same section (the preset files' sections: top level, train, probe,
cluster)."""
from __future__ import annotations

import argparse
from dataclasses import Field, fields
from typing import Any, Callable, Iterator

from benchmark.cli.common import UsageError, _split, add_arg
from benchmark.config.presets import preset_names
from benchmark.config.specs import MAX_SEED, GridSpec, ProbeSpec, TrainSpec
from benchmark.executors.base import ExecutorSpec
from benchmark.interfaces import ClusterSpec, Constraint
from registry.backbones import BACKBONES
from registry.clusterers import CLUSTERERS
from registry.datasets import DATASETS
from registry.pretexts import PRETEXTS, pretext_class

SECTIONS: tuple[tuple[str | None, type], ...] = ((None, GridSpec), ("train", TrainSpec), ("probe", ProbeSpec),
                                                 ("cluster", ClusterSpec))
MEMBERS: dict[str, Callable[[], list[str]]] = {
    "dataset": lambda: DATASETS.names(), "backbones": lambda: BACKBONES.names() + ["timm:<name>"],
    "pretexts": lambda: PRETEXTS.names(), "clusterers": lambda: CLUSTERERS.names(),
}
DEST = "cfg__{section}__{name}"
SEED = Constraint("int", 0, MAX_SEED)
PRESET = Constraint("text")


def run_fields() -> Iterator[tuple[str | None, Field]]:
    """(preset section, field) of every spec field that is a flag."""
    for section, cls in SECTIONS:
        for f in fields(cls):
            if f.metadata.get("flag"):
                yield section, f


def _boolean(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"bad value {text!r}: allowed: true, false")


def _help(name: str, f: Field) -> str:
    text = str(f.metadata.get("help") or "")
    if name in MEMBERS:
        text += f" ({', '.join(MEMBERS[name]())})"
    return text


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The flags of `run` and `plan`: the preset, every spec field with a flag, every pretext option."""
    add_arg(p, "--preset", constraint=PRESET, default="default",
            help=f"a grid file: one of benchmark/config/presets ({', '.join(preset_names())}) or a .toml path")
    for section, f in run_fields():
        c: Constraint = f.metadata["constraint"]
        dest = DEST.format(section=section or "", name=f.name)
        if c.kind == "bool":
            p.add_argument(f"--{f.metadata['flag']}", dest=dest, action="store_const", const=True,
                           help=_help(f.name, f))
        else:
            add_arg(p, f"--{f.metadata['flag']}", constraint=c, dest=dest, metavar=f.name.upper(),
                    help=_help(f.name, f), label=f.metadata.get("label") or f.name.replace("_", " "))
    add_arg(p, "--seed", constraint=SEED, help="shorthand for --seeds N")
    for name in PRETEXTS.names():
        for flag, f in pretext_class(name).Options.flags():
            oc: Constraint | None = f.metadata.get("constraint")
            if oc is None:
                raise TypeError(f"pretext option {name}.{f.name} declares no constraint (use interfaces.setting)")
            add_arg(p, f"--{flag}", constraint=oc, dest=f"opt__{name}__{f.name}", metavar=f.name.upper(),
                    help=f"{name}: {f.metadata.get('help', f.name)}", convert=_boolean if oc.kind == "bool" else None,
                    label=f.metadata.get("label") or f"--{flag}")


def _value(section: str | None, f: Field, text: Any) -> Any:
    kind = f.metadata["constraint"].kind
    if kind == "names":
        return list(_split(text))
    if kind == "ints":
        try:
            return [int(v) for v in _split(text)]
        except ValueError:
            raise UsageError(f"bad --{f.metadata['flag']} {text!r}: need a comma list of integers >= 0") from None
    return text


def apply_run_flags(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The preset's configuration ``cfg`` with the flags given on the command line applied."""
    for section, f in run_fields():
        value = getattr(args, DEST.format(section=section or "", name=f.name), None)
        if value is not None:
            (cfg.setdefault(section, {}) if section else cfg)[f.name] = _value(section, f, value)
    if getattr(args, "seed", None) is not None:
        if getattr(args, DEST.format(section="", name="seeds"), None) is not None:
            raise UsageError("give --seed or --seeds, not both")
        cfg["seeds"] = [args.seed]
    for key, value in vars(args).items():
        if key.startswith("opt__") and value is not None:
            _, pretext, field_name = key.split("__")
            cfg.setdefault("pretext_options", {}).setdefault(pretext, {})[field_name] = value
    return cfg


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """How stage tasks run: every ``ExecutorSpec`` field with a flag (not part of the run's configuration)."""
    for f in fields(ExecutorSpec):
        if f.metadata.get("flag"):
            c: Constraint = f.metadata["constraint"]
            add_arg(p, f"--{f.metadata['flag']}", constraint=c, dest=f"exec__{f.name}", default=f.default,
                    metavar=f.name.upper(), help=str(f.metadata.get("help") or ""),
                    label=f.metadata.get("label") or f"--{f.metadata['flag']}")


def executor_spec_from_args(args: argparse.Namespace) -> ExecutorSpec:
    """The executor flags as a validated spec (BadInput names the bad flag)."""
    return ExecutorSpec(**{f.name: getattr(args, f"exec__{f.name}") for f in fields(ExecutorSpec)
                           if f.metadata.get("flag")})
