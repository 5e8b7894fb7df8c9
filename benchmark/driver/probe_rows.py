"""The probe stage's part of a run: the cells.csv columns of a probe record (the linear probe and the kNN
accuracies, ``benchmark.probe``), and the keys of the ``--knn-reference`` split the planner is given."""
from __future__ import annotations

from typing import Any

from benchmark.config import checks
from benchmark.config.specs import GridSpec
from benchmark.data.images import images_key, labels_key, labels_record, listing_fingerprint
from benchmark.interfaces import BadInput, Listing
from benchmark.store.artifacts import ArtifactStore


def _draws(values: list[float] | None) -> str:
    return ";".join(f"{a:.6g}" for a in values or [])


def probe_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The cells.csv columns of a probe record (``benchmark.pipeline.stages.run_probe``); records made before the
    kNN columns have none of them."""
    return {"linear_probe_acc": record.get("probe_acc"), "linear_probe_std": record.get("probe_std"),
            "probe_accuracies": _draws(record.get("accuracies")), "knn_acc": record.get("knn_acc"),
            "knn_std": record.get("knn_std"), "knn_accuracies": _draws(record.get("knn_accuracies")),
            "knn_full_acc": record.get("knn_full_acc")}


def knn_reference(spec: GridSpec, listing: Listing, store: ArtifactStore, decoder: str
                  ) -> tuple[str | None, str | None]:
    """(images key, labels key) of the ``--knn-reference`` split, its labels record put in the store; (None,
    None) without one. BadInput when it shares images with the scored split (``listing``: its neighbours would
    include the queries themselves) or has no labels. ``--limit`` cuts it as it cuts the other splits."""
    split = spec.probe.knn_reference
    if split is None:
        return None, None
    ref = checks.limited_listing(spec, split, f" (its --knn-reference {split})")
    shared = set(ref.names) & set(listing.names)
    if shared:
        raise BadInput(f"bad --knn-reference {split!r}: it shares {len(shared)} images with the scored split "
                       f"(--split {spec.split or 'default'}), so queries would be their own neighbours; name a "
                       "split without them (e.g. --knn-reference train with --split test)")
    rec = labels_record(ref)
    if not any(x >= 0 for x in rec["labels"]):
        raise BadInput(f"bad --knn-reference {split!r}: its images have no labels to vote with")
    key = labels_key(rec)
    store.put_labels(key, rec)
    return images_key(listing_fingerprint(ref, store)[0], spec.image_size, decoder), key
