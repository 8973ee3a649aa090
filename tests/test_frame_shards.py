"""Prepared frame shards (frame_shards.py, prepare_shards.py): values, resume after kill -9, 2 processes, bad videos,
streaming. Videos are tiny generated mp4 files (40x30 px, 2 s) and the model input tiny (4 frames of 16 px)."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from frame_shards import (
    PreparedShardsError,
    check_frame_options,
    frame_options_record,
    is_prepared_dir,
    load_prepared,
    read_prepared_info,
)
from data_clip2video import DataSourceError
from processing_clip2video import CLIP2VideoVideoProcessor, VideoDecodeError

from conftest import REPO_ROOT

PYTHON = sys.executable
#: The video processor of the tiny model input: what the prepared folder holds.
VP = CLIP2VideoVideoProcessor().for_model(image_size=16, num_frames=4, feature_framerate=2)
CLI_OPTIONS = ["--num_frames", "4", "--image_size", "16", "--feature_framerate", "2", "--shard_size", "2"]
NUM_GOOD = 5


def write_video(path, num_frames: int, seed: int, width: int = 40, height: int = 30, fps: int = 10) -> None:
    """mpeg4 video of smooth moving gradients (each video different)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 1, 3))
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(num_frames):
            image = ((base + np.stack([xx * 5 + index * 9, yy * 7 + index * 4, (xx + yy) * 3], -1)) % 256).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_folder(folder, broken: bool = True) -> list[dict]:
    """`NUM_GOOD` videos with two captions each (+ a missing and an undecodable one) and their metadata.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(NUM_GOOD):
        write_video(folder / f"clip{index}.mp4", 18 + 3 * index, seed=index)
        rows.append({"file_name": f"clip{index}.mp4", "caption": [f"clip {index} first", f"clip {index} second"]})
        if broken and index == 1:
            rows.append({"file_name": "missing.mp4", "caption": ["never written"]})
            (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 20)
            rows.append({"file_name": "broken.mp4", "caption": ["not a video"]})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")


def source_options(data_dir) -> list[str]:
    return ["--dataset_name", "videofolder", "--data_dir", str(data_dir), "--cache_dir", str(data_dir.parent / "cache")]


def prepare(data_dir, output_dir, *extra, prefix=(PYTHON,), check=True, script=None):
    command = [*prefix, *(script or [str(REPO_ROOT / "prepare_shards.py")]), *source_options(data_dir),
               "--output_dir", str(output_dir), *CLI_OPTIONS, *extra]
    return subprocess.run(command, env=_env(), cwd=output_dir.parent, capture_output=True, text=True,
                          check=check, timeout=300)


def shard_digests(folder) -> dict[str, str]:
    """sha256 of every file of a prepared folder (temporary and lock files aside)."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if not path.name.startswith(".")}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One folder prepared in-process (also how a user would call it from Python)."""
    import prepare_shards

    root = tmp_path_factory.mktemp("shards")
    make_folder(root / "videos")
    prepare_shards.main([*source_options(root / "videos"), "--output_dir", str(root / "prepared"), *CLI_OPTIONS])
    return root


def test_round_trip_gives_the_processors_frames_and_pixel_values(prepared):
    processor = VP
    rows = load_prepared(prepared / "prepared", "train", cache_dir=str(prepared / "cache"))
    assert rows.column_names == ["video_id", "caption", "frames"]
    assert [row["video_id"] for row in rows] == [f"clip{i}" for i in range(NUM_GOOD)]
    for index, row in enumerate(rows):
        assert row["caption"] == [f"clip {index} first", f"clip {index} second"]
        frames = row["frames"]
        assert frames.dtype == np.uint8 and frames.shape == (4, 16, 16, 3)
        video = str(prepared / "videos" / f"clip{index}.mp4")
        # the stored integers are the processor's resized and cropped frames ...
        expected = processor.transform_frames(processor.load_frames(video), do_rescale=False, do_normalize=False)
        assert np.array_equal(frames, expected.permute(0, 2, 3, 1).numpy().astype(np.uint8))
        assert frames.std() > 10  # real content, not a blank
        # ... so the model input from them is bit-identical to the one from the video
        from_video = processor(videos=video)["pixel_values"][0]
        from_shard = processor.transform_frames(list(frames))
        assert torch.equal(from_video, from_shard)
    # frames differ from video to video and from frame to frame
    assert not np.array_equal(rows[0]["frames"], rows[1]["frames"])
    assert not np.array_equal(rows[0]["frames"][0], rows[0]["frames"][1])


def test_prepared_json_reports_and_frame_options(prepared):
    folder = prepared / "prepared"
    assert is_prepared_dir(folder) and not is_prepared_dir(prepared / "videos")
    info = read_prepared_info(folder)
    assert info["frame_options"]["num_frames"] == 4 and info["frame_options"]["image_size"] == 16
    split = info["splits"]["train"]
    assert (split["num_videos"], split["num_captions"], split["num_skipped"], split["num_source_videos"]) == (
        NUM_GOOD, 2 * NUM_GOOD, 2, NUM_GOOD + 2)
    report = json.loads((folder / split["report"]).read_text())
    reasons = {item["video_id"]: item["reason"] for item in report["skipped"]}
    assert set(reasons) == {"missing", "broken"}
    assert "no such file" in reasons["missing"] and "cannot decode" in reasons["broken"]
    check_frame_options(folder, VP)
    with pytest.raises(PreparedShardsError, match="image_size: 16 there, 224 asked"):
        check_frame_options(folder, VP.for_model(image_size=224))
    with pytest.raises(PreparedShardsError, match="split 'test' was not prepared"):
        load_prepared(folder, "test")


def test_streaming_read_splits_by_node_and_resumes(prepared):
    from datasets.distributed import split_dataset_by_node

    folder = prepared / "prepared"
    stream = load_prepared(folder, "train", streaming=True)
    rows = list(stream)
    assert [row["video_id"] for row in rows] == [f"clip{i}" for i in range(NUM_GOOD)]
    in_memory = load_prepared(folder, "train", cache_dir=str(prepared / "cache"))
    for row, expected in zip(rows, in_memory):
        assert row["caption"] == expected["caption"] and np.array_equal(row["frames"], expected["frames"])
    # any Parquet reader gets the frames back: plain datasets + numpy.load of the .npy bytes
    import io

    import datasets

    plain = datasets.load_dataset("parquet", data_files=[str(p) for p in sorted(folder.glob("train-*.parquet"))],
                                  split="train", streaming=True)
    first = next(iter(plain))
    assert np.array_equal(np.load(io.BytesIO(first["frames"])), rows[0]["frames"])
    # two processes read disjoint shards that together hold every video
    parts = [[row["video_id"] for row in split_dataset_by_node(stream, rank=rank, world_size=2)] for rank in (0, 1)]
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == sorted(r["video_id"] for r in rows)
    # resuming from a state_dict continues where the reader was
    iterator = iter(stream)
    next(iterator), next(iterator)
    state = stream.state_dict()
    resumed = load_prepared(folder, "train", streaming=True)
    resumed.load_state_dict(state)
    assert [row["video_id"] for row in resumed] == [f"clip{i}" for i in range(2, NUM_GOOD)]


def test_strict_stops_at_the_first_bad_video(tmp_path):
    import data_clip2video
    import prepare_shards

    rows = make_folder(tmp_path / "videos")
    arguments = [*source_options(tmp_path / "videos"), "--output_dir", str(tmp_path / "prepared"), *CLI_OPTIONS,
                 "--strict"]
    with pytest.raises(data_clip2video.DataValidationError, match="missing.mp4"):
        prepare_shards.main(arguments)
    (tmp_path / "videos" / "metadata.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows if row["file_name"] != "missing.mp4"))
    with pytest.raises(VideoDecodeError, match="broken.mp4: cannot decode"):
        prepare_shards.main(arguments)
    assert not is_prepared_dir(tmp_path / "prepared")


def test_random_sampling_and_other_options_are_refused(prepared, tmp_path):
    with pytest.raises(PreparedShardsError, match="one fixed"):
        frame_options_record(VP.for_model(frame_sampling="random_segment"))
    from frame_shards import write_split_shards
    import prepare_shards

    args = prepare_shards.parse_args([*source_options(prepared / "videos"), "--output_dir", "unused"])
    records, skipped = prepare_shards.source_records(args, "train")
    assert [record.video_id for record in records] == ["clip0", "clip1", "broken", "clip2", "clip3", "clip4"]
    assert [item["video_id"] for item in skipped] == ["missing"]
    with pytest.raises(PreparedShardsError, match="num_frames: 4 there, 5 asked"):
        write_split_shards(records, prepared / "prepared", "train", VP.for_model(num_frames=5), shard_size=2)
    with pytest.raises(PreparedShardsError, match="prepared for other videos"):
        write_split_shards(records[1:], prepared / "prepared", "train", VP, shard_size=2)


KILL_IN_THIRD_SHARD = """
import os, signal, sys
import frame_shards, prepare_shards
real, calls = frame_shards.model_input_frames, []
def model_input_frames(*args, **kwargs):
    calls.append(1)
    if len(calls) == 5:  # the video of shard 2 (shards 0 and 1 hold videos 0-3 and are done)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
frame_shards.model_input_frames = model_input_frames
prepare_shards.main(sys.argv[1:])
"""

COUNT_DECODES = """
import sys
import frame_shards, prepare_shards
real, calls = frame_shards.model_input_frames, []
def model_input_frames(processor, video, options):
    calls.append(video)
    return real(processor, video, options)
frame_shards.model_input_frames = model_input_frames
prepare_shards.main(sys.argv[1:])
print("DECODED", [v.rsplit("/", 1)[-1] for v in calls])
"""


def test_kill_9_mid_shard_then_rerun_finishes_the_rest(tmp_path):
    make_folder(tmp_path / "videos", broken=False)
    clean = tmp_path / "clean"
    prepare(tmp_path / "videos", clean)
    killed = tmp_path / "killed"
    died = prepare(tmp_path / "videos", killed, script=["-c", KILL_IN_THIRD_SHARD], check=False)
    assert died.returncode == -signal.SIGKILL
    # two shards finished; the half-written third one is only a temporary file and counts for nothing
    assert not is_prepared_dir(killed)
    assert sorted(p.name for p in killed.glob("train-*")) == [
        "train-00000.json", "train-00000.parquet", "train-00001.json", "train-00001.parquet"]
    assert len(list(killed.glob(".tmp-*-train-00002.parquet"))) == 1
    resumed = prepare(tmp_path / "videos", killed, script=["-c", COUNT_DECODES])
    assert "DECODED ['clip4.mp4']" in resumed.stdout  # only the unfinished shard is decoded again
    assert not list(killed.glob(".tmp-*"))
    assert shard_digests(killed) == shard_digests(clean)


def test_two_process_prepare_writes_the_same_shards_as_one(prepared, tmp_path):
    accelerate = [PYTHON, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two = tmp_path / "two"
    result = subprocess.run(
        [*accelerate, str(REPO_ROOT / "tests" / "frame_shards_rank_check.py"), *source_options(prepared / "videos"),
         "--output_dir", str(two), *CLI_OPTIONS],
        env=dict(_env(), ACCELERATE_USE_CPU="1"), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # really two processes, each writing its own shards (rank r writes shards r, r + 2, ...)
    ranks = sorted((json.loads(path.read_text()) for path in two.glob(".rank-*.json")), key=lambda r: r["rank"])
    # 6 videos (the missing one is dropped by the source validation), 2 per shard: shards 0, 1, 2
    assert ranks == [{"rank": 0, "shards": [0, 2], "world_size": 2}, {"rank": 1, "shards": [1], "world_size": 2}]
    assert shard_digests(two) == shard_digests(prepared / "prepared")


TINY_MODEL = ["--num_frames", "4", "--max_words", "16", "--scratch_hidden_size", "32", "--scratch_num_layers", "1",
              "--scratch_patch_size", "16", "--num_temporal_layers", "1", "--report_to", "none", "--learning_rate",
              "1e-3", "--clip_learning_rate", "1e-3", "--train_batch_size", "4", "--checkpointing_steps", "no"]


def test_training_from_shards_equals_training_from_the_videos(tmp_path):
    """The same frames (4 of 32 px, the tiny model's input) through run_retrieval: from the mp4 files (resized by the
    processor at every read) and from shards prepared once; the final weights are equal, not just close."""
    import run_retrieval
    from safetensors.torch import load_file

    make_folder(tmp_path / "videos", broken=False)
    prepared = tmp_path / "prepared"
    prepare(tmp_path / "videos", prepared, "--image_size", "32", "--feature_framerate", "1")
    common = [*TINY_MODEL, "--do_train", "--num_train_epochs", "2", "--cache_dir", str(tmp_path / "cache")]
    from_videos = run_retrieval.main(["--dataset_name", "videofolder", "--data_dir", str(tmp_path / "videos"),
                                      "--output_dir", str(tmp_path / "run_videos"), *common])["CLIP2Video"]
    from_shards = run_retrieval.main(["--dataset_name", str(prepared), "--output_dir", str(tmp_path / "run_shards"),
                                      *common])["CLIP2Video"]
    assert from_videos["completed_steps"] == from_shards["completed_steps"] == 4  # 10 captions, batches of 4, 2 epochs
    videos_weights = load_file(tmp_path / "run_videos" / "model.safetensors")
    shards_weights = load_file(tmp_path / "run_shards" / "model.safetensors")
    assert videos_weights.keys() == shards_weights.keys()
    for name, tensor in videos_weights.items():
        assert torch.equal(tensor, shards_weights[name]), name
    # streamed, the shards train too (each process and DataLoader worker reads whole shards)
    streamed = run_retrieval.main(["--dataset_name", str(prepared), "--output_dir", str(tmp_path / "run_stream"),
                                   "--streaming", "--max_train_steps", "3", *common])["CLIP2Video"]
    assert streamed["completed_steps"] == 3
    # other steps give other weights: the equality above is that of two trainings, not of untouched models
    streamed_weights = load_file(tmp_path / "run_stream" / "model.safetensors")
    differ = [name for name, tensor in streamed_weights.items() if not torch.equal(tensor, shards_weights[name])]
    assert len(differ) > len(streamed_weights) // 2


@pytest.mark.parametrize("model_options, difference", [
    (["--num_frames", "3"], "num_frames: 4 there, 3 asked"),
    (["--scratch_image_size", "32"], "image_size: 16 there, 32 asked"),
    (["--frame_sampling", "random_segment"], "frame_sampling: 'original' there, 'random_segment' asked"),
    (["--feature_framerate", "1"], "feature_framerate: 2 there, 1 asked"),
])
def test_shards_prepared_with_other_frame_options_are_refused_before_training(prepared, tmp_path, model_options,
                                                                              difference):
    """The folder holds 4 frames of 16 px at feature_framerate 2; a model that would get other frames is refused, with
    the folder and the differing option named, before any training step."""
    import run_retrieval

    matching = {"--num_frames": "4", "--scratch_image_size": "16", "--feature_framerate": "2"}
    matching.update(zip(model_options[::2], model_options[1::2]))
    options = [*TINY_MODEL, *(item for pair in matching.items() for item in pair)]
    options += model_options if model_options[0] not in matching else []
    expected = f"{re.escape(str(prepared / 'prepared'))}.*{re.escape(difference)}"
    with pytest.raises(PreparedShardsError, match=expected) as caught:
        run_retrieval.main(["--dataset_name", str(prepared / "prepared"), "--output_dir", str(tmp_path / "run"),
                            "--do_train", "--cache_dir", str(prepared / "cache"), *options])
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert str(caught.value).count(" there, ") == 1  # only the option that differs


def test_train_file_without_dataset_name_infers_the_builder(prepared, tmp_path):
    """--train_file train.csv alone is read by the csv builder (the same inference as run_retrieval.py's) and gives the
    frames the videofolder preparation gave for the same videos."""
    import prepare_shards

    videos = prepared / "videos"
    lines = ["file_name,caption"] + [f"{videos / f'clip{index}.mp4'},clip {index} only" for index in (0, 3)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    finished = prepare_shards.main(["--train_file", str(tmp_path / "train.csv"), "--output_dir", str(tmp_path / "out"),
                                    "--cache_dir", str(tmp_path / "cache"), *CLI_OPTIONS])
    assert finished["train"]["num_videos"] == 2 and finished["train"]["num_captions"] == 2
    from_csv = load_prepared(tmp_path / "out", "train", cache_dir=str(tmp_path / "cache"))
    from_folder = {row["video_id"]: row["frames"] for row in
                   load_prepared(prepared / "prepared", "train", cache_dir=str(prepared / "cache"))}
    assert from_csv["video_id"] == ["clip0", "clip3"] and from_csv["caption"] == [["clip 0 only"], ["clip 3 only"]]
    for row in from_csv:
        np.testing.assert_array_equal(row["frames"], from_folder[row["video_id"]])
    with pytest.raises(DataSourceError, match="cannot tell the format of .*train.txt: pass --dataset_name"):
        prepare_shards.main(["--train_file", str(tmp_path / "train.txt"), "--output_dir", str(tmp_path / "other"),
                             *CLI_OPTIONS])


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """float32 values as their int32 bit patterns (so -0.0 and 0.0 differ, and NaNs compare)."""
    return tensor.contiguous().view(torch.int32)


def test_prepared_frames_stay_uint8_until_the_device_and_normalise_to_the_cpu_transforms_bits(prepared):
    """Training and evaluation collate prepared frames as uint8 and normalise them after the move to the device
    (`VideoBatcher.to_device`, the processor's `normalize`): the float32 values are bit for bit those of the processor's CPU transform, padding
    frames included; frames the transform would resize keep the CPU route."""
    from data_clip2video import VideoBatcher

    rows = load_prepared(prepared / "prepared", "train", cache_dir=str(prepared / "cache"))
    videos = [list(row["frames"]) for row in rows]
    videos[1], videos[3] = videos[1][:2], videos[3][:1]  # shorter videos: padding frames in the batch
    batcher = VideoBatcher(VP)
    on_cpu, cpu_mask = VP.collate(videos)
    items = [{"row": index, "input_ids": torch.tensor([1, 2]), "attention_mask": torch.ones(2, dtype=torch.long),
              "frames": frames} for index, frames in enumerate(videos)]
    pairs = batcher.collate_pairs(items)
    assert pairs["pixel_values"].dtype == torch.uint8 and pairs["pixel_values"].shape == (NUM_GOOD, 4, 16, 16, 3)
    assert pairs["video_mask"].tolist()[1] == [1, 1, 0, 0] and torch.equal(pairs["video_mask"], cpu_mask)
    moved = batcher.to_device(pairs, torch.device("cpu"))
    assert moved["pixel_values"].dtype == torch.float32 and moved["pixel_values"].shape == on_cpu.shape
    assert torch.equal(_bits(moved["pixel_values"]), _bits(on_cpu))
    assert on_cpu[0].abs().sum() > 0 and bool((on_cpu[1, 2:] == 0).all())
    # evaluation batches (one blank frame for a failed video) go the same way
    batch = batcher.collate_videos([{"video": 0, "frames": videos[0]}, {"video": 1, "error": "broken"},
                                    {"video": 2, "frames": videos[2]}])
    assert batch["pixel_values"].dtype == torch.uint8
    expected, _ = VP.collate([videos[0], [np.zeros_like(videos[0][0])], videos[2]])
    assert torch.equal(_bits(batcher.to_device(batch, "cpu")["pixel_values"]), _bits(expected))
    # frames at another size than the model's (decoded mp4 frames) are transformed on the CPU, as before
    large = [[np.full((24, 20, 3), 90, dtype=np.uint8)] * 3]
    collated, _ = VP.collate(large, keep_uint8=True)
    assert collated.dtype == torch.float32 and torch.equal(_bits(collated), _bits(VP.collate(large)[0]))


@pytest.mark.parametrize("option, value, message", [
    ("--num_frames", "0", "--num_frames must be >= 1, got 0"),
    ("--image_size", "-3", "--image_size must be >= 1, got -3"),
    ("--feature_framerate", "0", "--feature_framerate must be >= 1, got 0"),
    ("--shard_size", "0", "--shard_size must be >= 1, got 0"),
    ("--frame_sampling", "random_segment", "--frame_sampling must be one of"),
    ("--splits", "../outside", "--splits: '../outside' is not a split name"),
])
def test_prepare_options_are_checked_when_parsed(option, value, message):
    import prepare_shards

    with pytest.raises(ValueError, match=re.escape(message)):
        prepare_shards.parse_args(["--dataset_name", "videofolder", "--output_dir", "unused", option, value])


def _copy_prepared(prepared, tmp_path):
    import shutil

    return shutil.copytree(prepared / "prepared", tmp_path / "copy")


def test_names_in_prepared_json_never_leave_the_folder(prepared, tmp_path):
    folder = _copy_prepared(prepared, tmp_path)
    info = json.loads((folder / "prepared.json").read_text())
    for bad in ("../train-00000.parquet", str(folder / "train-00000.parquet"), ".hidden.parquet", "train-00000.json"):
        info["splits"]["train"]["shards"] = [bad]
        (folder / "prepared.json").write_text(json.dumps(info))
        with pytest.raises(PreparedShardsError, match="is not a .parquet file name of this folder"):
            load_prepared(folder, "train", cache_dir=str(tmp_path / "cache"))


def test_a_truncated_or_garbled_shard_is_named(prepared, tmp_path):
    folder = _copy_prepared(prepared, tmp_path)
    shard = folder / "train-00001.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    for streaming in (False, True):
        with pytest.raises(PreparedShardsError, match=f"{re.escape(str(shard))}: not a readable Parquet shard"):
            load_prepared(folder, "train", streaming=streaming, cache_dir=str(tmp_path / "cache"))
    shard.write_bytes(b"PAR1" + os.urandom(300) + b"PAR1")
    with pytest.raises(PreparedShardsError, match=f"{re.escape(str(shard))}: not a readable Parquet shard"):
        load_prepared(folder, "train", cache_dir=str(tmp_path / "cache"))


def test_garbled_frame_bytes_are_a_decode_error_naming_the_video(prepared, tmp_path):
    """Bad `.npy` bytes in a row are a VideoDecodeError naming the video (training skips and counts it like an
    undecodable file), never numpy's own error."""
    import pyarrow.parquet as pq

    from frame_shards import npy_array

    for data in (b"", b"garbage", npy_bytes_of(np.zeros((2, 4, 4, 3), np.uint8))[:-10]):
        with pytest.raises(PreparedShardsError, match="not a valid .npy array"):
            npy_array(data)
    folder = _copy_prepared(prepared, tmp_path)
    shard = folder / "train-00000.parquet"
    table = pq.read_table(shard)
    frames = table.column("frames").to_pylist()
    frames[1] = frames[1][:100]
    pq.write_table(table.set_column(2, "frames", __import__("pyarrow").array(frames, type=table.schema.field(
        "frames").type)), shard)
    rows = load_prepared(folder, "train", cache_dir=str(tmp_path / "cache"))
    assert rows[0]["frames"].shape == (4, 16, 16, 3)
    with pytest.raises(VideoDecodeError, match="clip1: prepared frames are not a valid .npy array"):
        rows[1]
    # streamed, the row comes through and its decoding names the video: a training stream skips and counts it
    from data_clip2video import Columns, StreamCollator, VideoBatcher

    streamed = list(load_prepared(folder, "train", streaming=True))
    assert [row["video_id"] for row in streamed[:2]] == ["clip0", "clip1"]
    batcher = VideoBatcher(VP)
    def tokenize(captions):
        return {"input_ids": torch.ones(len(captions), 2, dtype=torch.long),
                "attention_mask": torch.ones(len(captions), 2, dtype=torch.long)}

    collator = StreamCollator(batcher, tokenize, Columns("frames", "caption", "video_id"), None, seed=0)
    batch = collator(streamed[:3])
    assert batch["rows"] == [streamed[0]["video_id"], streamed[2]["video_id"]] and batch["pixel_values"].shape[0] == 2
    assert len(batch["skipped"]) == 1
    assert batch["skipped"][0].startswith("clip1: prepared frames are not a valid .npy array")


def npy_bytes_of(array):
    from frame_shards import npy_bytes

    return npy_bytes(array)


def test_a_garbled_receipt_is_named_when_resuming(prepared, tmp_path):
    """A rerun reads the receipts of finished shards: a truncated or foreign one is a PreparedShardsError naming it."""
    import prepare_shards

    folder = _copy_prepared(prepared, tmp_path)
    receipt = folder / "train-00001.json"
    original = receipt.read_text()
    arguments = [*source_options(prepared / "videos"), "--output_dir", str(folder), *CLI_OPTIONS]
    for garbled in (original[: len(original) // 2], json.dumps({**json.loads(original), "index": 2}), "[]"):
        receipt.write_text(garbled)
        with pytest.raises(PreparedShardsError, match=f"{re.escape(str(receipt))}: not the receipt of shard 1"):
            prepare_shards.main(arguments)
    receipt.write_text(original)
    assert prepare_shards.main(arguments)["train"]["num_videos"] == NUM_GOOD  # every shard done already: no decoding


# ----------------------------------------------------------------------------------------------------------------------
# The output folder: never the user's files, one run at a time, a changed source noticed; bad folders named
# ----------------------------------------------------------------------------------------------------------------------


def test_prepare_never_writes_over_the_users_files(tmp_path):
    import prepare_shards

    make_folder(tmp_path / "videos", broken=False)
    output = tmp_path / "mine"
    output.mkdir()
    (output / "train-00000.parquet").write_bytes(b"my own parquet")
    (output / "train-report.json").write_text("my report")
    arguments = [*source_options(tmp_path / "videos"), "--output_dir", str(output), *CLI_OPTIONS]
    with pytest.raises(PreparedShardsError, match="holds files prepare_shards.py did not write .*train-00000.parquet"):
        prepare_shards.main(arguments)
    assert (output / "train-00000.parquet").read_bytes() == b"my own parquet"
    assert (output / "train-report.json").read_text() == "my report"
    assert sorted(path.name for path in output.iterdir()) == ["train-00000.parquet", "train-report.json"]
    # --output_dir that is a file
    (tmp_path / "a_file").write_text("x")
    arguments[arguments.index(str(output))] = str(tmp_path / "a_file")
    with pytest.raises(PreparedShardsError, match="a_file is a file, not a folder"):
        prepare_shards.main(arguments)
    assert (tmp_path / "a_file").read_text() == "x"


def test_a_rerun_after_the_source_changed_writes_the_changed_shards_again(tmp_path):
    import prepare_shards

    rows = make_folder(tmp_path / "videos", broken=False)
    output = tmp_path / "prepared"
    arguments = [*source_options(tmp_path / "videos"), "--output_dir", str(output), *CLI_OPTIONS]
    prepare_shards.main(arguments)
    before = load_prepared(output, "train", cache_dir=str(tmp_path / "cache1"))
    old_frames = before[0]["frames"].copy()
    # a caption edited (clip 3, shard 1) and a video replaced by another one (clip 0, shard 0)
    rows[3]["caption"] = ["clip 3 edited", "clip 3 second"]
    (tmp_path / "videos" / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    write_video(tmp_path / "videos" / "clip0.mp4", 18, seed=99)
    prepare_shards.main(arguments)
    after = load_prepared(output, "train", cache_dir=str(tmp_path / "cache2"))
    assert after[3]["caption"] == ["clip 3 edited", "clip 3 second"]
    assert not np.array_equal(after[0]["frames"], old_frames)
    expected = VP.to_model_size(VP.load_frames(str(tmp_path / "videos" / "clip0.mp4")))
    assert np.array_equal(after[0]["frames"], expected)
    assert np.array_equal(after[4]["frames"], before[4]["frames"])  # an unchanged shard is kept


def test_foreign_or_garbled_prepared_json_is_refused_before_the_work(tmp_path):
    import data_clip2video
    import prepare_shards

    make_folder(tmp_path / "videos", broken=False)
    output = tmp_path / "prepared"
    arguments = [*source_options(tmp_path / "videos"), "--output_dir", str(output), *CLI_OPTIONS]
    for content, message in [("{not json", "not a readable prepared-shards record"),
                             (json.dumps({"format": "someone-else"}), "not a prepared-shards record of clip2video"),
                             ("[1, 2]", "not a prepared-shards record of clip2video")]:
        output.mkdir(exist_ok=True)
        (output / "prepared.json").write_text(content)
        with pytest.raises(PreparedShardsError, match=f"{re.escape(str(output / 'prepared.json'))}: {message}"):
            prepare_shards.main(arguments)
        assert sorted(path.name for path in output.iterdir()) == ["prepared.json"]  # nothing decoded or written
    # splits as a list (a prepared folder otherwise): named, as a source and as an output folder
    (output / "prepared.json").unlink()
    prepare_shards.main(arguments)
    info = json.loads((output / "prepared.json").read_text())
    (output / "prepared.json").write_text(json.dumps({**info, "splits": ["train"]}))
    with pytest.raises(PreparedShardsError, match="prepared.json: malformed"):
        data_clip2video.load_source(str(output), "train")
    with pytest.raises(PreparedShardsError, match="prepared.json: malformed"):
        prepare_shards.main(arguments)


def test_an_unfinished_prepared_folder_used_as_a_source_says_rerun(tmp_path):
    import data_clip2video

    make_folder(tmp_path / "videos", broken=False)
    killed = tmp_path / "killed"
    died = prepare(tmp_path / "videos", killed, script=["-c", KILL_IN_THIRD_SHARD], check=False)
    assert died.returncode == -signal.SIGKILL
    with pytest.raises(PreparedShardsError, match="killed: unfinished prepared folder .*rerun prepare_shards.py"):
        data_clip2video.load_source(str(killed), "train")


SLOW_PREPARE = """
import sys, time
import frame_shards, prepare_shards
real = frame_shards.model_input_frames
def model_input_frames(*args, **kwargs):
    time.sleep(1.5)
    return real(*args, **kwargs)
frame_shards.model_input_frames = model_input_frames
prepare_shards.main(sys.argv[1:])
"""


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_writes(tmp_path):
    import time

    import prepare_shards

    make_folder(tmp_path / "videos", broken=False)
    output = tmp_path / "prepared"
    command = [PYTHON, "-c", SLOW_PREPARE, *source_options(tmp_path / "videos"), "--output_dir", str(output),
               *CLI_OPTIONS]
    first = subprocess.Popen(command, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 120
        while not (output / ".clip2video-prepared").exists() and time.time() < deadline:
            time.sleep(0.2)
        with pytest.raises(PreparedShardsError, match="another prepare_shards.py run is writing into"):
            prepare_shards.main([*source_options(tmp_path / "videos"), "--output_dir", str(output), *CLI_OPTIONS])
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    assert read_prepared_info(output)["splits"]["train"]["num_videos"] == NUM_GOOD  # the first run was not disturbed
    # its progress bar: videos done, with the time left
    assert re.search(r"train: videos: 100%.*5/5 \[\d\d:\d\d<00:00", stderr), stderr[-2000:]


def test_a_full_disk_is_named_with_the_file(tmp_path, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    import prepare_shards

    make_folder(tmp_path / "videos", broken=False)

    def full(self, table, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    output = tmp_path / "prepared"
    with pytest.raises(PreparedShardsError, match=re.escape(str(output / "train-00000.parquet")) +
                       ": cannot write it: No space left on device .disk full"):
        prepare_shards.main([*source_options(tmp_path / "videos"), "--output_dir", str(output), *CLI_OPTIONS])
    assert not list(output.glob("train-*"))  # no half-written shard left as done


def test_a_missing_model_path_is_named(tmp_path):
    import prepare_shards

    make_folder(tmp_path / "videos", broken=False)
    for missing in (str(tmp_path / "no_model"), "./no_model_here"):
        with pytest.raises(ValueError, match=f"--model_name_or_path {re.escape(missing)}: no such model folder"):
            prepare_shards.main([*source_options(tmp_path / "videos"), "--output_dir", str(tmp_path / "out"),
                                 "--model_name_or_path", missing])
    assert not (tmp_path / "out").exists()


def test_a_frame_size_that_does_not_match_the_model_names_the_option_that_fixes_it(prepared):
    with pytest.raises(PreparedShardsError, match=r"image_size: 16 there, 32 asked\); prepare_shards.py --image_size 32"):
        check_frame_options(prepared / "prepared", VP.for_model(image_size=32))


def test_prepared_shards_of_timed_clips_carry_their_spans(tmp_path):
    """Clips with a span are decoded in their span only (the processor's frame choice inside it), their rows carry
    `start` / `end`; a span starting after the video's end is a counted skip with the reason."""
    from frame_shards import VideoRecord, finish_split, write_split_shards

    write_video(tmp_path / "long.mp4", 60, seed=3)  # 6 s at 10 fps
    video = str(tmp_path / "long.mp4")
    records = [VideoRecord("long@0-2", video, ("first part",), (0.0, 2.0)),
               VideoRecord("long@3-6", video, ("second part",), (3.0, 6.0)),
               VideoRecord("long@9-12", video, ("after the end",), (9.0, 12.0)),
               VideoRecord("long", video, ("all of it",))]
    output = tmp_path / "prepared"
    write_split_shards(records, output, "train", VP, shard_size=2)
    entry = finish_split(output, "train", len(records), 2, VP)
    assert (entry["num_videos"], entry["num_skipped"]) == (3, 1)
    report = json.loads((output / "train-report.json").read_text())
    assert report["skipped"][0]["video_id"] == "long@9-12" and "starts at or after the end" in report["skipped"][0][
        "reason"]
    rows = load_prepared(output, "train", cache_dir=str(tmp_path / "cache"))
    assert rows.column_names == ["video_id", "caption", "frames", "start", "end"]
    assert [(row["start"], row["end"]) for row in rows] == [(0.0, 2.0), (3.0, 6.0), (None, None)]
    for row, span in zip(rows, [(0.0, 2.0), (3.0, 6.0), None]):
        assert np.array_equal(row["frames"], VP.to_model_size(VP.load_frames(video, span=span)))
    assert not np.array_equal(rows[0]["frames"][0], rows[1]["frames"][0])
