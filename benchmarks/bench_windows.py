"""Timed windows for the index: windows/s of one long video decoded once for all its windows (the index's route,
`video_indexing.read_windows` = the processor's `load_windows`) against one decode per window (`load_frames(span=)`),
up to the model inputs (frames chosen in each window, resized, cropped, normalised; no model).

The video is generated with ffmpeg's `testsrc2` (moving test pattern, h264), 10 minutes at 25 fps and 320x240 by
default; windows of 4 s every 2 s, frames at 224 px. The one-decode-per-window route is timed on `--sample` windows
spread over the video (it is slow: each window opens and seeks the file again), its rate extrapolated.

Usage:
    python benchmarks/bench_windows.py [--seconds 600] [--window_seconds 4] [--window_stride 2] [--sample 24]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from processing_clip2video import CLIP2VideoVideoProcessor, window_spans  # noqa: E402
from utils_clip2video import int_at_least  # noqa: E402
from video_indexing import read_windows  # noqa: E402


def make_video(path: str, seconds: int, fps: int) -> None:
    if shutil.which("ffmpeg") is None:
        sys.exit("bench_windows needs the ffmpeg command to generate its video")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={fps}",
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", path],
                   check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int_at_least(1), default=600, help="Length of the generated video.")
    parser.add_argument("--fps", type=int_at_least(1), default=25, help="Frame rate of the generated video.")
    parser.add_argument("--window_seconds", type=float, default=4.0)
    parser.add_argument("--window_stride", type=float, default=2.0)
    parser.add_argument("--size", type=int_at_least(1), default=224, help="Frame size of the model inputs.")
    parser.add_argument("--sample", type=int_at_least(1), default=24,
                        help="Windows timed for the one-decode-per-window route.")
    parser.add_argument("--workdir", default=None, help="Folder for the generated video (default: a temporary one).")
    args = parser.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="clip2video-bench-windows-")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"long-{args.seconds}s-{args.fps}fps.mp4")
    if not os.path.exists(path):
        make_video(path, args.seconds, args.fps)
    processor = CLIP2VideoVideoProcessor(size={"shortest_edge": args.size},
                                         crop_size={"height": args.size, "width": args.size})

    started = time.perf_counter()
    windows, spans = read_windows(processor, path, args.window_seconds, args.window_stride)
    chosen = np.unique(np.linspace(0, len(spans) - 1, min(args.sample, len(spans))).round().astype(int))
    kept = {}
    for row, frames in enumerate(windows):  # the model inputs, one window at a time (as the index run makes them)
        pixel_values = processor.transform_frames(list(frames))
        if row in chosen:
            kept[row] = pixel_values
    once = time.perf_counter() - started
    del windows
    assert len(spans) == len(window_spans(args.seconds, args.window_seconds, args.window_stride)), len(spans)

    started = time.perf_counter()
    for row in chosen:
        frames = processor.load_frames(path, span=tuple(spans[row]))
        separate = processor.transform_frames(frames)
        assert np.array_equal(separate.numpy(), kept[row].numpy()), f"window {row} differs"
    per_window = (time.perf_counter() - started) / len(chosen)

    once_rate, separate_rate = len(spans) / once, 1.0 / per_window
    result = {"video_seconds": args.seconds, "fps": args.fps, "windows": len(spans),
              "window_seconds": args.window_seconds, "window_stride": args.window_stride, "size": args.size,
              "decode_once_seconds": round(once, 2), "decode_once_windows_per_s": round(once_rate, 1),
              "per_window_windows_per_s": round(separate_rate, 2), "per_window_timed_windows": len(chosen),
              "ratio": round(once_rate / separate_rate, 1), "load_average": os.getloadavg()[0]}
    print(f"{len(spans)} windows of {args.window_seconds:g} s every {args.window_stride:g} s over {args.seconds} s "
          f"at {args.fps} fps, {args.size} px model inputs")
    print(f"  decoded once:         {once_rate:8.1f} windows/s ({once:.1f} s in all)")
    print(f"  one decode per window: {separate_rate:7.2f} windows/s (timed on {len(chosen)} windows; same frames)")
    print(f"  ratio {once_rate / separate_rate:.1f}x (load average {os.getloadavg()[0]:.1f})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
