"""Checks of what the user passed that need more than the spec itself (files, folders, the disk), made
before any compute: each failure is a BadInput naming the value and what is allowed (exit 2)."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from benchmark.config.specs import GridSpec
from benchmark.interfaces import BadInput
from benchmark.store.files import sha256_file
from registry.backbones import WeightsRequest, build_backbone


def check_weights(spec: GridSpec) -> dict[str, str]:
    """Load every --weights checkpoint (weights only) into the backbone it is given for; a mismatch is a
    BadInput. Returns {backbone: content hash of its checkpoint}, so two files of one name never share a key."""

    paths = spec.weights_paths()
    if spec.weights and not paths:
        warnings.warn(f"--weights {spec.weights!r} is not used: no backbone of the grid takes weights "
                      f"({', '.join(spec.backbones)})", stacklevel=2)
    for bname, path in paths.items():
        try:
            build_backbone(bname, spec.image_size, WeightsRequest(path=path))
        except BadInput as exc:
            raise BadInput(f"bad --weights {bname}={path!r}: {str(exc).split(': ', 1)[-1]}") from None
    return {b: sha256_file(Path(p))[:16] for b, p in paths.items()}


def check_free_space(root: Path, n: int, size: int) -> None:
    """The decode writes each image twice (its per-file entry and the data set's store): refuse to start
    when the disk under the store cannot hold that."""
    need = 2 * n * 3 * size * size + (64 << 20)
    free = shutil.disk_usage(_existing(root)).free
    if free < need:
        raise BadInput(f"bad --cache-dir {str(root)!r}: decoding {n} images at {size} px needs about "
                       f"{need / 1e6:.0f} MB and {free / 1e6:.0f} MB are free there; free space or choose another "
                       "--cache-dir")


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable_dir(path: Path, flag: str) -> None:
    """``path`` must be a directory (or creatable as one) that this process may write in."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"bad {flag} {str(path)!r}: it is a file; need a directory")
    parent = _existing(path)
    if not parent.is_dir():
        raise BadInput(f"bad {flag} {str(path)!r}: {str(parent)!r} is a file; need a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"bad {flag} {str(path)!r}: {str(parent)!r} is not writable")
