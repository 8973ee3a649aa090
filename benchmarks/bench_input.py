"""Input-pipeline benchmark: training batches per second at the default model input (12 frames, 224 px).

Route "mp4" (today's): a `videofolder` of mp4 files + `metadata.jsonl`, read through run_retrieval's data path
(`data_clip2video`: source -> `VideoFrameStore` decode with the processor's frame choice -> `VideoBatcher`
transform) in a `torch.utils.data.DataLoader` with `--workers` worker processes, as training reads it.
Videos: `bench_decode.make_video` (30 s, 320x240, 30 fps, h264, textured).

Route "shards": the same videos prepared once (`prepare_shards.py`: the same frames as uint8 at 224 px in Parquet),
read through the same data path (no decoder; `VideoBatcher` normalises to float32 on the CPU). Route "shards-uint8":
the same rows batched as uint8 `(batch, 12, 224, 224, 3)`, for a trainer that normalises on the device (a quarter of
the bytes to move, and no float pass on the CPU). The ratios are of routes measured in this one run.

Reported: clips/s and clips/s per core (divided by the cores the workers can use), after one warm-up batch, and the
machine's load average (other processes share the cores).

Usage:
    python benchmarks/bench_input.py [--videos 8] [--clips 48] [--shard_clips 960] [--workers 2] [--batch_size 8]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import data_clip2video  # noqa: E402
from bench_decode import make_video  # noqa: E402
from processing_clip2video import CLIP2VideoVideoProcessor  # noqa: E402


#: The default model input: 12 frames of 224 px, sampled as the original does (1 frame/s of its 5 fps images).
MODEL_INPUT = dict(num_frames=12, size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                   frame_sampling="original", feature_framerate=1)


def make_videofolder(root: str, num_videos: int, seconds: int) -> str:
    """`root/train/video{i}.mp4` + `metadata.jsonl`; the videos are copies of one generated file (same cost each)."""
    import shutil

    folder = os.path.join(root, "train")
    os.makedirs(folder, exist_ok=True)
    first = os.path.join(folder, "video0.mp4")
    make_video(first, seconds)
    with open(os.path.join(folder, "metadata.jsonl"), "w") as handle:
        for index in range(num_videos):
            if index:
                shutil.copyfile(first, os.path.join(folder, f"video{index}.mp4"))
            handle.write(json.dumps({"file_name": f"video{index}.mp4", "text": f"clip number {index}"}) + "\n")
    return root


def mp4_loader(data_dir: str, num_clips: int, workers: int, batch_size: int, cache_dir: str):
    """Training batches (`pixel_values` `(batch, 12, 3, 224, 224)`) of `num_clips` clips read from the mp4 folder."""
    video_processor = CLIP2VideoVideoProcessor()
    dataset = data_clip2video.load_source("videofolder", "train", data_dir=data_dir, cache_dir=cache_dir)
    table = data_clip2video.build_caption_table(dataset, data_clip2video.resolve_columns(dataset), data_dir,
                                                "videofolder", "train")
    store = data_clip2video.VideoFrameStore(table.videos, video_processor, MODEL_INPUT)
    num_videos = table.report.num_videos
    tokens = {"input_ids": torch.zeros(num_clips, 32, dtype=torch.long),
              "attention_mask": torch.ones(num_clips, 32, dtype=torch.long)}
    pairs = data_clip2video.CaptionVideoDataset(tokens, [row % num_videos for row in range(num_clips)], store)
    batcher = data_clip2video.VideoBatcher(video_processor, MODEL_INPUT, MODEL_INPUT["num_frames"])
    return torch.utils.data.DataLoader(pairs, batch_size=batch_size, num_workers=workers, collate_fn=batcher.collate_pairs)


def prepare(data_dir: str, output_dir: str, cache_dir: str) -> str:
    """The videofolder prepared once at the model input (`prepare_shards.py`, one process)."""
    import prepare_shards

    prepare_shards.main(["--dataset_name", "videofolder", "--data_dir", data_dir, "--output_dir", output_dir,
                         "--cache_dir", cache_dir, "--num_frames", "12", "--image_size", "224",
                         "--feature_framerate", str(MODEL_INPUT["feature_framerate"])])
    return output_dir


class Uint8Batcher(data_clip2video.VideoBatcher):
    """Batches the frames as they are stored: `pixel_values` uint8 `(batch, 12, 224, 224, 3)`, normalised later on
    the device (`(x.float() / 255 - mean) / std`, the same float32 operations as the processor's)."""

    def __call__(self, videos: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
        height, width, _ = videos[0][0].shape
        batch = torch.zeros(len(videos), self.num_frames, height, width, 3, dtype=torch.uint8)
        mask = torch.zeros(len(videos), self.num_frames, dtype=torch.long)
        for position, frames in enumerate(videos):
            batch[position, : len(frames)] = torch.from_numpy(np.stack(frames))
            mask[position, : len(frames)] = 1
        return batch, mask


def normalise_on_device(pixel_values: torch.Tensor, video_processor) -> torch.Tensor:
    """uint8 `(batch, frames, H, W, 3)` -> the processor's float32 `(batch, frames, 3, H, W)` (run where the model is)."""
    mean = torch.tensor(video_processor.image_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(video_processor.image_std, dtype=torch.float32).view(3, 1, 1)
    scale = torch.tensor(1.0 / video_processor.rescale_factor, dtype=torch.float32)
    return (pixel_values.permute(0, 1, 4, 2, 3).float() / scale - mean) / std


def shards_loader(prepared_dir: str, num_clips: int, workers: int, batch_size: int, uint8: bool):
    """Training batches of `num_clips` clips read from the prepared shards through the same data path."""
    video_processor = CLIP2VideoVideoProcessor()
    dataset = data_clip2video.load_source(prepared_dir, "train")
    table = data_clip2video.build_caption_table(dataset, data_clip2video.resolve_columns(dataset), None,
                                                prepared_dir, "train")
    store = data_clip2video.VideoFrameStore(table.videos, video_processor, MODEL_INPUT)
    num_videos = table.report.num_videos
    tokens = {"input_ids": torch.zeros(num_clips, 32, dtype=torch.long),
              "attention_mask": torch.ones(num_clips, 32, dtype=torch.long)}
    pairs = data_clip2video.CaptionVideoDataset(tokens, [row % num_videos for row in range(num_clips)], store)
    batcher = (Uint8Batcher if uint8 else data_clip2video.VideoBatcher)(video_processor, MODEL_INPUT,
                                                                        MODEL_INPUT["num_frames"])
    return torch.utils.data.DataLoader(pairs, batch_size=batch_size, num_workers=workers, collate_fn=batcher.collate_pairs)


def clips_per_second(loader) -> tuple[float, int]:
    """Clips/s over every batch after the first (the first pays for worker start-up), and the clips timed."""
    batches = iter(loader)
    next(batches)
    clips, start = 0, time.perf_counter()
    for batch in batches:
        assert batch["pixel_values"].shape[1:] in ((12, 3, 224, 224), (12, 224, 224, 3)) and not batch["skipped"]
        clips += batch["pixel_values"].shape[0]
    return clips / (time.perf_counter() - start), clips


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--clips", type=int, default=48, help="clips read by the mp4 route")
    parser.add_argument("--shard_clips", type=int, default=960, help="clips read by the shards routes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args(argv)
    cores = max(1, min(args.workers, len(os.sched_getaffinity(0))))
    routes = {}
    with tempfile.TemporaryDirectory() as workdir:
        cache_dir = os.path.join(workdir, "cache")
        data_dir = make_videofolder(os.path.join(workdir, "videos"), args.videos, args.seconds)
        prepared = prepare(os.path.join(data_dir, "train"), os.path.join(workdir, "prepared"), cache_dir)
        loaders = {
            "mp4": lambda: mp4_loader(data_dir, args.clips, args.workers, args.batch_size, cache_dir),
            "shards": lambda: shards_loader(prepared, args.shard_clips, args.workers, args.batch_size, uint8=False),
            "shards-uint8": lambda: shards_loader(prepared, args.shard_clips, args.workers, args.batch_size, uint8=True),
        }
        # the uint8 route is the float route with the normalisation moved: check the values on one batch
        floats, uint8s = next(iter(loaders["shards"]())), next(iter(loaders["shards-uint8"]()))
        assert torch.equal(normalise_on_device(uint8s["pixel_values"], CLIP2VideoVideoProcessor()) * uint8s[
            "video_mask"][:, :, None, None, None], floats["pixel_values"])
        for route, loader in loaders.items():
            rate, clips = clips_per_second(loader())
            routes[route] = {"clips_per_second": round(rate, 2), "clips_per_second_per_core": round(rate / cores, 2),
                             "clips_timed": clips}
    result = {"routes": routes, "workers": args.workers, "cores": cores, "load_average": os.getloadavg(),
              "shards_vs_mp4": round(routes["shards"]["clips_per_second"] / routes["mp4"]["clips_per_second"], 1),
              "shards_uint8_vs_mp4": round(routes["shards-uint8"]["clips_per_second"]
                                           / routes["mp4"]["clips_per_second"], 1),
              **{k: MODEL_INPUT[k] for k in ("num_frames", "frame_sampling", "feature_framerate")}, "size": 224}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
