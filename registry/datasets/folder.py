"""Any folder of images (recursive), the founding case's photos among them."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from benchmark.interfaces import BadInput, Listing
from registry.datasets._base import IMAGE_EXTENSIONS, list_images, read_labels_csv


@dataclass
class FolderSource:
    """A folder of images (recursive). Labels from ``labels_csv`` (filename,label; filename relative to
    the folder or a bare file name), else from ImageFolder-style subfolders, else none."""

    root: Path
    labels_csv: Path | None = None
    splits: ClassVar[tuple[str, ...]] = ()

    def version(self) -> dict[str, Any] | None:
        return None  # the files themselves are the version: their content is the image key

    @property
    def name(self) -> str:
        return str(self.root)

    def _labels_for(self, rels: list[str]) -> tuple[list[str | None], str]:
        if self.labels_csv:
            mapping = read_labels_csv(Path(self.labels_csv))
            base_count: dict[str, int] = {}
            for r in rels:
                base_count[Path(r).name] = base_count.get(Path(r).name, 0) + 1
            ambiguous = sorted(k for k in mapping if k not in rels and base_count.get(k, 0) > 1)
            if ambiguous:
                warnings.warn(f"labels file: {len(ambiguous)} bare file names match several images and are "
                              f"ignored (give the path relative to the folder), e.g. {ambiguous[0]!r}", stacklevel=2)
            out = [mapping.get(r, mapping.get(Path(r).name) if base_count[Path(r).name] == 1 else None)
                   for r in rels]
            unmatched = sorted(set(mapping) - set(rels) - set(base_count))
            if unmatched:
                warnings.warn(f"labels file: {len(unmatched)} listed files not found among the images, "
                              f"e.g. {unmatched[0]!r}", stacklevel=2)
            return out, "csv"
        tops = {r.split("/", 1)[0] for r in rels if "/" in r}
        if len(tops) >= 2:  # ImageFolder style; files at the top level stay unlabeled
            return [r.split("/", 1)[0] if "/" in r else None for r in rels], "subfolders"
        return [None] * len(rels), "none"

    def list(self) -> Listing:
        paths = list_images(self.root)
        if not paths:
            raise BadInput(f"bad dataset folder {str(self.root)!r}: no image files in it (allowed formats: "
                             f"{', '.join(IMAGE_EXTENSIONS)})")
        rels = [p.relative_to(self.root).as_posix() for p in paths]
        labels, how = self._labels_for(rels)
        return Listing(rels, labels, None, files=paths, root=self.root, label_source=how)
