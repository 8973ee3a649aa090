"""Tests of processing_clip2video: goldens from the original code, real videos written with PyAV,
every input kind and error kind, and a fresh-interpreter AutoProcessor load."""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import skip_or_fail
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
    """The original's extraction command (sample_frame.py). Without ffmpeg: skipped, or a failure under CI."""
    if shutil.which("ffmpeg") is None:
        skip_or_fail("needs the ffmpeg program")
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
    assert len(images) == int(5 * num_frames / fps) + 2  # floor(5 * duration) + 2 (the original's `ffmpeg -r 5` dump)
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


def decode_all(path) -> list[np.ndarray]:
    """Every frame PyAV decodes before the stream ends or breaks (the decodable part of a damaged file)."""
    frames = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, OSError):
        pass
    return frames


def test_truncated_files(processor, videos, tmp_path):
    """The README's promise: a truncated mkv/webm (no frame index) yields its decodable frames, selected over that
    part, pixel for pixel those of the untruncated file; a truncated mp4/avi (the header declares the frame count)
    raises VideoDecodeError naming the file, unless at most the tolerated couple of trailing frames is lost."""
    vp = processor.video_processor
    faststart = str(tmp_path / "faststart.mp4")
    with av.open(videos["h264"]) as source, av.open(faststart, "w", options={"movflags": "+faststart"}) as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    yielded = 0
    for name in ("h264", "mpeg4", "vp9", "av1", "faststart"):
        source = videos.get(name, faststart)
        data = Path(source).read_bytes()
        untruncated = decode_all(source)
        assert len(untruncated) == 90
        for fraction in (0.05, 0.3, 0.5, 0.9):
            path = tmp_path / f"cut{int(fraction * 100)}_{Path(source).name}"
            path.write_bytes(data[: int(len(data) * fraction)])
            decodable = len(decode_all(path))
            indexed = name not in ("vp9", "av1")
            for backend in ("decord", "pyav"):
                must_raise = decodable == 0 or (indexed and 90 - decodable > 2)
                if must_raise:
                    with pytest.raises(VideoDecodeError) as caught:
                        vp.load_frames(str(path), video_backend=backend)
                    assert str(caught.value).startswith(str(path)), str(caught.value)
                    continue
                frames = vp.load_frames(str(path), video_backend=backend)
                codes = [read_code(f) for f in frames]
                assert codes == expected_native(decodable, 30.0), (name, fraction, backend, decodable)
                for code, frame in zip(codes, frames):  # the very frames of the untruncated file
                    difference = np.abs(frame.astype(np.int16) - untruncated[code].astype(np.int16))
                    assert difference.max() <= (0 if backend == "pyav" else 2), (name, fraction, backend, code)
                yielded += 1
    assert yielded >= 12  # mkv and webm cut at 30, 50, 90 %, both backends: the promise was exercised
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
    assert {"processing_clip2video.py", "video_readers.py", "processor_config.json", "tokenizer_config.json"} <= set(
        os.listdir(save_dir))
    config = json.loads((save_dir / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_clip2video.CLIP2VideoProcessor"
    # the model side writes config.json; its presence must not change what AutoProcessor loads
    (save_dir / "config.json").write_text(json.dumps({"model_type": "clip2video"}))

    captions = ["a man is playing a guitar on stage", "kids &amp; parents watch fireworks"]
    expected = processor(text=captions, videos=[videos["h264"], videos["vp9"]], return_tensors="pt")
    torch.save(dict(expected), tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys, torch
        assert not any("processing_clip2video" in name for name in sys.modules)

        class BlockProjectModules(importlib.abc.MetaPathFinder):  # only the saved copies may serve
            def find_spec(self, name, path=None, target=None):
                if name in ("processing_clip2video", "video_readers"):
                    raise ImportError(f"{{name}} must come from the saved folder, not from the project")

        sys.meta_path.insert(0, BlockProjectModules())
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(save_dir)!r}, trust_remote_code=True)
        assert type(processor).__name__ == "CLIP2VideoProcessor", type(processor)
        assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
        assert any(name.startswith("transformers_modules.") and name.endswith(".video_readers") for name in sys.modules)
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


# ---------------------------------------------------------------------------------------------------
# ffmpeg's view of unusual files: rotation, variable frame rate, offset starts (against the real ffmpeg)
# ---------------------------------------------------------------------------------------------------


def write_timed_video(path, pts_ms, codec="libx264", rotation=None, hflip=False, vflip=False, audio_from_ms=None):
    """Frame `i` (coded with its index) shown at `pts_ms[i]` milliseconds; optionally a display matrix
    (PyAV's counter-clockwise `rotation` and flips) and an audio stream starting at `audio_from_ms`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if codec == "libx264":
            stream.options = {"qp": "0"}
        if rotation is not None:
            stream.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        audio, audio_ms = None, audio_from_ms
        if audio_from_ms is not None:
            audio = container.add_stream("aac", rate=16000)
            audio.layout = "mono"
        for index, pts in enumerate(pts_ms):
            while audio is not None and audio_ms < pts + 200:
                samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                samples.sample_rate, samples.pts = 16000, audio_ms * 16
                for packet in audio.encode(samples):
                    container.mux(packet)
                audio_ms += 64
            frame = av.VideoFrame.from_ndarray(coded_frame(index), format="rgb24")
            frame.pts, frame.time_base = int(pts), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for encoder in (stream, audio):
            for packet in encoder.encode() if encoder is not None else ():
                container.mux(packet)
    return str(path)


def all_images(vp, video, **options):
    """Every 5 fps image the original would keep at feature_framerate 1 (num_frames large enough for all)."""
    return vp.load_frames(video, feature_framerate=1, num_frames=1000, **options)


def assert_same_pictures(from_file, from_jpegs):
    """Frame by frame: same size and orientation, pixels equal up to JPEG (a wrong orientation differs by ~40-75)."""
    assert len(from_file) == len(from_jpegs)
    for position, (frame, image) in enumerate(zip(from_file, from_jpegs)):
        image = np.asarray(image, dtype=np.int16)
        assert frame.shape == image.shape, (position, frame.shape, image.shape)
        assert np.abs(frame.astype(np.int16) - image).mean() < 6, position


ORIENTATIONS = [
    # (how the display matrix is written, ffmpeg's -metadata rotate value or PyAV's rotation + flips)
    ("ffmpeg", 90), ("ffmpeg", 180), ("ffmpeg", 270),
    ("pyav", (0, True, False)), ("pyav", (0, False, True)), ("pyav", (90, True, False)), ("pyav", (-90, True, False)),
]


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
@pytest.mark.parametrize("route", ["decord", "pyav", "fallback"])
def test_rotated_and_mirrored_videos_come_in_ffmpegs_orientation(processor, tmp_path, route):
    """A display matrix (phone videos) is applied as `ffmpeg -r 5` applies it, by every reader: decord,
    PyAV, and PyAV as the fallback of an AV1 file decord cannot open. The video is not square, so a
    missed rotation changes the frame size."""
    vp = processor.video_processor
    codec, backend = ("libsvtav1", "decord") if route == "fallback" else ("libx264", route)
    plain = write_timed_video(tmp_path / "plain.mp4", [100 * i for i in range(20)], codec=codec)
    for number, (writer, how) in enumerate(ORIENTATIONS):
        video = str(tmp_path / f"oriented{number}.mp4")
        if writer == "ffmpeg":
            subprocess.run(["ffmpeg", "-v", "0", "-i", plain, "-c", "copy", "-metadata:s:v:0", f"rotate={how}", video],
                           check=True)
        else:
            rotation, hflip, vflip = how
            write_timed_video(video, [100 * i for i in range(20)], codec=codec, rotation=rotation, hflip=hflip,
                              vflip=vflip)
        jpegs = all_images(vp, ffmpeg_dump(video, tmp_path / f"frames{number}"))
        assert len(jpegs) == 12
        if writer == "ffmpeg" and how in (90, 270):
            assert np.asarray(jpegs[0]).shape == (WIDTH, HEIGHT, 3)  # the case is one: ffmpeg turns the frames
        assert_same_pictures(all_images(vp, video, video_backend=backend), jpegs)
        # the model's inputs: same as the original route's up to JPEG
        original_route = vp(ffmpeg_dump(video, tmp_path / f"frames{number}"))["pixel_values"]
        assert (vp(video, video_backend=backend)["pixel_values"] - original_route).abs().mean() < 0.1


VFR_PATTERNS = {
    # milliseconds between frames: a 30 fps stretch, long stills (>= 0.1 s: their own duration counts), 25 fps,
    # 6.7 fps, and 50 fps
    "stretches": [33] * 20 + [250, 400, 120] + [40] * 15 + [150] * 6 + [20] * 10,
    "random": np.random.default_rng(5).integers(5, 150, 60).tolist(),
}


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
@pytest.mark.parametrize("pattern", sorted(VFR_PATTERNS))
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_gives_ffmpegs_images(processor, tmp_path, pattern, ext):
    """On a variable-frame-rate file the readers pick what `ffmpeg -r 5` writes (count and frames), from each
    frame's own timestamp and packet duration; a constant rate (1 / average fps per frame) would not."""
    vp = processor.video_processor
    pts = np.cumsum([0] + VFR_PATTERNS[pattern]).tolist()
    video = write_timed_video(tmp_path / f"vfr.{ext}", pts)
    folder = ffmpeg_dump(video, tmp_path / "frames")
    written = [read_code(Image.open(path)) for path in sorted(glob.glob(f"{folder}/*.jpg"))]
    for backend in ("decord", "pyav"):
        assert [read_code(frame) for frame in all_images(vp, video, video_backend=backend)] == written, backend
        for feature_framerate in (1, 2):  # the default selection too
            picked = vp.load_frames(video, feature_framerate=feature_framerate, video_backend=backend)
            from_folder = vp.load_frames(folder, feature_framerate=feature_framerate)
            assert [read_code(f) for f in picked] == [read_code(f) for f in from_folder], (backend, feature_framerate)
    if ext == "mp4" and pattern == "stretches":  # the case is one: the average rate alone gets it wrong
        with av.open(video) as container:
            stream = container.streams.video[0]
            average = float(stream.average_rate)
            stamps = sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.size)
        assert ffmpeg_frame_indices(len(pts), average, timestamps=stamps).tolist() != written


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_video_starting_after_the_audio_gives_ffmpegs_images(processor, tmp_path, ext):
    """ffmpeg counts time from the container's start (here the audio's), not from the first video frame: the
    first frame fills the 0.7 s before it, and a 10 fps stream has exact mid-point durations (0.5 image)."""
    vp = processor.video_processor
    video = write_timed_video(tmp_path / f"late.{ext}", [700 + 100 * i for i in range(20)], audio_from_ms=0)
    folder = ffmpeg_dump(video, tmp_path / "frames")
    written = [read_code(Image.open(path)) for path in sorted(glob.glob(f"{folder}/*.jpg"))]
    assert written[:4] == [0, 0, 0, 0]  # the case is one
    for backend in ("decord", "pyav"):
        assert [read_code(frame) for frame in all_images(vp, video, video_backend=backend)] == written, backend


# ---------------------------------------------------------------------------------------------------
# The processor under transformers' conventions: text kwargs, return types, decoding
# ---------------------------------------------------------------------------------------------------


def test_processor_accepts_the_tokenizers_text_options(processor, videos):
    captions = ["a man plays a guitar", "two dogs run on the beach at sunset"]
    default = processor(text=captions)
    lengths = default["attention_mask"].sum(1).tolist()
    assert lengths == [7, 10] and default["input_ids"].shape == (2, 32)
    # the defaults are the original's: padding to max_length, truncation, written explicitly they change nothing
    explicit = processor(text=captions, padding="max_length", truncation=True, max_length=32)
    assert all(torch.equal(explicit[key], default[key]) for key in default)
    assert torch.equal(processor(text=captions, text_kwargs={"padding": "max_length"})["input_ids"], default["input_ids"])
    longest = processor(text=captions, padding="longest")
    assert longest["input_ids"].shape == (2, 10)
    assert torch.equal(longest["input_ids"], default["input_ids"][:, :10])
    assert longest["input_ids"][0, 7:].tolist() == [0, 0, 0]  # padded with text_pad_token_id like the original
    short = processor(text=captions, max_length=6)
    assert short["input_ids"].shape == (2, 6) and short["input_ids"][:, -1].tolist() == [49407, 49407]
    assert torch.equal(short["input_ids"], processor(text=captions, max_words=6)["input_ids"])
    untruncated = processor(text=["word " * 40], truncation=False, padding=False, return_tensors=None)
    assert len(untruncated["input_ids"][0]) == 42
    assert processor(text=captions, padding=True, pad_to_multiple_of=8)["input_ids"].shape == (2, 16)
    assert set(processor(text=captions, return_attention_mask=False)) == {"input_ids"}
    # with videos, the text options go to the text and the rest to the video processor
    both = processor(text=captions[:1], videos=videos["h264"], padding="longest", num_frames=4)
    assert both["input_ids"].shape == (1, 7) and both["pixel_values"].shape[:2] == (1, 4)
    with pytest.raises(ValueError, match="disagree"):
        processor(text=captions, max_words=8, max_length=9)
    with pytest.raises(ValueError, match="different lengths"):
        processor(text=captions, padding=False)
    with pytest.raises(TypeError, match="unexpected"):
        processor(text=captions, paddding="longest")


def test_return_tensors_none_gives_lists_and_decoding_skips_padding(processor, videos):
    captions = ["A man plays a guitar!", "dogs"]
    as_lists = processor(text=captions, videos=[videos["h264"], videos["vp9"]], return_tensors=None, num_frames=4)
    tensors = processor(text=captions, videos=[videos["h264"], videos["vp9"]], return_tensors="pt", num_frames=4)
    for key in ("input_ids", "attention_mask", "video_mask"):
        assert isinstance(as_lists[key], list) and all(isinstance(row, list) for row in as_lists[key]), key
        assert all(isinstance(value, int) for value in as_lists[key][0]), key
        assert as_lists[key] == tensors[key].tolist(), key
    assert isinstance(as_lists["pixel_values"], list) and len(as_lists["pixel_values"]) == 2
    assert np.array_equal(np.stack(as_lists["pixel_values"]), tensors["pixel_values"].numpy())
    as_arrays = processor(text=captions, return_tensors="np")
    assert isinstance(as_arrays["input_ids"], np.ndarray) and as_arrays["input_ids"].dtype == np.int64

    ids = tensors["input_ids"]
    assert ids[1, 3:].eq(0).all()  # padding with 0, which CLIP's vocabulary spells "!"
    assert processor.tokenizer.decode([0]) == "!"
    decoded = processor.batch_decode(ids, skip_special_tokens=True)
    assert [text.strip() for text in decoded] == ["a man plays a guitar !", "dogs"]
    assert processor.decode(ids[1], skip_special_tokens=True).strip() == "dogs"
    assert processor.decode(ids[1]).strip() == "<|startoftext|>dogs <|endoftext|>"
    assert processor.batch_decode(as_lists["input_ids"], skip_special_tokens=True) == decoded
    assert processor.batch_decode(ids.numpy(), skip_special_tokens=True) == decoded


def test_video_processor_options_are_declarative_and_none_is_dead(processor, videos, tmp_path):
    vp = processor.video_processor
    # the base class merges the class attributes with per-call options; an instance value is the default
    eight = CLIP2VideoVideoProcessor(num_frames=8, feature_framerate=1)
    assert eight(videos["h264"])["video_mask"].shape == (1, 8)
    assert torch.equal(eight(videos["h264"])["pixel_values"], vp(videos["h264"], num_frames=8, feature_framerate=1)[
        "pixel_values"])
    # unused options: say so instead of ignoring them
    with pytest.raises(ValueError, match="do_convert_rgb"):
        vp(videos["h264"], do_convert_rgb=False)
    with pytest.raises(ValueError, match="fps is not used"):
        vp(videos["h264"], fps=2)
    with pytest.raises(ValueError, match="num_frames"):
        CLIP2VideoVideoProcessor(num_frames=0)
    # a config saved with the base class's options (do_convert_rgb, do_sample_frames) loads
    saved = dict(CLIP2VideoVideoProcessor().to_dict(), do_convert_rgb=True, do_sample_frames=True)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(saved))
    reloaded = CLIP2VideoVideoProcessor.from_pretrained(str(tmp_path))
    assert torch.equal(reloaded(videos["h264"])["pixel_values"], vp(videos["h264"])["pixel_values"])
    # do_sample_frames=False: in-memory frames are taken as they are (transformers' meaning); files need sampling
    clip = np.stack([coded_frame(i) for i in range(5)])
    as_given = vp(clip, do_sample_frames=False)
    assert as_given["video_mask"].tolist() == [[1] * 5 + [0] * 7]
    assert torch.equal(as_given["pixel_values"][0, :5], vp.transform_frames(list(clip)))
    with pytest.raises(ValueError, match="at most num_frames"):
        vp(np.stack([coded_frame(i) for i in range(13)]), do_sample_frames=False)
    with pytest.raises(ValueError, match="needs frame sampling"):
        vp(videos["h264"], do_sample_frames=False)
    # return_metadata (a base-class option) reports which frames were picked
    with_metadata = vp(videos["h264"], return_metadata=True)
    assert with_metadata["video_metadata"][0].frames_indices == expected_native(90, 30.0)


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
@pytest.mark.parametrize(
    "ext, codec, options",
    [("mp4", "libx264", {"qp": "0"}), ("ts", "libx264", {"qp": "0"}), ("mov", "libx264", {"qp": "0"}),
     ("avi", "mpeg4", {"qscale": "2"}), ("flv", "flv", None)],
)
def test_time_bases_and_start_offsets_of_containers_give_ffmpegs_images(processor, tmp_path, ext, codec, options):
    """10 fps makes every frame last exactly half a 5 fps image (lrintf ties): exact only from the packets' integer
    timestamps, in each container's time base (MPEG-TS: 1/90000 and a 1.4 s start; AVI: frame counts; FLV: ms)."""
    vp = processor.video_processor
    video = write_video(tmp_path / f"ten.{ext}", codec, 23, fps=10, options=options)
    folder = ffmpeg_dump(video, tmp_path / "frames")
    written = [read_code(Image.open(path)) for path in sorted(glob.glob(f"{folder}/*.jpg"))]
    assert len(written) == 13
    for backend in ("decord", "pyav"):
        assert [read_code(frame) for frame in all_images(vp, video, video_backend=backend)] == written, backend


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
def test_h264_with_b_frames_in_avi_is_whole_and_timed_like_ffmpeg(processor, tmp_path):
    """AVI counts its length in time-base ticks (here 1/20 s for 10 fps: not frames) and stores no presentation
    times (ffmpeg 5.1 times frames by their decoding timestamps): a whole file, and ffmpeg's images."""
    vp = processor.video_processor
    source = write_video(tmp_path / "b_frames.mp4", "libx264", 37, fps=10, options={"qp": "0", "bf": "2"})
    video = str(tmp_path / "b_frames.avi")
    subprocess.run(["ffmpeg", "-v", "0", "-i", source, "-c", "copy", "-bsf:v", "h264_mp4toannexb", video], check=True)
    with av.open(video) as container:  # the case is one: 74 "frames" declared, 37 present
        assert container.streams.video[0].frames == 74
    folder = ffmpeg_dump(video, tmp_path / "frames")
    written = [read_code(Image.open(path)) for path in sorted(glob.glob(f"{folder}/*.jpg"))]
    for backend in ("decord", "pyav"):
        assert [read_code(frame) for frame in all_images(vp, video, video_backend=backend)] == written, backend


# ---------------------------------------------------------------------------------------------------
# Time spans: a clip of a video, and many windows of one video decoded once
# ---------------------------------------------------------------------------------------------------


def codes(frames) -> list[int]:
    return [read_code(frame) for frame in frames]


def cut(video: str, start: float, end: float, path) -> str:
    """`[start, end)` of `video` cut out as its own file by ffmpeg (re-encoded losslessly)."""
    if shutil.which("ffmpeg") is None:
        skip_or_fail("needs the ffmpeg program")
    subprocess.run(["ffmpeg", "-v", "0", "-y", "-ss", f"{start}", "-i", video, "-t", f"{end - start}", "-c:v",
                    "libx264", "-qp", "0", "-fps_mode", "passthrough", "-enc_time_base", "-1",
                    "-video_track_timescale", "1000", str(path)], check=True)
    return str(path)


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """~10 s videos at odd frame rates (29.97 and 25 fps) and a variable-frame-rate one, frames coded with their index."""
    root = tmp_path_factory.mktemp("long")
    vfr = np.cumsum([0] + ([33] * 30 + [80] * 20 + [50] * 30) * 2).tolist()  # 30, 12.5 and 20 fps stretches, 8.2 s
    return {
        "29.97": write_video(root / "ntsc.mp4", "libx264", 300, fps=Fraction(30000, 1001), options={"qp": "0"}),
        "25": write_video(root / "pal.mkv", "libx264", 250, fps=25, options={"qp": "0"}),
        "vfr": write_timed_video(root / "vfr.mp4", vfr),
    }


def test_window_spans_lay_out_windows_to_the_videos_end():
    from processing_clip2video import window_spans

    assert window_spans(10.0, 4, 2) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]
    assert window_spans(11.0, 4, 2) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0), (7.0, 11.0)]
    assert window_spans(9.0, 4) == [(0.0, 4.0), (4.0, 8.0), (5.0, 9.0)]
    assert window_spans(3.2, 4, 2) == [(0.0, 3.2)]  # shorter than one window: the whole video
    assert window_spans(4.0, 4, 2) == [(0.0, 4.0)]
    for bad in (0, -1, float("nan"), "4"):
        with pytest.raises(ValueError, match="window_seconds"):
            window_spans(10.0, bad)


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
@pytest.mark.parametrize("rate", ["29.97", "25", "vfr"])
def test_a_span_gives_the_frames_of_the_span_cut_out_as_its_own_file(processor, long_videos, tmp_path, rate):
    """`span=(start, end)` chooses the processor's frames inside the span as it would in that span cut out as its own
    file (ffmpeg -ss/-t), for every sampling mode; through `preprocess(spans=...)` the model inputs are the same."""
    vp = processor.video_processor
    video = long_videos[rate]
    with av.open(video) as container:  # spans from frame to frame, so that ffmpeg's cut keeps exactly their frames
        stream = container.streams.video[0]
        times = np.array(sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.size))
    # (the cut file's last frame lasts 1/30 s whatever it lasted in the video: spans of the VFR file end in a 30 fps
    # stretch, where the durations agree; ffmpeg's re-timing of the cut moves a pick by one frame at most there)
    same = (lambda a, b: a == b) if rate != "vfr" else (
        lambda a, b: len(a) == len(b) and np.abs(np.subtract(a, b)).max() <= 1)
    spans = [(1.5, 4.6), (0.0, 4.5), (2.0, 4.95)] if rate == "vfr" else [(1.5, 5.5), (0.0, 3.0), (4.2, 8.0)]
    for nominal_start, nominal_end in spans:
        start, end = (float(times[np.argmin(np.abs(times - t))]) for t in (nominal_start, nominal_end))
        clip = cut(video, start, end, tmp_path / f"clip{start}.mp4")
        for options in [{}, {"feature_framerate": 1}, {"frame_sampling": "uniform"}]:
            from_span = codes(vp.load_frames(video, span=(start, end), **options))
            from_clip = codes(vp.load_frames(clip, **options))
            assert same(from_span, from_clip), (start, end, options, from_span, from_clip)
            inputs = vp(video, spans=(start, end), **options)
            if rate != "vfr":
                assert torch.equal(inputs["pixel_values"], vp(clip, **options)["pixel_values"]), (start, end, options)
        every_image = dict(feature_framerate=1, num_frames=1000)  # all 5 fps images of the span, as of the clip's
        assert same(codes(vp.load_frames(video, span=(start, end), **every_image)),
                    codes(vp.load_frames(clip, **every_image)))


def test_spans_per_video_and_errors(processor, long_videos):
    vp = processor.video_processor
    video = long_videos["25"]
    batch = vp([video, video], spans=[(0.0, 2.0), None])
    assert torch.equal(batch["pixel_values"][0], vp(video, spans=(0.0, 2.0))["pixel_values"][0])
    assert torch.equal(batch["pixel_values"][1], vp(video)["pixel_values"][0])
    # an end past the video's end is cut to it; a span starting at or after the end is an error naming the video
    assert codes(vp.load_frames(video, span=(8.0, 50.0))) == codes(vp.load_frames(video, span=(8.0, 10.0)))
    with pytest.raises(VideoDecodeError, match=r"pal.mkv: span \[12, 14\) s starts at or after the end of the video"):
        vp(video, spans=(12.0, 14.0))
    for bad in [(3.0, 2.0), (-1.0, 2.0), ("a", 2), (1.0,)]:
        with pytest.raises(ValueError, match="span"):
            vp.load_frames(video, span=bad)
    with pytest.raises(ValueError, match="2 spans for 3 videos"):
        vp([video] * 3, spans=[(0, 1), (1, 2)])
    # the original's 5 fps images in memory: image k is at k / 5 s
    images = [coded_frame(k) for k in range(50)]
    assert codes(vp.load_frames(images, span=(2.0, 4.0), feature_framerate=1)) == list(range(10, 20))


@pytest.mark.parametrize("rate", ["29.97", "vfr"])
def test_windows_of_one_video_are_decoded_once_and_equal_each_spans_frames(processor, long_videos, monkeypatch, rate):
    import video_readers

    vp = processor.video_processor
    video = long_videos[rate]
    opened = []
    reader = video_readers.READERS["decord"]
    monkeypatch.setitem(video_readers.READERS, "decord", lambda *args: opened.append(1) or reader(*args))
    windows = vp.preprocess_windows(video, window_seconds=4, window_stride=2)
    assert len(opened) == 1  # one open of the file for all windows
    spans = windows["spans"].tolist()
    duration = {"29.97": 300 / (30000 / 1001), "vfr": None}[rate]
    assert spans[0][0] == 0 and all(end - start == pytest.approx(4) for start, end in spans)
    if duration is not None:
        assert spans[-1][1] == pytest.approx(duration, abs=1e-3) and len(spans) == 5
    assert windows["pixel_values"].shape == (len(spans), vp.num_frames, 3, 224, 224)
    for position, span in enumerate(spans):
        single = vp(video, spans=tuple(span))
        assert torch.equal(windows["pixel_values"][position], single["pixel_values"][0]), span
        assert torch.equal(windows["video_mask"][position], single["video_mask"][0]), span
    # explicit spans: ends cut to the video's end, a window past the end is an error
    frames, used = vp.load_windows(video, spans=[(1.0, 3.0), (7.0, 99.0)], frame_sampling="uniform", num_frames=4)
    assert used.tolist()[0] == [1.0, 3.0] and used[1, 1] < 11 and [f.shape[1:] for f in frames] == [(224, 224, 3)] * 2
    with pytest.raises(VideoDecodeError, match="starts at or after the end"):
        vp.load_windows(video, spans=[(1.0, 3.0), (60.0, 64.0)])


def test_a_video_shorter_than_one_window_is_one_window(processor, videos):
    vp = processor.video_processor
    windows = vp.preprocess_windows(videos["h264"], window_seconds=10)
    assert windows["spans"].tolist() == [[0.0, 3.0]]
    assert torch.equal(windows["pixel_values"], vp(videos["h264"])["pixel_values"])


def test_the_data_path_decodes_each_clips_span(processor, long_videos):
    """`decode_video(..., span=)` and a frame store with `spans` give the processor's frames of each span; a span
    after the video's end is a VideoDecodeError (a counted skip for the data path)."""
    import data_clip2video

    vp = processor.video_processor
    video = long_videos["25"]
    assert codes(data_clip2video.decode_video(video, vp, span=(2.0, 6.0))) == codes(vp.load_frames(video, span=(2, 6)))
    store = data_clip2video.VideoFrameStore([video, video, video], vp, spans=[(0.0, 3.0), None, (20.0, 24.0)])
    assert codes(store.load(0)) == codes(vp.load_frames(video, span=(0.0, 3.0)))
    assert codes(store.load(1)) == codes(vp.load_frames(video))
    with pytest.raises(VideoDecodeError, match="starts at or after the end of the video"):
        store.load(2)


def test_bad_normalisation_values_are_refused_at_construction(tmp_path, videos):
    """An `image_mean` that is not numbers or an `image_std` of 0 would make every video NaN or unreadable: refused
    when the processor is built (also from a saved config), naming the option."""
    from processing_clip2video import VideoProcessorOptionError

    for options, message in [({"image_mean": "abc"}, "image_mean must be 1 or 3 finite numbers"),
                             ({"image_mean": [0.5, float("nan"), 0.5]}, "image_mean must be 1 or 3 finite numbers"),
                             ({"image_std": 0}, r"image_std must be > 0"),
                             ({"image_std": [0.3, 0.0, 0.3]}, r"image_std must be > 0"),
                             ({"rescale_factor": 0}, "rescale_factor must be a number > 0")]:
        with pytest.raises(VideoProcessorOptionError, match=message):
            CLIP2VideoVideoProcessor(**options)
    saved = dict(CLIP2VideoVideoProcessor().to_dict(), image_std=[0.0, 0.0, 0.0])
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(saved))
    with pytest.raises(VideoProcessorOptionError, match="image_std must be > 0"):
        CLIP2VideoVideoProcessor.from_pretrained(str(tmp_path))


def test_the_processor_built_for_a_model_owns_its_frame_options(processor, videos):
    """`for_model(config)` takes the model's frame count and size once; `frame_options()` (what prepared shards store)
    is derived from it; collating and the device normalisation are its methods, equal to its transform bit for bit."""
    from conftest import tiny_config

    config = tiny_config()
    vp = processor.video_processor.for_model(config, feature_framerate=1)
    assert (vp.num_frames, vp.crop_size.height, vp.size.shortest_edge) == (6, 32, 32)
    assert vp.frame_options()["image_size"] == 32 and "image_mean" not in vp.frame_options()
    assert torch.equal(vp(videos["h264"])["pixel_values"], processor.video_processor(
        videos["h264"], num_frames=6, feature_framerate=1, size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32})["pixel_values"])
    frames = [vp.to_model_size(vp.load_frames(videos["h264"]))]
    uint8, mask = vp.collate([list(frames[0])], keep_uint8=True)
    assert uint8.dtype == torch.uint8 and uint8.shape == (1, 6, 32, 32, 3)
    assert torch.equal(vp.normalize(uint8, mask), vp(videos["h264"])["pixel_values"])
    with pytest.raises(ValueError, match="image_size must be >= 1"):
        vp.for_model(image_size=0)
    with pytest.raises(TypeError, match="unexpected video processor arguments"):
        vp.for_model(frame_size=3)
