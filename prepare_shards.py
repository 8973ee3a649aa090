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

Steps: 1. parse the arguments; 2. the frame options from the model; 3. per split: list the videos, write this
process's shards, record the split when all its shards exist.
"""

import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from accelerate import Accelerator
from transformers import HfArgumentParser

import caption_table
import data_sources
from datasets_scripts import load_benchmark
from frame_shards import DETERMINISTIC_SAMPLING, FrameOptions, VideoRecord, finish_split, write_split_shards
from processing_clip2video import CLIP2VideoVideoProcessor


logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PrepareArguments(data_sources.SourceArguments):
    """Where the videos are (the source options of `SourceArguments`, as run_retrieval.py's), which frames to keep,
    where the shards go."""

    output_dir: str = field(metadata={"help": "Folder of the prepared shards (created; a rerun resumes it)."})
    splits: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Splits to prepare."})
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


#: Options that must be positive integers when given.
POSITIVE_OPTIONS = ("num_frames", "image_size", "feature_framerate", "shard_size")


def parse_args(argv: Optional[Sequence[str]] = None) -> PrepareArguments:
    """The arguments, checked: positive sizes, a fixed frame choice, split names usable as file names."""
    (args,) = HfArgumentParser(PrepareArguments).parse_args_into_dataclasses(args=argv)
    for name in POSITIVE_OPTIONS:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if args.frame_sampling not in DETERMINISTIC_SAMPLING:
        raise ValueError(f"--frame_sampling must be one of {DETERMINISTIC_SAMPLING} (prepared shards hold one fixed "
                         f"choice of frames), got {args.frame_sampling!r}")
    for split in args.splits:
        if not re.fullmatch(r"\w[\w.-]*", split):
            raise ValueError(f"--splits: {split!r} is not a split name (letters, digits, '_', '.', '-'; it names the "
                             "shard files)")
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
    return FrameOptions(num_frames=args.num_frames or num_frames, image_size=args.image_size or image_size,
                        frame_sampling=args.frame_sampling,
                        feature_framerate=args.feature_framerate or data_sources.default_feature_framerate(
                            args.dataset_name if args.is_benchmark else None))


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
    table = caption_table.build_caption_table(dataset, columns, base_dir, name, split, strict=args.strict)
    records = TableRecords(table)
    skipped = [{"video_id": caption_table.default_video_id(name, name), "video": name,
                "reason": "no such file or folder"} for name in table.report.missing_videos]
    kept = set(records.video_ids)
    skipped += [{"video_id": name, "video": name, "reason": "no caption (empty)"}
                for name in dict.fromkeys(table.report.empty_captions) if name not in kept]
    return records, skipped


class TableRecords(Sequence):
    """The videos of a `caption_table.CaptionTable` as `VideoRecord`s, read lazily (video bytes stay in the source
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
    # 2. the frames the model gets
    options = frame_options(args)
    video_processor = CLIP2VideoVideoProcessor(video_backend=args.video_backend)
    logger.info("preparing %s with %s on %d process(es)", args.splits, options, accelerator.num_processes)
    # 3. each split: this process's shards, then the split's record once every shard exists
    source = " ".join(str(part) for part in (args.dataset_name, args.data_dir, args.train_file, args.test_file) if part)
    finished = {}
    for split in args.splits:
        records, skipped = (benchmark_records if args.is_benchmark else source_records)(args, split)
        write_split_shards(records, args.output_dir, split, video_processor, options, shard_size=args.shard_size,
                           rank=accelerator.process_index, world_size=accelerator.num_processes, strict=args.strict)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            finished[split] = finish_split(args.output_dir, split, len(records), args.shard_size, video_processor,
                                           options, source=source, skipped_before=skipped)
            logger.info("%s: %s", split, {k: v for k, v in finished[split].items() if k != "shards"})
    accelerator.wait_for_everyone()
    return finished


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
