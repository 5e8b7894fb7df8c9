"""Run the reduce and cell tasks on N synthetic feature rows, for each N given, in this (fresh) process and
print their peak memory as JSON by N: ``python -m tests.benchmark.pipeline.stage_memory N1,N2 D``: the reduce stage with
``standardize`` and with ``pca:8``, and a k-means cell on the ``pca:8`` space. Used by the slope test of
``test_memory_bound.py``.

After a warm-up on a small store (the libraries' lazy state in place), the store holds N x D float32
features (four Gaussian blobs, seeded), a labels record and a stub image store (the cell reads only its
names). Peaks are measured two ways during each stage: the anonymous memory
of this process (``RssAnon``, sampled every 2 ms) and tracemalloc's exact peak of numpy's allocations
(numpy reports each array to tracemalloc, so a whole copy cannot hide between two samples). The row-block
size and the "small" threshold of ``benchmark.scoring.streamed`` are set low so that a few MB of features
already take the streamed path the 100k-photo runs take."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np


def make_store(root: Path, n: int, d: int) -> tuple[Any, str]:
    """A store with n x d seeded features, a stub image store and a labels record; (store, labels key)."""
    from benchmark.data.images import labels_key
    from benchmark.scoring import streamed
    from benchmark.store.artifacts import ArtifactStore

    store = ArtifactStore(root)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n)
    centres = rng.normal(0, 3, (4, d)).astype(np.float32)
    with store.array_writer("features", "f", (n, d)) as out:
        for sl in streamed.blocks(n, d):
            out[sl] = centres[y[sl]] + rng.standard_normal((sl.stop - sl.start, d), dtype=np.float32)
    store.put_array_meta("features", "f", {"feature_dim": d})
    names = [f"img{i}" for i in range(n)]
    with store.image_writer("i", (n, 3, 1, 1)) as arr:
        arr[:] = 0
    store.put_images_meta("i", {"names": names, "grayscale": False, "skipped": []})
    rec = {"names": names, "class_names": ["a", "b", "c", "d"], "labels": y.tolist(), "label_source": "test"}
    lkey = labels_key(rec)
    store.put_labels(lkey, rec)
    return store, lkey


def main() -> None:
    sizes, d = [int(x) for x in sys.argv[1].split(",")], int(sys.argv[2])
    import gc

    from benchmark.interfaces import ClusterSpec
    from benchmark.pipeline import stages
    from benchmark.pipeline.plan import CellTask, ReduceTask
    from benchmark.runtime.memory import PeakMemory
    from benchmark.scoring import streamed

    streamed.SMALL_ELEMENTS = 1 << 14
    streamed.BLOCK_BYTES = 1 << 20

    def tasks(lkey: str) -> list[tuple[str, Any]]:
        cell = CellTask("c", "f", "r", "i", lkey, "kmeans", 4, ClusterSpec(silhouette_max_n=1000), 0, "cpu")
        return [("reduce_standardize", lambda st: stages.run_reduce(ReduceTask("s", "f", "standardize", 0, 0),
                                                                    st, False)),
                ("reduce_pca", lambda st: stages.run_reduce(ReduceTask("r", "f", "pca", 8, 0), st, False)),
                ("cell", lambda st: stages.run_cell(cell, st, False))]

    # a warm-up on a small store first: the libraries' lazy imports, thread pools and caches are in place
    # before anything is measured, so what the peaks differ by is what the data size makes them hold
    # the stores on tmpfs where there is one: the stages' fsyncs of ~200 MB would otherwise load the disk that
    # the suite's kill -9 tests time their writes on (their memory maps are shared pages, not RssAnon)
    tmp = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    warm, wkey = make_store(Path(tempfile.mkdtemp(prefix="stage-memory-warm-", dir=tmp)), 1200, d)
    folders = [warm.root]
    try:
        for _name, run in tasks(wkey):
            assert run(warm).status == "ok"
        out: dict[str, dict[str, float]] = {}
        for n in sizes:  # one process for every size: its allocator and libraries are the same for each
            folder = Path(tempfile.mkdtemp(prefix="stage-memory-", dir=tmp))
            folders.append(folder)
            store, lkey = make_store(folder, n, d)
            got: dict[str, float] = {}
            for name, run in tasks(lkey):
                gc.collect()
                tracemalloc.start()
                with PeakMemory(interval=0.002) as peak:
                    result = run(store)
                _now, traced = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                assert result.status == "ok", result.error
                got[f"{name}_anon"] = float(peak.peak or 0)
                got[f"{name}_traced"] = float(traced)
            out[str(n)] = got
            del store
            shutil.rmtree(folder, ignore_errors=True)
    finally:  # a failed size or an interrupt (not a kill -9) leaves no ~200 MB store behind
        for f in folders:
            shutil.rmtree(f, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
