"""The helpers every script uses for a model folder: its processor (`load_processor`), its card (`build_model_card`),
and writing it without ever leaving half a folder or deleting what the run did not write (`files_into_directory`)."""

import errno
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

import utils_clip2video
from conftest import REPO_ROOT, TINY_TEXT, tiny_config
from datasets_scripts.synthetic import encode_video
from modeling_clip2video import CLIP2VideoModel
from processing_clip2video import CLIP2VideoProcessor
from hub_clip2video import build_model_card
from utils_clip2video import ProcessorNotFoundError, files_into_directory, load_processor

MARKER = "folder_code_ran.txt"


@pytest.fixture(scope="module")
def processor_folder(tmp_path_factory):
    """A saved processor (10 frames, every 3rd 5 fps frame, 16 tokens) whose stored processing code leaves a marker
    file when it is imported: the marker shows whether the folder's code ran."""
    folder = tmp_path_factory.mktemp("model")
    CLIP2VideoProcessor.from_clip_tokenizer(str(REPO_ROOT / "clip_tokenizer"), max_words=16, num_frames=10,
                                            feature_framerate=3).save_pretrained(folder)
    code = folder / "processing_clip2video.py"
    marker = f"import pathlib\npathlib.Path({str(folder / MARKER)!r}).write_text('ran')\n"  # code runs from a cache
    code.write_text(marker + code.read_text())
    return folder


def clip_tokenizer_folder(folder):
    """A folder with CLIP's tokenizer files only, as a CLIP checkpoint has (no CLIP2Video processor)."""
    shutil.copytree(REPO_ROOT / "clip_tokenizer", folder)
    return folder


def test_a_saved_processor_loads_without_running_the_folder_code(processor_folder):
    processor = load_processor(processor_folder)
    assert type(processor) is CLIP2VideoProcessor  # this repository's class
    assert (processor.max_words, processor.video_processor.num_frames, processor.video_processor.feature_framerate) \
        == (16, 10, 3)
    assert processor(text=["a photo of a cat"])["input_ids"][0, :7].tolist() == [
        49406, 320, 1125, 539, 320, 2368, 49407]
    assert not (processor_folder / MARKER).exists()


def test_trust_remote_code_runs_the_folder_code(processor_folder, tmp_path):
    """The other side of the test above: with trust_remote_code the stored code runs (in a fresh interpreter)."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from utils_clip2video import load_processor
        processor = load_processor({str(processor_folder)!r}, trust_remote_code=True)
        print(type(processor).__module__, processor.video_processor.num_frames)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [result.stdout.split()[0], "10"]
    assert result.stdout.startswith("transformers_modules.")
    assert (processor_folder / MARKER).read_text() == "ran"
    (processor_folder / MARKER).unlink()


def test_folders_without_a_clip2video_processor(tmp_path):
    with pytest.raises(ProcessorNotFoundError, match=f"{tmp_path / 'absent'}: no CLIP2Video processor"):
        load_processor(tmp_path / "absent")
    clip_only = clip_tokenizer_folder(tmp_path / "clip")
    with pytest.raises(ProcessorNotFoundError, match="processor_config.json"):
        load_processor(clip_only)
    (clip_only / "processor_config.json").write_text('{"video_processor": ["not", "settings"]}')
    with pytest.raises(ProcessorNotFoundError, match="no `video_processor` settings"):
        load_processor(clip_only)


def test_a_processor_of_another_kind_is_refused(tmp_path):
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(REPO_ROOT / "clip_tokenizer")
    CLIPProcessor(CLIPImageProcessor(), tokenizer).save_pretrained(tmp_path)
    with pytest.raises(ProcessorNotFoundError, match="its processor is a CLIPProcessor, not a CLIP2VideoProcessor"):
        load_processor(tmp_path, trust_remote_code=True)


def test_the_model_card_front_matter_is_data():
    config = tiny_config()
    hostile = "msrvtt\nlicense: proprietary"  # a name that would rewrite a string-built front matter
    card = build_model_card(title="T", summary="S.", repo="someone/model", config=config, num_parameters=1_234_567,
                            with_processor=True, sections=[("Results", "| a |")], base_model="openai/clip",
                            datasets=[hostile], metrics=["recall"])
    parsed = ModelCard(str(card)).data.to_dict()
    assert parsed == {"base_model": "openai/clip", "datasets": [hostile], "library_name": "transformers",
                      "license": "mit", "metrics": ["recall"], "pipeline_tag": "feature-extraction",
                      "tags": ["clip2video", "video-text-retrieval", "video-retrieval", "custom_code"]}
    text = card.text
    assert text.index("# T") < text.index("## Usage") < text.index("## Results") < text.index("## Model")
    assert 'AutoProcessor.from_pretrained("someone/model", trust_remote_code=True)' in text
    assert f"# text: (captions, {config.retrieval_embed_dim})" in text and "1.23 M parameters" in text
    assert "center weight 0.3" in text and "6 frames of 32 px" in text
    bare = build_model_card(title="T", summary="S.", repo="m", config=config, num_parameters=1, with_processor=False)
    assert "AutoProcessor" not in bare.text and "pixel_values: (videos, 6, 3, 32, 32)" in bare.text
    assert "datasets" not in bare.data.to_dict() and "base_model" not in bare.data.to_dict()


def test_the_card_usage_snippet_runs_and_gives_the_model_similarity(tmp_path):
    """The card's Python block, run as a user would (fresh interpreter, remote code, a video file), computes the
    model's own similarity."""
    config = tiny_config(text_config={**TINY_TEXT, "vocab_size": 49408, "bos_token_id": 49406, "eos_token_id": 49407})
    torch.manual_seed(0)
    model = CLIP2VideoModel(config).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    CLIP2VideoProcessor.from_clip_tokenizer(str(REPO_ROOT / "clip_tokenizer"), max_words=16, num_frames=6,
                                            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                            ).save_pretrained(folder)
    card = build_model_card(title="T", summary="S.", repo=str(folder), config=config, num_parameters=1,
                            with_processor=True)
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    frames = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    for index in range(10):
        frames[index, 10:20, 3 * index : 3 * index + 6] = (255, 0, 0)
    encode_video(frames, str(tmp_path / "video.mp4"), fps=5)  # the snippet reads "video.mp4" from its folder
    (tmp_path / "snippet.py").write_text(snippet + "torch.save({'similarity': similarity, **inputs}, 'out.pt')\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert out["video_mask"].shape == (1, 6) and out["video_mask"].sum() >= 5  # real frames decoded
    with torch.no_grad():
        expected = model(input_ids=out["input_ids"], attention_mask=out["attention_mask"],
                         pixel_values=out["pixel_values"], video_mask=out["video_mask"]).logits_per_text
    assert out["similarity"].shape == (1, 1) and torch.allclose(out["similarity"], expected, atol=1e-5)


def test_files_into_directory_replaces_only_the_staged_files(tmp_path):
    target = tmp_path / "out"
    with files_into_directory(target) as staging:  # absent: the staging folder becomes it
        (staging / "a.txt").write_text("1")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("2")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["a.txt", "sub", "sub/b.txt"]
    (target / "mine.txt").write_text("user")
    with pytest.raises(FileExistsError, match="folder exists and is not empty"):
        with files_into_directory(target):
            pass
    with files_into_directory(target, overwrite=True) as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("3")
    assert {str(p.relative_to(target)): p.read_text() for p in target.rglob("*") if p.is_file()} == {
        "a.txt": "1", "sub/b.txt": "3", "mine.txt": "user"}
    with pytest.raises(IsADirectoryError, match="is a folder; cannot replace it with a file"):  # nothing moves
        with files_into_directory(target, overwrite=True) as staging:
            (staging / "a.txt").write_text("4")
            (staging / "sub").write_text("a file where a folder is")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(OSError, match="No space left"):
        with files_into_directory(target, overwrite=True) as staging:
            (staging / "a.txt").write_text("5")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (target / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind
    os.chdir(target)  # '.' as the target resolves to a real folder name
    try:
        with files_into_directory(".", overwrite=True) as staging:
            (staging / "c.txt").write_text("6")
    finally:
        os.chdir(tmp_path)
    assert (target / "c.txt").read_text() == "6" and (target / "mine.txt").read_text() == "user"


def test_files_into_directory_refuses_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        with files_into_directory(tmp_path / "file", overwrite=True):
            pass
    assert (tmp_path / "file").read_text() == "x" and utils_clip2video.TMP_PREFIX not in str(list(tmp_path.iterdir()))


def test_run_retrieval_uses_the_saved_processor_else_the_folder_tokenizer(processor_folder, tmp_path):
    import run_retrieval

    saved = run_retrieval.build_processor(run_retrieval.ModelArguments(model_name_or_path=str(processor_folder)),
                                          run_retrieval.DataArguments(max_words=20))
    assert (saved.video_processor.num_frames, saved.video_processor.feature_framerate, saved.max_words) == (10, 3, 20)
    assert not (processor_folder / MARKER).exists()  # read with this repository's classes
    clip_only = clip_tokenizer_folder(tmp_path / "clip")
    built = run_retrieval.build_processor(run_retrieval.ModelArguments(model_name_or_path=str(clip_only)),
                                          run_retrieval.DataArguments())
    assert type(built) is CLIP2VideoProcessor and built.max_words == 32
    assert built.video_processor.num_frames != 10  # a fresh video processor, not the saved one
