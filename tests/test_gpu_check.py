"""`benchmarks/gpu_check.py` end to end on CPU with tiny sizes, as a user would run it: one JSON summary with every
section, the exactness checks passed (CPU against CPU: exact), throughput figures positive."""

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_writes_its_summary(tmp_path):
    output = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                             "--tiny", "--json", str(output)], capture_output=True, text=True, timeout=1200,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(output.read_text())
    assert json.loads(result.stdout[result.stdout.index("{"):]) == summary
    assert set(summary) >= {"device", "torch", "cpu_cores", "model", "tolerances", "exactness", "input", "training",
                            "encoding", "search", "checks", "passed", "sections_s", "skipped", "total_s"}
    assert summary["device"] == "cpu" and summary["passed"] and all(summary["checks"].values())
    parity, step = summary["exactness"]["parity"], summary["exactness"]["training_step"]
    assert parity["cpu_vs_original_max_abs_diff"] < 1e-5 and parity["fp32_max_abs_diff"] == 0.0
    assert 0 < parity["bf16_max_relative_diff"] < summary["tolerances"]["bf16_similarity_relative"]
    assert step["loss_abs_diff"] == 0.0 and step["sgd_weights_max_abs_diff"] == 0.0
    assert step["normalised_frames_max_abs_diff"] == 0.0 and 1.0 < step["loss_cpu"] < 3.0
    assert summary["exactness"]["int8_search"] == {"rows": 5000, "dim": 64, "queries": 32, "int8_scan_equal": True,
                                                   "same_topk_as_float32_scan": 1.0}
    assert summary["input"]["clips_per_second_per_core"] > 0
    training = summary["training"]
    assert set(training) == {"fp32", "bf16", "fp32_checkpointing", "bf16_checkpointing", "bf16_fed_by_shards"}
    for name in ("fp32", "bf16", "fp32_checkpointing", "bf16_checkpointing"):
        assert training[name]["batch_size"] == 8 and training[name]["samples_per_second"] > 0
        assert training[name]["peak_memory_mib"] > 0 and training[name]["out_of_memory"] == []
    fed = training["bf16_fed_by_shards"]
    assert 0 <= fed["gpu_idle_share"] < 1 and fed["cpu_cores_needed_per_gpu"] > 0
    assert summary["encoding"]["bf16_autocast_videos_per_second"] > 0
    assert summary["search"]["rows"] == 20000 and summary["search"]["float32_one_query_ms"] > 0
    assert summary["skipped"] == [] and set(summary["sections_s"]) == {"exactness", "shards", "input", "training",
                                                                       "encoding", "search"}


def test_gpu_check_refuses_a_missing_cuda_device():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and "no CUDA device here" in result.stderr and "--device cpu --tiny" in result.stderr
