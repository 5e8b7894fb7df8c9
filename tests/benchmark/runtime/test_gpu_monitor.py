"""GPU utilisation sampling (the CUDA reader is NVML's; here a stand-in reader) and its run.json summary."""
import time

from benchmark.driver.run import RunStats
from benchmark.pipeline.stages import TaskResult
from benchmark.runtime.gpu_monitor import Sampler, sampled


def test_sampler_averages_what_the_reader_gives_while_the_block_runs():
    values = iter([10.0, None, 30.0] + [50.0] * 1000)
    with Sampler(lambda: next(values), interval=0.01) as s:
        time.sleep(0.1)
    assert s.samples[:2] == [10.0, 30.0] and s.mean is not None and 10.0 <= s.mean <= 50.0


def test_nothing_is_sampled_on_the_cpu():
    assert sampled("cpu", lambda: 42) == (42, None)


def test_run_stats_report_mean_utilisation_per_stage():
    stats = RunStats()
    for kind, util in (("train", 80.0), ("train", 60.0), ("extract", 90.0), ("extract", None)):
        stats.add(TaskResult("k", kind, computed=True, seconds={kind: 1.0}, info={"gpu_util": util}))
    assert stats.gpu_util_mean() == {"train": 70.0, "extract": 90.0}
    assert RunStats().gpu_util_mean() == {"train": None, "extract": None}
