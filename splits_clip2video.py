# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The splits `run_retrieval.py` trains and evaluates on, and the order in which each process reads them.

- `SplitData`: a map-style split (caption rows grouped by video, their tokens, the videos' frame store).
- `GlobalBatchSampler` + `SampledBatches`: its training micro-batches, the same global batches on any number of
  processes (each process takes its slice of every global micro-batch); a resume skips the epoch's first batches
  with accelerate's `skip_first_batches`, which drops indices without loading their rows.
- `StreamSplit` + `StreamBatches`: a streamed split (`datasets.IterableDataset`), each process reading its shards.

Example:
    >>> sampler = GlobalBatchSampler(num_rows=20, micro_batch_size=8, rank=0, world_size=2, seed=3)
    >>> list(sampler)            # rank 0's 4 rows of each of the 2 global micro-batches of epoch 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from accelerate import Accelerator, skip_first_batches

import data_clip2video
from data_clip2video import CaptionVideoDataset, VideoBatcher, VideoFrameStore
import data_sources
from datasets_scripts import DataReport


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This process's share of every global micro-batch, from a permutation that depends only on (seed, epoch).

    A global micro-batch of `micro_batch_size` rows is split in `world_size` equal slices in rank order, so the
    loss sees the same global batch whatever the number of processes. (accelerate's prepared DataLoader shards a
    batch sampler by whole batches, so N processes would see other global batches than one process.)
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
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_rows // self.micro_batch_size

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
        for batch in range(len(self)):
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
        self.skip = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.sampler.epoch, self.skip = epoch, skip_batches

    def __iter__(self):
        return iter(skip_first_batches(self.loader, self.skip) if self.skip else self.loader)


class StreamSplit:
    """A streamed training split: this process's share of the source rows (`split_dataset_by_node` after a buffered
    shuffle, both seeded: the stream's order depends only on the seed, the epoch and the layout: processes and
    DataLoader workers)."""

    def __init__(self, dataset, columns: data_sources.Columns, base_dir: Optional[str], report: DataReport,
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
    (same seed and epoch: the same order, shuffle buffer included) and drops its first `skip_batches` micro-batches.
    accelerate's `skip_first_batches` cannot do this for an iterable dataset without collating (decoding the videos
    of) every skipped batch; the collator returns those without decoding (`StreamCollator.skip_batches`), so a
    resume costs reading, not decoding, what came before the checkpoint.
    """

    batches_per_epoch = None  # unknown: a stream

    def __init__(self, split: StreamSplit, collator: data_clip2video.StreamCollator, batch_size: int, num_workers: int):
        self.split, self.collator = split, collator
        self.loader = torch.utils.data.DataLoader(split.dataset, batch_size=batch_size, collate_fn=collator,
                                                  num_workers=num_workers)
        self.layout = {"num_processes": split.accelerator.num_processes, "dataloader_num_workers": num_workers}
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


__all__ = ["GlobalBatchSampler", "SampledBatches", "SplitData", "StreamBatches", "StreamSplit"]
