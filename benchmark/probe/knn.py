"""Weighted k-nearest-neighbour accuracy on frozen features: the evaluation SSL libraries report beside the
linear probe.

The rule is solo-learn's ``WeightedKNNClassifier`` (solo/utils/knn.py; after Wu et al. 2018, "Unsupervised
Feature Learning via Non-Parametric Instance Discrimination"): features are L2-normalised, the similarity s of a
query and a reference is their cosine, each of the query's k most similar references votes for its class with
weight exp(s / T), and the prediction is the class with the largest total. k is capped at the number of
references. The weights are computed as exp((s - s_max) / T), s_max the query's best similarity: the same
prediction (one positive factor per query), without overflow at small T.

Two protocols, both in the probe stage:

- on the probe's draws (``knn_draws``): each draw's k-per-class labeled subset are the references, the draw's
  test images (every labeled image outside the subset) the queries; k = 20, T = 0.07 (solo-learn's defaults,
  ``--knn-k``, ``--knn-t``);
- full labels (``knn_full``, ``--knn-reference SPLIT``): every labeled image of another split of the data set
  (e.g. train) is a reference of every labeled image of the scored split; k = 200, T = 0.1 (lightly's benchmark,
  benchmarks/imagenet/resnet50/knn_eval.py; ``--knn-full-k``, ``--knn-full-t``).

Ties: two classes with the same total vote go to the one with the smaller class index (``torch.argmax`` returns
the first maximum; classes are indexed in sorted order); references tied at the k-th similarity are chosen
among by ``torch.topk`` (its order among equal values is unspecified).

Batched in torch on the run's device: every draw at once, queries in chunks and references in chunks with a
running top-k, so at most ``SIM_BLOCK`` similarities, ``REF_ROWS`` reference and ``QUERY_ROWS`` query rows are
held whatever N (``memory_bytes``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.config.specs import ProbeSpec
from benchmark.probe.protocol import Draws, labeled_draws

SIM_BLOCK = 1 << 22  # similarities (and running top-k candidates) held at once: 16 MiB of float32
REF_ROWS = 4096  # reference rows (over all draws) read, normalised and held at once
QUERY_ROWS = 8192  # query rows read, normalised and held at once


@dataclass(frozen=True)
class KnnResult:
    mean: float | None
    std: float | None
    accuracies: tuple[float, ...]
    k: int  # neighbours used (the requested k capped at the references)


def _rows(X: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of X (N, D), possibly memory-mapped, L2-normalised: (len(idx), D) float32 on the device."""
    x = torch.from_numpy(np.ascontiguousarray(X[idx], dtype=np.float32)).to(device)
    return torch.nn.functional.normalize(x, dim=1)


def knn_predict(queries: np.ndarray, query_rows: np.ndarray, refs: np.ndarray, ref_rows: np.ndarray,
                ref_labels: np.ndarray, n_classes: int, k: int, t: float, device: str = "cpu") -> np.ndarray:
    """The predicted class (B, Q) of each query ``queries[query_rows]`` (Q rows of (N, D)) in each of B problems
    whose references are ``refs[ref_rows[b]]`` (ref_rows (B, n)) with classes ``ref_labels`` (B, n) in
    [0, n_classes): the weighted vote of the module docstring with k = min(k, n)."""
    dev = torch.device(device)
    B, n = ref_rows.shape
    k = min(k, n)
    rc = max(1, min(n, REF_ROWS // B))
    spans = [(a, min(a + rc, n)) for a in range(0, n, rc)]
    y = torch.as_tensor(np.asarray(ref_labels, np.int64), device=dev)

    def chunk(a: int, b: int) -> torch.Tensor:  # (B, b - a, D)
        return _rows(refs, ref_rows[:, a:b].reshape(-1), dev).reshape(B, b - a, -1)

    held = chunk(*spans[0]) if len(spans) == 1 else None
    qc = max(1, min(QUERY_ROWS, SIM_BLOCK // (B * (rc + k))))
    out = [torch.zeros(B, 0, dtype=torch.long)]
    for q0 in range(0, len(query_rows), qc):
        Q = _rows(queries, query_rows[q0:q0 + qc], dev)  # (q, D)
        best_s = Q.new_empty(B, Q.shape[0], 0)
        best_i = torch.empty(B, Q.shape[0], 0, dtype=torch.long, device=dev)
        for a, b in spans:
            s = Q @ (held if held is not None else chunk(a, b)).transpose(1, 2)  # (B, q, c)
            s_all = torch.cat([best_s, s], -1)
            i_all = torch.cat([best_i, torch.arange(a, b, device=dev).expand(B, Q.shape[0], -1)], -1)
            top = s_all.topk(min(k, s_all.shape[-1]), dim=-1)  # sorted: the best first
            best_s, best_i = top.values, i_all.gather(-1, top.indices)
        cls = y.gather(1, best_i.reshape(B, -1)).reshape(best_i.shape)
        w = torch.exp((best_s.double() - best_s[..., :1].double()) / t)
        votes = torch.zeros(B, Q.shape[0], n_classes, dtype=torch.float64, device=dev).scatter_add_(-1, cls, w)
        out.append(votes.argmax(-1).cpu())
    return torch.cat(out, 1).numpy()


def memory_bytes(d: int) -> int:
    """What ``knn_predict`` holds at its peak on D = d features: a block of similarities, the running top-k's
    candidates and their indices (int64), and the normalised query and reference rows (two copies each)."""
    return 5 * SIM_BLOCK * 4 + 2 * (REF_ROWS + QUERY_ROWS) * max(d, 1) * 4


def knn_draws(features: np.ndarray, labels: np.ndarray, draws: Draws, k: int, t: float,
              device: str = "cpu") -> list[float]:
    """Per-draw kNN accuracy: each draw's labeled subset votes for every labeled image outside it."""
    classes, labeled = draws.classes, draws.labeled
    index = np.full(labels.size, -1, np.int64)
    index[labeled] = np.searchsorted(classes, labels[labeled])
    train = np.stack([s[0] for s in draws.splits])  # (B, n): every draw has k per class
    pred = knn_predict(features, labeled, features, train, index[train], classes.size, k, t, device)
    in_train = np.zeros((len(train), labels.size), bool)
    np.put_along_axis(in_train, train, True, axis=1)
    test = ~in_train[:, labeled]
    hits = ((pred == index[labeled][None]) & test).sum(1)
    return [float(h) / float(c) for h, c in zip(hits, test.sum(1), strict=True)]


def knn_probe(features: np.ndarray, labels: np.ndarray, spec: ProbeSpec, seed: int, device: str = "cpu"
              ) -> KnnResult:
    """The kNN accuracy on the linear probe's draws (``benchmark.probe.protocol.labeled_draws``): mean and std
    over the draws. None where the probe has no draws (its reason says why)."""
    draws = labeled_draws(labels, spec, seed)
    if draws.reason:
        return KnnResult(None, None, (), spec.knn_k)
    accs = knn_draws(features, labels, draws, spec.knn_k, spec.knn_t, device)
    return KnnResult(float(np.mean(accs)), float(np.std(accs)), tuple(accs),
                     min(spec.knn_k, len(draws.splits[0][0])))


def shared_classes(class_names: list[str], ref_class_names: list[str], ref_labels: np.ndarray) -> np.ndarray:
    """Reference labels (indices into ``ref_class_names``, -1 unlabeled) as indices into ``class_names`` (the
    scored split's); a class the scored split lacks gets an index after them (its votes are never correct)."""
    names = list(class_names) + sorted(set(ref_class_names) - set(class_names))
    where = np.array([names.index(c) for c in ref_class_names] + [-1], np.int64)
    return where[np.where(ref_labels >= 0, ref_labels, len(ref_class_names))]


def knn_full(features: np.ndarray, labels: np.ndarray, ref_features: np.ndarray, ref_labels: np.ndarray, k: int,
             t: float, device: str = "cpu") -> tuple[float | None, int, int]:
    """(accuracy, references, queries) of the full-label protocol: every labeled reference row votes for every
    labeled row of ``features``; labels of both in one index space (``shared_classes``). None without labels."""
    q, r = np.flatnonzero(labels >= 0), np.flatnonzero(ref_labels >= 0)
    if q.size == 0 or r.size == 0:
        return None, int(r.size), int(q.size)
    n_classes = int(max(labels.max(), ref_labels.max())) + 1
    pred = knn_predict(features, q, ref_features, r[None], ref_labels[r][None], n_classes, k, t, device)[0]
    return float((pred == labels[q]).mean()), int(r.size), int(q.size)
