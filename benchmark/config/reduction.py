"""``--reduce`` parsed (CONVENTIONS 8): ``none``, ``standardize``, ``l2``, ``pca[:D]``, ``umap[:D]``, for all
clusterers or per clusterer (``kmeans=standardize,hdbscan=umap``). What each method computes is
``benchmark.scoring.reduce``."""
from __future__ import annotations

from benchmark.interfaces import BadInput

METHODS = ("none", "standardize", "l2", "pca", "umap")


DEFAULT_DIMS = {"pca": 50, "umap": 10}
MAX_DIMS = 65536  # a bound before the data is known; the data's shape bounds it further (checked before compute)


def parse_method(text: str) -> tuple[str, int]:
    """``"umap:10"`` -> ("umap", 10); dims 0 for methods without one. BadInput names what is allowed."""
    name, colon, dims = text.strip().partition(":")
    allowed = "none, standardize, l2, pca[:D], umap[:D]"
    if name not in METHODS:
        raise BadInput(f"bad --reduce method {text!r}: allowed: {allowed}")
    if name not in DEFAULT_DIMS:
        if dims:
            raise BadInput(f"bad --reduce method {text!r}: {name} takes no dimension; allowed: {allowed}")
        return name, 0
    if not dims and not colon:
        return name, DEFAULT_DIMS[name]
    if not dims.isascii() or not dims.isdigit() or not 2 <= int(dims) <= MAX_DIMS:
        raise BadInput(f"bad --reduce dimension in {text!r}: allowed: an integer from 2 to {MAX_DIMS} (and at most "
                       "what the data's shape allows)")
    return name, int(dims)


def parse_reduce(text: str, clusterers: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """``--reduce`` as {clusterer: (method, dims)} for the clusterers it names (a bare method: all of them)."""
    out: dict[str, tuple[str, int]] = {}
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    for item in items:
        if "=" not in item:
            if len(items) > 1:
                raise BadInput(f"bad --reduce {text!r}: give one method for all, or clusterer=method items")
            return {c: parse_method(item) for c in clusterers}
        name, _, method = item.partition("=")
        if name.strip() in out:
            raise BadInput(f"bad --reduce {text!r}: clusterer {name.strip()!r} is given twice")
        if name.strip() not in clusterers:
            raise BadInput(f"bad --reduce clusterer {name.strip()!r}: allowed: the grid's clusterers "
                           f"({', '.join(clusterers)})")
        out[name.strip()] = parse_method(method)
    return out
