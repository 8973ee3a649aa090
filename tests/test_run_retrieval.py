"""Tests of the training/evaluation script `run_retrieval.py`, its loss and its metrics."""

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES, REPO_ROOT
from retrieval_metrics import (
    dsl_retrieval_metrics,
    ground_truth_ranks,
    retrieval_metrics,
    text_to_video_metrics,
)


# ----------------------------------------------------------------------------------------------------------------------
# Metrics: goldens computed by the original code (spec §12)
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

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

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
