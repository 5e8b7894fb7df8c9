"""The one spelling of a cell id: backbone/init/pretext/clusterer/seed, and its parser (the old
backbone/pretext/clusterer/seed ids of runs before the init axis still read)."""
from __future__ import annotations

from benchmark.interfaces import BadInput

__all__ = ["cell_id", "parse_cell_id"]


def cell_id(backbone: str, pretext: str, clusterer: str, seed: int, init: str = "random") -> str:
    """The one spelling of a cell id, backbone/init/pretext/clusterer/seed (CONVENTIONS 5: the seed is part of the
    cell); the init is its label (a checkpoint by its content hash, never its path)."""
    return f"{backbone}/{init}/{pretext}/{clusterer}/{seed}"


def parse_cell_id(text: str) -> tuple[str, str | None, str, str, int | None]:
    """``backbone/init/pretext/clusterer[/seed]``, or the old ``backbone/pretext/clusterer[/seed]`` (init None:
    any) -> parts (seed None when not given). timm names and init labels hold no '/'."""
    parts = text.split("/")
    if len(parts) == 5 and parts[4].isdigit():
        return parts[0], parts[1], parts[2], parts[3], int(parts[4])
    if len(parts) == 4 and parts[3].isdigit():
        return parts[0], None, parts[1], parts[2], int(parts[3])
    if len(parts) == 4:
        return parts[0], parts[1], parts[2], parts[3], None
    if len(parts) == 3:
        return parts[0], None, parts[1], parts[2], None
    raise BadInput(f"bad cell {text!r}: write backbone/init/pretext/clusterer[/seed] (or backbone/pretext/clusterer"
                   "[/seed] when the backbone has one init)")
