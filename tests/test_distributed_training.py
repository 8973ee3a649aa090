"""`run_retrieval.py` under a real 2-process `accelerate launch` (gloo on CPU) equals one process, step by step.

The same tiny run (warm-up + cosine schedule, gradient accumulation 2, twin groups) is trained once in this process
and once with 2 processes. Its data are made uneven on purpose: every video of one global micro-batch is corrupt
(every process must skip it alike), and so is rank 0's whole slice of another one (rank 0 runs a placeholder row
while rank 1 trains on its pairs), and one test video (evaluation drops it on whichever process it falls). The two
runs must log the same learning rate and loss at every optimizer step, skip the same counts, save the scheduler at
the step count, end with the same weights and evaluate to the same metrics.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import run_retrieval
import splits_clip2video
from conftest import REPO_ROOT
from datasets_scripts import load_benchmark

PYTHON = sys.executable
ACCELERATE = shutil.which("accelerate", path=os.path.dirname(PYTHON)) or "accelerate"
SEED, TRAIN_VIDEOS, GLOBAL_MICRO_BATCH, GROUP = 42, 16, 4, 2

RUN = [
    "--dataset_name", "synthetic-motion", "--train_size", str(TRAIN_VIDEOS), "--test_size", "8", "--num_frames", "3",
    "--max_words", "8", "--scratch_hidden_size", "16", "--scratch_num_layers", "1", "--scratch_patch_size", "16",
    "--num_temporal_layers", "1", "--train_batch_size", str(2 * GLOBAL_MICRO_BATCH), "--gradient_accumulation_steps",
    "2", "--train_group_size", str(GROUP), "--num_train_epochs", "6", "--warmup_ratio", "0.2", "--learning_rate",
    "1e-3", "--clip_learning_rate", "3e-4", "--weight_decay", "0.01", "--seed", str(SEED), "--logging_steps", "1",
    "--checkpointing_steps", "4", "--report_to", "none", "--cache_videos", "--do_train", "--do_eval",
]


def _corrupt(path: str) -> None:
    Path(path).write_bytes(b"\x00not a video" * 40)


def _make_uneven_data(cache_dir: str) -> dict[str, list[int]]:
    """Corrupt, in epoch 0's order: all rows of global micro-batch 1 and rank 0's slice (the first twin pair) of
    micro-batch 2; and test video 3. Returns the corrupted training rows."""
    options = dict(cache_dir=cache_dir, train_size=TRAIN_VIDEOS, test_size=8)
    train, test = load_benchmark("synthetic-motion", "train", **options), load_benchmark("synthetic-motion", "test", **options)
    assert list(train["video_index"]) == list(range(TRAIN_VIDEOS))  # one caption per video: row = video
    sampler = splits_clip2video.GlobalBatchSampler(TRAIN_VIDEOS, GLOBAL_MICRO_BATCH, rank=0, world_size=1, seed=SEED,
                                               group_size=GROUP)
    batches = list(sampler)
    whole, rank_0_slice = batches[1], batches[2][: GLOBAL_MICRO_BATCH // 2]
    for row in whole + rank_0_slice:
        _corrupt(train[row]["video"])
    _corrupt(test[3]["video"])
    return {"whole": whole, "rank_0_slice": rank_0_slice}


def _history(output_dir: Path) -> list[dict]:
    return [entry for entry in json.loads((output_dir / run_retrieval.TRAIN_HISTORY).read_text())["log_history"]
            if "loss" in entry]


def test_two_process_training_equals_one_process_step_by_step(tmp_path):
    cache = str(tmp_path / "cache")
    corrupted = _make_uneven_data(cache)
    one, two = tmp_path / "one", tmp_path / "two"
    results_one = run_retrieval.main([*RUN, "--cache_dir", cache, "--output_dir", str(one)])["CLIP2Video"]

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    launch = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port",
              "0", "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO_ROOT / "run_retrieval.py")]
    done = subprocess.run([*launch, *RUN, "--cache_dir", cache, "--output_dir", str(two)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stderr  # really two processes
    results_two = json.loads((two / "all_results.json").read_text())["CLIP2Video"]

    # The learning rate (both groups) and the loss of every optimizer step.
    history_one, history_two = _history(one), _history(two)
    steps = [entry["step"] for entry in history_one]
    assert steps == [entry["step"] for entry in history_two] == list(range(1, len(steps) + 1)) and len(steps) >= 8
    for a, b in zip(history_one, history_two):
        assert (a["lr_new"], a["lr_clip"]) == (b["lr_new"], b["lr_clip"]), a["step"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6), a["step"]
    learning_rates = [entry["lr_new"] for entry in history_one]
    peak = learning_rates.index(max(learning_rates))
    assert learning_rates[0] == 0 and max(learning_rates) == pytest.approx(1e-3)  # linear warm-up to the peak ...
    assert all(x > y for x, y in zip(learning_rates[peak:], learning_rates[peak + 1:]))  # ... then cosine, down only

    # Skips: the corrupt micro-batch once per epoch at least, the same counts on 1 and 2 processes.
    assert results_one["completed_steps"] == results_two["completed_steps"] == len(steps)
    assert results_two["skipped_training_videos"] == results_one["skipped_training_videos"] \
        == 6 * (len(corrupted["whole"]) + len(corrupted["rank_0_slice"]))
    assert results_two["skipped_training_batches"] == results_one["skipped_training_batches"] >= 1
    assert "skipped micro-batch 2 of epoch 0" in done.stderr

    # The scheduler was saved at the step count; the checkpoints folder holds complete checkpoints only.
    last = two / "checkpoints" / f"checkpoint-{len(steps)}"
    assert torch.load(last / "scheduler.bin", weights_only=False)["last_epoch"] == len(steps)
    assert all(path.name.startswith("checkpoint-") for path in (two / "checkpoints").iterdir())

    # The same final weights, and the same evaluation (7 readable test videos split over the processes).
    weights_one, weights_two = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=0, atol=2e-5, msg=name)
    assert results_one["num_videos"] == 7 and results_one["skipped_videos"] == 1
    for key, value in results_one.items():
        assert results_two[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_two_processes_streaming_one_row_train_nothing_and_exit_non_zero(tmp_path):
    """A stream of one row under 2 processes: rank 1 has no row, so no global micro-batch can be formed; the run
    stops with an error on both processes instead of saving the untrained model as trained."""
    from test_own_data import TINY_MODEL, make_webdataset

    shards = make_webdataset(tmp_path / "shards", num_shards=1, per_shard=1, broken=False)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    launch = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port",
              "0", "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO_ROOT / "run_retrieval.py")]
    done = subprocess.run([*launch, "--dataset_name", "webdataset", "--data_dir", str(shards), "--output_dir",
                           str(tmp_path / "run"), *TINY_MODEL, "--streaming", "--train_batch_size", "2",
                           "--max_train_steps", "2", "--cache_dir", str(tmp_path / "cache"), "--do_train"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode != 0
    assert "NoTrainingDataError" in done.stderr and "needs rows for each of the 2 process(es)" in done.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()
