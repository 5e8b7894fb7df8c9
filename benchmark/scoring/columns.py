"""The column table: every column of cells.csv once, with what each output does with it.

A row names the column, its label, which way is better, how summary.csv aggregates it over seeds and which
views show it (the report's leaderboard and heatmaps, ``diff``, ``export``'s manifest); cells.csv's order is
the table's order, the views' order is ``rank``. A cell-stage score also carries its function of the fitted
cell (``CellFit``): a new metric is that function plus one row (``register``), and cells.csv, summary.csv,
the report, ``diff`` and ``export`` find it here. (Cached cell records made before it lack it: bump
``benchmark.pipeline.plan.CELL_VERSION`` with a new built-in score.)"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable

import numpy as np

from benchmark.config.specs import MAX_SEED
from benchmark.interfaces import Status
from benchmark.scoring.metrics import (
    ExternalScores,
    InternalScores,
    external_scores,
    internal_scores,
    rankability,
    silhouette_with_noise,
    stability,
)
from benchmark.scoring.streamed import Rows

GROUPS = ("cell", "score", "probe", "features", "timing", "record")
SEEDS = ("interval", "mean", "none")  # summary.csv: mean/std/lo/hi, a plain mean, or not aggregated
VIEWS = frozenset({"leaderboard", "heatmap", "diff", "export"})


@dataclass
class CellFit:
    """A fitted cell, what a cell-stage score is computed from. common: (N, D) the standardized
    full-dimensional features (the space every clusterer is scored in), an array or ``Rows`` read by blocks
    (``np.asarray(fit.common)`` makes it whole); own: (N, d) the space the clusterer worked in; assign:
    (N,) clusters, -1 noise; labels: (N,) classes, -1 unlabeled; repeats: the assignments
    of refits with other seeds (``assign`` first)."""

    common: np.ndarray | Rows
    own: np.ndarray
    assign: np.ndarray
    labels: np.ndarray
    repeats: list[np.ndarray]
    seeded: bool
    silhouette_max_n: int
    seed: int
    device: str = "cpu"

    @cached_property
    def internal(self) -> InternalScores:
        return internal_scores(self.common, self.assign, self.silhouette_max_n, self.seed, device=self.device)

    @cached_property
    def internal_own(self) -> InternalScores:
        return internal_scores(self.own, self.assign, self.silhouette_max_n, self.seed, device=self.device)

    @cached_property
    def external(self) -> ExternalScores | None:
        return external_scores(self.labels, self.assign)

    @cached_property
    def stability(self) -> tuple[float | None, float | None]:
        if len(self.repeats) > 1 or not self.seeded:
            return stability(self.repeats)
        return None, None

    @property
    def status(self) -> Status:
        return Status.OK if not self.internal.reason else Status.DEGENERATE

    @cached_property
    def rankability(self) -> tuple[bool, str]:
        return rankability(self.assign, self.status)


@dataclass(frozen=True)
class Column:
    """One column of cells.csv. ``compute``: the cell-stage score's function of a ``CellFit`` (None: another
    stage or the driver fills it)."""

    name: str
    group: str
    label: str = ""
    better: str | None = None  # "higher" or "lower"
    seeds: str = "none"
    views: frozenset[str] = field(default_factory=frozenset)
    rank: int = 0  # order in the views and in summary.csv
    compute: Callable[[CellFit], Any] | None = None
    valid: tuple[float, float] | None = None  # the values a number in this column may take (files read back)

    def __post_init__(self) -> None:
        if self.group not in GROUPS or self.seeds not in SEEDS or self.better not in (None, "higher", "lower") \
                or not self.views <= VIEWS:
            raise ValueError(f"bad column {self.name!r}: group in {GROUPS}, seeds in {SEEDS}, better higher/lower, "
                             f"views in {sorted(VIEWS)}")

    @property
    def title(self) -> str:
        """The heading of a plot of this column: its label and which way is better."""
        return f"{self.label or self.name} ({self.better} is better)" if self.better else (self.label or self.name)


def _ext(attr: str) -> Callable[[CellFit], Any]:
    return lambda f: getattr(f.external, attr) if f.external is not None else None


SHOWN = frozenset({"leaderboard", "heatmap", "diff", "export"})
_TABLE: list[Column] = [
    Column("dataset", "cell"), Column("backbone", "cell"), Column("init", "cell"), Column("weights", "cell"),
    Column("pretext", "cell"),
    Column("clusterer", "cell"), Column("seed", "cell"), Column("image_size", "cell"), Column("n_images", "cell"),
    Column("n_labeled", "cell"), Column("reduce", "cell"),
    Column("n_clusters", "score", "clusters", seeds="interval", rank=11, compute=lambda f: f.internal.n_clusters),
    Column("noise_fraction", "score", "noise", seeds="interval", rank=10,
           compute=lambda f: f.internal.noise_fraction),
    Column("silhouette", "score", "silhouette", "higher", "interval", SHOWN, 4, lambda f: f.internal.silhouette),
    Column("davies_bouldin", "score", "Davies-Bouldin", "lower", "interval", SHOWN, 7,
           lambda f: f.internal.davies_bouldin),
    Column("calinski_harabasz", "score", "Calinski-Harabasz", "higher",
           compute=lambda f: f.internal.calinski_harabasz),
    Column("silhouette_sample", "score", compute=lambda f: f.internal.silhouette_sample),
    Column("silhouette_own", "score", "silhouette in the clusterer's space", "higher", "interval", rank=5,
           compute=lambda f: f.internal_own.silhouette),
    Column("silhouette_noise", "score", "silhouette, noise as a cluster", "higher", "interval",
           frozenset({"leaderboard"}), 6,
           lambda f: silhouette_with_noise(f.common, f.assign, f.silhouette_max_n, f.seed, f.device)),
    Column("nmi", "score", "NMI", "higher", "interval", SHOWN, 1, _ext("nmi")),
    Column("ari", "score", "ARI", "higher", "interval", frozenset({"leaderboard", "diff", "export"}), 2, _ext("ari")),
    Column("cluster_acc", "score", "cluster accuracy", "higher", "interval", frozenset({"diff"}), 3,
           _ext("cluster_acc")),
    Column("stability", "score", "stability", "higher", "interval", rank=9, compute=lambda f: f.stability[0]),
    Column("stability_std", "score", compute=lambda f: f.stability[1]),
    Column("rankable", "score", compute=lambda f: f.rankability[0]),
    Column("rank_reason", "score", compute=lambda f: f.rankability[1]),
    Column("linear_probe_acc", "probe", "linear probe accuracy", "higher", "interval",
           frozenset({"heatmap", "diff", "export"}), 8),
    Column("linear_probe_std", "probe"), Column("probe_accuracies", "probe"),
    Column("knn_acc", "probe", "kNN accuracy", "higher", "interval", frozenset({"diff", "export"}), 8),
    Column("knn_std", "probe"), Column("knn_accuracies", "probe"),
    Column("knn_full_acc", "probe", "kNN accuracy, full labels", "higher", "interval", frozenset({"diff", "export"}),
           8),
    Column("pretext_loss", "features"), Column("pretext_acc", "features"),
    Column("train_s", "timing"), Column("extract_s", "timing"), Column("cluster_s", "timing"),
    Column("images_per_s", "timing", "images/s", "higher", "mean", frozenset({"diff", "export"}), 12),
    Column("feature_dim", "features"),
    Column("cluster_params", "record"), Column("status", "record"), Column("error", "record"),
    Column("notes", "record"), Column("feature_key", "record"), Column("probe_key", "record"),
    Column("cell_key", "record"),
]


_INF = math.inf
_RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, MAX_SEED), "image_size": (1, _INF), "n_images": (0, _INF), "n_labeled": (0, _INF),
    "n_clusters": (0, _INF), "noise_fraction": (0, 1), "silhouette": (-1, 1), "davies_bouldin": (0, _INF),
    "calinski_harabasz": (0, _INF), "silhouette_sample": (1, _INF), "silhouette_own": (-1, 1),
    "silhouette_noise": (-1, 1), "nmi": (0, 1), "ari": (-1, 1), "cluster_acc": (0, 1), "stability": (-1, 1),
    "stability_std": (0, 2), "linear_probe_acc": (0, 1), "linear_probe_std": (0, 1), "knn_acc": (0, 1),
    "knn_std": (0, 1), "knn_full_acc": (0, 1), "pretext_acc": (0, 1),
    "pretext_loss": (-_INF, _INF), "train_s": (0, _INF), "extract_s": (0, _INF), "cluster_s": (0, _INF),
    "images_per_s": (0, _INF), "feature_dim": (1, _INF)}
_TABLE[:] = [replace(c, valid=_RANGES.get(c.name)) for c in _TABLE]
REQUIRED = ("backbone", "pretext", "clusterer", "status")  # what every schema version of cells.csv has
DRAW_LISTS = ("probe_accuracies", "knn_accuracies")  # per-draw accuracies, "a;b;c"


def row_problem(row: dict[str, Any]) -> str:
    """Why a cells.csv row read back cannot be a finished cell ("" when it can): a status that is not one of
    ours, a number that does not parse, a score outside what it can be (silhouette in [-1, 1], ...)."""
    status = row.get("status")
    if status not in {s.value for s in Status}:
        return f"status {status!r} is not one of {', '.join(s.value for s in Status)}"
    for c in _TABLE:
        value = row.get(c.name)
        if c.valid is None or value is None or value == "":
            continue
        try:
            x = float(value)
        except (TypeError, ValueError):
            return f"{c.name} {value!r} is not a number"
        lo, hi = c.valid
        if math.isnan(x) or not lo - 1e-6 <= x <= hi + 1e-6:
            return f"{c.name} {value!r} is outside [{lo:g}, {hi:g}]"
    params = row.get("cluster_params")
    if params not in (None, ""):
        try:
            parsed = json.loads(str(params))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("k", 0), (int, type(None))):
            return f"cluster_params {str(params)[:40]!r} is not a JSON object of the clusterer's parameters"
    for name in DRAW_LISTS:
        accs = row.get(name)
        if accs not in (None, ""):
            try:
                ok = all(0 <= float(a) <= 1 for a in str(accs).split(";"))
            except ValueError:
                ok = False
            if not ok:
                return f"{name} {str(accs)[:40]!r} is not a ';' list of accuracies"
    return ""


def header_problem(header: list[str]) -> str:
    """Why a cells.csv header is not one this harness writes ("" when it is): a column of no schema version
    (cells.csv of older versions lack some of today's columns; they never had others), or a key column
    missing, or a column twice."""
    known = set(names())
    unknown = [h for h in header if h not in known]
    if unknown:
        return f"column {unknown[0]!r} is not one of cells.csv's"
    missing = [h for h in REQUIRED if h not in header]
    if missing:
        return f"column {missing[0]!r} is missing"
    if len(set(header)) != len(header):
        return "a column appears twice"
    return ""


def table() -> list[Column]:
    """Every column, in cells.csv's order."""
    return list(_TABLE)


def register(column: Column) -> Column:
    """Add a column (a new metric: a cell-stage score with its ``compute``) at the end of the scores."""
    if any(c.name == column.name for c in _TABLE):
        raise ValueError(f"column {column.name!r} is already in the table")
    same = [i for i, c in enumerate(_TABLE) if c.group == column.group]
    _TABLE.insert(same[-1] + 1 if same else len(_TABLE), column)
    return column


def unregister(name: str) -> None:
    """Remove a column added by ``register`` (tests)."""
    _TABLE[:] = [c for c in _TABLE if c.name != name]


def column(name: str) -> Column:
    for c in _TABLE:
        if c.name == name:
            return c
    raise KeyError(name)


def names() -> list[str]:
    """cells.csv's header."""
    return [c.name for c in _TABLE]


def timing_columns() -> list[str]:
    """The columns left out when two runs are compared for equality (CONVENTIONS 2)."""
    return [c.name for c in _TABLE if c.group == "timing"]


def _ranked(cols: list[Column]) -> list[Column]:
    return sorted(cols, key=lambda c: c.rank)


def summary_columns(seeds: str) -> list[str]:
    """The columns summary.csv aggregates over seeds with ``seeds`` ("interval" or "mean"), in rank order."""
    return [c.name for c in _ranked([c for c in _TABLE if c.seeds == seeds])]


def shown_in(view: str) -> list[Column]:
    """The columns a view shows (``leaderboard``, ``heatmap``, ``diff``, ``export``), in rank order."""
    return _ranked([c for c in _TABLE if view in c.views])


def cell_scores() -> list[Column]:
    """The scores the cell stage computes, each from its function of the fitted cell."""
    return [c for c in _TABLE if c.compute is not None]


def score_cell(fit: CellFit) -> dict[str, Any]:
    """Every cell-stage score of a fitted cell, by column name."""
    return {c.name: c.compute(fit) for c in cell_scores() if c.compute is not None}
