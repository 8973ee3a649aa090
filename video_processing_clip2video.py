# Copyright 2025 The clip2video authors. Licensed under the MIT licence.
"""Video processor of CLIP2Video: video decoding, the original's frame choice and the CLIP image transform.

The original CLIP2Video pipeline (arXiv 2106.11097) first dumped every video to JPEG at 5 fps with `ffmpeg -r 5`,
then picked up to `max_frames` of those images (`RawFrameExtractor`) and transformed them with CLIP's transform.
`CLIP2VideoVideoProcessor` reproduces that without the JPEG dump:

* `video_readers.ffmpeg_frame_indices` maps a video's own frames to the images `ffmpeg -r 5` would have written,
  `frame_sampling.original_frame_indices` is the original selection over those images, so decoding a video file
  directly yields the very frames the original saw (in ffmpeg's orientation);
* videos are decoded with decord (only the needed frames are converted), falling back to PyAV for what decord
  cannot open (AV1, for one) — see `video_readers`;
* a clip `[start, end)` of a video (`spans`) or many windows of one video decoded once (`load_windows`);
* bad inputs raise `VideoDecodeError` (never an all-zero clip).

It owns the frame options: built once for a model (`for_model`), validated once, saved with the model, and handed
as the object to the data path, prepared shards and search.
"""

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from PIL import Image

from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling, SizeDict
from transformers.processing_utils import VideosKwargs
from transformers.utils import TensorType
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata


try:  # loaded as Hub remote code (a package) ...
    from .frame_sampling import (
        VideoProcessorOptionError,
        check_options,
        checked_span,
        clipped_span,
        frame_times,
        frames_in_span,
        select_frames,
        spans_per_video,
        timeline_duration,
        window_spans,
    )
    from .video_inputs import resolve_video_input
    from .video_readers import (
        VideoDecodeError, VideoTimeline, describe, ffmpeg_image_runs, first_line, read_video,
    )
except ImportError:  # ... or as a top-level module of the installed project
    from frame_sampling import (
        VideoProcessorOptionError,
        check_options,
        checked_span,
        clipped_span,
        frame_times,
        frames_in_span,
        select_frames,
        spans_per_video,
        timeline_duration,
        window_spans,
    )
    from video_inputs import resolve_video_input
    from video_readers import (
        VideoDecodeError, VideoTimeline, describe, ffmpeg_image_runs, first_line, read_video,
    )


#: Options that leave the chosen frames at the model's size as they are: the float normalisation after them, the
#: decoder's settings and the per-call ones (`CLIP2VideoVideoProcessor.frame_options` is every other option).
NOT_FRAME_OPTIONS = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std", "video_backend",
                     "decode_threads", "seed", "spans", "return_metadata", "return_tensors", "device")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Frames of a long video read (then resized) at a time by `load_windows`.
WINDOW_READ_FRAMES = 64


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
        check_options(kwargs)
        super().__init__(**kwargs)
        check_options({name: getattr(self, name) for name in self.valid_kwargs.__annotations__})

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
            check_options({"image_size": image_size})
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
        check_options(kwargs)
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
        check_options(options)
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
        check_options(options)
        if not options["do_sample_frames"]:
            raise ValueError("load_windows chooses frames in each window: it needs do_sample_frames=True")
        options["spans"] = None
        if spans is not None:
            spans = [checked_span(span) for span in spans]
            if not spans:
                raise ValueError("spans is empty")

        def windows_of(duration: float) -> list[tuple[float, float]]:
            if spans is None:
                return window_spans(duration, window_seconds, window_stride)
            return [clipped_span(span, duration, describe(video)) for span in spans]

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
        data = as_return_type({"pixel_values": pixel_values, "video_mask": video_mask}, return_tensors)
        data["spans"] = used if return_tensors != "pt" else torch.from_numpy(used)
        return BatchFeature(data=data)

    def transform_frames(self, frames: list, **options) -> torch.Tensor:
        """The original CLIP transform of each frame.

        Args:
            frames: `n` PIL images or `(H, W, 3)` uint8 arrays.

        Returns:
            `torch.Tensor` of shape `(n, 3, crop_height, crop_width)`, float32.
        """
        check_options(options)
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

    def sample_frames(self, metadata: CLIP2VideoMetadata, rng: np.random.Generator | None = None,
                      span: tuple[float, float] | None = None, **options) -> np.ndarray:
        """Indices of the frames to keep: native frame indices for a video file (may repeat, for videos
        under 5 fps), image indices for in-memory frames and folders (the original's 5 fps images).

        Args:
            metadata ([`CLIP2VideoMetadata`]): the input's frame count, and for a video file its timeline.
            rng (`np.random.Generator`, *optional*): source of randomness (default: seeded with `seed`).
            span (`tuple[float, float]`, *optional*): choose among the frames of `[start, end)` seconds only, timed
                from the span's first frame (in-memory frames and folders: image `k` is at `k / extraction_fps`).
            **options: per-call values of the class attributes (`num_frames`, `frame_sampling`,
                `feature_framerate`, `extraction_fps`, `jitter`, `seed`); unset or None: the processor's.

        Returns:
            `np.ndarray` of shape `(n,)`, int64, `1 <= n <= num_frames`, non-decreasing.
        """
        given = {name: value for name, value in options.items() if value is not None}
        options = self._with_defaults({name: value for name, value in given.items()
                                       if name in self.valid_kwargs.__annotations__})
        rng = rng if rng is not None else np.random.default_rng(options["seed"])
        return _sample_indices(metadata, checked_span(span), rng, options)

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
        spans = spans_per_video(options.pop("spans", None), len(videos))
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
        return BatchFeature(data=as_return_type({"pixel_values": pixel_values, "video_mask": video_mask}, return_tensors))

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
        video = resolve_video_input(video)  # datasets' video values, http(s) URLs
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
        `sample(metadata, span=window)` picks. A video file is opened once and read forward once: the frames all
        windows pick, in the file's order, `WINDOW_READ_FRAMES` at a time, each resized before the next are read."""
        name = describe(video)
        video = resolve_video_input(video)  # datasets' video values, http(s) URLs
        if isinstance(video, (str, os.PathLike)) and not os.path.isdir(video) or isinstance(
                video, (bytes, bytearray, memoryview)):
            source = os.fspath(video) if isinstance(video, (str, os.PathLike)) else bytes(video)
            if isinstance(source, str) and not os.path.exists(source):
                raise VideoDecodeError(f"{source}: no such file or folder")
            if len(source) == 0 or isinstance(source, str) and os.path.getsize(source) == 0:
                raise VideoDecodeError(f"{name}: empty {'file' if isinstance(source, str) else 'bytes'}")
            found = {}

            def select(timeline: VideoTimeline, read_timeline) -> list[np.ndarray]:
                timestamps, durations, fps = frame_times(read_timeline(), name)
                found["windows"] = windows_of(timeline_duration(timestamps, durations, fps, timeline.total_num_frames))
                metadata = CLIP2VideoMetadata(total_num_frames=timeline.total_num_frames, fps=timeline.fps, name=name,
                                              read_timeline=read_timeline, video_backend=options["video_backend"])
                found["picks"] = [np.asarray(sample(metadata=metadata, span=window), dtype=np.int64)
                                  for window in found["windows"]]
                found["read"] = np.unique(np.concatenate(found["picks"]))
                return [found["read"][start : start + WINDOW_READ_FRAMES]
                        for start in range(0, len(found["read"]), WINDOW_READ_FRAMES)]

            resized = np.concatenate(read_video(source, name, select, options["video_backend"],
                                                options["decode_threads"], convert=resize))
            return found["windows"], [resized[np.searchsorted(found["read"], picks)] for picks in found["picks"]]
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

def _sampler(sample_frames, options: dict, rng, span):
    """The sampling function of one video (None when sampling is off), for its span."""
    if not options["do_sample_frames"]:
        if span is not None:
            raise ValueError("a span needs frame sampling (do_sample_frames=True)")
        return None
    keywords = {name: value for name, value in options.items() if name != "spans"}
    return partial(sample_frames, **keywords, rng=rng, span=span)


def _sample_indices(metadata: CLIP2VideoMetadata, span: tuple[float, float] | None, rng, options: dict) -> np.ndarray:
    """`sample_frames`' indices for the processor's `options` (every option, the call's over the processor's)."""
    choice = {name: options[name] for name in ("frame_sampling", "feature_framerate", "num_frames", "jitter")}
    name, extraction_fps = metadata.name, options["extraction_fps"]
    if metadata.read_timeline is None:  # the original's 5 fps images
        if span is None:
            return select_frames(metadata.total_num_frames, name, rng, **choice)
        times = np.arange(metadata.total_num_frames, dtype=np.float64) / extraction_fps
        inside = frames_in_span(times, metadata.total_num_frames / extraction_fps, span, name)
        return inside[select_frames(len(inside), name, rng, **choice)]
    if span is None and choice["frame_sampling"] != "original":
        return select_frames(metadata.total_num_frames, name, rng, **choice)
    timestamps, durations, fps = frame_times(metadata.read_timeline(), name)
    inside = None
    if span is not None:
        if timestamps is None:
            timestamps = np.arange(metadata.total_num_frames, dtype=np.float64) / fps
        inside = frames_in_span(timestamps, timeline_duration(timestamps, durations, fps), span, name)
        if choice["frame_sampling"] != "original":
            return inside[select_frames(len(inside), name, rng, **choice)]
        # as the span cut out as its own file: its frames, timed from its first one
        timestamps = timestamps[inside] - timestamps[inside[0]]
        durations = None if durations is None else durations[inside]
    count = metadata.total_num_frames if inside is None else len(inside)
    run_frames, run_lengths = ffmpeg_image_runs(count, fps, extraction_fps, timestamps=timestamps,
                                                frame_duration=durations)
    run_ends = np.cumsum(run_lengths)
    chosen = run_frames[np.searchsorted(run_ends, select_frames(int(run_ends[-1]), name, rng, **choice), side="right")]
    return chosen if inside is None else inside[chosen]


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
    if isinstance(videos, (str, os.PathLike, bytes, bytearray, memoryview, dict)):  # dict: a datasets video value
        return [videos]
    if type(videos).__module__.startswith("torchcodec"):  # a decoded datasets.Video() value
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


def as_return_type(data: dict[str, torch.Tensor], return_tensors) -> dict:
    """`"pt"`: tensors; `"np"`: arrays; `None`: lists over the batch (arrays per item for float data, like the
    image processors; nested int lists for ids and masks, like the tokenizer)."""
    if return_tensors in ("pt", TensorType.PYTORCH):
        return data
    if return_tensors in ("np", TensorType.NUMPY):
        return {key: value.numpy() for key, value in data.items()}
    if return_tensors is None:
        return {key: list(value.numpy()) if value.is_floating_point() else value.tolist() for key, value in data.items()}
    raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")


CLIP2VideoVideoProcessor.register_for_auto_class("AutoVideoProcessor")

__all__ = [
    "CLIP2VideoMetadata",
    "CLIP2VideoVideoProcessor",
    "CLIP2VideoVideoProcessorKwargs",
    "NOT_FRAME_OPTIONS",
    "VideoDecodeError",
    "VideoProcessorOptionError",
]
