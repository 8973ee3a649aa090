"""Fresh-interpreter loads through `trust_remote_code`, offline, without the project's modules importable."""

import os
import subprocess
import sys
import textwrap

import torch

import convert_original_checkpoint
from conftest import FIXTURES, random_text, random_video, tiny_config
from modeling_clip2video import CLIP2VideoModel

# Runs in a fresh interpreter: the project's flat modules are made unimportable, so only the files saved next to the
# weights (copied by `save_pretrained` thanks to `register_for_auto_class`) can serve.
LOADER = textwrap.dedent("""
    import importlib.abc, sys, torch

    class BlockProjectModules(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in ("modeling_clip2video", "configuration_clip2video", "convert_original_checkpoint"):
                raise ImportError(f"{name} must come from the saved folder, not from the project")

    sys.meta_path.insert(0, BlockProjectModules())
    from transformers import AutoConfig, AutoModel

    folder, inputs_path, outputs_path = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert type(model).__name__ == "CLIP2VideoModel"
    assert type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__name__ == "CLIP2VideoConfig"
    inputs = torch.load(inputs_path, weights_only=True)
    with torch.no_grad():
        out = model(**inputs)
    torch.save({"logits": out.logits_per_text, "video": out.video_embeds, "text": out.text_embeds}, outputs_path)
""")


def load_in_fresh_interpreter(folder, inputs, tmp_path) -> dict:
    torch.save(inputs, tmp_path / "inputs.pt")
    (tmp_path / "loader.py").write_text(LOADER)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules_cache"))
    result = subprocess.run(
        [sys.executable, str(tmp_path / "loader.py"), str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=True)


def test_saved_model_loads_with_trust_remote_code_in_a_fresh_interpreter(tmp_path):
    torch.manual_seed(0)
    model = CLIP2VideoModel(tiny_config(tdb_projection="mlp", tab_input="tdb")).eval()
    model.save_pretrained(tmp_path / "model")
    ids, mask = random_text(model.config, [5, 9, 16])
    pixels, video_mask = random_video(model.config, [6, 2, 4])
    inputs = dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, video_mask=video_mask)
    with torch.no_grad():
        expected = model(**inputs)
    loaded = load_in_fresh_interpreter(tmp_path / "model", inputs, tmp_path)
    assert torch.equal(loaded["logits"], expected.logits_per_text)
    assert torch.equal(loaded["video"], expected.video_embeds)


def test_converted_original_checkpoint_loads_in_a_fresh_interpreter(tmp_path):
    folder = tmp_path / "converted"
    status = convert_original_checkpoint.main([
        "--checkpoint_path", str(FIXTURES / "golden_orig_state_dict.bin"), "--output_dir", str(folder),
        "--center_weight", "0.3", "--cross_num_hidden_layers", "2"])
    assert status == 0
    io = torch.load(FIXTURES / "golden_io.pt", weights_only=True)
    inputs = dict(input_ids=io["input_ids"], attention_mask=io["input_mask"],
                  pixel_values=io["video"][:, 0, :, 0], video_mask=io["video_mask"][:, 0])
    loaded = load_in_fresh_interpreter(folder, inputs, tmp_path)
    assert (loaded["logits"] - io["sim_per_video"]).abs().max() < 1e-5


PIPELINE = textwrap.dedent("""
    import sys, torch
    from transformers import AutoModel, AutoProcessor

    folder, video_path, outputs_path = sys.argv[1:4]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = processor(text=["a red square moves", "nothing happens &amp; more"], videos=[video_path])
    with torch.no_grad():
        out = model(**inputs)
    torch.save({"logits": out.logits_per_text, "pixel_values": inputs["pixel_values"],
                "input_ids": inputs["input_ids"], "video_mask": inputs["video_mask"]}, outputs_path)
""")


def test_converted_clip_vocabulary_checkpoint_ships_its_processor(tmp_path):
    """A checkpoint with CLIP's vocabulary gets the original's preprocessing saved next to it (AutoProcessor)."""
    import av
    import numpy as np

    state = torch.load(FIXTURES / "golden_orig_state_dict.bin", weights_only=True)
    state["clip.token_embedding.weight"] = torch.randn(49408, state["clip.token_embedding.weight"].shape[1]) * 0.02
    torch.save(state, tmp_path / "pytorch_model.bin.2")
    folder = tmp_path / "converted"
    status = convert_original_checkpoint.main([
        "--checkpoint_path", str(tmp_path / "pytorch_model.bin.2"), "--output_dir", str(folder), "--preset", "msvd",
        "--center_weight", "0.3", "--cross_num_hidden_layers", "2", "--max_words", "16"])
    assert status == 0
    assert (folder / "processor_config.json").is_file() and (folder / "processing_clip2video.py").is_file()

    video_path = tmp_path / "clip.mp4"
    with av.open(str(video_path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(14):
            frame = np.zeros((48, 64, 3), dtype=np.uint8)
            frame[16:32, 4 * index : 4 * index + 8] = (255, 0, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules_cache"))
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    result = subprocess.run([sys.executable, str(tmp_path / "pipeline.py"), str(folder), str(video_path),
                             str(tmp_path / "out.pt")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    # msvd preset: every 5 fps frame kept (feature_framerate 1); 14 frames at 10 fps -> 1.4 s -> 9 images at 5 fps
    assert out["pixel_values"].shape == (1, 12, 3, 32, 32)
    assert out["video_mask"].tolist() == [[1] * 9 + [0] * 3]
    assert out["input_ids"].shape == (2, 16) and out["input_ids"][0, 0] == 49406
    model = CLIP2VideoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(input_ids=out["input_ids"], attention_mask=(out["input_ids"] != 0).long(),
                         pixel_values=out["pixel_values"], video_mask=out["video_mask"]).logits_per_text
    assert torch.isfinite(out["logits"]).all() and torch.allclose(out["logits"], expected, atol=1e-6)
