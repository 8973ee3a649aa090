# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Training checkpoints of `run_retrieval.py`: `accelerator.save_state` written atomically, `--resume_from_checkpoint
latest`, the trainer state that says where a run is, and `--save_total_limit`.

A checkpoint is `output_dir/checkpoints/checkpoint-<step>` (Trainer's naming, by optimizer step) holding what
`accelerator.save_state` writes (model, optimizer, scheduler, every process's RNG) and `trainer_state.json`.

Why not accelerate's `ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=N)`: it names folders
`checkpoint_<n>` by the number of saves (not the step, so two runs of one folder or a resume cannot tell which step a
folder holds), writes in place (a kill mid-write leaves a folder that looks like a checkpoint) and counts only its own
names. Here a checkpoint is written into a temporary folder and renamed once complete, so `latest` never picks a
half-written one, and the limit is applied to complete checkpoints only.

Example:
    >>> state = TrainerState(completed_steps=10, epoch=1)
    >>> save_checkpoint(accelerator, "out", state, limit=3)      # out/checkpoints/checkpoint-10
    >>> state, resumed = load_checkpoint(accelerator, resolve_checkpoint("latest", "out"), optimizer, scheduler)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from utils_clip2video import TMP_PREFIX, atomic_directory, write_text


logger = logging.getLogger("run_retrieval")

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
#: `--resume_from_checkpoint` values that look for the newest checkpoint of output_dir.
RESUME_LATEST, RESUME_LATEST_IF_ANY = "latest", "latest_if_any"


@dataclass
class TrainerState:
    """Where training is: optimizer steps done, epoch, micro-batches of that epoch done, what was skipped, the log
    history (one entry per logging step, plus one per resume saying where it resumed) and, for a streamed split, the
    layout its order depends on (`stream_layout`: processes and DataLoader workers)."""

    completed_steps: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    skipped_videos: int = 0
    skipped_batches: int = 0
    log_history: list = field(default_factory=list)
    stream_layout: Optional[dict] = None


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from: none found for `latest`, its saved states disagree, or it was written
    with another stream layout."""


def checkpoint_root(output_dir: str) -> Path:
    return Path(output_dir) / "checkpoints"


def check_checkpoint_root(output_dir: str) -> None:
    """A symlinked `output_dir/checkpoints` is refused: removing earlier checkpoints would delete through the link."""
    root = checkpoint_root(output_dir)
    if root.is_symlink():
        raise CheckpointError(f"{root} is a symbolic link (to {root.resolve()}): checkpoints are written and old ones "
                              "deleted in this folder, never through a link; remove the link or use another "
                              "--output_dir")


def _checkpoint_step(path: Path) -> Optional[int]:
    """The step of a `checkpoint-<step>` folder name, None for any other name (temporary folders included)."""
    suffix = path.name[len(CHECKPOINT_PREFIX):]
    return int(suffix) if path.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def _ours(root: Path, match) -> list[Path]:
    if not root.is_dir() or root.is_symlink():
        return []
    return [path for path in root.iterdir() if not path.is_symlink() and path.is_dir() and match(path)]


def complete_checkpoints(output_dir: str) -> list[Path]:
    """Finished checkpoints (`checkpoint-<step>` folders with a trainer state), oldest first. A checkpoint being
    written lives in a temporary folder until it is complete, so a kill mid-write leaves nothing that matches."""
    found = _ours(checkpoint_root(output_dir),
                  lambda path: _checkpoint_step(path) is not None and (path / TRAINER_STATE).is_file())
    return sorted(found, key=_checkpoint_step)


def unfinished_checkpoints(output_dir: str) -> list[Path]:
    """Temporary checkpoint folders (`.tmp-<id>-checkpoint-<step>`) that a killed save left behind."""
    return _ours(checkpoint_root(output_dir), lambda path: path.name.startswith(TMP_PREFIX)
                 and _checkpoint_step(Path(path.name.split("-", 2)[-1])) is not None)


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


def remove_previous_checkpoints(output_dir: str) -> list[str]:
    """Delete this script's own checkpoints (complete or unfinished) from an earlier run in output_dir, so `latest` and
    `--save_total_limit` never mix two runs; anything else in the folder is left alone."""
    check_checkpoint_root(output_dir)
    ours = complete_checkpoints(output_dir) + unfinished_checkpoints(output_dir)
    for path in ours:
        shutil.rmtree(path)
    return sorted(path.name for path in ours)


def write_trainer_state(checkpoint: Path, state: TrainerState) -> None:
    write_text(checkpoint / TRAINER_STATE, json.dumps(dataclasses.asdict(state), indent=2))


def save_checkpoint(accelerator: Accelerator, output_dir: str, state: TrainerState, limit: Optional[int]) -> Path:
    """`accelerator.save_state` (model, optimizer, scheduler, RNG of every process) and the trainer state, written
    into a temporary folder that becomes `checkpoint-<step>` in one rename (`atomic_directory`): a kill or an error
    mid-write leaves the previous checkpoints as they were and no folder that `latest` would pick. Then only the
    `limit` newest complete checkpoints are kept."""
    check_checkpoint_root(output_dir)
    final = checkpoint_root(output_dir) / f"{CHECKPOINT_PREFIX}{state.completed_steps}"
    main_process = accelerator.is_main_process
    with atomic_directory(final, replace=True) if main_process else contextlib.nullcontext() as temporary:
        temporary = broadcast_object_list([str(temporary) if main_process else None])[0]  # one folder for all
        accelerator.save_state(temporary)
        accelerator.wait_for_everyone()
        if main_process:
            write_trainer_state(Path(temporary), state)
    if main_process:
        for old in (complete_checkpoints(output_dir)[: -limit] if limit else []) + unfinished_checkpoints(output_dir):
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint: Path, optimizer, scheduler,
                    stream_layout: Optional[dict] = None) -> tuple[TrainerState, dict]:
    """`accelerator.load_state` + the trainer state; checks the restored scheduler is at the checkpoint's step and,
    for a streamed split, that the stream is laid out as when the checkpoint was written (a stream's order depends on
    the processes and DataLoader workers that read it: another layout would train on other data). Returns where the
    run resumes (step, epoch, micro-batch of the epoch, optimizer and scheduler steps)."""
    state = TrainerState(**json.loads((checkpoint / TRAINER_STATE).read_text()))
    if stream_layout is not None and state.stream_layout != stream_layout:
        raise CheckpointError(f"{checkpoint}: written by a streamed run with {_layout(state.stream_layout)}, resumed "
                              f"with {_layout(stream_layout)}: a stream's order depends on both, so the resumed run "
                              "would see other data; resume with the checkpoint's --dataloader_num_workers and "
                              "number of processes")
    accelerator.load_state(str(checkpoint))
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


def _layout(layout: Optional[dict]) -> str:
    if not layout:
        return "no recorded stream layout (a map-style split)"
    return f"{layout['num_processes']} process(es) x {layout['dataloader_num_workers']} DataLoader worker(s)"


__all__ = [
    "CHECKPOINT_PREFIX", "RESUME_LATEST", "RESUME_LATEST_IF_ANY", "TRAINER_STATE", "CheckpointError", "TrainerState",
    "check_checkpoint_root", "checkpoint_root", "complete_checkpoints", "load_checkpoint",
    "remove_previous_checkpoints", "resolve_checkpoint", "save_checkpoint", "unfinished_checkpoints",
    "write_trainer_state",
]
