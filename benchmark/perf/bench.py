"""Throughput benchmarking the way timm's benchmark.py does it: synthetic input already on the device,
warm-up, synchronize around timing, several repeats, median step time. Results carry a machine fingerprint
and are appended to a JSON-lines history; ``compare`` checks one history against another."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from benchmark.config.specs import TrainSpec
from benchmark.data.loader import bytes_per_batch
from benchmark.interfaces import BadInput, Constraint, check_settings, setting
from benchmark.perf.history import compare, fingerprint_diff, load_history
from benchmark.runtime.device import Runtime, cpu_model
from benchmark.train.loop import extract_features, train_step
from benchmark.train.optim import make_optimizer, recipe_spec
from registry.backbones import Backbone, build_backbone
from registry.pretexts import build_pretext

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class BenchSpec:
    backbones: tuple[str, ...]
    pretexts: tuple[str, ...] = ()  # training-step benchmarks (none: inference only)
    batch_size: int = setting(32, Constraint("int", 1), label="--batch-size")
    image_size: int = setting(64, Constraint("int", 8, 1024), label="--image-size")
    precisions: tuple[str, ...] = ("fp32",)
    channels_last: tuple[bool, ...] = (False,)
    compile: bool = setting(False, Constraint("bool"), label="--compile")
    warmup: int = setting(3, Constraint("int", 0), label="--warmup")
    iters: int = setting(5, Constraint("int", 1), label="--iters")
    repeats: int = setting(5, Constraint("int", 1), label="--repeats")
    pipeline: bool = setting(False, Constraint("bool"))  # also measure extraction from an image store

    def __post_init__(self) -> None:
        for p in self.precisions:
            if p not in PRECISIONS:
                raise BadInput(f"bad precision {p!r}: allowed: {', '.join(PRECISIONS)}")
        check_settings(self)
        if not self.backbones:
            raise BadInput("bad --backbones '': name at least one backbone")
        if not self.precisions or not self.channels_last:
            raise BadInput("bad --precision '': name at least one of fp32, bf16, fp16")


# the fields of a machine fingerprint (``fingerprint``; the last four on CUDA only), which `compare` may ignore
FINGERPRINT_FIELDS = ("cpu", "cores", "torch_threads", "torch", "device", "machine", "gpu", "cuda", "cudnn", "driver")


def fingerprint(device: str) -> dict[str, Any]:
    """What a throughput number depends on: CPU, cores, GPU, driver, CUDA, cuDNN, torch."""
    fp: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "device": device, "machine": platform.machine()}
    if device == "cuda":
        fp.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                  cudnn=torch.backends.cudnn.version(), driver=_nvidia_driver())
    fp["id"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
    return fp


def _nvidia_driver() -> str | None:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, IndexError):
        return None


def cpu_supports_bf16() -> bool:
    """bf16 autocast on the CPU is only worth measuring with native bf16 instructions (AVX512-BF16 / AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_reason(precision: str, device: str) -> str | None:
    """Why ``precision`` is not measured on ``device`` (None: it is)."""
    if precision == "fp32":
        return None
    if device == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bf16"
        return None
    if precision == "fp16":
        return "fp16 autocast is measured on CUDA only"
    return None if cpu_supports_bf16() else "this CPU has no native bf16 (avx512_bf16/amx)"


def autocast_for(precision: str, device: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(step: Callable[[], object], device: str, warmup: int, iters: int, repeats: int) -> list[float]:
    """Milliseconds per step for each repeat (each repeat = ``iters`` steps between two synchronizations)."""
    for _ in range(warmup):
        step()
    sync(device)
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        sync(device)
        out.append((time.perf_counter() - t0) * 1000.0 / iters)
    return out


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def with_oom_retry(run: Callable[[int], dict[str, Any]], batch: int) -> dict[str, Any]:
    """Run at ``batch``; on out-of-memory halve the batch and retry (down to 1)."""
    while True:
        try:
            result = run(batch)
            result["batch_size"] = batch
            return result
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_oom(exc) or batch == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch //= 2


def flops_per_image(model: Callable[[torch.Tensor], object], image_size: int, device: str) -> float:
    """Forward FLOPs per image (torch.utils.flop_counter; a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(2, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 2.0


def math_mode(precision: str, device: str) -> str:
    """The arithmetic a benchmark row runs in: bf16/fp16 under autocast (tensor cores on CUDA), TF32 for
    fp32 on CUDA where cuDNN or cuBLAS may use it (cuDNN convolutions do by default), else IEEE fp32."""
    if precision != "fp32":
        return precision
    if device == "cuda" and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32):
        return "tf32"
    return "fp32"


def matmul_peak(device: str, mode: str = "fp32", sizes: tuple[int, ...] | None = None, repeats: int = 5) -> float:
    """The measured dense matrix-multiply rate of the math mode, FLOP/s: the best over a few sizes and
    ``repeats`` (fp32 with TF32 off, TF32 with it on, bf16/fp16 in their dtype)."""
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    sizes = sizes or ((2048, 4096, 8192) if device == "cuda" else (1024, 2048))
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    try:
        best = 0.0
        for n in sizes:
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            times = time_steps(functools.partial(torch.matmul, a, b), device, warmup=2, iters=3, repeats=repeats)
            best = max(best, 2.0 * n ** 3 / (min(times) / 1000.0))
        return best
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def _prepare(name: str, spec: BenchSpec, rt: Runtime, channels_last: bool) -> Backbone:
    torch.manual_seed(0)
    model = build_backbone(name, spec.image_size).to(rt.torch_device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def bench_inference(name: str, spec: BenchSpec, rt: Runtime, precision: str, channels_last: bool) -> dict[str, Any]:
    backbone = _prepare(name, spec, rt, channels_last).eval()
    fn = torch.compile(backbone.features) if spec.compile else backbone.features

    def run(batch: int) -> dict[str, Any]:
        x = torch.randn(batch, 3, spec.image_size, spec.image_size, device=rt.torch_device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def step() -> None:
            with torch.inference_mode(), autocast_for(precision, rt.device):
                fn(x)

        ms = time_steps(step, rt.device, spec.warmup, spec.iters, spec.repeats)
        return {"step_ms": ms}

    result = with_oom_retry(run, spec.batch_size)
    result["flops_per_image"] = flops_per_image(backbone.features, spec.image_size, rt.device)
    return result


def bench_train(name: str, pretext_name: str, spec: BenchSpec, rt: Runtime, precision: str,
                channels_last: bool) -> dict[str, Any]:
    task = build_pretext(pretext_name)
    backbone = task.wrap_backbone(_prepare(name, spec, rt, channels_last)).to(rt.torch_device).train()  # as trained
    if not task.trains or not backbone.trainable:
        raise ValueError(f"nothing to train for {name}/{pretext_name}")
    head = task.build_head(backbone, spec.image_size).to(rt.torch_device)
    params = [p for p in list(backbone.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = make_optimizer(params, recipe_spec(TrainSpec(batch_size=spec.batch_size), task))  # the method's own
    gen = torch.Generator().manual_seed(0)
    scaler = torch.amp.GradScaler(rt.device, enabled=precision == "fp16")
    total = spec.warmup + spec.iters * spec.repeats

    def run(batch: int) -> dict[str, Any]:
        x = torch.rand(batch, 3, spec.image_size, spec.image_size, device=rt.torch_device)
        task.use_backbone(backbone).prepare((x[:8] * 255).to(torch.uint8).cpu().numpy())
        done = [0]

        def step() -> None:  # the training's step: views, forward, loss, backward, optimizer, per-step update
            train_step(backbone, head, task, opt, scaler, x, gen, lambda: autocast_for(precision, rt.device),
                       min(done[0], total - 1), total)
            done[0] += 1

        # img_per_s counts source images; each step shows the backbone ``views`` augmented views of each
        return {"step_ms": time_steps(step, rt.device, spec.warmup, spec.iters, spec.repeats), "views": task.views}

    return with_oom_retry(run, spec.batch_size)


def bench_pipeline(name: str, spec: BenchSpec, rt: Runtime) -> dict[str, Any]:
    """Feature extraction from a memory-mapped on-disk uint8 store (larger than batch x repeats, so every
    repeat reads new rows) vs. synthetic forward, same model, batch and device."""
    import tempfile

    backbone = _prepare(name, spec, rt, rt.channels_last_infer).eval()
    n = spec.batch_size * (max(spec.iters, spec.repeats) + 1)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        path = Path(tmp) / "store.npy"
        store = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                          shape=(n, 3, spec.image_size, spec.image_size))
        store[:] = np.random.default_rng(0).integers(0, 256, store.shape, dtype=np.uint8)
        store.flush()
        del store
        store = np.load(path, mmap_mode="r")
        extract_features(backbone, store[: spec.batch_size * 2], rt, spec.batch_size, progress=False)  # warm-up
        secs = [extract_features(backbone, store, rt, spec.batch_size, progress=False)[1] for _ in range(spec.repeats)]
        del store
    x = torch.randn(spec.batch_size, 3, spec.image_size, spec.image_size, device=rt.torch_device)
    if rt.channels_last_infer:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.inference_mode(), rt.autocast():
            backbone.features(x)

    synth = time_steps(step, rt.device, spec.warmup, spec.iters, spec.repeats)
    pipe_ips = n / statistics.median(secs)
    synth_ips = spec.batch_size / (statistics.median(synth) / 1000.0)
    copied = bytes_per_batch(n, spec.image_size)
    return {"pipeline_img_per_s": pipe_ips, "synthetic_img_per_s": synth_ips, "ratio": pipe_ips / synth_ips,
            "store_images": n, "bytes_to_device": copied, "bytes_to_device_per_s": copied / statistics.median(secs)}


def entry(kind: str, backbone: str, pretext: str, spec: BenchSpec, rt: Runtime, precision: str, cl: bool,
          result: dict[str, Any], fp: dict[str, Any]) -> dict[str, Any]:
    """One history line."""
    ms = result.get("step_ms")
    batch = result.get("batch_size", spec.batch_size)
    rec: dict[str, Any] = {
        "key": "/".join([kind, backbone, pretext, f"bs{batch}", f"s{spec.image_size}", precision,
                         "channels_last" if cl else "nchw", "compiled" if spec.compile else "eager", rt.device]),
        "kind": kind, "backbone": backbone, "pretext": pretext, "batch_size": batch,
        "image_size": spec.image_size, "precision": precision, "channels_last": cl, "compile": spec.compile,
        "device": rt.device, "fingerprint": fp, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if ms:
        med = statistics.median(ms)
        rec.update(step_ms=med, step_ms_all=ms, img_per_s=batch / (med / 1000.0))
    for k in ("views", "flops_per_image", "pipeline_img_per_s", "synthetic_img_per_s", "ratio", "store_images",
              "bytes_to_device", "bytes_to_device_per_s"):
        if k in result:
            rec[k] = result[k]
    if kind == "pipeline":
        rec["img_per_s"] = result["pipeline_img_per_s"]
    return rec


def run_bench(spec: BenchSpec, rt: Runtime, out: Path | None, progress: Callable[[str], None] = print
              ) -> list[dict[str, Any]]:
    """Every configured measurement; each record is appended to ``out`` as soon as it exists."""
    fp = fingerprint(rt.device)
    peaks: dict[str, float] = {}
    records = []

    def keep(rec: dict[str, Any]) -> None:
        records.append(rec)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
        progress(f"{rec['key']}: {rec.get('img_per_s', float('nan')):.1f} img/s")

    for precision in spec.precisions:
        reason = precision_reason(precision, rt.device)
        if reason:
            progress(f"skip {precision}: {reason}")
            continue
        mode = math_mode(precision, rt.device)
        if mode not in peaks:
            peaks[mode] = matmul_peak(rt.device, mode)
        for cl in spec.channels_last:
            for name in spec.backbones:
                res = bench_inference(name, spec, rt, precision, cl)
                rec = entry("infer", name, "-", spec, rt, precision, cl, res, fp)
                # the model's FLOP rate over the peak of the math it ran in; not clamped (a test checks <= 1)
                rec.update(math_mode=mode, matmul_peak_flops=peaks[mode],
                           fraction_of_peak=rec["flops_per_image"] * rec["img_per_s"] / peaks[mode])
                keep(rec)
                for pname in spec.pretexts:
                    keep(entry("train", name, pname, spec, rt, precision, cl,
                               bench_train(name, pname, spec, rt, precision, cl), fp))
    if spec.pipeline:
        for name in spec.backbones:
            keep(entry("pipeline", name, "-", spec, rt, "amp" if rt.amp_dtype else "fp32", rt.channels_last_infer,
                       bench_pipeline(name, spec, rt), fp))
    return records


__all__ = ["BenchSpec", "compare", "fingerprint", "fingerprint_diff", "load_history", "run_bench"]
