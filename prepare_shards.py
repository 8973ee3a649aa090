# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Decode a dataset once into prepared frame shards (see frame_shards.py) that training reads without a video decoder.

    python prepare_shards.py --data_dir my_videos --output_dir my_videos_prepared --splits train test
    accelerate launch --num_processes 8 prepare_shards.py --dataset_name msrvtt-9k --data_dir data \\
        --video_dir MSRVTT/videos/all --output_dir msrvtt_prepared --feature_framerate 2

The frames are the ones the processor chooses for the model (`--model_name_or_path`, or `--num_frames` and
`--image_size`), resized and cropped to the model's input size. A rerun after a kill finishes what is missing and
keeps finished shards; under `accelerate launch` each process writes its own shards and the folder ends the same
as with one process. Missing or undecodable videos and empty captions are skipped, counted and named in
`{split}-report.json` (`--strict` stops at the first one instead).

Steps: 1. parse the arguments; 2. the frame options from the model; 3. per split: list the videos, write this
process's shards, record the split when all its shards exist.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from accelerate import Accelerator
from transformers import HfArgumentParser

from datasets_scripts import BENCHMARK_NAMES, load_benchmark
from frame_shards import FrameOptions, VideoRecord, finish_split, write_split_shards
from processing_clip2video import CLIP2VideoVideoProcessor


logger = logging.getLogger(__name__)

#: The original's feature_framerate per benchmark family (run_retrieval.py uses the same defaults).
FEATURE_FRAMERATE = {"msrvtt": 2}


@dataclass
class PrepareArguments:
    """Where the videos are, which frames to keep, where the shards go."""

    output_dir: str = field(metadata={"help": "Folder of the prepared shards (created; a rerun resumes it)."})
    dataset_name: Optional[str] = field(default=None, metadata={"help": (
        f"A benchmark ({', '.join(BENCHMARK_NAMES)}) with --data_dir and --video_dir; leave unset for a folder of "
        "videos with a metadata.jsonl (--data_dir).")})
    data_dir: Optional[str] = field(default=None, metadata={"help": (
        "Benchmark: folder of the split files. Otherwise: folder of videos with metadata.jsonl (one JSON object per "
        "video: file_name, caption), or one sub-folder per split holding one.")})
    video_dir: Optional[str] = field(default=None, metadata={"help": "Benchmark: folder of the videos."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "datasets cache folder."})
    splits: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Splits to prepare."})
    video_column: str = field(default="file_name", metadata={"help": "metadata.jsonl: the video's path column."})
    caption_column: str = field(default="caption", metadata={"help": (
        "metadata.jsonl: the caption column (a string or a list of strings).")})
    video_id_column: Optional[str] = field(default=None, metadata={"help": (
        "metadata.jsonl: the video id column (default: the video's file name without extension).")})
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": (
        "A CLIP2Video or CLIP model folder or Hub id: its frame count and input size (else --num_frames, --image_size).")})
    num_frames: Optional[int] = field(default=None, metadata={"help": "Frames per video (default: the model's, else 12)."})
    image_size: Optional[int] = field(default=None, metadata={"help": "Frame size in pixels (default: the model's, else 224)."})
    frame_sampling: str = field(default="original", metadata={"help": "'original' or 'uniform' (fixed choices)."})
    feature_framerate: Optional[int] = field(default=None, metadata={"help": (
        "The original's feature_framerate (default: 2 for MSR-VTT, else 1, as run_retrieval.py).")})
    video_backend: str = field(default="decord", metadata={"help": "'decord' (falls back to PyAV) or 'pyav'."})
    shard_size: int = field(default=64, metadata={"help": "Videos per shard (about 1.8 MB each at 12 x 224 px)."})
    strict: bool = field(default=False, metadata={"help": "Stop at the first unusable video instead of skipping it."})


def parse_args(argv: Optional[Sequence[str]] = None) -> PrepareArguments:
    (args,) = HfArgumentParser(PrepareArguments).parse_args_into_dataclasses(args=argv)
    return args


def frame_options(args: PrepareArguments) -> FrameOptions:
    """The frames a model gets: its frame count and input size, the processor's frame choice."""
    num_frames, image_size = 12, 224
    if args.model_name_or_path is not None:
        from transformers import PretrainedConfig

        # config.json of a CLIP2Video or a CLIP model: both keep the frame size in vision_config
        saved, _ = PretrainedConfig.get_config_dict(args.model_name_or_path)
        num_frames = saved.get("num_frames", num_frames)
        image_size = saved.get("vision_config", {}).get("image_size", image_size)
    family = (args.dataset_name or "").split("-")[0]
    return FrameOptions(num_frames=args.num_frames or num_frames, image_size=args.image_size or image_size,
                        frame_sampling=args.frame_sampling,
                        feature_framerate=args.feature_framerate or FEATURE_FRAMERATE.get(family, 1))


def benchmark_records(args: PrepareArguments, split: str) -> list[VideoRecord]:
    """A benchmark split's videos with all their captions, in the benchmark's video order."""
    rows = load_benchmark(args.dataset_name, split, data_dir=args.data_dir, video_dir=args.video_dir,
                          cache_dir=args.cache_dir, strict=args.strict)
    records: dict[int, VideoRecord] = {}
    for row in rows:
        index = row["video_index"]
        if index not in records:
            records[index] = VideoRecord(row["video_id"], row["video"] or "", ())
        records[index] = VideoRecord(row["video_id"], records[index].video, records[index].captions + (row["caption"],))
    return list(records.values())


def folder_records(args: PrepareArguments, split: str) -> list[VideoRecord]:
    """Videos of a folder with `metadata.jsonl` (`<data_dir>/<split>/metadata.jsonl`, or `<data_dir>/metadata.jsonl`
    for the train split): one video per line, paths relative to the metadata file."""
    if args.data_dir is None:
        raise ValueError("give --data_dir (a folder of videos with metadata.jsonl) or --dataset_name")
    folder = Path(args.data_dir) / split
    if not (folder / "metadata.jsonl").is_file() and split == "train":
        folder = Path(args.data_dir)
    metadata = folder / "metadata.jsonl"
    if not metadata.is_file():
        raise FileNotFoundError(f"{metadata}: no such file (split {split!r} of {args.data_dir})")
    records = []
    for number, line in enumerate(metadata.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        for column in (args.video_column, args.caption_column):
            if column not in row:
                raise KeyError(f"{metadata}:{number}: no column {column!r} (columns: {sorted(row)})")
        captions = row[args.caption_column]
        captions = (captions,) if isinstance(captions, str) else tuple(captions or ())
        video = str(folder / row[args.video_column])
        video_id = str(row[args.video_id_column]) if args.video_id_column else Path(row[args.video_column]).stem
        records.append(VideoRecord(video_id, video, captions))
    return records


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    # 1. arguments and logging
    args = parse_args(argv)
    accelerator = Accelerator()  # (PartialState alone ignores ACCELERATE_USE_CPU and runs every CPU process as rank 0)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    # 2. the frames the model gets
    options = frame_options(args)
    video_processor = CLIP2VideoVideoProcessor(video_backend=args.video_backend)
    logger.info("preparing %s with %s on %d process(es)", args.splits, options, accelerator.num_processes)
    # 3. each split: this process's shards, then the split's record once every shard exists
    source = args.dataset_name or os.path.abspath(args.data_dir or "")
    finished = {}
    for split in args.splits:
        records = benchmark_records(args, split) if args.dataset_name else folder_records(args, split)
        write_split_shards(records, args.output_dir, split, video_processor, options, shard_size=args.shard_size,
                           rank=accelerator.process_index, world_size=accelerator.num_processes, strict=args.strict)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            finished[split] = finish_split(args.output_dir, split, len(records), args.shard_size, video_processor,
                                           options, source=source)
            logger.info("%s: %s", split, {k: v for k, v in finished[split].items() if k != "shards"})
    accelerator.wait_for_everyone()
    return finished


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
