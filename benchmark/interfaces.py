"""The small module both layers share: what registry members receive and return.

``registry/`` imports nothing else from ``benchmark/``: validation helpers, the options base class every
member's options derive from, the clustering options, the data-set listing and ``stable_hash``. It
depends only on the standard library and numpy."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Callable

import numpy as np


class Status(str, Enum):
    """The status of a task and of a cells.csv row: ``ok``; ``degenerate`` (scores undefined, e.g. one
    cluster); ``failed`` (an error of its own or upstream); ``skipped`` (by a rule: a pretext that does not
    apply). Compares equal to its value and writes as it."""

    OK = "ok"
    DEGENERATE = "degenerate"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class BadInput(ValueError):
    """A value the user passed (flag, file, folder, data) that cannot be used. The message is one line naming
    the value and what is allowed; the command line prints it and exits 2. Any other exception is a bug."""


def check_positive(name: str, value: int | float, allow_zero: bool = False) -> None:
    """ValueError unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise BadInput(f"bad {name} {value!r}: must be a finite number {bound}")


MAX_PATH = 4096  # PATH_MAX on Linux; a name in it at most NAME_MAX bytes
MAX_NAME = 255


def path_problem(text: str) -> str:
    """Why ``text`` cannot be a path on this system ("" when it can): empty, a NUL byte, too long."""
    if not text.strip():
        return "an empty path"
    if "\0" in text:
        return "a NUL byte"
    raw = os.fsencode(text)
    if len(raw) > MAX_PATH or any(len(part) > MAX_NAME for part in raw.split(b"/")):
        return f"longer than the system allows ({MAX_PATH} bytes, {MAX_NAME} per name)"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Constraint:
    """What one configuration field accepts (scikit-learn's ``_parameter_constraints`` is the model), declared
    in the field's metadata (``setting``) and checked at construction (``check_settings``), before any compute.

    kind: ``int``, ``real``, ``reals`` (a list of them), ``choice``, ``bool``, ``text`` (not empty), ``path``
    (a path this system can name: not empty, no NUL, not too long), ``names`` (a comma list of names),
    ``ints`` (a comma list of integers, each in [lo, hi]); lo/hi: inclusive bounds (``lo_open``: lo excluded);
    ``optional``: None allowed; ``auto``: the string "auto" allowed too; ``lo_open`` / ``hi_open``: that bound
    excluded."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    auto: bool = False
    lo_open: bool = False
    hi_open: bool = False
    empty: bool = False  # text: the empty string allowed too (it means the default)
    cap: float | None = None  # a sanity upper limit (what the consumers take), said apart from the range

    def allowed(self) -> str:
        """What is allowed, in words: "an integer >= 1", "one of sgd, adam", ..."""
        if self.kind == "choice":
            return ", ".join(self.choices)
        bounds = []
        if self.lo is not None and self.hi is not None and not self.lo_open and not self.hi_open:
            bounds.append(f"in {_num(self.lo)}..{_num(self.hi)}")
        elif self.lo is not None:
            bounds.append(f"{'>' if self.lo_open else '>='} {_num(self.lo)}")
        if self.hi is not None and (self.lo is None or self.lo_open or self.hi_open):
            bounds.append(f"{'<' if self.hi_open else '<='} {_num(self.hi)}")
        what = {"int": "an integer", "real": "a finite number", "bool": "true or false", "text": "text",
                "path": "a path",
                "names": "a comma list of names", "ints": "a comma list of integers",
                "reals": "a list of finite numbers"}[self.kind]
        capped = f", at most {_num(self.cap)}" if self.cap is not None else ""
        return " ".join([what, " and ".join(bounds)]).strip() + capped + (", or auto" if self.auto else "")

    def _number_ok(self, value: Any) -> bool:
        integral = self.kind in ("int", "ints")
        if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
            return False
        if not math.isfinite(value):
            return False
        low_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        high_ok = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return low_ok and high_ok and (self.cap is None or value <= self.cap)

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.auto and value == "auto":
            return True
        if self.kind in ("int", "real"):
            return self._number_ok(value)
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "text":
            return isinstance(value, str) and (self.empty or bool(value.strip()))
        if self.kind == "path":
            return isinstance(value, str) and not path_problem(value)
        if self.kind == "names":
            return isinstance(value, tuple) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)
        return isinstance(value, tuple) and bool(value) and all(self._number_ok(v) for v in value)  # ints, reals

    def check(self, label: str, value: Any) -> None:
        if self.kind in ("ints", "reals") and isinstance(value, tuple):  # name the bad element: "bad seed -1"
            bad = [v for v in value if not self._number_ok(v)]
            if bad:
                one = Constraint("int" if self.kind == "ints" else "real", self.lo, self.hi, lo_open=self.lo_open,
                                 hi_open=self.hi_open)
                raise BadInput(f"bad {label.removesuffix('s')} {bad[0]!r}: allowed: {one.allowed()}")
        if not self.ok(value):
            raise BadInput(f"bad {label} {value!r}: allowed: {self.allowed()}")


def setting(default: Any = dataclasses.MISSING, constraint: Constraint | None = None, *, flag: str = "",
            label: str = "", help: str = "", factory: Callable[[], Any] | None = None) -> Any:
    """A configuration field: its default, its constraint, its command-line flag (without dashes; "" for
    none), the label its error messages use (default: the field name with spaces) and its help text."""
    meta = {"constraint": constraint, "flag": flag, "label": label, "help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def check_settings(obj: Any) -> None:
    """Check every field of a dataclass that declares a constraint (BadInput names the value and what is
    allowed)."""
    for f in fields(obj):
        c = f.metadata.get("constraint")
        if c is not None:
            c.check(f.metadata.get("label") or f.name.replace("_", " "), getattr(obj, f.name))


_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2})")


def escape_name(name: str) -> str:
    """A file name as text for CSV and JSON, reversibly (``unescape_name``): a byte that is not valid UTF-8
    (which Python holds as a surrogate escape, U+DC80..U+DCFF) is written ``\\xNN`` and a backslash is
    doubled; every other name is written as it is."""
    if "\\" not in name and not any("\udc80" <= ch <= "\udcff" for ch in name):
        return name
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else ("\\\\" if ch == "\\" else ch)
                   for ch in name)


def unescape_name(text: str) -> str:
    """The file name ``escape_name`` wrote (``os.fsencode`` of it gives the original bytes)."""
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: "\\" if m.group(1) == "\\" else chr(0xDC00 + int(m.group(1)[1:], 16)), text)


def stable_hash(obj: object, n: int = 16) -> str:
    """Short hex digest of a JSON-serializable object (dataclasses allowed), stable across runs."""

    def default(o: object) -> object:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):  # an instance (a class has no values)
            return dataclasses.asdict(o)
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot hash {type(o).__name__}")

    blob = json.dumps(obj, sort_keys=True, default=default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@dataclass(frozen=True)
class Options:
    """Base of a member's own options (a frozen dataclass validated in ``__post_init__``).

    ``flag_prefix`` names the command-line flags: field ``gap`` of prefix ``jigsaw`` is ``--jigsaw-gap``;
    a field's ``metadata["help"]`` is its help text. The options are the member's whole contribution to
    a cache key (``key()``)."""

    flag_prefix = ""

    def key(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def flags(cls) -> list[tuple[str, dataclasses.Field]]:
        """(flag name without dashes, field) for every option."""
        return [(f"{cls.flag_prefix}-{f.name.replace('_', '-')}", f) for f in fields(cls)]


@dataclass(frozen=True)
class NoOptions(Options):
    """For members without options."""


@dataclass(frozen=True)
class ClusterSpec:
    """Clusterer options: k for k-means types (None: number of classes), DBSCAN eps (None: k-distance knee)."""

    k: int | str | None = setting(None, Constraint("int", 2, cap=100_000, optional=True, auto=True), flag="k",
                                  help="clusters for k-means types (default: the number of classes); auto: chosen "
                                       "per cell by silhouette and stability")
    eps: float | None = setting(None, Constraint("real", 0, cap=1e12, optional=True, lo_open=True), flag="eps",
                                help="DBSCAN eps (default: the k-distance knee)")
    min_samples: int = setting(5, Constraint("int", 2, cap=100_000))
    density_dims: int = setting(50, Constraint("int", 0, cap=65536))  # PCA copy for density clusterers (0: none)
    silhouette_max_n: int = setting(20000, Constraint("int", 1, cap=10**8))  # above this, silhouette on a seeded sample
    kmeans_n_init: int = setting(4, Constraint("int", 1, cap=1000))  # k-means restarts (scikit-learn KMeans)
    stability_repeats: int = setting(3, Constraint("int", 1, cap=100))  # fits of a seeded clusterer for stability

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class Listing:
    """What a data set lists: N images (files to decode, or in-memory pixels) with names and labels.

    ``files``: paths to decode (None for in-memory data); ``pixels``: a callable giving N uint8 arrays
    (H,W) or (H,W,3); ``labels``: N class names or None (unlabeled); ``fingerprint``: identifies the pixel
    content (not the labels)."""

    names: list[str]
    labels: list[str | None]
    fingerprint: str | None  # None for files: their content hashes are the fingerprint
    files: list[Path] | None = None
    root: Path | None = None
    pixels: Callable[[], list[np.ndarray]] | None = None
    label_source: str = "none"  # "builtin", "csv", "subfolders" or "none"
    notes: list[str] = field(default_factory=list)

    def class_names(self) -> list[str]:
        return sorted({x for x in self.labels if x is not None})
