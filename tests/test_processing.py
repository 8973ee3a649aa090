"""Tests of processing_clip2video: goldens from the original code, real videos written with PyAV,
every input kind and error kind, and a fresh-interpreter AutoProcessor load."""

import glob
import json
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from processing_clip2video import (
    CLIP2VideoProcessor,
    CLIP2VideoVideoProcessor,
    VideoDecodeError,
    ffmpeg_frame_indices,
    ffmpeg_image_runs,
    original_frame_indices,
    random_segment_frame_indices,
    uniform_frame_indices,
)


av = pytest.importorskip("av")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKENIZER_DIR = REPO / "clip_tokenizer"

# Small frames that carry their own index: 10 bits as black/white 8x8 blocks on the top row, a
# frame-dependent texture below. Survives lossy codecs and JPEG.
WIDTH, HEIGHT, BLOCK = 96, 64, 8


def coded_frame(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 3 + index * 5) % 256, (yy * 2 + index * 3) % 256, (xx + yy + index * 7) % 256], -1)
    image = image.astype(np.uint8)
    image[:BLOCK] = 128
    for bit in range(10):
        image[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (index >> bit) & 1 else 0
    return image


def read_code(frame) -> int:
    array = np.asarray(frame.convert("RGB") if isinstance(frame, Image.Image) else frame)
    blocks = [array[2 : BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2].mean() > 127 for bit in range(10)]
    return sum(int(on) << bit for bit, on in enumerate(blocks))


def write_video(path, codec: str, num_frames: int, fps=30, options=None) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if options:
            stream.options = options
        for index in range(num_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(coded_frame(index), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def ffmpeg_dump(video: str, folder) -> str:
    """The original's extraction command (sample_frame.py)."""
    os.makedirs(folder, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "0", "-i", video, "-r", "5", "-q", "0", f"{folder}/%08d.jpg"], check=True)
    return str(folder)


@pytest.fixture(scope="module")
def golden():
    config = json.loads((FIXTURES / "golden_config.json").read_text())
    tensors = torch.load(FIXTURES / "golden_io.pt", weights_only=True)
    return config, tensors


@pytest.fixture(scope="module")
def processor():
    return CLIP2VideoProcessor.from_clip_tokenizer(str(TOKENIZER_DIR))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """One small 90-frame (3 s, 30 fps) video per codec/container."""
    root = tmp_path_factory.mktemp("videos")
    return {
        "h264": write_video(root / "h264.mp4", "libx264", 90, options={"qp": "0"}),
        "mpeg4": write_video(root / "mpeg4.avi", "mpeg4", 90, options={"qscale": "2"}),
        "vp9": write_video(root / "vp9.webm", "libvpx-vp9", 90, options={"lossless": "1"}),
        "av1": write_video(root / "av1.mkv", "libsvtav1", 90),
    }


def expected_native(num_frames, fps, feature_framerate=2, max_frames=12):
    images = ffmpeg_frame_indices(num_frames, fps)
    return images[original_frame_indices(len(images), feature_framerate, max_frames)].tolist()


# ---------------------------------------------------------------------------------------------------
# Frame sampling
# ---------------------------------------------------------------------------------------------------


def test_original_sampling_matches_golden(golden):
    config, _ = golden
    assert len(config["frame_sampling"]) >= 20
    for case in config["frame_sampling"]:
        got = original_frame_indices(case["n_files"], case["feature_framerate"], case["max_frames"])
        assert got.tolist() == case["selected_file_indices_0based"], case
        assert len(got) == case["n_valid"]


def test_original_sampling_jitter():
    rng = np.random.default_rng(0)
    base = original_frame_indices(151, 1, 12)
    presampled = np.linspace(0, 150, 151).astype(int)
    seen = set()
    for _ in range(50):
        jittered = original_frame_indices(151, 1, 12, jitter=True, rng=rng)
        assert jittered[0] == base[0] and jittered[-1] == base[-1]
        picks = np.linspace(0, 150, 12).astype(int)
        step = (picks[1] - picks[0]) // 2
        assert np.all(np.abs(jittered[1:-1] - base[1:-1]) <= step)
        assert np.all(np.isin(jittered, presampled))
        seen.add(tuple(jittered))
    assert len(seen) > 40
    # step <= 2: no jitter (original), e.g. 26 images -> step 1
    assert original_frame_indices(26, 1, 12, jitter=True, rng=rng).tolist() == original_frame_indices(26, 1, 12).tolist()


@pytest.mark.parametrize(
    "num_frames, fps, expected_head",
    [(900, 30, [0, 1, 5, 11, 17]), (300, 30, [0, 1, 5, 11]), (451, 30, [0, 1, 5])],
)
def test_ffmpeg_mapping_spec_values(num_frames, fps, expected_head):
    images = ffmpeg_frame_indices(num_frames, fps)
    assert len(images) == int(5 * num_frames / fps) + 2  # floor(5 * duration) + 2 (spec §10.1)
    assert images[: len(expected_head)].tolist() == expected_head
    k = np.arange(2, len(images))
    assert np.array_equal(images[2:], np.minimum(6 * k - 7, num_frames - 1))


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
@pytest.mark.parametrize(
    "fps, num_frames, codec, ext",
    [
        (30, 90, "libx264", "mp4"),
        (25, 61, "libx264", "mp4"),
        (Fraction(30000, 1001), 47, "libx264", "mp4"),
        (24, 50, "libx264", "mkv"),
        (8, 20, "libx264", "mp4"),
        (6, 13, "mpeg4", "avi"),
        (3, 7, "libx264", "mp4"),
        (2, 5, "libvpx-vp9", "webm"),
    ],
)
def test_ffmpeg_mapping_matches_real_ffmpeg(tmp_path, fps, num_frames, codec, ext):
    """The images `ffmpeg -r 5` writes are exactly the native frames ffmpeg_frame_indices names."""
    options = {"qp": "0"} if codec == "libx264" else ({"lossless": "1"} if codec == "libvpx-vp9" else None)
    video = write_video(tmp_path / f"v.{ext}", codec, num_frames, fps=fps, options=options)
    folder = ffmpeg_dump(video, tmp_path / "frames")
    written = [read_code(Image.open(path)) for path in sorted(glob.glob(f"{folder}/*.jpg"))]
    assert written == ffmpeg_frame_indices(num_frames, float(fps)).tolist()


def test_uniform_and_random_segment_sampling():
    assert uniform_frame_indices(120, 12).tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95, 105, 115]
    assert uniform_frame_indices(5, 12).tolist() == [0, 1, 2, 3, 4]
    rng = np.random.default_rng(0)
    for num_frames in (12, 13, 50, 121, 1000):
        picks = random_segment_frame_indices(num_frames, 12, rng)
        assert len(picks) == 12 and np.all(np.diff(picks) > 0) and picks[-1] < num_frames
        segment = np.floor(picks * 12 / num_frames).astype(int)
        assert segment.tolist() == list(range(12))  # one frame per segment
    draws = {tuple(random_segment_frame_indices(1000, 12, rng)) for _ in range(20)}
    assert len(draws) == 20
    assert random_segment_frame_indices(3, 12, rng).tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------
# Transform and tokenizer goldens
# ---------------------------------------------------------------------------------------------------


def test_transform_matches_golden(processor, golden):
    _, tensors = golden
    frame = tensors["preprocess_input_uint8"].numpy()
    reference = tensors["preprocess_output"]
    pil_out = processor.video_processor.transform_frames([Image.fromarray(frame)])
    assert pil_out.shape == (1, 3, 224, 224) and pil_out.dtype == torch.float32
    assert (pil_out[0] - reference).abs().max().item() <= 1e-5
    array_out = processor.video_processor.transform_frames([frame])  # arrays take the same PIL path
    assert torch.equal(array_out, pil_out)


def test_frames_at_the_model_size_are_transformed_at_once_with_the_same_values(processor):
    video_processor = processor.video_processor
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(24)]
    options = dict(size={"shortest_edge": 40}, crop_size={"height": 40, "width": 40})
    standardized = video_processor._standardize_kwargs(
        **{**{name: getattr(video_processor, name, None) for name in video_processor.valid_kwargs.__annotations__},
           **options})
    assert video_processor._transform_unchanged_size(frames, standardized) is not None  # the stacked path is taken
    one_by_one = torch.from_numpy(np.stack([video_processor._transform_pil(frame, standardized) for frame in frames]))
    assert torch.equal(video_processor.transform_frames(frames, **options), one_by_one)
    # frames that need a resize or a crop, PIL images and mixed sizes take the per-frame path
    assert video_processor._transform_unchanged_size(frames + [frames[0][:32]], standardized) is None
    assert video_processor._transform_unchanged_size([Image.fromarray(frames[0])], standardized) is None
    assert video_processor._transform_unchanged_size(frames, video_processor._standardize_kwargs(
        **{**standardized, "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}})) is None


def test_tokenizer_matches_golden(processor, golden):
    config, tensors = golden
    sentences = config["tokenizer"]["sentences"]
    assert config["tokenizer"]["max_words"] == processor.max_words == 32
    out = processor(text=sentences, return_tensors="pt")
    assert torch.equal(out["input_ids"], tensors["tokenizer_input_ids"])
    assert torch.equal(out["attention_mask"], tensors["tokenizer_input_mask"])
    assert set(out) == {"input_ids", "attention_mask"}


def test_tokenizer_edge_cases(processor):
    assert processor(text="a photo of a cat")["input_ids"][0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(processor.tokenizer) == 49408
    empty = processor(text=["", "   \n\t "])
    assert empty["input_ids"][:, :2].tolist() == [[49406, 49407]] * 2 and empty["attention_mask"].sum().item() == 4
    long = processor(text="word " * 500)["input_ids"][0]
    assert long[0].item() == 49406 and long[-1].item() == 49407 and (long[1:-1] != 0).all()
    unicode = processor(text=["Ça va? 日本語のテキスト 🎸", "CAFÉ &amp;amp; crème"])
    assert unicode["attention_mask"].sum(1).min() > 3
    ids = unicode["input_ids"][1][unicode["attention_mask"][1] == 1].tolist()
    assert processor.tokenizer.decode(ids[1:-1]).strip() == "café & crème"  # cleaned: unescaped twice, lower case
    assert processor(text="x", max_words=8)["input_ids"].shape == (1, 8)


# ---------------------------------------------------------------------------------------------------
# Video inputs
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "mpeg4", "vp9", "av1"])
def test_video_file_gives_the_originals_frames(processor, videos, codec):
    vp = processor.video_processor
    frames = vp.load_frames(videos[codec])
    expected = expected_native(90, 30.0, feature_framerate=2)
    assert [read_code(frame) for frame in frames] == expected
    out = processor(videos=videos[codec], return_tensors="pt")
    assert out["pixel_values"].shape == (1, 12, 3, 224, 224)
    assert out["video_mask"].tolist() == [[1] * len(expected) + [0] * (12 - len(expected))]
    assert (out["pixel_values"][0, len(expected) :] == 0).all()
    assert out["pixel_values"][0, : len(expected)].abs().amax(dim=(1, 2, 3)).min() > 0.5
    assert torch.equal(out["pixel_values"][0, : len(expected)], vp.transform_frames(frames))


def test_backends_agree_and_av1_falls_back(processor, videos, caplog):
    vp = processor.video_processor
    for codec in ("h264", "vp9"):
        with_decord = vp(videos[codec], video_backend="decord")
        with_pyav = vp(videos[codec], video_backend="pyav")
        assert torch.equal(with_decord["video_mask"], with_pyav["video_mask"])
        assert (with_decord["pixel_values"] - with_pyav["pixel_values"]).abs().max() < 1e-5
    av1 = vp(videos["av1"], video_backend="decord")  # decord cannot open AV1 -> PyAV
    assert av1["video_mask"].sum() == len(expected_native(90, 30.0)) == 8


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
def test_file_and_ffmpeg_frame_folder_select_the_same_frames(processor, videos, tmp_path):
    """Direct decoding == the original route (ffmpeg -r 5 JPEG folder + RawFrameExtractor selection)."""
    vp = processor.video_processor
    folder = ffmpeg_dump(videos["h264"], tmp_path / "h264")
    for feature_framerate in (1, 2):
        from_folder = vp.load_frames(folder, feature_framerate=feature_framerate)
        from_file = vp.load_frames(videos["h264"], feature_framerate=feature_framerate)
        assert [read_code(f) for f in from_folder] == [read_code(f) for f in from_file]
    # same frames, different pixels only by JPEG + colour conversion
    a = vp(folder)["pixel_values"]
    b = vp(videos["h264"])["pixel_values"]
    assert (a - b).abs().mean() < 0.1


def test_frame_folder_original_layout(processor, tmp_path, golden):
    config, _ = golden
    folder = tmp_path / "video7"
    folder.mkdir()
    for index in range(50):
        Image.fromarray(coded_frame(index)).save(folder / f"{index + 1:08d}.jpg", quality=95)
    (folder / "notes.txt").write_text("ignored: not an image")
    vp = processor.video_processor
    case = next(c for c in config["frame_sampling"] if c["n_files"] == 50 and c["feature_framerate"] == 2)
    frames = vp.load_frames(str(folder), feature_framerate=2)
    assert [read_code(f) for f in frames] == case["selected_file_indices_0based"]
    out = vp(str(folder), feature_framerate=2)
    assert out["video_mask"].sum() == 12


def test_arrays_lists_bytes_and_batches(processor, videos):
    vp = processor.video_processor
    clip = np.stack([coded_frame(i) for i in range(26)])  # 26 "5 fps images"
    expected = original_frame_indices(26, 2, 12).tolist()
    for video in (clip, torch.from_numpy(clip), torch.from_numpy(clip).permute(0, 3, 1, 2), list(clip),
                  [Image.fromarray(f) for f in clip]):
        assert [read_code(f) for f in vp.load_frames(video)] == expected
    from_array = vp(clip)
    from_pil = vp([Image.fromarray(f) for f in clip])
    assert torch.equal(from_array["pixel_values"], from_pil["pixel_values"])
    raw = Path(videos["h264"]).read_bytes()
    assert torch.equal(vp(raw)["pixel_values"], vp(videos["h264"])["pixel_values"])
    batch = processor(text=["a", "b", "c"], videos=[videos["h264"], clip, clip[:3]], return_tensors="pt")
    assert batch["pixel_values"].shape == (3, 12, 3, 224, 224)
    assert batch["video_mask"].sum(1).tolist() == [8, 12, 1]
    assert (batch["pixel_values"][2, 1:] == 0).all()
    assert batch["input_ids"].shape == (3, 32)
    np_out = processor(videos=clip, return_tensors="np")
    assert isinstance(np_out["pixel_values"], np.ndarray) and np_out["video_mask"].dtype == np.int64


def test_sampling_modes_and_options(processor, videos):
    vp = processor.video_processor
    uniform = vp.load_frames(videos["h264"], frame_sampling="uniform", num_frames=6)
    assert [read_code(f) for f in uniform] == uniform_frame_indices(90, 6).tolist()
    a = vp.load_frames(videos["h264"], frame_sampling="random_segment", num_frames=6, seed=3)
    b = vp.load_frames(videos["h264"], frame_sampling="random_segment", num_frames=6, seed=3)
    codes = [read_code(f) for f in a]
    assert codes == [read_code(f) for f in b] and len(codes) == 6 and np.all(np.diff(codes) > 0)
    small = vp(videos["h264"], num_frames=4, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    assert small["pixel_values"].shape == (1, 4, 3, 32, 32) and small["video_mask"].sum() == 4
    with pytest.raises(ValueError, match="frame_sampling"):
        CLIP2VideoVideoProcessor(frame_sampling="every_other")
    with pytest.raises(TypeError, match="unexpected"):
        vp(videos["h264"], num_frame=3)


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------


def test_error_kinds(processor, videos, tmp_path):
    vp = processor.video_processor
    data = Path(videos["h264"]).read_bytes()

    def check(video, *reasons, backend="decord"):
        with pytest.raises(VideoDecodeError) as caught:
            vp(video, video_backend=backend)
        message = str(caught.value)
        assert any(reason in message for reason in reasons), message
        return message

    missing = str(tmp_path / "missing.mp4")
    assert check(missing, "no such file").startswith(missing)
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert check(str(tmp_path / "empty.mp4"), "empty file").startswith(str(tmp_path / "empty.mp4"))
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    for backend in ("decord", "pyav"):
        check(str(tmp_path / "notes.mp4"), "cannot decode", backend=backend)
    image = tmp_path / "still.jpg"
    Image.fromarray(coded_frame(1)).save(image)
    check(str(image), "too short", "cannot decode")  # one still image: no 5 fps image pair
    (tmp_path / "random.mkv").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    check(str(tmp_path / "random.mkv"), "cannot decode")
    corrupt = bytearray(data)
    corrupt[len(data) // 3 :: 7] = bytes(len(corrupt[len(data) // 3 :: 7]))
    (tmp_path / "corrupt.mp4").write_bytes(bytes(corrupt))
    check(str(tmp_path / "corrupt.mp4"), "cannot decode", "truncated")
    check(b"", "empty bytes")
    check(b"\x00" * 4096, "cannot decode")
    (tmp_path / "no_frames").mkdir()
    (tmp_path / "no_frames" / "readme.txt").write_text("no images here")
    check(str(tmp_path / "no_frames"), "no image frames")
    check(np.zeros((0, 8, 8, 3), np.uint8), "zero frames")
    check([], "no videos")
    check(np.zeros((4, 8, 8, 3), np.float32), "dtype")
    check(np.zeros((1, 8, 8, 3), np.uint8), "too short")  # 1 image at feature_framerate 2
    check({"not": "a video"}, "not a video")


def test_truncated_files(processor, videos, tmp_path):
    """Truncated files end in VideoDecodeError, or in the decodable frames with the right mask."""
    vp = processor.video_processor
    faststart = str(tmp_path / "faststart.mp4")
    with av.open(videos["h264"]) as source, av.open(faststart, "w", options={"movflags": "+faststart"}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    for name in ("h264", "mpeg4", "vp9", "av1", "faststart"):
        source = videos.get(name, faststart)
        data = Path(source).read_bytes()
        for fraction in (0.05, 0.5, 0.9):
            path = tmp_path / f"cut{int(fraction * 100)}_{Path(source).name}"
            path.write_bytes(data[: int(len(data) * fraction)])
            for backend in ("decord", "pyav"):
                try:
                    frames = vp.load_frames(str(path), video_backend=backend)
                except VideoDecodeError as error:
                    assert str(path) in str(error)
                    continue
                # containers without a frame index (mkv/webm), or a cut within the last 2 frames of an
                # indexed one: the frames of the decodable part, selected over that part
                if name not in ("vp9", "av1"):
                    assert fraction == 0.9, (name, fraction, backend)
                codes = [read_code(f) for f in frames]
                assert codes == sorted(codes) and codes[0] == 0 and 1 <= len(codes) <= 12
                assert any(codes == expected_native(k, 30.0) for k in range(1, 91)), (name, fraction, backend)
    # the classic case: a 50%-cut mp4 with its index in front opens, declares 90 frames, fails on read
    (tmp_path / "half.mp4").write_bytes(Path(faststart).read_bytes()[: len(Path(faststart).read_bytes()) // 2])
    for backend in ("decord", "pyav"):
        with pytest.raises(VideoDecodeError, match="half.mp4"):
            vp(str(tmp_path / "half.mp4"), video_backend=backend)


# ---------------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------------


def test_save_and_load_in_a_fresh_interpreter(tmp_path, videos):
    processor = CLIP2VideoProcessor.from_clip_tokenizer(str(TOKENIZER_DIR), num_frames=8, feature_framerate=1)
    save_dir = tmp_path / "checkpoint"
    processor.save_pretrained(str(save_dir))
    assert {"processing_clip2video.py", "processor_config.json", "tokenizer_config.json"} <= set(os.listdir(save_dir))
    config = json.loads((save_dir / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_clip2video.CLIP2VideoProcessor"
    # the model side writes config.json; its presence must not change what AutoProcessor loads
    (save_dir / "config.json").write_text(json.dumps({"model_type": "clip2video"}))

    captions = ["a man is playing a guitar on stage", "kids &amp; parents watch fireworks"]
    expected = processor(text=captions, videos=[videos["h264"], videos["vp9"]], return_tensors="pt")
    torch.save(dict(expected), tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        assert not any("processing_clip2video" in name for name in sys.modules)
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(save_dir)!r}, trust_remote_code=True)
        assert type(processor).__name__ == "CLIP2VideoProcessor", type(processor)
        assert processor.video_processor.num_frames == 8 and processor.video_processor.feature_framerate == 1
        out = processor(text={captions!r}, videos=[{videos["h264"]!r}, {videos["vp9"]!r}], return_tensors="pt")
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        assert set(out) == set(expected), (set(out), set(expected))
        for key in expected:
            assert torch.equal(out[key], expected[key]), key
        print("LOADED-OK")
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0 and "LOADED-OK" in result.stdout, result.stderr[-3000:]


def test_sampling_is_memory_safe_and_equals_the_materialised_form():
    """Corrupt timestamps can ask ffmpeg's rule for millions of duplicates; selection stays lazy and exact."""
    for num_frames in list(range(1, 400)) + [997, 10_007, 123_457]:
        for feature_framerate in (1, 2, 3):
            kept = num_frames // feature_framerate
            full = np.linspace(0, num_frames - 1, num=kept).astype(np.int64)
            picks = np.linspace(0, kept - 1, num=12).astype(np.int64) if kept > 12 else np.arange(kept)
            assert original_frame_indices(num_frames, feature_framerate, 12).tolist() == full[picks].tolist()
    stamps = np.array([0.0, 1 / 30, 2 / 30, 5e7, 5e7 + 1 / 30])  # a 1.6-year gap
    run_frames, run_lengths = ffmpeg_image_runs(5, 30.0, timestamps=stamps)
    assert run_lengths.sum() > 2e8 and run_frames.shape == (10,)
    picks = original_frame_indices(int(run_lengths.sum()), 2, 12)
    chosen = run_frames[np.searchsorted(np.cumsum(run_lengths), picks, side="right")]
    assert chosen[0] == 0 and np.all(np.diff(chosen) >= 0) and chosen.max() <= 4 and len(chosen) == 12
