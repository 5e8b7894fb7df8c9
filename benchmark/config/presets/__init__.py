"""Presets are typed grid files (``<name>.toml`` in this folder): top-level grid fields, then ``[train]``,
``[probe]``, ``[cluster]`` and ``[pretexts.<name>]`` tables whose keys are those dataclasses' fields.
``spec_from_config`` turns one into a validated ``GridSpec``; command-line flags override it."""
from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import tomllib

from benchmark.config.specs import GridSpec, ProbeSpec, TrainSpec
from benchmark.interfaces import BadInput, ClusterSpec, path_problem
from registry.base import unknown_message
from registry.pretexts import pretext_class

FOLDER = Path(__file__).resolve().parent
SECTIONS = {"train": TrainSpec, "probe": ProbeSpec, "cluster": ClusterSpec}
TOP = {f.name for f in fields(GridSpec)} - set(SECTIONS) - {"pretext_options"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The configuration of preset ``name`` (nested dicts, as in the file): a name of this folder's presets,
    or the path of a grid file of one's own (``*.toml``). BadInput names a file that is not TOML."""

    own = name.endswith(".toml") or "/" in name
    if own and path_problem(name):
        raise BadInput(f"bad --preset {name[:80]!r}: {path_problem(name)}")
    if not own and not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name):
        raise BadInput(unknown_message("preset", name[:80], preset_names()))
    path = Path(name) if own else FOLDER / f"{name}.toml"
    if not path.is_file():
        if own:
            raise BadInput(f"bad --preset {name!r}: no such grid file; allowed: a .toml file or one of "
                           f"{', '.join(preset_names())}")
        raise BadInput(unknown_message("preset", name, preset_names()))
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"bad preset file {str(path)!r}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"bad preset file {str(path)!r}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise BadInput(f"bad preset file {str(path)!r}: cannot be read ({exc.strerror or exc})") from None
    return cfg


def _fields_of(cls: type, table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise BadInput(f"bad setting {where} {table!r}: allowed: a table of {cls.__name__} settings "
                       f"({', '.join(f.name for f in fields(cls))})")
    allowed = [f.name for f in fields(cls)]
    for key in table:
        if key not in allowed:
            raise BadInput(f"bad setting {where}.{key}: allowed: {', '.join(allowed) or 'none (it has no settings)'}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}  # TOML arrays are tuples here


def spec_from_config(cfg: dict[str, Any]) -> GridSpec:
    """A validated GridSpec from a (preset + flags) configuration. Unknown settings are errors."""

    top: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in SECTIONS or key == "pretext_options":
            continue
        if key not in TOP:
            raise BadInput(f"bad setting {key!r}: allowed: {', '.join(sorted(TOP | set(SECTIONS)))}, pretext_options")
        top[key] = tuple(value) if isinstance(value, list) else value
    missing = [f.name for f in fields(GridSpec) if f.name in TOP and f.default is MISSING
               and f.default_factory is MISSING and f.name not in top]
    if missing:
        raise BadInput(f"bad preset: it sets no {missing[0]} (a grid names its dataset, backbones, pretexts and "
                       "clusterers)")
    sections = {name: cls(**_fields_of(cls, cfg.get(name, {}), name)) for name, cls in SECTIONS.items()}
    options = []
    given = cfg.get("pretext_options", {})
    if not isinstance(given, dict):
        raise BadInput(f"bad setting pretext_options {given!r}: allowed: a table of pretext name -> its options")
    for pname, table in sorted(given.items()):
        cls = pretext_class(pname).Options
        options.append((pname, cls(**_fields_of(cls, table, f"pretext_options.{pname}"))))
    return GridSpec(**top, **sections, pretext_options=tuple(options))
