# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The training loop of `run_retrieval.py`, as a short loop over named steps: skip accounting (`count_skips`), a
micro-step (`micro_step`: placeholder batches, NaN check, backward, clip, step), logging (`log_step`), checkpointing
(`save_checkpoint`, `end_of_epoch`) and evaluation every `eval_steps`.

The script builds a `TrainingSetup` (prepared model, optimizer, schedule, batches, the loss) and `TrainingOptions`
(plain values of its arguments) and calls `train`. The N-process run equals the 1-process run on the same global
batches: the batches come from `splits_clip2video`, the loss gathers over processes (`loss_clip2video`), and a
process left without a decodable video runs a placeholder row whose gradient is exactly zero.

Example:
    >>> state = train(TrainingSetup(accelerator, model, optimizer, scheduler, batches, batcher, loss_fn, compute_loss,
    ...                             steps_per_epoch=4, max_steps=8, state=TrainerState()), TrainingOptions(...))
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from checkpoints_clip2video import (CHECKPOINT_PREFIX, RESUME_LATEST_IF_ANY, TrainerState, resolve_checkpoint,
                                    save_checkpoint, write_trainer_state)
from configuration_clip2video import CLIP2VideoConfig
from data_clip2video import VideoBatcher
from datasets_scripts import DataReport
from evaluation_clip2video import Evaluator, skip_undecodable
from loss_clip2video import CLIP2VideoContrastiveLoss
from modeling_clip2video import CLIP_MODULES


logger = logging.getLogger("run_retrieval")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run stops before the optimizer step, checkpoints stay intact."""


class NoTrainingDataError(RuntimeError):
    """A pass over the training split gave no micro-batch to train on (every video undecodable, or a stream with no
    row for some process): the run stops instead of saving an untrained model as trained."""


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


@dataclass(frozen=True)
class TrainingOptions:
    """The recipe values the loop reads (from the script's arguments)."""

    output_dir: str
    gradient_accumulation_steps: int = 1
    max_grad_norm: Optional[float] = None
    logging_steps: int = 50
    checkpoint_every: Optional[int] = None  # optimizer steps between checkpoints
    checkpoint_epochs: bool = True  # also a checkpoint at each epoch end (and where max_steps stops the run)
    save_total_limit: Optional[int] = None
    eval_steps: Optional[int] = None


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
    compute_loss: Callable  # (model, batch, loss_fn, logit_scale) -> loss: `compute_loss`, or a test's wrapper
    steps_per_epoch: int
    max_steps: int
    state: TrainerState  # fresh, or where the resumed checkpoint left off
    report: Optional[DataReport] = None  # the training split's: undecodable videos are added to it
    strict: bool = False  # an undecodable training video stops the run
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


@dataclass
class LogWindow:
    """Loss (summed over micro-batches / accumulation steps), samples and steps since the last log line."""

    loss: float = 0.0
    samples: int = 0
    steps: int = 0
    start: float = field(default_factory=time.perf_counter)


def count_skips(setup: TrainingSetup, batch: dict[str, Any], epoch: int) -> int:
    """Skip accounting of one micro-batch: its undecodable videos logged and counted (over all processes); returns
    the global micro-batch's decodable rows (0: every process skips it alike, counted in `skipped_batches`)."""
    state = setup.state
    skip_undecodable(batch["skipped"], setup.report, setup.strict, "training")
    rows, skipped = global_counts(setup.accelerator, len(batch["rows"]), len(batch["skipped"]))
    state.skipped_videos += skipped
    if rows == 0:
        state.skipped_batches += 1
        logger.warning("%sskipped micro-batch %d of epoch %d: none of its %d videos could be decoded",
                       setup.log_prefix, state.batches_in_epoch, epoch, skipped)
    return rows


def check_finite(loss: torch.Tensor, state: TrainerState, epoch: int, output_dir: str) -> None:
    """NaN check: a non-finite loss stops the run before the weights are updated."""
    if not torch.isfinite(loss):
        last = resolve_checkpoint(RESUME_LATEST_IF_ANY, output_dir)
        raise TrainingDivergedError(
            f"loss is {loss.item()} at optimizer step {state.completed_steps + 1} (epoch {epoch}); stopped before "
            f"updating the weights. Last good checkpoint: {last or 'none'} (resume with --resume_from_checkpoint "
            "latest, e.g. with a lower learning rate or --max_grad_norm)")


def micro_step(setup: TrainingSetup, batch: dict[str, Any], options: TrainingOptions, epoch: int) -> tuple[float, dict]:
    """Forward, NaN check, backward; on the last micro-batch of an optimizer step also clip, step and schedule
    (accelerate skips `optimizer.step` and `zero_grad` while accumulating). Returns the loss and the step's rates."""
    accelerator, model, optimizer = setup.accelerator, setup.model, setup.optimizer
    if not batch["rows"]:  # this process lost every video of the micro-batch, others did not
        batch = placeholder_batch(accelerator.unwrap_model(model).config)
    batch = setup.batcher.to_device(batch, accelerator.device)  # uint8 frames are normalised there
    with accelerator.accumulate(model):
        loss = setup.compute_loss(model, batch, setup.loss_fn, accelerator.unwrap_model(model).logit_scale)
        check_finite(loss, setup.state, epoch, options.output_dir)
        accelerator.backward(loss)
        learning_rates = _learning_rates(optimizer)  # the rates this step uses
        if accelerator.sync_gradients and options.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), options.max_grad_norm)
        optimizer.step()
        if accelerator.sync_gradients:
            setup.scheduler.step()
        optimizer.zero_grad()
    return loss.item(), learning_rates


def log_step(setup: TrainingSetup, window: LogWindow, epoch: int, learning_rates: dict) -> None:
    """Logging of the window's mean loss, logit scale, samples/s, epoch (from 1) and rates; starts a new window."""
    state, unwrapped = setup.state, setup.accelerator.unwrap_model(setup.model)
    logs = {"loss": window.loss / window.steps, "logit_scale": unwrapped.logit_scale.exp().item(),
            "samples_per_second": window.samples / (time.perf_counter() - window.start), "epoch": epoch + 1,
            **learning_rates}
    logger.info("%sstep %d/%d: %s", setup.log_prefix, state.completed_steps, setup.max_steps,
                ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
    setup.accelerator.log({f"{setup.log_prefix}train/{k}": v for k, v in logs.items()}, step=state.completed_steps)
    state.log_history.append({"step": state.completed_steps, **logs})
    window.loss, window.samples, window.steps, window.start = 0.0, 0, 0, time.perf_counter()


def end_of_epoch(setup: TrainingSetup, options: TrainingOptions, epoch: int, finished: bool,
                 last_checkpoint: Optional[Path]) -> Optional[Path]:
    """Checkpointing at an epoch's end (or where --max_train_steps stopped it): a finished epoch is recorded as such,
    an unfinished one keeps its micro-batch count, so a resume with more steps goes on with the rest of it."""
    state = setup.state
    if finished:
        state.epoch, state.batches_in_epoch = epoch + 1, 0
    if not (options.checkpoint_epochs or options.checkpoint_every):
        return last_checkpoint
    if last_checkpoint is None or last_checkpoint.name != f"{CHECKPOINT_PREFIX}{state.completed_steps}":
        return save_checkpoint(setup.accelerator, options.output_dir, state, options.save_total_limit)
    if setup.accelerator.is_main_process:  # the step checkpoint of this very step: record where the epoch is
        write_trainer_state(last_checkpoint, state)
    return last_checkpoint


def train(setup: TrainingSetup, options: TrainingOptions, evaluator: Optional[Evaluator] = None) -> TrainerState:
    """The loop: skip accounting, micro-step (placeholder batches, NaN check), logging, checkpointing, evaluation
    every --eval_steps.

    One optimizer step = `gradient_accumulation_steps` global micro-batches; the scheduler steps once per optimizer
    step on any number of processes (the Accelerator is built with `step_scheduler_with_optimizer=False`), so its
    `last_epoch` always equals `state.completed_steps`. A global micro-batch left with no decodable row is skipped by
    every process alike and the next one takes its place in the accumulation; a pass with none to train on stops the
    run (`NoTrainingDataError`).
    """
    accelerator, model, state = setup.accelerator, setup.model, setup.state
    unwrapped = accelerator.unwrap_model(model)
    checkpoint_every, eval_every = options.checkpoint_every, options.eval_steps if evaluator is not None else None
    progress = tqdm(total=setup.max_steps, initial=state.completed_steps, desc=f"{setup.log_prefix}training",
                    disable=not accelerator.is_local_main_process)
    window, last_checkpoint = LogWindow(), None
    for epoch in range(state.epoch, math.ceil(setup.max_steps / setup.steps_per_epoch)):
        model.train()
        skip = state.batches_in_epoch if epoch == state.epoch else 0
        setup.batches.set_epoch(epoch, skip_batches=skip)
        state.epoch, state.batches_in_epoch, trained, stopped = epoch, skip, 0, False
        for batch in setup.batches:
            state.batches_in_epoch += 1
            rows = count_skips(setup, batch, epoch)
            if rows == 0:
                continue
            loss, learning_rates = micro_step(setup, batch, options, epoch)
            trained += 1
            window.loss += loss / options.gradient_accumulation_steps
            window.samples += rows
            if not accelerator.sync_gradients:
                continue
            with torch.no_grad():  # the original CLIP clamps its temperature at 100
                unwrapped.logit_scale.clamp_(0, math.log(100))
            state.completed_steps += 1
            window.steps += 1
            progress.update(1)
            progress.set_postfix(loss=f"{window.loss / window.steps:.4f}")
            if state.completed_steps % options.logging_steps == 0 or state.completed_steps == setup.max_steps:
                log_step(setup, window, epoch, learning_rates)
            if checkpoint_every and state.completed_steps % checkpoint_every == 0:
                last_checkpoint = save_checkpoint(accelerator, options.output_dir, state, options.save_total_limit)
            if eval_every and state.completed_steps % eval_every == 0:
                evaluator(model, state.completed_steps)
                model.train()
            if state.completed_steps >= setup.max_steps:
                stopped = True
                break
        if trained == 0 and skip == 0:
            raise NoTrainingDataError(
                f"{setup.log_prefix}epoch {epoch + 1} of the training split gave no micro-batch to train on after "
                f"{state.completed_steps} of {setup.max_steps} steps ({state.skipped_videos} undecodable video(s) "
                f"skipped so far; a streamed split needs rows for each of the {accelerator.num_processes} "
                "process(es)); nothing is saved as trained")
        per_epoch = setup.batches.batches_per_epoch
        finished = not stopped or (per_epoch is not None and state.batches_in_epoch >= per_epoch)
        last_checkpoint = end_of_epoch(setup, options, epoch, finished, last_checkpoint)
        if state.completed_steps >= setup.max_steps:
            break
    progress.close()
    return state

# ----------------------------------------------------------------------------------------------------------------------
# What trains: frozen towers, two learning rates (CLIP vs new modules), no decay on biases, norms and the scale
# ----------------------------------------------------------------------------------------------------------------------


def freeze_towers(model, text: bool = False, vision: bool = False) -> None:
    """Stops the gradients of the text tower and its projection (`text`) and/or the vision tower and its (`vision`)."""
    frozen = []
    if text:
        frozen += [model.text_model, model.text_projection]
    if vision:
        frozen += [model.vision_model, model.visual_projection]
    for module in frozen:
        module.requires_grad_(False)


def parameter_groups(model: torch.nn.Module, learning_rate: float, clip_learning_rate: float,
                     weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: CLIP's modules at `clip_learning_rate`, the new ones at `learning_rate`; weight decay on matrices
    only (not on biases, norms, embeddings, the TAB centers or the scale)."""
    groups: dict[tuple[str, bool], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "clip" if name.split(".")[0] in CLIP_MODULES else "new"
        decay = parameter.ndim >= 2 and "embedding" not in name and "center" not in name
        groups.setdefault((part, decay), []).append(parameter)
    learning_rates = {"clip": clip_learning_rate, "new": learning_rate}
    return [
        {"params": params, "lr": learning_rates[part], "weight_decay": weight_decay if decay else 0.0,
         "name": f"{part}{'' if decay else '_no_decay'}"}
        for (part, decay), params in sorted(groups.items())
    ]


__all__ = ["NoTrainingDataError", "TrainResult", "TrainingDivergedError", "TrainingOptions", "TrainingSetup",
           "compute_loss", "freeze_towers", "parameter_groups", "placeholder_batch", "train"]
