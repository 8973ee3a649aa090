#!/usr/bin/env python
# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Train, evaluate and export CLIP2Video (arXiv 2106.11097) video-text retrieval models with accelerate.

    python run_retrieval.py                       # the default job: synthetic benchmark, small model vs mean pooling
    accelerate launch run_retrieval.py --model_name_or_path openai/clip-vit-base-patch32 \\
        --dataset_name msrvtt-9k --data_dir data --video_dir MSRVTT/videos/all --do_train --do_eval \\
        --output_dir clip2video-msrvtt9k
    python run_retrieval.py --model_name_or_path clip2video-msrvtt9k --dataset_name msrvtt-1k-a ... --do_eval
    python run_retrieval.py --dataset_name videofolder --data_dir my_videos --do_train --do_eval  # own videos
    python run_retrieval.py args.json             # every option from a JSON (or YAML) file

`main` reads as a story, one function per step: 1. parse and check the arguments, 2. set up accelerate and
logging, 3. load the splits (a benchmark or any `datasets` source through data_clip2video, optionally streamed) and
the processor; then for CLIP2Video (and the mean-pooling baseline with --compare_mean_pooling): 4. build the model,
5. optimizer and schedule, 6. prepare with accelerate and resume, 7. train (logs, atomic checkpoints, evaluation every
--eval_steps), 8. evaluate (every video and caption encoded once, one matrix product, exact metrics), 9. save the
model, its processor, code and card, push to the Hub. Results travel as dataclasses (`EvalResult`, `TrainResult`,
`ModelResult`). The jobs behind the steps live in their modules: `splits_clip2video` (batches of each process),
`training_clip2video` (the loop), `checkpoints_clip2video`, `evaluation_clip2video`, `report_clip2video` (the visual
report) and `publish_clip2video` (card and push).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, gather_object, set_seed
from transformers import HfArgumentParser, get_cosine_schedule_with_warmup

from configuration_clip2video import CLIP2VideoConfig
import data_clip2video
from data_clip2video import VideoBatcher, VideoFrameStore
import caption_table
import data_sources
from datasets_scripts import SYNTHETIC_NAME, DataReport, get_eval_index, load_benchmark
from loss_clip2video import CLIP2VideoContrastiveLoss
from modeling_clip2video import CLIP2VideoModel
from processing_clip2video import CLIP2VideoProcessor
from checkpoints_clip2video import (RESUME_LATEST_IF_ANY, TrainerState, check_checkpoint_root, load_checkpoint,
                                    remove_previous_checkpoints, resolve_checkpoint)
from evaluation_clip2video import EvalOptions, EvalResult, Evaluator, export_features, metrics_table
import loading_clip2video
import publish_clip2video
import report_clip2video
from retrieval_metrics import TIE_RULES, NonFiniteScoresError
from splits_clip2video import SampledBatches, SplitData, StreamSplit
from training_clip2video import NoTrainingDataError, freeze_towers, parameter_groups, TrainingOptions, TrainingSetup, TrainResult, compute_loss, train
from utils_clip2video import (CLIP_TOKENIZER_DIR, ProcessorNotFoundError, check_model_source,
                              load_processor, write_text)


logger = logging.getLogger("run_retrieval")

#: The temporal options of `CLIP2VideoConfig` that can be set from the command line.
TEMPORAL_OPTIONS = ("num_frames", "temporal_head", "num_temporal_layers", "use_tdb", "tdb_projection", "use_tab",
                    "tab_input", "num_centers", "center_weight", "original_padding")
#: Model options of the mean-pooling baseline (`--compare_mean_pooling`): an order-invariant video head.
MEAN_POOLING_OPTIONS = dict(temporal_head="mean", use_tdb=False, tab_input="none")
#: The trainer state at the end of training (steps, skips, log history with every resume) in output_dir.
TRAIN_HISTORY = "train_history.json"

#: The default job, run when the script gets no argument: generate the synthetic temporal benchmark (40-px frames, the
#: model's image size), train a small CLIP2Video from scratch and the same model with mean pooling, evaluate both and
#: print a table (≈ 4.5 min on 2 idle CPU cores, video generation included).
DEFAULT_JOB = [
    "--dataset_name", SYNTHETIC_NAME, "--train_size", "2000", "--test_size", "100",
    "--synthetic_frame_size", "40", "--scratch_image_size", "40", "--scratch_patch_size", "10",
    "--output_dir", "outputs/synthetic-motion", "--overwrite_output_dir",
    "--do_train", "--do_eval", "--compare_mean_pooling",
    "--learning_rate", "1e-3", "--clip_learning_rate", "1e-3", "--weight_decay", "0.01",
    "--train_batch_size", "32", "--num_train_epochs", "16", "--warmup_ratio", "0.05", "--max_grad_norm", "1.0",
    "--checkpointing_steps", "epoch", "--save_total_limit", "1", "--logging_steps", "100",
    "--cache_videos", "--report_to", "none", "--train_group_size", "2",
]


# ----------------------------------------------------------------------------------------------------------------------
# 1. Arguments
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Where the model comes from; temporal options for a model built on CLIP or from scratch."""

    model_name_or_path: Optional[str] = field(default=None, metadata={"help": (
        "A CLIP model (Hub id or folder, e.g. openai/clip-vit-base-patch32: the temporal modules are added and "
        "initialised as the original does) or a CLIP2Video model (folder or Hub id). Unset: a small model from "
        "scratch (see the --scratch_* options).")})
    trust_remote_code: bool = field(default=False, metadata={"help": (
        "Load a CLIP2Video checkpoint with the code stored next to its weights (AutoModel/AutoProcessor with "
        "trust_remote_code) instead of this repository's modeling_clip2video.py.")})
    tokenizer_name: Optional[str] = field(default=None, metadata={"help": (
        "CLIP tokenizer files (folder or Hub id). Default: the model's own, else the repository's clip_tokenizer/.")})
    num_frames: Optional[int] = field(default=None, metadata={"help": "Frames per video (default 12)."})
    temporal_head: Optional[str] = field(default=None, metadata={"help": "'transformer' (seqTransf) or 'mean' (meanP)."})
    num_temporal_layers: Optional[int] = field(default=None, metadata={"help": "Temporal transformer layers (4)."})
    use_tdb: Optional[bool] = field(default=None, metadata={"help": "Temporal Difference Block (default True)."})
    tdb_projection: Optional[str] = field(default=None, metadata={"help": "'attention', 'mlp' or 'none'."})
    use_tab: Optional[bool] = field(default=None, metadata={"help": "Temporal Alignment Block (default True)."})
    tab_input: Optional[str] = field(default=None, metadata={"help": "TAB input: 'tdb', 'plain' or 'none'."})
    num_centers: Optional[int] = field(default=None, metadata={"help": "TAB centers K (5; VATEX 7)."})
    center_weight: Optional[float] = field(default=None, metadata={"help": "Weight of the global term (0.5)."})
    original_padding: Optional[bool] = field(default=None, metadata={"help": (
        "Encode padded frames like the original (True for converted checkpoints). Models trained here default to "
        "False: padding never reaches the embedding.")})
    scratch_hidden_size: int = field(default=64, metadata={"help": "From scratch: width of both towers and embeddings."})
    scratch_num_layers: int = field(default=2, metadata={"help": "From scratch: layers of each tower."})
    scratch_num_heads: int = field(default=2, metadata={"help": "From scratch: attention heads."})
    scratch_image_size: int = field(default=32, metadata={"help": "From scratch: frame size in pixels."})
    scratch_patch_size: int = field(default=8, metadata={"help": "From scratch: ViT patch size."})
    freeze_text_tower: bool = field(default=False, metadata={"help": "Freeze the CLIP text tower and its projection."})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Freeze the CLIP vision tower and its projection."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in backward."})

    def temporal_overrides(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TEMPORAL_OPTIONS if getattr(self, name) is not None}


@dataclass
class DataArguments(data_sources.SourceArguments, data_clip2video.VideoArguments):
    """Which data (a benchmark or any `datasets` source: the source options of `SourceArguments`) and how its videos
    are read."""

    dataset_name: str = field(default=SYNTHETIC_NAME, metadata={"help": (
        "A benchmark of datasets_scripts.load_benchmark (msrvtt-1k-a, msrvtt-9k, msrvtt-7k, msrvtt-full, msvd, "
        "vatex-hgr, vatex-1k5, synthetic-motion), or what datasets.load_dataset takes: a packaged builder "
        "(videofolder, csv, json, parquet, webdataset, ... with --data_dir or --train_file/--test_file), a "
        "save_to_disk folder, a prepared-shards folder or a Hub dataset id. Unset with --train_file/--test_file: "
        "the builder their extension names.")})
    streaming: bool = field(default=False, metadata={"help": (
        "Stream the training split (datasets IterableDataset): each process reads its own shards, DataLoader "
        "workers split them further, a buffer shuffles; needs --max_train_steps. Evaluation reads its split whole.")})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "--streaming: rows in the shuffle buffer."})
    train_split: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split: str = field(default="test", metadata={"help": "Split used for evaluation and export."})
    max_words: Optional[int] = field(default=None, metadata={"help": (
        "Caption length in tokens, start and end included (default: the checkpoint processor's, else 32).")})
    cache_videos: bool = field(default=False, metadata={"help": (
        "Decode every video once and keep its frames (uint8) in memory; for small sets like synthetic-motion.")})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_videos: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N videos only."})
    train_size: int = field(default=2000, metadata={"help": "synthetic-motion: training videos."})
    test_size: int = field(default=500, metadata={"help": "synthetic-motion: test videos (even)."})
    synthetic_seed: int = field(default=0, metadata={"help": "synthetic-motion: generation seed."})
    synthetic_frame_size: int = field(default=32, metadata={"help": (
        "synthetic-motion: frame width = height in pixels (even, 18-256, not 24, 48 or 72: decord cannot read those). "
        "Give a model from scratch the same --scratch_image_size: the processor resizes frames to the model's size.")})

    def source_name(self) -> str:
        """The builder, folder or Hub id read; with data files and no --dataset_name, the builder of their extension."""
        if self.dataset_name == SYNTHETIC_NAME and self.data_files():  # the default name: not given
            return data_sources.builder_for_files(self.data_files())
        return super().source_name()

    def card_dataset(self) -> Optional[str]:
        """The dataset named in the model card's metadata: a benchmark or Hub id (None for local files/folders)."""
        if self.is_benchmark:
            return self.dataset_name
        local = self.data_dir or self.data_files() or os.path.exists(self.dataset_name)
        return None if local else self.dataset_name

    def describe(self) -> str:
        """The data as the model card names it: the benchmark, Hub id or builder and its folder/files."""
        if self.is_benchmark:
            return self.dataset_name
        where = self.data_dir or ", ".join(os.path.basename(path.rstrip("/")) for path in self.data_files().values())
        return f"{self.source_name()} ({where})" if where else self.source_name()

    def benchmark_options(self) -> dict[str, Any]:
        if self.dataset_name == SYNTHETIC_NAME:
            return dict(train_size=self.train_size, test_size=self.test_size, seed=self.synthetic_seed,
                        frame_size=self.synthetic_frame_size)
        return {}


@dataclass
class RunArguments:
    """What to do, the optimisation recipe (CLIP4Clip/CLIP2Video defaults), checkpoints, logging and the Hub."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints, model, logs, reports go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": (
        "Allow training into a non-empty output_dir (nothing is deleted but this script's own previous checkpoints).")})
    do_train: bool = field(default=False, metadata={"help": "Train (with periodic evaluation if --do_eval)."})
    do_eval: bool = field(default=False, metadata={"help": "Evaluate on eval_split (after training if --do_train)."})
    do_export_features: bool = field(default=False, metadata={"help": (
        "Write video and caption retrieval embeddings of eval_split to output_dir/features.safetensors (+ .json index).")})
    compare_mean_pooling: bool = field(default=False, metadata={"help": (
        "Also train/evaluate the same model with mean pooling (temporal_head=mean, no TDB, TAB without temporal "
        "input) in output_dir/mean_pooling and print both rows.")})
    seed: int = field(default=42, metadata={"help": "Seed of initialisation and data order."})
    learning_rate: Optional[float] = field(default=None, metadata={"help": (
        "Learning rate of the new (temporal) modules (default: 1e-4 on a pretrained model, 1e-3 from scratch).")})
    clip_learning_rate: Optional[float] = field(default=None, metadata={"help": (
        "Learning rate of the CLIP towers and logit scale (default: 1e-7, CLIP2Video's fine-tuning rate, on a "
        "pretrained model; 1e-3 from scratch: random towers do not move at 1e-7).")})
    weight_decay: float = field(default=0.2, metadata={"help": "AdamW weight decay (not on biases, norms, scale)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon."})
    max_grad_norm: Optional[float] = field(default=None, metadata={"help": "Clip gradients to this norm (unset: no)."})
    num_train_epochs: int = field(default=5, metadata={"help": "Training epochs."})
    max_train_steps: Optional[int] = field(default=None, metadata={"help": "Optimizer steps; overrides epochs."})
    train_batch_size: int = field(default=128, metadata={"help": (
        "GLOBAL batch (all processes and accumulation steps); the contrastive loss sees "
        "train_batch_size / gradient_accumulation_steps pairs at a time.")})
    train_group_size: int = field(default=1, metadata={"help": (
        "Keep consecutive groups of N training rows in the same batch (groups are shuffled, not rows). With "
        "synthetic-motion's twin pairs (N=2) every video meets its time-reversed twin as a hard negative.")})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    eval_batch_size: int = field(default=64, metadata={"help": "Videos (or captions) per process per eval batch."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Linear warm-up share of the steps, then cosine."})
    mixed_precision: Optional[str] = field(default=None, metadata={"help": (
        "'no', 'fp16' or 'bf16' (default: accelerate's config / launch option).")})
    logging_steps: int = field(default=50, metadata={"help": "Log loss, learning rate, logit scale, samples/s every N steps."})
    eval_steps: Optional[int] = field(default=None, metadata={"help": (
        "With --do_eval: also evaluate every N training steps (default: only after training).")})
    checkpointing_steps: Optional[str] = field(default="epoch", metadata={"help": (
        "Save the training state every N steps (an int), at each epoch end ('epoch', also done with an int), or "
        "'no'. Checkpoints are written to a temporary folder and renamed (atomic).")})
    save_total_limit: Optional[int] = field(default=3, metadata={"help": (
        "Keep only the N newest checkpoints (default 3; as Trainer's option).")})
    resume_from_checkpoint: Optional[str] = field(default=None, metadata={"help": (
        "'latest' (newest complete checkpoint in output_dir/checkpoints; an error when there is none), "
        "'latest_if_any' (the same, or a fresh start when there is none) or a checkpoint folder.")})
    tie_rule: str = field(default="pessimistic", metadata={"help": (
        f"Metric tie rule {TIE_RULES}: 'pessimistic' counts a tie against the model; 'original' is CLIP2Video's.")})
    dsl: bool = field(default=False, metadata={"help": "Also report dual-softmax re-scored metrics (keys dsl_*)."})
    dsl_temperature: float = field(default=100.0, metadata={"help": "DSL temperature on cosine similarities."})
    report_to: str = field(default="tensorboard", metadata={"help": "accelerate trackers: 'tensorboard', 'all', 'none'."})
    visual_report: bool = field(default=True, metadata={"help": (
        "Write report/similarity.png and report/index.html (each query's top-5 videos as thumbnails).")})
    report_num_queries: int = field(default=24, metadata={"help": "Queries shown in the HTML report."})
    push_to_hub: bool = field(default=False, metadata={"help": (
        "Push the final model folder to the Hub: weights, config, code, processor, card, all_results.json.")})
    push_reports: bool = field(default=False, metadata={"help": (
        "With --push_to_hub, also push the logs (runs/), train_history.json, the visual report (thumbnails of the "
        "test videos) and data_report.json.")})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "Repository id for --push_to_hub."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Token for --push_to_hub (default: login)."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})


#: The allowed values of every numeric option, checked at parse time: option -> (rule in words, test).
AT_LEAST_ONE = ("an integer >= 1", lambda value: value >= 1)
NON_NEGATIVE = (">= 0", lambda value: value >= 0)
POSITIVE = ("> 0", lambda value: value > 0)
FRACTION = ("in [0, 1]", lambda value: 0 <= value <= 1)
ADAM_BETA = ("in [0, 1)", lambda value: 0 <= value < 1)
NUMERIC_RULES = {
    # ModelArguments
    "num_frames": AT_LEAST_ONE, "num_temporal_layers": AT_LEAST_ONE, "num_centers": AT_LEAST_ONE,
    "center_weight": FRACTION, "scratch_hidden_size": AT_LEAST_ONE, "scratch_num_layers": AT_LEAST_ONE,
    "scratch_num_heads": AT_LEAST_ONE, "scratch_image_size": AT_LEAST_ONE, "scratch_patch_size": AT_LEAST_ONE,
    # DataArguments
    "max_words": ("an integer >= 3 (start and end tokens included)", lambda value: value >= 3),
    "feature_framerate": AT_LEAST_ONE, "dataloader_num_workers": NON_NEGATIVE, "max_train_samples": AT_LEAST_ONE,
    "max_eval_videos": AT_LEAST_ONE, "train_size": AT_LEAST_ONE, "test_size": AT_LEAST_ONE,
    "synthetic_seed": NON_NEGATIVE, "synthetic_frame_size": AT_LEAST_ONE, "shuffle_buffer_size": AT_LEAST_ONE,
    # RunArguments
    "seed": NON_NEGATIVE, "learning_rate": NON_NEGATIVE, "clip_learning_rate": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE, "adam_beta1": ADAM_BETA, "adam_beta2": ADAM_BETA, "adam_epsilon": POSITIVE,
    "max_grad_norm": POSITIVE, "num_train_epochs": AT_LEAST_ONE, "max_train_steps": AT_LEAST_ONE,
    "train_batch_size": AT_LEAST_ONE, "train_group_size": AT_LEAST_ONE, "gradient_accumulation_steps": AT_LEAST_ONE,
    "eval_batch_size": AT_LEAST_ONE, "warmup_ratio": FRACTION, "logging_steps": AT_LEAST_ONE,
    "eval_steps": AT_LEAST_ONE, "save_total_limit": AT_LEAST_ONE, "dsl_temperature": POSITIVE,
    "report_num_queries": NON_NEGATIVE,
}
#: Learning rates (new modules, CLIP) when none is given: CLIP2Video's fine-tuning rates on a pretrained model; the
#: default job's from scratch.
PRETRAINED_LEARNING_RATES, SCRATCH_LEARNING_RATES = (1e-4, 1e-7), (1e-3, 1e-3)


class ArgumentError(ValueError):
    """An option value or combination that the command line refuses (`error: ...`, exit status 2, as argparse)."""


def argument_parser() -> HfArgumentParser:
    return HfArgumentParser((ModelArguments, DataArguments, RunArguments), description=__doc__.split("\n\n")[0])


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[ModelArguments, DataArguments, RunArguments]:
    """Command line (or a single .json/.yaml file) -> the three argument dataclasses, validated (`check_args`);
    no argument = the default job."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argument_parser()
    if not argv:
        logger.info("no argument: running the default job (%s)", " ".join(DEFAULT_JOB))
        argv = list(DEFAULT_JOB)
    if len(argv) == 1 and argv[0].endswith(".json"):
        parsed = parser.parse_json_file(os.path.abspath(argv[0]))
    elif len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        parsed = parser.parse_yaml_file(os.path.abspath(argv[0]))
    else:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    check_args(*parsed)
    model_args, _, args = parsed
    pretrained, scratch = PRETRAINED_LEARNING_RATES, SCRATCH_LEARNING_RATES
    new_rate, clip_rate = pretrained if model_args.model_name_or_path is not None else scratch
    args.learning_rate = new_rate if args.learning_rate is None else args.learning_rate
    args.clip_learning_rate = clip_rate if args.clip_learning_rate is None else args.clip_learning_rate
    return parsed


def check_numbers(*arguments) -> None:
    """Every numeric option against `NUMERIC_RULES`: a `ValueError` naming the option and the allowed values."""
    for group in arguments:
        for option in dataclasses.fields(group):
            value = getattr(group, option.name)
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            rule, allowed = NUMERIC_RULES.get(option.name, NON_NEGATIVE)  # a test requires a rule for every option
            if not math.isfinite(value) or not allowed(value):
                raise ArgumentError(f"--{option.name} must be {rule}, got {value}")


def check_args(model_args: ModelArguments, data_args: DataArguments, args: RunArguments) -> None:
    """Everything that can be checked before touching the disk: numbers, choices, combinations, the model source."""
    check_numbers(model_args, data_args, args)
    if not (args.do_train or args.do_eval or args.do_export_features):
        raise ArgumentError("nothing to do: give --do_train, --do_eval and/or --do_export_features")
    if args.tie_rule not in TIE_RULES:
        raise ArgumentError(f"--tie_rule must be one of {TIE_RULES}, got {args.tie_rule!r}")
    if args.push_to_hub and not args.hub_model_id:
        raise ArgumentError("--push_to_hub needs --hub_model_id")
    every = args.checkpointing_steps
    if every not in (None, "no", "epoch") and not (str(every).isdigit() and int(every) >= 1):
        raise ArgumentError(f"--checkpointing_steps must be an integer >= 1, 'epoch' or 'no', got {every!r}")
    if args.compare_mean_pooling and not args.do_train:
        raise ArgumentError("--compare_mean_pooling trains a baseline: it needs --do_train")
    if args.resume_from_checkpoint is not None and not args.do_train:
        raise ArgumentError("--resume_from_checkpoint resumes training: it needs --do_train")
    if args.train_batch_size % args.gradient_accumulation_steps:
        raise ArgumentError(f"--train_batch_size {args.train_batch_size} must divide by --gradient_accumulation_steps "
                            f"{args.gradient_accumulation_steps}")
    if data_args.streaming and args.do_train and not args.max_train_steps:
        raise ArgumentError("--streaming reads a stream of unknown length: give --max_train_steps")
    if data_args.streaming and data_args.is_benchmark:
        raise ArgumentError("--streaming reads datasets sources (videofolder, webdataset, parquet, ...), not benchmarks")
    for option, given in (("--max_train_samples", data_args.max_train_samples is not None),
                          ("--train_group_size", args.train_group_size != 1), ("--cache_videos", data_args.cache_videos)):
        if data_args.streaming and given:
            raise ArgumentError(f"--streaming reads each row once, in shuffled shards: it cannot honour {option}")
    if model_args.model_name_or_path is not None:
        check_model_source(model_args.model_name_or_path)


# ----------------------------------------------------------------------------------------------------------------------
# 3. Data: captions tokenised once, videos decoded per item (optionally once for the whole run)
# ----------------------------------------------------------------------------------------------------------------------

def load_stream_split(data_args: DataArguments, split: str, accelerator: Accelerator, seed: int) -> StreamSplit:
    """The training split as a stream: shuffled with a buffer, this process's shards (`split_dataset_by_node`)."""
    from datasets.distributed import split_dataset_by_node

    dataset, columns, base_dir = data_args.open_split(split, streaming=True)
    dataset = dataset.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    dataset = split_dataset_by_node(dataset, rank=accelerator.process_index, world_size=accelerator.num_processes)
    logger.info("%s/%s: streamed, %d shard(s) for %d process(es)", data_args.describe(), split,
                dataset.num_shards, accelerator.num_processes)
    return StreamSplit(dataset, columns, base_dir, DataReport(source=data_args.describe(), split=split), accelerator,
                       seed)


def load_split(data_args: DataArguments, split: str, processor: CLIP2VideoProcessor, max_videos: Optional[int] = None,
               max_rows: Optional[int] = None) -> SplitData:
    """A benchmark split (datasets_scripts) or a split of any datasets source, laid out one row per caption."""
    report, videos, spans = DataReport(source=data_args.describe(), split=split), None, None
    if data_args.is_benchmark:
        rows = load_benchmark(data_args.dataset_name, split, data_dir=data_args.data_dir, video_dir=data_args.video_dir,
                              cache_dir=data_args.cache_dir, strict=data_args.strict, **data_args.benchmark_options())
    else:
        dataset, columns, base_dir = data_args.open_split(split)
        table = caption_table.build_caption_table(dataset, columns, base_dir, data_args.describe(), split,
                                                    strict=data_args.strict)
        rows, videos, report = table.rows, table.videos, table.report
        spans = table.spans or None  # timestamped captions: each clip is its span of the video
    if max_videos is not None:
        rows = rows.filter(lambda index: index < max_videos, input_columns="video_index")
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    eval_index = get_eval_index(rows)
    if videos is None:  # benchmarks: the path of each video, from its first caption row
        videos = [rows[row]["video"] for row in eval_index.first_caption_rows]
    report.num_videos, report.num_captions = eval_index.num_videos, len(rows)
    tokens = processor.tokenize(list(rows["caption"]))
    store = VideoFrameStore(videos, processor.video_processor, cache=data_args.cache_videos, names=eval_index.video_ids,
                            spans=spans)
    logger.info("%s/%s: %d captions, %d videos", data_args.describe(), split, len(rows), eval_index.num_videos)
    return SplitData(rows, tokens, store, eval_index,
                     time_reversed_pairs=data_args.is_benchmark and data_args.dataset_name == SYNTHETIC_NAME,
                     report=report)


# ----------------------------------------------------------------------------------------------------------------------
# 4. Model and processor
# ----------------------------------------------------------------------------------------------------------------------


def scratch_config(model_args: ModelArguments, processor_max_words: int, tokenizer) -> CLIP2VideoConfig:
    """A small CLIP2Video with CLIP's vocabulary, for training from scratch."""
    width, layers, heads = model_args.scratch_hidden_size, model_args.scratch_num_layers, model_args.scratch_num_heads
    text = dict(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                num_attention_heads=heads, max_position_embeddings=max(processor_max_words, 16),
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=0)
    vision = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
                  image_size=model_args.scratch_image_size, patch_size=model_args.scratch_patch_size)
    options = dict(num_temporal_layers=2, original_padding=False)
    options.update(model_args.temporal_overrides())
    return CLIP2VideoConfig(text_config=text, vision_config=vision, projection_dim=width, **options)


def build_model(model_args: ModelArguments, processor: CLIP2VideoProcessor) -> CLIP2VideoModel:
    """CLIP2Video from scratch, from CLIP (+ temporal options) or from a CLIP2Video checkpoint."""
    source = model_args.model_name_or_path
    if source is None:
        model = CLIP2VideoModel(scratch_config(model_args, processor.max_words, processor.tokenizer))
        logger.info("model from scratch: %.2f M parameters", sum(p.numel() for p in model.parameters()) / 1e6)
        return model
    model_type = loading_clip2video.model_type(source)
    if model_type == "clip":
        options = {"original_padding": False, **model_args.temporal_overrides()}
        logger.info("model from CLIP %s with %s", source, options)
        return CLIP2VideoModel.from_clip(source, **options)
    if model_type != "clip2video":
        raise ValueError(f"{source}: model_type {model_type!r} is neither 'clip' nor 'clip2video'")
    overrides = model_args.temporal_overrides()
    if overrides:
        raise ValueError(f"temporal options {sorted(overrides)} apply to models built from CLIP or from scratch; "
                         f"{source} is a CLIP2Video checkpoint with its own config")
    return loading_clip2video.load_clip2video_weights(source, model_args.trust_remote_code)


def build_processor(model_args: ModelArguments, data_args: DataArguments) -> CLIP2VideoProcessor:
    """The checkpoint's processor when it has one (its code runs only with --trust_remote_code), else CLIP tokenizer
    files + a video processor."""
    source = model_args.model_name_or_path
    if source is not None and model_args.tokenizer_name is None:
        try:
            processor = load_processor(source, trust_remote_code=model_args.trust_remote_code)
            if data_args.max_words:
                processor.max_words = data_args.max_words
            return processor
        except ProcessorNotFoundError as error:
            logger.info("%s; building one from its tokenizer", error)
    tokenizer = model_args.tokenizer_name or source or str(CLIP_TOKENIZER_DIR)
    return CLIP2VideoProcessor.from_clip_tokenizer(tokenizer, max_words=data_args.max_words or 32)


# ----------------------------------------------------------------------------------------------------------------------
# The run, step by step (main calls these in order)
# ----------------------------------------------------------------------------------------------------------------------


def check_paths(model_args: ModelArguments, args: RunArguments) -> None:
    """The checks of step 1 that read the disk (or the Hub): a non-empty output_dir, the model source."""
    output = Path(args.output_dir)
    if args.do_train and not args.overwrite_output_dir and args.resume_from_checkpoint is None and output.is_dir() \
            and any(output.iterdir()):
        raise ValueError(f"{output} is not empty: pass --overwrite_output_dir (to write into it) or "
                         "--resume_from_checkpoint latest")
    if args.do_train:
        check_checkpoint_root(args.output_dir)
    if model_args.model_name_or_path is not None:
        loading_clip2video.check_model_available(model_args.model_name_or_path)


def setup_logging(accelerator: Accelerator) -> None:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if accelerator.is_local_main_process else logging.WARNING)
    logger.setLevel(logging.INFO if accelerator.is_local_main_process else logging.WARNING)
    transformers.utils.logging.set_verbosity_warning() if accelerator.is_local_main_process \
        else transformers.utils.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def requested_processes() -> Optional[int]:
    """The `--num_processes` of the `accelerate launch` that started this process, if it was one (Linux: the
    launcher's command line, read with accelerate's own parser; its single-process launcher does not pass it on)."""
    from accelerate.commands.launch import launch_command_parser

    try:
        words = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
        launched, _ = launch_command_parser().parse_known_args(words[words.index("launch") + 1:])
    except (OSError, ValueError, SystemExit):  # no /proc, not a launch, or a command line the parser refuses
        return None
    return launched.num_processes


def setup_accelerator(model_args: ModelArguments, data_args: DataArguments, args: RunArguments) -> Accelerator:
    """Step 2: the Accelerator (the learning-rate schedule is over optimizer steps: `train` steps it once per step;
    trackers log into output_dir/runs, Trainer's folder), logging on the main process."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir,
                                            logging_dir=os.path.join(args.output_dir, "runs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        step_scheduler_with_optimizer=False,
    )
    setup_logging(accelerator)
    logger.info("%d process(es), device %s, mixed precision %s", accelerator.num_processes, accelerator.device,
                accelerator.mixed_precision)
    asked = requested_processes()
    if asked is not None and asked > accelerator.num_processes:
        logger.warning("accelerate launch was asked for %d processes but started %d: on a CPU machine `--cpu "
                       "--num_processes N` runs one process; for N real processes use `ACCELERATE_USE_CPU=1 "
                       "accelerate launch --multi_gpu --num_processes N ...`", asked, accelerator.num_processes)
    if data_args.dataset_name == SYNTHETIC_NAME and model_args.model_name_or_path is None \
            and data_args.synthetic_frame_size != model_args.scratch_image_size:
        logger.warning("synthetic frames of %d px are resized to the model's %d px (--synthetic_frame_size, "
                       "--scratch_image_size)", data_args.synthetic_frame_size, model_args.scratch_image_size)
    return accelerator


def load_splits(accelerator: Accelerator, data_args: DataArguments, args: RunArguments,
                processor: CLIP2VideoProcessor) -> dict[str, Any]:
    """Step 3: the training split (`SplitData`, or a `StreamSplit` with --streaming) and the eval split, shared by the
    model and the baseline; the first process builds the datasets cache / synthetic videos, the others then read it."""
    splits: dict[str, Any] = {}
    with accelerator.main_process_first():
        if args.do_train and data_args.streaming:
            splits["train"] = load_stream_split(data_args, data_args.train_split, accelerator, args.seed)
        elif args.do_train:
            splits["train"] = load_split(data_args, data_args.train_split, processor,
                                         max_rows=data_args.max_train_samples)
        if args.do_eval or args.do_export_features:
            splits["eval"] = load_split(data_args, data_args.eval_split, processor,
                                        max_videos=data_args.max_eval_videos)
    return splits


@dataclass(frozen=True)
class ModelRun:
    """One model of the job: CLIP2Video, or the mean-pooling baseline trained next to it (--compare_mean_pooling)."""

    name: str  # the row of the results table
    model_args: ModelArguments
    args: RunArguments  # output_dir is this model's folder
    log_prefix: str = ""  # of its logged values ("mean_pooling/")


def model_runs(model_args: ModelArguments, args: RunArguments) -> list[ModelRun]:
    runs = [ModelRun("CLIP2Video", model_args, args)]
    if args.compare_mean_pooling:
        # A resumed job resumes the baseline from its own newest checkpoint, if it got to write one.
        baseline_args = dataclasses.replace(
            args, output_dir=os.path.join(args.output_dir, "mean_pooling"),
            resume_from_checkpoint=RESUME_LATEST_IF_ANY if args.resume_from_checkpoint else None)
        runs.append(ModelRun("mean pooling", dataclasses.replace(model_args, **MEAN_POOLING_OPTIONS), baseline_args,
                             "mean_pooling/"))
    return runs


def build_run_model(accelerator: Accelerator, run: ModelRun, data_args: DataArguments, processor: CLIP2VideoProcessor,
                    splits: dict[str, Any]) -> tuple[CLIP2VideoModel, VideoBatcher]:
    """Step 4: the model (seeded), frozen towers and gradient checkpointing as asked; the video options it implies
    (frames, frame size) go into the processor (saved with the model) and the splits' frame stores."""
    accelerator.free_memory()  # forget a previous model's prepared objects (save_state saves all registered ones)
    set_seed(run.args.seed)
    model = build_model(run.model_args, processor)
    freeze_towers(model, text=run.model_args.freeze_text_tower, vision=run.model_args.freeze_vision_tower)
    if run.model_args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    # the video processor for this model and data, built once; saved with the model, it prepares videos as in training
    benchmark = data_args.dataset_name if data_args.is_benchmark else None
    video_processor = processor.video_processor.for_model(model.config, **data_args.video_processor_kwargs(benchmark))
    processor.video_processor = video_processor
    data_sources.check_prepared_sources([data_args.dataset_name, *data_args.data_files().values()], video_processor)
    for split in (split for split in splits.values() if isinstance(split, SplitData)):
        split.store.video_processor = video_processor
        if data_args.cache_videos:  # decode every video once for the whole run (a no-op for the second model)
            for failure in split.store.preload(range(len(split.store)), not accelerator.is_local_main_process):
                logger.warning("unreadable video: %s", failure)
    return model, VideoBatcher(video_processor)


def training_batches(accelerator: Accelerator, train_split, batcher: VideoBatcher, processor: CLIP2VideoProcessor,
                     data_args: DataArguments, args: RunArguments) -> tuple[Any, int]:
    """This process's training micro-batches and the optimizer steps per epoch (1 for a stream, whose length is
    unknown: --max_train_steps bounds the run)."""
    micro_batch = args.train_batch_size // args.gradient_accumulation_steps
    if micro_batch % accelerator.num_processes:
        raise ValueError(f"--train_batch_size {args.train_batch_size} must divide by gradient_accumulation_steps "
                         f"x processes ({args.gradient_accumulation_steps} x {accelerator.num_processes})")
    if isinstance(train_split, StreamSplit):
        return train_split.batches_for(batcher, processor.tokenize, micro_batch, data_args.dataloader_num_workers), 1
    batches = SampledBatches(train_split, batcher, micro_batch, accelerator, args.seed, args.train_group_size,
                             data_args.dataloader_num_workers)
    return batches, max(1, (len(train_split.rows) // micro_batch) // args.gradient_accumulation_steps)


def training_options(args: RunArguments) -> TrainingOptions:
    every = args.checkpointing_steps
    return TrainingOptions(
        output_dir=args.output_dir, gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_grad_norm=args.max_grad_norm, logging_steps=args.logging_steps,
        checkpoint_every=int(every) if every is not None and str(every).isdigit() else None,
        checkpoint_epochs=every not in (None, "no"), save_total_limit=args.save_total_limit, eval_steps=args.eval_steps)


def build_optimizer(model: CLIP2VideoModel, args: RunArguments, max_steps: int):
    """Step 5: AdamW over the parameter groups, warm-up then cosine over optimizer steps (prepared, so that
    save_state/load_state keep it, but stepped by `train` once per optimizer step)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, args.learning_rate, args.clip_learning_rate, args.weight_decay), betas=(args.adam_beta1, args.adam_beta2),
                                  eps=args.adam_epsilon)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, int(args.warmup_ratio * max_steps), max_steps)


def prepare_and_resume(accelerator: Accelerator, run: ModelRun, model, optimizer, scheduler, max_steps: int,
                       stream_layout: Optional[dict]):
    """Step 6: `accelerator.prepare`, then the checkpoint of --resume_from_checkpoint loaded (a streamed run only with
    the checkpoint's `stream_layout`), or this script's earlier checkpoints in output_dir removed. Returns the
    prepared objects, the trainer state and the resumed step."""
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state, resumed_from_step = TrainerState(stream_layout=stream_layout), None
    output_dir = run.args.output_dir
    checkpoint = resolve_checkpoint(run.args.resume_from_checkpoint, output_dir)
    if checkpoint is not None:
        state, resumed = load_checkpoint(accelerator, checkpoint, optimizer, scheduler, stream_layout)
        resumed_from_step = resumed["step"]
        logger.info("%sresumed from %s: step %d of %d (epoch %d, micro-batch %d of the epoch), optimizer at step "
                    "%d, scheduler at step %d; %d steps to go", run.log_prefix, checkpoint, state.completed_steps,
                    max_steps, state.epoch, state.batches_in_epoch, resumed["optimizer_step"],
                    resumed["scheduler_step"], max(max_steps - state.completed_steps, 0))
    else:
        if accelerator.is_main_process:
            removed = remove_previous_checkpoints(output_dir)
            if removed:
                logger.info("%sremoved this script's earlier checkpoints from %s: %s", run.log_prefix, output_dir,
                            ", ".join(removed))
        accelerator.wait_for_everyone()
    return model, optimizer, scheduler, state, resumed_from_step


@dataclass
class ModelResult:
    """What one model's run gives: the trained model, its final evaluation and its training figures."""

    model: CLIP2VideoModel  # unwrapped
    evaluation: Optional[EvalResult] = None
    training: Optional[TrainResult] = None

    @property
    def metrics(self) -> dict[str, float]:
        return self.evaluation.metrics if self.evaluation is not None else {}

    def summary(self) -> dict[str, Any]:
        """The model's entry of all_results.json: metrics and training figures."""
        return {**self.metrics, **(self.training.summary() if self.training is not None else {})}


def save_model_outputs(accelerator: Accelerator, run: ModelRun, result: ModelResult, processor: CLIP2VideoProcessor,
                       eval_split: Optional[SplitData]) -> None:
    """Step 9 for one model: features, visual report, the model with its processor and training history."""
    args, output_dir = run.args, run.args.output_dir
    if accelerator.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        if args.do_export_features:
            export_features(result.evaluation.encoded, eval_split, output_dir)
        if args.do_eval and args.visual_report:
            write_visual_report(result, eval_split, output_dir, args.report_num_queries,
                                run.log_prefix.rstrip("/") or "CLIP2Video")
        if args.do_train:
            result.model.save_pretrained(output_dir)
            processor.save_pretrained(output_dir)
            history = dataclasses.asdict(result.training.state)
            write_text(Path(output_dir) / TRAIN_HISTORY, json.dumps(history, indent=2))
    accelerator.wait_for_everyone()


def save_job_outputs(all_results: dict[str, Any], results: dict[str, ModelResult], model_args: ModelArguments,
                     data_args: DataArguments, args: RunArguments, splits: dict[str, Any]) -> None:
    """Step 9 for the job (main process): all_results.json, the model card, the results table, the data report and
    the Hub push."""
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "all_results.json").write_text(json.dumps(all_results, indent=2))
    metric_rows = {name: result.metrics for name, result in results.items() if result.metrics}
    if args.do_train:
        first = next(iter(results.values())).model
        facts = publish_clip2video.CardFacts(
            data=data_args.describe(), train_split=data_args.train_split, eval_split=data_args.eval_split,
            repo=args.hub_model_id or args.output_dir, base_model=model_args.model_name_or_path,
            card_datasets=[data_args.card_dataset()] if data_args.card_dataset() else (), tie_rule=args.tie_rule,
            recipe={name: getattr(args, name) for name in ("learning_rate", "clip_learning_rate", "weight_decay",
                                                           "train_batch_size", "num_train_epochs", "warmup_ratio",
                                                           "seed")})
        card = publish_clip2video.training_card(first.config, sum(p.numel() for p in first.parameters()), facts,
                                            metric_rows)
        write_text(output / "README.md", card)
    if metric_rows:
        print(f"\n{data_args.describe()} {data_args.eval_split} ({args.tie_rule} ties), "
              f"{all_results['wall_time_seconds']:.0f} s:\n{metrics_table(metric_rows)}")
    caption_table.write_data_report([split.report for split in splits.values()], str(output))
    if args.push_to_hub:
        publish_clip2video.push_model_folder(str(output), args.hub_model_id, token=args.hub_token,
                                         private=args.hub_private_repo, push_reports=args.push_reports)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The whole job; returns all_results (per model: metrics and training figures; wall_time_seconds)."""
    # 1. Arguments: parsed and validated before anything touches the disk, then the output folder and model source
    model_args, data_args, args = parse_args(argv)
    started = time.perf_counter()
    check_paths(model_args, args)

    # 2. Accelerate and logging
    accelerator = setup_accelerator(model_args, data_args, args)

    # 3. Data and processor (the splits are shared by the model and the baseline)
    processor = build_processor(model_args, data_args)
    splits = load_splits(accelerator, data_args, args, processor)
    if args.report_to != "none":  # the first write into output_dir, once the arguments and the data are known good
        accelerator.init_trackers("run_retrieval", config={k: v for k, v in dataclasses.asdict(args).items()
                                                            if isinstance(v, (int, float, str, bool))})

    results: dict[str, ModelResult] = {}
    for run in model_runs(model_args, args):  # CLIP2Video, then the mean-pooling baseline if asked
        # 4. Model
        model, batcher = build_run_model(accelerator, run, data_args, processor, splits)
        options = EvalOptions(args.eval_batch_size, args.tie_rule, args.dsl, args.dsl_temperature, data_args.strict,
                              data_args.dataloader_num_workers)
        evaluator = None if "eval" not in splits else Evaluator(accelerator, splits["eval"], batcher, options,
                                                                run.log_prefix)
        training = None
        if args.do_train:
            # 5. Optimizer and schedule
            batches, steps_per_epoch = training_batches(accelerator, splits["train"], batcher, processor, data_args,
                                                        run.args)
            max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
            optimizer, scheduler = build_optimizer(model, run.args, max_steps)
            # 6. Prepare and resume
            model, optimizer, scheduler, state, resumed_from_step = prepare_and_resume(
                accelerator, run, model, optimizer, scheduler, max_steps, getattr(batches, "layout", None))
            # 7. Train
            loss_fn = CLIP2VideoContrastiveLoss(center_weight=accelerator.unwrap_model(model).config.center_weight)
            logger.info("%straining %d steps: global batch %d (%d processes x %d per process x %d accumulation)",
                        run.log_prefix, max_steps, args.train_batch_size, accelerator.num_processes,
                        args.train_batch_size // args.gradient_accumulation_steps // accelerator.num_processes,
                        args.gradient_accumulation_steps)
            setup = TrainingSetup(accelerator, model, optimizer, scheduler, batches, batcher, loss_fn, compute_loss,
                                  steps_per_epoch, max_steps, state, splits["train"].report, data_args.strict,
                                  run.log_prefix)
            periodic = evaluator if args.do_eval and args.eval_steps else None
            training = TrainResult(train(setup, training_options(run.args), periodic), resumed_from_step)
        else:
            model = accelerator.prepare(model)
        # 8. Evaluate
        result = ModelResult(accelerator.unwrap_model(model), training=training)
        if evaluator is not None:
            result.evaluation = evaluator(model, training.state.completed_steps if training else 0)
        # 9. Save the model (and its features, report)
        save_model_outputs(accelerator, run, result, processor, splits.get("eval"))
        results[run.name] = result

    # 9. Results, model card, Hub
    all_results: dict[str, Any] = {name: result.summary() for name, result in results.items()}
    all_results["wall_time_seconds"] = round(time.perf_counter() - started, 1)
    # every process's undecodable videos, for the data report
    caption_table.gather_undecodable([split.report for split in splits.values()], gather_object)
    accelerator.end_training()
    if accelerator.is_main_process:
        save_job_outputs(all_results, results, model_args, data_args, args, splits)
    return all_results


def write_visual_report(result: ModelResult, split: SplitData, output_dir: str, num_queries: int, title: str) -> Path:
    """output_dir/report: the evaluation's queries and top videos, heatmap and loss curve (`report_clip2video`)."""
    evaluation, names = result.evaluation, split.eval_index.video_ids
    metrics = evaluation.metrics
    summary = ", ".join(f"{k} {metrics[k]:.1f}" for k in ("t2v_R1", "t2v_R5", "v2t_R1", "v2t_R5") if k in metrics)
    captions = split.rows["caption"]
    return report_clip2video.write_retrieval_report(
        Path(output_dir) / "report", evaluation.similarity.numpy(), evaluation.targets,
        [captions[row] for row in evaluation.caption_rows], [names[video] for video in evaluation.video_indices],
        lambda column: split.store.load(evaluation.video_indices[column]), title, num_queries, summary=summary,
        log_history=result.training.state.log_history if result.training is not None else ())


def cli() -> None:
    """`python run_retrieval.py ...`: an option error is `run_retrieval.py: error: ...` with exit status 2, as
    argparse gives for a malformed value."""
    try:
        main()
    except (ArgumentError, data_sources.DataSourceError) as error:  # a bad option or a source that cannot be read
        argument_parser().error(str(error))
    except (NoTrainingDataError, NonFiniteScoresError, loading_clip2video.ModelLoadError) as error:  # named, no traceback
        logger.error("%s: %s", type(error).__name__, error)
        sys.exit(1)  # usage, then `run_retrieval.py: error: ...`, exit status 2


if __name__ == "__main__":
    cli()
