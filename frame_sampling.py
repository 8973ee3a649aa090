# Copyright 2025 The clip2video authors. Licensed under the MIT licence.
"""Which frames CLIP2Video's video processor keeps: pure functions of frame counts and times, and the option rules.

* `original_frame_indices` is the original's selection (`RawFrameExtractor.video_to_tensor`) over the 5 fps images
  `ffmpeg -r 5` writes (`num_images` images in, up to `num_frames` frames out); `uniform_frame_indices` and
  `random_segment_frame_indices` the other sampling modes;
* time spans: the frames of a clip `[start, end)` of a video (`frames_in_span`), and the windows of a long video
  (`window_spans`);
* `check_options` is the one check of the video processor's options (its construction, per-call options and these
  functions), raising `VideoProcessorOptionError` naming the option.

Names: `num_frames` is always the frames out (the model's frames per video), `num_images` the 5 fps images in, and
`total_num_frames` the frames of a video file (transformers' `VideoMetadata` name).
"""

import numpy as np

from transformers.image_utils import SizeDict


try:  # loaded as Hub remote code (a package) ...
    from .video_readers import VIDEO_BACKENDS, VideoDecodeError, VideoTimeline
except ImportError:  # ... or as a top-level module of the installed project
    from video_readers import VIDEO_BACKENDS, VideoDecodeError, VideoTimeline


FRAME_SAMPLING_MODES = ("original", "uniform", "random_segment")
#: Options that are integers >= 1.
POSITIVE_INT_OPTIONS = ("num_frames", "feature_framerate", "image_size")


class VideoProcessorOptionError(ValueError):
    """A video processor option with a bad value; `option` names it (scripts show it as `--{option}`)."""

    def __init__(self, option: str, reason: str):
        super().__init__(f"{option} {reason}")
        self.option = option


def check_options(options: dict) -> None:
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
    `linspace` picks `num_frames` of them (the original's `max_frames`). With `jitter` (the original's training mode)
    the interior
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
    check_options({"feature_framerate": feature_framerate, "num_frames": num_frames})
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
    check_options({"num_frames": num_frames})
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
    check_options({"num_frames": num_frames})
    if num_images <= num_frames:
        return np.arange(max(num_images, 0), dtype=np.int64)
    rng = rng if rng is not None else np.random.default_rng()
    bounds = np.linspace(0, num_images, num_frames + 1)
    starts = np.ceil(bounds[:-1]).astype(np.int64)
    ends = np.maximum(np.ceil(bounds[1:]).astype(np.int64), starts + 1)
    return (starts + np.floor(rng.random(num_frames) * (ends - starts)).astype(np.int64)).clip(max=num_images - 1)


def select_frames(num_images: int, name: str, rng, frame_sampling: str, feature_framerate: int, num_frames: int,
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


# ----------------------------------------------------------------------------------------------------
# Time spans and windows
# ----------------------------------------------------------------------------------------------------


def window_spans(duration: float, window_seconds: float,
                 window_stride: float | None = None) -> list[tuple[float, float]]:
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
    lasting = 1.0 / fps if durations is None else np.where(durations > 0, durations, 1.0 / fps)
    return float(np.max(timestamps + lasting))


def frame_times(timeline: VideoTimeline, name: str) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """A video file's per-frame times and durations (None when unusable: constant rate then) and its frame rate."""
    if not timeline.fps or not np.isfinite(timeline.fps) or timeline.fps <= 0:
        raise VideoDecodeError(f"{name}: the video stream has no frame rate")
    timestamps, durations = timeline.timestamps, timeline.durations
    if timestamps is not None and (len(timestamps) != timeline.total_num_frames or not np.all(np.isfinite(timestamps))):
        timestamps, durations = None, None
    return timestamps, durations, float(timeline.fps)


def checked_span(span) -> tuple[float, float] | None:
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


def clipped_span(span: tuple[float, float], duration: float, name: str) -> tuple[float, float]:
    """`span` with its end cut to the video's end; a span starting at or after the end is a `VideoDecodeError`."""
    start, end = span
    if start >= duration - 1e-6:
        raise VideoDecodeError(f"{name}: span [{start:g}, {end:g}) s starts at or after the end of the video "
                               f"({duration:.3f} s)")
    return start, min(end, duration)


def frames_in_span(times: np.ndarray, duration: float, span: tuple[float, float], name: str) -> np.ndarray:
    """Indices of the frames shown from `times[i]` inside `span` (the frame on screen at its start when none
    begins inside it)."""
    start, end = clipped_span(span, duration, name)
    inside = np.flatnonzero((times >= start - 1e-6) & (times < end - 1e-6))
    if len(inside) == 0:
        inside = np.array([max(int(np.searchsorted(times, start + 1e-6, side="right")) - 1, 0)], dtype=np.int64)
    return inside


def spans_per_video(spans, num_videos: int) -> list:
    """The `spans` option as one span (or None) per video: one `(start, end)` pair is for every video."""
    if spans is None:
        return [None] * num_videos
    if len(spans) == 2 and all(isinstance(value, (int, float, np.number)) for value in spans):
        return [tuple(spans)] * num_videos
    if len(spans) != num_videos:
        raise ValueError(f"spans: {len(spans)} spans for {num_videos} videos (give one per video, or one for all)")
    return list(spans)


__all__ = [
    "FRAME_SAMPLING_MODES",
    "VideoProcessorOptionError",
    "check_options",
    "checked_span",
    "clipped_span",
    "frame_times",
    "frames_in_span",
    "original_frame_indices",
    "random_segment_frame_indices",
    "select_frames",
    "spans_per_video",
    "timeline_duration",
    "uniform_frame_indices",
    "window_spans",
]
