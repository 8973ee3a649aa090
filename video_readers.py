# Copyright 2025 The clip2video authors. Licensed under the MIT licence.
"""Video file readers for CLIP2Video's processor, and the map from a video's frames to `ffmpeg -r 5` images.

The original CLIP2Video dumped every video to JPEG with `ffmpeg -i video -r 5` before anything else. This
module lets the processor read the frames those images show straight from the video file:

* `ffmpeg_image_runs` / `ffmpeg_frame_indices` reproduce ffmpeg 5.1's constant-rate conversion from each
  frame's own timestamp and packet duration (so variable-frame-rate files give ffmpeg's images too);
* `read_video` decodes only the frames a selection asks for, with decord (random access) and PyAV
  (FFmpeg; what decord cannot open, AV1 for one) as a fallback;
* frames come in ffmpeg's orientation: a display-matrix rotation (phone videos) is applied as ffmpeg's
  `autorotate` does;
* a file that cannot give its frames raises `VideoDecodeError` naming it and the reason;
* `resolve_video_input` turns what `datasets` and the web hand over (`Video(decode=False)` dicts, torchcodec
  decoders of `Video()`, http(s) URLs) into a path, bytes or frames;
* readers are safe across `fork` (DataLoader workers): no decoder thread pool is carried into a child.
"""

import bisect
import gc
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


logger = logging.getLogger(__name__)

VIDEO_BACKENDS = ("decord", "pyav")


class VideoDecodeError(ValueError):
    """A video input could not be turned into frames. The message names the input and the reason."""


# ----------------------------------------------------------------------------------------------------
# ffmpeg's `-r <rate>` conversion
# ----------------------------------------------------------------------------------------------------


def _lrintf(value: float) -> int:
    """C `lrintf`: round a float32 to the nearest integer, ties to even."""
    return int(np.rint(np.float32(value)))


def _output_durations(total_num_frames: int, fps: float, target_fps: float, frame_duration) -> np.ndarray:
    """Each frame's duration in output images as ffmpeg 5.1's `do_video_out` takes it: the packet duration
    rounded (`lrintf`) when that is positive, else `target_fps / fps` capped at 1."""
    default = min(target_fps / fps, 1.0)
    if frame_duration is None:
        frame_duration = 1.0 / fps
    seconds = np.broadcast_to(np.asarray(frame_duration, dtype=np.float64), (total_num_frames,))
    seconds = np.where(np.isfinite(seconds), seconds, 0.0)
    rounded = np.rint((seconds * target_fps).astype(np.float32)).astype(np.float64)
    return np.where(rounded > 0, rounded, default)


def ffmpeg_image_runs(
    total_num_frames: int,
    fps: float,
    target_fps: float = 5.0,
    timestamps: Sequence[float] | None = None,
    frame_duration: float | Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Native frame shown by each image that `ffmpeg -i video -r <target_fps> %08d.jpg` writes.

    Reproduces the constant-frame-rate conversion of ffmpeg 5.1 (`do_video_out`), which the original
    extraction script (`sample_frame.py`, `-r 5`) went through: for native frame `i` with timestamp
    `t_i` and `sync` images written so far, `delta0 = t_i * target_fps - sync` and
    `delta = delta0 + duration_i`; the frame is dropped if `delta < -1.1`, written `lrintf(delta)`
    times if `delta > 1.1` (the first `lrintf(delta0 - 0.6)` of them repeat the previous frame when
    `delta0 > 1.1`), else once. `duration_i` is frame `i`'s packet duration in output frames rounded to an
    integer when that is positive (frames lasting 0.1 s or more at 5 fps), else `target_fps / fps`
    capped at 1. For 30 fps this gives images `0, 1, 5, 11, 17, ...` (image `k >= 2` is frame `6k - 7`),
    and `floor(5 * duration) + 2` images in all.

    Args:
        total_num_frames (`int`): number of decodable native frames.
        fps (`float`): the stream's frame rate as ffmpeg guesses it (`av_guess_frame_rate`: the real base
            rate, or the average rate when that is implausibly high).
        target_fps (`float`, defaults to 5.0): the extraction rate (`-r`).
        timestamps (`Sequence[float]`, *optional*): presentation time of each native frame in seconds,
            relative to the start of the file (the container's start time); defaults to `i / fps`.
        frame_duration (`float` or `Sequence[float]`, *optional*): packet duration in seconds, one for
            all frames or one per frame (0 where unknown); defaults to `1 / fps`.

    Returns:
        `(run_frames, run_lengths)`, two int64 arrays of shape `(2 * total_num_frames,)`: the images are
        `run_lengths[r]` copies of native frame `run_frames[r]`, run after run. Run-length form keeps
        memory bounded when corrupt timestamps would ask for millions of duplicates.
    """
    if total_num_frames <= 0:
        return np.zeros((0,), dtype=np.int64), np.zeros((0,), dtype=np.int64)
    if not fps or fps <= 0 or not np.isfinite(fps):
        raise ValueError(f"ffmpeg_frame_indices needs a positive frame rate, got {fps}")
    if timestamps is None:
        timestamps = np.arange(total_num_frames, dtype=np.float64) / fps
    if len(timestamps) != total_num_frames:
        raise ValueError(f"got {len(timestamps)} timestamps for {total_num_frames} frames")
    if frame_duration is not None and np.ndim(frame_duration) == 1 and len(frame_duration) != total_num_frames:
        raise ValueError(f"got {len(frame_duration)} frame durations for {total_num_frames} frames")
    durations = _output_durations(total_num_frames, fps, target_fps, frame_duration)
    # ffmpeg nudges timestamps away from exact mid-points by 2^-17 output frames
    nudge = 1.0 / (1 << 17)

    run_frames = np.repeat(np.arange(total_num_frames, dtype=np.int64), 2)
    run_frames[0::2] = np.maximum(run_frames[0::2] - 1, 0)  # first run of frame i repeats frame i - 1
    run_lengths = np.zeros((2 * total_num_frames,), dtype=np.int64)
    sync = 0
    for index, (timestamp, duration) in enumerate(zip(timestamps, durations)):
        sync_ipts = float(timestamp) * target_fps
        sync_ipts += nudge if sync_ipts > 0 else -nudge
        delta0 = sync_ipts - sync
        delta = delta0 + float(duration)
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
    total_num_frames: int,
    fps: float,
    target_fps: float = 5.0,
    timestamps: Sequence[float] | None = None,
    frame_duration: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Native frame shown by each image that `ffmpeg -r <target_fps>` writes (see [`ffmpeg_image_runs`]).

    Returns:
        `np.ndarray` of shape `(num_images,)`, int64, in image order.
    """
    run_frames, run_lengths = ffmpeg_image_runs(total_num_frames, fps, target_fps, timestamps, frame_duration)
    return np.repeat(run_frames, run_lengths)


# ----------------------------------------------------------------------------------------------------
# Orientation: ffmpeg's autorotate
# ----------------------------------------------------------------------------------------------------


def display_matrix_transform(matrix: Sequence[int] | None) -> str | None:
    """The filter ffmpeg 5.1's `autorotate` inserts for a display matrix (9 int32, `AV_FRAME_DATA_DISPLAYMATRIX`).

    Returns:
        one of `"clock"`, `"cclock"`, `"clock_flip"`, `"cclock_flip"` (ffmpeg's `transpose` directions),
        `"hflip"`, `"vflip"`, `"hvflip"`, or `None` (nothing to do). Angles other than multiples of 90
        degrees (ffmpeg's `rotate` filter, which keeps the frame size and fills corners black) are not
        reproduced: they give `None` and a warning.
    """
    if matrix is None:
        return None
    m = [int(value) for value in matrix]
    scale_x, scale_y = np.hypot(m[0], m[3]), np.hypot(m[1], m[4])
    if scale_x == 0 or scale_y == 0:
        return None
    # ffmpeg's get_rotation: -round(av_display_rotation_get(m)), where av_display_rotation_get(m) is
    # -atan2(m[1], m[0]) in degrees (counter-clockwise); C's round goes half away from zero
    angle = float(np.degrees(np.arctan2(m[1] / scale_y, m[0] / scale_x)))
    theta = float(np.copysign(np.floor(abs(angle) + 0.5), angle))
    theta -= 360 * np.floor(theta / 360 + 0.9 / 360)  # clockwise, in [0, 360)
    if abs(theta - 90) < 1.0:
        return "cclock_flip" if m[3] > 0 else "clock"
    if abs(theta - 180) < 1.0:
        flips = ("h" if m[0] < 0 else "") + ("v" if m[4] < 0 else "")
        return f"{flips}flip" if flips else None
    if abs(theta - 270) < 1.0:
        return "clock_flip" if m[3] < 0 else "cclock"
    if abs(theta) > 1.0:
        logger.warning("display rotation of %.1f degrees is not a multiple of 90; frames are left unrotated", theta)
        return None
    return "vflip" if m[4] < 0 else None


def orient(frame: np.ndarray, transform: str | None) -> np.ndarray:
    """Applies a [`display_matrix_transform`] result to an `(H, W, C)` frame (a view when possible)."""
    if transform is None:
        return frame
    if transform == "clock":
        return np.rot90(frame, -1)
    if transform == "cclock":
        return np.rot90(frame, 1)
    if transform == "cclock_flip":
        return frame.transpose(1, 0, 2)
    if transform == "clock_flip":
        return np.rot90(frame, -1)[::-1]
    rows = slice(None, None, -1) if "v" in transform else slice(None)
    cols = slice(None, None, -1) if transform.startswith("h") else slice(None)
    return frame[rows, cols]


def _frame_orientation(frame) -> str | None:
    """The autorotate transform of a decoded PyAV frame, from its display-matrix side data."""
    for side_data in frame.side_data:
        if side_data.type.name == "DISPLAYMATRIX":
            return display_matrix_transform(np.frombuffer(bytes(side_data), dtype="<i4")[:9])
    return None


# ----------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------


@dataclass
class VideoTimeline:
    """What frame selection needs to know about a video stream, as ffmpeg sees it.

    Attributes:
        total_num_frames (`int`): decodable frames (packets of the video stream).
        fps (`float`): the frame rate ffmpeg guesses for the stream (`av_guess_frame_rate`).
        timestamps (`np.ndarray`, *optional*): `(total_num_frames,)` presentation times in seconds from the
            container's start time, increasing; `None` when unknown (constant rate assumed).
        durations (`np.ndarray`, *optional*): `(total_num_frames,)` packet durations in seconds (0 = unknown).
    """

    total_num_frames: int
    fps: float
    timestamps: np.ndarray | None = None
    durations: np.ndarray | None = None

    def truncated_to(self, total_num_frames: int) -> "VideoTimeline":
        cut = (lambda values: None if values is None else values[:total_num_frames])
        return VideoTimeline(total_num_frames, self.fps, cut(self.timestamps), cut(self.durations))


class DecoderFailure(Exception):
    """One backend failed; carries the reason for the final `VideoDecodeError`."""


class ShortVideo(DecoderFailure):
    """The stream ended after `decoded` frames, before the frames asked for."""

    def __init__(self, decoded: int):
        super().__init__(f"stream ended after {decoded} frames")
        self.decoded = decoded


def first_line(error: BaseException) -> str:
    """A short, one-line reason from a decoder exception."""
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    text = lines[-1] if lines else type(error).__name__
    # decord prefixes messages with "[hh:mm:ss] /source/file.cc:123: "; drop those
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", text).strip() or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# PyAV's frames and side data form reference cycles that keep a closed container's decoder, and its thread pool,
# alive until the garbage collector runs. In a forked child (a DataLoader worker) that collection frees a decoder
# whose threads do not exist there, and the child hangs or crashes. So the parent collects before it forks
# whenever PyAV was used since the last fork: the decoders are freed, and their threads joined, where they live.
_PYAV_USED = False


def _collect_decoders_before_fork() -> None:
    global _PYAV_USED
    if _PYAV_USED:
        gc.collect()
        _PYAV_USED = False


os.register_at_fork(before=_collect_decoders_before_fork)


def _open_pyav(source: str | bytes):
    import av

    global _PYAV_USED
    _PYAV_USED = True
    return av.open(io.BytesIO(source) if isinstance(source, bytes) else source, mode="r")


@dataclass
class _ContainerHeader:
    """What the container header says (read without decoding): where the video stream ends (seconds, in the
    stream's own time; `None` = unknown), the start time in seconds and the frame rate ffmpeg guesses."""

    declared_duration: float | None = None
    start_time: float | None = None
    guessed_fps: float = 0.0
    orientation: str | None = None


def _declared_duration(stream) -> float | None:
    """Duration of a video stream as its header declares it, in seconds; `None` when unknown (mkv/webm).
    Counted in time, not frames: an AVI header counts time-base ticks, which are not frames when the time
    base is finer than the frame rate (h264 with B-frames)."""
    if not stream.duration or not stream.time_base:
        return None
    return float(stream.duration * stream.time_base)


def _span(starts: np.ndarray, ends: np.ndarray) -> float | None:
    """Seconds from the first frame's start to the last frame's end; `None` when the times are unusable."""
    if len(starts) == 0 or not np.all(np.isfinite(starts)) or not np.all(np.isfinite(ends)):
        return None
    span = float(np.max(ends) - np.min(starts))
    return span if 0 <= span < 1e7 else None


def _read_header(source: str | bytes) -> _ContainerHeader:
    """The header, and the orientation of the first frame (its display matrix; one frame is decoded)."""
    header = _ContainerHeader()
    try:
        with _open_pyav(source) as container:
            if not container.streams.video:
                return header
            stream = container.streams.video[0]
            header.start_time = container.start_time / 1_000_000 if container.start_time is not None else None
            rate = stream.guessed_rate or stream.average_rate or stream.base_rate
            header.declared_duration, header.guessed_fps = _declared_duration(stream), float(rate) if rate else 0.0
            header.orientation = _frame_orientation(next(container.decode(stream)))
    except Exception:  # the decoder that opened it is the judge; this is only a cross-check
        pass
    return header


@dataclass
class Demuxed:
    """A video stream's packets, read without decoding."""

    timeline: VideoTimeline
    declared_duration: float | None
    present_duration: float | None
    packet_pts: list
    key_pts: list


def demux(source: str | bytes) -> Demuxed:
    """Reads the packets of the first video stream (no decoding): the exact frame count, each frame's
    presentation time (from the container's start time, as ffmpeg counts it) and packet duration, in
    presentation order, from the integer timestamps (exact, unlike decord's float32 times), and the
    keyframes to seek to.

    Raises:
        `DecoderFailure` when PyAV cannot read the file or it has no video stream.
    """
    try:
        with _open_pyav(source) as container:
            if not container.streams.video:
                raise DecoderFailure("no video stream")
            stream = container.streams.video[0]
            declared_duration = _declared_duration(stream)
            rate = stream.guessed_rate or stream.average_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            time_base = float(stream.time_base) if stream.time_base else 0.0
            packets = []  # (pts, duration) in the stream's time base
            packet_pts, key_pts = [], []
            # every stream's packets, for the earliest timestamp of the file: ffmpeg 5.1 counts time from
            # there (an audio stream starting before the video, codec delay included)
            earliest = None
            time_bases = {other.index: float(other.time_base or 0) for other in container.streams}
            # AVI stores no presentation times: ffmpeg 5.1 leaves them unset and times frames by their decoding
            # timestamps (newer FFmpeg, PyAV's, derives presentation times that are one B-frame delay later)
            by_dts = "avi" in container.format.name.split(",")
            for packet in container.demux():
                stamp = packet.dts if by_dts else packet.pts
                if stamp is not None and time_bases.get(packet.stream.index):
                    time = stamp * time_bases[packet.stream.index]
                    earliest = time if earliest is None else min(earliest, time)
                if packet.stream.index != stream.index or packet.size == 0:
                    continue
                packet_pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
                pts = packet.pts if packet.pts is not None and not by_dts else packet.dts
                packets.append((np.nan if pts is None else pts, packet.duration or 0))
            start = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            start = min(start, earliest) if earliest is not None else start
    except DecoderFailure:
        raise
    except Exception as error:  # FFmpegError, but also e.g. UnicodeDecodeError on corrupt metadata
        raise DecoderFailure(f"PyAV cannot read it ({first_line(error)})") from None
    packets = np.asarray(packets, dtype=np.float64).reshape(-1, 2) * time_base
    present_duration = _span(packets[:, 0], packets[:, 0] + packets[:, 1])
    packets[:, 0] -= start
    known = not np.isnan(packets[:, 0]).any()
    if known:  # presentation order (packets come in decoding order)
        packets = packets[np.argsort(packets[:, 0], kind="stable")]
    timeline = VideoTimeline(len(packets), fps, packets[:, 0] if known else None, packets[:, 1] if known else None)
    return Demuxed(timeline, declared_duration, present_duration, packet_pts, key_pts)


class DecordReader:
    """Random access with decord: only the requested frames are converted to RGB. decord applies the
    display rotation itself (checked against ffmpeg for 90, 180 and 270 degrees) but not mirroring:
    mirrored videos are left to PyAV."""

    name = "decord"

    def __init__(self, source: str | bytes, num_threads: int):
        import decord

        # decord raises RuntimeError at open and decord._ffi.base.DECORDError (not a RuntimeError) on
        # reads, among others: any exception from the decoder is a decoding failure.
        try:
            if isinstance(source, bytes):
                # decord logs the input of a failed open to stderr, bytes included (megabytes of them, terminal
                # escapes too): it gets a file name instead, of a private copy kept while the reader lives
                self._copy = tempfile.NamedTemporaryFile(prefix="clip2video-", suffix=".video")
                self._copy.write(source)
                self._copy.flush()
            handle = self._copy.name if isinstance(source, bytes) else source
            self._reader = decord.VideoReader(handle, ctx=decord.cpu(0), num_threads=num_threads)
            total_num_frames = len(self._reader)
            average_fps = float(self._reader.get_avg_fps())
        except Exception as error:
            raise DecoderFailure(f"decord cannot open it ({first_line(error)})") from None
        self._source = source
        header = _read_header(source)
        if header.orientation not in (None, "clock", "cclock", "hvflip"):
            # decord applies the display rotation but not a mirroring: PyAV reads these
            raise DecoderFailure(f"mirrored display matrix ({header.orientation}), which decord does not apply")
        self.declared_duration = header.declared_duration
        self._start_time = header.start_time
        self.timeline = VideoTimeline(total_num_frames, header.guessed_fps or average_fps)

    def read_timeline(self) -> VideoTimeline:
        """The timeline with per-frame times: from the packets (exact) when PyAV sees as many frames as
        decord, else from decord's own `(start, end)` frame times (float32) from the container's start."""
        if self.timeline.timestamps is not None:
            return self.timeline
        demuxed = self._packets().timeline if self._packets() is not None else None
        if demuxed is not None and demuxed.timestamps is not None:
            self.timeline.timestamps, self.timeline.durations = demuxed.timestamps, demuxed.durations
            return self.timeline
        try:
            times = np.asarray(self._reader.get_frame_timestamp(np.arange(self.timeline.total_num_frames)), np.float64)
        except Exception as error:
            raise DecoderFailure(f"decord cannot index it ({first_line(error)})") from None
        start = self._start_time if self._start_time is not None else float(times[0, 0])
        self.timeline.timestamps = times[:, 0] - start
        self.timeline.durations = np.maximum(times[:, 1] - times[:, 0], 0.0)
        return self.timeline

    def _packets(self) -> "Demuxed | None":
        """The stream's packets read by PyAV (exact integer timestamps), when PyAV sees decord's frames."""
        if not hasattr(self, "_demuxed"):
            try:
                self._demuxed = demux(self._source)
            except DecoderFailure:
                self._demuxed = None
            if self._demuxed is not None and self._demuxed.timeline.total_num_frames != self.timeline.total_num_frames:
                self._demuxed = None
        return self._demuxed

    def present_duration(self) -> float | None:
        """Seconds from the first frame present to the end of the last: from the packets, else from decord's
        own frame times (which are garbage for some AVI files: then no check)."""
        if self._packets() is not None:
            return self._packets().present_duration
        try:
            times = np.asarray(self._reader.get_frame_timestamp([0, self.timeline.total_num_frames - 1]), np.float64)
        except Exception:  # no timestamps: no cross-check
            return None
        return _span(times[:, 0], times[:, 1])

    def read(self, indices: np.ndarray) -> np.ndarray:
        try:
            frames = self._reader.get_batch(list(map(int, indices))).asnumpy()
        except Exception as error:
            raise DecoderFailure(f"decord failed reading frames ({first_line(error)})") from None
        if frames.shape[0] != len(indices):
            raise DecoderFailure(f"decord returned {frames.shape[0]} of {len(indices)} frames")
        return frames


class PyAVReader:
    """Sequential decoding with PyAV (FFmpeg); opens what decord cannot (AV1, for one). Applies the
    display matrix as ffmpeg's autorotate does."""

    name = "pyav"

    def __init__(self, source: str | bytes, num_threads: int):
        self._source = source
        self._num_threads = num_threads
        demuxed = demux(source)
        self.declared_duration = demuxed.declared_duration
        self._present_duration = demuxed.present_duration
        self.timeline = demuxed.timeline
        # seeking needs unique packet timestamps and a keyframe at the start
        packet_pts, key_pts = demuxed.packet_pts, demuxed.key_pts
        self._display_pts = None
        if None not in packet_pts and None not in key_pts and len(set(packet_pts)) == len(packet_pts) and key_pts:
            self._display_pts = sorted(packet_pts)
            self._key_pts = sorted(key_pts)
            if self._key_pts[0] > self._display_pts[0]:
                self._display_pts = None

    def read_timeline(self) -> VideoTimeline:
        return self.timeline

    def present_duration(self) -> float | None:
        """Seconds from the first packet present to the end of the last."""
        return self._present_duration

    @staticmethod
    def _to_rgb(frame) -> np.ndarray:
        return np.ascontiguousarray(orient(frame.to_ndarray(format="rgb24"), _frame_orientation(frame)))

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Frames at the given (increasing, unique) presentation indices: `(n, H, W, 3)` uint8."""
        if self._display_pts is not None and max(indices) < len(self._display_pts):
            try:
                frames = self._read_seeking(indices)
            except Exception as error:  # any decoder trouble: retry the plain sequential way
                logger.debug("PyAV seeking read failed (%s); decoding sequentially", first_line(error))
                frames = None
            if frames is not None:
                return frames
        return self._read_sequential(indices)

    def _read_seeking(self, indices: np.ndarray) -> np.ndarray | None:
        """Decodes only what the wanted frames need: from the keyframe before each (seeking past
        unneeded stretches), skipping non-reference frames that are not wanted. Pixel-identical
        to full decoding. Returns `None` if a frame could not be reached this way."""
        targets = [self._display_pts[int(i)] for i in indices]
        wanted = {pts: position for position, pts in enumerate(targets)}
        frames: list[np.ndarray | None] = [None] * len(targets)
        with _open_pyav(self._source) as container:
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
                            frames[position] = self._to_rgb(frame)
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
            with _open_pyav(self._source) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self._num_threads
                for frame in container.decode(stream):
                    if decoded in wanted:
                        frames[wanted[decoded]] = self._to_rgb(frame)
                    decoded += 1
                    if decoded > last:
                        break
        except Exception as error:  # any decoder exception is a decoding failure
            raise DecoderFailure(
                f"PyAV failed at frame {decoded} of {self.timeline.total_num_frames} ({first_line(error)})"
            ) from None
        if decoded <= last:
            raise ShortVideo(decoded)
        return np.stack(frames)


READERS = {"decord": DecordReader, "pyav": PyAVReader}


def frame_count_tolerance(total_num_frames: int) -> int:
    """Frames a stream may lack against its announced count before it counts as truncated."""
    return max(2, int(0.02 * total_num_frames))


def _check_not_truncated(reader, name: str) -> None:
    """A truncated mp4/avi still declares its full duration in the header: frames missing beyond a small
    tolerance (2 frames or 2 %: edit lists, pre-roll) raise `VideoDecodeError`."""
    declared_duration = reader.declared_duration
    present_duration = reader.present_duration() if declared_duration is not None else None
    if present_duration is None:
        return
    fps = reader.timeline.fps if reader.timeline.fps and np.isfinite(reader.timeline.fps) else 30.0
    tolerance = max(frame_count_tolerance(int(declared_duration * fps)) / fps, 1e-3)
    if declared_duration - present_duration > tolerance + 1e-6:
        raise VideoDecodeError(
            f"{name}: truncated: the header declares {declared_duration:.3f} s of video, the frames present "
            f"span {present_duration:.3f} s"
        )


def read_video(
    source: str | bytes,
    name: str,
    select: Callable[[VideoTimeline, Callable[[], VideoTimeline]], np.ndarray],
    video_backend: str = "decord",
    num_threads: int = 1,
    convert: Callable[[list[np.ndarray]], Any] | None = None,
) -> list:
    """Decodes the frames `select(timeline, read_timeline)` asks for, trying decord then PyAV (`"decord"`) or PyAV only.

    `select` may also return a list of index arrays (groups: the windows of a long video): the file is opened once and
    the groups are read one after the other, each passed through `convert` (e.g. a resize to the model's size) before
    the next is read, so only one group's full-size frames are in memory; the result is then the list of `convert`'s
    values, one per group.

    Args:
        source (`str` or `bytes`): a video file path or its bytes.
        name (`str`): how error messages name the input.
        select (`Callable`): given a reader's [`VideoTimeline`] (frame count and rate) and a function
            returning it with per-frame times (read on demand: decord indexes the file for them), returns
            the native frame index of each wanted frame, in order (may repeat); may raise `VideoDecodeError`.
        video_backend (`str`, defaults to `"decord"`): `"decord"` (falls back to PyAV) or `"pyav"`.
        num_threads (`int`, defaults to 1): decoder threads (0 = decoder default).

    Returns:
        list of `(H, W, 3)` uint8 frames in ffmpeg's orientation, one per selected index.

    Raises:
        `VideoDecodeError` naming the input: no backend could decode it, zero frames, or truncated.
    """
    if video_backend not in VIDEO_BACKENDS:
        raise ValueError(f"video_backend must be one of {VIDEO_BACKENDS}, got {video_backend!r}")
    backends = ["decord", "pyav"] if video_backend == "decord" else ["pyav"]
    reasons = []
    for backend in backends:
        try:
            return _read_with(READERS[backend], source, name, select, num_threads, convert)
        except ImportError as error:
            reasons.append(f"{backend} unavailable ({error})")
        except DecoderFailure as failure:
            reasons.append(f"{backend}: {failure}")
            logger.debug("%s: %s failed: %s", name, backend, failure)
    raise VideoDecodeError(f"{name}: cannot decode: " + "; ".join(reasons))


def _read_with(backend, source, name: str, select, num_threads: int, convert=None) -> list:
    reader = backend(source, num_threads)
    total_num_frames = reader.timeline.total_num_frames
    if total_num_frames <= 0:
        raise VideoDecodeError(f"{name}: zero frames in the video stream")
    _check_not_truncated(reader, name)
    native = select(reader.timeline, reader.read_timeline)
    try:
        return _read_selection(reader, native, convert)
    except ShortVideo as short:
        # The container promised more frames than the stream holds. A small shortfall is an
        # estimated count; anything larger is a truncated file.
        if short.decoded <= 0 or total_num_frames - short.decoded > frame_count_tolerance(total_num_frames):
            raise VideoDecodeError(
                f"{name}: truncated or corrupt: the stream ended after {short.decoded} of {total_num_frames} frames"
            ) from None
        logger.info("%s: %d frames decodable, %d announced", name, short.decoded, total_num_frames)
        reader.timeline = reader.read_timeline().truncated_to(short.decoded)
        return _read_selection(reader, select(reader.timeline, reader.read_timeline), convert)


def _read_selection(reader, native, convert) -> list:
    """The frames of one index array, or, for a list of index arrays, each group's frames (`convert`ed: e.g. resized,
    frame by frame, into an `(n, H, W, 3)` array).

    Groups (e.g. the overlapping windows of one video, in time order) are read in one forward pass: the union of their
    frames is read once, in increasing order, and converted once; a group is assembled as soon as its last frame is
    read, and a frame is dropped once no group still to come needs it (no backward seek, no frame read or converted
    twice for overlapping groups).
    """
    if not isinstance(native, list):
        return _read_unique(reader, native)
    groups = [np.asarray(group, dtype=np.int64).reshape(-1) for group in native]
    order = sorted(range(len(groups)), key=lambda number: (int(groups[number].max()), number))
    firsts = np.minimum.accumulate([int(groups[number].min()) for number in reversed(order)])[::-1]
    union = np.unique(np.concatenate(groups))
    cache: dict[int, np.ndarray] = {}
    position, results = 0, [None] * len(groups)
    for rank, number in enumerate(order):
        upto = int(np.searchsorted(union, groups[number].max(), side="right"))
        if upto > position:
            frames = reader.read(union[position:upto])
            cache.update(zip(union[position:upto].tolist(), convert(frames) if convert is not None else frames))
            position = upto
        frames = [cache[index] for index in groups[number].tolist()]
        results[number] = np.stack(frames) if convert is not None else frames
        keep_from = firsts[rank + 1] if rank + 1 < len(order) else np.inf
        for index in [index for index in cache if index < keep_from]:
            del cache[index]
    return results


def _read_unique(reader, native: np.ndarray) -> list[np.ndarray]:
    unique, inverse = np.unique(native, return_inverse=True)
    frames = reader.read(unique)
    return [frames[i] for i in inverse.reshape(-1)]


def describe(source: Any) -> str:
    """How messages name a video input: its path or URL (a `datasets` video value's too), or its kind."""
    encoded = datasets_value(source)
    if encoded is not None:
        path, data = encoded.get("path"), encoded.get("bytes")
        source = path if isinstance(path, (str, os.PathLike)) and os.fspath(path) else data if data else source
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def datasets_value(video: Any) -> dict | None:
    """`{"path", "bytes"}` of a `datasets` video value: a `Video(decode=False)` dict (itself), or the encoded form
    that `datasets.Video()` keeps on the torchcodec decoder it returns (`_hf_encoded`); None for anything else."""
    if isinstance(video, dict) and ("path" in video or "bytes" in video):
        return video
    if type(video).__module__.startswith("torchcodec"):
        encoded = getattr(video, "_hf_encoded", None)
        return encoded if isinstance(encoded, dict) else None
    return None


__all__ = [
    "VIDEO_BACKENDS",
    "VideoDecodeError",
    "VideoTimeline",
    "display_matrix_transform",
    "ffmpeg_frame_indices",
    "ffmpeg_image_runs",
    "orient",
    "read_video",
    "datasets_value",
    "describe",
]
