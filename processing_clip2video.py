# Copyright 2025 The clip2video authors. Licensed under the MIT licence.
"""Processor for CLIP2Video: CLIP tokenizer + video decoding, frame sampling and the CLIP image transform.

The original CLIP2Video pipeline (arXiv 2106.11097) first dumped every video to JPEG at 5 fps with
`ffmpeg -r 5`, then picked up to `max_frames` of those images (`RawFrameExtractor`), transformed
them with CLIP's transform and tokenised captions with CLIP's BPE after ftfy/HTML clean-up. This
module reproduces that preprocessing without the JPEG dump:

* `ffmpeg_frame_indices` maps a video's own frames to the images `ffmpeg -r 5` would have written,
  `original_frame_indices` is the original selection over those images, so decoding a video file
  directly yields the very frames the original saw;
* videos are decoded with decord (only the needed frames are converted), falling back to PyAV for
  what decord cannot open (AV1, for one);
* bad inputs raise `VideoDecodeError` (never an all-zero clip).

Outputs use the names the model takes: `input_ids`, `attention_mask` `(batch, max_words)`,
`pixel_values` `(batch, frames, 3, height, width)` and `video_mask` `(batch, frames)` (1 = real
frame; padded frames are exact zeros).
"""

import html
import io
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.processing_utils import ProcessorMixin, VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor


logger = logging.getLogger(__name__)

FRAME_SAMPLING_MODES = ("original", "uniform", "random_segment")
VIDEO_BACKENDS = ("decord", "pyav")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoDecodeError(ValueError):
    """A video input could not be turned into frames. The message names the input and the reason."""


# ----------------------------------------------------------------------------------------------------
# Frame sampling: pure functions of frame counts (and, for the ffmpeg mapping, timestamps).
# ----------------------------------------------------------------------------------------------------


def _lrintf(value: float) -> int:
    """C `lrintf`: round a float32 to the nearest integer, ties to even."""
    return int(np.rint(np.float32(value)))


def ffmpeg_image_runs(
    num_frames: int,
    fps: float,
    target_fps: float = 5.0,
    timestamps: Sequence[float] | None = None,
    frame_duration: float | None = None,
) -> np.ndarray:
    """Native frame shown by each image that `ffmpeg -i video -r <target_fps> %08d.jpg` writes.

    Reproduces the constant-frame-rate conversion of ffmpeg 5.1 (`do_video_out`), which the original
    extraction script (`sample_frame.py`, `-r 5`) went through: for native frame `i` with timestamp
    `t_i` and `sync` images written so far, `delta0 = t_i * target_fps - sync` and
    `delta = delta0 + duration`; the frame is dropped if `delta < -1.1`, written `lrintf(delta)`
    times if `delta > 1.1` (the first `lrintf(delta0 - 0.6)` of them repeat the previous frame when
    `delta0 > 1.1`), else once. `duration` is the packet duration in output frames rounded to an
    integer when that is positive (native rates up to 10 fps), else `target_fps / fps` capped at 1.
    For 30 fps this gives images `0, 1, 5, 11, 17, ...` (image `k >= 2` is frame `6k - 7`), and
    `floor(5 * duration) + 2` images in all.

    Args:
        num_frames (`int`): number of decodable native frames.
        fps (`float`): native frame rate (average rate of the stream).
        target_fps (`float`, defaults to 5.0): the extraction rate (`-r`).
        timestamps (`Sequence[float]`, *optional*): presentation time of each native frame in seconds,
            relative to the file start; defaults to `i / fps` (constant frame rate).
        frame_duration (`float`, *optional*): packet duration in seconds; defaults to `1 / fps`.

    Returns:
        `(run_frames, run_lengths)`, two int64 arrays of shape `(2 * num_frames,)`: the images are
        `run_lengths[r]` copies of native frame `run_frames[r]`, run after run. Run-length form keeps
        memory bounded when corrupt timestamps would ask for millions of duplicates.
    """
    if num_frames <= 0:
        return np.zeros((0,), dtype=np.int64), np.zeros((0,), dtype=np.int64)
    if not fps or fps <= 0 or not np.isfinite(fps):
        raise ValueError(f"ffmpeg_frame_indices needs a positive frame rate, got {fps}")
    if timestamps is None:
        timestamps = np.arange(num_frames, dtype=np.float64) / fps
    if len(timestamps) != num_frames:
        raise ValueError(f"got {len(timestamps)} timestamps for {num_frames} frames")
    frame_duration = 1.0 / fps if frame_duration is None else frame_duration
    duration = _lrintf(frame_duration * target_fps)
    if duration <= 0:
        duration = min(target_fps / fps, 1.0)
    # ffmpeg nudges timestamps away from exact mid-points by 2^-17 output frames
    nudge = 1.0 / (1 << 17)

    run_frames = np.repeat(np.arange(num_frames, dtype=np.int64), 2)
    run_frames[0::2] = np.maximum(run_frames[0::2] - 1, 0)  # first run of frame i repeats frame i - 1
    run_lengths = np.zeros((2 * num_frames,), dtype=np.int64)
    sync = 0
    for index, timestamp in enumerate(timestamps):
        sync_ipts = float(timestamp) * target_fps
        sync_ipts += nudge if sync_ipts > 0 else -nudge
        delta0 = sync_ipts - sync
        delta = delta0 + duration
        if delta0 < 0 and delta > 0:
            delta0 = 0.0
        repeat_previous = 0
        if delta < -1.1:
            count = 0
        elif delta > 1.1:
            count = _lrintf(delta)
            if delta0 > 1.1:
                repeat_previous = _lrintf(delta0 - 0.6)
        else:
            count = 1
        repeat_previous = min(repeat_previous, count) if index > 0 else 0
        run_lengths[2 * index] = repeat_previous
        run_lengths[2 * index + 1] = count - repeat_previous
        sync += count
    return run_frames, run_lengths


def ffmpeg_frame_indices(
    num_frames: int,
    fps: float,
    target_fps: float = 5.0,
    timestamps: Sequence[float] | None = None,
    frame_duration: float | None = None,
) -> np.ndarray:
    """Native frame shown by each image that `ffmpeg -r <target_fps>` writes (see [`ffmpeg_image_runs`]).

    Returns:
        `np.ndarray` of shape `(num_images,)`, int64, in image order.
    """
    run_frames, run_lengths = ffmpeg_image_runs(num_frames, fps, target_fps, timestamps, frame_duration)
    return np.repeat(run_frames, run_lengths)


def original_frame_indices(
    num_frames: int,
    feature_framerate: int = 1,
    max_frames: int = 12,
    jitter: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frames the original `RawFrameExtractor.video_to_tensor` picks from a sorted list of `num_frames` images.

    Pre-sampling keeps `floor(num_frames / feature_framerate)` images spread with a truncated
    `linspace(0, num_frames - 1, .)`; if more than `max_frames` remain, a second truncated
    `linspace` picks `max_frames` of them. With `jitter` (the original's training mode) the interior
    picks move by a uniform integer in `[-step, step)`, `step = gap // 2`, when `step > 2`.

    Args:
        num_frames (`int`): number of images (5 fps JPEGs in the original layout).
        feature_framerate (`int`, defaults to 1): keep every `feature_framerate`-th image.
        max_frames (`int`, defaults to 12): the most frames returned.
        jitter (`bool`, defaults to `False`): apply the training-time jitter.
        rng (`np.random.Generator`, *optional*): source of the jitter.

    Returns:
        `np.ndarray` of shape `(n,)`, int64, `n <= max_frames` (empty when `num_frames < feature_framerate`):
        indices into the image list, increasing.
    """
    if feature_framerate < 1:
        raise ValueError(f"feature_framerate must be >= 1, got {feature_framerate}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    kept = int(num_frames) // feature_framerate
    if kept <= max_frames:
        return np.linspace(0, num_frames - 1, num=kept).astype(np.int64)
    picks = np.linspace(0, kept - 1, num=max_frames).astype(np.int64)
    if jitter and max_frames > 2:
        step = int(picks[1] - picks[0]) // 2
        if step > 2:
            rng = rng if rng is not None else np.random.default_rng()
            picks[1:-1] += rng.integers(-step, step, size=max_frames - 2)
    # `linspace(0, num_frames - 1, kept)[picks]` without building the `kept`-long array: numpy's
    # linspace is `arange(kept) * step` with the last value set to the end point exactly
    presampled = picks.astype(np.float64) * ((num_frames - 1) / (kept - 1))
    presampled[picks == kept - 1] = num_frames - 1
    return presampled.astype(np.int64)


def uniform_frame_indices(num_frames: int, num_samples: int) -> np.ndarray:
    """The middle frame of each of `num_samples` equal segments (all frames when there are fewer).

    Returns:
        `np.ndarray` of shape `(min(num_frames, num_samples),)`, int64, increasing.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if num_frames <= num_samples:
        return np.arange(max(num_frames, 0), dtype=np.int64)
    return ((np.arange(num_samples) + 0.5) * num_frames / num_samples).astype(np.int64)


def random_segment_frame_indices(
    num_frames: int, num_samples: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """One uniformly random frame in each of `num_samples` equal segments (TSN-style training sampling).

    Returns:
        `np.ndarray` of shape `(min(num_frames, num_samples),)`, int64, increasing.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if num_frames <= num_samples:
        return np.arange(max(num_frames, 0), dtype=np.int64)
    rng = rng if rng is not None else np.random.default_rng()
    bounds = np.linspace(0, num_frames, num_samples + 1)
    starts = np.ceil(bounds[:-1]).astype(np.int64)
    ends = np.maximum(np.ceil(bounds[1:]).astype(np.int64), starts + 1)
    return (starts + np.floor(rng.random(num_samples) * (ends - starts)).astype(np.int64)).clip(max=num_frames - 1)


# ----------------------------------------------------------------------------------------------------
# Text cleaning (the original's `basic_clean` + `whitespace_clean` + lower case)
# ----------------------------------------------------------------------------------------------------


def clean_caption(text: str) -> str:
    """ftfy fix, HTML-unescape twice, collapse whitespace, lower case — the original tokenizer's clean-up."""
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


# ----------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


class _DecoderFailure(Exception):
    """Internal: one backend failed; carries the reason for the final `VideoDecodeError`."""


class _DecordReader:
    """Random access with decord: only the requested frames are converted to RGB."""

    name = "decord"

    def __init__(self, source: str | bytes, num_threads: int):
        import decord

        # decord raises RuntimeError at open and decord._ffi.base.DECORDError (not a RuntimeError) on
        # reads, among others: any exception from the decoder is a decoding failure.
        self._error_types = (Exception,)
        try:
            handle = io.BytesIO(source) if isinstance(source, bytes) else source
            self._reader = decord.VideoReader(handle, ctx=decord.cpu(0), num_threads=num_threads)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
        except self._error_types as error:
            raise _DecoderFailure(f"decord cannot open it ({_first_line(error)})") from None
        self.declared_frames = _declared_frame_count(source)

    def timestamps(self) -> np.ndarray:
        try:
            times = self._reader.get_frame_timestamp(np.arange(self.num_frames))[:, 0]
        except self._error_types as error:
            raise _DecoderFailure(f"decord cannot index it ({_first_line(error)})") from None
        return np.asarray(times, dtype=np.float64) - float(times[0])

    def read(self, indices: np.ndarray) -> np.ndarray:
        try:
            frames = self._reader.get_batch(list(map(int, indices))).asnumpy()
        except self._error_types as error:
            raise _DecoderFailure(f"decord failed reading frames ({_first_line(error)})") from None
        if frames.shape[0] != len(indices):
            raise _DecoderFailure(f"decord returned {frames.shape[0]} of {len(indices)} frames")
        return frames


class _PyAVReader:
    """Sequential decoding with PyAV (FFmpeg); opens what decord cannot (AV1, for one)."""

    name = "pyav"

    def __init__(self, source: str | bytes, num_threads: int):
        import av

        self._av = av
        self._source = source
        self._num_threads = num_threads
        try:
            with self._open() as container:
                if not container.streams.video:
                    raise _DecoderFailure("no video stream")
                stream = container.streams.video[0]
                self.declared_frames = int(stream.frames or 0)
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps = float(rate) if rate else 0.0
                start = container.start_time / 1_000_000 if container.start_time is not None else 0.0
                time_base = float(stream.time_base) if stream.time_base else 0.0
                stamps, packet_pts, key_pts = [], [], []
                # demuxing only (no decoding): one packet per frame, gives the exact frame count,
                # the presentation order and the keyframes to seek to
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    packet_pts.append(packet.pts)
                    if packet.is_keyframe:
                        key_pts.append(packet.pts)
                    pts = packet.pts if packet.pts is not None else packet.dts
                    stamps.append(pts * time_base - start if pts is not None else np.nan)
        except _DecoderFailure:
            raise
        except Exception as error:  # FFmpegError, but also e.g. UnicodeDecodeError on corrupt metadata
            raise _DecoderFailure(f"PyAV cannot read it ({_first_line(error)})") from None
        stamps = np.sort(np.asarray(stamps, dtype=np.float64))
        self.num_frames = len(stamps)
        self._timestamps = stamps if not np.isnan(stamps).any() else None
        # seeking needs unique packet timestamps and a keyframe at the start
        self._display_pts = None
        if None not in packet_pts and None not in key_pts and len(set(packet_pts)) == len(packet_pts) and key_pts:
            self._display_pts = sorted(packet_pts)
            self._key_pts = sorted(key_pts)
            if self._key_pts[0] > self._display_pts[0]:
                self._display_pts = None

    def _open(self):
        source = io.BytesIO(self._source) if isinstance(self._source, bytes) else self._source
        return self._av.open(source, mode="r")

    def timestamps(self) -> np.ndarray | None:
        return self._timestamps

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames at the given (increasing, unique) presentation indices: `(n, H, W, 3)` uint8."""
        if self._display_pts is not None and max(indices) < len(self._display_pts):
            try:
                frames = self._read_seeking(indices)
            except Exception as error:  # any decoder trouble: retry the plain sequential way
                logger.debug("PyAV seeking read failed (%s); decoding sequentially", _first_line(error))
                frames = None
            if frames is not None:
                return frames
        return self._read_sequential(indices)

    def _read_seeking(self, indices: np.ndarray) -> np.ndarray | None:
        """Decodes only what the wanted frames need: from the keyframe before each (seeking past
        unneeded stretches), skipping non-reference frames that are not wanted. Pixel-identical
        to full decoding. Returns `None` if a frame could not be reached this way."""
        import bisect

        targets = [self._display_pts[int(i)] for i in indices]
        wanted = {pts: position for position, pts in enumerate(targets)}
        frames: list[np.ndarray | None] = [None] * len(targets)
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self._num_threads
            context = stream.codec_context
            last_output = None
            packets = None
            for target in targets:
                if frames[wanted[target]] is not None:
                    continue
                keyframe = self._key_pts[bisect.bisect_right(self._key_pts, target) - 1]
                if packets is None or last_output is None or keyframe > last_output:
                    container.seek(int(keyframe), backward=True, any_frame=False, stream=stream)
                    packets = container.demux(stream)
                for packet in packets:
                    if packet.size:
                        context.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
                    for frame in context.decode(packet):
                        last_output = frame.pts
                        position = wanted.get(frame.pts)
                        if position is not None and frames[position] is None:
                            frames[position] = frame.to_ndarray(format="rgb24")
                    if frames[wanted[target]] is not None:
                        break
                else:
                    packets = None
                    if frames[wanted[target]] is None:
                        return None
        return np.stack(frames) if all(frame is not None for frame in frames) else None

    def _read_sequential(self, indices: np.ndarray) -> np.ndarray:
        wanted = {int(i): position for position, i in enumerate(indices)}
        last = max(wanted)
        frames: list[np.ndarray | None] = [None] * len(indices)
        decoded = 0
        try:
            with self._open() as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self._num_threads
                for frame in container.decode(stream):
                    if decoded in wanted:
                        frames[wanted[decoded]] = frame.to_ndarray(format="rgb24")
                    decoded += 1
                    if decoded > last:
                        break
        except Exception as error:  # any decoder exception is a decoding failure
            raise _DecoderFailure(
                f"PyAV failed at frame {decoded} of {self.num_frames} ({_first_line(error)})"
            ) from None
        if decoded <= last:
            raise _ShortVideo(decoded)
        return np.stack(frames)


def _frame_count_tolerance(num_frames: int) -> int:
    """Frames a stream may lack against its announced count before it counts as truncated."""
    return max(2, int(0.02 * num_frames))


class _ShortVideo(_DecoderFailure):
    """Internal: the stream ended after `decoded` frames, before the frames asked for."""

    def __init__(self, decoded: int):
        super().__init__(f"stream ended after {decoded} frames")
        self.decoded = decoded


def _declared_frame_count(source: str | bytes) -> int:
    """Frame count the container header declares (mp4, avi; 0 when unknown), read without decoding."""
    try:
        import av

        with av.open(io.BytesIO(source) if isinstance(source, bytes) else source, mode="r") as container:
            return int(container.streams.video[0].frames or 0) if container.streams.video else 0
    except Exception:  # the decoder that opened it is the judge; this is only a cross-check
        return 0


def _first_line(error: BaseException) -> str:
    """A short, one-line reason from a decoder exception."""
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    text = lines[-1] if lines else type(error).__name__
    # decord prefixes messages with "[hh:mm:ss] /source/file.cc:123: "; drop those
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", text).strip() or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ----------------------------------------------------------------------------------------------------
# Video processor
# ----------------------------------------------------------------------------------------------------


class CLIP2VideoVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    frame_sampling (`str`, *optional*, defaults to `"original"`):
        `"original"`: the original's scheme (ffmpeg 5 fps mapping, every `feature_framerate`-th image,
        uniform choice of up to `num_frames`); `"uniform"`: the middle frame of `num_frames` equal
        segments; `"random_segment"`: one random frame per segment (training).
    feature_framerate (`int`, *optional*, defaults to 2):
        Keep every `feature_framerate`-th 5 fps image (original scheme; 2 for MSR-VTT, 1 for MSVD/VATEX).
    extraction_fps (`float`, *optional*, defaults to 5.0):
        Rate of the original's JPEG extraction (`ffmpeg -r`).
    jitter (`bool`, *optional*, defaults to `False`):
        The original's training jitter of the interior picks (original scheme only).
    video_backend (`str`, *optional*, defaults to `"decord"`):
        `"decord"` (falls back to PyAV) or `"pyav"`.
    decode_threads (`int`, *optional*, defaults to 1):
        Decoder threads per video (0 = decoder default).
    seed (`int`, *optional*):
        Seed for the random sampling modes and the jitter (fresh randomness when unset).
    """

    frame_sampling: str
    feature_framerate: int
    extraction_fps: float
    jitter: bool
    video_backend: str
    decode_threads: int
    seed: int | None


class CLIP2VideoVideoProcessor(BaseVideoProcessor):
    r"""
    Turns videos into CLIP2Video's model inputs: `pixel_values` `(batch, num_frames, 3, height, width)`
    float32 and `video_mask` `(batch, num_frames)` int64 (1 = real frame; padded frames are exact zeros).

    Accepted videos (one, or a list of them): a video file path (mp4, avi, webm, mkv, ...), a folder of
    pre-extracted frames (the original's layout: image files whose sorted names give the temporal
    order), a list of PIL images or `(H, W, 3)` uint8 arrays, a uint8 array or tensor
    `(T, H, W, 3)` (or `(T, 3, H, W)`), raw bytes of a video file. Folders, lists and arrays are taken
    as the original's 5 fps images; files and bytes are decoded and mapped to those images with
    [`ffmpeg_frame_indices`] first (`frame_sampling="original"`).

    The image transform is the original's (CLIP's): resize the shorter side to `size["shortest_edge"]`
    with PIL bicubic, center crop to `crop_size`, scale to [0, 1], normalize with `image_mean`/`image_std`.

    Errors: an input that cannot give at least one frame raises [`VideoDecodeError`] naming it and the
    reason (missing, empty, corrupt, truncated, no video stream, zero frames, too short).

    Why `preprocess` is overridden: `BaseVideoProcessor` (transformers 5.24) resizes with torchvision
    on tensors, which differs from the original PIL bicubic transform by up to 0.015, decodes files
    whole through `load_video` before sampling, and has no notion of a frame mask. The class keeps its
    declarative attributes, kwargs validation, `save_pretrained`/`from_pretrained` and auto-class support.
    """

    resample = PILImageResampling.BICUBIC
    size = {"shortest_edge": 224}
    crop_size = {"height": 224, "width": 224}
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 12
    frame_sampling = "original"
    feature_framerate = 2
    extraction_fps = 5.0
    jitter = False
    video_backend = "decord"
    decode_threads = 1
    seed = None
    valid_kwargs = CLIP2VideoVideoProcessorKwargs
    model_input_names = ["pixel_values", "video_mask"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._check_options(
            frame_sampling=self.frame_sampling,
            video_backend=self.video_backend,
            num_frames=self.num_frames,
            feature_framerate=self.feature_framerate,
        )

    @staticmethod
    def _check_options(frame_sampling, video_backend, num_frames, feature_framerate):
        if frame_sampling not in FRAME_SAMPLING_MODES:
            raise ValueError(f"frame_sampling must be one of {FRAME_SAMPLING_MODES}, got {frame_sampling!r}")
        if video_backend not in VIDEO_BACKENDS:
            raise ValueError(f"video_backend must be one of {VIDEO_BACKENDS}, got {video_backend!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if not isinstance(feature_framerate, int) or feature_framerate < 1:
            raise ValueError(f"feature_framerate must be a positive int, got {feature_framerate!r}")

    # -- public API ------------------------------------------------------------------------------

    def preprocess(self, videos, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """
        Args:
            videos: one video or a list of videos (see the class docstring for the accepted kinds).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` or `"np"`.
            **kwargs: any class attribute (`num_frames`, `frame_sampling`, `feature_framerate`, `jitter`,
                `seed`, `video_backend`, `decode_threads`, `size`, `crop_size`, `image_mean`, ...)
                for this call only.

        Returns:
            [`BatchFeature`] with `pixel_values` `(batch, num_frames, 3, crop_height, crop_width)` float32
            and `video_mask` `(batch, num_frames)` int64.
        """
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"unexpected video processor arguments: {sorted(unknown)}")
        options = {name: kwargs.get(name, getattr(self, name, None)) for name in self.valid_kwargs.__annotations__}
        options = self._standardize_kwargs(**options)
        self._check_options(
            options["frame_sampling"],
            options["video_backend"],
            options["num_frames"],
            options["feature_framerate"],
        )
        rng = np.random.default_rng(options["seed"])
        batch = self._as_batch(videos)
        num_frames = options["num_frames"]
        crop = options["crop_size"]
        pixel_values = torch.zeros((len(batch), num_frames, 3, crop.height, crop.width), dtype=torch.float32)
        video_mask = torch.zeros((len(batch), num_frames), dtype=torch.int64)
        for position, video in enumerate(batch):
            frames = self.load_frames(video, rng=rng, **options)
            pixel_values[position, : len(frames)] = self.transform_frames(frames, **options)
            video_mask[position, : len(frames)] = 1
        data = {"pixel_values": pixel_values, "video_mask": video_mask}
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        elif return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        return BatchFeature(data=data)

    def load_frames(self, video, rng: np.random.Generator | None = None, **options) -> list:
        """Selected frames of one video, before the transform.

        Returns:
            a list of `n` frames (`1 <= n <= num_frames`), each a PIL image or an `(H, W, 3)` uint8 array.

        Raises:
            [`VideoDecodeError`] naming the input and the reason.
        """
        options = {**{name: getattr(self, name, None) for name in self.valid_kwargs.__annotations__}, **options}
        rng = rng if rng is not None else np.random.default_rng(options["seed"])
        name = _describe(video)

        if isinstance(video, (str, os.PathLike)):
            path = os.fspath(video)
            if os.path.isdir(path):
                return self._load_frame_folder(path, rng, options)
            if not os.path.exists(path):
                raise VideoDecodeError(f"{path}: no such file or folder")
            if os.path.getsize(path) == 0:
                raise VideoDecodeError(f"{path}: empty file")
            return self._decode_file(path, name, rng, options)
        if isinstance(video, (bytes, bytearray, memoryview)):
            data = bytes(video)
            if not data:
                raise VideoDecodeError(f"{name}: empty bytes")
            return self._decode_file(data, name, rng, options)

        frames = self._as_frame_list(video, name)
        indices = self._select(len(frames), rng, options, name)
        return [frames[i] for i in indices]

    def transform_frames(self, frames: list, **options) -> torch.Tensor:
        """The original CLIP transform of each frame.

        Args:
            frames: `n` PIL images or `(H, W, 3)` uint8 arrays.

        Returns:
            `torch.Tensor` of shape `(n, 3, crop_height, crop_width)`, float32.
        """
        options = {**{name: getattr(self, name, None) for name in self.valid_kwargs.__annotations__}, **options}
        options = self._standardize_kwargs(**options)
        stacked = self._transform_unchanged_size(frames, options)
        if stacked is not None:
            return torch.from_numpy(stacked)
        return torch.from_numpy(np.stack([self._transform_pil(frame, options) for frame in frames]))

    # -- input handling --------------------------------------------------------------------------

    @staticmethod
    def _is_single_frame(item) -> bool:
        if isinstance(item, Image.Image):
            return True
        return isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 3

    @classmethod
    def _as_batch(cls, videos) -> list:
        """Splits the `videos` argument into a list of single videos."""
        if isinstance(videos, (str, os.PathLike, bytes, bytearray, memoryview)):
            return [videos]
        if isinstance(videos, (np.ndarray, torch.Tensor)):
            if videos.ndim == 4:
                return [videos]
            if videos.ndim == 5:
                return list(videos)
            raise VideoDecodeError(f"<{type(videos).__name__}>: expected a (T, H, W, 3) video, got shape {tuple(videos.shape)}")
        if isinstance(videos, (list, tuple)):
            if len(videos) == 0:
                raise VideoDecodeError("<list>: no videos given")
            if all(cls._is_single_frame(item) for item in videos):
                return [list(videos)]
            return list(videos)
        raise VideoDecodeError(f"<{type(videos).__name__}>: not a video input")

    @staticmethod
    def _as_frame_list(video, name: str) -> list:
        """A list of frames (PIL images or `(H, W, 3)` uint8 arrays) from an in-memory video."""
        if isinstance(video, torch.Tensor):
            video = video.detach().cpu().numpy()
        if isinstance(video, np.ndarray):
            if video.ndim != 4:
                raise VideoDecodeError(f"{name}: expected a (T, H, W, 3) video, got shape {video.shape}")
            if video.shape[-1] not in (1, 3, 4) and video.shape[1] in (1, 3, 4):
                video = video.transpose(0, 2, 3, 1)
            frames = list(video)
        elif isinstance(video, (list, tuple)):
            frames = list(video)
        else:
            raise VideoDecodeError(f"{name}: not a video input")
        if not frames:
            raise VideoDecodeError(f"{name}: zero frames")
        checked = []
        for position, frame in enumerate(frames):
            if isinstance(frame, Image.Image):
                checked.append(frame)
                continue
            if isinstance(frame, torch.Tensor):
                frame = frame.detach().cpu().numpy()
            if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
                raise VideoDecodeError(f"{name}: frame {position} is not an (H, W, 3) image")
            if frame.dtype != np.uint8:
                raise VideoDecodeError(f"{name}: frame {position} has dtype {frame.dtype}, expected uint8")
            if frame.shape[0] == 0 or frame.shape[1] == 0:
                raise VideoDecodeError(f"{name}: frame {position} is empty")
            checked.append(frame)
        return checked

    def _load_frame_folder(self, path: str, rng, options) -> list:
        names = sorted(name for name in os.listdir(path) if name.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise VideoDecodeError(f"{path}: folder holds no image frames")
        indices = self._select(len(names), rng, options, path)
        frames = []
        for index in indices:
            file = os.path.join(path, names[index])
            try:
                with Image.open(file) as image:
                    frames.append(image.convert("RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                raise VideoDecodeError(f"{file}: unreadable frame ({_first_line(error)})") from None
        return frames

    def _select(self, num_images: int, rng, options, name: str) -> np.ndarray:
        """Indices (into `num_images` frames / 5 fps images) of the frames to keep."""
        mode = options["frame_sampling"]
        if mode == "original":
            indices = original_frame_indices(
                num_images, options["feature_framerate"], options["num_frames"], jitter=options["jitter"], rng=rng
            )
            if len(indices) == 0:
                raise VideoDecodeError(
                    f"{name}: too short: {num_images} frame(s) give no frame at feature_framerate="
                    f"{options['feature_framerate']}"
                )
            return indices
        if num_images <= 0:
            raise VideoDecodeError(f"{name}: zero frames")
        if mode == "uniform":
            return uniform_frame_indices(num_images, options["num_frames"])
        return random_segment_frame_indices(num_images, options["num_frames"], rng)

    # -- video files -----------------------------------------------------------------------------

    def _decode_file(self, source: str | bytes, name: str, rng, options) -> list[np.ndarray]:
        backends = [_DecordReader, _PyAVReader] if options["video_backend"] == "decord" else [_PyAVReader]
        reasons = []
        for backend in backends:
            try:
                return self._decode_with(backend, source, name, rng, options)
            except ImportError as error:
                reasons.append(f"{backend.name} unavailable ({error})")
            except _DecoderFailure as failure:
                reasons.append(f"{backend.name}: {failure}")
                logger.debug("%s: %s failed: %s", name, backend.name, failure)
        raise VideoDecodeError(f"{name}: cannot decode: " + "; ".join(reasons))

    def _decode_with(self, backend, source, name: str, rng, options) -> list[np.ndarray]:
        reader = backend(source, options["decode_threads"])
        if reader.num_frames <= 0:
            raise VideoDecodeError(f"{name}: zero frames in the video stream")
        # A truncated mp4/avi still declares its full frame count in the header; allow a small
        # difference (edit lists, pre-roll) and reject the rest.
        if reader.declared_frames - reader.num_frames > _frame_count_tolerance(reader.declared_frames):
            raise VideoDecodeError(
                f"{name}: truncated: the header declares {reader.declared_frames} frames, "
                f"only {reader.num_frames} are present"
            )
        native = self._native_indices(reader, rng, options, name)
        try:
            return self._read(reader, native)
        except _ShortVideo as short:
            # The container promised more frames than the stream holds. A small shortfall is an
            # estimated count; anything larger is a truncated file.
            if short.decoded <= 0 or reader.num_frames - short.decoded > _frame_count_tolerance(reader.num_frames):
                raise VideoDecodeError(
                    f"{name}: truncated or corrupt: the stream ended after {short.decoded} of "
                    f"{reader.num_frames} frames"
                ) from None
            logger.info("%s: %d frames decodable, %d announced", name, short.decoded, reader.num_frames)
            reader.num_frames = short.decoded
            if getattr(reader, "_timestamps", None) is not None:
                reader._timestamps = reader._timestamps[: short.decoded]
            return self._read(reader, self._native_indices(reader, rng, options, name))

    def _native_indices(self, reader, rng, options, name: str) -> np.ndarray:
        """Native frame index of each selected frame, in order (may repeat for videos under 5 fps)."""
        if options["frame_sampling"] != "original":
            return self._select(reader.num_frames, rng, options, name)
        if not reader.fps or not np.isfinite(reader.fps) or reader.fps <= 0:
            raise VideoDecodeError(f"{name}: the video stream has no frame rate")
        timestamps = reader.timestamps()
        if timestamps is not None and (len(timestamps) != reader.num_frames or not np.all(np.isfinite(timestamps))):
            timestamps = None
        run_frames, run_lengths = ffmpeg_image_runs(
            reader.num_frames, reader.fps, options["extraction_fps"], timestamps=timestamps
        )
        run_ends = np.cumsum(run_lengths)
        num_images = int(run_ends[-1])
        chosen = self._select(num_images, rng, options, name)
        return run_frames[np.searchsorted(run_ends, chosen, side="right")]

    @staticmethod
    def _read(reader, native: np.ndarray) -> list[np.ndarray]:
        unique, inverse = np.unique(native, return_inverse=True)
        frames = reader.read(unique)
        return [frames[i] for i in inverse.reshape(-1)]

    # -- transforms ------------------------------------------------------------------------------

    @staticmethod
    def _transform_unchanged_size(frames: list, options) -> np.ndarray | None:
        """`_transform_pil` of all frames at once when they are `(H, W, 3)` uint8 arrays of one size that the resize
        and the crop leave as it is (videos decoded at the model's size, like synthetic-motion's): the same float32
        operations on the stacked frames, so the same values, without a PIL round trip per frame.

        Returns:
            `(n, 3, H, W)` float32, or None when a frame needs resizing or cropping or is not such an array.
        """
        first = frames[0] if len(frames) else None
        if not isinstance(first, np.ndarray) or first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
            return None
        if any(not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != first.shape
               for frame in frames):
            return None
        height, width = first.shape[:2]
        if options["do_resize"] and min(height, width) != options["size"].shortest_edge:
            return None
        if options["do_center_crop"] and (options["crop_size"].height, options["crop_size"].width) != (height, width):
            return None
        array = np.stack(frames).astype(np.float32)
        if options["do_rescale"]:
            np.divide(array, np.float32(1.0 / options["rescale_factor"]), out=array)
        if options["do_normalize"]:
            np.subtract(array, np.asarray(options["image_mean"], dtype=np.float32), out=array)
            np.divide(array, np.asarray(options["image_std"], dtype=np.float32), out=array)
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))

    @staticmethod
    def _transform_pil(frame, options) -> np.ndarray:
        """Original transform of one frame with PIL: `(3, crop_height, crop_width)` float32."""
        image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame)[..., :3].squeeze())
        if image.mode != "RGB":
            image = image.convert("RGB")
        if options["do_resize"]:
            target = options["size"].shortest_edge
            width, height = image.size
            if width <= height:
                new_size = (target, int(target * height / width))
            else:
                new_size = (int(target * width / height), target)
            if new_size != (width, height):
                image = image.resize(new_size, resample=Image.Resampling(int(options["resample"])))
        if options["do_center_crop"]:
            crop = options["crop_size"]
            width, height = image.size
            if crop.width > width or crop.height > height:
                raise VideoDecodeError(f"frame of size {width}x{height} is smaller than the crop {crop.width}x{crop.height}")
            top = int(round((height - crop.height) / 2.0))
            left = int(round((width - crop.width) / 2.0))
            image = image.crop((left, top, left + crop.width, top + crop.height))
        array = np.asarray(image, dtype=np.uint8).astype(np.float32)
        if options["do_rescale"]:
            array = array / np.float32(1.0 / options["rescale_factor"])
        if options["do_normalize"]:
            array = (array - np.asarray(options["image_mean"], dtype=np.float32)) / np.asarray(
                options["image_std"], dtype=np.float32
            )
        return np.ascontiguousarray(array.transpose(2, 0, 1))


# ----------------------------------------------------------------------------------------------------
# Processor
# ----------------------------------------------------------------------------------------------------


class CLIP2VideoProcessor(ProcessorMixin):
    r"""
    CLIP2Video processor: a CLIP tokenizer for captions and a [`CLIP2VideoVideoProcessor`] for videos.

    `processor(text=..., videos=..., return_tensors="pt")` returns `input_ids` and `attention_mask`
    `(batch, max_words)` for the text and `pixel_values` `(batch, num_frames, 3, H, W)` and
    `video_mask` `(batch, num_frames)` for the videos. Captions are cleaned like the original (ftfy,
    HTML unescape twice, whitespace collapse, lower case), truncated to `max_words` tokens keeping the
    end token, and padded with `text_pad_token_id` (0 like the original; the model reads the mask).

    Args:
        video_processor ([`CLIP2VideoVideoProcessor`]): the video processor.
        tokenizer ([`CLIPTokenizer`]): CLIP's BPE tokenizer (49,408 tokens).
        max_words (`int`, *optional*, defaults to 32): text length including start and end tokens.
        text_pad_token_id (`int`, *optional*, defaults to 0): id written at padded text positions;
            `None` keeps the tokenizer's pad token.

    Example:

    ```python
    >>> from processing_clip2video import CLIP2VideoProcessor
    >>> processor = CLIP2VideoProcessor.from_clip_tokenizer("clip_tokenizer")
    >>> inputs = processor(text=["a man plays guitar"], videos=["video.mp4"], return_tensors="pt")
    >>> inputs["pixel_values"].shape, inputs["video_mask"].shape
    (torch.Size([1, 12, 3, 224, 224]), torch.Size([1, 12]))
    ```
    """

    def __init__(self, video_processor=None, tokenizer=None, max_words: int = 32, text_pad_token_id: int | None = 0, **kwargs):
        if not isinstance(max_words, int) or max_words < 2:
            raise ValueError(f"max_words must be an int >= 2 (start and end tokens), got {max_words!r}")
        self.max_words = max_words
        self.text_pad_token_id = text_pad_token_id
        super().__init__(video_processor, tokenizer, **kwargs)

    @classmethod
    def from_clip_tokenizer(cls, tokenizer_name_or_path: str, max_words: int = 32, **video_processor_kwargs):
        """Builds a processor from CLIP tokenizer files (`vocab.json` + `merges.txt`, e.g. the
        repository's `clip_tokenizer/` folder or `openai/clip-vit-base-patch32`)."""
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_name_or_path)
        if len(tokenizer) != 49408:
            raise ValueError(f"{tokenizer_name_or_path}: expected CLIP's 49,408-token vocabulary, got {len(tokenizer)}")
        return cls(CLIP2VideoVideoProcessor(**video_processor_kwargs), tokenizer, max_words=max_words)

    def __call__(self, text: str | list[str] | None = None, videos=None, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """
        Args:
            text (`str` or `list[str]`, *optional*): caption(s).
            videos (*optional*): one video or a list of videos (see [`CLIP2VideoVideoProcessor`]).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"` or `"np"`.
            **kwargs: video processor options for this call (`num_frames`, `frame_sampling`, `seed`, ...)
                and `max_words`.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (int64, `(batch, max_words)`) when `text`
            is given and `pixel_values`, `video_mask` when `videos` is given.
        """
        if text is None and videos is None:
            raise ValueError("give `text`, `videos` or both")
        max_words = kwargs.pop("max_words", self.max_words)
        data = {}
        if text is not None:
            data.update(self.tokenize(text, max_words=max_words, return_tensors=return_tensors))
        if videos is not None:
            data.update(self.video_processor(videos, return_tensors=return_tensors, **kwargs))
        elif kwargs:
            raise TypeError(f"unexpected arguments without videos: {sorted(kwargs)}")
        return BatchFeature(data=data)

    def tokenize(self, text: str | list[str], max_words: int | None = None, return_tensors: str | None = "pt") -> dict:
        """Original-style tokenisation: `[SOT] + tokens[: max_words - 2] + [EOT]`, padded to `max_words`.

        Returns:
            dict with `input_ids` and `attention_mask`, each `(batch, max_words)` int64.
        """
        max_words = self.max_words if max_words is None else max_words
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(item, str) for item in texts):
            raise TypeError("text must be a string or a list of strings")
        encoded = self.tokenizer(
            [clean_caption(item) for item in texts],
            padding="max_length",
            truncation=True,
            max_length=max_words,
            return_tensors="np",
        )
        input_ids = encoded["input_ids"].astype(np.int64)
        attention_mask = encoded["attention_mask"].astype(np.int64)
        if self.text_pad_token_id is not None:
            input_ids[attention_mask == 0] = self.text_pad_token_id
        if return_tensors == "np":
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "video_mask"]


CLIP2VideoVideoProcessor.register_for_auto_class("AutoVideoProcessor")
CLIP2VideoProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "CLIP2VideoProcessor",
    "CLIP2VideoVideoProcessor",
    "VideoDecodeError",
    "clean_caption",
    "ffmpeg_frame_indices",
    "ffmpeg_image_runs",
    "original_frame_indices",
    "random_segment_frame_indices",
    "uniform_frame_indices",
]
