"""Throughput benchmark and history comparison (the logic; timings are never asserted)."""
import json

import pytest

from benchmark.cli.main import main
from benchmark.perf.bench import (
    BenchSpec,
    compare,
    fingerprint,
    load_history,
    precision_reason,
    run_bench,
    time_steps,
    with_oom_retry,
)


def test_bench_writes_a_history_with_fingerprint_and_flops(tmp_path, cpu):
    out = tmp_path / "h.jsonl"
    spec = BenchSpec(backbones=("resnet18",), pretexts=("rotation", "simclr"), batch_size=4, image_size=32, warmup=1,
                     iters=1, repeats=2, pipeline=True)
    recs = run_bench(spec, cpu, out, progress=lambda s: None)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["infer", "train", "train", "pipeline"] == [r["kind"] for r in recs]
    # a training step's images/s counts source images; the record says how many views each one gets
    assert [(r["pretext"], r["views"]) for r in lines[1:3]] == [("rotation", 4), ("simclr", 2)]
    inf = lines[0]
    assert inf["key"] == "infer/resnet18/-/bs4/s32/fp32/nchw/eager/cpu"
    assert len(inf["step_ms_all"]) == 2 and inf["img_per_s"] > 0
    assert inf["flops_per_image"] == pytest.approx(2 * 0.0370e9, rel=0.05)  # resnet18 at 32 px: ~37 MMACs
    assert inf["math_mode"] == "fp32" and inf["matmul_peak_flops"] > 0
    assert {"cpu", "cores", "torch", "id"} <= set(inf["fingerprint"])
    pipe = lines[3]
    assert pipe["ratio"] > 0 and lines[1]["pretext"] == "rotation"
    assert pipe["store_images"] > 4 * 2 and pipe["bytes_to_device"] == pipe["store_images"] * 3 * 32 * 32


@pytest.mark.parametrize("precisions", [("fp32",), ("fp32", "bf16")])
def test_no_fraction_of_peak_exceeds_one(cpu, precisions):
    """Every "of peak" is the model's FLOP rate over the measured peak of the math mode it ran in (bf16
    rows over the bf16 peak where the CPU has it); nothing is clamped, so this fails when a peak is wrong."""
    spec = BenchSpec(backbones=("resnet18", "timm:resnet10t"), batch_size=8, image_size=64, warmup=1, iters=2,
                     repeats=2, precisions=precisions)
    recs = run_bench(spec, cpu, None, progress=lambda s: None)
    assert recs and all(0 < r["fraction_of_peak"] <= 1.0 for r in recs)
    assert {r["math_mode"] for r in recs} <= {"fp32", "bf16"}


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peaks_order_fp32_tf32_bf16():
    from benchmark.perf.bench import math_mode, matmul_peak

    fp32, tf32, bf16 = (matmul_peak("cuda", m) for m in ("fp32", "tf32", "bf16"))
    assert fp32 < tf32 < bf16
    assert math_mode("fp32", "cuda") == "tf32" and math_mode("bf16", "cuda") == "bf16"


def test_compare_same_history_passes_and_20_percent_slower_fails(tmp_path, capsys):
    fp = fingerprint("cpu")
    recs = [{"key": f"infer/m{i}", "img_per_s": 100.0 + i, "fingerprint": fp} for i in range(3)]
    base = tmp_path / "base.jsonl"
    base.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert main(["compare", str(base), str(base), "--max-regression", "10"]) == 0
    slow = tmp_path / "slow.jsonl"
    slow.write_text("\n".join(json.dumps({**r, "img_per_s": r["img_per_s"] * 0.8}) for r in recs) + "\n")
    assert main(["compare", str(base), str(slow), "--max-regression", "10"]) == 1
    assert "3 of 3 regressed" in capsys.readouterr().out
    assert main(["compare", str(base), str(slow), "--max-regression", "25"]) == 0


def test_mismatched_fingerprints_are_reported_not_compared():
    a = [{"key": "k", "img_per_s": 100.0, "fingerprint": {"id": "machineA"}}]
    b = [{"key": "k", "img_per_s": 10.0, "fingerprint": {"id": "machineB"}},
         {"key": "other", "img_per_s": 1.0, "fingerprint": {"id": "machineB"}}]
    rows, notes, failed = compare(a, b, 10)
    assert rows == [] and not failed
    assert notes == ["k: fingerprint differs in id (machineA -> machineB), not compared",
                     "other: not in baseline, not compared"]


def test_compare_names_the_differing_fingerprint_fields_and_can_ignore_them(tmp_path, capsys):
    fa = {"gpu": "H100", "torch": "2.11.0", "id": "a"}
    fb = {"gpu": "H100", "torch": "2.14.1", "id": "b"}
    a = [{"key": "k", "img_per_s": 100.0, "fingerprint": fa}]
    b = [{"key": "k", "img_per_s": 80.0, "fingerprint": fb}]
    rows, notes, _ = compare(a, b, 10)
    assert rows == [] and notes == ["k: fingerprint differs in torch (2.11.0 -> 2.14.1), not compared"]
    rows, notes, failed = compare(a, b, 10, frozenset({"torch"}))
    assert rows[0]["ratio"] == pytest.approx(0.8) and failed and not notes
    for name, hist in (("a", a), ("b", b)):
        (tmp_path / name).write_text(json.dumps(hist[0]) + "\n")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--ignore-fingerprint", "torch"]) == 1


def test_latest_entry_of_a_key_is_compared():
    fp = {"id": "m"}
    old = [{"key": "k", "img_per_s": 50.0, "fingerprint": fp}, {"key": "k", "img_per_s": 100.0, "fingerprint": fp}]
    rows, _, failed = compare(old, [{"key": "k", "img_per_s": 95.0, "fingerprint": fp}], 10)
    assert rows[0]["ratio"] == pytest.approx(0.95) and not failed


def test_out_of_memory_halves_the_batch_and_retries():
    seen = []

    def run(batch):
        seen.append(batch)
        if batch > 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"step_ms": [1.0]}

    assert with_oom_retry(run, 64)["batch_size"] == 8 and seen == [64, 32, 16, 8]
    with pytest.raises(RuntimeError, match="other"):
        with_oom_retry(lambda b: (_ for _ in ()).throw(RuntimeError("other")), 4)


def test_precision_selection():
    assert precision_reason("fp32", "cpu") is None
    assert "CUDA only" in precision_reason("fp16", "cpu")
    with pytest.raises(ValueError, match="bad precision 'int8'"):
        BenchSpec(backbones=("resnet18",), precisions=("int8",))


def test_time_steps_counts_repeats():
    calls = []
    ms = time_steps(lambda: calls.append(1), "cpu", warmup=2, iters=3, repeats=4)
    assert len(ms) == 4 and len(calls) == 2 + 12


def test_bench_cli_errors(capsys):
    assert main(["bench", "--backbones", "resnet1"]) == 2
    assert "did you mean 'resnet18'" in capsys.readouterr().err
    assert main(["bench", "--channels-last", "maybe"]) == 2
    assert main(["bench", "--pretexts", "none"]) == 2


def test_history_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_history(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "a", "fingerprint": {"id": "x"}}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        load_history(bad)
