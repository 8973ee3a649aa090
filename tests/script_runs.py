"""Helpers for tests that run `run_retrieval.main` in-process on a tiny synthetic benchmark and watch it from outside.

`RunRecorder` observes a run only through public seams (`accelerate.Accelerator.prepare` / `.log`, the optimizer's
`step`, the model's `forward`), so the tests check what the training recipe really did — learning rate of every
parameter group at every optimizer step, the gradients the optimizer saw, the micro-batches the model saw — without
relying on the script's internal helpers.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

import run_retrieval
from modeling_clip2video import CLIP2VideoModel


#: The CLIP part of a CLIP2Video model (its own parameter names, as in transformers' CLIPModel); the rest is new.
CLIP_PREFIXES = ("text_model.", "vision_model.", "text_projection.", "visual_projection.", "logit_scale")
TEXT_TOWER_PREFIXES = ("text_model.", "text_projection.")
VISION_TOWER_PREFIXES = ("vision_model.", "visual_projection.")

#: A 1.7 M-parameter model from scratch (mostly the 49,408-token embedding) on 32 train / 16 test synthetic videos
#: of 4 frames, 32 px: about 1 s per run.
TINY = [
    "--dataset_name", "synthetic-motion", "--train_size", "32", "--test_size", "16", "--num_frames", "4",
    "--max_words", "16", "--scratch_hidden_size", "32", "--scratch_num_layers", "1", "--scratch_patch_size", "16",
    "--num_temporal_layers", "1", "--train_batch_size", "8", "--report_to", "none", "--cache_videos",
    "--checkpointing_steps", "no", "--logging_steps", "1", "--learning_rate", "1e-3", "--clip_learning_rate", "1e-3",
]


def tiny_args(output_dir, cache_dir, *extra) -> list[str]:
    """`TINY` + output and cache folders + `extra` (later options override earlier ones)."""
    return [*TINY, "--output_dir", str(output_dir), "--cache_dir", str(cache_dir), *extra]


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> str:
    """One synthetic-motion cache for the session (the tiny set is generated once)."""
    return str(tmp_path_factory.mktemp("synthetic_cache_recipe"))


def is_clip(name: str) -> bool:
    return name.startswith(CLIP_PREFIXES)


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """The multiplier of the base learning rate after `step` scheduler steps: linear warm-up from 0, then cosine to 0."""
    if step < warmup:
        return step / max(1, warmup)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def saved_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


class RunRecorder:
    """Records what `run_retrieval.main` does, per model it prepares (`runs[0]`: CLIP2Video, `runs[1]`: baseline).

    Each run is a dict with:
      model: the prepared model; initial: its state dict (cloned) when prepared (= after building, before training);
      steps: one entry per real optimizer step: `lr` and `initial_lr` per parameter-name tuple of each group,
        `grad_norm` (L2 norm of every gradient the optimizer sees), `with_grad` (names whose `.grad` is not None),
        `gradients` (with `record_gradients=True`: every gradient, cloned);
      forwards: training-mode forward calls: their inputs (cloned) and whether autocast was on;
      logs: what the script passed to `Accelerator.log`, as (step, values).
    """

    def __init__(self, record_inputs: bool = False, record_gradients: bool = False):
        self.runs: list[dict[str, Any]] = []
        self.record_inputs, self.record_gradients = record_inputs, record_gradients

    @property
    def run(self) -> dict[str, Any]:
        return self.runs[0]

    def _names_by_id(self, run) -> dict[int, str]:
        if "names" not in run:
            model = run["model"].module if hasattr(run["model"], "module") else run["model"]
            run["names"] = {id(p): name for name, p in model.named_parameters()}
        return run["names"]

    @contextlib.contextmanager
    def watch(self):
        recorder = self
        real_prepare, real_log = Accelerator.prepare, Accelerator.log
        real_step, real_forward = torch.optim.AdamW.step, CLIP2VideoModel.forward  # (inherited ones too)

        def prepare(accelerator, *objects, **kwargs):
            for obj in objects:
                if isinstance(obj, torch.nn.Module):
                    recorder.runs.append(dict(model=obj, steps=[], forwards=[], logs=[], layer_calls={},
                                              initial=_state(obj)))
                    _count_layer_calls(obj, recorder.runs[-1]["layer_calls"])
            return real_prepare(accelerator, *objects, **kwargs)

        def log(accelerator, values, step=None, **kwargs):
            if recorder.runs:
                recorder.runs[-1]["logs"].append((step, dict(values)))
            return real_log(accelerator, values, step=step, **kwargs)

        def step(optimizer, *args, **kwargs):
            run = recorder.runs[-1]
            names = recorder._names_by_id(run)
            groups, squares, with_grad = [], 0.0, set()
            for group in optimizer.param_groups:
                group_names = tuple(sorted(names[id(p)] for p in group["params"]))
                groups.append(dict(names=group_names, lr=group["lr"], initial_lr=group.get("initial_lr"),
                                   weight_decay=group["weight_decay"]))
            model = run["model"]
            for name, parameter in model.named_parameters():
                if parameter.grad is not None:
                    with_grad.add(name)
                    squares += float(parameter.grad.double().pow(2).sum())
            record = dict(groups=groups, grad_norm=math.sqrt(squares), with_grad=with_grad)
            if recorder.record_gradients:
                record["gradients"] = {name: p.grad.detach().clone() for name, p in model.named_parameters()
                                       if p.grad is not None}
            run["steps"].append(record)
            return real_step(optimizer, *args, **kwargs)

        def forward(model, *args, **kwargs):
            if model.training and recorder.runs:
                run = recorder.runs[-1]
                if not run["forwards"]:
                    run["first_forward_state"] = _state(model)
                entry = dict(autocast=torch.is_autocast_enabled("cpu"))
                if recorder.record_inputs:
                    entry["inputs"] = {k: v.detach().clone() for k, v in kwargs.items() if torch.is_tensor(v)}
                run["forwards"].append(entry)
            return real_forward(model, *args, **kwargs)

        with contextlib.ExitStack() as stack:
            stack.enter_context(_patched(Accelerator, "prepare", prepare))
            stack.enter_context(_patched(Accelerator, "log", log))
            stack.enter_context(_patched(torch.optim.AdamW, "step", step))
            stack.enter_context(_patched(CLIP2VideoModel, "forward", forward))
            yield self

    def main(self, argv) -> dict[str, Any]:
        """`run_retrieval.main(argv)`, watched. accelerate keeps its state (mixed precision) per process: it is reset
        before and after, so one run's `--mixed_precision` never leaks into the next test."""
        AcceleratorState._reset_state()
        try:
            with self.watch():
                return run_retrieval.main(argv)
        finally:
            AcceleratorState._reset_state()


def _state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


#: Modules inside a layer whose calls are counted: gradient checkpointing runs a layer's forward again in backward
#: (transformers wraps the layer's `forward`, so the layer's own hooks fire once; its children's fire twice).
COUNTED_LAYERS = ("vision_model.encoder.layers.0.mlp", "text_model.encoder.layers.0.mlp",
                  "temporal_transformer.layers.0.mlp")


def _count_layer_calls(model, counts: dict[str, int]) -> None:
    modules = dict(model.named_modules())
    for name in COUNTED_LAYERS:
        if name in modules:
            counts[name] = 0
            modules[name].register_forward_pre_hook(lambda module, args, name=name: counts.__setitem__(name, counts[name] + 1))


@contextlib.contextmanager
def _patched(owner, name, replacement):
    """Set a class attribute for the duration (an inherited one is shadowed, then uncovered again)."""
    own = name in owner.__dict__
    original = owner.__dict__.get(name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


def logged(run, key: str) -> dict[int, float]:
    """`{step: value}` of a logged training value (e.g. `train/loss`, `train/lr_new`)."""
    return {step: values[key] for step, values in run["logs"] if key in values}


def group_lr(step_record, clip: bool) -> list[tuple[float, Optional[float]]]:
    """(lr, initial_lr) of every parameter group whose parameters are all CLIP (`clip=True`) or all new."""
    return [(g["lr"], g["initial_lr"]) for g in step_record["groups"] if all(is_clip(n) == clip for n in g["names"])]
