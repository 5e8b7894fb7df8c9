"""Presets are typed grid files (``<name>.toml`` in this folder): top-level grid fields, then ``[train]``,
``[probe]``, ``[cluster]`` and ``[pretexts.<name>]`` tables whose keys are those dataclasses' fields.
``spec_from_config`` turns one into a validated ``GridSpec``; command-line flags override it."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import tomllib

from benchmark.config.specs import GridSpec, ProbeSpec, TrainSpec
from benchmark.interfaces import BadInput, ClusterSpec
from registry.base import unknown_message
from registry.pretexts import pretext_class

FOLDER = Path(__file__).resolve().parent
SECTIONS = {"train": TrainSpec, "probe": ProbeSpec, "cluster": ClusterSpec}
TOP = {f.name for f in fields(GridSpec)} - set(SECTIONS) - {"pretext_options"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The configuration of preset ``name`` (nested dicts, as in the file)."""

    path = FOLDER / f"{name}.toml"
    if not path.is_file():
        raise BadInput(unknown_message("preset", name, preset_names()))
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _fields_of(cls: type, table: dict[str, Any], where: str) -> dict[str, Any]:
    allowed = [f.name for f in fields(cls)]
    for key in table:
        if key not in allowed:
            raise BadInput(f"bad setting {where}.{key}: allowed: {', '.join(allowed)}")
    return dict(table)


def spec_from_config(cfg: dict[str, Any]) -> GridSpec:
    """A validated GridSpec from a (preset + flags) configuration. Unknown settings are errors."""

    top: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in SECTIONS or key == "pretext_options":
            continue
        if key not in TOP:
            raise BadInput(f"bad setting {key!r}: allowed: {', '.join(sorted(TOP | set(SECTIONS)))}, pretext_options")
        top[key] = tuple(value) if isinstance(value, list) else value
    sections = {name: cls(**_fields_of(cls, cfg.get(name, {}), name)) for name, cls in SECTIONS.items()}
    options = []
    for pname, table in sorted(cfg.get("pretext_options", {}).items()):
        cls = pretext_class(pname).Options
        options.append((pname, cls(**_fields_of(cls, table, f"pretext_options.{pname}"))))
    return GridSpec(**top, **sections, pretext_options=tuple(options))
