# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The one data path of CLIP2Video: a source of videos and captions -> decoded frames -> batches -> features.

Training, evaluation, feature export (`run_retrieval.py`), prepared frame shards and search indexing
(`search_videos.py`) all read videos through this module, so a new source or format is added once.

Sources and their columns are `data_sources`'s; caption values and the caption table of a split `caption_table`'s.

Decoding (`decode_video`) is the video processor's `load_frames` (its frame choice); the CLIP transform
runs once per batch (`VideoBatcher`, the processor's `transform_frames`).
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import Any, Optional, Sequence

import numpy as np
import torch

try:
    from .caption_table import captions_of, default_video_id, video_reference
    from .data_sources import Columns
except ImportError:
    from caption_table import captions_of, default_video_id, video_reference
    from data_sources import Columns

try:
    from .processing_clip2video import VideoDecodeError
    from .retrieval_metrics import check_finite
except ImportError:
    from processing_clip2video import VideoDecodeError
    from retrieval_metrics import check_finite


logger = logging.getLogger(__name__)

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


def decode_video(value: Any, video_processor, options: dict[str, Any], base_dir: Optional[str] = None,
                 rng: Optional[np.random.Generator] = None) -> list[np.ndarray]:
    """The frames the processor chooses from one video, before the CLIP transform.

    Args:
        value: a path (file or frame folder; relative to `base_dir`), bytes, a `datasets.Video` value, or
            already-chosen frames (`(T, H, W, 3)` uint8, returned as they are: no decoder, no re-sampling).
        video_processor: a `CLIP2VideoVideoProcessor`; its `load_frames` decodes and picks the frames.
        options: per-call options of the processor (`num_frames`, `frame_sampling`, `feature_framerate`, ...);
            empty: the processor's own settings.
        base_dir: folder that relative paths are resolved against.
        rng: generator of random frame choices (`random_segment`, jitter).

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
    return [np.asarray(frame) for frame in video_processor.load_frames(reference, rng=rng, **options)]

# ----------------------------------------------------------------------------------------------------------------------
# Decoded frames, datasets and batches
# ----------------------------------------------------------------------------------------------------------------------


class VideoFrameStore:
    """Decoded frames of every video of a split, by video index: `load(v)` -> list of uint8 `(H, W, 3)` frames.

    `videos[v]` is anything `decode_video` reads. Decoding and frame selection are the processor's
    (`load_frames`); the CLIP transform happens per batch (`VideoBatcher`), on all frames of the batch at once.
    With `cache=True` each video is decoded once per run. A video that cannot be decoded raises
    `VideoDecodeError` (the failure is cached too).
    """

    def __init__(self, videos: Sequence[Any], video_processor, options: dict[str, Any], cache: bool = False,
                 names: Optional[Sequence[str]] = None):
        self.videos, self.video_processor, self.options, self.cache = videos, video_processor, options, cache
        self.names = names  # video ids, to name in-memory videos (bytes) in errors
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
            try:
                frames = decode_video(value, self.video_processor, self.options)
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
    """Turns lists of decoded frames into `pixel_values` `(batch, num_frames, 3, H, W)` and `video_mask`, with one call
    of the processor's transform for all frames of the batch. Picklable, so it works in DataLoader workers.

    The collators (`collate_pairs`, `collate_videos`, `StreamCollator`) keep frames that the transform would leave at
    their size (prepared shards, videos decoded at the model's size) as uint8 `(batch, num_frames, H, W, 3)`: a quarter
    of the bytes to move and no float pass in the workers. `to_device` moves a batch to the model's device and
    normalises such frames there, with the processor's float32 operations in its order, so the values are exactly
    those of the CPU transform.
    """

    def __init__(self, video_processor, options: dict[str, Any], num_frames: int):
        self.video_processor, self.options, self.num_frames = video_processor, options, num_frames

    def _resolved(self) -> dict[str, Any]:
        """The processor's transform options for `self.options` (sizes as `SizeDict`s, mean/std, rescale)."""
        processor = self.video_processor
        return processor._standardize_kwargs(**processor._with_defaults(self.options))

    def _at_model_size(self, videos: list[list]) -> bool:
        """True when every frame is a uint8 `(H, W, 3)` array of one size that the resize and the crop keep."""
        first = videos[0][0] if videos and len(videos[0]) else None
        if not isinstance(first, np.ndarray) or first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
            return False
        if any(not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != first.shape
               for frames in videos for frame in frames):
            return False
        options, (height, width) = self._resolved(), first.shape[:2]
        if options["do_resize"] and min(height, width) != options["size"].shortest_edge:
            return False
        crop = options["crop_size"]
        return not options["do_center_crop"] or (crop.height, crop.width) == (height, width)

    def collate_frames(self, videos: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
        """`pixel_values` and `video_mask` of a batch: uint8 `(batch, num_frames, H, W, 3)` when the frames are already
        at the model's size (normalised later by `to_device`), else the float32 `(batch, num_frames, 3, H, W)` of
        `__call__`. Padding frames are zero, `video_mask` `(batch, num_frames)` is 1 for real frames."""
        if not self._at_model_size(videos):
            return self(videos)
        height, width, _ = videos[0][0].shape
        batch = torch.zeros(len(videos), self.num_frames, height, width, 3, dtype=torch.uint8)
        mask = torch.zeros(len(videos), self.num_frames, dtype=torch.long)
        for position, frames in enumerate(videos):
            batch[position, : len(frames)] = torch.from_numpy(np.stack(frames))
            mask[position, : len(frames)] = 1
        return batch, mask

    def normalise(self, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """uint8 `(batch, num_frames, H, W, 3)` -> float32 `(batch, num_frames, 3, H, W)` where the tensors are: the
        processor's rescale and normalisation (the same float32 operations in the same order, so the same values
        as its CPU transform), padding frames (`video_mask` 0) exactly zero as `__call__` gives them."""
        options = self._resolved()
        device = pixel_values.device
        values = pixel_values.permute(0, 1, 4, 2, 3).to(torch.float32)
        if options["do_rescale"]:
            values = values / torch.tensor(np.float32(1.0 / options["rescale_factor"]), device=device)
        if options["do_normalize"]:
            mean = torch.from_numpy(np.asarray(options["image_mean"], dtype=np.float32)).to(device).view(3, 1, 1)
            std = torch.from_numpy(np.asarray(options["image_std"], dtype=np.float32)).to(device).view(3, 1, 1)
            values = (values - mean) / std
        real = video_mask.to(device=device, dtype=torch.bool)[:, :, None, None, None]
        return torch.where(real, values, torch.zeros((), dtype=values.dtype, device=device)).contiguous()

    def to_device(self, batch: dict[str, Any], device) -> dict[str, Any]:
        """Every tensor of a collated batch moved to `device`; uint8 `pixel_values` (`collate_frames`) normalised
        there into the model's float32 `(batch, num_frames, 3, H, W)`."""
        moved = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
        if "pixel_values" in moved and moved["pixel_values"].dtype == torch.uint8:
            moved["pixel_values"] = self.normalise(moved["pixel_values"], moved["video_mask"])
        return moved

    def __call__(self, videos: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
        counts = [len(frames) for frames in videos]
        pixels = self.video_processor.transform_frames([frame for frames in videos for frame in frames], **self.options)
        batch = torch.zeros(len(videos), self.num_frames, *pixels.shape[1:], dtype=pixels.dtype)
        mask = torch.zeros(len(videos), self.num_frames, dtype=torch.long)
        start = 0
        for position, count in enumerate(counts):
            batch[position, :count] = pixels[start : start + count]
            mask[position, :count] = 1
            start += count
        return batch, mask

    def collate_pairs(self, items: list[dict]) -> dict[str, Any]:
        """Training batch; rows whose video failed are dropped and named in `skipped`."""
        good = [item for item in items if "frames" in item]
        batch = {"skipped": [item["error"] for item in items if "error" in item], "rows": [item["row"] for item in good]}
        if good:
            batch["input_ids"] = torch.stack([item["input_ids"] for item in good])
            batch["attention_mask"] = torch.stack([item["attention_mask"] for item in good])
            batch["pixel_values"], batch["video_mask"] = self.collate_frames([item["frames"] for item in good])
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
            size = self.options.get("crop_size") or {"height": 32, "width": 32}
            blank = [np.zeros((size["height"], size["width"], 3), dtype=np.uint8)]
        videos = [item.get("frames", [np.zeros_like(blank[0])]) for item in items]
        pixel_values, video_mask = self.collate_frames(videos)
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
            reference = video_reference(row[self.columns.video], self.base_dir)
            video_id = str(row[self.columns.video_id]) if self.columns.video_id else default_video_id(
                reference, "<stream row>")
            kept = [caption for caption in captions_of(row[self.columns.caption]) if caption]
            if not kept:
                skipped.append(f"{video_id}: empty caption")
                continue
            try:
                frames.append(decode_video(reference, self.batcher.video_processor, self.batcher.options))
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
            batch["pixel_values"], batch["video_mask"] = self.batcher.collate_frames(frames)
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
    "VideoBatcher",
    "VideoDataset",
    "VideoFrameStore",
    "decode_video",
    "encode_texts",
    "encode_videos",
]
