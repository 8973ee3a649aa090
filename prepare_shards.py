# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Decode a dataset once into prepared frame shards (see frame_shards.py) that training reads without a video decoder.

    python prepare_shards.py --dataset_name videofolder --data_dir my_videos --output_dir my_videos_prepared \\
        --splits train test
    accelerate launch --num_processes 8 prepare_shards.py --dataset_name msrvtt-9k --data_dir data \\
        --video_dir MSRVTT/videos/all --output_dir msrvtt_prepared --feature_framerate 2

The frames are the ones the processor chooses for the model (`--model_name_or_path`, or `--num_frames` and
`--image_size`), resized and cropped to the model's input size. A rerun after a kill finishes what is missing and
keeps finished shards; under `accelerate launch` each process writes its own shards and the folder ends the same
as with one process. Missing or undecodable videos and empty captions are skipped, counted and named in
`{split}-report.json` (`--strict` stops at the first one instead).

The output folder must be new or empty, or one a preparation started: prepare_shards.py never writes over other
files, and a second run into a folder another run is writing into is refused. A rerun after the source changed
(captions edited, a video replaced) writes the shards concerned again.

Steps: 1. parse the arguments; 2. the model's video processor (the frame options); 3. claim the output folder;
4. per split: list the videos, write this process's shards, record the split when all its shards exist.
"""

import logging
import os
import re
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Optional

from accelerate import Accelerator
from transformers import HfArgumentParser

import data_clip2video
from datasets_scripts import BENCHMARK_NAMES, load_benchmark
from frame_shards import (DETERMINISTIC_SAMPLING, PreparedShardsError, VideoRecord, claimed_output_dir, finish_split,
                          write_split_shards)
from processing_clip2video import CLIP2VideoVideoProcessor, VideoProcessorOptionError


logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PrepareArguments(data_clip2video.SourceArguments, data_clip2video.VideoArguments):
    """Where the videos are (the source options of `SourceArguments`, as run_retrieval.py's), which frames to keep
    (the model's, and the video processor options of `VideoArguments`), where the shards go."""

    output_dir: str = field(metadata={"help": (
        "Folder of the prepared shards: new or empty (a rerun resumes it; a folder holding other files is refused).")})
    splits: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Splits to prepare."})
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": (
        "A CLIP2Video or CLIP model folder or Hub id: its video processor (when saved with it), frame count and input "
        "size (else --num_frames, --image_size).")})
    num_frames: Optional[int] = field(default=None, metadata={"help": "Frames per video (default: the model's, else 12)."})
    image_size: Optional[int] = field(default=None, metadata={"help": (
        "The model's frame size in pixels (default: the model's, else 224).")})
    shard_size: int = field(default=64, metadata={"help": "Videos per shard (about 1.8 MB each at 12 x 224 px)."})
    strict: bool = field(default=False, metadata={"help": "Stop at the first unusable video instead of skipping it."})


def parse_args(argv: Optional[Sequence[str]] = None) -> PrepareArguments:
    """The arguments, checked: the frame options by the video processor, a fixed frame choice, a positive shard size,
    split names usable as file names."""
    (args,) = HfArgumentParser(PrepareArguments).parse_args_into_dataclasses(args=argv)
    try:
        CLIP2VideoVideoProcessor().for_model(image_size=args.image_size, **model_frames(args))
    except VideoProcessorOptionError as error:
        raise ValueError(f"--{error}") from None
    if args.shard_size < 1:
        raise ValueError(f"--shard_size must be >= 1, got {args.shard_size}")
    if args.frame_sampling is not None and args.frame_sampling not in DETERMINISTIC_SAMPLING:
        raise ValueError(f"--frame_sampling must be one of {DETERMINISTIC_SAMPLING} (prepared shards hold one fixed "
                         f"choice of frames), got {args.frame_sampling!r}")
    for split in args.splits:
        if not re.fullmatch(r"\w[\w.-]*", split):
            raise ValueError(f"--splits: {split!r} is not a split name (letters, digits, '_', '.', '-'; it names the "
                             "shard files)")
    return args


def model_frames(args: PrepareArguments) -> dict[str, Any]:
    return {} if args.num_frames is None else {"num_frames": args.num_frames}


def model_video_processor(args: PrepareArguments) -> CLIP2VideoVideoProcessor:
    """The video processor of the model the shards are for: the model's own (saved with it) or the default one, for
    its frame count and input size, with the options given."""
    video_processor, config = CLIP2VideoVideoProcessor(), None
    source = args.model_name_or_path
    if source is not None:
        from transformers import CLIPConfig, PretrainedConfig

        from configuration_clip2video import CLIP2VideoConfig

        local = os.path.isdir(source) or source.startswith((".", "/", "~")) or source.count("/") > 1
        if local and not os.path.isdir(source):
            raise ValueError(f"--model_name_or_path {source}: no such model folder")
        try:
            saved, _ = PretrainedConfig.get_config_dict(source)
            config = (CLIP2VideoConfig if saved.get("model_type") == "clip2video" else CLIPConfig).from_dict(saved)
            if os.path.isfile(os.path.join(source, "video_preprocessor_config.json")):
                video_processor = CLIP2VideoVideoProcessor.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise ValueError(f"--model_name_or_path {source}: cannot read the model's config ({error})") from None
    benchmark = args.dataset_name if args.dataset_name in BENCHMARK_NAMES else None
    try:
        return video_processor.for_model(config, image_size=args.image_size, **model_frames(args),
                                         **args.video_processor_kwargs(benchmark))
    except VideoProcessorOptionError as error:
        raise ValueError(f"--{error}") from None


def benchmark_records(args: PrepareArguments, split: str) -> tuple[list[VideoRecord], list[dict[str, str]]]:
    """A benchmark split's videos with all their captions, in the benchmark's video order (the benchmark builder
    has already logged what it dropped)."""
    rows = load_benchmark(args.dataset_name, split, data_dir=args.data_dir, video_dir=args.video_dir,
                          cache_dir=args.cache_dir, strict=args.strict)
    grouped: dict[int, tuple[str, str, list[str]]] = {}
    for row in rows:
        grouped.setdefault(row["video_index"], (row["video_id"], row["video"] or "", []))[2].append(row["caption"])
    return [VideoRecord(video_id, video, tuple(captions)) for video_id, video, captions in grouped.values()], []


def source_records(args: PrepareArguments, split: str) -> tuple[list[VideoRecord], list[dict[str, str]]]:
    """A split of any datasets source through data_clip2video (the data path training uses): its videos with their
    captions, and the videos its validation skipped (missing, empty captions) with the reason."""
    name = args.source_name()
    dataset, columns, base_dir = args.open_split(split)
    table = data_clip2video.build_caption_table(dataset, columns, base_dir, name, split, strict=args.strict)
    records = TableRecords(table)
    skipped = [{"video_id": data_clip2video.default_video_id(name, name), "video": name,
                "reason": "no such file or folder"} for name in table.report.missing_videos]
    kept = set(records.video_ids)
    skipped += [{"video_id": name, "video": name, "reason": "no caption (empty)"}
                for name in dict.fromkeys(table.report.empty_captions) if name not in kept]
    return records, skipped


class TableRecords(Sequence):
    """The videos of a `data_clip2video.CaptionTable` as `VideoRecord`s, read lazily (video bytes stay in the source
    until their shard is written)."""

    def __init__(self, table):
        self.videos = table.videos
        self.video_ids: list[str] = []
        self.captions: list[list[str]] = []
        for row in table.rows.select_columns(["video_id", "caption", "video_index"]):
            if row["video_index"] == len(self.video_ids):
                self.video_ids.append(row["video_id"])
                self.captions.append([])
            self.captions[row["video_index"]].append(row["caption"])

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        return VideoRecord(self.video_ids[index], self.videos[index], tuple(self.captions[index]))


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    # 1. arguments and logging
    args = parse_args(argv)
    accelerator = Accelerator()  # (PartialState alone ignores ACCELERATE_USE_CPU and runs every CPU process as rank 0)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    # 2. the frames the model gets: its video processor, built once
    video_processor = model_video_processor(args)
    logger.info("preparing %s with %s on %d process(es)", args.splits, video_processor.frame_options(),
                accelerator.num_processes)
    # 3. the output folder: new, or one a preparation started; held by this run
    with claimed_output_dir(args.output_dir) if accelerator.is_main_process else nullcontext():
        accelerator.wait_for_everyone()  # the other processes write into the folder the first one holds
        return prepare_splits(args, video_processor, accelerator)


def prepare_splits(args: PrepareArguments, video_processor, accelerator: Accelerator) -> dict[str, Any]:
    """Step 4, per split: list its clips, write this process's shards, record the split once every shard exists."""
    source = " ".join(str(part) for part in (args.dataset_name, args.data_dir, args.train_file, args.test_file) if part)
    finished = {}
    for split in args.splits:
        records, skipped = (benchmark_records if args.dataset_name in BENCHMARK_NAMES else source_records)(args, split)
        write_split_shards(records, args.output_dir, split, video_processor, shard_size=args.shard_size,
                           rank=accelerator.process_index, world_size=accelerator.num_processes, strict=args.strict,
                           show_progress=accelerator.is_main_process)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            finished[split] = finish_split(args.output_dir, split, len(records), args.shard_size, video_processor,
                                           source=source, skipped_before=skipped)
            logger.info("%s: %s", split, {k: v for k, v in finished[split].items() if k != "shards"})
    accelerator.wait_for_everyone()
    return finished


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
