"""Decode benchmark: video file -> model-ready 12-frame tensor, ours vs the original's route.

Original route (per video): `ffmpeg -i video -r 5 -q 0 %08d.jpg` into a folder, then the original's
frame selection over the sorted JPEGs and PIL load + CLIP transform of the selected ones.
Ours: `CLIP2VideoVideoProcessor` decoding straight from the file (decord, only the needed frames
converted), no disk writes.

Both run in the same process on the same generated video (30 s, 320x240, 30 fps, h264, textured
content with each frame's index drawn as a barcode, so the test can check that both routes pick the
very same frames). Also measures videos/s through a `torch.utils.data.DataLoader` with 2 workers.

Usage:
    python benchmarks/bench_decode.py [--seconds 30] [--repeats 5] [--loader_videos 24]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from processing_clip2video import CLIP2VideoVideoProcessor, original_frame_indices  # noqa: E402


BLOCK = 16


def make_video(path: str, seconds: int, fps: int = 30, width: int = 320, height: int = 240) -> None:
    """h264 video with moving noise texture (realistic bitrate) and a 10-bit frame-index barcode."""
    import av

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2 * height, 2 * width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(seconds * fps):
            gradient = np.stack([(xx * 3 + index * 5) % 256, (yy * 2 + index * 3) % 256, (xx + yy + index * 7) % 256], -1)
            dx, dy = (index * 3) % width, (index * 2) % height
            image = ((gradient + noise[dy : dy + height, dx : dx + width]) // 2).astype(np.uint8)
            image[:BLOCK] = 128
            for bit in range(10):
                image[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (index >> bit) & 1 else 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_code(image) -> int:
    array = np.asarray(image)
    return sum(int(array[4 : BLOCK - 4, b * BLOCK + 4 : (b + 1) * BLOCK - 4].mean() > 127) << b for b in range(10))


def original_route(video: str, workdir: str, feature_framerate: int, max_frames: int):
    """ffmpeg 5 fps JPEG dump + the original's selection and transform. Returns (tensor, mask, codes)."""
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    folder = os.path.join(workdir, "frames")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    subprocess.run(["ffmpeg", "-v", "0", "-i", video, "-r", "5", "-q", "0", f"{folder}/%08d.jpg"], check=True)
    names = sorted(os.listdir(folder))
    chosen = original_frame_indices(len(names), feature_framerate, max_frames)
    images = [Image.open(os.path.join(folder, names[i])).convert("RGB") for i in chosen]
    tensor = torch.zeros(max_frames, 3, 224, 224)
    tensor[: len(images)] = torch.stack([transform(image) for image in images])
    mask = torch.zeros(max_frames, dtype=torch.int64)
    mask[: len(images)] = 1
    return tensor, mask, [read_code(image) for image in images]


class _VideoDataset(torch.utils.data.Dataset):
    def __init__(self, paths, video_processor):
        self.paths, self.video_processor = paths, video_processor

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        out = self.video_processor(self.paths[index])
        return out["pixel_values"][0], out["video_mask"][0]


def timed(function, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--feature_framerate", type=int, default=2)
    parser.add_argument("--max_frames", type=int, default=12)
    parser.add_argument("--loader_videos", type=int, default=24)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    workdir = tempfile.mkdtemp(prefix="bench_decode_")
    try:
        video = os.path.join(workdir, "video.mp4")
        make_video(video, args.seconds)
        print(f"video: {args.seconds} s, 320x240, 30 fps, h264, {os.path.getsize(video) / 1e6:.1f} MB; "
              f"{os.cpu_count()} CPUs; feature_framerate {args.feature_framerate}, max_frames {args.max_frames}")

        base_time, (base_tensor, base_mask, base_codes) = timed(
            lambda: original_route(video, workdir, args.feature_framerate, args.max_frames), args.repeats
        )
        print(f"original route (ffmpeg -r 5 JPEG dump + PIL + transform): {base_time * 1000:7.1f} ms/video")
        try:
            print("load average:", " ".join(f"{value:.2f}" for value in os.getloadavg()))
        except OSError:
            pass

        rows = []
        for label, options in [
            ("decord", {"video_backend": "decord"}),
            ("decord, 2 threads", {"video_backend": "decord", "decode_threads": 2}),
            ("pyav (seek + skip non-ref)", {"video_backend": "pyav"}),
            ("pyav, 2 threads", {"video_backend": "pyav", "decode_threads": 2}),
        ]:
            processor = CLIP2VideoVideoProcessor(
                num_frames=args.max_frames, feature_framerate=args.feature_framerate, **options
            )
            ours_time, out = timed(lambda: processor(video), args.repeats)
            codes = [read_code(frame) for frame in processor.load_frames(video)]
            same_frames = codes == base_codes and torch.equal(out["video_mask"][0], base_mask)
            difference = (out["pixel_values"][0] - base_tensor).abs()
            rows.append((label, ours_time))
            print(
                f"ours: {label:26s} {ours_time * 1000:7.1f} ms/video  speed-up {base_time / ours_time:5.2f}x  "
                f"same frames {same_frames}  |diff| mean {difference.mean():.4f} max {difference.max():.3f}"
            )
            if not same_frames:
                print(f"  frames differ: original {base_codes} ours {codes}")

        for backend in ("decord", "pyav"):
            processor = CLIP2VideoVideoProcessor(
                num_frames=args.max_frames, feature_framerate=args.feature_framerate, video_backend=backend
            )
            loader = torch.utils.data.DataLoader(
                _VideoDataset([video] * args.loader_videos, processor), batch_size=4, num_workers=2
            )
            start = time.perf_counter()
            count = sum(pixel_values.shape[0] for pixel_values, _ in loader)
            elapsed = time.perf_counter() - start
            print(f"DataLoader, 2 workers, {backend}: {count / elapsed:.1f} videos/s ({count} videos, incl. worker start)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
