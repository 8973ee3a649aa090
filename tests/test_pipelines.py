"""The custom pipelines saved with every model folder, loaded as users load them: `pipeline(task, model=folder,
trust_remote_code=True)` in a fresh interpreter where the project's modules are not importable."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import convert_original_checkpoint
from conftest import FIXTURES, REPO_ROOT, TINY_TEXT, tiny_config
from datasets_scripts.synthetic import encode_video
from modeling_clip2video import CLIP2VideoModel
from processing_clip2video import CLIP2VideoProcessor
from utils_clip2video import load_processor

LABELS = ["a red square moves", "a blue circle", "static noise"]

# The project's flat modules are made unimportable: only the files saved next to the weights can serve.
SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys
    import numpy as np, torch
    from PIL import Image

    class BlockProjectModules(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if "." not in name and (name.endswith("_clip2video") or name in ("video_readers", "utils_clip2video")):
                raise ImportError(f"{name} must come from the saved folder, not from the project")

    sys.meta_path.insert(0, BlockProjectModules())
    from transformers import pipeline

    folder, video, labels, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    frames = np.load(video.replace(".mp4", ".npy"))
    classifier = pipeline("zero-shot-video-classification", model=folder, trust_remote_code=True, device="cpu")
    assert type(classifier).__module__.startswith("transformers_modules."), type(classifier).__module__
    mixed = [video, open(video, "rb").read(), frames, [Image.fromarray(frame) for frame in frames]]
    results = {"single": classifier(video, candidate_labels=labels),
               "batched": classifier(mixed, candidate_labels=labels, batch_size=3),
               "template": classifier(video, candidate_labels=labels, hypothesis_template="{}")}
    extractor = pipeline("feature-extraction", model=folder, trust_remote_code=True)
    results["text_features"] = extractor(text=labels, batch_size=2)
    results["caption_feature"] = extractor(labels[0])
    results["video_features"] = extractor(videos=[video, frames], batch_size=2)
    untasked = pipeline(model=folder, trust_remote_code=True)  # no task: the default one, zero-shot
    results["untasked_class"] = type(untasked).__name__
    results["untasked"] = untasked(video, candidate_labels=labels)
    results["untasked_then_features"] = pipeline("feature-extraction", model=folder, trust_remote_code=True)(labels[0])
    half = pipeline("zero-shot-video-classification", model=folder, trust_remote_code=True, dtype=torch.bfloat16)
    results["bf16_dtype"] = str(half.model.dtype)
    results["bf16"] = half(video, candidate_labels=labels)
    with open(out, "w") as handle:
        json.dump(results, handle)
""")


def run_fresh(folder, video, tmp_path) -> dict:
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules_cache"))
    result = subprocess.run([sys.executable, "script.py", str(folder), str(video), json.dumps(LABELS), "out.json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


def write_video(folder) -> tuple[str, np.ndarray]:
    """A lossless 3 s clip of a moving square (`clip.mp4`) and its frames (`clip.npy`)."""
    frames = np.zeros((15, 48, 64, 3), dtype=np.uint8)
    for index in range(15):
        frames[index, 16:32, 3 * index : 3 * index + 12] = (255, 0, 0)
    encode_video(frames, str(folder / "clip.mp4"), fps=5)
    np.save(folder / "clip.npy", frames)
    return str(folder / "clip.mp4"), frames


def expected_scores(model, processor, video, labels, template="a video of {}.") -> dict[str, float]:
    """Softmax over the labels of the model's own `logits_per_video`."""
    inputs = processor(text=[template.format(label) for label in labels], videos=[video], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs, return_loss=False).logits_per_video[0]
    return dict(zip(labels, logits.softmax(dim=-1).tolist()))


def as_dict(result) -> dict[str, float]:
    scores = [item["score"] for item in result]
    assert scores == sorted(scores, reverse=True)  # sorted, best first
    return {item["label"]: item["score"] for item in result}


def check_zero_shot_in_a_fresh_interpreter(folder, tmp_path) -> None:
    """The folder's zero-shot pipeline, loaded in a fresh interpreter, scores a clip as its model does."""
    video, _ = write_video(tmp_path)
    results = run_fresh(folder, video, tmp_path)
    model = CLIP2VideoModel.from_pretrained(folder).eval()
    expected = expected_scores(model, load_processor(folder), video, LABELS)
    assert as_dict(results["single"]) == pytest.approx(expected, abs=1e-5)


def local_pipelines(folder):
    """The folder's model and both pipelines built in this process from the project's classes."""
    from pipeline_clip2video import CLIP2VideoFeatureExtractionPipeline, ZeroShotVideoClassificationPipeline

    model = CLIP2VideoModel.from_pretrained(folder).eval()
    processor = load_processor(folder)
    return (model, ZeroShotVideoClassificationPipeline(model=model, processor=processor, device="cpu"),
            CLIP2VideoFeatureExtractionPipeline(model=model, processor=processor, device="cpu"))


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny model with CLIP's vocabulary and its processor (6 frames of 32 px, 16 tokens), saved."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    text = {**TINY_TEXT, "vocab_size": 49408, "bos_token_id": 49406, "eos_token_id": 49407}
    CLIP2VideoModel(tiny_config(text_config=text)).save_pretrained(folder)
    CLIP2VideoProcessor.from_clip_tokenizer(str(REPO_ROOT / "clip_tokenizer"), max_words=16, num_frames=6,
                                            size={"shortest_edge": 32},
                                            crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_saved_folders_carry_the_pipelines(model_folder):
    config = json.loads((model_folder / "config.json").read_text())
    assert set(config["custom_pipelines"]) == {"zero-shot-video-classification", "feature-extraction"}
    assert config["custom_pipelines"]["feature-extraction"]["impl"] == \
        "pipeline_clip2video.CLIP2VideoFeatureExtractionPipeline"
    from configuration_clip2video import CLIP2VideoConfig

    assert set(CLIP2VideoConfig.from_pretrained(model_folder).custom_pipelines) == set(config["custom_pipelines"])
    assert set(CLIP2VideoConfig.from_pretrained(model_folder, _from_pipeline=None).custom_pipelines) == \
        {"zero-shot-video-classification"}  # what `pipeline(model=folder)` without a task sees
    assert (model_folder / "pipeline_clip2video.py").is_file() and (model_folder / "loss_clip2video.py").is_file()


def test_both_tasks_load_in_a_fresh_interpreter_and_score_as_the_model_does(model_folder, tmp_path):
    video, frames = write_video(tmp_path)
    results = run_fresh(model_folder, video, tmp_path)
    model = CLIP2VideoModel.from_pretrained(model_folder).eval()
    processor = load_processor(model_folder)

    expected = expected_scores(model, processor, video, LABELS)
    assert as_dict(results["single"]) == pytest.approx(expected, abs=1e-5)
    assert as_dict(results["template"]) == pytest.approx(expected_scores(model, processor, video, LABELS, "{}"),
                                                          abs=1e-5)
    # path, bytes, frame array and PIL frames of the same lossless clip, in batches of 3: the same scores
    from_frames = expected_scores(model, processor, frames, LABELS)
    assert len(results["batched"]) == 4
    for result, reference in zip(results["batched"], [expected, expected, from_frames, from_frames]):
        assert as_dict(result) == pytest.approx(reference, abs=1e-5)
    assert results["untasked_class"] == "ZeroShotVideoClassificationPipeline"
    assert as_dict(results["untasked"]) == pytest.approx(expected, abs=1e-5)
    assert results["bf16_dtype"] == "torch.bfloat16"
    assert as_dict(results["bf16"]) == pytest.approx(expected, abs=3e-2)

    with torch.no_grad():
        text = model.get_text_features(**processor(text=LABELS, return_tensors="pt")).pooler_output
        video_inputs = processor(videos=[video, frames], return_tensors="pt")
        videos = model.get_video_features(video_inputs["pixel_values"], video_inputs["video_mask"]).pooler_output
    assert np.abs(np.array(results["text_features"]) - text.numpy()).max() < 1e-5
    assert np.abs(np.array(results["caption_feature"]) - text[0].numpy()).max() < 1e-5
    assert np.abs(np.array(results["untasked_then_features"]) - text[0].numpy()).max() < 1e-5
    assert np.abs(np.array(results["video_features"]) - videos.numpy()).max() < 1e-5


def test_a_converted_checkpoint_serves_the_pipelines(tmp_path):
    state = torch.load(FIXTURES / "golden_orig_state_dict.bin", weights_only=True)
    state["clip.token_embedding.weight"] = torch.randn(49408, state["clip.token_embedding.weight"].shape[1]) * 0.02
    torch.save(state, tmp_path / "pytorch_model.bin.2")
    folder = tmp_path / "converted"
    assert convert_original_checkpoint.main([
        "--checkpoint_path", str(tmp_path / "pytorch_model.bin.2"), "--output_dir", str(folder), "--preset", "msvd",
        "--center_weight", "0.3", "--cross_num_hidden_layers", "2", "--max_words", "16"]) == 0
    check_zero_shot_in_a_fresh_interpreter(folder, tmp_path)


def test_bad_calls_raise_clear_errors(model_folder):
    from transformers import pipeline

    model, classifier, extractor = local_pipelines(model_folder)
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="candidate_labels"):
        classifier(frames, candidate_labels=[])
    with pytest.raises(ValueError, match="hypothesis_template"):
        classifier(frames, candidate_labels=["a"], hypothesis_template="no placeholder")
    with pytest.raises(TypeError, match="unexpected arguments"):
        classifier(frames, candidate_labels=["a"], top_k=1)
    assert [item["label"] for item in classifier([Image.fromarray(frame) for frame in frames],
                                                 candidate_labels=["a"])] == ["a"]  # PIL frames are one video
    with pytest.raises(ValueError, match="could be a caption or a video"):
        extractor(str(model_folder / "config.json"))
    with pytest.raises(ValueError, match="give one of"):
        extractor("a caption", videos=frames)
    assert len(extractor(frames)) == model.config.retrieval_embed_dim  # a non-string input is a video
    untasked = pipeline(model=str(model_folder), trust_remote_code=True)  # no task: the default, zero-shot
    assert type(untasked).__name__ == "ZeroShotVideoClassificationPipeline"
    with pytest.raises(ValueError, match="candidate_labels"):
        untasked(frames)


@pytest.mark.slow
def test_a_model_trained_by_run_retrieval_serves_the_pipelines(tmp_path):
    import run_retrieval
    from script_runs import tiny_args

    output = tmp_path / "run"
    run_retrieval.main(tiny_args(output, str(tmp_path / "cache"), "--do_train", "--num_train_epochs", "1",
                                 "--visual_report", "False"))
    assert (output / "pipeline_clip2video.py").is_file()
    check_zero_shot_in_a_fresh_interpreter(output, tmp_path)


def test_generators_and_datasets_stream_through_the_pipelines(model_folder):
    from transformers.pipelines.pt_utils import KeyDataset

    _, classifier, extractor = local_pipelines(model_folder)
    videos = [np.full((4, 32, 32, 3), value, dtype=np.uint8) for value in (0, 128, 255)]
    listed = classifier(videos, candidate_labels=LABELS)
    streamed = list(classifier((video for video in videos), candidate_labels=LABELS, batch_size=2))
    from_dataset = list(classifier(KeyDataset([{"video": video} for video in videos], "video"),
                                   candidate_labels=LABELS))
    for result in (streamed, from_dataset):
        assert [as_dict(item) for item in result] == [pytest.approx(as_dict(item), abs=1e-6) for item in listed]
    texts = list(extractor(text=(caption for caption in LABELS)))
    assert np.allclose(texts, extractor(text=LABELS), atol=1e-6)
