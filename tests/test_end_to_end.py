"""End to end through `run_retrieval.py`: a short real run learns (its logged loss falls), and what it exports is what it
evaluated — the metrics (plain and dual-softmax) recomputed by hand from `features.safetensors` equal
`all_results.json`, and the exported embeddings are the saved model's `get_text_features` / `get_video_features` of
the saved processor's inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from datasets_scripts import load_benchmark
from retrieval_metrics import flatten_metrics, retrieval_metrics
from script_runs import RunRecorder, synthetic_cache, tiny_args  # noqa: F401  (synthetic_cache is a fixture)


def _logged_scalars(folder: Path, tag: str) -> dict[int, float]:
    """`{step: value}` of a scalar from the TensorBoard event files under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = {}
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            values.update({event.step: event.value for event in accumulator.Scalars(tag)})
    return values


def _pessimistic_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target among its row: 1 + the number of other candidates scoring at least as much."""
    own = scores[np.arange(len(targets)), targets]
    return (scores >= own[:, None]).sum(axis=1)


def _summary(ranks: np.ndarray) -> dict[str, float]:
    return {"R1": 100.0 * np.mean(ranks <= 1), "R5": 100.0 * np.mean(ranks <= 5), "R10": 100.0 * np.mean(ranks <= 10),
            "MedianR": float(np.median(ranks)), "MeanR": float(ranks.mean())}


def _hand_dsl(similarity: np.ndarray, temperature: float) -> dict[str, float]:
    """Dual-softmax re-scoring written out: text->video scores times a softmax over the captions (each video's column),
    video->text scores times a softmax over the videos (each caption's row); one caption per video here."""
    def softmax(x, axis):
        e = np.exp(temperature * x - (temperature * x).max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    diagonal = np.arange(similarity.shape[0])
    text_to_video = similarity * softmax(similarity, axis=0)
    video_to_text = (similarity * softmax(similarity, axis=1)).T
    metrics = {f"dsl_t2v_{k}": v for k, v in _summary(_pessimistic_ranks(text_to_video, diagonal)).items()}
    metrics.update({f"dsl_v2t_{k}": v for k, v in _summary(_pessimistic_ranks(video_to_text, diagonal)).items()})
    return metrics


def _features(output) -> torch.Tensor:
    """A projected embedding from `get_*_features` (a tensor, or an output object with `pooler_output`)."""
    return getattr(output, "pooler_output", output)


def test_short_run_learns_and_its_exported_features_reproduce_the_evaluation(tmp_path, synthetic_cache):
    output = tmp_path / "run"
    results = RunRecorder().main(tiny_args(
        output, synthetic_cache, "--do_train", "--do_eval", "--do_export_features", "--dsl", "--num_train_epochs", "4",
        "--report_to", "tensorboard", "--visual_report", "False"))
    metrics = results["CLIP2Video"]
    assert metrics["completed_steps"] == 16 and metrics["num_videos"] == 16

    # 1. It learns: the loss logged to TensorBoard at every step falls.
    loss = _logged_scalars(output, "train/loss")
    assert sorted(loss) == list(range(1, 17))
    first, last = np.mean([loss[s] for s in (1, 2, 3, 4)]), np.mean([loss[s] for s in (13, 14, 15, 16)])
    assert last < first - 0.3, (first, last)
    # (32 training videos do not generalise; that the default recipe does is test_training_recipe's slow test.)

    # 2. The exported features reproduce the evaluation exactly.
    features = load_file(output / "features.safetensors")
    index = json.loads((output / "features.json").read_text())
    text, video = features["text_embeds"], features["video_embeds"]
    assert text.shape == video.shape == (16, text.shape[1]) and features["video_valid"].all()
    caption_to_video = np.asarray(index["caption_to_video"])
    assert caption_to_video.tolist() == list(range(16))
    similarity = (text @ video.T).numpy()
    expected = flatten_metrics(retrieval_metrics(similarity, caption_to_video, tie_rule="pessimistic"))
    saved = json.loads((output / "all_results.json").read_text())["CLIP2Video"]
    for key, value in expected.items():
        assert saved[key] == value == metrics[key], key
    # by hand too: pessimistic ranks of the diagonal, in both directions
    for direction, scores in (("t2v", similarity), ("v2t", similarity.T)):
        for key, value in _summary(_pessimistic_ranks(scores.astype(np.float64), np.arange(16))).items():
            assert saved[f"{direction}_{key}"] == pytest.approx(value, abs=1e-9), (direction, key)
    # the dual-softmax keys are the hand-computed dual softmax of the same matrix (default temperature 100)
    for key, value in _hand_dsl(similarity.astype(np.float64), 100.0).items():
        assert saved[key] == pytest.approx(value, abs=1e-9), key
    # order accuracy: own video above its time-reversed twin (2k <-> 2k + 1) by more than rounding
    own, twin = similarity[np.arange(16), np.arange(16)], similarity[np.arange(16), np.arange(16) ^ 1]
    assert saved["order_accuracy"] == pytest.approx(100.0 * np.mean(own > twin + 1e-5))

    # 3. The exported embeddings are the saved model's features of the saved processor's inputs.
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(output, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(output, trust_remote_code=True)
    rows = load_benchmark("synthetic-motion", "test", cache_dir=synthetic_cache, train_size=32, test_size=16)
    assert list(rows["caption"]) == index["captions"]
    inputs = processor(text=list(rows["caption"]), videos=list(rows["video"]), return_tensors="pt")
    with torch.no_grad():
        model_text = _features(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]))
        model_video = _features(model.get_video_features(inputs["pixel_values"], inputs["video_mask"]))
    assert torch.allclose(model_text, text, atol=1e-5, rtol=0)
    assert torch.allclose(model_video, video, atol=1e-5, rtol=0)
    assert float(features["logit_scale"]) == pytest.approx(model.logit_scale.exp().item(), rel=1e-6)
