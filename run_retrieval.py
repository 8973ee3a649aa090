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
`ModelResult`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list, gather_object, set_seed
from huggingface_hub import HfApi
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_cosine_schedule_with_warmup

from configuration_clip2video import CLIP2VideoConfig
import data_clip2video
from data_clip2video import (CaptionVideoDataset, DataReport, VideoBatcher, VideoDataset, VideoFrameStore,
                             encode_texts, encode_videos)
from datasets_scripts import BENCHMARK_NAMES, SYNTHETIC_NAME, get_eval_index, load_benchmark
from loss_clip2video import CLIP2VideoContrastiveLoss, gather_uneven
from modeling_clip2video import CLIP_MODULES, CLIP2VideoModel
from processing_clip2video import CLIP2VideoProcessor, VideoDecodeError
import report_clip2video
from retrieval_metrics import TIE_RULES, dsl_retrieval_metrics, flatten_metrics, retrieval_metrics
from utils_clip2video import (CLIP_TOKENIZER_DIR, PAPER, TMP_PREFIX, ModelSourceError, ProcessorNotFoundError, atomic_directory,
                              build_model_card, check_model_source, load_processor, write_text)


logger = logging.getLogger("run_retrieval")

#: The temporal options of `CLIP2VideoConfig` that can be set from the command line.
TEMPORAL_OPTIONS = ("num_frames", "temporal_head", "num_temporal_layers", "use_tdb", "tdb_projection", "use_tab",
                    "tab_input", "num_centers", "center_weight", "original_padding")
#: Model options of the mean-pooling baseline (`--compare_mean_pooling`): an order-invariant video head.
MEAN_POOLING_OPTIONS = dict(temporal_head="mean", use_tdb=False, tab_input="none")
CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
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
    "--checkpointing_steps", "epoch", "--checkpoints_total_limit", "1", "--logging_steps", "100",
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
class DataArguments(data_clip2video.SourceArguments, data_clip2video.VideoArguments):
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

    @property
    def is_benchmark(self) -> bool:
        """A benchmark name (or a mistyped one: load_benchmark names the choices) rather than a datasets source."""
        if self.data_files():
            return False
        name = self.dataset_name
        return name in BENCHMARK_NAMES or (not os.path.exists(name) and name.startswith(("msrvtt", "msvd", "vatex",
                                                                                          "synthetic")))

    def source_name(self) -> str:
        """The builder, folder or Hub id read; with data files and no --dataset_name, the builder of their extension."""
        if self.dataset_name == SYNTHETIC_NAME and self.data_files():  # the default name: not given
            return data_clip2video.builder_for_files(self.data_files())
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
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of the new (temporal) modules."})
    clip_learning_rate: float = field(default=1e-7, metadata={"help": "Learning rate of the CLIP towers and logit scale."})
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
    checkpoints_total_limit: Optional[int] = field(default=None, metadata={"help": "Keep only the N newest checkpoints."})
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
    push_to_hub: bool = field(default=False, metadata={"help": "Push the final model folder to the Hub."})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "Repository id for --push_to_hub."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Token for --push_to_hub (default: login)."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run stops before the optimizer step, checkpoints stay intact."""


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
    "eval_steps": AT_LEAST_ONE, "checkpoints_total_limit": AT_LEAST_ONE, "dsl_temperature": POSITIVE,
    "report_num_queries": NON_NEGATIVE,
}
#: `--resume_from_checkpoint` values that look for the newest checkpoint of output_dir.
RESUME_LATEST, RESUME_LATEST_IF_ANY = "latest", "latest_if_any"


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[ModelArguments, DataArguments, RunArguments]:
    """Command line (or a single .json/.yaml file) -> the three argument dataclasses, validated (`check_args`);
    no argument = the default job."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, RunArguments), description=__doc__.split("\n\n")[0])
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
                raise ValueError(f"--{option.name} must be {rule}, got {value}")


def check_args(model_args: ModelArguments, data_args: DataArguments, args: RunArguments) -> None:
    """Everything that can be checked before touching the disk: numbers, choices, combinations, the model source."""
    check_numbers(model_args, data_args, args)
    if not (args.do_train or args.do_eval or args.do_export_features):
        raise ValueError("nothing to do: give --do_train, --do_eval and/or --do_export_features")
    if args.tie_rule not in TIE_RULES:
        raise ValueError(f"--tie_rule must be one of {TIE_RULES}, got {args.tie_rule!r}")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id")
    every = args.checkpointing_steps
    if every not in (None, "no", "epoch") and not (str(every).isdigit() and int(every) >= 1):
        raise ValueError(f"--checkpointing_steps must be an integer >= 1, 'epoch' or 'no', got {every!r}")
    if args.compare_mean_pooling and not args.do_train:
        raise ValueError("--compare_mean_pooling trains a baseline: it needs --do_train")
    if args.resume_from_checkpoint is not None and not args.do_train:
        raise ValueError("--resume_from_checkpoint resumes training: it needs --do_train")
    if args.train_batch_size % args.gradient_accumulation_steps:
        raise ValueError(f"--train_batch_size {args.train_batch_size} must divide by --gradient_accumulation_steps "
                         f"{args.gradient_accumulation_steps}")
    if data_args.streaming and args.do_train and not args.max_train_steps:
        raise ValueError("--streaming reads a stream of unknown length: give --max_train_steps")
    if data_args.streaming and data_args.is_benchmark:
        raise ValueError("--streaming reads datasets sources (videofolder, webdataset, parquet, ...), not benchmarks")
    if model_args.model_name_or_path is not None:
        check_model_source(model_args.model_name_or_path)


def check_model_available(name_or_path: str) -> None:
    """A model that is not a local folder must be a Hub repo with a config: else `ModelSourceError` saying so."""
    if Path(check_model_source(name_or_path)).is_dir():
        return
    from transformers.utils import cached_file

    try:
        cached_file(name_or_path, "config.json")
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelSourceError(f"{name_or_path}: no such folder, and no model of that name could be loaded from the "
                               f"Hub ({reason})") from error


# ----------------------------------------------------------------------------------------------------------------------
# 3. Data: captions tokenised once, videos decoded per item (optionally once for the whole run)
# ----------------------------------------------------------------------------------------------------------------------


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This process's share of every global micro-batch, from a permutation that depends only on (seed, epoch).

    A global micro-batch of `micro_batch_size` rows is split in `world_size` equal slices in rank order, so the
    loss sees the same global batch whatever the number of processes; `skip_batches` resumes mid-epoch.
    """

    def __init__(self, num_rows: int, micro_batch_size: int, rank: int, world_size: int, seed: int,
                 group_size: int = 1):
        if micro_batch_size % world_size:
            raise ValueError(f"the global micro-batch ({micro_batch_size}) must divide by the {world_size} processes")
        if num_rows < micro_batch_size:
            raise ValueError(f"{num_rows} training rows cannot fill one global micro-batch of {micro_batch_size}")
        if group_size < 1 or micro_batch_size % group_size:
            raise ValueError(f"the global micro-batch ({micro_batch_size}) must divide by the group size ({group_size})")
        self.num_rows, self.micro_batch_size, self.rank, self.world_size, self.seed = (
            num_rows, micro_batch_size, rank, world_size, seed)
        self.group_size = group_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.start = epoch, skip_batches

    def __len__(self) -> int:
        return self.num_rows // self.micro_batch_size - self.start

    def _order(self) -> np.ndarray:
        """A permutation of the rows that keeps consecutive groups of `group_size` rows together."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.group_size == 1:
            return rng.permutation(self.num_rows)
        groups = rng.permutation(self.num_rows // self.group_size)
        return (groups[:, None] * self.group_size + np.arange(self.group_size)).reshape(-1)

    def __iter__(self):
        order = self._order()
        local = self.micro_batch_size // self.world_size
        for batch in range(self.start, self.num_rows // self.micro_batch_size):
            offset = batch * self.micro_batch_size + self.rank * local
            yield order[offset : offset + local].tolist()


@dataclass
class SplitData:
    """One split ready for the model: caption rows grouped by video, their tokens and the videos' frames."""

    rows: Any  # datasets.Dataset: video_id, video, caption, video_index
    tokens: dict[str, torch.Tensor]
    store: VideoFrameStore
    eval_index: Any  # datasets_scripts.EvalIndex
    #: videos 2k and 2k + 1 are one clip and its time reversal, with other captions (synthetic-motion)
    time_reversed_pairs: bool = False
    #: what validation skipped (missing/undecodable videos, empty captions), written to output_dir/data_report.json
    report: Optional[DataReport] = None

    @property
    def video_of_row(self) -> list[int]:
        return list(self.eval_index.caption_to_video)


class SampledBatches:
    """This process's training micro-batches of a map-style split: `GlobalBatchSampler` order, decoded in a DataLoader."""

    def __init__(self, split: SplitData, batcher: VideoBatcher, micro_batch: int, accelerator: Accelerator, seed: int,
                 group_size: int, num_workers: int):
        self.sampler = GlobalBatchSampler(len(split.rows), micro_batch, accelerator.process_index,
                                          accelerator.num_processes, seed, group_size=group_size)
        self.loader = torch.utils.data.DataLoader(CaptionVideoDataset(split.tokens, split.video_of_row, split.store),
                                                  batch_sampler=self.sampler, collate_fn=batcher.collate_pairs,
                                                  num_workers=num_workers)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip_batches)

    def __iter__(self):
        return iter(self.loader)


class StreamSplit:
    """A streamed training split: this process's share of the source rows (`split_dataset_by_node` after a buffered
    shuffle, both seeded: the stream's order depends only on the seed and the epoch)."""

    def __init__(self, dataset, columns: data_clip2video.Columns, base_dir: Optional[str], report: DataReport,
                 accelerator: Accelerator, seed: int):
        self.dataset, self.columns, self.base_dir, self.report = dataset, columns, base_dir, report
        self.accelerator, self.seed = accelerator, seed

    def batches_for(self, batcher: VideoBatcher, tokenize, micro_batch: int, num_workers: int) -> "StreamBatches":
        collator = data_clip2video.StreamCollator(batcher, tokenize, self.columns, self.base_dir, self.seed)
        return StreamBatches(self, collator, micro_batch // self.accelerator.num_processes, num_workers)


class StreamBatches:
    """This process's micro-batches of a stream, epoch by epoch.

    An epoch ends on every process as soon as one process's share runs out (a tiny all-gather per micro-batch), so
    no process waits in a collective for another that has finished. Resuming mid-epoch replays the epoch's stream
    (same seed and epoch: the same order, shuffle buffer included) and drops its first `skip_batches` micro-batches;
    the collator returns those without decoding their videos (`StreamCollator.skip_batches`), so a resume costs
    reading, not decoding, what came before the checkpoint.
    """

    def __init__(self, split: StreamSplit, collator: data_clip2video.StreamCollator, batch_size: int, num_workers: int):
        self.split, self.collator = split, collator
        self.loader = torch.utils.data.DataLoader(split.dataset, batch_size=batch_size, collate_fn=collator,
                                                  num_workers=num_workers)
        self.skip = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.split.dataset.set_epoch(epoch)  # reshuffles shards and buffer with seed + epoch
        self.collator.start_pass(epoch, skip_batches)
        self.skip = skip_batches

    def __iter__(self):
        for position, batch in enumerate(self._until_any_process_ends()):
            if position >= self.skip:
                yield batch

    def _until_any_process_ends(self):
        accelerator = self.split.accelerator
        iterator = iter(self.loader)
        while True:
            batch = next(iterator, None)
            flag = torch.tensor([batch is not None], device=accelerator.device)
            if accelerator.num_processes > 1:
                flag = accelerator.gather(flag)
            if not bool(flag.all()):
                return
            yield batch


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


def load_split(data_args: DataArguments, split: str, processor: CLIP2VideoProcessor, max_videos: Optional[int] = None, max_rows: Optional[int] = None) -> SplitData:
    """A benchmark split (datasets_scripts) or a split of any datasets source, laid out one row per caption."""
    report, videos = DataReport(source=data_args.describe(), split=split), None
    if data_args.is_benchmark:
        rows = load_benchmark(data_args.dataset_name, split, data_dir=data_args.data_dir, video_dir=data_args.video_dir,
                              cache_dir=data_args.cache_dir, strict=data_args.strict, **data_args.benchmark_options())
    else:
        dataset, columns, base_dir = data_args.open_split(split)
        table = data_clip2video.build_caption_table(dataset, columns, base_dir, data_args.describe(), split,
                                                    strict=data_args.strict)
        rows, videos, report = table.rows, table.videos, table.report
    if max_videos is not None:
        rows = rows.filter(lambda index: index < max_videos, input_columns="video_index")
    if max_rows is not None:
        rows = rows.select(range(min(max_rows, len(rows))))
    eval_index = get_eval_index(rows)
    if videos is None:  # benchmarks: the path of each video, from its first caption row
        videos = [rows[row]["video"] for row in eval_index.first_caption_rows]
    report.num_videos, report.num_captions = eval_index.num_videos, len(rows)
    tokens = processor.tokenize(list(rows["caption"]))
    store = VideoFrameStore(videos, processor.video_processor, cache=data_args.cache_videos, names=eval_index.video_ids)
    logger.info("%s/%s: %d captions, %d videos", data_args.describe(), split, len(rows), eval_index.num_videos)
    return SplitData(rows, tokens, store, eval_index, time_reversed_pairs=data_args.dataset_name == SYNTHETIC_NAME,
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


def _model_type(name_or_path: str, trust_remote_code: bool) -> str:
    config_file = Path(name_or_path) / "config.json"
    if config_file.is_file():
        return json.loads(config_file.read_text()).get("model_type", "")
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code).model_type


def build_model(model_args: ModelArguments, processor: CLIP2VideoProcessor) -> CLIP2VideoModel:
    """CLIP2Video from scratch, from CLIP (+ temporal options) or from a CLIP2Video checkpoint."""
    source = model_args.model_name_or_path
    if source is None:
        model = CLIP2VideoModel(scratch_config(model_args, processor.max_words, processor.tokenizer))
        logger.info("model from scratch: %.2f M parameters", sum(p.numel() for p in model.parameters()) / 1e6)
        return model
    model_type = _model_type(source, model_args.trust_remote_code)
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
    if model_args.trust_remote_code:
        from transformers import AutoModel

        return AutoModel.from_pretrained(source, trust_remote_code=True)
    return CLIP2VideoModel.from_pretrained(source)


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


def freeze_towers(model: CLIP2VideoModel, model_args: ModelArguments) -> None:
    frozen = []
    if model_args.freeze_text_tower:
        frozen += [model.text_model, model.text_projection]
    if model_args.freeze_vision_tower:
        frozen += [model.vision_model, model.visual_projection]
    for module in frozen:
        module.requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------------------
# 5. Optimizer: two learning rates (CLIP vs new modules), no decay on biases, norms and the scale
# ----------------------------------------------------------------------------------------------------------------------


def parameter_groups(model: torch.nn.Module, args: RunArguments) -> list[dict[str, Any]]:
    groups: dict[tuple[str, bool], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "clip" if name.split(".")[0] in CLIP_MODULES else "new"
        decay = parameter.ndim >= 2 and "embedding" not in name and "center" not in name
        groups.setdefault((part, decay), []).append(parameter)
    learning_rates = {"clip": args.clip_learning_rate, "new": args.learning_rate}
    return [
        {"params": params, "lr": learning_rates[part], "weight_decay": args.weight_decay if decay else 0.0,
         "name": f"{part}{'' if decay else '_no_decay'}"}
        for (part, decay), params in sorted(groups.items())
    ]


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints: atomic save_state, `latest`
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class TrainerState:
    """Where training is: optimizer steps done, epoch, micro-batches of that epoch done, what was skipped, and the
    log history (one entry per logging step, plus one per resume saying where it resumed)."""

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    skipped_videos: int = 0
    skipped_batches: int = 0
    log_history: list = field(default_factory=list)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from: none found for `latest`, or its saved states disagree."""


def checkpoint_root(output_dir: str) -> Path:
    return Path(output_dir) / "checkpoints"


def _checkpoint_step(path: Path) -> Optional[int]:
    """The step of a `checkpoint-<step>` folder name, None for any other name (temporary folders included)."""
    suffix = path.name[len(CHECKPOINT_PREFIX):]
    return int(suffix) if path.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def complete_checkpoints(output_dir: str) -> list[Path]:
    """Finished checkpoints (`checkpoint-<step>` folders with a trainer state), oldest first. A checkpoint being
    written lives in a temporary folder until it is complete, so a kill mid-write leaves nothing that matches."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _checkpoint_step(p) is not None and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=_checkpoint_step)


def resolve_checkpoint(value: Optional[str], output_dir: str) -> Optional[Path]:
    """`latest` -> the newest complete checkpoint of output_dir (`CheckpointError` when there is none);
    `latest_if_any` -> the same, or None; a path -> itself (it must be a complete checkpoint); None -> None."""
    if value is None:
        return None
    if value in (RESUME_LATEST, RESUME_LATEST_IF_ANY):
        found = complete_checkpoints(output_dir)
        if not found and value == RESUME_LATEST:
            raise CheckpointError(f"--resume_from_checkpoint latest: no complete checkpoint in "
                                  f"{checkpoint_root(output_dir)} (use 'latest_if_any' to start fresh when there is none)")
        return found[-1] if found else None
    path = Path(value)
    if not (path / TRAINER_STATE).is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {TRAINER_STATE})")
    return path


def unfinished_checkpoints(output_dir: str) -> list[Path]:
    """Temporary checkpoint folders (`.tmp-<id>-checkpoint-<step>`) that a killed save left behind."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and p.name.startswith(TMP_PREFIX)
            and _checkpoint_step(Path(p.name.split("-", 2)[-1])) is not None]


def remove_previous_checkpoints(output_dir: str) -> list[str]:
    """Delete this script's own checkpoints (complete or unfinished) from an earlier run in output_dir, so `latest` and
    `--checkpoints_total_limit` never mix two runs; anything else in the folder is left alone."""
    ours = complete_checkpoints(output_dir) + unfinished_checkpoints(output_dir)
    for path in ours:
        shutil.rmtree(path)
    return sorted(p.name for p in ours)


def save_checkpoint(accelerator: Accelerator, output_dir: str, state: TrainerState, limit: Optional[int]) -> Path:
    """`accelerator.save_state` (model, optimizer, scheduler, RNG of every process) and the trainer state, written
    into a temporary folder that becomes `checkpoint-<step>` in one rename (`atomic_directory`): a kill or an error
    mid-write leaves the previous checkpoints as they were and no folder that `latest` would pick."""
    final = checkpoint_root(output_dir) / f"{CHECKPOINT_PREFIX}{state.completed_steps}"
    main_process = accelerator.is_main_process
    with atomic_directory(final, replace=True) if main_process else contextlib.nullcontext() as temporary:
        temporary = broadcast_object_list([str(temporary) if main_process else None])[0]  # one folder for all
        accelerator.save_state(temporary)
        accelerator.wait_for_everyone()
        if main_process:
            (Path(temporary) / TRAINER_STATE).write_text(json.dumps(dataclasses.asdict(state), indent=2))
    if main_process:
        for old in (complete_checkpoints(output_dir)[: -limit] if limit else []) + unfinished_checkpoints(output_dir):
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint: Path, optimizer, scheduler) -> tuple[TrainerState, dict]:
    """`accelerator.load_state` + the trainer state; checks the restored scheduler is at the checkpoint's step and
    returns where the run resumes (step, epoch, micro-batch of the epoch, optimizer and scheduler steps)."""
    accelerator.load_state(str(checkpoint))
    state = TrainerState(**json.loads((checkpoint / TRAINER_STATE).read_text()))
    scheduler_step = scheduler.scheduler.last_epoch if hasattr(scheduler, "scheduler") else scheduler.last_epoch
    if scheduler_step != state.completed_steps:
        raise CheckpointError(f"{checkpoint}: the scheduler is at step {scheduler_step} but the trainer state at "
                              f"{state.completed_steps}")
    optimizer_steps = [int(slot["step"]) for slot in optimizer.state_dict()["state"].values() if "step" in slot]
    resumed = {"step": state.completed_steps, "resumed_from": str(checkpoint), "epoch": state.epoch,
               "batches_in_epoch": state.batches_in_epoch, "scheduler_step": scheduler_step,
               "optimizer_step": max(optimizer_steps, default=0)}
    state.log_history.append(resumed)
    return state, resumed


# ----------------------------------------------------------------------------------------------------------------------
# 7. Training
# ----------------------------------------------------------------------------------------------------------------------


#: The outputs of the model that the contrastive loss reads (all batch-first).
LOSS_INPUTS = ("text_global_embeds", "video_global_embeds", "text_alignment_embeds", "video_alignment_embeds")


def compute_loss(model: torch.nn.Module, batch: dict[str, Any], loss_fn: CLIP2VideoContrastiveLoss,
                 logit_scale: torch.Tensor) -> torch.Tensor:
    """One micro-batch: the model's features (through DDP's forward), gathered loss over the global batch.

    A `placeholder` batch (this process has no decodable row, others have some) runs the forward on its one dummy
    row, so that DDP sees every parameter used, and hands the loss zero rows: its gradient is exactly zero and the
    loss is that of the other processes' rows, as in a 1-process run on the same global batch."""
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    pixel_values=batch["pixel_values"], video_mask=batch["video_mask"],
                    return_loss=False)  # the loss is loss_fn's, over the global batch; not the model's local one
    if batch.get("placeholder"):
        outputs = SimpleNamespace(**{name: None if getattr(outputs, name) is None else getattr(outputs, name)[:0]
                                     for name in LOSS_INPUTS})
    return loss_fn(outputs, logit_scale)


def placeholder_batch(config: CLIP2VideoConfig) -> dict[str, Any]:
    """One dummy caption-video pair (start + end token, one black frame) for a process whose micro-batch lost every
    video while other processes' did not (see `compute_loss`)."""
    text, size = config.text_config, config.vision_config.image_size
    video_mask = torch.zeros(1, config.num_frames, dtype=torch.long)
    video_mask[0, 0] = 1
    return {"input_ids": torch.tensor([[text.bos_token_id, text.eos_token_id]]),
            "attention_mask": torch.ones(1, 2, dtype=torch.long),
            "pixel_values": torch.zeros(1, config.num_frames, 3, size, size), "video_mask": video_mask,
            "placeholder": True}


def global_counts(accelerator: Accelerator, rows: int, skipped: int) -> tuple[int, int]:
    """(decodable rows, skipped videos) of the global micro-batch: one tiny all-gather, the same on every process."""
    counts = torch.tensor([rows, skipped], device=accelerator.device)
    if accelerator.num_processes > 1:
        counts = accelerator.gather(counts).view(-1, 2).sum(dim=0)
    return int(counts[0]), int(counts[1])


def _learning_rates(optimizer) -> dict[str, float]:
    """Current learning rate of each part (`lr_clip`, `lr_new`)."""
    rates = {}
    for index, group in enumerate(optimizer.param_groups):
        rates.setdefault(f"lr_{group.get('name', str(index)).removesuffix('_no_decay')}", group["lr"])
    return rates


def _checkpoint_every(args: RunArguments) -> Optional[int]:
    value = args.checkpointing_steps
    return int(value) if value is not None and str(value).isdigit() else None


@dataclass
class TrainingSetup:
    """What the training loop works with, built by steps 5 (optimizer, schedule, batches) and 6 (prepare, resume)."""

    accelerator: Accelerator
    model: torch.nn.Module  # prepared (DDP-wrapped under several processes)
    optimizer: Any
    scheduler: Any  # stepped once per optimizer step
    batches: Any  # SampledBatches or StreamBatches: `set_epoch(epoch, skip_batches)`, then iterate
    batcher: VideoBatcher  # moves a batch to the device (uint8 frames normalised there)
    loss_fn: CLIP2VideoContrastiveLoss
    steps_per_epoch: int
    max_steps: int
    state: TrainerState  # fresh, or where the resumed checkpoint left off
    report: Optional[DataReport]  # the training split's: undecodable videos are added to it
    strict: bool  # --strict: an undecodable training video stops the run
    log_prefix: str = ""


@dataclass
class TrainResult:
    """Where training ended (the state saved as train_history.json) and the step it resumed from, if it did."""

    state: TrainerState
    resumed_from_step: Optional[int] = None

    def summary(self) -> dict[str, int]:
        """The training figures of all_results.json."""
        summary = {"completed_steps": self.state.completed_steps, "skipped_training_videos": self.state.skipped_videos,
                   "skipped_training_batches": self.state.skipped_batches}
        if self.resumed_from_step is not None:
            summary["resumed_from_step"] = self.resumed_from_step
        return summary


def train(setup: TrainingSetup, args: RunArguments, evaluator: Optional["Evaluator"] = None) -> TrainerState:
    """The loop: accumulate, backward, clip, step; logs, checkpoints and evaluation every --eval_steps; NaN stops.

    One optimizer step = `gradient_accumulation_steps` global micro-batches; the scheduler steps once per optimizer
    step on any number of processes (the Accelerator is built with `step_scheduler_with_optimizer=False`), so its
    `last_epoch` always equals `state.completed_steps`. Videos that fail to decode are dropped from their micro-batch
    (counted over all processes); a global micro-batch left with no row at all is skipped by every process alike
    (counted in `state.skipped_batches`) and the next one takes its place in the accumulation.
    """
    accelerator, model, optimizer, state = setup.accelerator, setup.model, setup.optimizer, setup.state
    max_train_steps, log_prefix, output_dir = setup.max_steps, setup.log_prefix, args.output_dir
    unwrapped = accelerator.unwrap_model(model)
    checkpoint_every, eval_every = _checkpoint_every(args), args.eval_steps if evaluator is not None else None
    num_epochs = math.ceil(max_train_steps / setup.steps_per_epoch)
    progress = tqdm(total=max_train_steps, initial=state.completed_steps, desc=f"{log_prefix}training",
                    disable=not accelerator.is_local_main_process)
    window_loss, window_samples, window_steps, window_start = 0.0, 0, 0, time.perf_counter()
    last_checkpoint = None

    for epoch in range(state.epoch, num_epochs):
        model.train()
        setup.batches.set_epoch(epoch, skip_batches=state.batches_in_epoch if epoch == state.epoch else 0)
        state.epoch = epoch
        for batch in setup.batches:
            state.batches_in_epoch += 1
            skip_undecodable(batch["skipped"], setup.report, setup.strict, "training")
            rows, skipped = global_counts(accelerator, len(batch["rows"]), len(batch["skipped"]))
            state.skipped_videos += skipped
            if rows == 0:  # no process has a decodable video: every process skips this micro-batch
                state.skipped_batches += 1
                logger.warning("%sskipped micro-batch %d of epoch %d: none of its %d videos could be decoded",
                               log_prefix, state.batches_in_epoch, epoch, skipped)
                continue
            if not batch["rows"]:
                batch = placeholder_batch(unwrapped.config)
            batch = setup.batcher.to_device(batch, accelerator.device)  # uint8 frames are normalised there
            with accelerator.accumulate(model):
                loss = compute_loss(model, batch, setup.loss_fn, unwrapped.logit_scale)
                if not torch.isfinite(loss):
                    last = resolve_checkpoint(RESUME_LATEST_IF_ANY, output_dir)
                    raise TrainingDivergedError(
                        f"loss is {loss.item()} at optimizer step {state.completed_steps + 1} (epoch {epoch}); "
                        f"stopped before updating the weights. Last good checkpoint: {last or 'none'} (resume with "
                        "--resume_from_checkpoint latest, e.g. with a lower learning rate or --max_grad_norm)")
                accelerator.backward(loss)
                learning_rates = _learning_rates(optimizer)  # the rates this step uses
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()  # accelerate skips it (and zero_grad) while accumulating
                if accelerator.sync_gradients:
                    setup.scheduler.step()
                optimizer.zero_grad()
            window_loss += loss.item() / args.gradient_accumulation_steps
            window_samples += rows
            if not accelerator.sync_gradients:
                continue
            with torch.no_grad():  # the original CLIP clamps its temperature at 100
                unwrapped.logit_scale.clamp_(0, math.log(100))
            state.completed_steps += 1
            window_steps += 1
            progress.update(1)
            if state.completed_steps % args.logging_steps == 0 or state.completed_steps == max_train_steps:
                elapsed = time.perf_counter() - window_start
                logs = {"loss": window_loss / window_steps, "logit_scale": unwrapped.logit_scale.exp().item(),
                        "samples_per_second": window_samples / elapsed, "epoch": epoch, **learning_rates}
                logger.info("%sstep %d/%d: %s", log_prefix, state.completed_steps, max_train_steps,
                            ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
                accelerator.log({f"{log_prefix}train/{k}": v for k, v in logs.items()}, step=state.completed_steps)
                state.log_history.append({"step": state.completed_steps, **logs})
                window_loss, window_samples, window_steps, window_start = 0.0, 0, 0, time.perf_counter()
            if checkpoint_every and state.completed_steps % checkpoint_every == 0:
                last_checkpoint = save_checkpoint(accelerator, output_dir, state, args.checkpoints_total_limit)
            if eval_every and state.completed_steps % eval_every == 0:
                evaluator(model, state.completed_steps)
                model.train()
            if state.completed_steps >= max_train_steps:
                break
        state.epoch, state.batches_in_epoch = epoch + 1, 0
        if args.checkpointing_steps not in (None, "no"):
            if last_checkpoint is None or not last_checkpoint.name.endswith(f"-{state.completed_steps}"):
                last_checkpoint = save_checkpoint(accelerator, output_dir, state, args.checkpoints_total_limit)
            else:  # the step checkpoint of this very step: record that the epoch is over
                if accelerator.is_main_process:
                    write_text(last_checkpoint / TRAINER_STATE, json.dumps(dataclasses.asdict(state), indent=2))
        if state.completed_steps >= max_train_steps:
            break
    progress.close()
    return state


# ----------------------------------------------------------------------------------------------------------------------
# 8. Evaluation: every video once, every caption once, one matrix product
# ----------------------------------------------------------------------------------------------------------------------


def _split_range(count: int, accelerator: Accelerator) -> range:
    """This process's contiguous share of `count` items (shares in rank order cover 0..count-1)."""
    bounds = np.linspace(0, count, accelerator.num_processes + 1).round().astype(int)
    rank = accelerator.process_index
    return range(bounds[rank], bounds[rank + 1])


@dataclass
class EncodedSplit:
    """Retrieval features of a whole split, every process's share gathered in order (on the CPU)."""

    video_features: torch.Tensor  # (num_videos, retrieval_embed_dim), unit rows; zero rows for unreadable videos
    video_valid: torch.Tensor  # (num_videos,) bool: the video could be decoded
    text_features: torch.Tensor  # (num_captions, retrieval_embed_dim), unit rows
    logit_scale: float  # exp of the model's log temperature
    skipped: list[str]  # the videos that could not be decoded, named


@dataclass
class EvalResult:
    """Metrics of one evaluation and what the visual report and the feature export read."""

    metrics: dict[str, float]  # flat: t2v_R1, ..., num_videos, num_captions, skipped_videos (+ dsl_*, order_accuracy)
    similarity: torch.Tensor  # (kept captions, kept videos) cosine similarity
    targets: np.ndarray  # (kept captions,) column of each caption's video in `similarity`
    video_indices: list[int]  # split video index of each column
    caption_rows: list[int]  # split row of each similarity row
    encoded: EncodedSplit


@torch.no_grad()
def encode_split(accelerator: Accelerator, model, split: SplitData, batcher: VideoBatcher, batch_size: int,
                 num_workers: int = 0) -> EncodedSplit:
    """Retrieval features of every video (once) and every caption (once), split over processes."""
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    videos = _split_range(split.eval_index.num_videos, accelerator)
    loader = torch.utils.data.DataLoader(VideoDataset(split.store, videos), batch_size=batch_size,
                                         collate_fn=batcher.collate_videos, num_workers=num_workers)
    video_features, valid, skipped = [], [], []
    for batch in tqdm(loader, desc="encoding videos", disable=not accelerator.is_local_main_process, leave=False):
        batch = batcher.to_device(batch, accelerator.device)  # uint8 frames are normalised there
        with accelerator.autocast():
            features = encode_videos(unwrapped, batch["pixel_values"], batch["video_mask"])
        video_features.append(features)
        valid.append(batch["valid"].to(accelerator.device))
        skipped += batch["skipped"]
    dim = unwrapped.config.retrieval_embed_dim
    local_videos = torch.cat(video_features) if video_features else torch.zeros(0, dim, device=accelerator.device)
    local_valid = torch.cat(valid) if valid else torch.zeros(0, dtype=torch.bool, device=accelerator.device)

    captions = _split_range(len(split.rows), accelerator)
    text_features = []
    for start in range(captions.start, captions.stop, batch_size):
        stop = min(start + batch_size, captions.stop)
        with accelerator.autocast():
            features = encode_texts(unwrapped, split.tokens["input_ids"][start:stop].to(accelerator.device),
                                    split.tokens["attention_mask"][start:stop].to(accelerator.device))
        text_features.append(features)
    local_text = torch.cat(text_features) if text_features else torch.zeros(0, dim, device=accelerator.device)
    skipped_all = gather_object([skipped]) if accelerator.num_processes > 1 else [skipped]
    return EncodedSplit(video_features=gather_uneven(local_videos).cpu(),
                        video_valid=gather_uneven(local_valid.long()).bool().cpu(),
                        text_features=gather_uneven(local_text).cpu(),
                        logit_scale=float(unwrapped.logit_scale.exp()),
                        skipped=[name for names in skipped_all for name in names])


def compute_metrics(encoded: EncodedSplit, split: SplitData, args: RunArguments) -> EvalResult:
    """Similarity of the valid videos and their captions, metrics (and DSL metrics); unreadable videos are dropped."""
    valid = encoded.video_valid
    caption_to_video = torch.tensor(split.eval_index.caption_to_video)
    keep_rows = valid[caption_to_video]
    new_index = torch.cumsum(valid.long(), 0) - 1
    text, video = encoded.text_features[keep_rows], encoded.video_features[valid]
    targets = new_index[caption_to_video[keep_rows]].numpy()
    cosine = text @ video.T  # one matrix product; logits = logit_scale * cosine (same ranking)
    metrics = retrieval_metrics(cosine.numpy(), targets, tie_rule=args.tie_rule)
    flat = flatten_metrics(metrics)
    if args.dsl:
        flat.update(flatten_metrics(dsl_retrieval_metrics(cosine.numpy(), targets, temperature=args.dsl_temperature,
                                                          tie_rule=args.tie_rule), prefix="dsl_"))
    if split.time_reversed_pairs and bool(valid.all()):
        flat["order_accuracy"] = order_accuracy(cosine, targets)
    flat.update(num_videos=int(valid.sum()), num_captions=int(keep_rows.sum()), skipped_videos=int((~valid).sum()))
    return EvalResult(metrics=flat, similarity=cosine, targets=targets,
                      video_indices=torch.nonzero(valid).flatten().tolist(),
                      caption_rows=torch.nonzero(keep_rows).flatten().tolist(), encoded=encoded)


#: Score gap below which a caption's video and its time-reversed twin count as tied: float rounding (summing the same
#: frame features in another order) separates the twins of an order-invariant model by ~1e-7.
ORDER_TIE_TOLERANCE = 1e-5


def order_accuracy(similarity: torch.Tensor, targets) -> float:
    """% of captions that score their own video above its time-reversed twin (video `j ^ 1`) by more than rounding.

    On a split of twin pairs this isolates temporal understanding: a frame-order-invariant model gives the twins equal
    scores and gets 0 (ties count against it), a model that reads frame order gets up to 100.
    """
    targets = torch.as_tensor(targets)
    rows = torch.arange(len(targets))
    own, twin = similarity[rows, targets], similarity[rows, targets ^ 1]
    return 100.0 * (own > twin + ORDER_TIE_TOLERANCE).double().mean().item()


def skip_undecodable(names: Sequence[str], report: Optional[DataReport], strict: bool, stage: str) -> None:
    """Log and count videos that could not be decoded; with --strict, stop with a DataValidationError instead."""
    if names and strict:
        raise data_clip2video.DataValidationError(f"--strict: undecodable {stage} video(s): {'; '.join(names)}")
    for name in names:
        logger.warning("skipped %s video: %s", stage, name)
    if report is not None:
        report.add_undecodable(names)


class Evaluator:
    """Evaluates a model on the eval split (encode, skip what cannot be decoded, metrics) and logs the figures."""

    def __init__(self, accelerator: Accelerator, split: SplitData, batcher: VideoBatcher, args: RunArguments,
                 strict: bool, num_workers: int, log_prefix: str = ""):
        self.accelerator, self.split, self.batcher, self.args = accelerator, split, batcher, args
        self.strict, self.num_workers, self.log_prefix = strict, num_workers, log_prefix

    def __call__(self, model, step: int) -> EvalResult:
        encoded = encode_split(self.accelerator, model, self.split, self.batcher, self.args.eval_batch_size,
                               self.num_workers)
        skip_undecodable(encoded.skipped, self.split.report, self.strict, "evaluation")
        result = compute_metrics(encoded, self.split, self.args)
        logger.info("%seval at step %d: %s", self.log_prefix, step, ", ".join(
            f"{k} {v:.2f}" for k, v in result.metrics.items() if k.endswith(("R1", "R5", "MedianR"))))
        self.accelerator.log({f"{self.log_prefix}eval/{k}": v for k, v in result.metrics.items()}, step=step)
        return result


# ----------------------------------------------------------------------------------------------------------------------
# 9. Outputs: features, visual report, model card, Hub
# ----------------------------------------------------------------------------------------------------------------------


def export_features(encoded: EncodedSplit, split: SplitData, output_dir: str) -> Path:
    """`features.safetensors` (video_embeds, text_embeds, logit_scale) and `features.json` (ids, captions, targets)."""
    from safetensors.torch import save_file

    path = Path(output_dir) / "features.safetensors"
    save_file({"video_embeds": encoded.video_features.contiguous(), "text_embeds": encoded.text_features.contiguous(),
               "video_valid": encoded.video_valid.to(torch.uint8), "logit_scale": torch.tensor(encoded.logit_scale)},
              str(path))
    index = {"video_ids": list(split.eval_index.video_ids), "captions": list(split.rows["caption"]),
             "caption_to_video": list(split.eval_index.caption_to_video),
             "usage": "similarity = logit_scale * text_embeds @ video_embeds.T"}
    (Path(output_dir) / "features.json").write_text(json.dumps(index, indent=1))
    logger.info("wrote %s (%d videos, %d captions)", path, len(index["video_ids"]), len(index["captions"]))
    return path


def write_visual_report(result: EvalResult, split: SplitData, output_dir: str, num_queries: int, title: str) -> Path:
    """report/similarity.png (caption x video heatmap) and report/index.html (top-5 videos of each query, thumbnails
    in report/thumbnails/; pages and strips from `report_clip2video`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = Path(output_dir) / "report"
    (report / "thumbnails").mkdir(parents=True, exist_ok=True)
    similarity = result.similarity.numpy()
    shown = similarity[:64, :64]
    figure, axis = plt.subplots(figsize=(6, 5))
    image = axis.imshow(shown, cmap="viridis", aspect="auto")
    axis.set_xlabel("video"), axis.set_ylabel("caption"), axis.set_title(f"{title}: cosine similarity")
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(report / "similarity.png", dpi=100)
    plt.close(figure)

    captions = split.rows["caption"]
    rows = []
    for query in range(min(num_queries, similarity.shape[0])):
        top = np.argsort(-similarity[query], kind="stable")[:5]
        cells = [report_clip2video.Cell(captions[result.caption_rows[query]], header=True)]
        for rank, column in enumerate(top):
            video = result.video_indices[column]
            thumb = report / "thumbnails" / f"{video}.png"
            if not thumb.exists():
                try:
                    report_clip2video.thumbnail_strip(split.store.load(video), height=48, count=4).save(thumb)
                except VideoDecodeError:
                    continue
            cells.append(report_clip2video.Cell(
                f"#{rank + 1} {split.eval_index.video_ids[video]} ({similarity[query, column]:.3f})",
                image=f"thumbnails/{video}.png", highlight=bool(column == result.targets[query])))
        rows.append(cells)
    metrics = result.metrics
    summary = ", ".join(f"{k} {metrics[k]:.1f}" for k in ("t2v_R1", "t2v_R5", "v2t_R1", "v2t_R5") if k in metrics)
    report_clip2video.write_page(report / "index.html", report_clip2video.render_page(
        title, rows, summary=f"{summary}; green = ground truth.", figure="similarity.png"))
    return report


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of R@1/5/10, MdR, MnR in both directions, one row per model."""
    columns = [("t2v_R1", "T2V R@1"), ("t2v_R5", "R@5"), ("t2v_R10", "R@10"), ("t2v_MedianR", "MdR"),
               ("t2v_MeanR", "MnR"), ("v2t_R1", "V2T R@1"), ("v2t_R5", "R@5"), ("v2t_R10", "R@10"),
               ("v2t_MedianR", "MdR"), ("v2t_MeanR", "MnR")]
    if all("order_accuracy" in metrics for metrics in rows.values()):
        columns.append(("order_accuracy", "order acc."))
    lines = ["| model | " + " | ".join(title for _, title in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[key]:.1f}" for key, _ in columns) + " |")
    return "\n".join(lines)


def model_card(model, model_args: ModelArguments, data_args: DataArguments, args: RunArguments,
               results: dict[str, dict[str, float]]) -> str:
    """The model card (README.md) of a trained model: usage, results table, training settings, architecture."""
    base = model_args.model_name_or_path
    summary = (f"A {PAPER} video-text retrieval model trained with `run_retrieval.py` of the clip2video project, "
               f"{'from ' + base if base else 'from scratch'}, on `{data_args.describe()}` ({data_args.train_split} "
               f"split), evaluated on its {data_args.eval_split} split.")
    results_text = (f"{metrics_table(results)}\n\nR@k in percent, MdR/MnR = median/mean rank (1 = best); "
                    "T2V = text-to-video, V2T = video-to-text.")
    training_text = (f"AdamW, learning rate {args.learning_rate} (new modules) / {args.clip_learning_rate} (CLIP), "
                     f"weight decay {args.weight_decay}, global batch {args.train_batch_size}, {args.num_train_epochs} "
                     f"epochs, warm-up {args.warmup_ratio} then cosine, seed {args.seed}; symmetric InfoNCE over the "
                     "global batch (global + TAB terms).")
    card = build_model_card(
        title=f"CLIP2Video — {data_args.describe()}", summary=summary, repo=args.hub_model_id or args.output_dir,
        config=model.config, num_parameters=sum(p.numel() for p in model.parameters()), with_processor=True,
        sections=[(f"Results ({data_args.describe()} {data_args.eval_split}, tie rule `{args.tie_rule}`)",
                   results_text), ("Training", training_text)],
        base_model=base, datasets=[data_args.card_dataset()] if data_args.card_dataset() else (), metrics=["recall"])
    return str(card)


def push_folder_to_hub(folder: str, args: RunArguments) -> str:
    """Create the repository (if needed) and upload the model folder (checkpoints, logs and baseline left out)."""
    api = HfApi(token=args.hub_token)
    repo_id = api.create_repo(args.hub_model_id, private=args.hub_private_repo, exist_ok=True).repo_id
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload CLIP2Video from run_retrieval.py",
                      ignore_patterns=["checkpoints/**", "runs/**", "mean_pooling/**", ".tmp-*", "features.*"])
    logger.info("pushed %s to https://huggingface.co/%s", folder, repo_id)
    return repo_id


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
    if model_args.model_name_or_path is not None:
        check_model_available(model_args.model_name_or_path)


def setup_logging(accelerator: Accelerator) -> None:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if accelerator.is_local_main_process else logging.WARNING)
    logger.setLevel(logging.INFO if accelerator.is_local_main_process else logging.WARNING)
    transformers.utils.logging.set_verbosity_warning() if accelerator.is_local_main_process \
        else transformers.utils.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.WARNING)


def setup_accelerator(model_args: ModelArguments, data_args: DataArguments, args: RunArguments) -> Accelerator:
    """Step 2: the Accelerator (the learning-rate schedule is over optimizer steps: `train` steps it once per step),
    logging on the main process."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to, project_dir=args.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
        step_scheduler_with_optimizer=False,
    )
    setup_logging(accelerator)
    logger.info("%d process(es), device %s, mixed precision %s", accelerator.num_processes, accelerator.device,
                accelerator.mixed_precision)
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
    freeze_towers(model, run.model_args)
    if run.model_args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    # the video processor for this model and data, built once; saved with the model, it prepares videos as in training
    benchmark = data_args.dataset_name if data_args.is_benchmark else None
    video_processor = processor.video_processor.for_model(model.config, **data_args.video_processor_kwargs(benchmark))
    processor.video_processor = video_processor
    data_clip2video.check_prepared_sources([data_args.dataset_name, *data_args.data_files().values()], video_processor)
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


def build_optimizer(model: CLIP2VideoModel, args: RunArguments, max_steps: int):
    """Step 5: AdamW over the parameter groups, warm-up then cosine over optimizer steps (prepared, so that
    save_state/load_state keep it, but stepped by `train` once per optimizer step)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, args), betas=(args.adam_beta1, args.adam_beta2),
                                  eps=args.adam_epsilon)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, int(args.warmup_ratio * max_steps), max_steps)


def prepare_and_resume(accelerator: Accelerator, run: ModelRun, model, optimizer, scheduler, max_steps: int):
    """Step 6: `accelerator.prepare`, then the checkpoint of --resume_from_checkpoint loaded, or this script's
    earlier checkpoints in output_dir removed. Returns the prepared objects, the trainer state and the resumed step."""
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state, resumed_from_step = TrainerState(), None
    output_dir = run.args.output_dir
    checkpoint = resolve_checkpoint(run.args.resume_from_checkpoint, output_dir)
    if checkpoint is not None:
        state, resumed = load_checkpoint(accelerator, checkpoint, optimizer, scheduler)
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
            write_visual_report(result.evaluation, eval_split, output_dir, args.report_num_queries,
                                run.log_prefix.rstrip("/") or "CLIP2Video")
        if args.do_train:
            result.model.save_pretrained(output_dir, safe_serialization=True)
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
        (output / "README.md").write_text(model_card(first, model_args, data_args, args, metric_rows))
    if metric_rows:
        print(f"\n{data_args.describe()} {data_args.eval_split} ({args.tie_rule} ties), "
              f"{all_results['wall_time_seconds']:.0f} s:\n{metrics_table(metric_rows)}")
    data_clip2video.write_data_report([split.report for split in splits.values()], str(output))
    if args.push_to_hub:
        push_folder_to_hub(str(output), args)


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
        evaluator = None if "eval" not in splits else Evaluator(
            accelerator, splits["eval"], batcher, run.args, data_args.strict, data_args.dataloader_num_workers,
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
                accelerator, run, model, optimizer, scheduler, max_steps)
            # 7. Train
            loss_fn = CLIP2VideoContrastiveLoss(center_weight=accelerator.unwrap_model(model).config.center_weight)
            logger.info("%straining %d steps: global batch %d (%d processes x %d per process x %d accumulation)",
                        run.log_prefix, max_steps, args.train_batch_size, accelerator.num_processes,
                        args.train_batch_size // args.gradient_accumulation_steps // accelerator.num_processes,
                        args.gradient_accumulation_steps)
            setup = TrainingSetup(accelerator, model, optimizer, scheduler, batches, batcher, loss_fn,
                                  steps_per_epoch, max_steps, state, splits["train"].report, data_args.strict,
                                  run.log_prefix)
            periodic = evaluator if args.do_eval and args.eval_steps else None
            training = TrainResult(train(setup, run.args, periodic), resumed_from_step)
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
    data_clip2video.gather_undecodable([split.report for split in splits.values()], gather_object)
    accelerator.end_training()
    if accelerator.is_main_process:
        save_job_outputs(all_results, results, model_args, data_args, args, splits)
    return all_results


if __name__ == "__main__":
    main()
