# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Evaluation of a retrieval model on a split, as `run_retrieval.py` does it: every video encoded once and every
caption once (each process its contiguous share), one matrix product, exact metrics; the features export and the
results table.

Example:
    >>> evaluator = Evaluator(accelerator, split, batcher, EvalOptions(batch_size=64, tie_rule="pessimistic"))
    >>> result = evaluator(model, step=0)
    >>> result.metrics["t2v_R1"], result.similarity.shape     # (kept captions, kept videos)
    >>> print(metrics_table({"CLIP2Video": result.metrics}))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from data_clip2video import VideoBatcher, VideoDataset, encode_texts, encode_videos
import data_sources
from datasets_scripts import DataReport
from loss_clip2video import gather_uneven
from retrieval_metrics import dsl_retrieval_metrics, flatten_metrics, retrieval_metrics
from splits_clip2video import SplitData


logger = logging.getLogger("run_retrieval")


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


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs and scores: batch size per process, metric tie rule, optional DSL re-scoring."""

    batch_size: int = 64
    tie_rule: str = "pessimistic"
    dsl: bool = False
    dsl_temperature: float = 100.0
    strict: bool = False  # an undecodable video stops the evaluation
    num_workers: int = 0


def _share(count: int, accelerator: Accelerator) -> range:
    """This process's contiguous share of `count` items (`split_between_processes`; shares in rank order cover all)."""
    with accelerator.split_between_processes(list(range(count))) as share:
        return range(share[0], share[-1] + 1) if share else range(0)


@torch.no_grad()
def encode_split(accelerator: Accelerator, model, split: SplitData, batcher: VideoBatcher, batch_size: int,
                 num_workers: int = 0) -> EncodedSplit:
    """Retrieval features of every video (once) and every caption (once), split over processes.

    The shares are gathered with `gather_uneven`, not `gather_for_metrics`: the latter drops the padding that a
    *prepared* DataLoader adds to even out the last batch, while here each process encodes a contiguous share of
    unequal size (nothing padded, nothing to drop), and the gathered rows come in split order on any number of
    processes."""
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    loader = torch.utils.data.DataLoader(VideoDataset(split.store, _share(split.eval_index.num_videos, accelerator)),
                                         batch_size=batch_size, collate_fn=batcher.collate_videos,
                                         num_workers=num_workers)
    video_features, valid, skipped = [], [], []
    for batch in tqdm(loader, desc="encoding videos", disable=not accelerator.is_local_main_process, leave=False):
        batch = batcher.to_device(batch, accelerator.device)  # uint8 frames are normalised there
        with accelerator.autocast():
            video_features.append(encode_videos(unwrapped, batch["pixel_values"], batch["video_mask"]))
        valid.append(batch["valid"].to(accelerator.device))
        skipped += batch["skipped"]
    dim, device = unwrapped.config.retrieval_embed_dim, accelerator.device
    local_videos = torch.cat(video_features) if video_features else torch.zeros(0, dim, device=device)
    local_valid = torch.cat(valid) if valid else torch.zeros(0, dtype=torch.bool, device=device)

    captions, text_features = _share(len(split.rows), accelerator), []
    for start in range(captions.start, captions.stop, batch_size):
        stop = min(start + batch_size, captions.stop)
        with accelerator.autocast():
            text_features.append(encode_texts(unwrapped, split.tokens["input_ids"][start:stop].to(device),
                                              split.tokens["attention_mask"][start:stop].to(device)))
    local_text = torch.cat(text_features) if text_features else torch.zeros(0, dim, device=device)
    skipped_all = gather_object([skipped]) if accelerator.num_processes > 1 else [skipped]
    return EncodedSplit(video_features=gather_uneven(local_videos).cpu(),
                        video_valid=gather_uneven(local_valid.long()).bool().cpu(),
                        text_features=gather_uneven(local_text).cpu(),
                        logit_scale=float(unwrapped.logit_scale.exp()),
                        skipped=[name for names in skipped_all for name in names])


def compute_metrics(encoded: EncodedSplit, split: SplitData, options: EvalOptions) -> EvalResult:
    """Similarity of the valid videos and their captions, metrics (and DSL metrics); unreadable videos are dropped.
    `order_accuracy` only for a split of time-reversed twins (synthetic-motion) with every video readable."""
    valid = encoded.video_valid
    caption_to_video = torch.tensor(split.eval_index.caption_to_video)
    keep_rows = valid[caption_to_video]
    new_index = torch.cumsum(valid.long(), 0) - 1
    text, video = encoded.text_features[keep_rows], encoded.video_features[valid]
    targets = new_index[caption_to_video[keep_rows]].numpy()
    cosine = text @ video.T  # one matrix product; logits = logit_scale * cosine (same ranking)
    flat = flatten_metrics(retrieval_metrics(cosine.numpy(), targets, tie_rule=options.tie_rule))
    if options.dsl:
        flat.update(flatten_metrics(dsl_retrieval_metrics(cosine.numpy(), targets, temperature=options.dsl_temperature,
                                                          tie_rule=options.tie_rule), prefix="dsl_"))
    if split.time_reversed_pairs and bool(valid.all()) and len(valid) % 2 == 0:
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
        raise data_sources.DataValidationError(f"--strict: undecodable {stage} video(s): {'; '.join(names)}")
    for name in names:
        logger.warning("skipped %s video: %s", stage, name)
    if report is not None:
        report.add_undecodable(names)


class Evaluator:
    """Evaluates a model on the eval split (encode, skip what cannot be decoded, metrics) and logs the figures."""

    def __init__(self, accelerator: Accelerator, split: SplitData, batcher: VideoBatcher, options: EvalOptions,
                 log_prefix: str = ""):
        self.accelerator, self.split, self.batcher, self.options = accelerator, split, batcher, options
        self.log_prefix = log_prefix

    def __call__(self, model, step: int) -> EvalResult:
        encoded = encode_split(self.accelerator, model, self.split, self.batcher, self.options.batch_size,
                               self.options.num_workers)
        skip_undecodable(encoded.skipped, self.split.report, self.options.strict, "evaluation")
        result = compute_metrics(encoded, self.split, self.options)
        logger.info("%seval at step %d: %s", self.log_prefix, step, ", ".join(
            f"{k} {v:.2f}" for k, v in result.metrics.items() if k.endswith(("R1", "R5", "MedianR"))))
        self.accelerator.log({f"{self.log_prefix}eval/{k}": v for k, v in result.metrics.items()}, step=step)
        return result


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


#: The columns of the results table: R@1/5/10, MdR, MnR in both directions.
TABLE_COLUMNS = [("t2v_R1", "T2V R@1"), ("t2v_R5", "R@5"), ("t2v_R10", "R@10"), ("t2v_MedianR", "MdR"),
                 ("t2v_MeanR", "MnR"), ("v2t_R1", "V2T R@1"), ("v2t_R5", "R@5"), ("v2t_R10", "R@10"),
                 ("v2t_MedianR", "MdR"), ("v2t_MeanR", "MnR")]


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of R@1/5/10, MdR, MnR in both directions, one row per model (+ order accuracy when every row
    has it), then a line saying on how many videos and captions, and how many videos were skipped."""
    columns = list(TABLE_COLUMNS)
    if all("order_accuracy" in metrics for metrics in rows.values()):
        columns.append(("order_accuracy", "order acc."))
    lines = ["| model | " + " | ".join(title for _, title in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[key]:.1f}" for key, _ in columns) + " |")
    first = next(iter(rows.values()), {})
    if "num_videos" in first:
        lines.append(f"\n{first['num_videos']} videos, {first['num_captions']} captions evaluated; "
                     f"{first['skipped_videos']} video(s) skipped (undecodable)")
    return "\n".join(lines)


__all__ = ["EncodedSplit", "EvalOptions", "EvalResult", "Evaluator", "compute_metrics", "encode_split",
           "export_features", "metrics_table", "order_accuracy", "skip_undecodable"]
