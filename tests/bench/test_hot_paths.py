"""pytest-benchmark suite for the CPU hot paths (decode, silhouette, probe). Timings are not asserted here:
run `make bench` (or pytest tests/bench --benchmark-enable --benchmark-autosave) and compare runs with
--benchmark-compare --benchmark-compare-fail=median:10%."""
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import make_blobs

from benchmark.config.specs import ProbeSpec
from benchmark.data.decode import decode_file
from benchmark.probe.protocol import linear_probe
from benchmark.scoring.silhouette import silhouette_torch


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    rng = np.random.default_rng(0)
    arr = (rng.random((1080, 1633, 3)) * 255).astype(np.uint8)
    p = tmp_path_factory.mktemp("img") / "photo.jpg"
    Image.fromarray(arr).save(p, quality=90)
    return p


def test_decode_large_jpeg(benchmark, jpeg):
    out, _ = benchmark(decode_file, jpeg, 64)
    assert out.shape == (3, 64, 64)


def test_silhouette_torch(benchmark):
    X, y = make_blobs(n_samples=3000, centers=8, n_features=128, random_state=0)
    s = benchmark(silhouette_torch, X.astype(np.float32), y)
    assert -1 <= s <= 1


def test_linear_probe(benchmark):
    X, y = make_blobs(n_samples=1000, centers=10, n_features=256, random_state=0)
    r = benchmark(linear_probe, X, y, ProbeSpec(), 0)
    assert r.mean > 0.5
