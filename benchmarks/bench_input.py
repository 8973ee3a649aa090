"""Input-pipeline benchmark: training batches per second at the default model input (12 frames, 224 px).

Route "mp4" (today's): a `videofolder` of mp4 files + `metadata.jsonl`, read through run_retrieval's data path
(`data_clip2video`: source -> `VideoFrameStore` decode with the processor's frame choice -> `VideoBatcher`
transform) in a `torch.utils.data.DataLoader` with `--workers` worker processes, as training reads it.
Videos: `bench_decode.make_video` (30 s, 320x240, 30 fps, h264, textured).

Route "shards": the same videos prepared once (`prepare_shards.py`: the same frames as uint8 at 224 px in Parquet),
read through the same data path as training and evaluation read them: no decoder, and the batches stay uint8
`(batch, 12, 224, 224, 3)` (`VideoBatcher.collate_frames`: a quarter of the bytes of float32, no float pass in the
workers) until `VideoBatcher.to_device` normalises them where the model is, to the same float32 values as the CPU
transform (checked on one batch). The ratio is of routes measured in this one run.

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

import torch


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import data_clip2video  # noqa: E402
from bench_decode import make_video  # noqa: E402
from processing_clip2video import CLIP2VideoVideoProcessor  # noqa: E402


#: The default model input: 12 frames of 224 px, sampled as the original does (1 frame/s of its 5 fps images).
#: The model input: 12 frames of 224 px, one per second of the original's 5 fps images.
MODEL_INPUT = dict(num_frames=12, image_size=224, frame_sampling="original", feature_framerate=1)


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


def training_loader(source: str, data_dir, num_clips: int, workers: int, batch_size: int, cache_dir=None):
    """Training batches of `num_clips` clips read from `source` through run_retrieval's data path, and the batcher.

    For the mp4 videofolder, `pixel_values` are float32 `(batch, 12, 3, 224, 224)`; for prepared shards they stay uint8
    until `VideoBatcher.to_device` normalises them (the processor's `normalize`)."""
    video_processor = CLIP2VideoVideoProcessor().for_model(**MODEL_INPUT)
    dataset = data_clip2video.load_source(source, "train", data_dir=data_dir, cache_dir=cache_dir)
    table = data_clip2video.build_caption_table(dataset, data_clip2video.resolve_columns(dataset), data_dir, source,
                                                "train")
    store = data_clip2video.VideoFrameStore(table.videos, video_processor)
    num_videos = table.report.num_videos
    tokens = {"input_ids": torch.zeros(num_clips, 32, dtype=torch.long),
              "attention_mask": torch.ones(num_clips, 32, dtype=torch.long)}
    pairs = data_clip2video.CaptionVideoDataset(tokens, [row % num_videos for row in range(num_clips)], store)
    batcher = data_clip2video.VideoBatcher(video_processor)
    loader = torch.utils.data.DataLoader(pairs, batch_size=batch_size, num_workers=workers,
                                         collate_fn=batcher.collate_pairs)
    return loader, batcher


def prepare(data_dir: str, output_dir: str, cache_dir: str) -> str:
    """The videofolder prepared once at the model input (`prepare_shards.py`, one process)."""
    import prepare_shards

    prepare_shards.main(["--dataset_name", "videofolder", "--data_dir", data_dir, "--output_dir", output_dir,
                         "--cache_dir", cache_dir, "--num_frames", "12", "--image_size", "224",
                         "--feature_framerate", str(MODEL_INPUT["feature_framerate"])])
    return output_dir


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
    for option in ("clips", "shard_clips"):  # the first batch is a warm-up: at least one more must be timed
        if getattr(args, option) <= args.batch_size:
            parser.error(f"--{option} must exceed --batch_size ({args.batch_size}): the first batch is not timed")
    cores = max(1, min(args.workers, len(os.sched_getaffinity(0))))
    routes = {}
    with tempfile.TemporaryDirectory() as workdir:
        cache_dir = os.path.join(workdir, "cache")
        data_dir = make_videofolder(os.path.join(workdir, "videos"), args.videos, args.seconds)
        prepared = prepare(os.path.join(data_dir, "train"), os.path.join(workdir, "prepared"), cache_dir)
        mp4, _ = training_loader("videofolder", data_dir, args.clips, args.workers, args.batch_size, cache_dir)
        shards, batcher = training_loader(prepared, None, args.shard_clips, args.workers, args.batch_size)
        # the shards route moves uint8 frames and normalises them on the device: the same values as the CPU transform
        batch = next(iter(shards))
        assert batch["pixel_values"].dtype == torch.uint8
        videos = [list(frames[: int(count)].numpy()) for frames, count in zip(batch["pixel_values"],
                                                                           batch["video_mask"].sum(1))]
        assert torch.equal(batcher.to_device(batch, "cpu")["pixel_values"], batcher.video_processor.collate(videos)[0])
        for route, loader in (("mp4", mp4), ("shards", shards)):
            rate, clips = clips_per_second(loader)
            routes[route] = {"clips_per_second": round(rate, 2), "clips_per_second_per_core": round(rate / cores, 2),
                             "clips_timed": clips}
    result = {"routes": routes, "workers": args.workers, "cores": cores, "load_average": os.getloadavg(),
              "shards_vs_mp4": round(routes["shards"]["clips_per_second"] / routes["mp4"]["clips_per_second"], 1),
              **{k: MODEL_INPUT[k] for k in ("num_frames", "frame_sampling", "feature_framerate")}, "size": 224}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
