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

import contextlib
import errno
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils_clip2video import TMP_PREFIX, atomic_write, write_json


logger = logging.getLogger(__name__)

PREPARED_FILE = "prepared.json"
#: Written first into a folder this module prepares: a folder without it (and without `prepared.json`) is the user's.
MARKER_FILE = ".clip2video-prepared"
#: Held by the run writing into a folder (a second run into it is refused, never mixed with the first).
LOCK_FILE = ".prepare.lock"
FORMAT_NAME = "clip2video-frame-shards"
FORMAT_VERSION = 2
#: Rows per Parquet row group: about 30 MB at 12 frames of 224 px, so a streamed shard is read a few rows at a time.
ROW_GROUP_SIZE = 16
#: Frame sampling modes that choose the same frames every time (a prepared folder holds one choice of frames).
DETERMINISTIC_SAMPLING = ("original", "uniform")
#: The prepare_shards.py option that sets a stored frame option (others come from the model's video processor).
PREPARE_OPTIONS = {"num_frames": "--num_frames", "image_size": "--image_size", "frame_sampling": "--frame_sampling",
                   "feature_framerate": "--feature_framerate"}


class PreparedShardsError(ValueError):
    """A prepared folder that cannot be used as asked: incomplete, another split or other frame options."""


@dataclass(frozen=True)
class VideoRecord:
    """One clip of a split to prepare: its id, what the processor decodes (path, bytes, frame folder), its captions
    and its span (`(start, end)` seconds of the video; None: the whole video)."""

    video_id: str
    video: Any
    captions: tuple[str, ...]
    span: tuple[float, float] | None = None

    def digest(self) -> str:
        """What the shard's content depends on besides the frame options: the id, captions, span and the video
        (a file by its path, size and modification time; bytes and arrays by their content)."""
        video = self.video
        if isinstance(video, (str, os.PathLike)):
            try:
                stat = os.stat(video)
                video = [os.fspath(video), stat.st_size, stat.st_mtime_ns]
            except OSError:
                video = [os.fspath(video), None]
        elif isinstance(video, (bytes, bytearray, memoryview)):
            video = hashlib.sha256(bytes(video)).hexdigest()
        elif isinstance(video, np.ndarray):
            video = hashlib.sha256(np.ascontiguousarray(video).tobytes()).hexdigest()
        else:
            video = repr(video)
        content = json.dumps([self.video_id, list(self.captions), self.span, video], default=str)
        return hashlib.sha256(content.encode()).hexdigest()[:16]


def frame_options_record(video_processor) -> dict[str, Any]:
    """The options stored in a prepared folder: the video processor's `frame_options()` (what fixes the stored
    frames) and their fingerprint.

    Raises:
        `PreparedShardsError` for a frame choice that changes at every read (random sampling, jitter).
    """
    record = video_processor.frame_options()
    if record.get("frame_sampling") not in DETERMINISTIC_SAMPLING or record.get("jitter"):
        raise PreparedShardsError(
            f"frame_sampling={record.get('frame_sampling')!r} (jitter={record.get('jitter')}) draws new frames at every "
            f"read; prepared shards hold one fixed choice of frames: pass --frame_sampling, one of "
            f"{DETERMINISTIC_SAMPLING}")
    record["fingerprint"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    return record


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def model_input_frames(video_processor, video, span: tuple[float, float] | None = None) -> np.ndarray:
    """The frames the processor chooses for `video` (or its `span`), resized and cropped by its transform, before float
    scaling (the processor's `to_model_size`).

    Returns:
        `(n, image_size, image_size, 3)` uint8, `1 <= n <= num_frames`: exactly the integers the processor's
        transform normalises, so `transform_frames` of these gives the same `pixel_values` as the video itself.

    Raises:
        `VideoDecodeError` naming the video and the reason.
    """
    return video_processor.to_model_size(video_processor.load_frames(video, span=span))


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turns an `OSError` while writing `path` (disk full, permissions) into a `PreparedShardsError` naming it."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        hint = " (disk full: free space, then rerun to finish)" if error.errno == errno.ENOSPC else ""
        raise PreparedShardsError(f"{path}: cannot write it: {reason}{hint}") from None


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


def _shard_schema(with_spans: bool = False):
    import pyarrow as pa

    columns = [("video_id", pa.string()), ("caption", pa.list_(pa.string())), ("frames", pa.binary())]
    return pa.schema(columns + ([("start", pa.float64()), ("end", pa.float64())] if with_spans else []))


def _rows_table(rows: list[dict[str, Any]], with_spans: bool):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=_shard_schema(with_spans))


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
    #: `VideoRecord.digest` of each: a rerun after captions were edited or a video replaced writes the shard again
    digests: list[str] = field(default_factory=list)


def write_shard(path: Path, records: Sequence[VideoRecord], video_processor, strict: bool = False,
                with_spans: bool = False, progress=None) -> tuple[int, int, list[dict[str, str]]]:
    """Decodes `records` (each its span, when it has one) and writes their frames to the Parquet file `path`
    (atomically, row group by row group; with `with_spans` each row also has its `start` and `end` seconds).

    Returns:
        `(videos written, captions written, skipped)`, `skipped` a list of `{"video_id", "video", "reason"}`.

    Raises:
        `VideoDecodeError` with `strict=True` at the first video that cannot be used; `PreparedShardsError` naming
        `path` when it cannot be written (disk full).
    """
    import pyarrow.parquet as pq

    from processing_clip2video import VideoDecodeError

    skipped, pending = [], []
    num_videos = num_captions = 0
    with writing(path), atomic_write(path) as handle:
        with pq.ParquetWriter(handle, _shard_schema(with_spans), compression="zstd", use_dictionary=False) as writer:
            for record in records:
                if progress is not None:
                    progress.update(1)
                try:
                    if not record.captions or not all(isinstance(c, str) and c.strip() for c in record.captions):
                        raise VideoDecodeError(f"{record.video_id}: no caption (or an empty one)")
                    frames = model_input_frames(video_processor, record.video, record.span)
                except VideoDecodeError as error:
                    if strict:
                        raise
                    logger.warning("skipping %s: %s", record.video_id, error)
                    video = record.video if isinstance(record.video, str) else record.video_id  # a path, else its id
                    skipped.append({"video_id": record.video_id, "video": video, "reason": str(error)})
                    continue
                row = {"video_id": record.video_id, "caption": list(record.captions), "frames": npy_bytes(frames)}
                if with_spans:
                    row["start"], row["end"] = record.span if record.span is not None else (None, None)
                pending.append(row)
                num_videos += 1
                num_captions += len(record.captions)
                if len(pending) == ROW_GROUP_SIZE:
                    writer.write_table(_rows_table(pending, with_spans))
                    pending = []
            if pending or num_videos == 0:
                writer.write_table(_rows_table(pending, with_spans))
    return num_videos, num_captions, skipped


def num_shards(num_videos: int, shard_size: int) -> int:
    return max(1, math.ceil(num_videos / shard_size))


def write_split_shards(records: Sequence[VideoRecord], output_dir: str | os.PathLike, split: str, video_processor,
                       shard_size: int = 64, rank: int = 0, world_size: int = 1, strict: bool = False,
                       show_progress: bool = False) -> list[int]:
    """Writes this process's shards of a split (shards `rank, rank + world_size, ...`), skipping those already done.

    A shard is done when its receipt exists and its videos, captions and files are the ones the source has now; a
    shard whose captions were edited or whose video was replaced since is written again. A receipt written with other
    frame options or for other videos is an error (the folder belongs to another preparation, or the source's videos
    changed). `show_progress`: a progress bar (with the time left) over this process's videos. Returns the indices of
    the shards written by this call.
    """
    from tqdm.auto import tqdm

    if shard_size < 1:
        raise PreparedShardsError(f"shard_size must be >= 1, got {shard_size}")
    output_dir = Path(output_dir)
    with writing(output_dir):
        output_dir.mkdir(parents=True, exist_ok=True)
    stored = frame_options_record(video_processor)
    with_spans = any(record.span is not None for record in records)
    mine = range(rank, num_shards(len(records), shard_size), world_size)
    total = sum(len(range(len(records))[index * shard_size : (index + 1) * shard_size]) for index in mine)
    written = []
    with tqdm(total=total, desc=f"{split}: videos", unit="video", disable=not show_progress) as progress:
        for index in mine:
            name = shard_name(split, index)
            receipt_path = output_dir / f"{name}.json"
            chunk = records[index * shard_size : (index + 1) * shard_size]
            video_ids = [record.video_id for record in chunk]
            digests = [record.digest() for record in chunk]
            if receipt_path.exists():
                receipt = read_receipt(receipt_path, split, index)
                _check_same_options(receipt["options"], stored, receipt_path)
                if receipt["video_ids"] != video_ids:
                    raise PreparedShardsError(f"{receipt_path}: prepared for other videos (the source or --shard_size "
                                              "changed); use another output folder")
                if receipt.get("digests") == digests:
                    logger.info("%s: done already", name)
                    progress.update(len(chunk))
                    continue
                changed = [video_id for video_id, old, new in zip(video_ids, receipt.get("digests") or [], digests)
                           if old != new] or video_ids
                logger.warning("%s: the source changed since it was written (captions or video files of %s): "
                               "writing it again", name, ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else ""))
                receipt_path.unlink()
            for stale in output_dir.glob(f"{TMP_PREFIX}*-{name}.parquet"):  # left by a killed run writing this shard
                stale.unlink()
            num_videos, num_captions, skipped = write_shard(output_dir / f"{name}.parquet", chunk, video_processor,
                                                            strict=strict, with_spans=with_spans, progress=progress)
            with writing(receipt_path):
                write_json(receipt_path, asdict(ShardReceipt(split, index, num_videos, num_captions, skipped, stored,
                                                             video_ids, digests)))
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
    """Raises `PreparedShardsError` naming each option that differs and, where prepare_shards.py sets it, the option
    that prepares a folder with the frames asked."""
    differences = {key: (found.get(key), expected.get(key)) for key in sorted(set(expected) | set(found))
                   if key != "fingerprint" and found.get(key) != expected.get(key)}
    if differences:
        described = ", ".join(f"{key}: {old!r} there, {new!r} asked" for key, (old, new) in differences.items())
        fixes = [f"{PREPARE_OPTIONS[key]} {new}" for key, (_, new) in differences.items() if key in PREPARE_OPTIONS]
        fix = (f"prepare_shards.py {' '.join(fixes)} (or --model_name_or_path of the model) prepares them" if fixes
               else "prepare_shards.py --model_name_or_path of the model prepares them")
        raise PreparedShardsError(f"{where}: prepared with other frame options ({described}); {fix}: use another "
                                  "output folder or the same options")


def finish_split(output_dir: str | os.PathLike, split: str, num_videos: int, shard_size: int, video_processor,
                 source: str = "", skipped_before: Sequence[dict[str, str]] = ()) -> dict[str, Any] | None:
    """Records a split in `prepared.json` once all its shards are done (else returns None and changes nothing).

    `skipped_before` lists the videos the source's validation dropped before any decoding (missing files, empty
    captions), as `{"video_id", "video", "reason"}`. Writes `{split}-report.json` (every skipped video and why) and
    updates `prepared.json` under a file lock, so runs for other splits into the same folder may finish at the same
    time. Returns the split's entry.
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
    stored = frame_options_record(video_processor)
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
    report_path = output_dir / entry["report"]
    with writing(report_path):
        write_json(report_path, {"split": split, "num_skipped": len(skipped), "skipped": skipped})
    with FileLock(str(output_dir / ".prepared.lock")):
        info_path = output_dir / PREPARED_FILE
        info = _read_info(output_dir) if info_path.exists() else {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "frame_options": stored, "source": source, "splits": {}}
        _check_same_options(info["frame_options"], stored, info_path)
        info["splits"][split] = entry
        with writing(info_path):
            write_json(info_path, info)
    if skipped:
        logger.warning("%s: %d of %d videos skipped (listed in %s)", split, len(skipped), entry["num_source_videos"],
                       output_dir / entry["report"])
    return entry


@contextlib.contextmanager
def claimed_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """The folder a preparation writes into, held for the run: created, or one this module prepared (its marker or a
    valid `prepared.json`); a folder holding the user's own files, a file, a garbled or foreign `prepared.json`, or a
    folder another run is writing into is refused before any work.

    Raises:
        `PreparedShardsError` naming the folder and the reason.
    """
    from filelock import FileLock, Timeout

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise PreparedShardsError(f"--output_dir {folder} is a file, not a folder: give a new or empty folder")
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    if (folder / PREPARED_FILE).exists():
        _read_info(folder)  # ours, readable
    elif not (folder / MARKER_FILE).exists():
        own = sorted(entry.name for entry in folder.iterdir())
        if own:
            shown = ", ".join(own[:5]) + (", ..." if len(own) > 5 else "")
            raise PreparedShardsError(f"--output_dir {folder} holds files prepare_shards.py did not write ({shown}); "
                                      "give a new or empty folder (it never writes over your files)")
    lock = FileLock(str(folder / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise PreparedShardsError(f"another prepare_shards.py run is writing into {folder} (it holds "
                                  f"{folder / LOCK_FILE}): wait for it to finish, or use another --output_dir") from None
    try:
        with writing(folder / MARKER_FILE):
            write_json(folder / MARKER_FILE, {"format": FORMAT_NAME, "version": FORMAT_VERSION})
        yield folder
    finally:
        lock.release()


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
    except (OSError, ValueError, AttributeError):
        return False


def is_unfinished_prepared_dir(path: str | os.PathLike) -> bool:
    """True for a folder a preparation started (its marker) and has not finished (no `prepared.json` yet)."""
    return (Path(path) / MARKER_FILE).is_file() and not (Path(path) / PREPARED_FILE).exists()


def _read_info(path: str | os.PathLike) -> dict[str, Any]:
    """`prepared.json` of `path`, checked: a garbled or foreign file, another format version or a malformed entry is
    a `PreparedShardsError` naming it."""
    info_path = Path(path) / PREPARED_FILE
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as error:
        raise PreparedShardsError(f"{info_path}: not a readable prepared-shards record ({error}); move it away or "
                                  "use another folder") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise PreparedShardsError(f"{info_path}: not a prepared-shards record of clip2video (format "
                                  f"{info.get('format') if isinstance(info, dict) else type(info).__name__!r}); move "
                                  "it away or use another folder")
    if info.get("version") != FORMAT_VERSION:
        raise PreparedShardsError(f"{info_path}: prepared by another version of prepare_shards.py (format version "
                                  f"{info.get('version')!r}, this one reads {FORMAT_VERSION}); prepare it again into a "
                                  "new folder")
    splits = info.get("splits")
    if not isinstance(info.get("frame_options"), dict) or not isinstance(splits, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("shards"), list) for entry in splits.values()):
        raise PreparedShardsError(f"{info_path}: malformed (frame_options must be a mapping, splits a mapping of split "
                                  "entries with their shard lists); prepare the folder again")
    return info


def read_prepared_info(path: str | os.PathLike) -> dict[str, Any]:
    """`prepared.json` of a prepared folder: `frame_options` (with `fingerprint`), `source`, `splits`."""
    if is_unfinished_prepared_dir(path):
        raise PreparedShardsError(f"{path}: unfinished prepared folder (no {PREPARED_FILE} yet): rerun "
                                  "prepare_shards.py with the same options to finish it")
    if not (Path(path) / PREPARED_FILE).is_file():
        raise PreparedShardsError(f"{path}: not a complete prepared folder (no {PREPARED_FILE}; run prepare_shards.py "
                                  "again to finish it)")
    return _read_info(path)


def check_frame_options(path: str | os.PathLike, video_processor) -> None:
    """Raises `PreparedShardsError` when the folder's frames are not what `video_processor` (the run's) would give."""
    stored = read_prepared_info(path)["frame_options"]
    _check_same_options(stored, video_processor.frame_options(), Path(path) / PREPARED_FILE)


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
    "PreparedShardsError",
    "VideoRecord",
    "check_frame_options",
    "claimed_output_dir",
    "decode_frames",
    "finish_split",
    "frame_options_record",
    "is_prepared_dir",
    "is_unfinished_prepared_dir",
    "load_prepared",
    "model_input_frames",
    "read_prepared_info",
    "write_split_shards",
]
