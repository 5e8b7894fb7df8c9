"""What every weight source shares: the resolved ``Init``, the ``WeightSource`` interface, file hashing.

An init is where a backbone's weights start: ``random`` (the seeded initialisation of its family, the same on
every machine), ``imagenet`` (an ImageNet checkpoint of a weight source, verified by its sha256 before use),
``checkpoint`` (a local state_dict, ``--weights``), ``none`` (the raw-pixels baseline has no weights).

Input normalisation has one owner, the weight source: an ImageNet init carries its source's mean/std
(torchvision's transforms, timm's pretrained config); random inits and checkpoints keep the ImageNet
statistics the harness has always used (a checkpoint made by this harness was trained with them)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from registry.base import Registry

# ImageNet statistics: the normalisation of random inits, checkpoints and most ImageNet sources
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ALLOW_ENV = "SSLBENCH_ALLOW_DOWNLOAD"
INIT_KINDS = ("random", "imagenet", "checkpoint", "none")


@dataclass(frozen=True)
class Init:
    """A resolved init: its kind, the weight source and the verified local file behind it, its statistics."""

    kind: str = "random"  # one of INIT_KINDS
    source: str = ""  # the weight source (imagenet), "file" (checkpoint), "" (random, none)
    path: str | None = None  # the local file, verified (sha256) when resolved
    sha256: str = ""
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    default: bool = True  # imagenet: the backbone's first source (its label is plain "imagenet")

    @property
    def file(self) -> str:
        return Path(self.path).name if self.path else ""

    @property
    def label(self) -> str:
        """The init in a cell id and the axis: random, imagenet, imagenet:<source>, checkpoint:<sha256[:12]>, none."""
        if self.kind == "imagenet":
            return "imagenet" if self.default else f"imagenet:{self.source}"
        if self.kind == "checkpoint":
            return f"checkpoint:{self.sha256[:12]}"
        return self.kind

    @property
    def identity(self) -> str:
        """The ``weights`` column and run.json: kind, source, file name and sha256 prefix (never a path)."""
        if self.kind in ("random", "none"):
            return self.kind
        return f"{self.kind}:{self.source}/{self.file}@sha256:{self.sha256[:16]}"

    def key(self) -> list[object]:
        """What the train and feature keys hold of it: the content hash, never the path."""
        return [self.kind, self.source, self.sha256, list(self.mean), list(self.std)]


RANDOM = Init()
NONE = Init("none")


@dataclass(frozen=True)
class Expected:
    """Where a source keeps one backbone's file and what its content must hash to."""

    file: str  # the file name
    folder: str  # where it is looked for (and fetched to)
    sha256: str  # the full sha256, or the prefix the file's name carries ("" when only known once fetched)
    fetchable: bool  # whether the source can download it (else: how to install it, ``hint``)
    hint: str = ""


class WeightSource:
    """A source of ImageNet weights for some backbones (a member of ``registry.weights.SOURCES``)."""

    name = "base"

    def offers(self, backbone: str) -> bool:
        raise NotImplementedError

    def expected(self, backbone: str) -> Expected:
        raise NotImplementedError

    def cached(self, backbone: str) -> Path | None:
        """The local file when present (no network)."""
        exp = self.expected(backbone)
        path = Path(exp.folder) / exp.file
        return path if path.is_file() else None

    def fetch(self, backbone: str) -> Path:
        """Download the file with the library's own mechanism (only called when downloads are allowed)."""
        raise NotImplementedError(f"weight source {self.name!r} cannot download")

    def verify_against(self, backbone: str, path: Path) -> str:
        """The sha256 the file at ``path`` must have, in full or as a prefix ("" when unknown)."""
        return self.expected(backbone).sha256

    def stats(self, backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the input the weights were trained on."""
        return IMAGENET_MEAN, IMAGENET_STD


SOURCES: Registry[type[WeightSource]] = Registry("weight source", package="registry.weights")


_hashed: dict[tuple[str, int, int, int, int], str] = {}  # stat stamp -> sha256 of files hashed in this process


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes (remembered for this process while its stat stamp — size, mtime, ctime, inode —
    is unchanged). The one file hash of the project: ``benchmark.store.files.sha256_file`` is this."""
    st = os.stat(path)
    stamp = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if stamp not in _hashed:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
        _hashed[stamp] = h.hexdigest()
    return _hashed[stamp]


def downloads_allowed() -> bool:
    """Whether weights may be fetched: ``--allow-download`` (``allow_downloads``) or SSLBENCH_ALLOW_DOWNLOAD=1."""
    return _allowed[0] or os.environ.get(ALLOW_ENV, "").strip() == "1"


_allowed = [False]


class allow_downloads:  # noqa: N801  a context manager used like a function
    """``with allow_downloads(flag):`` downloads are allowed inside when ``flag`` (the CLI's --allow-download)."""

    def __init__(self, flag: bool = True) -> None:
        self.flag, self.before = flag, False

    def __enter__(self) -> None:
        self.before, _allowed[0] = _allowed[0], self.flag or _allowed[0]

    def __exit__(self, *exc: object) -> None:
        _allowed[0] = self.before
