"""Checks of what the user passed that need more than the spec itself (files, folders, the disk), made
before any compute: each failure is a BadInput naming the value and what is allowed (exit 2)."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from benchmark.config.reduction import parse_reduce
from benchmark.config.specs import GridSpec
from benchmark.interfaces import BadInput, Listing, path_problem
from registry.backbones import WeightsRequest, build_backbone
from registry.datasets import limit_listing, resolve_dataset
from registry.weights import Init, resolve


def resolve_inits(spec: GridSpec, allow_download: bool = False) -> dict[str, dict[str, Init]]:
    """Every backbone's ``--init`` values resolved and verified (``registry.weights.resolve``: a missing ImageNet
    file that may not be fetched, or one whose sha256 does not match, is one line naming the backbone and the
    file); a checkpoint is loaded (weights only) into its backbone, so a mismatch is refused before compute.
    Returns {backbone: {value: Init}}."""
    if spec.weights and not spec.weights_paths():
        for item in (x.strip() for x in spec.weights.split(",") if x.strip()):
            path = item.partition("=")[2].strip() if "=" in item else item
            if path_problem(path) or not os.path.isfile(path):
                raise BadInput(f"bad --weights {path[:80]!r}: no such file")
        warnings.warn(f"--weights {spec.weights!r} is not used: no backbone of the grid takes weights "
                      f"({', '.join(spec.backbones)})", stacklevel=2)
    out: dict[str, dict[str, Init]] = {}
    for bname in spec.backbones:
        for value in spec.inits_for(bname):
            flag = f"--weights {bname}={value!r}" if spec.weights and value != "random" else f"--init {value}"
            if value not in ("random", "none") and not value.startswith("imagenet") and path_problem(value):
                raise BadInput(f"bad {flag}: no such file")
            init = resolve(bname, value, allow_download)
            if init.kind == "checkpoint":
                try:
                    build_backbone(bname, spec.image_size, WeightsRequest(init))
                except BadInput as exc:
                    raise BadInput(f"bad {flag}: {str(exc).split(': ', 1)[-1]}") from None
            out.setdefault(bname, {})[value] = init
    return out


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


def _not_over(path: Path, flag: str, inputs: tuple[Path, ...], inside: bool) -> None:
    """BadInput when ``path`` is one of ``inputs`` or inside one (``inside``: an output file), or holds one
    (a folder replaced whole)."""
    target = path.absolute().resolve()
    for i in (x.absolute().resolve() for x in inputs):
        if target == i or (i in target.parents if inside else target in i.parents):
            raise BadInput(f"bad {flag} {str(path)!r}: it is or {'is inside' if inside else 'holds'} {str(i)!r}, "
                           "which the command reads; choose another path")


def check_writable_file(path: Path, flag: str, inputs: tuple[Path, ...] = ()) -> None:
    """``path`` must be a file (or creatable as one) that this process may write: not a folder, its folder
    writable, and neither one of ``inputs`` nor inside one of those folders (the command would overwrite what
    it reads). Checked before the work whose result it receives."""
    _not_over(path, flag, inputs, inside=True)
    if path.is_dir():
        raise BadInput(f"bad {flag} {str(path)!r}: it is a folder; need a file path")
    parent = _existing(path.parent)
    if not parent.is_dir():
        raise BadInput(f"bad {flag} {str(path)!r}: {str(parent)!r} is a file; need a folder for it")
    if path.exists() and not os.access(path, os.W_OK):
        raise BadInput(f"bad {flag} {str(path)!r}: not writable")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"bad {flag} {str(path)!r}: {str(parent)!r} is not writable")


def check_empty_target(path: Path, flag: str, force: bool, replaceable: str = "",
                       keep: tuple[Path, ...] = ()) -> None:
    """A folder a command fills whole: writable, and empty unless ``force``; then it is replaced whole, so it
    must be what the command wrote before (it holds ``replaceable``) and neither one of ``keep`` (the
    command's inputs) nor a folder above one of them."""
    check_writable_dir(path, flag)
    _not_over(path, flag, keep, inside=False)
    if path.is_dir() and force and replaceable and any(path.iterdir()) and not (path / replaceable).is_file():
        raise BadInput(f"bad {flag} {str(path)!r}: --force replaces only an earlier export (a folder with "
                       f"{replaceable}), and this folder has none; choose another folder")
    if path.is_dir() and not force and any(path.iterdir()):
        n = sum(1 for _ in path.iterdir())
        raise BadInput(f"bad {flag} {str(path)!r}: not empty ({n} entries); add --force to replace it whole, or "
                       "choose another folder")
    if path.is_dir() and not os.access(path.parent.absolute(), os.W_OK | os.X_OK):
        raise BadInput(f"bad {flag} {str(path)!r}: its folder {str(path.parent)!r} is not writable (the "
                       "folder is replaced whole)")


def limited_listing(spec: GridSpec, split: str | None, which: str) -> Listing:
    """The listing of ``split`` cut to --limit; a --limit beyond the data set is refused, naming its size."""
    listing = resolve_dataset(spec.dataset, spec.labels, split).list()
    if spec.limit is not None and spec.limit > len(listing.names):
        raise BadInput(f"bad --limit {spec.limit}: {spec.dataset}{which} has {len(listing.names)} images; allowed: "
                       f"2 to {len(listing.names)}, or no --limit for all of them")
    return limit_listing(listing, spec.limit)


def check_reductions(spec: GridSpec, n: int) -> None:
    """Each reduction --reduce gives against the data's shape, before compute: PCA to at most n dimensions,
    UMAP to at most n - 2 (its spectral initialisation needs n > dims + 1). A clusterer's default (PCA-50 for
    Ward) is a default, not a request: it keeps min(50, n, feature dim) dimensions."""
    given = parse_reduce(spec.reduce, spec.clusterers)
    for c in spec.clusterers:
        method, dims = given.get(c) or spec.reduction_for(c)
        top = n if method == "pca" else n - 2
        if c not in given and method == "umap" and dims > top:  # a default that cannot run on so few images
            raise BadInput(f"bad --clusterers {c!r} on {n} images: its default reduction umap:{dims} needs at least "
                           f"{dims + 2}; pass --reduce {c}=standardize or more images")
        if c in given and method in ("pca", "umap") and dims > top:
            raise BadInput(f"bad --reduce {method}:{dims} (for {c}): the data has {n} images; allowed: {method}:D "
                           f"with 2 <= D <= {top}")
