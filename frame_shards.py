# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Prepared frame shards: every video decoded once into Parquet shards of model-ready uint8 frames.

Decoding an mp4 costs a few hundred milliseconds per clip per core; training reads the same frames every epoch. A
prepared folder holds, for each video, the frames the processor chooses (`CLIP2VideoVideoProcessor.load_frames`)
already resized and cropped to the model's input size by the processor's own PIL transform, kept as uint8 — the
exact values that transform produces, so training from a prepared folder is bit-identical to training from the
videos (only the float normalisation is left, and it is the same code). Storage was measured against JPEG frames
and WebDataset tar (benchmarks/bench_shards.py, 12 frames of 224 px): raw uint8 in zstd-compressed Parquet is
lossless, 1.6 MB per clip on textured video (the original's 5 fps JPEG dump of a 30 s clip: 7.3 MB) and reads at
about 450 clips/s on one busy core through `datasets`; JPEG frames (quality 95) are 3.5x smaller but lose up to 110
grey levels (4.96 on average) and decode at 16 clips/s there.

A prepared folder:

* `{split}-{k:05d}.parquet` — shard `k` of a split, video positions `[k * shard_size, (k + 1) * shard_size)`, one
  row per decodable video: `video_id` (string), `caption` (list of strings), `frames` (binary: a uint8 array
  `(num_frames, height, width, 3)` in `.npy` format, so any Parquet reader can read it back with
  `numpy.load(io.BytesIO(value))`); `load_prepared` gives `frames` as arrays.
* `{split}-{k:05d}.json` — the shard's receipt (rows written, videos skipped and why, the frame options), written
  after the shard itself: a shard counts as done only when its receipt exists, so a killed run redoes at most the
  shards it was writing.
* `{split}-report.json` — the split's skipped videos (missing, undecodable, no caption), named with the reason.
* `prepared.json` — the frame options, their fingerprint, and per split the shard list and counts; written last,
  so its presence means the folder is complete (`is_prepared_dir`).

Shard contents depend only on the shard index, never on how many processes wrote them: `write_split_shards` run
by N processes (each takes shards `rank, rank + N, ...`) leaves the same files as one process.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils_clip2video import TMP_PREFIX, atomic_write, write_json


logger = logging.getLogger(__name__)

PREPARED_FILE = "prepared.json"
FORMAT_NAME = "clip2video-frame-shards"
FORMAT_VERSION = 1
#: Rows per Parquet row group: about 30 MB at 12 frames of 224 px, so a streamed shard is read a few rows at a time.
ROW_GROUP_SIZE = 16
#: Frame sampling modes that choose the same frames every time (a prepared folder holds one choice of frames).
DETERMINISTIC_SAMPLING = ("original", "uniform")


class PreparedShardsError(ValueError):
    """A prepared folder that cannot be used as asked: incomplete, another split or other frame options."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a split to prepare: its id, what the processor decodes (path, bytes, frame folder) and captions."""

    video_id: str
    video: Any
    captions: tuple[str, ...]


@dataclass(frozen=True)
class FrameOptions:
    """What fixes the stored frames: the processor's frame choice and the model's input size.

    `as_processor_kwargs()` gives the video processor's per-call options that choose and transform these frames.
    """

    num_frames: int = 12
    image_size: int = 224
    frame_sampling: str = "original"
    feature_framerate: int = 1
    extraction_fps: float = 5.0

    def __post_init__(self):
        if self.frame_sampling not in DETERMINISTIC_SAMPLING:
            raise PreparedShardsError(
                f"frame_sampling={self.frame_sampling!r} draws new frames at every read; prepared shards hold one fixed "
                f"choice of frames: use one of {DETERMINISTIC_SAMPLING}"
            )
        for name in ("num_frames", "image_size", "feature_framerate"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PreparedShardsError(f"{name} must be a positive int, got {value!r}")

    def as_processor_kwargs(self) -> dict[str, Any]:
        size = self.image_size
        return dict(num_frames=self.num_frames, frame_sampling=self.frame_sampling,
                    feature_framerate=self.feature_framerate, extraction_fps=self.extraction_fps, jitter=False,
                    size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def frame_options_record(options: FrameOptions, video_processor) -> dict[str, Any]:
    """The options stored in a prepared folder: `options` plus the processor's resize settings, and their fingerprint."""
    record = asdict(options)
    record["resample"] = int(video_processor.resample)
    record["do_resize"] = bool(video_processor.do_resize)
    record["do_center_crop"] = bool(video_processor.do_center_crop)
    record["fingerprint"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return record


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def model_input_frames(video_processor, video, options: FrameOptions) -> np.ndarray:
    """The frames the processor chooses for `video`, resized and cropped by its transform, before float scaling.

    Returns:
        `(n, image_size, image_size, 3)` uint8, `1 <= n <= num_frames`: exactly the integers the processor's
        transform normalises, so `transform_frames` of these gives the same `pixel_values` as the video itself.

    Raises:
        `VideoDecodeError` naming the video and the reason.
    """
    kwargs = options.as_processor_kwargs()
    frames = video_processor.load_frames(video, **kwargs)
    pixels = video_processor.transform_frames(frames, **kwargs, do_rescale=False, do_normalize=False)
    # without rescaling and normalising, the transform returns the resized uint8 values as exact float32 integers
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def npy_bytes(array: np.ndarray) -> bytes:
    """`array` in `.npy` format (a short header with dtype and shape, then the C-order data)."""
    handle = io.BytesIO()
    np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
    return handle.getvalue()


def npy_array(data: bytes) -> np.ndarray:
    """The array of `.npy` bytes, as a read-only view of `data` (no copy).

    Raises:
        `PreparedShardsError` when `data` is not a complete C-order numeric `.npy` array (garbled or truncated).
    """
    handle = io.BytesIO(data)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        shape, fortran_order, dtype = read_header[np.lib.format.read_magic(handle)](handle)
        if fortran_order or dtype.hasobject:
            raise ValueError("not a C-order numeric array")
        return np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=handle.tell()).reshape(shape)
    except (ValueError, KeyError, EOFError, TypeError, SyntaxError) as error:  # numpy's errors for a bad header/size
        described = f"{type(error).__name__}: {error}"
        raise PreparedShardsError(f"prepared frames are not a valid .npy array ({described})") from None


def _shard_schema():
    import pyarrow as pa

    return pa.schema([("video_id", pa.string()), ("caption", pa.list_(pa.string())), ("frames", pa.binary())])


def _rows_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=_shard_schema())


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


@dataclass
class ShardReceipt:
    """What one shard holds: written after the shard, so it marks the shard as done."""

    split: str
    index: int
    num_videos: int
    num_captions: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    #: every video of the shard's positions, written or skipped: a rerun on a changed source is refused
    video_ids: list[str] = field(default_factory=list)


def write_shard(path: Path, records: Sequence[VideoRecord], video_processor, options: FrameOptions,
                strict: bool = False) -> tuple[int, int, list[dict[str, str]]]:
    """Decodes `records` and writes their frames to the Parquet file `path` (atomically, row group by row group).

    Returns:
        `(videos written, captions written, skipped)`, `skipped` a list of `{"video_id", "video", "reason"}`.

    Raises:
        `VideoDecodeError` with `strict=True` at the first video that cannot be used.
    """
    import pyarrow.parquet as pq

    from processing_clip2video import VideoDecodeError

    skipped, pending = [], []
    num_videos = num_captions = 0
    with atomic_write(path) as handle:
        with pq.ParquetWriter(handle, _shard_schema(), compression="zstd", use_dictionary=False) as writer:
            for record in records:
                try:
                    if not record.captions or not all(isinstance(c, str) and c.strip() for c in record.captions):
                        raise VideoDecodeError(f"{record.video_id}: no caption (or an empty one)")
                    frames = model_input_frames(video_processor, record.video, options)
                except VideoDecodeError as error:
                    if strict:
                        raise
                    logger.warning("skipping %s: %s", record.video_id, error)
                    video = record.video if isinstance(record.video, str) else record.video_id  # a path, else its id
                    skipped.append({"video_id": record.video_id, "video": video, "reason": str(error)})
                    continue
                pending.append({"video_id": record.video_id, "caption": list(record.captions), "frames": npy_bytes(frames)})
                num_videos += 1
                num_captions += len(record.captions)
                if len(pending) == ROW_GROUP_SIZE:
                    writer.write_table(_rows_table(pending))
                    pending = []
            if pending or num_videos == 0:
                writer.write_table(_rows_table(pending))
    return num_videos, num_captions, skipped


def num_shards(num_videos: int, shard_size: int) -> int:
    return max(1, math.ceil(num_videos / shard_size))


def write_split_shards(records: Sequence[VideoRecord], output_dir: str | os.PathLike, split: str, video_processor,
                       options: FrameOptions, shard_size: int = 64, rank: int = 0, world_size: int = 1,
                       strict: bool = False) -> list[int]:
    """Writes this process's shards of a split (shards `rank, rank + world_size, ...`), skipping those already done.

    A shard is done when its receipt exists; a receipt written with other frame options or for other videos is an
    error (the folder belongs to another preparation, or the source changed). Returns the indices of the shards
    written by this call.
    """
    if shard_size < 1:
        raise PreparedShardsError(f"shard_size must be >= 1, got {shard_size}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stored = frame_options_record(options, video_processor)
    written = []
    for index in range(rank, num_shards(len(records), shard_size), world_size):
        name = shard_name(split, index)
        receipt_path = output_dir / f"{name}.json"
        chunk = records[index * shard_size : (index + 1) * shard_size]
        video_ids = [record.video_id for record in chunk]
        if receipt_path.exists():
            receipt = read_receipt(receipt_path, split, index)
            _check_same_options(receipt["options"], stored, receipt_path)
            if receipt["video_ids"] != video_ids:
                raise PreparedShardsError(f"{receipt_path}: prepared for other videos (the source or --shard_size "
                                          "changed); use another output folder")
            logger.info("%s: done already", name)
            continue
        for stale in output_dir.glob(f"{TMP_PREFIX}*-{name}.parquet"):  # left by a killed run writing this shard
            stale.unlink()
        num_videos, num_captions, skipped = write_shard(output_dir / f"{name}.parquet", chunk, video_processor,
                                                        options, strict=strict)
        write_json(receipt_path, asdict(ShardReceipt(split, index, num_videos, num_captions, skipped, stored,
                                                     video_ids)))
        logger.info("%s: %d videos, %d captions, %d skipped", name, num_videos, num_captions, len(skipped))
        written.append(index)
    return written


def read_receipt(path: Path, split: str, index: int) -> dict[str, Any]:
    """The receipt of shard `index` of `split`, checked: a garbled or foreign file is a `PreparedShardsError` naming it
    (delete it and its shard, then rerun, to write that shard again)."""
    try:
        receipt = json.loads(path.read_text())
        valid = (isinstance(receipt, dict) and receipt.get("split") == split and receipt.get("index") == index
                 and isinstance(receipt.get("options"), dict) and isinstance(receipt.get("video_ids"), list)
                 and isinstance(receipt.get("skipped"), list)
                 and all(isinstance(receipt.get(key), int) for key in ("num_videos", "num_captions")))
    except (OSError, ValueError) as error:
        valid, receipt = False, error
    if not valid:
        raise PreparedShardsError(f"{path}: not the receipt of shard {index} of split {split!r} ({receipt!r:.200}); "
                                  "delete it and its .parquet shard and rerun prepare_shards.py")
    return receipt


def _check_same_options(found: dict[str, Any], expected: dict[str, Any], where: Any) -> None:
    differences = {key: (found.get(key), expected.get(key)) for key in expected
                   if key != "fingerprint" and found.get(key) != expected.get(key)}
    if differences:
        described = ", ".join(f"{key}: {old!r} there, {new!r} asked" for key, (old, new) in sorted(differences.items()))
        raise PreparedShardsError(f"{where}: prepared with other frame options ({described}); "
                                  "use another output folder or the same options")


def finish_split(output_dir: str | os.PathLike, split: str, num_videos: int, shard_size: int, video_processor,
                 options: FrameOptions, source: str = "", skipped_before: Sequence[dict[str, str]] = ()
                 ) -> dict[str, Any] | None:
    """Records a split in `prepared.json` once all its shards are done (else returns None and changes nothing).

    `skipped_before` lists the videos the source's validation dropped before any decoding (missing files, empty
    captions), as `{"video_id", "video", "reason"}`. Writes `{split}-report.json` (every skipped video and why) and updates `prepared.json` under a file lock, so runs for
    other splits into the same folder may finish at the same time. Returns the split's entry.
    """
    from filelock import FileLock

    output_dir = Path(output_dir)
    count = num_shards(num_videos, shard_size)
    receipts = []
    for index in range(count):
        path = output_dir / f"{shard_name(split, index)}.json"
        if not path.exists():
            return None
        receipts.append(read_receipt(path, split, index))
    stored = frame_options_record(options, video_processor)
    skipped = [*skipped_before, *(item for receipt in receipts for item in receipt["skipped"])]
    entry = {
        "num_videos": sum(receipt["num_videos"] for receipt in receipts),
        "num_captions": sum(receipt["num_captions"] for receipt in receipts),
        "num_skipped": len(skipped),
        "num_source_videos": num_videos + len(skipped_before),
        "shard_size": shard_size,
        "shards": [f"{shard_name(split, r['index'])}.parquet" for r in receipts if r["num_videos"] > 0],
        "report": f"{split}-report.json",
    }
    write_json(output_dir / entry["report"], {"split": split, "num_skipped": len(skipped), "skipped": skipped})
    with FileLock(str(output_dir / ".prepared.lock")):
        info_path = output_dir / PREPARED_FILE
        info = json.loads(info_path.read_text()) if info_path.exists() else {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "frame_options": stored, "source": source, "splits": {}}
        _check_same_options(info["frame_options"], stored, info_path)
        info["splits"][split] = entry
        write_json(info_path, info)
    if skipped:
        logger.warning("%s: %d of %d videos skipped (listed in %s)", split, len(skipped), num_videos,
                       output_dir / entry["report"])
    return entry


# ----------------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------------


def is_prepared_dir(path: str | os.PathLike) -> bool:
    """True when `path` is a complete prepared folder (it holds `prepared.json` of this format)."""
    info_path = Path(path) / PREPARED_FILE
    if not info_path.is_file():
        return False
    try:
        return json.loads(info_path.read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError):
        return False


def read_prepared_info(path: str | os.PathLike) -> dict[str, Any]:
    """`prepared.json` of a prepared folder: `frame_options` (with `fingerprint`), `source`, `splits`."""
    if not is_prepared_dir(path):
        raise PreparedShardsError(f"{path}: not a complete prepared folder (no {PREPARED_FILE}; run prepare_shards.py "
                                  "again to finish it)")
    return json.loads((Path(path) / PREPARED_FILE).read_text())


def check_frame_options(path: str | os.PathLike, num_frames: int, image_size: int, frame_sampling: str,
                        feature_framerate: int) -> None:
    """Raises `PreparedShardsError` when the folder's frames are not what a model with these options would get."""
    stored = read_prepared_info(path)["frame_options"]
    asked = dict(num_frames=num_frames, image_size=image_size, frame_sampling=frame_sampling,
                 feature_framerate=feature_framerate)
    _check_same_options(stored, asked, Path(path) / PREPARED_FILE)


def _frames_of(data: bytes, video_id: Any) -> np.ndarray:
    """`npy_array(data)`; corrupt bytes are a `VideoDecodeError` naming the video (skipped and counted like an
    undecodable video file)."""
    from processing_clip2video import VideoDecodeError

    try:
        return npy_array(data)
    except PreparedShardsError as error:
        raise VideoDecodeError(f"{video_id if video_id is not None else '<prepared row>'}: {error}") from None


def decode_frames(batch: dict[str, list]) -> dict[str, list]:
    """Batch transform: `frames` `.npy` bytes -> uint8 arrays `(num_frames, height, width, 3)` (read-only views, no
    copy); other columns pass through, and a batch without `frames` (after `select_columns`) is left as it is."""
    if "frames" in batch:
        ids = batch.get("video_id") or [None] * len(batch["frames"])
        batch = {**batch, "frames": [_frames_of(data, video_id) for data, video_id in zip(batch["frames"], ids)]}
    return batch


def _decode_example(example: dict[str, Any]) -> dict[str, Any]:
    """A streamed row's frames as an array; corrupt bytes give the `VideoDecodeError` itself as the value (raised by
    `data_clip2video.decode_video`, so a streamed training run skips and counts the row instead of stopping)."""
    from processing_clip2video import VideoDecodeError

    try:
        frames = npy_array(example["frames"])
    except PreparedShardsError as error:
        frames = VideoDecodeError(str(error))
    return {**example, "frames": frames}


def _file_in_folder(folder: Path, name: Any, suffix: str) -> Path:
    """`folder / name` for a plain file name read from `prepared.json` (never a path out of the folder)."""
    if not isinstance(name, str) or Path(name).name != name or name.startswith(".") or not name.endswith(suffix):
        raise PreparedShardsError(f"{folder / PREPARED_FILE}: {name!r} is not a {suffix} file name of this folder")
    return folder / name


def _check_shard(path: Path) -> None:
    """Reads a shard's Parquet footer: a truncated or garbled file is a `PreparedShardsError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise PreparedShardsError(f"{path}: not a readable Parquet shard ({error}); prepare it again (delete it and "
                                  "its .json receipt, then rerun prepare_shards.py)") from None
    if not {"video_id", "caption", "frames"} <= set(schema.names):
        raise PreparedShardsError(f"{path}: not a prepared shard (columns {schema.names})")


def load_prepared(path: str | os.PathLike, split: str, streaming: bool = False, cache_dir: str | None = None):
    """A prepared split as a `datasets` dataset with columns `video_id` (str), `caption` (list of str) and `frames`
    (uint8 array `(num_frames, height, width, 3)`, the frames the processor chose, at the model's input size).

    With `streaming=False` a `datasets.Dataset` (the shards are converted once into the `datasets` cache, like any
    Parquet source) whose rows decode `frames` on access; with `streaming=True` an `IterableDataset` with one shard
    per file (for `split_dataset_by_node` and DataLoader workers) that resumes from its `state_dict()`.
    """
    import datasets

    info = read_prepared_info(path)
    if split not in info["splits"]:
        raise PreparedShardsError(f"{path}: split {split!r} was not prepared (prepared: {sorted(info['splits'])})")
    folder = Path(path)
    shards = [_file_in_folder(folder, name, ".parquet") for name in info["splits"][split]["shards"]]
    if not shards:
        raise PreparedShardsError(f"{path}: split {split!r} has no decodable video "
                                  f"(see {_file_in_folder(folder, info['splits'][split]['report'], '.json')})")
    for shard in shards:
        _check_shard(shard)
    try:
        dataset = datasets.load_dataset("parquet", data_files={split: [str(shard) for shard in shards]}, split=split,
                                        streaming=streaming, cache_dir=cache_dir)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as error:  # pyarrow's errors among them
        raise PreparedShardsError(f"{path}: the shards of split {split!r} cannot be read ({error}); prepare the "
                                  "folder again") from None
    if streaming:
        return dataset.map(_decode_example)
    return dataset.with_transform(decode_frames)


__all__ = [
    "DETERMINISTIC_SAMPLING",
    "FrameOptions",
    "PreparedShardsError",
    "VideoRecord",
    "check_frame_options",
    "decode_frames",
    "finish_split",
    "frame_options_record",
    "is_prepared_dir",
    "load_prepared",
    "model_input_frames",
    "read_prepared_info",
    "write_split_shards",
]
