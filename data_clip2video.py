# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The one data path of CLIP2Video: a source of videos and captions -> decoded frames -> batches -> features.

Training, evaluation, feature export (`run_retrieval.py`), prepared frame shards and search indexing
(`search_videos.py`) all read videos through this module, so a new source or format is added once.

Sources and their columns are `data_sources`'s; caption values and the caption table of a split `caption_table`'s.

Decoding (`decode_video`) is the video processor's `load_frames` (its frame choice); the CLIP transform
runs once per batch (`VideoBatcher`, the processor's `transform_frames`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

try:
    from .caption_table import stream_clips, video_reference
    from .data_sources import Columns, default_feature_framerate
except ImportError:
    from caption_table import stream_clips, video_reference
    from data_sources import Columns, default_feature_framerate

try:
    from .processing_clip2video import CLIP2VideoVideoProcessor, VideoDecodeError, VideoProcessorOptionError
    from .retrieval_metrics import check_finite
except ImportError:
    from processing_clip2video import CLIP2VideoVideoProcessor, VideoDecodeError, VideoProcessorOptionError
    from retrieval_metrics import check_finite


logger = logging.getLogger(__name__)


@dataclass
class VideoArguments:
    """The video processor options the scripts take (`run_retrieval.py`, `prepare_shards.py`, parsed with
    `HfArgumentParser`): unset ones keep the model's video processor's values, and the processor checks them. A
    new frame option is one more field here (and the processor's attribute)."""

    frame_sampling: Optional[str] = field(default=None, metadata={"help": (
        "'original' (5 fps images, every feature_framerate-th, uniform pick), 'uniform' or 'random_segment' "
        "(default: the model's video processor's, 'original').")})
    feature_framerate: Optional[int] = field(default=None, metadata={"help": (
        "The original's feature_framerate; default per benchmark (MSR-VTT 2, MSVD/VATEX/synthetic/own data 1).")})
    video_backend: Optional[str] = field(default=None, metadata={"help": (
        "'decord' (falls back to PyAV) or 'pyav' (default: the model's video processor's, 'decord').")})

    def __post_init__(self):
        try:  # the processor's own check, at parse time
            CLIP2VideoVideoProcessor(**self.video_processor_kwargs(None))
        except VideoProcessorOptionError as error:
            raise ValueError(f"--{error}") from None

    def video_processor_kwargs(self, benchmark: Optional[str]) -> dict[str, Any]:
        """The options given, for `CLIP2VideoVideoProcessor.for_model`, with the data's `feature_framerate` default
        (`default_feature_framerate` of the benchmark name, None for own data)."""
        given = {option.name: getattr(self, option.name) for option in dataclasses.fields(VideoArguments)}
        given = {name: value for name, value in given.items() if value is not None}
        return {"feature_framerate": default_feature_framerate(benchmark), **given}


# ----------------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------------


def as_prepared_frames(value: Any) -> Optional[list[np.ndarray]]:
    """Frames already chosen (and sized) for the model, e.g. a prepared shard's `frames` `(T, H, W, 3)` uint8, as a
    list of `(H, W, 3)` arrays; None when `value` is not in-memory frames."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if isinstance(value, list) and value and not isinstance(value[0], np.ndarray):
        value = np.asarray(value, dtype=np.uint8)
    if isinstance(value, np.ndarray):
        if value.ndim != 4 or value.shape[-1] != 3 or value.dtype != np.uint8 or len(value) == 0:
            raise VideoDecodeError(f"<frames>: expected (T, H, W, 3) uint8 frames, got {value.dtype} {value.shape}")
        return list(value)
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return [np.asarray(frame) for frame in value]
    return None


def decode_video(value: Any, video_processor, base_dir: Optional[str] = None,
                 rng: Optional[np.random.Generator] = None, span: Optional[tuple[float, float]] = None
                 ) -> list[np.ndarray]:
    """The frames the processor chooses from one video (or from its span), before the CLIP transform.

    Args:
        value: a path (file or frame folder; relative to `base_dir`), bytes, a `datasets.Video` value, or
            already-chosen frames (`(T, H, W, 3)` uint8, returned as they are: no decoder, no re-sampling).
        video_processor: the run's `CLIP2VideoVideoProcessor` (its frame options); its `load_frames` decodes and
            picks the frames.
        base_dir: folder that relative paths are resolved against.
        rng: generator of random frame choices (`random_segment`, jitter).
        span: the clip `[start, end)` in seconds to choose the frames in (None: the whole video); already-chosen
            frames are the clip's already.

    Returns:
        `n` frames (`1 <= n <= num_frames`), each an `(H, W, 3)` uint8 array.

    Raises:
        VideoDecodeError: naming the video and the reason (missing, empty, undecodable, too short).
    """
    reference = video_reference(value, base_dir)
    if isinstance(reference, VideoDecodeError):
        raise reference
    prepared = as_prepared_frames(reference)
    if prepared is not None:
        return prepared
    if reference is None:
        raise VideoDecodeError("<none>: the row has no video")
    if isinstance(reference, str) and "://" not in reference and not os.path.exists(reference):
        raise VideoDecodeError(f"{reference}: no such file or folder")
    return [np.asarray(frame) for frame in video_processor.load_frames(reference, rng=rng, span=span)]


# ----------------------------------------------------------------------------------------------------------------------
# Decoded frames, datasets and batches
# ----------------------------------------------------------------------------------------------------------------------


class VideoFrameStore:
    """Decoded frames of every video of a split, by video index: `load(v)` -> list of uint8 `(H, W, 3)` frames.

    `videos[v]` is anything `decode_video` reads, `spans[v]` (optional) the clip `(start, end)` seconds of it that
    is video `v` (None: the whole video). Decoding and frame selection are the video processor's (`load_frames`,
    its frame options); the CLIP transform happens per batch (`VideoBatcher`), on all frames of the batch at once.
    With `cache=True` each video is decoded once per run. A video that cannot be decoded raises `VideoDecodeError`
    (the failure is cached too).
    """

    def __init__(self, videos: Sequence[Any], video_processor, cache: bool = False,
                 names: Optional[Sequence[str]] = None, spans: Optional[Sequence[Any]] = None):
        self.videos, self.video_processor, self.cache = videos, video_processor, cache
        self.names = names  # video ids, to name in-memory videos (bytes) in errors
        self.spans = spans
        self._frames: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.videos)

    def load(self, video_index: int) -> list:
        if video_index in self._frames:
            frames = self._frames[video_index]
            if isinstance(frames, VideoDecodeError):
                raise frames
            return frames
        try:
            value = self.videos[video_index]
            if value is None or (isinstance(value, str) and not value):
                raise VideoDecodeError(f"video {video_index}: no file (missing from video_dir)")
            span = self.spans[video_index] if self.spans else None
            try:
                frames = decode_video(value, self.video_processor, span=span)
            except VideoDecodeError as error:
                if self.names is not None and not isinstance(value, str):
                    raise VideoDecodeError(f"{self.names[video_index]}: {error}") from None
                raise
        except VideoDecodeError as error:
            if self.cache:
                self._frames[video_index] = error
            raise
        if self.cache:
            self._frames[video_index] = frames
        return frames

    def preload(self, indices: Sequence[int], disable_progress: bool = False) -> list[str]:
        """Decode `indices` into the cache; returns the names of the videos that failed (first time only)."""
        from tqdm.auto import tqdm

        failures = []
        indices = [index for index in indices if index not in self._frames]
        for index in tqdm(indices, desc="decoding videos", disable=disable_progress, leave=False):
            try:
                self.load(index)
            except VideoDecodeError as error:
                failures.append(str(error))
        return failures


class CaptionVideoDataset(torch.utils.data.Dataset):
    """Row `i` of a split: caption tokens and its video's frames (or the decode error, for the collator to count)."""

    def __init__(self, tokens: dict[str, torch.Tensor], video_of_row: Sequence[int], store: VideoFrameStore):
        self.tokens, self.video_of_row, self.store = tokens, list(video_of_row), store

    def __len__(self) -> int:
        return len(self.video_of_row)

    def __getitem__(self, row: int) -> dict[str, Any]:
        video = self.video_of_row[row]
        item = {"row": row, "input_ids": self.tokens["input_ids"][row], "attention_mask": self.tokens["attention_mask"][row]}
        try:
            item["frames"] = self.store.load(video)
        except VideoDecodeError as error:
            item["error"] = str(error)
        return item


class VideoDataset(torch.utils.data.Dataset):
    """Video `v` of a split (evaluation, export, indexing: every video once)."""

    def __init__(self, store: VideoFrameStore, indices: Sequence[int]):
        self.store, self.indices = store, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = {"video": self.indices[position]}
        try:
            item["frames"] = self.store.load(self.indices[position])
        except VideoDecodeError as error:
            item["error"] = str(error)
        return item


class VideoBatcher:
    """The collators of training and evaluation batches (picklable, for DataLoader workers), on the run's video
    processor: frames are collated by its `collate`, kept uint8 when already at the model's size (prepared shards,
    videos decoded at it: a quarter of the bytes to move, no float pass in the workers), and `to_device` moves a
    batch to the model's device, where the processor's `normalize` finishes such frames to the values of its CPU
    transform."""

    def __init__(self, video_processor):
        self.video_processor = video_processor

    def to_device(self, batch: dict[str, Any], device) -> dict[str, Any]:
        """Every tensor of a collated batch moved to `device`; uint8 `pixel_values` normalised there into the
        model's float32 `(batch, num_frames, 3, H, W)`."""
        moved = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
        if "pixel_values" in moved and moved["pixel_values"].dtype == torch.uint8:
            moved["pixel_values"] = self.video_processor.normalize(moved["pixel_values"], moved["video_mask"])
        return moved

    def collate_pairs(self, items: list[dict]) -> dict[str, Any]:
        """Training batch; rows whose video failed are dropped and named in `skipped`."""
        good = [item for item in items if "frames" in item]
        batch = {"skipped": [item["error"] for item in items if "error" in item], "rows": [item["row"] for item in good]}
        if good:
            batch["input_ids"] = torch.stack([item["input_ids"] for item in good])
            batch["attention_mask"] = torch.stack([item["attention_mask"] for item in good])
            batch["pixel_values"], batch["video_mask"] = self.video_processor.collate(
                [item["frames"] for item in good], keep_uint8=True)
        return batch

    def collate_videos(self, items: list[dict]) -> dict[str, Any]:
        """Batch of videos; a failed video gets one blank frame and `valid=False` (dropped later)."""
        blank = None
        valid = []
        for item in items:
            if "frames" in item:
                blank = item["frames"][:1]
            valid.append("frames" in item)
        if not any(valid):
            size = self.video_processor.crop_size
            blank = [np.zeros((size.height, size.width, 3), dtype=np.uint8)]
        videos = [item.get("frames", [np.zeros_like(blank[0])]) for item in items]
        pixel_values, video_mask = self.video_processor.collate(videos, keep_uint8=True)
        return {"video": torch.tensor([item["video"] for item in items]), "valid": torch.tensor(valid),
                "pixel_values": pixel_values, "video_mask": video_mask,
                "skipped": [item["error"] for item in items if "error" in item]}


class StreamCollator:
    """Training batches straight from streamed source rows (runs in DataLoader workers): each row's video is decoded
    and one of its captions is drawn (seeded by `seed`, the epoch and the video id, so a resumed run draws the same);
    rows whose video fails are dropped and named in `skipped`.

    Resuming mid-epoch: the first `skip_batches` batches of the epoch's stream come back as `{"skipped_for_resume":
    True}` without decoding. Batches reach the loader from its workers in turn (worker `w`'s `j`-th batch is at most
    the stream's batch `w + j * num_workers`, fewer when a worker has run dry), so a worker returns its `j`-th batch
    undecoded only when `w + j * num_workers < skip_batches`: never a batch the run still needs.
    """

    def __init__(self, batcher: VideoBatcher, tokenizer_fn, columns: Columns, base_dir: Optional[str], seed: int):
        self.batcher, self.tokenizer_fn, self.columns, self.base_dir, self.seed = (
            batcher, tokenizer_fn, columns, base_dir, seed)
        self.epoch = 0  # set before each pass: the caption drawn for a video changes from epoch to epoch
        self.skip_batches = 0
        self._calls = 0  # batches collated by this copy (one copy per worker, fresh each pass)

    def start_pass(self, epoch: int, skip_batches: int = 0) -> None:
        """Before each pass over the stream (the loader's workers copy the collator as it is then)."""
        self.epoch, self.skip_batches, self._calls = epoch, skip_batches, 0

    def _needed(self) -> bool:
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        position = worker + self._calls * num_workers
        self._calls += 1
        return position >= self.skip_batches

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        if not self._needed():
            return {"skipped_for_resume": True, "skipped": [], "rows": []}
        frames, captions, skipped, ids = [], [], [], []
        for row in rows:
            try:  # the caption table's ids and spans (a webdataset key with its shard, a clip's span in its id)
                reference, clips = stream_clips(row, self.columns, self.base_dir)
            except ValueError as error:
                skipped.append(str(error))
                continue
            if not clips:
                skipped.append(f"{reference}: no clip")
                continue
            # one clip of the row (a row of timestamped captions may have several), then one of its captions,
            # drawn from (seed, epoch, id): a resumed run draws the same
            pick = np.random.default_rng([self.seed, self.epoch, zlib.crc32(clips[0][0].encode())])
            video_id, kept, span = clips[int(pick.integers(len(clips)))] if len(clips) > 1 else clips[0]
            kept = [caption for caption in kept if caption]
            if not kept:
                skipped.append(f"{video_id}: empty caption")
                continue
            try:
                frames.append(decode_video(reference, self.batcher.video_processor, span=span))
            except VideoDecodeError as error:
                skipped.append(str(error) if isinstance(reference, str) else f"{video_id}: {error}")
                continue
            rng = np.random.default_rng([self.seed, self.epoch, zlib.crc32(video_id.encode())])
            captions.append(kept[int(rng.integers(len(kept)))])
            ids.append(video_id)
        batch: dict[str, Any] = {"skipped": skipped, "rows": ids}
        if frames:
            tokens = self.tokenizer_fn(captions)
            batch["input_ids"], batch["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
            batch["pixel_values"], batch["video_mask"] = self.batcher.video_processor.collate(frames, keep_uint8=True)
        return batch


# ----------------------------------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------------------------------


def encode_videos(model, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """Retrieval vectors `(batch, retrieval_embed_dim)` float32 of `pixel_values` `(batch, frames, 3, H, W)` (the
    `pooler_output` of `get_video_features`); `NonFiniteScoresError` if any is NaN or infinite."""
    features = model.get_video_features(pixel_values, video_mask).pooler_output.float()
    check_finite(features, "video features")
    return features


def encode_texts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Retrieval vectors `(batch, retrieval_embed_dim)` float32 of tokenised captions (`get_text_features`);
    `NonFiniteScoresError` if any is NaN or infinite."""
    features = model.get_text_features(input_ids, attention_mask).pooler_output.float()
    check_finite(features, "text features")
    return features


__all__ = [
    "CaptionVideoDataset",
    "StreamCollator",
    "VideoArguments",
    "VideoBatcher",
    "VideoDataset",
    "VideoFrameStore",
    "as_prepared_frames",
    "decode_video",
    "encode_texts",
    "encode_videos",
]
