"""A day of photos on one machine, end to end (issue 24): ``python benchmarks/day_of_photos.py --n 10000``.

Steps, each a fresh command of the harness as a user would type it, each timed (wall) and watched for the
peak anonymous memory of its whole process tree (``benchmark.runtime.memory``, sampled every 50 ms; decode
workers included; memory-mapped file pages not counted) and the highest ``ru_maxrss`` of its processes:

1. ``generate``: N synthetic phone-like photos (``photos_gen``: 640-1600 px, a quarter EXIF-rotated, one in
   500 broken, four class folders) plus a second day of N/20 more, cached under ``--work`` (resumable).
2. ``grid``: ``run --dataset <day 1> --image-size 64 --backbones raw_pixels,resnet18 --pretexts none
   --clusterers kmeans,hdbscan``: per-stage seconds and peaks from its run.json.
3. ``export`` of the resnet18/none/kmeans cell.
4. ``day2``: the second day's photos added to the folder (hard links), the same grid again on the same
   cache: only the new photos are decoded, the features and cells are recomputed.
5. ``predict``: the exported recipe on the second day's photos; its own images/s (the harness's start-up
   and imports apart) and the wall time.
6. ``ray`` (``--ray``): the grid of step 2 on a Ray cluster of two local nodes (``ray start --head`` with
   half the cores, ``ray start --address`` with the other half), joined with ``--ray-address``; its peak is
   the machine's memory in use above what it was before the cluster started.

Every finished step is recorded in ``<work>/state-<N>.json`` and skipped when the command is run again
(``--again STEP`` reruns one), so a 100k run may take several sittings. ``--repo DIR`` runs the steps with
another checkout of the harness (the "before" of a change: ``git worktree add /tmp/before <commit>``).
Writes the figures to ``--out`` (JSON) and prints a table."""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

STEPS = ("generate", "grid", "export", "day2", "predict", "ray")
GRID = ["--backbones", "raw_pixels,resnet18", "--pretexts", "none", "--clusterers", "kmeans,hdbscan"]
CELL = "resnet18/none/kmeans"


class Watched:
    """Run a command, sampling the anonymous memory of its process tree; wall seconds and peaks."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.cmd, self.cwd, self.env, self.log = cmd, cwd, env, log

    def run(self) -> dict:
        from benchmark.runtime.memory import PeakMemory

        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        with open(self.log, "a") as fh:
            fh.write(f"\n$ {' '.join(self.cmd)}\n")
            fh.flush()
            proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
            with PeakMemory(root=proc.pid) as peak:
                rc = proc.wait()
        wall = time.perf_counter() - t0
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if rc != 0:
            raise SystemExit(f"{' '.join(self.cmd[:4])} ... failed (exit {rc}); see {self.log}")
        return {"wall_s": round(wall, 1), "peak_anon_mib": peak.peak_mib,
                "max_rss_mib": round(maxrss / 1024, 1) if maxrss > before else None}


def machine_used() -> int:
    """Bytes of memory in use on the machine (MemTotal - MemAvailable)."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
    return kib * 1024


def link_day(photos: Path, day: Path, start: int, n: int) -> None:
    """Hard links of photos ``start .. start+n-1`` into the folder ``day`` (class subfolders)."""
    import photos_gen

    for i in range(start, start + n):
        name = photos_gen.name_of(i)
        dst = day / name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(photos / name, dst)


def run_json(out: Path) -> dict:
    info = json.loads((out / "run.json").read_text())
    keep = ("wall_s", "stage_s", "peak_anon_mib", "computed", "n_images")
    return {k: info.get(k) for k in keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "sslbench-day-of-photos")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout of the harness to measure")
    ap.add_argument("--label", default="", help="names this measurement in the state file (e.g. before)")
    ap.add_argument("--steps", default=",".join(s for s in STEPS if s != "ray"))
    ap.add_argument("--again", default="", help="steps to rerun even when recorded")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("extra", nargs="*", help="more flags for the grid runs (after --)")
    a = ap.parse_args()

    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    again = {s.strip() for s in a.again.split(",") if s.strip()}
    label = a.label or ("repo-" + a.repo.name if a.repo != ROOT else "this")
    work = a.work
    photos = work / "photos"
    tag = f"{a.n}-{a.image_size}-{label}"
    runs = work / "runs" / tag
    runs.mkdir(parents=True, exist_ok=True)
    day, cache, log = runs / "day", runs / "cache", runs / "commands.log"
    state_file = work / f"state-{tag}.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    n2 = max(1, a.n // 20)
    env = {**os.environ, "PYTHONPATH": str(a.repo)}
    py = [sys.executable, "-m", "benchmark"]
    size = ["--image-size", str(a.image_size)]

    def record(step: str, result: dict) -> None:
        state[step] = result
        state_file.write_text(json.dumps(state, indent=1))
        print(f"{step}: {json.dumps(result)[:400]}", flush=True)

    def todo(step: str) -> bool:
        return step in steps and (step not in state or step in again)

    def watched(cmd: list[str]) -> dict:
        return Watched(cmd, a.repo, env, log).run()

    import photos_gen

    if todo("generate"):
        t0 = time.perf_counter()
        wrote = photos_gen.generate(photos, a.n + n2)
        size_b = sum(p.stat().st_size for p in photos.rglob("*.jpg"))
        record("generate", {"written": wrote, "seconds": round(time.perf_counter() - t0, 1),
                            "n_files": a.n + n2, "bytes_all": size_b})
    if todo("grid"):
        shutil.rmtree(day, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(runs / "grid", ignore_errors=True)
        link_day(photos, day, 0, a.n)
        res = watched([*py, "run", "--dataset", str(day), *size, *GRID, "--out", str(runs / "grid"),
                       "--cache-dir", str(cache), "--no-progress", *a.extra])
        record("grid", {**res, "run": run_json(runs / "grid")})
    if todo("export"):
        shutil.rmtree(runs / "recipe", ignore_errors=True)
        record("export", watched([*py, "export", str(runs / "grid"), "--cell", CELL, "--to", str(runs / "recipe")]))
    if todo("day2"):
        link_day(photos, day, a.n, n2)
        shutil.rmtree(runs / "grid2", ignore_errors=True)
        res = watched([*py, "run", "--dataset", str(day), *size, *GRID, "--out", str(runs / "grid2"),
                       "--cache-dir", str(cache), "--no-progress", *a.extra])
        record("day2", {**res, "new_photos": n2, "run": run_json(runs / "grid2")})
    if todo("predict"):
        new = runs / "day2-only"
        link_day(photos, new, a.n, n2)
        out = runs / "predicted.csv"
        res = watched([*py, "predict", str(runs / "recipe"), str(new), "--out", str(out), "--no-progress"])
        tail = [ln for ln in log.read_text().splitlines() if "images/s" in ln or "images_per_s" in ln][-1:]
        record("predict", {**res, "n": n2, "printed": tail[0] if tail else ""})
    if todo("ray"):
        shutil.rmtree(runs / "grid-ray", ignore_errors=True)
        ray_day = runs / "day-ray"  # the first day alone (``day`` holds the second day too after step 4)
        shutil.rmtree(ray_day, ignore_errors=True)
        link_day(photos, ray_day, 0, a.n)
        ray_cache = runs / "cache-ray"
        shutil.rmtree(ray_cache, ignore_errors=True)
        half = max(1, (os.cpu_count() or 2) // 2)
        ray = str(Path(sys.executable).with_name("ray"))
        env = {**env, "RAY_AUTH_MODE": "token"}  # as tests/system/test_ray_cli.py: both nodes share the token
        import tempfile

        # each node its own --temp-dir, short (Ray's sockets live there: AF_UNIX paths stop at 107 bytes)
        temps = [Path(tempfile.mkdtemp(prefix="dayh-", dir="/tmp")), Path(tempfile.mkdtemp(prefix="dayw-", dir="/tmp"))]
        base = machine_used()
        head = subprocess.run([ray, "start", "--head", "--port", "6391", f"--num-cpus={half}", "--temp-dir",
                               str(temps[0]), "--include-dashboard=false", "--disable-usage-stats"], env=env,
                              capture_output=True, text=True)
        if head.returncode != 0:
            raise SystemExit(f"ray start --head failed: {head.stderr[-800:]}")
        try:
            worker = subprocess.run([ray, "start", "--address", "127.0.0.1:6391", f"--num-cpus={half}",
                                     "--temp-dir", str(temps[1]), "--disable-usage-stats"], env=env,
                                    capture_output=True, text=True)
            if worker.returncode != 0:
                raise SystemExit(f"ray start (second node) failed: {worker.stderr[-800:]}")
            peak = [0]

            def sample() -> None:
                peak[0] = max(peak[0], machine_used() - base)

            import threading

            stop = threading.Event()
            thread = threading.Thread(target=lambda: [sample() for _ in iter(lambda: stop.wait(0.2), True)],
                                      daemon=True)
            thread.start()
            res = Watched([*py, "run", "--dataset", str(ray_day), *size, *GRID, "--out", str(runs / "grid-ray"),
                           "--cache-dir", str(ray_cache), "--no-progress", "--executor", "ray",
                           "--ray-address", "127.0.0.1:6391", *a.extra], a.repo, env, log).run()
            stop.set()
            thread.join()
            record("ray", {**res, "nodes": 2, "machine_peak_above_idle_mib": round(peak[0] / 2**20, 1),
                           "run": run_json(runs / "grid-ray")})
        finally:
            subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
            for t in temps:
                shutil.rmtree(t, ignore_errors=True)
    summary = {"n": a.n, "image_size": a.image_size, "label": label, "repo": str(a.repo), **state}
    if a.out:
        a.out.write_text(json.dumps(summary, indent=1))
    for step in STEPS:
        if step in state:
            r = state[step]
            print(f"{step:9s} wall {r.get('wall_s', r.get('seconds'))} s  peak anon {r.get('peak_anon_mib')} MiB  "
                  f"max rss {r.get('max_rss_mib')} MiB")


if __name__ == "__main__":
    main()
