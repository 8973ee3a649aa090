"""Own videos and captions: every `datasets` source run_retrieval.py reads (videofolder, csv, json, parquet,
webdataset, save_to_disk), validation of broken/missing videos and empty captions, and streaming across processes.

The data is written here from tiny generated mp4 files (PyAV, 32 px, 20 frames at 10 fps)."""

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT

import caption_table
import data_clip2video
import data_sources
import run_retrieval
from data_sources import ColumnNotFoundError, DataValidationError


PYTHON = sys.executable
ACCELERATE = shutil.which("accelerate", path=os.path.dirname(PYTHON)) or "accelerate"
COLOURS = [(230, 40, 40), (40, 200, 40), (40, 40, 230), (220, 220, 30), (200, 40, 200), (30, 200, 200),
           (240, 140, 20), (120, 120, 120)]


def write_video(path, seed: int, num_frames: int = 20, size: int = 32) -> bytes:
    """A square of colour `seed` moving across a dark background; returns the file's bytes."""
    colour = COLOURS[seed % len(COLOURS)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(num_frames):
            frame = np.full((size, size, 3), 20 + 10 * (seed // len(COLOURS)), dtype=np.uint8)
            x = (index * 2 + 3 * seed) % (size - 8)
            frame[8:20, x : x + 8] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path).read_bytes()


BROKEN = b"\x00\x00\x00 this is not a video " * 40


def caption(seed: int, variant: int = 0) -> str:
    words = ["red", "green", "blue", "yellow", "purple", "cyan", "orange", "grey"]
    return f"{'a' if variant == 0 else 'one'} {words[seed % len(words)]} square moves"


def make_videofolder(root: Path, splits=(("train", 8), ("test", 6)), broken=True, missing=True) -> Path:
    """`root/<split>/*.mp4` + `metadata.jsonl` (`file_name`, `text`); train gets a broken and a missing video."""
    for split, count in splits:
        folder = root / split
        folder.mkdir(parents=True)
        lines = []
        for seed in range(count):
            write_video(folder / f"clip{seed}.mp4", seed)
            lines.append({"file_name": f"clip{seed}.mp4", "text": caption(seed)})
        if split == "train" and broken:
            (folder / "broken.mp4").write_bytes(BROKEN)
            lines.append({"file_name": "broken.mp4", "text": "a broken video"})
        if split == "train" and missing:
            lines.append({"file_name": "gone.mp4", "text": "a video that is not there"})
        (folder / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


TINY_MODEL = ["--num_frames", "4", "--max_words", "16", "--scratch_hidden_size", "32", "--scratch_num_layers", "1",
              "--scratch_patch_size", "16", "--num_temporal_layers", "1", "--report_to", "none",
              "--learning_rate", "1e-3", "--clip_learning_rate", "1e-3", "--logging_steps", "1"]


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")


def _load(tmp_path, *argv, split="train"):
    """A split through run_retrieval's own loading (arguments parsed as on the command line)."""
    model_args, data_args, _ = run_retrieval.parse_args(["--do_eval", "--cache_dir", str(tmp_path / "cache"), *argv])
    processor = run_retrieval.build_processor(model_args, data_args)
    processor.video_processor = processor.video_processor.for_model(num_frames=4, frame_sampling="uniform")
    return run_retrieval.load_split(data_args, split, processor)


def _decoded(split_data) -> list[int]:
    """Frames decoded per video (0 = undecodable)."""
    counts = []
    for video in range(split_data.eval_index.num_videos):
        try:
            counts.append(len(split_data.store.load(video)))
        except data_clip2video.VideoDecodeError:
            counts.append(0)
    return counts


# ----------------------------------------------------------------------------------------------------------------------
# Every source, laid out like a benchmark split; broken and missing videos and empty captions in each
# ----------------------------------------------------------------------------------------------------------------------


def test_videofolder_with_metadata_jsonl(tmp_path):
    root = make_videofolder(tmp_path / "data")
    split = _load(tmp_path, "--dataset_name", "videofolder", "--data_dir", str(root))
    assert split.eval_index.video_ids == tuple(f"clip{i}" for i in range(8)) + ("broken",)
    assert list(split.rows["caption"][:2]) == [caption(0), caption(1)]
    assert split.report.missing_videos == [str(root / "train" / "gone.mp4")]
    assert _decoded(split) == [4] * 8 + [0]


def test_csv_with_relative_paths_several_rows_per_video_and_empty_captions(tmp_path):
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    lines = ["video_id,path,sentence"]
    for seed in range(4):
        write_video(data / "videos" / f"v{seed}.mp4", seed)
        lines += [f"v{seed},videos/v{seed}.mp4,{caption(seed)}", f"v{seed},videos/v{seed}.mp4,{caption(seed, 1)}"]
    (data / "videos" / "bad.mp4").write_bytes(BROKEN)
    lines += ["bad,videos/bad.mp4,a broken one", "gone,videos/gone.mp4,not there", "v3,videos/v3.mp4,"]
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    split = _load(tmp_path, "--train_file", str(data / "train.csv"), "--video_column", "path",
                  "--caption_column", "sentence")
    assert split.eval_index.video_ids == ("v0", "v1", "v2", "v3", "bad")
    assert split.eval_index.captions_per_video == (2, 2, 2, 2, 1)  # rows of one id are one video's captions
    assert split.report.missing_videos == [str(data / "videos" / "gone.mp4")] and split.report.empty_captions == ["v3"]
    assert _decoded(split) == [4, 4, 4, 4, 0]


def test_json_list_of_captions(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for seed in range(3):
        write_video(data / f"v{seed}.mp4", seed)
        rows.append({"video": f"v{seed}.mp4", "captions": [caption(seed), caption(seed, 1), ""][: 3 - seed]})
    (data / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    split = _load(tmp_path, "--test_file", str(data / "test.jsonl"), split="test")
    assert split.eval_index.video_ids == ("v0", "v1", "v2")
    assert split.eval_index.captions_per_video == (2, 2, 1)
    assert split.report.empty_captions == ["v0"]  # its third caption was empty


def test_parquet_with_video_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = [write_video(tmp_path / f"v{seed}.mp4", seed) for seed in range(3)] + [BROKEN, b""]
    table = pa.table({"key": ["v0", "v1", "v2", "bad", "empty"], "mp4": data,
                      "caption": [caption(seed) for seed in range(3)] + ["broken", "empty"]})
    pq.write_table(table, tmp_path / "train.parquet")
    for name in ("v0.mp4", "v1.mp4", "v2.mp4"):  # the bytes are all there is
        (tmp_path / name).unlink()
    split = _load(tmp_path, "--train_file", str(tmp_path / "train.parquet"), "--video_id_column", "key")
    assert split.eval_index.video_ids == ("v0", "v1", "v2", "bad")
    assert split.report.missing_videos == ["empty"]
    assert _decoded(split) == [4, 4, 4, 0]


def make_webdataset(folder: Path, num_shards: int = 2, per_shard: int = 4, broken: bool = True, split: str = "train",
                    first_seed: int = 0) -> Path:
    """`folder/<split>-0000{i}.tar` of `{key}.mp4` + `{key}.txt` + `{key}.json` samples (video2dataset's layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    seed = first_seed
    for shard in range(num_shards):
        with tarfile.open(folder / f"{split}-{shard:05d}.tar", "w") as tar:
            for _ in range(per_shard):
                key = f"{seed:06d}"
                video = BROKEN if broken and seed == first_seed + 1 else write_video(folder / "tmp.mp4", seed)
                members = {"mp4": video, "txt": caption(seed).encode(), "json": json.dumps({"key": key}).encode()}
                for extension, payload in members.items():
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                seed += 1
    (folder / "tmp.mp4").unlink(missing_ok=True)
    return folder


def test_webdataset_tar_shards(tmp_path):
    folder = make_webdataset(tmp_path / "shards")
    split = _load(tmp_path, "--dataset_name", "webdataset", "--data_dir", str(folder))
    assert split.eval_index.video_ids == tuple(f"{seed:06d}" for seed in range(8))  # __key__ is the id
    assert list(split.rows["caption"]) == [caption(seed) for seed in range(8)]
    assert _decoded(split) == [4, 0, 4, 4, 4, 4, 4, 4]


def test_save_to_disk_folders_with_paths_and_with_video_features(tmp_path):
    import datasets

    for seed in range(4):
        write_video(tmp_path / f"v{seed}.mp4", seed)
    paths = [str(tmp_path / f"v{seed}.mp4") for seed in range(4)]
    captions = [caption(seed) for seed in range(4)]
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"video": paths, "caption": captions})}).save_to_disk(
        str(tmp_path / "with_paths"))
    with_videos = datasets.Dataset.from_dict({"video": paths, "caption": captions}).cast_column("video", datasets.Video())
    with_videos.save_to_disk(str(tmp_path / "with_videos"))  # datasets embeds the files' bytes
    (tmp_path / "v3.mp4").unlink()

    split = _load(tmp_path, "--dataset_name", str(tmp_path / "with_paths"), split="test")
    assert split.eval_index.video_ids == ("v0", "v1", "v2")
    assert split.report.missing_videos == [str(tmp_path / "v3.mp4")]
    assert _decoded(split) == [4, 4, 4]
    with pytest.raises(data_sources.DataSourceError, match=r"no split 'train'; available splits: \['test'\]"):
        _load(tmp_path, "--dataset_name", str(tmp_path / "with_paths"), split="train")
    split = _load(tmp_path, "--dataset_name", str(tmp_path / "with_videos"), split="test")
    assert split.eval_index.video_ids == ("v0", "v1", "v2", "v3") and _decoded(split) == [4, 4, 4, 4]


def test_wrong_column_names_the_available_ones(tmp_path):
    root = make_videofolder(tmp_path / "data", splits=(("train", 2),), broken=False, missing=False)
    with pytest.raises(ColumnNotFoundError, match=r"--caption_column 'title' .* available columns: \['video', 'text'\]"):
        _load(tmp_path, "--dataset_name", "videofolder", "--data_dir", str(root), "--caption_column", "title")
    with pytest.raises(ColumnNotFoundError, match=r"--video_column 'clip'"):
        _load(tmp_path, "--dataset_name", "videofolder", "--data_dir", str(root), "--video_column", "clip")


def test_strict_refuses_missing_videos(tmp_path):
    root = make_videofolder(tmp_path / "data", splits=(("train", 2),), broken=False)
    with pytest.raises(DataValidationError, match="1 missing videos.*gone.mp4"):
        _load(tmp_path, "--dataset_name", "videofolder", "--data_dir", str(root), "--strict")


def test_prepared_frames_are_taken_as_they_are():
    frames = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    decoded = data_clip2video.decode_video(frames, video_processor=None)
    assert len(decoded) == 3 and all(np.array_equal(a, b) for a, b in zip(decoded, frames))
    with pytest.raises(data_clip2video.VideoDecodeError, match="uint8"):
        data_clip2video.decode_video(frames.astype(np.float32), video_processor=None)


# ----------------------------------------------------------------------------------------------------------------------
# The whole script on own data: train, multi-caption evaluation, export, report, card
# ----------------------------------------------------------------------------------------------------------------------


def test_train_evaluate_export_on_a_videofolder(tmp_path):
    root = make_videofolder(tmp_path / "data")
    output = tmp_path / "run"
    results = run_retrieval.main([
        "--dataset_name", "videofolder", "--data_dir", str(root), "--output_dir", str(output), *TINY_MODEL,
        "--train_batch_size", "4", "--num_train_epochs", "2", "--checkpointing_steps", "no", "--do_train",
        "--do_eval", "--do_export_features", "--cache_dir", str(tmp_path / "cache")])["CLIP2Video"]
    assert results["completed_steps"] == 4 and results["skipped_training_videos"] >= 1  # the broken one, when drawn
    assert results["num_videos"] == 6 and results["num_captions"] == 6 and results["skipped_videos"] == 0
    assert math.isfinite(results["t2v_MeanR"])
    report = {entry["split"]: entry for entry in json.loads((output / "data_report.json").read_text())}
    assert report["train"]["missing_videos"] == [str(root / "train" / "gone.mp4")]
    assert any("broken.mp4" in name for name in report["train"]["undecodable_videos"])
    assert report["test"]["counts"] == {"missing_videos": 0, "empty_captions": 0, "undecodable_videos": 0}
    index = json.loads((output / "features.json").read_text())
    assert index["video_ids"] == [f"clip{i}" for i in range(6)]
    card = (output / "README.md").read_text()
    assert f"videofolder ({root})" in card
    assert (output / "report" / "index.html").read_text().count("<tr>") == 6


# ----------------------------------------------------------------------------------------------------------------------
# Streaming: each process its own shards, exact resume after kill -9
# ----------------------------------------------------------------------------------------------------------------------


RECORD_AND_KILL = """
import json, os, signal, sys
import run_retrieval
real, seen = run_retrieval.compute_loss, []
kill_at = int(os.environ.get("KILL_AT_CALL", "0"))
def compute_loss(model, batch, *args, **kwargs):
    seen.append(list(batch["rows"]))
    if len(seen) == kill_at:  # after the checkpoint of step kill_at - 1
        os.kill(os.getpid(), signal.SIGKILL)
    return real(model, batch, *args, **kwargs)
run_retrieval.compute_loss = compute_loss
run_retrieval.main(sys.argv[1:])
rank = int(os.environ.get("RANK", "0"))
with open(os.path.join(os.environ["SEEN_DIR"], f"seen-{rank}.json"), "w") as handle:
    json.dump(seen, handle)
"""


def _streaming_args(shards: Path, output: Path, cache: Path, *extra) -> list[str]:
    return ["--dataset_name", "webdataset", "--data_dir", str(shards), "--output_dir", str(output), *TINY_MODEL,
            "--streaming", "--shuffle_buffer_size", "4", "--train_batch_size", "4", "--dataloader_num_workers", "2",
            "--cache_dir", str(cache), "--do_train", *extra]


def test_two_processes_stream_disjoint_shards_and_evaluate_like_one(tmp_path):
    shards = make_webdataset(tmp_path / "shards", num_shards=4, per_shard=4, broken=False)
    make_webdataset(shards, num_shards=1, per_shard=5, broken=False, split="test", first_seed=16)  # 5: uneven shares
    args = _streaming_args(shards, tmp_path / "run", tmp_path / "cache", "--max_train_steps", "4",
                           "--checkpointing_steps", "no", "--do_eval", "--do_export_features")
    launch = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
              "no", "--dynamo_backend", "no", str(tmp_path / "record.py"), *args]
    (tmp_path / "record.py").write_text(f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n" + RECORD_AND_KILL)
    subprocess.run(launch, check=True, env=dict(_env(), ACCELERATE_USE_CPU="1", SEEN_DIR=str(tmp_path)), cwd=tmp_path,
                   timeout=300, capture_output=True)
    seen = [json.loads((tmp_path / f"seen-{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(batches) for batches in seen] == [4, 4] and all(len(b) == 2 for r in seen for b in r)  # 2 per process
    first_epoch = [sum(batches[:2], []) for batches in seen]  # 16 videos in 4 shards: 2 shards = 8 rows per process
    assert len(set(first_epoch[0])) == len(set(first_epoch[1])) == 4
    assert not set(sum(seen[0], [])) & set(sum(seen[1], []))  # every process keeps to its own shards
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())["CLIP2Video"]
    assert results["completed_steps"] == 4 and results["num_videos"] == 5
    # The evaluation split over 2 processes (3 + 2 videos, gathered unevenly) equals a 1-process evaluation.
    from safetensors.torch import load_file

    run_retrieval.main(["--model_name_or_path", str(tmp_path / "run"), "--dataset_name", "webdataset", "--data_dir",
                        str(shards), "--output_dir", str(tmp_path / "one"), "--do_eval", "--do_export_features",
                        "--report_to", "none", "--cache_dir", str(tmp_path / "cache")])
    two, one = load_file(tmp_path / "run/features.safetensors"), load_file(tmp_path / "one/features.safetensors")
    assert one["video_embeds"].shape[0] == 5 and one["text_embeds"].shape[0] == 5
    for name in ("video_embeds", "text_embeds"):
        assert torch.allclose(one[name], two[name], atol=1e-6), name


def test_kill_9_mid_stream_then_resume_gives_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    shards = make_webdataset(tmp_path / "shards", num_shards=2, per_shard=5)
    env = dict(_env(), SEEN_DIR=str(tmp_path))
    full = _streaming_args(shards, tmp_path / "full", tmp_path / "cache", "--max_train_steps", "7",
                           "--checkpointing_steps", "2")
    subprocess.run([PYTHON, "-c", RECORD_AND_KILL, *full], check=True, env=env, cwd=tmp_path, capture_output=True,
                   timeout=300)
    uninterrupted = json.loads((tmp_path / "seen-0.json").read_text())
    killed = _streaming_args(shards, tmp_path / "killed", tmp_path / "cache", "--max_train_steps", "7",
                             "--checkpointing_steps", "2")
    died = subprocess.run([PYTHON, "-c", RECORD_AND_KILL, *killed], env=dict(env, KILL_AT_CALL="4"), cwd=tmp_path,
                          capture_output=True, timeout=300)
    assert died.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (tmp_path / "killed/checkpoints").iterdir()) == ["checkpoint-2"]
    subprocess.run([PYTHON, "-c", RECORD_AND_KILL, *killed, "--resume_from_checkpoint", "latest"], check=True, env=env,
                   cwd=tmp_path, capture_output=True, timeout=300)
    resumed = json.loads((tmp_path / "seen-0.json").read_text())
    assert resumed == uninterrupted[2:]  # the stream continued exactly after the checkpoint's micro-batch
    state = json.loads((tmp_path / "killed/train_history.json").read_text())
    assert state["completed_steps"] == 7 and state["epoch"] >= 1  # the run crossed an epoch of the stream
    full_weights = load_file(tmp_path / "full/model.safetensors")
    resumed_weights = load_file(tmp_path / "killed/model.safetensors")
    for name, tensor in full_weights.items():
        assert torch.equal(tensor, resumed_weights[name]), name


def test_strict_refuses_an_undecodable_video_and_a_bad_source_is_a_typed_error(tmp_path):
    root = make_videofolder(tmp_path / "data", splits=(("test", 3),))
    (root / "test" / "clip1.mp4").write_bytes(BROKEN)
    with pytest.raises(DataValidationError, match="undecodable evaluation video.*clip1.mp4"):
        run_retrieval.main(["--dataset_name", "videofolder", "--data_dir", str(root), "--output_dir",
                            str(tmp_path / "run"), *TINY_MODEL, "--do_eval", "--strict", "--cache_dir",
                            str(tmp_path / "cache")])
    (root / "train").mkdir()
    (root / "train" / "metadata.jsonl").write_text(json.dumps({"file_name": "../x.mp4", "text": "a"}) + "\n")
    with pytest.raises(data_sources.DataSourceError, match="cannot read the dataset.*'../x.mp4'"):
        _load(tmp_path, "--dataset_name", "videofolder", "--data_dir", str(root))  # a file outside the folder


def test_metadata_mixing_string_and_list_captions_names_the_file_and_the_column(tmp_path):
    """pyarrow's JSON reader refuses a column holding strings in some rows and lists in others: a DataSourceError that
    names the metadata file, the column and how to write it (not a raw ArrowInvalid)."""
    root = tmp_path / "data" / "train"
    root.mkdir(parents=True)
    for seed in range(2):
        write_video(root / f"clip{seed}.mp4", seed)
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "clip0.mp4", "caption": "one caption"}) + "\n"
                                         + json.dumps({"file_name": "clip1.mp4", "caption": ["two", "three"]}) + "\n")
    loads = [lambda: _load(tmp_path, "--dataset_name", "videofolder", "--data_dir", str(tmp_path / "data")),
             lambda: data_sources.load_source("videofolder", "train", data_dir=str(tmp_path / "data"),
                                                 cache_dir=str(tmp_path / "cache"), streaming=True)]
    for load in loads:
        with pytest.raises(data_sources.DataSourceError) as caught:
            load()
        message = str(caught.value)
        assert str(root / "metadata.jsonl") in message and "column 'caption' holds both string and array" in message
        assert "a list of strings" in message


def test_data_report_names_the_undecodable_videos_every_process_met(tmp_path):
    """Training skips are found by the process that decodes the video; the report gathers them from all processes,
    so 2 processes write the same data_report.json as 1."""
    root = make_videofolder(tmp_path / "data", splits=(("train", 9),), missing=False)  # 12 videos: 3 batches of 4
    metadata = root / "train" / "metadata.jsonl"
    for index in (2, 3):
        (root / "train" / f"broken{index}.mp4").write_bytes(BROKEN)
        line = json.dumps({"file_name": f"broken{index}.mp4", "text": "bad"})
        metadata.write_text(metadata.read_text() + line + "\n")
    options = ["--dataset_name", "videofolder", "--data_dir", str(root), *TINY_MODEL, "--train_batch_size", "4",
               "--num_train_epochs", "1", "--checkpointing_steps", "no", "--do_train", "--cache_dir",
               str(tmp_path / "cache")]
    run_retrieval.main([*options, "--output_dir", str(tmp_path / "one")])
    launch = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
              "no", "--dynamo_backend", "no", str(REPO_ROOT / "run_retrieval.py"), *options, "--output_dir",
              str(tmp_path / "two")]
    done = subprocess.run(launch, env=dict(_env(), ACCELERATE_USE_CPU="1"), cwd=tmp_path, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / name / "data_report.json").read_text()) for name in ("one", "two"))
    assert [Path(name.split(":")[0]).name for name in one[0]["undecodable_videos"]] == [
        "broken.mp4", "broken2.mp4", "broken3.mp4"]
    assert two == one


# ----------------------------------------------------------------------------------------------------------------------
# Ids and keys: two videos are never one; a row without an id is named, not merged under 'None'
# ----------------------------------------------------------------------------------------------------------------------


def _table(tmp_path, split="train", streaming=False, **options):
    """A split through data_sources alone: `SourceArguments(**options).open_split` + `build_caption_table`."""
    arguments = data_sources.SourceArguments(cache_dir=str(tmp_path / "cache"), **options)
    dataset, columns, base_dir = arguments.open_split(split, streaming=streaming)
    if streaming:
        return dataset, columns
    return caption_table.build_caption_table(dataset, columns, base_dir, "source", split, strict=arguments.strict)


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_one_report_type_and_one_benchmark_test():
    from datasets_scripts import DataReport

    assert caption_table.DataReport is DataReport  # benchmarks (read_benchmark) and own data report alike
    report = DataReport("source", "train", missing_videos=["a.mp4"], malformed=["row 3: no video id"])
    assert report.counts() == {"missing_videos": 1, "empty_captions": 0, "malformed": 1, "undecodable_videos": 0}
    assert DataReport.from_dict(report.to_dict()) == report
    benchmark = {"msrvtt-9k": True, "synthetic-motion": True, "msrvtt-typo": True, "./msrvtt": False,
                 "videofolder": False, "webdataset": False}
    for name, expected in benchmark.items():
        assert data_sources.SourceArguments(dataset_name=name).is_benchmark is expected, name
    assert not data_sources.SourceArguments(dataset_name="msrvtt-9k", train_file="train.csv").is_benchmark


def test_videofolder_videos_of_one_name_in_two_folders_or_with_two_extensions_are_two_videos(tmp_path):
    root = tmp_path / "data"
    for seed, name in enumerate(["a/dog.mp4", "b/dog.mp4", "cat.mp4", "cat.avi", "solo.mp4"]):
        (root / "train" / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / "train" / name, seed)
    _jsonl(root / "train" / "metadata.jsonl", [{"file_name": name, "text": f"video {name}"} for name in
                                               ["a/dog.mp4", "b/dog.mp4", "cat.mp4", "cat.avi", "solo.mp4"]])
    table = _table(tmp_path, dataset_name="videofolder", data_dir=str(root))
    assert list(table.rows["video_id"]) == ["train/a/dog", "train/b/dog", "train/cat.mp4", "train/cat.avi", "solo"]
    assert list(table.rows["caption"]) == [f"video {name}" for name in
                                           ["a/dog.mp4", "b/dog.mp4", "cat.mp4", "cat.avi", "solo.mp4"]]
    assert [Path(table.videos[v]).name for v in range(5)] == ["dog.mp4", "dog.mp4", "cat.mp4", "cat.avi", "solo.mp4"]


def test_json_rows_without_a_video_id_are_named_not_merged_and_an_id_naming_two_files_is_a_duplicate(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(4):
        write_video(data / f"v{seed}.mp4", seed)
    rows = [{"video_id": None, "video": "v0.mp4", "caption": "first"}, {"video": "v1.mp4", "caption": "second"},
            {"video_id": "x", "video": "v2.mp4", "caption": "third"}, {"video_id": "y", "video": "v3.mp4",
                                                                       "caption": "fourth"},
            {"video_id": "x", "video": "v3.mp4", "caption": "x is v2, not v3"}]
    table = _table(tmp_path, train_file=str(_jsonl(data / "train.jsonl", rows)))
    assert list(table.rows["video_id"]) == ["x", "y"] and "None" not in table.rows["video_id"]
    assert table.report.malformed == ["row 0: no video id (video_id is None)", "row 1: no video id (video_id is None)"]
    assert table.report.duplicate_ids == [f"x (row 4: {data / 'v3.mp4'}; the id is {data / 'v2.mp4'}'s)"]
    with pytest.raises(DataValidationError, match=r"2 malformed.*row 0: no video id"):
        _table(tmp_path, train_file=str(data / "train.jsonl"), strict=True)


def test_csv_ids_and_captions_are_read_as_written(tmp_path):
    """`001` and `1` are two ids (not the integer 1 twice); a caption `None` or `NA` is that caption; an empty cell is
    an empty caption."""
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(4):
        write_video(data / f"v{seed}.mp4", seed)
    (data / "train.csv").write_text("video_id,video,caption\n001,v0.mp4,None\n1,v1.mp4,NA\n01,v2.mp4,null\n"
                                    "2,v3.mp4,\n")
    table = _table(tmp_path, train_file=str(data / "train.csv"))
    assert list(table.rows["video_id"]) == ["001", "1", "01"]
    assert list(table.rows["caption"]) == ["None", "NA", "null"]
    assert table.report.empty_captions == ["2"]


def test_webdataset_keys_restarting_in_each_shard_are_distinct_videos(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for shard in range(2):
        with tarfile.open(folder / f"train-{shard:05d}.tar", "w") as tar:
            for index in range(3):
                members = {"mp4": write_video(tmp_path / "tmp.mp4", 3 * shard + index),
                           "txt": caption(3 * shard + index).encode()}
                for extension, payload in members.items():
                    info = tarfile.TarInfo(f"{index:06d}.{extension}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    table = _table(tmp_path, dataset_name="webdataset", data_dir=str(folder))
    ids = [f"train-{shard:05d}/{index:06d}" for shard in range(2) for index in range(3)]
    assert list(table.rows["video_id"]) == ids
    assert list(table.rows["caption"]) == [caption(seed) for seed in range(6)]
    assert len({bytes(table.videos[v]) for v in range(6)}) == 6


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "garbled":  # the header of the third member (a txt of 1 block after an mp4) overwritten
        with tarfile.open(path) as tar:
            offset = tar.getmembers()[4].offset
        data[offset : offset + 512] = b"\x17garbage header\x00" * 32
    else:
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbled", "truncated"])
def test_a_damaged_webdataset_shard_is_an_error_naming_it_also_when_streamed(tmp_path, how):
    folder = make_webdataset(tmp_path / "shards", broken=False)
    _damage(folder / "train-00001.tar", how)
    words = "damaged tar shard: unreadable header" if how == "garbled" else "truncated tar shard"
    for streaming in (False, True):
        with pytest.raises(data_sources.DataSourceError, match=f"train-00001.tar: {words}"):
            _table(tmp_path, dataset_name="webdataset", data_dir=str(folder), streaming=streaming)
        with pytest.raises(data_sources.DataSourceError, match=f"train-00001.tar: {words}"):
            _table(tmp_path, train_file=str(folder / "train-*.tar"), streaming=streaming)


def test_videofolder_whose_splits_have_different_caption_features_loads_each_split(tmp_path):
    """MSR-VTT's shape: one caption per training video, several per test video."""
    root = tmp_path / "data"
    for split, count in (("train", 3), ("test", 2)):
        for seed in range(count):
            (root / split).mkdir(parents=True, exist_ok=True)
            write_video(root / split / f"clip{seed}.mp4", seed)
        captions = [caption(seed) if split == "train" else [caption(seed), caption(seed, 1)] for seed in range(count)]
        _jsonl(root / split / "metadata.jsonl", [{"file_name": f"clip{seed}.mp4", "text": captions[seed]}
                                                 for seed in range(count)])
    train = _table(tmp_path, dataset_name="videofolder", data_dir=str(root))
    test = _table(tmp_path, "test", dataset_name="videofolder", data_dir=str(root))
    assert list(train.rows["caption"]) == [caption(seed) for seed in range(3)]
    assert list(test.rows["caption"]) == [caption(0), caption(0, 1), caption(1), caption(1, 1)]
    assert list(test.rows["video_index"]) == [0, 0, 1, 1]


def test_streaming_refuses_the_options_it_cannot_honour():
    base = ["--dataset_name", "webdataset", "--data_dir", "shards", "--streaming", "--do_train", "--max_train_steps",
            "2"]
    for extra, option in ((["--max_train_samples", "4"], "--max_train_samples"),
                          (["--train_group_size", "2", "--train_batch_size", "4"], "--train_group_size"),
                          (["--cache_videos"], "--cache_videos")):
        with pytest.raises(ValueError, match=f"--streaming .*{option}"):
            run_retrieval.parse_args([*base, *extra])


# ----------------------------------------------------------------------------------------------------------------------
# Bad sources: typed errors naming the file, the row or the reason
# ----------------------------------------------------------------------------------------------------------------------


def test_bad_sources_are_typed_errors_naming_the_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "empty.jsonl").write_text("\n")
    cases = [(dict(train_file=str(tmp_path / "empty.csv")), "empty.csv \\(train\\): empty file"),
             (dict(train_file=str(tmp_path / "empty.jsonl")), "empty.jsonl \\(train\\): empty file"),
             (dict(train_file=str(tmp_path / "nothing-*.csv")), "nothing-\\*.csv \\(train\\): no such file"),
             (dict(dataset_name="./missing_folder"), "./missing_folder: no such file or folder"),
             (dict(dataset_name="videofolder", data_dir=str(tmp_path / "nowhere")), "nowhere: no such folder")]
    for options, message in cases:
        with pytest.raises(data_sources.DataSourceError, match=message):
            _table(tmp_path, **options)


def test_rows_whose_video_or_caption_value_is_not_one_are_named(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(3):
        write_video(data / f"v{seed}.mp4", seed)
    rows = [{"video": "v0.mp4", "caption": {"text": "a dict caption"}}, {"video": 5, "caption": {"text": "five"}},
            {"video": "v1.mp4", "caption": {"words": "no caption key"}}, {"video": "v2.mp4", "caption": {"text": ""}}]
    table = _table(tmp_path, train_file=str(_jsonl(data / "train.jsonl", rows)))
    assert list(table.rows["video_id"]) == ["v0"] and list(table.rows["caption"]) == ["a dict caption"]
    assert table.report.malformed == [
        "row 1: video value 5 (int) is not a path",
        "row 2: the caption ['words'] has none of the keys ['caption', 'captions', 'text', 'txt', 'sentence', 'title']"]
    assert table.report.empty_captions == ["v2"]  # an empty caption is reported as empty, not as malformed
    reference = caption_table.video_reference(5)  # a stream counts such a row as skipped (decode_video raises it)
    assert isinstance(reference, data_clip2video.VideoDecodeError) and "int is not a video" in str(reference)


def test_a_prepared_folder_as_train_file(tmp_path):
    import prepare_shards

    root = make_videofolder(tmp_path / "data", splits=(("train", 3),), broken=False, missing=False)
    prepare_shards.main(["--dataset_name", "videofolder", "--data_dir", str(root), "--output_dir",
                         str(tmp_path / "prepared"), "--num_frames", "4", "--image_size", "16", "--cache_dir",
                         str(tmp_path / "cache")])
    arguments = data_sources.SourceArguments(train_file=str(tmp_path / "prepared"))
    assert arguments.source_name() == str(tmp_path / "prepared") and not arguments.is_benchmark
    dataset, columns, _ = arguments.open_split("train")
    assert len(dataset) == 3 and columns.video == "frames"


# ----------------------------------------------------------------------------------------------------------------------
# Timestamped captions: each row's clip is its span; Charades-STA and QVHighlights files
# ----------------------------------------------------------------------------------------------------------------------


def test_clip_ids_never_merge_two_clips(tmp_path):
    """Times are written exactly (`%g` would give both spans below `10000.1-10000.5`), and a video whose own name
    looks like a clip id stays apart from that clip."""
    data = tmp_path / "data"
    data.mkdir()
    write_video(data / "long.mp4", 0)
    write_video(data / "a.mp4", 1)
    write_video(data / "a@1-2.mp4", 2)
    (data / "train.csv").write_text(
        "video,caption,start,end\n"
        "long.mp4,one,10000.12,10000.5\nlong.mp4,two,10000.14,10000.5\na.mp4,three,1,2\na@1-2.mp4,four,,\n")
    table = _table(tmp_path, train_file=str(data / "train.csv"))
    ids = list(table.rows["video_id"])
    assert ids == ["long@10000.12-10000.5", "long@10000.14-10000.5", "a@1-2#0", "a@1-2#1"]
    assert list(table.rows["video_index"]) == [0, 1, 2, 3]
    assert caption_table.clip_id("v", (12.5, 20.0)) == "v@12.5-20"  # short times keep their short form


def test_rows_with_spans_are_clips_with_their_own_ids(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        write_video(data / f"v{seed}.mp4", seed)
    (data / "train.csv").write_text(
        "video,caption,start_time,end_time\n"
        "v0.mp4,first half,0,1\nv0.mp4,second half,1,2\nv0.mp4,the first half again,0,1\nv1.mp4,all of it,,\n"
        "v1.mp4,backwards,1.5,0.5\nv1.mp4,not a time,a,1\n")
    table = _table(tmp_path, train_file=str(data / "train.csv"))
    assert list(table.rows["video_id"]) == ["v0@0-1", "v0@0-1", "v0@1-2", "v1"]
    assert list(table.rows["caption"]) == ["first half", "the first half again", "second half", "all of it"]
    assert list(table.rows["video_index"]) == [0, 0, 1, 2]
    assert list(table.spans) == [(0.0, 1.0), (1.0, 2.0), None]
    assert list(table.rows["start"]) == [0.0, 0.0, 1.0, None] and list(table.rows["end"]) == [1.0, 1.0, 2.0, None]
    assert table.report.malformed == ["row 4: span [1.5, 0.5] is not a clip (seconds, 0 <= start < end)",
                                      "row 5: 'a' is not a number of seconds"]
    pairs = _jsonl(data / "pairs.jsonl", [{"video": "v0.mp4", "caption": "c", "timestamp": [0.5, 1.5]},
                                          {"video": "v1.mp4", "sentences": ["one", "two"],
                                           "timestamps": [[0, 1], [1, 2]]}])
    table = _table(tmp_path, train_file=str(pairs), caption_column="sentences", start_column="timestamps",
                   end_column="timestamps")
    assert list(table.rows["video_id"]) == ["v1@0-1", "v1@1-2"] and list(table.rows["caption"]) == ["one", "two"]


CHARADES_STA = """3MSZA 24.3 30.4##person turn a light on.
3MSZA 0 6.1##person opening a door.
AO8RW 0.0 6.9##a person is putting a book on a shelf.
AO8RW 7.2 1.0##a person closes the book.
NOVID 1.0 2.0##the video of this one is not there.
"""

QVHIGHLIGHTS = [
    {"qid": 9769, "query": "some military patriots takes us through their safety procedures and measures.",
     "duration": 150, "vid": "j7rJstUseKg_360.0_510.0", "relevant_clip_ids": [0, 1], "saliency_scores": [[1, 1, 1]] * 2,
     "relevant_windows": [[0, 4], [6, 8]]},
    {"qid": 2001, "query": "a man talks to the camera.", "duration": 150, "vid": "NUsG9BgSes0_210.0_360.0",
     "relevant_clip_ids": [1], "saliency_scores": [[2, 2, 2]], "relevant_windows": [[2, 4]]},
    {"qid": 2002, "query": "a window past the end.", "duration": 150, "vid": "NUsG9BgSes0_210.0_360.0",
     "relevant_clip_ids": [75], "saliency_scores": [[2, 2, 2]], "relevant_windows": [[148, 152]]},
]


def test_charades_sta_and_qvhighlights_annotation_files(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for seed, name in enumerate(["3MSZA", "AO8RW", "j7rJstUseKg_360.0_510.0", "NUsG9BgSes0_210.0_360.0"]):
        write_video(videos / f"{name}.mp4", seed)
    (tmp_path / "charades_sta_test.txt").write_text(CHARADES_STA)
    table = _table(tmp_path, "test", dataset_name="charades-sta", test_file=str(tmp_path / "charades_sta_test.txt"),
                   video_dir=str(videos))
    assert list(table.rows["video_id"]) == ["3MSZA@24.3-30.4", "3MSZA@0-6.1", "AO8RW@0-6.9"]
    assert list(table.rows["caption"]) == ["person turn a light on.", "person opening a door.",
                                           "a person is putting a book on a shelf."]
    assert list(table.spans) == [(24.3, 30.4), (0.0, 6.1), (0.0, 6.9)]
    assert [Path(table.videos[v]).name for v in range(3)] == ["3MSZA.mp4", "3MSZA.mp4", "AO8RW.mp4"]
    assert table.report.malformed == ["row 3: span [7.2, 1.0] is not a clip (seconds, 0 <= start < end)"]
    assert table.report.missing_videos == ["NOVID"]

    _jsonl(tmp_path / "highlight_val_release.jsonl", QVHIGHLIGHTS)
    table = _table(tmp_path, "validation", dataset_name="qvhighlights",
                   validation_file=str(tmp_path / "highlight_val_release.jsonl"), video_dir=str(videos))
    assert list(table.rows["video_id"]) == ["j7rJstUseKg_360.0_510.0@0-4", "j7rJstUseKg_360.0_510.0@6-8",
                                            "NUsG9BgSes0_210.0_360.0@2-4"]
    assert list(table.rows["caption"]) == [QVHIGHLIGHTS[0]["query"]] * 2 + [QVHIGHLIGHTS[1]["query"]]
    assert table.report.malformed == ["row 2: span [148, 152] ends after the video's end (duration 150)"]

    (tmp_path / "bad.txt").write_text("3MSZA 24.3##no end time\n")
    with pytest.raises(data_sources.DataSourceError, match=r"bad.txt: line 1: expected 'VIDEO_ID START END##sentence'"):
        _table(tmp_path, dataset_name="charades-sta", train_file=str(tmp_path / "bad.txt"), video_dir=str(videos))
    with pytest.raises(data_sources.DataSourceError, match="give --video_dir"):
        _table(tmp_path, "test", dataset_name="charades-sta", test_file=str(tmp_path / "charades_sta_test.txt"))


def test_csv_in_a_data_dir_and_tsv_files_are_read_as_written(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        write_video(data / f"v{seed}.mp4", seed)
    (data / "train.csv").write_text("video_id,video,caption\n001,v0.mp4,None\n1,v1.mp4,NA\n")
    table = _table(tmp_path, dataset_name="csv", data_dir=str(data))
    assert list(table.rows["video_id"]) == ["001", "1"] and list(table.rows["caption"]) == ["None", "NA"]
    (data / "train.csv").unlink()
    (data / "train.tsv").write_text("video_id\tvideo\tcaption\n001\tv0.mp4\ta dog, running\n1\tv1.mp4\tNA\n")
    table = _table(tmp_path, train_file=str(data / "train.tsv"))
    assert list(table.rows["video_id"]) == ["001", "1"] and list(table.rows["caption"]) == ["a dog, running", "NA"]


def test_stream_rows_get_the_ids_and_spans_of_the_caption_table(tmp_path):
    columns = data_sources.Columns("mp4", "txt", "__key__")
    reference, clips = caption_table.stream_clips(
        {"mp4": b"bytes", "txt": "a caption", "__key__": "000000", "__url__": "/data/train-00001.tar"}, columns, None)
    assert reference == b"bytes" and clips == [("train-00001/000000", ["a caption"], None)]
    columns = data_sources.Columns("video", "caption", "video_id", "start", "end")
    row = {"video": "v.mp4", "caption": "c", "video_id": "v", "start": "1", "end": 2.5}
    assert caption_table.stream_clips(row, columns, "/videos") == ("/videos/v.mp4", [("v@1-2.5", ["c"], (1.0, 2.5))])
    for bad, message in (({"video_id": None}, "no video id"), ({"start": 3}, "not a clip"),
                         ({"caption": {"words": "x"}}, "none of the keys")):
        with pytest.raises(ValueError, match=message):
            caption_table.stream_clips({**row, **bad}, columns, None)


def test_qvhighlights_format_with_a_path_column_reads_as_plain_json(tmp_path):
    """The embedded moment benchmark writes QVHighlights' format with a `path` column: a plain `--test_file`."""
    for seed in range(2):
        write_video(tmp_path / f"moment-{seed:03d}.mp4", seed)
    rows = [{"qid": 0, "query": "a red square moves", "vid": "moment-000", "path": "moment-000.mp4", "duration": 2.0,
             "relevant_windows": [[0.0, 1.0]]},
            {"qid": 1, "query": "a green square moves", "vid": "moment-000", "path": "moment-000.mp4",
             "duration": 2.0, "relevant_windows": [[1.0, 2.0]]},
            {"qid": 2, "query": "a blue square moves", "vid": "moment-001", "path": "moment-001.mp4",
             "duration": 2.0, "relevant_windows": [[0.0, 2.0]]}]
    table = _table(tmp_path, "test", test_file=str(_jsonl(tmp_path / "annotations.jsonl", rows)))
    assert list(table.rows["video_id"]) == ["moment-000@0-1", "moment-000@1-2", "moment-001@0-2"]
    assert list(table.rows["caption"]) == [row["query"] for row in rows]
    assert list(table.spans) == [(0.0, 1.0), (1.0, 2.0), (0.0, 2.0)]
