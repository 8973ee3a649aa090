"""Tests of the training/evaluation script `run_retrieval.py`, its loss and its metrics."""

import contextlib
import dataclasses
import html
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch

import checkpoints_clip2video
import evaluation_clip2video
import publish_clip2video
import run_retrieval
import splits_clip2video
import training_clip2video
from conftest import FIXTURES, REPO_ROOT
from script_runs import RunRecorder
from retrieval_metrics import (
    dsl_retrieval_metrics,
    ground_truth_ranks,
    retrieval_metrics,
    text_to_video_metrics,
)


# ----------------------------------------------------------------------------------------------------------------------
# Metrics: goldens computed by the original code (CLIP2Video's `evaluation/metrics.py`)
# ----------------------------------------------------------------------------------------------------------------------

GOLDEN_KEYS = ("R1", "R5", "R10", "MR", "MedianR", "MeanR", "Std_Rank")


def _assert_matches_golden(got: dict, expected: dict):
    for key in GOLDEN_KEYS:
        if key in expected:
            assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    if "cols" in expected:
        assert got["ranks"] == expected["cols"]


@pytest.mark.parametrize("variant", ["per_video", "batched"])
def test_metrics_reproduce_original_goldens(variant):
    goldens = json.loads((FIXTURES / "golden_config.json").read_text())[f"metrics_on_sim_{variant}"]
    tensors = torch.load(FIXTURES / "golden_io.pt")
    similarity, caption_to_video = tensors[f"sim_{variant}"], tensors["caption_to_video"].tolist()
    cut_off_points = goldens["multi_cut_off_points"]
    first_captions = [0] + cut_off_points[:-1]

    original = dict(tie_rule="original", median_rule="original", return_ranks=True)
    single = retrieval_metrics(similarity[first_captions], **original)
    multi = retrieval_metrics(similarity, caption_to_video, **original)
    _assert_matches_golden(single["text_to_video"], goldens["single_t2v"])
    _assert_matches_golden(single["video_to_text"], goldens["single_v2t"])
    _assert_matches_golden(multi["text_to_video"], goldens["multi_t2v"])
    _assert_matches_golden(multi["video_to_text"], goldens["multi_v2t"])

    tie = goldens["tie_example"]
    _assert_matches_golden(text_to_video_metrics(tie["sim"], **original), tie["metrics"])


def test_tie_rules_and_median_rules():
    tie = [[1.0, 1.0, 0.0], [0.5, 1.0, 0.2], [0.1, 0.3, 0.9]]
    assert ground_truth_ranks(tie, [0, 1, 2], "original").tolist() == [0, 1, 0, 0]  # the original's extra rank
    assert ground_truth_ranks(tie, [0, 1, 2], "pessimistic").tolist() == [1, 0, 0]
    assert ground_truth_ranks(tie, [0, 1, 2], "optimistic").tolist() == [0, 0, 0]
    assert text_to_video_metrics(tie)["R1"] == pytest.approx(200 / 3)  # default: pessimistic
    # A collapsed model (all scores equal) gets no credit by default.
    assert retrieval_metrics(np.zeros((4, 4)))["text_to_video"]["R1"] == 0.0
    # numpy median averages the middle ranks, torch's takes the lower one (the original's multi-caption T2V).
    ranks_1_and_2 = np.array([[2.0, 1.0], [2.0, 1.0]])  # caption 0 -> rank 0, caption 1 -> rank 1
    assert text_to_video_metrics(ranks_1_and_2, median_rule="average")["MedianR"] == 1.5
    assert text_to_video_metrics(ranks_1_and_2, median_rule="lower")["MedianR"] == 1.0
    assert text_to_video_metrics(ranks_1_and_2, median_rule="original")["MedianR"] == 1.5  # single caption: numpy
    two_captions_each = ranks_1_and_2[[0, 0, 1, 1]]  # 1-based ranks 1, 1, 2, 2
    assert text_to_video_metrics(two_captions_each, [0, 0, 1, 1])["MedianR"] == 1.0  # multi-caption: lower middle
    assert text_to_video_metrics(two_captions_each, [0, 0, 1, 1], median_rule="average")["MedianR"] == 1.5


def test_multi_caption_video_to_text_is_group_level():
    # video 0 has captions 0, 1; video 1 has caption 2. Video 0's best caption group is its own (0.9 > 0.5).
    similarity = np.array([[0.9, 0.0], [0.1, 0.6], [0.5, 0.7]])
    metrics = retrieval_metrics(similarity, [0, 0, 1], return_ranks=True)
    assert metrics["video_to_text"]["ranks"] == [0, 0]
    assert metrics["text_to_video"]["ranks"] == [0, 1, 0]


def test_dsl_rescoring_keeps_a_perfect_matrix_perfect_and_fixes_a_hub_video():
    # Video 0 is everyone's nearest neighbour ("hub"); the dual softmax damps it.
    similarity = np.array([[0.50, 0.10, 0.10], [0.49, 0.48, 0.10], [0.49, 0.10, 0.48]])
    assert retrieval_metrics(similarity)["text_to_video"]["R1"] == pytest.approx(100 / 3)
    assert dsl_retrieval_metrics(similarity)["text_to_video"]["R1"] == 100.0


def test_evaluate_metric_loads_offline_and_matches_module(monkeypatch, tmp_path):
    import evaluate

    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    metric = evaluate.load(str(REPO_ROOT / "metrics" / "clip2video_retrieval"), cache_dir=str(tmp_path))
    tensors = torch.load(FIXTURES / "golden_io.pt")
    similarity, caption_to_video = tensors["sim_per_video"].double(), tensors["caption_to_video"].tolist()
    result = metric.compute(predictions=similarity.tolist(), references=caption_to_video, tie_rule="original")
    expected = retrieval_metrics(similarity, caption_to_video, tie_rule="original")
    assert result["t2v_R1"] == expected["text_to_video"]["R1"] == 12.5
    assert result["v2t_MeanR"] == pytest.approx(expected["video_to_text"]["MeanR"])


# ----------------------------------------------------------------------------------------------------------------------
# Distributed loss: 2 real processes (gloo) == 1 process on the same global batch
# ----------------------------------------------------------------------------------------------------------------------


PYTHON = sys.executable
ACCELERATE = shutil.which("accelerate", path=os.path.dirname(PYTHON)) or "accelerate"


def _subprocess_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return env


def test_two_process_loss_and_gradients_equal_one_process(tmp_path):
    script = str(REPO_ROOT / "tests" / "ddp_loss_check.py")
    env = _subprocess_env()
    subprocess.run([PYTHON, script, str(tmp_path / "one.pt")], check=True, env=env, cwd=tmp_path)
    launch = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", script, str(tmp_path / "two.pt")]
    subprocess.run(launch, check=True, env=dict(env, ACCELERATE_USE_CPU="1"), cwd=tmp_path, timeout=300)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert (one["world_size"], two["world_size"]) == (1, 2)  # really two processes
    assert torch.allclose(one["loss"], two["loss"], atol=1e-5)
    assert one["grads"].keys() == two["grads"].keys() and len(one["grads"]) > 100
    for name, grad in one["grads"].items():
        assert torch.allclose(grad, two["grads"][name], atol=1e-5), name
    assert one["grads"]["logit_scale"].abs() > 0 and one["grads"]["temporal_alignment_block.center_weights"].abs().max() > 0
    # Uneven: rank 0 lost its whole slice and runs the placeholder row; the result is one process on the other pairs.
    assert torch.allclose(one["uneven_loss"], two["uneven_loss"], atol=1e-5)
    assert one["uneven_grads"].keys() == two["uneven_grads"].keys() == one["grads"].keys()
    for name, grad in one["uneven_grads"].items():
        assert torch.allclose(grad, two["uneven_grads"][name], atol=1e-5), name
    assert not torch.allclose(one["uneven_loss"], one["loss"])


# ----------------------------------------------------------------------------------------------------------------------
# The script: a tiny synthetic benchmark, train + eval, export, report, card, Hub (mocked), resume, robustness
# ----------------------------------------------------------------------------------------------------------------------


TINY_RUN = [
    "--dataset_name", "synthetic-motion", "--train_size", "32", "--test_size", "16", "--num_frames", "4",
    "--max_words", "16", "--scratch_hidden_size", "32", "--scratch_num_layers", "1", "--scratch_patch_size", "16",
    "--num_temporal_layers", "1", "--train_batch_size", "8", "--num_train_epochs", "2", "--learning_rate", "1e-3",
    "--clip_learning_rate", "1e-3", "--logging_steps", "2", "--checkpointing_steps", "2", "--report_to", "none",
    "--cache_videos", "--do_train", "--do_eval",
]


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """One datasets/video cache for the whole session (the tiny synthetic set is generated once)."""
    return str(tmp_path_factory.mktemp("synthetic_cache"))


def _tiny_args(output_dir, cache_dir, *extra) -> list[str]:
    return [*TINY_RUN, "--output_dir", str(output_dir), "--cache_dir", cache_dir, *extra]


def test_batch_sampler_keeps_groups_together_and_splits_global_batches_by_rank():
    sampler = splits_clip2video.GlobalBatchSampler(20, 8, rank=0, world_size=1, seed=3, group_size=2)
    batches = list(sampler)
    assert len(batches) == 2 and all(len(batch) == 8 for batch in batches)
    for batch in batches:  # twin rows (2k, 2k + 1) always land in the same batch, next to each other
        assert all(batch[i] % 2 == 0 and batch[i + 1] == batch[i] + 1 for i in range(0, 8, 2))
    ranks = [list(splits_clip2video.GlobalBatchSampler(20, 8, rank=r, world_size=2, seed=3, group_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == batches  # two processes see the same global batches
    assert sorted(sum(batches, [])) != list(range(16))  # shuffled
    with pytest.raises(ValueError, match="group size"):
        splits_clip2video.GlobalBatchSampler(20, 8, rank=0, world_size=1, seed=3, group_size=3)


def test_order_accuracy_counts_own_video_above_its_twin():
    similarity = torch.tensor([[0.9, 0.1, 0.0, 0.0],   # caption of video 0: above twin 1
                               [0.5, 0.5, 0.0, 0.0],   # caption of video 1: tie with twin 0 -> not counted
                               [0.0, 0.0, 0.2, 0.8],   # caption of video 2: below twin 3
                               [0.0, 0.0, 0.7, 0.7 + 1e-7]])  # caption of video 3: within rounding -> a tie
    assert evaluation_clip2video.order_accuracy(similarity, np.array([0, 1, 2, 3])) == 25.0
    table = evaluation_clip2video.metrics_table({"m": {key: 1.0 for key in (
        "t2v_R1", "t2v_R5", "t2v_R10", "t2v_MedianR", "t2v_MeanR", "v2t_R1", "v2t_R5", "v2t_R10", "v2t_MedianR",
        "v2t_MeanR", "order_accuracy")}})
    assert "order acc." in table


def test_default_job_renders_videos_at_the_model_frame_size():
    model_args, data_args, args = run_retrieval.parse_args([])  # no argument: the default job
    assert data_args.benchmark_options()["frame_size"] == data_args.synthetic_frame_size
    assert data_args.synthetic_frame_size == model_args.scratch_image_size  # the processor does not resize frames
    assert model_args.scratch_image_size % model_args.scratch_patch_size == 0
    assert args.compare_mean_pooling and data_args.test_size == 100 and args.train_group_size == 2


def test_help_lists_every_option():
    result = subprocess.run([ACCELERATE, "launch", "--num_processes", "1", "--mixed_precision", "no",
                             "--dynamo_backend", "no", str(REPO_ROOT / "run_retrieval.py"), "--help"],
                            env=dict(_subprocess_env(), ACCELERATE_USE_CPU="1"), capture_output=True, text=True,
                            check=True, timeout=180)
    for arguments in (run_retrieval.ModelArguments, run_retrieval.DataArguments, run_retrieval.RunArguments):
        for option in dataclasses.fields(arguments):
            assert f"--{option.name}" in result.stdout, option.name


def test_train_eval_export_card_report_and_push(tmp_path, synthetic_cache):
    output = tmp_path / "run"
    with mock.patch.object(publish_clip2video, "HfApi") as hf_api:
        hf_api.return_value.create_repo.return_value.repo_id = "someone/tiny-clip2video"
        results = run_retrieval.main(_tiny_args(output, synthetic_cache, "--do_export_features", "--dsl",
                                                "--push_to_hub", "--hub_model_id", "someone/tiny-clip2video"))
    metrics = results["CLIP2Video"]
    assert metrics["num_videos"] == 16 and metrics["completed_steps"] == 8 and metrics["skipped_videos"] == 0
    assert 0 <= metrics["t2v_R1"] <= 100 and "dsl_t2v_R1" in metrics
    assert json.loads((output / "all_results.json").read_text())["CLIP2Video"]["t2v_R1"] == metrics["t2v_R1"]
    # Hub: the folder is pushed without checkpoints.
    hf_api.return_value.create_repo.assert_called_once_with("someone/tiny-clip2video", private=False, exist_ok=True)
    upload = hf_api.return_value.upload_folder.call_args.kwargs
    assert upload["repo_id"] == "someone/tiny-clip2video" and upload["folder_path"] == str(output)
    assert "checkpoints/**" in upload["ignore_patterns"]
    # The folder: weights, config, remote code, processor, card, report, features.
    for name in ("model.safetensors", "config.json", "modeling_clip2video.py", "configuration_clip2video.py",
                 "processing_clip2video.py", "README.md", "report/index.html", "report/similarity.png",
                 "features.safetensors", "features.json"):
        assert (output / name).is_file(), name
    card = (output / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card.split("---")[1]
    assert "trust_remote_code=True" in card and "| CLIP2Video |" in card and f"{metrics['t2v_R1']:.1f}" in card
    assert (output / "report/index.html").read_text().count("<tr>") == 16
    # The saved folder loads as remote code and evaluates to the same metrics; the exported features match it.
    from safetensors.torch import load_file
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(output, trust_remote_code=True)
    assert type(reloaded).__name__ == "CLIP2VideoModel"
    again = run_retrieval.main(["--model_name_or_path", str(output), "--dataset_name", "synthetic-motion",
                                "--train_size", "32", "--test_size", "16", "--cache_dir", synthetic_cache,
                                "--output_dir", str(tmp_path / "eval"), "--do_eval", "--report_to", "none"])
    for key in ("t2v_R1", "t2v_R5", "v2t_R1", "t2v_MeanR", "v2t_MeanR"):
        assert again["CLIP2Video"][key] == pytest.approx(metrics[key]), key
    features = load_file(output / "features.safetensors")
    assert features["video_embeds"].shape == (16, reloaded.config.retrieval_embed_dim)


def test_corrupt_and_missing_videos_are_skipped_and_counted(tmp_path, caplog):
    from datasets_scripts import load_benchmark

    cache = str(tmp_path / "cache")
    train = load_benchmark("synthetic-motion", "train", cache_dir=cache, train_size=32, test_size=16)
    test = load_benchmark("synthetic-motion", "test", cache_dir=cache, train_size=32, test_size=16)
    Path(train[5]["video"]).write_bytes(b"\x00not a video" * 50)
    Path(test[3]["video"]).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="run_retrieval"):
        results = run_retrieval.main(_tiny_args(tmp_path / "run", cache))["CLIP2Video"]
    assert results["skipped_training_videos"] == 2  # one video, seen in each of the 2 epochs
    assert results["skipped_videos"] == 1 and results["num_videos"] == 15 and results["num_captions"] == 15
    assert math.isfinite(results["t2v_MeanR"])
    assert any(Path(train[5]["video"]).name in record.message for record in caplog.records)
    assert any(Path(test[3]["video"]).name in record.message for record in caplog.records)


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(tmp_path, synthetic_cache):
    output = tmp_path / "run"
    real_compute_loss, calls = run_retrieval.compute_loss, []

    def nan_on_third_step(*args, **kwargs):
        calls.append(1)
        loss = real_compute_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    with mock.patch.object(run_retrieval, "compute_loss", nan_on_third_step):
        with pytest.raises(training_clip2video.TrainingDivergedError, match="loss is nan at optimizer step 3.*checkpoint-2"):
            run_retrieval.main(_tiny_args(output, synthetic_cache))
    checkpoints = sorted(p.name for p in (output / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2"]
    state = json.loads((output / "checkpoints/checkpoint-2/trainer_state.json").read_text())
    assert state["completed_steps"] == 2
    from safetensors.torch import load_file

    weights = load_file(output / "checkpoints/checkpoint-2/model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


KILL_INSIDE_SECOND_CHECKPOINT_WRITE = """
import os, signal, sys
import accelerate
import run_retrieval
real_save_state, calls = accelerate.Accelerator.save_state, []
def save_state(self, output_dir, **kwargs):  # checkpoint-4 (mid-epoch 0): its folder is written, then kill -9
    real_save_state(self, output_dir, **kwargs)
    calls.append(output_dir)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
accelerate.Accelerator.save_state = save_state
run_retrieval.main(sys.argv[1:])
"""


def _train_history(output_dir: Path) -> list[dict]:
    return json.loads((output_dir / run_retrieval.TRAIN_HISTORY).read_text())["log_history"]


def test_kill_9_mid_epoch_then_resume_gives_the_same_final_metrics(tmp_path, synthetic_cache):
    env = _subprocess_env()
    script = str(REPO_ROOT / "run_retrieval.py")
    every_step = ["--logging_steps", "1", "--train_size", "48",  # 6 steps per epoch: checkpoints 2 and 4 mid-epoch
                  "--save_total_limit", "10"]
    full = _tiny_args(tmp_path / "full", synthetic_cache, *every_step)
    subprocess.run([PYTHON, script, *full], check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300)

    # Killed inside the write of checkpoint-4: a temporary folder, not a checkpoint; checkpoint-2 stays usable.
    killed = _tiny_args(tmp_path / "killed", synthetic_cache, *every_step)
    died = subprocess.run([PYTHON, "-c", KILL_INSIDE_SECOND_CHECKPOINT_WRITE, *killed], env=env, cwd=tmp_path,
                          capture_output=True, timeout=300)
    assert died.returncode == -signal.SIGKILL
    unfinished, left = sorted(p.name for p in (tmp_path / "killed/checkpoints").iterdir())
    assert left == "checkpoint-2" and unfinished.startswith(".tmp-") and unfinished.endswith("-checkpoint-4")
    assert (tmp_path / "killed/checkpoints" / unfinished / "model.safetensors").is_file()  # killed after the weights
    assert checkpoints_clip2video.resolve_checkpoint("latest", str(tmp_path / "killed")).name == "checkpoint-2"

    resumed_run = subprocess.run([PYTHON, script, *killed, "--resume_from_checkpoint", "latest"], check=True, env=env,
                                 cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "resumed from" in resumed_run.stderr and "step 2 of 12 (epoch 0, micro-batch 2 of the epoch), optimizer " \
        "at step 2, scheduler at step 2; 10 steps to go" in resumed_run.stderr
    expected = json.loads((tmp_path / "full/all_results.json").read_text())["CLIP2Video"]
    resumed = json.loads((tmp_path / "killed/all_results.json").read_text())["CLIP2Video"]
    assert resumed["completed_steps"] == expected["completed_steps"] == 12 and resumed["resumed_from_step"] == 2
    for key, value in expected.items():
        assert resumed[key] == value, key
    # The resumed run recorded where it resumed and ran exactly steps 3..12, each with the uninterrupted run's
    # learning rates and loss.
    history, reference = _train_history(tmp_path / "killed"), _train_history(tmp_path / "full")
    marker = next(i for i, entry in enumerate(history) if "resumed_from" in entry)
    assert history[marker] == {"step": 2, "resumed_from": str(tmp_path / "killed/checkpoints/checkpoint-2"),
                               "epoch": 0, "batches_in_epoch": 2, "scheduler_step": 2, "optimizer_step": 2}
    assert [entry["step"] for entry in history[:marker]] == [1, 2]  # restored with the checkpoint
    assert [entry["step"] for entry in history[marker + 1:]] == list(range(3, 13))
    for entry, same in zip(history[:marker] + history[marker + 1:], reference, strict=True):
        assert entry["step"] == same["step"]
        assert (entry["lr_new"], entry["lr_clip"], entry["loss"]) == (same["lr_new"], same["lr_clip"], same["loss"])
    from safetensors.torch import load_file

    full_weights = load_file(tmp_path / "full/model.safetensors")
    resumed_weights = load_file(tmp_path / "killed/model.safetensors")
    for name, tensor in full_weights.items():
        assert torch.equal(tensor, resumed_weights[name]), name
    # The unfinished folder of the killed run is gone; every checkpoint is complete.
    assert sorted(p.name for p in (tmp_path / "killed/checkpoints").iterdir()) == [
        f"checkpoint-{step}" for step in (10, 12, 2, 4, 6, 8)]


def test_resume_latest_without_a_checkpoint_is_an_error(tmp_path, synthetic_cache):
    with pytest.raises(checkpoints_clip2video.CheckpointError, match="no complete checkpoint.*latest_if_any"):
        run_retrieval.main(_tiny_args(tmp_path / "run", synthetic_cache, "--resume_from_checkpoint", "latest"))
    with pytest.raises(checkpoints_clip2video.CheckpointError, match="not a complete checkpoint"):
        checkpoints_clip2video.resolve_checkpoint(str(tmp_path), str(tmp_path))
    unfinished = tmp_path / "run/checkpoints/.tmp-0123abcd-checkpoint-6"
    unfinished.mkdir(parents=True)
    assert checkpoints_clip2video.resolve_checkpoint("latest_if_any", str(tmp_path / "run")) is None


def test_overwrite_output_dir_never_deletes_what_the_run_did_not_write(tmp_path, synthetic_cache):
    # The repro: a wrong dataset name fails before anything in the folder is touched.
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep")
    with pytest.raises(Exception, match="msrvtt-9kk"):
        run_retrieval.main(["--do_train", "--output_dir", str(folder), "--overwrite_output_dir",
                            "--dataset_name", "msrvtt-9kk", "--cache_dir", synthetic_cache])
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"] and (folder / "thesis.tex").read_text() == "keep"
    # A real run writes into the folder: the user's files stay, only this script's earlier checkpoints go.
    stale = folder / "checkpoints/checkpoint-99"
    stale.mkdir(parents=True)
    (stale / checkpoints_clip2video.TRAINER_STATE).write_text("{}")
    (folder / "checkpoints/notes.txt").write_text("mine")
    (folder / "checkpoints/checkpoint-7").mkdir()  # not ours: no trainer state
    results = run_retrieval.main(_tiny_args(folder, synthetic_cache, "--overwrite_output_dir", "--save_total_limit",
                                            "10"))
    assert results["CLIP2Video"]["completed_steps"] == 8
    assert (folder / "thesis.tex").read_text() == "keep" and (folder / "checkpoints/notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "checkpoint-2", "checkpoint-4", "checkpoint-6", "checkpoint-7", "checkpoint-8", "notes.txt"]
    # Without --overwrite_output_dir a non-empty folder is refused, untouched.
    with pytest.raises(ValueError, match="is not empty"):
        run_retrieval.main(_tiny_args(folder, synthetic_cache))


BAD_NUMBERS = [
    ("--train_batch_size", "0"), ("--gradient_accumulation_steps", "0"), ("--max_train_steps", "-5"),
    ("--num_train_epochs", "0"), ("--learning_rate", "-1e-4"), ("--clip_learning_rate", "-1"),
    ("--warmup_ratio", "1.5"), ("--warmup_ratio", "-0.1"), ("--eval_batch_size", "0"), ("--logging_steps", "0"),
    ("--save_total_limit", "0"), ("--num_frames", "0"), ("--max_words", "2"), ("--eval_steps", "0"),
    ("--weight_decay", "-0.1"), ("--adam_beta2", "1"), ("--adam_epsilon", "0"), ("--max_grad_norm", "0"),
    ("--learning_rate", "nan"), ("--train_group_size", "0"), ("--dataloader_num_workers", "-1"),
    ("--scratch_hidden_size", "0"), ("--center_weight", "2"), ("--test_size", "0"), ("--dsl_temperature", "0"),
    ("--max_train_samples", "0"), ("--max_eval_videos", "0"), ("--seed", "-1"), ("--report_num_queries", "-1"),
]


@pytest.mark.parametrize("option,value", BAD_NUMBERS)
def test_every_numeric_option_is_validated_at_parse_time(option, value):
    with pytest.raises(ValueError, match=f"^{option} must be"):
        run_retrieval.parse_args(["--do_train", f"{option}={value}"])


def test_every_numeric_option_has_a_rule_and_other_checks_name_their_option():
    numeric = {option.name for group in (run_retrieval.ModelArguments, run_retrieval.DataArguments,
                                         run_retrieval.RunArguments)
               for option in dataclasses.fields(group) if "int" in str(option.type) or "float" in str(option.type)}
    assert numeric == set(run_retrieval.NUMERIC_RULES)
    with pytest.raises(ValueError, match="--checkpointing_steps must be"):
        run_retrieval.parse_args(["--do_train", "--checkpointing_steps", "0"])
    with pytest.raises(ValueError, match="--train_batch_size 6 must divide by --gradient_accumulation_steps 4"):
        run_retrieval.parse_args(["--do_train", "--train_batch_size", "6", "--gradient_accumulation_steps", "4"])
    with pytest.raises(ValueError, match="--resume_from_checkpoint resumes training"):
        run_retrieval.parse_args(["--do_eval", "--resume_from_checkpoint", "latest"])


def test_a_mistyped_model_path_says_the_folder_does_not_exist(tmp_path):
    from utils_clip2video import ModelSourceError

    with pytest.raises(ModelSourceError, match="no such folder"):
        run_retrieval.parse_args(["--do_eval", "--model_name_or_path", str(tmp_path / "my-run/final")])
    with pytest.raises(ModelSourceError, match="no such folder"):
        run_retrieval.parse_args(["--do_eval", "--model_name_or_path", "./clip2video-msrvtt"])
    # A name that could be a Hub id: not a folder here, and the Hub (offline) has no such model.
    with pytest.raises(ModelSourceError, match="clip2video-msrvt: no such folder, and no model of that name"):
        run_retrieval.main(["--do_eval", "--model_name_or_path", "clip2video-msrvt", "--output_dir", str(tmp_path / "o"),
                            "--report_to", "none"])
    assert not (tmp_path / "o").exists()


def test_a_micro_batch_without_any_decodable_video_is_skipped_and_counted(tmp_path, caplog):
    from datasets_scripts import load_benchmark

    cache = str(tmp_path / "cache")
    train = load_benchmark("synthetic-motion", "train", cache_dir=cache, train_size=32, test_size=16)
    Path(train[5]["video"]).write_bytes(b"\x00not a video" * 50)
    with caplog.at_level(logging.WARNING, logger="run_retrieval"), mock.patch.object(
            run_retrieval.CLIP2VideoModel, "activation_checkpointing_enable", autospec=True,
            side_effect=run_retrieval.CLIP2VideoModel.activation_checkpointing_enable) as enable, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run_retrieval.main(_tiny_args(tmp_path / "run", cache, "--train_batch_size", "1", "--num_train_epochs",
                                                "1", "--logging_steps", "8", "--do_eval", "--gradient_checkpointing"))
    train_results = results["CLIP2Video"]
    assert train_results["skipped_training_batches"] == 1 and train_results["skipped_training_videos"] == 1
    assert train_results["completed_steps"] == 31  # 32 micro-batches of one pair, one without a video
    assert any("skipped micro-batch" in record.message for record in caplog.records)
    # --gradient_checkpointing goes through the non-deprecated API, without transformers' FutureWarning.
    assert enable.call_count == 1
    assert not [w for w in caught if "gradient_checkpointing_enable" in str(w.message)]


def test_resuming_a_finished_job_with_its_mean_pooling_baseline_runs_no_step(tmp_path, synthetic_cache):
    output = tmp_path / "run"
    args = _tiny_args(output, synthetic_cache, "--compare_mean_pooling", "--num_train_epochs", "1")
    first = run_retrieval.main(args)
    again = run_retrieval.main([*args, "--resume_from_checkpoint", "latest"])
    for name in ("CLIP2Video", "mean pooling"):
        assert again[name]["resumed_from_step"] == 4 and again[name]["completed_steps"] == first[name]["completed_steps"]
        assert again[name]["t2v_R1"] == first[name]["t2v_R1"] and again[name]["v2t_MeanR"] == first[name]["v2t_MeanR"]
    for folder in (output, output / "mean_pooling"):  # nothing trained after the resume marker
        assert "resumed_from" in _train_history(folder)[-1]


# ----------------------------------------------------------------------------------------------------------------------
# A tiny run watched from outside: report, logs, checkpoints limit, the Hub push's content
# ----------------------------------------------------------------------------------------------------------------------


def _solid_png(path: Path) -> bytes:
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 255)).save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    """One tiny train + eval into a folder that holds an earlier report's thumbnails (solid magenta pictures under
    every name the new report will use), TensorBoard logging on, a mocked Hub."""
    root = tmp_path_factory.mktemp("watched")
    output, cache = root / "run", str(root / "cache")
    thumbnails = output / "report" / "thumbnails"
    thumbnails.mkdir(parents=True)
    stale = {index: _solid_png(thumbnails / f"{index}.png") for index in range(16)}
    (output / "notes.txt").write_text("the user's")
    stderr = io.StringIO()
    with mock.patch.object(publish_clip2video, "HfApi") as hf_api, contextlib.redirect_stderr(stderr):
        hf_api.return_value.create_repo.return_value.repo_id = "someone/tiny"
        results = run_retrieval.main(_tiny_args(output, cache, "--overwrite_output_dir", "--report_to", "tensorboard",
                                                "--push_to_hub", "--hub_model_id", "someone/tiny"))
    return SimpleNamespace(output=output, results=results["CLIP2Video"], stale=stale, hf_api=hf_api,
                           stderr=stderr.getvalue())


def test_report_thumbnails_are_never_an_earlier_reports(watched_run):
    page = (watched_run.output / "report/index.html").read_text()
    shown = set(re.findall(r'src="thumbnails/([^"]+)"', page))
    assert shown
    for name in shown:
        assert (watched_run.output / "report/thumbnails" / name).read_bytes() not in watched_run.stale.values(), name
    assert len(list((watched_run.output / "report/thumbnails").iterdir())) == len(shown)  # stale ones are gone


def test_report_labels_the_heatmap_ranks_missed_ground_truths_and_plots_the_loss(watched_run):
    page = (watched_run.output / "report/index.html").read_text()
    assert page.count("<tr>") == 16 and "table-layout:fixed" in page and "overflow-wrap:anywhere" in page
    # the legend of the heatmap's labels: every shown caption and video name in full
    from datasets_scripts import load_benchmark

    test = load_benchmark("synthetic-motion", "test", cache_dir=str(watched_run.output.parent / "cache"),
                          train_size=32, test_size=16)
    legend = page[page.index("heatmap labels"):]
    assert all(html.escape(caption) in legend for caption in test["caption"])
    assert all(f"<li>{video_id}</li>" in legend for video_id in test["video_id"])
    # a query whose video is not in its top 5 says at which rank it is (16 videos, an 8-step model: some miss)
    misses = re.findall(r'<td class="miss">.*?ground truth #(\d+): ', page)
    t2v_r5 = watched_run.results["t2v_R5"]
    assert len(misses) == round(16 * (100 - t2v_r5) / 100) and all(5 < int(rank) <= 16 for rank in misses)
    assert 'src="loss.png"' in page and (watched_run.output / "report/loss.png").stat().st_size > 1000


def test_training_logs_epochs_from_one_and_shows_the_loss_on_the_progress_bar(watched_run):
    history = json.loads((watched_run.output / run_retrieval.TRAIN_HISTORY).read_text())["log_history"]
    assert [entry["epoch"] for entry in history] == [1, 1, 2, 2]  # 4 steps an epoch, a log line every 2
    assert re.search(r"training: 100%.*loss=\d+\.\d{4}", watched_run.stderr)


def test_checkpoints_keep_the_last_three_by_default(watched_run):
    checkpoints = sorted(p.name for p in (watched_run.output / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]  # saved every 2 steps: 2 was removed


def test_push_to_hub_uploads_the_model_folder_only(watched_run):
    from huggingface_hub.utils import filter_repo_objects

    output = watched_run.output
    assert any((output / "runs").rglob("events.out.tfevents.*"))  # TensorBoard logs, in Trainer's runs/ folder
    upload = watched_run.hf_api.return_value.upload_folder.call_args.kwargs
    files = [str(path.relative_to(output)) for path in output.rglob("*") if path.is_file()]
    pushed = set(filter_repo_objects(files, ignore_patterns=upload["ignore_patterns"]))
    assert {"model.safetensors", "config.json", "README.md", "modeling_clip2video.py", "processor_config.json",
            "all_results.json"} <= pushed
    for local in ("report/", "runs/", "checkpoints/", "data_report.json", "train_history.json"):
        assert not [name for name in pushed if name.startswith(local)], local
    assert "notes.txt" in pushed  # the folder is the model's: what the user put there goes with it
    with_reports = set(filter_repo_objects(files, ignore_patterns=publish_clip2video.ignore_patterns(push_reports=True)))
    assert "report/index.html" in with_reports and "data_report.json" in with_reports
    assert not [name for name in with_reports if name.startswith("checkpoints/")]


# ----------------------------------------------------------------------------------------------------------------------
# Refusals: a symlinked checkpoints folder, option values on the command line, another stream layout
# ----------------------------------------------------------------------------------------------------------------------


def test_a_symlinked_checkpoints_folder_is_refused_not_followed(tmp_path, synthetic_cache):
    other = tmp_path / "other_run/checkpoints/checkpoint-5"
    other.mkdir(parents=True)
    (other / checkpoints_clip2video.TRAINER_STATE).write_text("{}")
    output = tmp_path / "run"
    output.mkdir()
    (output / "checkpoints").symlink_to(tmp_path / "other_run/checkpoints")
    with pytest.raises(checkpoints_clip2video.CheckpointError, match="checkpoints is a symbolic link"):
        run_retrieval.main(_tiny_args(output, synthetic_cache, "--overwrite_output_dir"))
    assert (other / checkpoints_clip2video.TRAINER_STATE).is_file()  # another run's checkpoint, untouched


@pytest.mark.parametrize("option,value,message", [
    ("--eval_batch_size", "0", "--eval_batch_size must be an integer >= 1, got 0"),
    ("--gradient_accumulation_steps", "-1", "--gradient_accumulation_steps must be an integer >= 1, got -1"),
    ("--num_train_epochs", "-2", "--num_train_epochs must be an integer >= 1, got -2"),
    ("--warmup_ratio", "1.5", "--warmup_ratio must be in [0, 1], got 1.5"),
])
def test_a_bad_option_value_is_an_argparse_style_error(tmp_path, option, value, message):
    done = subprocess.run([PYTHON, str(REPO_ROOT / "run_retrieval.py"), "--do_train", option, value, "--output_dir",
                           str(tmp_path / "o")], env=_subprocess_env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"run_retrieval.py: error: {message}"
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


def test_a_model_from_scratch_gets_learning_rates_that_train_it(tmp_path):
    _, _, scratch = run_retrieval.parse_args(["--do_train"])
    assert (scratch.learning_rate, scratch.clip_learning_rate) == (1e-3, 1e-3)  # the default job's
    _, _, pretrained = run_retrieval.parse_args(["--do_train", "--model_name_or_path", str(tmp_path)])
    assert (pretrained.learning_rate, pretrained.clip_learning_rate) == (1e-4, 1e-7)  # CLIP2Video's fine-tuning
    _, _, given = run_retrieval.parse_args(["--do_train", "--clip_learning_rate", "1e-5"])
    assert (given.learning_rate, given.clip_learning_rate) == (1e-3, 1e-5)


def test_the_own_data_recipe_trains_from_scratch_with_its_defaults(tmp_path):
    """The README's own-data command (videofolder, --train_batch_size 8, 5 epochs, no model): the loss falls and
    the test metrics are above chance (measured: 2.09 -> 1.47 over 20 steps, R@1 37.5 / 25; at the CLIP fine-tuning
    rate of 1e-7 the loss stays at ln 8 = 2.08)."""
    from test_own_data import make_videofolder

    root = make_videofolder(tmp_path / "data", splits=(("train", 32), ("test", 8)), broken=False, missing=False)
    results = run_retrieval.main(["--dataset_name", "videofolder", "--data_dir", str(root), "--do_train",
                                  "--train_batch_size", "8", "--num_train_epochs", "5", "--output_dir",
                                  str(tmp_path / "my_model"), "--cache_dir", str(tmp_path / "cache"),
                                  "--logging_steps", "1", "--report_to", "none", "--do_eval"])["CLIP2Video"]
    losses = [entry["loss"] for entry in _train_history(tmp_path / "my_model") if "loss" in entry]
    assert len(losses) == 20 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # measured: 2.08 -> 1.56
    assert results["t2v_R1"] > 100 / 8 and results["v2t_R1"] > 100 / 8  # chance: 1 of 8


def test_own_data_gets_no_order_accuracy_and_a_card_without_evaluation_claims_none(tmp_path, synthetic_cache):
    from test_own_data import caption, write_video

    data = tmp_path / "data"
    data.mkdir()
    for split, seeds in (("train", range(8)), ("test", range(8, 11))):  # 3 test videos: an odd number
        lines = ["video,caption"]
        for seed in seeds:
            write_video(data / f"v{seed}.mp4", seed)
            lines.append(f"v{seed}.mp4,{caption(seed)}")
        (data / f"{split}.csv").write_text("\n".join(lines) + "\n")
    files = ["--train_file", str(data / "train.csv"), "--test_file", str(data / "test.csv"), "--cache_dir",
             str(tmp_path / "cache"), "--report_to", "none"]
    run_retrieval.main([*files, "--do_train", "--num_frames", "4", "--train_batch_size", "4", "--num_train_epochs", "1", "--output_dir",
                        str(tmp_path / "model"), "--checkpointing_steps", "no", "--scratch_hidden_size", "32"])
    card = (tmp_path / "model/README.md").read_text()
    assert "not evaluated" in card and "evaluated on" not in card and "## Results" not in card
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        results = run_retrieval.main([*files, "--model_name_or_path", str(tmp_path / "model"), "--do_eval",
                                      "--output_dir", str(tmp_path / "eval")])["CLIP2Video"]
    assert "order_accuracy" not in results and results["num_videos"] == 3 and results["skipped_videos"] == 0
    table = stdout.getvalue()
    assert "order acc." not in table and "3 videos, 3 captions evaluated; 0 video(s) skipped (undecodable)" in table
    even = run_retrieval.main([*files, "--model_name_or_path", str(tmp_path / "model"), "--do_eval", "--eval_split",
                               "train", "--output_dir", str(tmp_path / "eval_train")])["CLIP2Video"]
    assert even["num_videos"] == 8 and "order_accuracy" not in even  # not time-reversed pairs, whatever the count


# ----------------------------------------------------------------------------------------------------------------------
# Streams that train nothing, resumes that would train on other data, epochs left unfinished by --max_train_steps
# ----------------------------------------------------------------------------------------------------------------------


def _broken_webdataset(folder: Path, rows: int) -> Path:
    """`folder/train-00000.tar` of `rows` samples whose `.mp4` is not a video."""
    import tarfile

    folder.mkdir(parents=True)
    with tarfile.open(folder / "train-00000.tar", "w") as tar:
        for row in range(rows):
            for extension, payload in (("mp4", b"\x00not a video" * 40), ("txt", f"caption {row}".encode())):
                info = tarfile.TarInfo(f"{row:06d}.{extension}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return folder


def test_a_stream_of_undecodable_videos_trains_nothing_and_saves_nothing(tmp_path):
    from test_own_data import TINY_MODEL

    shards = _broken_webdataset(tmp_path / "shards", rows=6)
    output = tmp_path / "run"
    with pytest.raises(training_clip2video.NoTrainingDataError, match="epoch 1 .* no micro-batch to train on after 0 "
                       "of 3 steps .*6 undecodable"):
        run_retrieval.main(["--dataset_name", "webdataset", "--data_dir", str(shards), "--output_dir", str(output),
                            *TINY_MODEL, "--streaming", "--train_batch_size", "2", "--max_train_steps", "3",
                            "--cache_dir", str(tmp_path / "cache"), "--do_train"])
    assert not (output / "model.safetensors").exists() and not (output / "all_results.json").exists()


def test_a_stream_resumed_with_other_dataloader_workers_is_refused(tmp_path):
    from test_own_data import TINY_MODEL, make_webdataset

    shards = make_webdataset(tmp_path / "shards", num_shards=2, per_shard=4, broken=False)
    options = ["--dataset_name", "webdataset", "--data_dir", str(shards), "--output_dir", str(tmp_path / "run"),
               *TINY_MODEL, "--streaming", "--train_batch_size", "4", "--checkpointing_steps", "1", "--cache_dir",
               str(tmp_path / "cache"), "--do_train"]
    run_retrieval.main([*options, "--max_train_steps", "1"])
    state = json.loads((tmp_path / "run/checkpoints/checkpoint-1/trainer_state.json").read_text())
    assert state["stream_layout"] == {"num_processes": 1, "dataloader_num_workers": 0}
    with pytest.raises(checkpoints_clip2video.CheckpointError, match="1 process\\(es\\) x 0 DataLoader worker\\(s\\), "
                       "resumed with 1 process\\(es\\) x 2 DataLoader worker\\(s\\)"):
        run_retrieval.main([*options, "--max_train_steps", "2", "--resume_from_checkpoint", "latest",
                            "--dataloader_num_workers", "2"])
    resumed = run_retrieval.main([*options, "--max_train_steps", "2", "--resume_from_checkpoint", "latest"])
    assert resumed["CLIP2Video"]["completed_steps"] == 2 and resumed["CLIP2Video"]["resumed_from_step"] == 1


def test_a_run_stopped_by_max_train_steps_leaves_its_epoch_unfinished(tmp_path, synthetic_cache):
    """4 steps an epoch, stopped at 3: the final checkpoint says epoch 0, 3 micro-batches done, so a resume with more
    steps trains on the 4th micro-batch of epoch 0 (as the uninterrupted run does), not on epoch 1."""
    options = ("--num_train_epochs", "2", "--checkpointing_steps", "epoch", "--logging_steps", "1")
    run_retrieval.main(_tiny_args(tmp_path / "short", synthetic_cache, *options, "--max_train_steps", "3"))
    state = json.loads((tmp_path / "short/checkpoints/checkpoint-3/trainer_state.json").read_text())
    assert (state["completed_steps"], state["epoch"], state["batches_in_epoch"]) == (3, 0, 3)
    recorder = RunRecorder(record_inputs=True)
    recorder.main(_tiny_args(tmp_path / "short", synthetic_cache, *options, "--max_train_steps", "4",
                             "--resume_from_checkpoint", "latest"))
    reference = RunRecorder(record_inputs=True)
    reference.main(_tiny_args(tmp_path / "full", synthetic_cache, *options, "--max_train_steps", "4"))
    (resumed_forward,) = recorder.run["forwards"]
    assert torch.equal(resumed_forward["inputs"]["input_ids"], reference.run["forwards"][3]["inputs"]["input_ids"])


def test_a_launch_that_starts_fewer_processes_than_asked_warns(tmp_path, synthetic_cache):
    """`accelerate launch --cpu --num_processes 2` starts one process on a CPU machine: the run says so."""
    done = subprocess.run([ACCELERATE, "launch", "--cpu", "--num_processes", "2", "--mixed_precision", "no",
                           "--dynamo_backend", "no", str(REPO_ROOT / "run_retrieval.py"),
                           *_tiny_args(tmp_path / "run", synthetic_cache, "--max_train_steps", "1", "--do_eval=false",
                                       "--checkpointing_steps", "no")],
                          env=_subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 process(es)" in done.stderr
    assert "accelerate launch was asked for 2 processes but started 1" in done.stderr
    assert "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N" in done.stderr


def test_the_report_never_writes_or_deletes_through_a_symlinked_folder(tmp_path):
    import report_clip2video

    elsewhere = tmp_path / "my_pictures"
    elsewhere.mkdir()
    (elsewhere / "0.png").write_bytes(b"mine")
    (tmp_path / "report").mkdir()
    (tmp_path / "report/thumbnails").symlink_to(elsewhere)
    frames = [np.full((8, 8, 3), 100, dtype=np.uint8)] * 4
    with pytest.raises(report_clip2video.ReportFolderError, match="thumbnails is a symbolic link"):
        report_clip2video.write_retrieval_report(tmp_path / "report", np.eye(2), [0, 1], ["a", "b"], ["v0", "v1"],
                                                 lambda column: frames, "t", num_queries=2)
    assert (elsewhere / "0.png").read_bytes() == b"mine"
