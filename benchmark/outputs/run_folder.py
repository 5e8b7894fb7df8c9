"""Reading a finished (or partial) run folder and the artifacts it points at, for report / recommend /
export / diff. Old run folders are read as far as they go; what is missing is said in one line."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data.images import open_image_set
from benchmark.driver.integrity import parse_csv, read_text, require_intact
from benchmark.driver.results import assignment_of, read_assignments, rows_of
from benchmark.driver.summary import with_init
from benchmark.interfaces import BadInput
from benchmark.scoring import columns
from benchmark.store.artifacts import RUN_INFO, ArtifactStore, RunFolder


@dataclass
class Run:
    path: Path
    cells: pd.DataFrame
    info: dict[str, Any]
    skipped: pd.DataFrame

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.info.get("cache_dir", ".cache"))

    @property
    def older_layout(self) -> bool:
        """Made before the artifact store (its cache cannot be read): scores only, no stored artifacts."""
        return "labels_key" not in self.info

    def missing(self, what: str) -> str:
        """One line saying why ``what`` cannot be read from the store."""
        if self.older_layout:
            return (f"{self.path} was made by an older version of the harness (before the artifact store): its "
                    f"{what} cannot be read; re-run the grid to get them")
        return f"the {what} are not in the store {self.store.root} any more: re-run the grid"

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    def features(self, key: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
        """(features (N, D), meta) of a feature key, or None when not in the store."""
        if not isinstance(key, str) or not key:
            return None
        return self.store.get_array("features", key, mmap=True)

    def feature_meta(self, key: Any) -> dict[str, Any] | None:
        """The metadata of a feature set with its training's (loss curve) without reading the features."""
        if not isinstance(key, str) or not key:
            return None
        meta = self.store.get_meta("features", key)
        if meta and meta.get("train_key"):
            meta = {**(self.store.get_weights_meta(meta["train_key"]) or {}), **meta}
        return meta

    def images(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(uint8 images (N,3,S,S), labels (N,)) of the run, or None when not in the store."""

        key = str(self.info.get("images_key", ""))
        if not key or self.store.get_images(key) is None:
            return None
        s = open_image_set(self.store, key, str(self.info.get("labels_key", "")))
        return s.images, s.labels

    def class_names(self) -> list[str]:
        rec = self.store.get_labels(str(self.info.get("labels_key", "")))
        return list(rec["class_names"]) if rec else []

    def assignments(self) -> dict[str, np.ndarray]:
        return read_assignments(self.folder.assignments)

    def clusters_of(self, row: Any) -> np.ndarray | None:
        return assignment_of(self.assignments(), row)


def _check_config(path: Path, info: dict[str, Any]) -> None:
    """The parts of run.json's configuration the readers use, of the types the harness writes."""
    cfg = info.get("config")
    bad = "" if isinstance(cfg, dict) else f"config is {type(cfg).__name__}, not a table"
    if not bad:
        assert isinstance(cfg, dict)
        kinds: dict[str, Any] = {"dataset": str, "image_size": int, "backbones": list, "pretexts": list,
                                 "clusterers": list, "seeds": list, "cluster": dict, "train": dict}
        for key, kind in kinds.items():
            value = cfg.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                bad = f"config.{key} is {value!r}"
                break
        else:
            if not all(isinstance(s, int) and not isinstance(s, bool) for s in cfg.get("seeds") or []):
                bad = f"config.seeds is {cfg.get('seeds')!r}"
            elif isinstance(cfg.get("image_size"), int) and not 1 <= cfg["image_size"] <= 65536:
                bad = f"config.image_size is {cfg['image_size']!r}"
    if bad:
        raise BadInput(f"bad run folder {str(path)!r}: {RUN_INFO}'s {bad} (damaged or edited)")


def load_run(path: Path) -> Run:
    """A run folder read back and verified (``benchmark.driver.integrity``): BadInput naming the first file or
    row that is damaged or edited, or a folder that is not a run's."""
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise BadInput(f"bad run folder {str(path)!r}: not a folder")
    if not folder.holds_run():
        raise BadInput(f"bad run folder {str(path)!r}: no cells.csv in it")
    check = require_intact(folder)
    info = folder.read_info() or {}
    _check_config(path, info)
    skipped = pd.DataFrame(columns=["path", "reason"])
    if folder.skipped.is_file():
        head, body = parse_csv(read_text(folder.skipped, "run folder file"))
        skipped = pd.DataFrame(body, columns=["path", "reason"]) if head == ["path", "reason"] else skipped
    cells = pd.DataFrame(rows_of(check.header, check.rows)).reindex(columns=columns.names())  # older runs lack some
    if cells["seed"].isna().any():
        cells["seed"] = cells["seed"].fillna((info.get("config") or {}).get("seed", 0))
    return Run(path, with_init(cells), info, skipped)  # runs before the init axis: init read from weights
