# Copyright 2025 The clip2video authors. Licensed under the MIT licence.
"""Processor for CLIP2Video: CLIP tokenizer + video decoding, frame sampling and the CLIP image transform.

The original CLIP2Video pipeline (arXiv 2106.11097) first dumped every video to JPEG at 5 fps with
`ffmpeg -r 5`, then picked up to `max_frames` of those images (`RawFrameExtractor`), transformed
them with CLIP's transform and tokenised captions with CLIP's BPE after ftfy/HTML clean-up. This
module reproduces that preprocessing without the JPEG dump:

* `video_readers.ffmpeg_frame_indices` maps a video's own frames to the images `ffmpeg -r 5` would have
  written, `original_frame_indices` is the original selection over those images, so decoding a video
  file directly yields the very frames the original saw (in ffmpeg's orientation);
* videos are decoded with decord (only the needed frames are converted), falling back to PyAV for
  what decord cannot open (AV1, for one) — see `video_readers`;
* bad inputs raise `VideoDecodeError` (never an all-zero clip).

Outputs use the names the model takes: `input_ids`, `attention_mask` `(batch, max_words)`,
`pixel_values` `(batch, frames, 3, height, width)` and `video_mask` `(batch, frames)` (1 = real
frame; padded frames are exact zeros).
"""

import html
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from PIL import Image

from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling, SizeDict
from transformers.processing_utils import ProcessorMixin, VideosKwargs
from transformers.utils import TensorType
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata


try:  # loaded as Hub remote code (a package) ...
    from .hub_clip2video import write_push_card
    from .video_readers import (
        VIDEO_BACKENDS,
        VideoDecodeError,
        VideoTimeline,
        describe,
        ffmpeg_frame_indices,
        ffmpeg_image_runs,
        first_line,
        read_video,
    )
except ImportError:  # ... or as a top-level module of the installed project
    from hub_clip2video import write_push_card
    from video_readers import (
        VIDEO_BACKENDS,
        VideoDecodeError,
        VideoTimeline,
        describe,
        ffmpeg_frame_indices,
        ffmpeg_image_runs,
        first_line,
        read_video,
    )


FRAME_SAMPLING_MODES = ("original", "uniform", "random_segment")
#: Options that leave the chosen frames at the model's size as they are: the float normalisation after them, the
#: decoder's settings and the per-call ones (`CLIP2VideoVideoProcessor.frame_options` is every other option).
NOT_FRAME_OPTIONS = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std", "video_backend",
                     "decode_threads", "seed", "spans", "return_metadata", "return_tensors", "device")
#: Options that are integers >= 1.
POSITIVE_INT_OPTIONS = ("num_frames", "feature_framerate", "image_size")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ----------------------------------------------------------------------------------------------------
# Frame sampling over the 5 fps images: pure functions of frame counts
# ----------------------------------------------------------------------------------------------------


def original_frame_indices(
    num_images: int,
    feature_framerate: int = 1,
    num_frames: int = 12,
    jitter: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frames the original `RawFrameExtractor.video_to_tensor` picks from a sorted list of `num_images` images.

    Pre-sampling keeps `floor(num_images / feature_framerate)` images spread with a truncated
    `linspace(0, num_images - 1, .)`; if more than `num_frames` remain, a second truncated
    `linspace` picks `num_frames` of them (the original's `max_frames`). With `jitter` (the original's training mode) the interior
    picks move by a uniform integer in `[-step, step)`, `step = gap // 2`, when `step > 2`.

    Args:
        num_images (`int`): number of images (5 fps JPEGs in the original layout).
        feature_framerate (`int`, defaults to 1): keep every `feature_framerate`-th image.
        num_frames (`int`, defaults to 12): the most frames returned (the model's frames per video).
        jitter (`bool`, defaults to `False`): apply the training-time jitter.
        rng (`np.random.Generator`, *optional*): source of the jitter.

    Returns:
        `np.ndarray` of shape `(n,)`, int64, `n <= num_frames` (empty when `num_images < feature_framerate`):
        indices into the image list, increasing.
    """
    _check_options({"feature_framerate": feature_framerate, "num_frames": num_frames})
    kept = int(num_images) // feature_framerate
    if kept <= num_frames:
        return np.linspace(0, num_images - 1, num=kept).astype(np.int64)
    picks = np.linspace(0, kept - 1, num=num_frames).astype(np.int64)
    if jitter and num_frames > 2:
        step = int(picks[1] - picks[0]) // 2
        if step > 2:
            rng = rng if rng is not None else np.random.default_rng()
            picks[1:-1] += rng.integers(-step, step, size=num_frames - 2)
    # `linspace(0, num_images - 1, kept)[picks]` without building the `kept`-long array: numpy's
    # linspace is `arange(kept) * step` with the last value set to the end point exactly
    presampled = picks.astype(np.float64) * ((num_images - 1) / (kept - 1))
    presampled[picks == kept - 1] = num_images - 1
    return presampled.astype(np.int64)


def uniform_frame_indices(num_images: int, num_frames: int) -> np.ndarray:
    """The middle image of each of `num_frames` equal segments of `num_images` (all of them when there are fewer).

    Returns:
        `np.ndarray` of shape `(min(num_images, num_frames),)`, int64, increasing.
    """
    _check_options({"num_frames": num_frames})
    if num_images <= num_frames:
        return np.arange(max(num_images, 0), dtype=np.int64)
    return ((np.arange(num_frames) + 0.5) * num_images / num_frames).astype(np.int64)


def random_segment_frame_indices(
    num_images: int, num_frames: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """One uniformly random image in each of `num_frames` equal segments of `num_images` (TSN-style training sampling).

    Returns:
        `np.ndarray` of shape `(min(num_images, num_frames),)`, int64, increasing.
    """
    _check_options({"num_frames": num_frames})
    if num_images <= num_frames:
        return np.arange(max(num_images, 0), dtype=np.int64)
    rng = rng if rng is not None else np.random.default_rng()
    bounds = np.linspace(0, num_images, num_frames + 1)
    starts = np.ceil(bounds[:-1]).astype(np.int64)
    ends = np.maximum(np.ceil(bounds[1:]).astype(np.int64), starts + 1)
    return (starts + np.floor(rng.random(num_frames) * (ends - starts)).astype(np.int64)).clip(max=num_images - 1)


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
    spans (`tuple[float, float]` or `list[tuple[float, float] | None]`, *optional*):
        Per call only: the clip `[start, end)` in seconds of each video (one pair for all videos, or one per video,
        `None` = the whole video). The frames are chosen by `frame_sampling` among the frames of the span, with time
        counted from the span's first frame, as for that span cut out as its own file; an end past the video's end
        is cut to it, a span starting at or after the end raises [`VideoDecodeError`].
    """

    frame_sampling: str
    feature_framerate: int
    extraction_fps: float
    jitter: bool
    video_backend: str
    decode_threads: int
    seed: int | None
    spans: tuple | list | None


@dataclass
class CLIP2VideoMetadata(VideoMetadata):
    """[`VideoMetadata`] of one input, with what the original's frame selection needs.

    Attributes (beyond `VideoMetadata`'s):
        name (`str`): how messages name the input (its path, or its kind).
        read_timeline (`Callable[[], VideoTimeline]`, *optional*): per-frame times of a decoded video file
            (read on demand); `None` when the frames already are the original's 5 fps images (a folder of
            frames, a list of images, an array).
    """

    name: str = "<video>"
    read_timeline: Callable[[], VideoTimeline] | None = None


class CLIP2VideoVideoProcessor(BaseVideoProcessor):
    r"""
    Turns videos into CLIP2Video's model inputs: `pixel_values` `(batch, num_frames, 3, height, width)`
    float32 and `video_mask` `(batch, num_frames)` int64 (1 = real frame; padded frames are exact zeros).

    Accepted videos (one, or a list of them): a video file path (mp4, avi, webm, mkv, ...), a folder of
    pre-extracted frames (the original's layout: image files whose sorted names give the temporal
    order), a list of PIL images or `(H, W, 3)` uint8 arrays, a uint8 array or tensor
    `(T, H, W, 3)` (or `(T, 3, H, W)`), raw bytes of a video file. Folders, lists and arrays are taken
    as the original's 5 fps images; files and bytes are decoded and mapped to those images with
    [`ffmpeg_frame_indices`] first (`frame_sampling="original"`), from each frame's own timestamp, in
    ffmpeg's orientation (display-matrix rotation applied).

    The image transform is the original's (CLIP's): resize the shorter side to `size["shortest_edge"]`
    with PIL bicubic, center crop to `crop_size`, scale to [0, 1], normalize with `image_mean`/`image_std`.

    Built on [`BaseVideoProcessor`]'s `preprocess`: its hooks are the steps of the original pipeline —
    `_decode_and_sample_videos` reads only the frames `sample_frames` picks (files are not decoded whole),
    `_prepare_input_videos` keeps them as PIL images / uint8 arrays, and `_preprocess` applies the PIL
    transform (the base class's torchvision resize differs from the original's PIL bicubic by up to
    0.015) and builds the frame mask. Defaults are the class attributes below, merged with per-call
    options once, by the base class.

    `do_sample_frames=False` takes in-memory frames (arrays, lists, folders) as they are (at most
    `num_frames`); video files are always sampled. Frames are always converted to RGB.

    Errors: an input that cannot give at least one frame raises [`VideoDecodeError`] naming it and the
    reason (missing, empty, corrupt, truncated, no video stream, zero frames, too short).
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
    do_sample_frames = True
    num_frames = 12
    frame_sampling = "original"
    feature_framerate = 2
    extraction_fps = 5.0
    jitter = False
    video_backend = "decord"
    decode_threads = 1
    seed = None
    spans = None
    valid_kwargs = CLIP2VideoVideoProcessorKwargs
    model_input_names = ["pixel_values", "video_mask"]

    def __init__(self, **kwargs):
        _check_options(kwargs)
        super().__init__(**kwargs)
        _check_options({name: getattr(self, name) for name in self.valid_kwargs.__annotations__})

    # -- the frame options: one object, built once ------------------------------------------------

    def for_model(self, config=None, image_size: int | None = None, **options) -> "CLIP2VideoVideoProcessor":
        """A copy of this processor that prepares frames for a model, validated once (here).

        Args:
            config (`CLIP2VideoConfig` or `CLIPConfig`, *optional*): the model's config: its `num_frames` (a CLIP
                config has none: this processor's stays) and its vision tower's `image_size`.
            image_size (`int`, *optional*): the model's frame size in pixels (instead of the config's): the shorter
                side is resized to it and a square of it is cropped from the center (CLIP's transform).
            **options: any other option (`frame_sampling`, `feature_framerate`, `video_backend`, ...).

        Returns:
            a new [`CLIP2VideoVideoProcessor`]; save it with the model, hand it to the data path as it is.

        Raises:
            [`VideoProcessorOptionError`] naming the option and the reason.
        """
        updates = {}
        if config is not None:
            if getattr(config, "num_frames", None) is not None:
                updates["num_frames"] = config.num_frames
            image_size = image_size if image_size is not None else config.vision_config.image_size
        if image_size is not None:
            _check_options({"image_size": image_size})
            updates.update(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
        updates.update(options)
        unknown = set(updates) - set(self.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"unexpected video processor arguments: {sorted(unknown)}")
        return type(self).from_dict({**self.to_dict(), **updates})

    def frame_options(self) -> dict:
        """The options that fix the chosen frames at the model's size (what prepared frame shards store): every
        option but the float normalisation after them and the decoder's settings, JSON-ready; the frame size under
        one name, `image_size` (the model's `vision_config.image_size`), when the transform gives square frames of
        it (CLIP's: shorter side resized to it, center crop of it)."""
        options = {name: value for name, value in self.to_dict().items()
                   if name in self.valid_kwargs.__annotations__ and name not in NOT_FRAME_OPTIONS}
        side = options.get("size", {}).get("shortest_edge")
        if side is not None and options.get("crop_size") == {"height": side, "width": side}:
            del options["size"], options["crop_size"]
            options["image_size"] = side
        return json.loads(json.dumps(options))

    # -- public API ------------------------------------------------------------------------------

    def preprocess(self, videos, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """
        Args:
            videos: one video or a list of videos (see the class docstring for the accepted kinds).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"`, `"np"`, or `None` for lists
                (`pixel_values`: one `(num_frames, 3, H, W)` float32 array per video).
            **kwargs: any class attribute (`num_frames`, `frame_sampling`, `feature_framerate`, `jitter`,
                `seed`, `video_backend`, `decode_threads`, `size`, `crop_size`, `image_mean`, ...)
                for this call only.

        Returns:
            [`BatchFeature`] with `pixel_values` `(batch, num_frames, 3, crop_height, crop_width)` float32
            and `video_mask` `(batch, num_frames)` int64.
        """
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__)  # the base class only warns
        if unknown:
            raise TypeError(f"unexpected video processor arguments: {sorted(unknown)}")
        _check_options(kwargs)
        return super().preprocess(videos, return_tensors=return_tensors, **kwargs)

    def load_frames(self, video, rng: np.random.Generator | None = None, span: tuple[float, float] | None = None,
                    **options) -> list:
        """Selected frames of one video, before the transform.

        Args:
            video: one video (see the class docstring).
            rng (`np.random.Generator`, *optional*): source of the random sampling modes and the jitter
                (default: a generator seeded with `seed`).
            span (`tuple[float, float]`, *optional*): the clip `[start, end)` in seconds to choose the frames in
                (see `spans` in [`CLIP2VideoVideoProcessorKwargs`]); default: the whole video.
            **options: per-call values of the class attributes.

        Returns:
            a list of `n` frames (`1 <= n <= num_frames`), each a PIL image or an `(H, W, 3)` uint8 array.

        Raises:
            [`VideoDecodeError`] naming the input and the reason.
        """
        options = self._with_defaults(options)
        _check_options(options)
        rng = rng if rng is not None else np.random.default_rng(options["seed"])
        options["spans"] = None
        sample = _sampler(self.sample_frames, options, rng, span)
        frames, _ = self._load_video(video, sample, options)
        return frames

    def load_windows(
        self,
        video,
        spans: Sequence[tuple[float, float]] | None = None,
        window_seconds: float | None = None,
        window_stride: float | None = None,
        rng: np.random.Generator | None = None,
        **options,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """The frames of many windows of one video, the file decoded once, at the model's input size.

        Each window's frames are the ones `load_frames(video, span=window)` chooses (the processor's sampling inside
        the window), resized and cropped by the transform but not yet rescaled or normalised: `transform_frames` of
        them gives the window's `pixel_values` exactly. A video file is opened once and read window group by window
        group (only one group's full-size frames are in memory at a time).

        Args:
            video: one video (see the class docstring).
            spans (`Sequence[tuple[float, float]]`, *optional*): the windows `[start, end)` in seconds; an end past
                the video's end is cut to it, a window starting at or after the end raises [`VideoDecodeError`].
            window_seconds, window_stride (`float`, *optional*): instead of `spans`, windows of `window_seconds`
                every `window_stride` seconds (default: `window_seconds`) over the whole video, as
                [`window_spans`] lays them out for its duration.
            rng (`np.random.Generator`, *optional*): as in `load_frames`, drawn from window after window.
            **options: per-call values of the class attributes.

        Returns:
            `(frames, spans)`: per window a uint8 array `(n, crop_height, crop_width, 3)`, `1 <= n <= num_frames`,
            and the windows used, float64 `(windows, 2)` (start, end) in seconds.

        Raises:
            [`VideoDecodeError`] naming the input and the reason.
        """
        if (spans is None) == (window_seconds is None):
            raise ValueError("give either spans or window_seconds")
        given = options
        options = self._with_defaults(options)
        _check_options(options)
        if not options["do_sample_frames"]:
            raise ValueError("load_windows chooses frames in each window: it needs do_sample_frames=True")
        options["spans"] = None
        if spans is not None:
            spans = [_checked_span(span) for span in spans]
            if not spans:
                raise ValueError("spans is empty")

        def windows_of(duration: float) -> list[tuple[float, float]]:
            if spans is None:
                return window_spans(duration, window_seconds, window_stride)
            return [_clipped_span(span, duration, describe(video)) for span in spans]

        rng = rng if rng is not None else np.random.default_rng(options["seed"])
        resize = partial(self.to_model_size, **given)
        windows, frames = self._load_windows(video, windows_of, partial(self.sample_frames, **options, rng=rng),
                                             options, resize)
        return frames, np.asarray(windows, dtype=np.float64).reshape(-1, 2)

    def preprocess_windows(
        self,
        video,
        spans: Sequence[tuple[float, float]] | None = None,
        window_seconds: float | None = None,
        window_stride: float | None = None,
        return_tensors: str | None = "pt",
        **options,
    ) -> BatchFeature:
        """Model inputs of many windows of one video, the file decoded once ([`load_windows`] + the transform).

        Returns:
            [`BatchFeature`] with `pixel_values` `(windows, num_frames, 3, crop_height, crop_width)` float32,
            `video_mask` `(windows, num_frames)` int64 (as `preprocess` of each window's span gives them) and
            `spans` `(windows, 2)` float64, the windows used in seconds.
        """
        frames, used = self.load_windows(video, spans, window_seconds, window_stride, **options)
        options = {name: value for name, value in options.items() if name != "seed"}
        pixel_values, video_mask = self.collate([list(window) for window in frames], **options)
        data = _as_return_type({"pixel_values": pixel_values, "video_mask": video_mask}, return_tensors)
        data["spans"] = used if return_tensors != "pt" else torch.from_numpy(used)
        return BatchFeature(data=data)

    def transform_frames(self, frames: list, **options) -> torch.Tensor:
        """The original CLIP transform of each frame.

        Args:
            frames: `n` PIL images or `(H, W, 3)` uint8 arrays.

        Returns:
            `torch.Tensor` of shape `(n, 3, crop_height, crop_width)`, float32.
        """
        _check_options(options)
        return self._transform(frames, self._merge_and_standardize_kwargs(**options))

    def to_model_size(self, frames: list, **options) -> np.ndarray:
        """`frames` resized and cropped by the transform, before rescaling and normalising: `(n, crop_height,
        crop_width, 3)` uint8, the exact integers the transform normalises (`transform_frames` of these gives the
        same values as of `frames`)."""
        unscaled = self.transform_frames(frames, **{**options, "do_rescale": False, "do_normalize": False})
        # without rescaling and normalising, the transform returns the resized uint8 values as exact float32 integers
        return unscaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def collate(self, videos: list[list], keep_uint8: bool = False, **options) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of chosen frames as model inputs: `pixel_values` `(batch, num_frames, 3, crop_height, crop_width)`
        float32 (one transform of all frames of the batch) and `video_mask` `(batch, num_frames)` int64; padding
        frames are exact zeros (`video_mask` 0).

        With `keep_uint8`, frames the transform would leave at their size (uint8 arrays at the model's size: prepared
        shards, videos decoded at it) come back as uint8 `(batch, num_frames, H, W, 3)` instead: a quarter of the
        bytes to move and no float pass (in DataLoader workers); [`normalize`] finishes them where the model is.
        """
        options = self._merge_and_standardize_kwargs(**options)
        num_frames = options["num_frames"]
        counts = [len(frames) for frames in videos]
        if max(counts, default=0) > num_frames:
            raise ValueError(f"{max(counts)} frames given for one video, the model takes at most {num_frames}")
        flat = [frame for frames in videos for frame in frames]
        if keep_uint8 and _at_model_size(flat, options):
            pixels = torch.from_numpy(np.stack(flat))
        else:
            pixels = self._transform(flat, options)
        batch = torch.zeros(len(videos), num_frames, *pixels.shape[1:], dtype=pixels.dtype)
        mask = torch.zeros(len(videos), num_frames, dtype=torch.long)
        start = 0
        for position, count in enumerate(counts):
            batch[position, :count] = pixels[start : start + count]
            mask[position, :count] = 1
            start += count
        return batch, mask

    def normalize(self, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """Finishes uint8 frames of [`collate`] (`keep_uint8`) where the tensors are: `(batch, num_frames, H, W, 3)`
        -> float32 `(batch, num_frames, 3, H, W)`, with the transform's float32 rescale and normalisation in its
        order (so the values of the CPU transform, bit for bit); padding frames (`video_mask` 0) exactly zero."""
        options = self._merge_and_standardize_kwargs()
        device = pixel_values.device
        values = pixel_values.permute(0, 1, 4, 2, 3).to(torch.float32)
        if options["do_rescale"]:
            values = values / torch.tensor(np.float32(1.0 / options["rescale_factor"]), device=device)
        if options["do_normalize"]:
            mean = torch.from_numpy(np.asarray(options["image_mean"], dtype=np.float32)).to(device).view(-1, 1, 1)
            std = torch.from_numpy(np.asarray(options["image_std"], dtype=np.float32)).to(device).view(-1, 1, 1)
            values = (values - mean) / std
        real = video_mask.to(device=device, dtype=torch.bool)[:, :, None, None, None]
        return torch.where(real, values, torch.zeros((), dtype=values.dtype, device=device)).contiguous()

    def sample_frames(
        self,
        metadata: CLIP2VideoMetadata,
        num_frames: int | None = None,
        frame_sampling: str | None = None,
        feature_framerate: int | None = None,
        extraction_fps: float | None = None,
        jitter: bool | None = None,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        span: tuple[float, float] | None = None,
        **kwargs,
    ) -> np.ndarray:
        """Indices of the frames to keep: native frame indices for a video file (may repeat, for videos
        under 5 fps), image indices for in-memory frames and folders (the original's 5 fps images).

        Args:
            metadata ([`CLIP2VideoMetadata`]): the input's frame count, and for a video file its timeline.
            num_frames, frame_sampling, feature_framerate, extraction_fps, jitter, seed: as the class
                attributes (which they default to).
            rng (`np.random.Generator`, *optional*): source of randomness (default: seeded with `seed`).
            span (`tuple[float, float]`, *optional*): choose among the frames of `[start, end)` seconds only, timed
                from the span's first frame (in-memory frames and folders: image `k` is at `k / extraction_fps`).

        Returns:
            `np.ndarray` of shape `(n,)`, int64, `1 <= n <= num_frames`, non-decreasing.
        """
        options = dict(
            num_frames=self.num_frames if num_frames is None else num_frames,
            frame_sampling=self.frame_sampling if frame_sampling is None else frame_sampling,
            feature_framerate=self.feature_framerate if feature_framerate is None else feature_framerate,
            jitter=self.jitter if jitter is None else jitter,
        )
        extraction_fps = self.extraction_fps if extraction_fps is None else extraction_fps
        rng = rng if rng is not None else np.random.default_rng(self.seed if seed is None else seed)
        name = metadata.name
        span = _checked_span(span)
        if metadata.read_timeline is None:  # the original's 5 fps images
            if span is None:
                return _select(metadata.total_num_frames, name, rng, **options)
            times = np.arange(metadata.total_num_frames, dtype=np.float64) / extraction_fps
            inside = _frames_in_span(times, metadata.total_num_frames / extraction_fps, span, name)
            return inside[_select(len(inside), name, rng, **options)]
        if span is None and options["frame_sampling"] != "original":
            return _select(metadata.total_num_frames, name, rng, **options)
        timestamps, durations, fps = _frame_times(metadata.read_timeline(), name)
        inside = None
        if span is not None:
            if timestamps is None:
                timestamps = np.arange(metadata.total_num_frames, dtype=np.float64) / fps
            inside = _frames_in_span(timestamps, timeline_duration(timestamps, durations, fps), span, name)
            if options["frame_sampling"] != "original":
                return inside[_select(len(inside), name, rng, **options)]
            # as the span cut out as its own file: its frames, timed from its first one
            timestamps = timestamps[inside] - timestamps[inside[0]]
            durations = None if durations is None else durations[inside]
        count = metadata.total_num_frames if inside is None else len(inside)
        run_frames, run_lengths = ffmpeg_image_runs(count, fps, extraction_fps, timestamps=timestamps,
                                                    frame_duration=durations)
        run_ends = np.cumsum(run_lengths)
        chosen = run_frames[np.searchsorted(run_ends, _select(int(run_ends[-1]), name, rng, **options), side="right")]
        return chosen if inside is None else inside[chosen]

    # -- BaseVideoProcessor hooks ----------------------------------------------------------------

    def _decode_and_sample_videos(self, videos, video_metadata=None, do_sample_frames=None, sample_indices_fn=None):
        """Reads the frames `sample_indices_fn` picks from each video.

        Returns:
            `(videos, metadata)`: per video, a list of PIL images / `(H, W, 3)` uint8 arrays and its
            [`CLIP2VideoMetadata`].
        """
        # the base class hands this call's options over as the sampling function's keywords; one generator
        # per call, drawn from video after video (as `load_frames` one video at a time)
        options = {**self._with_defaults({}), **(sample_indices_fn.keywords if sample_indices_fn else {})}
        videos = _as_batch(videos)
        spans = _spans_per_video(options.pop("spans", None), len(videos))
        options["do_sample_frames"] = bool(do_sample_frames and sample_indices_fn is not None)
        rng = np.random.default_rng(options["seed"])
        loaded = [self._load_video(video, _sampler(self.sample_frames, options, rng, span), options)
                  for video, span in zip(videos, spans)]
        return [frames for frames, _ in loaded], [metadata for _, metadata in loaded]

    def _prepare_input_videos(self, videos, **kwargs) -> list:
        """Frames stay PIL images / uint8 arrays: the original's transform is PIL's."""
        return videos

    def _preprocess(self, videos: list[list], num_frames: int, crop_size: SizeDict, return_tensors=None, **kwargs):
        """Transforms each video's frames and pads to `num_frames` with zeros (`video_mask` 0).

        Returns:
            [`BatchFeature`] with `pixel_values` `(batch, num_frames, 3, crop_height, crop_width)` float32 and
            `video_mask` `(batch, num_frames)` int64, as `return_tensors` asks (`None`: lists over the batch).
        """
        pixel_values = torch.zeros((len(videos), num_frames, 3, crop_size.height, crop_size.width), dtype=torch.float32)
        video_mask = torch.zeros((len(videos), num_frames), dtype=torch.int64)
        for position, frames in enumerate(videos):
            if len(frames) > num_frames:
                raise ValueError(f"video {position}: {len(frames)} frames given, the model takes at most {num_frames}")
            pixel_values[position, : len(frames)] = self._transform(frames, {**kwargs, "crop_size": crop_size})
            video_mask[position, : len(frames)] = 1
        return BatchFeature(data=_as_return_type({"pixel_values": pixel_values, "video_mask": video_mask}, return_tensors))

    # -- input handling --------------------------------------------------------------------------

    def _with_defaults(self, options: dict) -> dict:
        """Per-call options over the instance's values, for the public helpers (`load_frames`, ...)."""
        unknown = set(options) - set(self.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"unexpected video processor arguments: {sorted(unknown)}")
        return {**{name: getattr(self, name, None) for name in self.valid_kwargs.__annotations__}, **options}

    def _load_video(self, video, sample, options: dict) -> tuple[list, CLIP2VideoMetadata]:
        """The selected frames of one video (all of them when `sample` is None) and its metadata."""
        name = describe(video)
        if isinstance(video, (str, os.PathLike)):
            path = os.fspath(video)
            if os.path.isdir(path):
                return _load_frame_folder(path, sample, options)
            if not os.path.exists(path):
                raise VideoDecodeError(f"{path}: no such file or folder")
            if os.path.getsize(path) == 0:
                raise VideoDecodeError(f"{path}: empty file")
            return _load_video_file(path, name, sample, options)
        if isinstance(video, (bytes, bytearray, memoryview)):
            data = bytes(video)
            if not data:
                raise VideoDecodeError(f"{name}: empty bytes")
            return _load_video_file(data, name, sample, options)
        frames = _as_frame_list(video, name)
        metadata = CLIP2VideoMetadata(total_num_frames=len(frames), name=name)
        indices = _pick(metadata, sample, options)
        return [frames[i] for i in indices], metadata

    def _load_windows(self, video, windows_of, sample, options: dict, resize) -> tuple[list, list[np.ndarray]]:
        """`(windows, frames)`: the windows `windows_of(duration)` lays out and, per window, `resize` of the frames
        `sample(metadata, span=window)` picks; a video file is opened once for all windows."""
        name = describe(video)
        if isinstance(video, (str, os.PathLike)) and not os.path.isdir(video) or isinstance(
                video, (bytes, bytearray, memoryview)):
            source = os.fspath(video) if isinstance(video, (str, os.PathLike)) else bytes(video)
            if isinstance(source, str) and not os.path.exists(source):
                raise VideoDecodeError(f"{source}: no such file or folder")
            if len(source) == 0 or isinstance(source, str) and os.path.getsize(source) == 0:
                raise VideoDecodeError(f"{name}: empty {'file' if isinstance(source, str) else 'bytes'}")
            found = {}

            def select(timeline: VideoTimeline, read_timeline) -> list[np.ndarray]:
                timestamps, durations, fps = _frame_times(read_timeline(), name)
                found["windows"] = windows_of(timeline_duration(timestamps, durations, fps, timeline.total_num_frames))
                metadata = CLIP2VideoMetadata(total_num_frames=timeline.total_num_frames, fps=timeline.fps, name=name,
                                              read_timeline=read_timeline, video_backend=options["video_backend"])
                return [np.asarray(sample(metadata=metadata, span=window), dtype=np.int64)
                        for window in found["windows"]]

            frames = read_video(source, name, select, options["video_backend"], options["decode_threads"],
                                convert=resize)
            return found["windows"], frames
        _, metadata = self._load_video(video, lambda metadata: np.zeros(1, dtype=np.int64), options)
        windows = windows_of(metadata.total_num_frames / options["extraction_fps"])
        return windows, [resize(self._load_video(video, partial(sample, span=window), options)[0])
                         for window in windows]


    # -- the original's image transform ----------------------------------------------------------

    @classmethod
    def _transform(cls, frames: list, options: dict) -> torch.Tensor:
        """The original CLIP transform of `n` frames: `(n, 3, crop_height, crop_width)` float32."""
        stacked = cls._transform_unchanged_size(frames, options)
        if stacked is not None:
            return torch.from_numpy(stacked)
        return torch.from_numpy(np.stack([cls._transform_pil(frame, options) for frame in frames]))

    @staticmethod
    def _transform_unchanged_size(frames: list, options) -> np.ndarray | None:
        """`_transform_pil` of all frames at once when they are `(H, W, 3)` uint8 arrays of one size that the resize
        and the crop leave as it is (videos decoded at the model's size, like synthetic-motion's): the same float32
        operations on the stacked frames, so the same values, without a PIL round trip per frame.

        Returns:
            `(n, 3, H, W)` float32, or None when a frame needs resizing or cropping or is not such an array.
        """
        if not _at_model_size(frames, options):
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


class VideoProcessorOptionError(ValueError):
    """A video processor option with a bad value; `option` names it (scripts show it as `--{option}`)."""

    def __init__(self, option: str, reason: str):
        super().__init__(f"{option} {reason}")
        self.option = option


def _check_options(options: dict) -> None:
    """Rejects bad option values (those given in `options`) with a [`VideoProcessorOptionError`] naming the option:
    the one check of the frame options (the processor's construction, per-call options, the sampling functions)."""
    if "frame_sampling" in options and options["frame_sampling"] not in FRAME_SAMPLING_MODES:
        raise VideoProcessorOptionError(
            "frame_sampling", f"must be one of {FRAME_SAMPLING_MODES}, got {options['frame_sampling']!r}")
    if "video_backend" in options and options["video_backend"] not in VIDEO_BACKENDS:
        raise VideoProcessorOptionError(
            "video_backend", f"must be one of {VIDEO_BACKENDS}, got {options['video_backend']!r}")
    for name in POSITIVE_INT_OPTIONS:
        value = options.get(name)
        if name in options and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
            raise VideoProcessorOptionError(name, f"must be >= 1, got {value!r}")
    for name in ("size", "crop_size"):
        value = options.get(name)
        value = dict(value) if isinstance(value, SizeDict) else value
        sides = value.values() if isinstance(value, dict) else [value] if value is not None else []
        if any(side is not None and (not isinstance(side, (int, np.integer)) or side < 1) for side in sides):
            raise VideoProcessorOptionError(name, f"must hold sizes >= 1 in pixels, got {value!r}")
    for name in ("image_mean", "image_std"):
        if options.get(name) is None:
            continue
        try:
            values = np.asarray(options[name], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            values = None
        if values is None or len(values) not in (1, 3) or not np.all(np.isfinite(values)):
            raise VideoProcessorOptionError(name, f"must be 1 or 3 finite numbers (one per RGB channel), got "
                                                  f"{options[name]!r}")
        if name == "image_std" and np.any(values <= 0):
            raise VideoProcessorOptionError(name, f"must be > 0 (frames are divided by it), got {options[name]!r}")
    rescale = options.get("rescale_factor")
    if rescale is not None and (isinstance(rescale, bool) or not isinstance(rescale, (int, float)) or
                                not np.isfinite(rescale) or rescale <= 0):
        raise VideoProcessorOptionError("rescale_factor", f"must be a number > 0, got {rescale!r}")
    if options.get("do_convert_rgb") is False:
        raise VideoProcessorOptionError(
            "do_convert_rgb", "=False is not supported: the model takes RGB frames (always converted)")
    if options.get("fps") is not None:
        raise VideoProcessorOptionError("fps", "is not used by CLIP2Video: frames are sampled from the 5 fps images "
                                               "(see extraction_fps, feature_framerate and num_frames)")


def _at_model_size(frames: list, options: dict) -> bool:
    """True when every frame is a uint8 `(H, W, 3)` array of one size that the resize and the crop (`options`, as
    `_merge_and_standardize_kwargs` gives them) leave as it is."""
    first = frames[0] if len(frames) else None
    if not isinstance(first, np.ndarray) or first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
        return False
    if any(not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != first.shape
           for frame in frames):
        return False
    height, width = first.shape[:2]
    if options["do_resize"] and min(height, width) != options["size"].shortest_edge:
        return False
    return not options["do_center_crop"] or (options["crop_size"].height, options["crop_size"].width) == (height, width)


def window_spans(duration: float, window_seconds: float, window_stride: float | None = None) -> list[tuple[float, float]]:
    """Windows `[start, end)` in seconds over a video of `duration` seconds: `window_seconds` long, one every
    `window_stride` seconds (default: `window_seconds`) from 0. A video not longer than one window is one window
    `[0, duration)`; otherwise every window is `window_seconds` long and the last one ends at the video's end (it
    starts at `duration - window_seconds` when the stride does not land there).
    """
    window_stride = window_seconds if window_stride is None else window_stride
    for option, value in (("window_seconds", window_seconds), ("window_stride", window_stride)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{option} must be a positive number of seconds, got {value!r}")
    if duration <= window_seconds + 1e-6:
        return [(0.0, round(float(duration), 6))]
    last = duration - window_seconds
    starts = [round(k * window_stride, 6) for k in range(int(np.floor(last / window_stride + 1e-6)) + 1)]
    if starts[-1] < last - 1e-6:
        starts.append(round(last, 6))
    return [(start, round(min(start + window_seconds, duration), 6)) for start in starts]


def timeline_duration(timestamps: np.ndarray | None, durations: np.ndarray | None, fps: float,
                      num_frames: int | None = None) -> float:
    """Seconds from the start of a video (its container's) to the end of its last frame."""
    if timestamps is None:
        return float(num_frames) / fps
    lasting = np.full(len(timestamps), 1.0 / fps) if durations is None else np.where(durations > 0, durations, 1.0 / fps)
    return float(np.max(timestamps + lasting))


def _frame_times(timeline: VideoTimeline, name: str) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """A video file's per-frame times and durations (None when unusable: constant rate then) and its frame rate."""
    if not timeline.fps or not np.isfinite(timeline.fps) or timeline.fps <= 0:
        raise VideoDecodeError(f"{name}: the video stream has no frame rate")
    timestamps, durations = timeline.timestamps, timeline.durations
    if timestamps is not None and (len(timestamps) != timeline.total_num_frames or not np.all(np.isfinite(timestamps))):
        timestamps, durations = None, None
    return timestamps, durations, float(timeline.fps)


def _checked_span(span) -> tuple[float, float] | None:
    """`span` as `(start, end)` floats, or None; a malformed span is a ValueError naming it."""
    if span is None:
        return None
    try:
        start, end = (float(value) for value in span)
    except (TypeError, ValueError):
        raise ValueError(f"a span is (start, end) in seconds, got {span!r}") from None
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end <= start:
        raise ValueError(f"a span is (start, end) seconds with 0 <= start < end, got {span!r}")
    return start, end


def _clipped_span(span: tuple[float, float], duration: float, name: str) -> tuple[float, float]:
    """`span` with its end cut to the video's end; a span starting at or after the end is a `VideoDecodeError`."""
    start, end = span
    if start >= duration - 1e-6:
        raise VideoDecodeError(f"{name}: span [{start:g}, {end:g}) s starts at or after the end of the video "
                               f"({duration:.3f} s)")
    return start, min(end, duration)


def _frames_in_span(times: np.ndarray, duration: float, span: tuple[float, float], name: str) -> np.ndarray:
    """Indices of the frames shown from `times[i]` inside `span` (the frame on screen at its start when none
    begins inside it)."""
    start, end = _clipped_span(span, duration, name)
    inside = np.flatnonzero((times >= start - 1e-6) & (times < end - 1e-6))
    if len(inside) == 0:
        inside = np.array([max(int(np.searchsorted(times, start + 1e-6, side="right")) - 1, 0)], dtype=np.int64)
    return inside


def _spans_per_video(spans, num_videos: int) -> list:
    """The `spans` option as one span (or None) per video: one `(start, end)` pair is for every video."""
    if spans is None:
        return [None] * num_videos
    if len(spans) == 2 and all(isinstance(value, (int, float, np.number)) for value in spans):
        return [tuple(spans)] * num_videos
    if len(spans) != num_videos:
        raise ValueError(f"spans: {len(spans)} spans for {num_videos} videos (give one per video, or one for all)")
    return list(spans)


def _sampler(sample_frames, options: dict, rng, span):
    """The sampling function of one video (None when sampling is off), for its span."""
    if not options["do_sample_frames"]:
        if span is not None:
            raise ValueError("a span needs frame sampling (do_sample_frames=True)")
        return None
    keywords = {name: value for name, value in options.items() if name != "spans"}
    return partial(sample_frames, **keywords, rng=rng, span=span)


def _pick(metadata: CLIP2VideoMetadata, sample, options: dict) -> np.ndarray:
    """`sample(metadata)`, or every frame when sampling is off (at most `num_frames` of them)."""
    if sample is not None:
        indices = np.asarray(sample(metadata=metadata), dtype=np.int64)
    else:
        if metadata.read_timeline is not None:
            raise ValueError(f"{metadata.name}: a video file needs frame sampling (do_sample_frames=False takes "
                             "in-memory frames as they are)")
        if metadata.total_num_frames > options["num_frames"]:
            raise ValueError(f"{metadata.name}: {metadata.total_num_frames} frames with do_sample_frames=False, "
                             f"the model takes at most num_frames={options['num_frames']}")
        indices = np.arange(metadata.total_num_frames, dtype=np.int64)
    metadata.frames_indices = indices.tolist()
    return indices


def _select(num_images: int, name: str, rng, frame_sampling: str, feature_framerate: int, num_frames: int,
            jitter: bool) -> np.ndarray:
    """Indices (into `num_images` frames / 5 fps images) of the frames to keep."""
    if frame_sampling == "original":
        indices = original_frame_indices(num_images, feature_framerate, num_frames, jitter=jitter, rng=rng)
        if len(indices) == 0:
            raise VideoDecodeError(
                f"{name}: too short: {num_images} frame(s) give no frame at feature_framerate={feature_framerate}"
            )
        return indices
    if num_images <= 0:
        raise VideoDecodeError(f"{name}: zero frames")
    if frame_sampling == "uniform":
        return uniform_frame_indices(num_images, num_frames)
    return random_segment_frame_indices(num_images, num_frames, rng)


def _load_video_file(source: str | bytes, name: str, sample, options: dict) -> tuple[list, CLIP2VideoMetadata]:
    """Decodes the selected frames of a video file (path or bytes)."""
    found = {}

    def select(timeline: VideoTimeline, read_timeline) -> np.ndarray:
        found["metadata"] = CLIP2VideoMetadata(
            total_num_frames=timeline.total_num_frames, fps=timeline.fps, name=name, read_timeline=read_timeline,
            video_backend=options["video_backend"],
        )
        return _pick(found["metadata"], sample, options)

    frames = read_video(source, name, select, options["video_backend"], options["decode_threads"])
    return frames, found["metadata"]


def _load_frame_folder(path: str, sample, options: dict) -> tuple[list, CLIP2VideoMetadata]:
    """The selected images of a folder of frames (sorted names give the temporal order)."""
    names = sorted(name for name in os.listdir(path) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise VideoDecodeError(f"{path}: folder holds no image frames")
    metadata = CLIP2VideoMetadata(total_num_frames=len(names), name=path)
    frames = []
    for index in _pick(metadata, sample, options):
        file = os.path.join(path, names[index])
        try:
            with Image.open(file) as image:
                frames.append(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise VideoDecodeError(f"{file}: unreadable frame ({first_line(error)})") from None
    return frames, metadata


def _is_single_frame(item) -> bool:
    if isinstance(item, Image.Image):
        return True
    return isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 3


def _as_batch(videos) -> list:
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
        if all(_is_single_frame(item) for item in videos):
            return [list(videos)]
        return list(videos)
    raise VideoDecodeError(f"<{type(videos).__name__}>: not a video input")


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


def _as_return_type(data: dict[str, torch.Tensor], return_tensors) -> dict:
    """`"pt"`: tensors; `"np"`: arrays; `None`: lists over the batch (arrays per item for float data, like the
    image processors; nested int lists for ids and masks, like the tokenizer)."""
    if return_tensors in ("pt", TensorType.PYTORCH):
        return data
    if return_tensors in ("np", TensorType.NUMPY):
        return {key: value.numpy() for key, value in data.items()}
    if return_tensors is None:
        return {key: list(value.numpy()) if value.is_floating_point() else value.tolist() for key, value in data.items()}
    raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")


# ----------------------------------------------------------------------------------------------------
# Processor
# ----------------------------------------------------------------------------------------------------

TEXT_KWARGS = ("padding", "truncation", "max_length", "max_words", "pad_to_multiple_of", "return_attention_mask")


class CLIP2VideoProcessor(ProcessorMixin):
    r"""
    CLIP2Video processor: a CLIP tokenizer for captions and a [`CLIP2VideoVideoProcessor`] for videos.

    `processor(text=..., videos=..., return_tensors="pt")` returns `input_ids` and `attention_mask`
    `(batch, max_words)` for the text and `pixel_values` `(batch, num_frames, 3, H, W)` and
    `video_mask` `(batch, num_frames)` for the videos. Captions are cleaned like the original (ftfy,
    HTML unescape twice, whitespace collapse, lower case), truncated to `max_words` tokens keeping the
    end token, and padded with `text_pad_token_id` (0 like the original; the model reads the mask).
    The tokenizer's own options (`padding`, `truncation`, `max_length`, `pad_to_multiple_of`,
    `return_attention_mask`) are accepted per call, flat or as `text_kwargs`; video options flat or as
    `videos_kwargs`.

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
    >>> processor.batch_decode(inputs["input_ids"], skip_special_tokens=True)
    ['a man plays guitar']
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

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos=None,
        return_tensors: str | None = "pt",
        text_kwargs: dict | None = None,
        videos_kwargs: dict | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            text (`str` or `list[str]`, *optional*): caption(s).
            videos (*optional*): one video or a list of videos (see [`CLIP2VideoVideoProcessor`]).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"`, `"np"`, or `None` for lists (ids
                and masks as lists of ints, like the tokenizer).
            text_kwargs, videos_kwargs (`dict`, *optional*): options per modality (transformers' convention).
            **kwargs: text options ([`~CLIP2VideoProcessor.tokenize`]: `padding`, `truncation`,
                `max_length`/`max_words`, ...) and video processor options (`num_frames`, `frame_sampling`,
                `seed`, ...) for this call; options of the modality not given are ignored, unknown names raise.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (int64, `(batch, max_words)`) when `text`
            is given and `pixel_values`, `video_mask` when `videos` is given.
        """
        if text is None and videos is None:
            raise ValueError("give `text`, `videos` or both")
        text_options = {**(text_kwargs or {}), **{name: kwargs.pop(name) for name in TEXT_KWARGS if name in kwargs}}
        video_options = {**(videos_kwargs or {}), **kwargs}
        unknown = set(text_options) - set(TEXT_KWARGS) | set(video_options) - set(self.video_processor.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"unexpected arguments: {sorted(unknown)}")
        data = {}
        if text is not None:
            data.update(self.tokenize(text, return_tensors=return_tensors, **text_options))
        if videos is not None:
            data.update(self.video_processor(videos, return_tensors=return_tensors, **video_options))
        return BatchFeature(data=data)

    def tokenize(
        self,
        text: str | list[str],
        max_words: int | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = "max_length",
        truncation: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool = True,
    ) -> dict:
        """Original-style tokenisation: `[SOT] + tokens[: max_words - 2] + [EOT]`, padded to `max_words`
        with `text_pad_token_id` (the defaults); the tokenizer's options change it as they do there.

        Args:
            text (`str` or `list[str]`): caption(s), cleaned like the original first.
            max_words / max_length (`int`, *optional*): length including start and end tokens (the same
                option under the original's and transformers' names; defaults to `self.max_words`).
            return_tensors (`str`, *optional*, defaults to `"pt"`): `"pt"`, `"np"` or `None` (lists).
            padding, truncation, pad_to_multiple_of: as the tokenizer's (`padding=False` leaves each
                caption its own length, which needs `return_tensors=None`).
            return_attention_mask (`bool`, defaults to `True`): also return `attention_mask`.

        Returns:
            dict with `input_ids` (and `attention_mask`), each `(batch, length)` int64.
        """
        if max_words is not None and max_length is not None and max_words != max_length:
            raise ValueError(f"max_words={max_words} and max_length={max_length} disagree (they are the same option)")
        length = next((value for value in (max_length, max_words) if value is not None), self.max_words)
        if not isinstance(length, int) or length < 2:
            raise ValueError(f"max_words must be an int >= 2 (start and end tokens), got {length!r}")
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(item, str) for item in texts):
            raise TypeError("text must be a string or a list of strings")
        encoded = self.tokenizer(
            [clean_caption(item) for item in texts],
            padding=padding,
            truncation=truncation,
            max_length=length,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=True,
        )
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
        if self.text_pad_token_id is not None:
            input_ids = [[token if keep else self.text_pad_token_id for token, keep in zip(ids, mask)]
                         for ids, mask in zip(input_ids, attention_mask)]
        data = {"input_ids": input_ids, "attention_mask": attention_mask} if return_attention_mask else {"input_ids": input_ids}
        if return_tensors is None:
            return data
        if len({len(ids) for ids in input_ids}) > 1:
            raise ValueError(f"captions of different lengths cannot be returned as tensors (padding={padding!r}); "
                             "pad them or use return_tensors=None")
        arrays = {key: np.asarray(value, dtype=np.int64).reshape(len(texts), -1) for key, value in data.items()}
        return _as_return_type({key: torch.from_numpy(value) for key, value in arrays.items()}, return_tensors)

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        """Captions of a batch of token ids (`(batch, length)` tensor, array or lists): the tokenizer's
        `batch_decode` after dropping the padding behind each end token (padding with 0 would print "!")."""
        if isinstance(sequences, (torch.Tensor, np.ndarray)):
            sequences = sequences.tolist()
        return self.tokenizer.batch_decode([self._strip_padding(ids) for ids in sequences], **kwargs)

    def decode(self, token_ids, **kwargs) -> str:
        """Caption of one sequence of token ids, without the padding behind its end token."""
        if isinstance(token_ids, (torch.Tensor, np.ndarray)):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            return self.tokenizer.decode(token_ids, **kwargs)
        return self.tokenizer.decode(self._strip_padding(token_ids), **kwargs)

    def _strip_padding(self, ids) -> list[int]:
        """Ids up to and including the first end token: what follows it is padding."""
        ids = [int(token) for token in ids]
        end = self.tokenizer.eos_token_id
        return ids[: ids.index(end) + 1] if end in ids else ids

    def _upload_modified_files(self, working_dir, repo_id: str, *args, **kwargs):
        """The upload of `push_to_hub`, with the project's model card instead of transformers' placeholder (see
        `hub_clip2video.write_push_card`)."""
        write_push_card(working_dir, repo_id, getattr(self.tokenizer, "name_or_path", None))
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values", "video_mask"]


CLIP2VideoVideoProcessor.register_for_auto_class("AutoVideoProcessor")
CLIP2VideoProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "CLIP2VideoMetadata",
    "CLIP2VideoProcessor",
    "CLIP2VideoVideoProcessor",
    "VideoDecodeError",
    "VideoProcessorOptionError",
    "clean_caption",
    "ffmpeg_frame_indices",
    "ffmpeg_image_runs",
    "original_frame_indices",
    "random_segment_frame_indices",
    "uniform_frame_indices",
    "window_spans",
]
