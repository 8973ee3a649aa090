# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Loading a saved CLIP2Video model with its processor, and the fingerprint that identifies both.

One trust policy, as transformers spells it: `trust_remote_code=False` (the default) loads this repository's classes
(`CLIP2VideoModel`, `CLIP2VideoProcessor` from the saved settings) and runs no code stored next to the weights;
`trust_remote_code=True` lets `AutoModel` / `AutoProcessor` run the model folder's own code. A model folder named by
an index someone else handed over is loaded under the same rule: its code runs only when the user says so.

One loading rule: every parameter and buffer comes from the checkpoint. A checkpoint that lacks a tensor (or holds one
of another shape) is refused with `ModelLoadError`, never completed with random values.

    >>> loaded = load_model("my_model")                     # LoadedModel: model, processor, fingerprint
    >>> loaded.encode_text(["a dog catches a frisbee"]).shape
    torch.Size([1, 512])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from utils_clip2video import ModelSourceError, ProcessorNotFoundError, check_model_source, load_processor


logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A model folder (or Hub repo) that exists but holds no complete, loadable CLIP2Video model, or no processor."""


@dataclass
class LoadedModel:
    """A CLIP2Video model, its processor and the fingerprint that identifies both (weights, config, preprocessing)."""

    model: torch.nn.Module
    processor: object
    name_or_path: str
    fingerprint: str
    bf16: bool = False

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    @property
    def dim(self) -> int:
        return int(self.model.config.retrieval_embed_dim)

    @property
    def identity(self) -> dict:
        """What an index records of the model that built it (`index_store.new_meta`)."""
        return {"name_or_path": self.name_or_path, "fingerprint": self.fingerprint, "bf16": self.bf16,
                "logit_scale": self.logit_scale}

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Retrieval vectors of captions, `(len(texts), retrieval_embed_dim)` float32 on the CPU."""
        inputs = self.processor(text=list(texts), return_tensors="pt")
        with self._autocast():
            features = self.model.get_text_features(
                inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device)).pooler_output
        return features.float().cpu()

    @torch.no_grad()
    def encode_videos(self, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """Retrieval vectors of preprocessed videos `(batch, frames, 3, H, W)` -> `(batch, retrieval_embed_dim)`."""
        with self._autocast():
            features = self.model.get_video_features(
                pixel_values.to(self.device), video_mask.to(self.device)).pooler_output
        return features.float().cpu()


def _processor_settings(processor) -> dict:
    """The preprocessing choices that change a video's or caption's vector (they enter the fingerprint)."""
    video = processor.video_processor
    names = ("num_frames", "frame_sampling", "feature_framerate", "extraction_fps", "size", "crop_size", "image_mean",
             "image_std", "resample", "do_resize", "do_center_crop", "do_rescale", "rescale_factor", "do_normalize")
    settings = {name: getattr(video, name, None) for name in names}
    settings = json.loads(json.dumps(settings, default=lambda value: getattr(value, "__dict__", str(value))))
    settings["max_words"] = getattr(processor, "max_words", None)
    settings["tokenizer_vocab_size"] = len(processor.tokenizer) if getattr(processor, "tokenizer", None) else None
    return settings


def model_fingerprint(model: torch.nn.Module, processor) -> str:
    """`sha256` over the model's config, every parameter and buffer (names, dtypes, shapes, bytes) and the processor's
    preprocessing settings: two loads of the same weights give the same fingerprint, whatever the path or Hub id, and
    whether the classes came from this repository or from the folder's remote code."""
    digest = hashlib.sha256()
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "auto_map", "architectures", "torch_dtype", "dtype",
                     "custom_pipelines"):
        config.pop(volatile, None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(json.dumps(_processor_settings(processor), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def _check_complete(name_or_path: str, info: dict) -> None:
    """Raises `ModelLoadError` when the checkpoint left a tensor at its random initial value (missing, or of another
    shape than the config says)."""
    problems = []
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        problems.append(f"{len(missing)} tensor(s) missing from the weights ({shown})")
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        shown = ", ".join(f"{key[0]} {tuple(key[1])} vs {tuple(key[2])}" if isinstance(key, (list, tuple))
                          and len(key) == 3 else str(key) for key in list(mismatched)[:5])
        problems.append(f"{len(mismatched)} tensor(s) of another shape than the config ({shown})")
    if info.get("error_msgs"):
        problems.append("; ".join(str(message) for message in info["error_msgs"][:3]))
    if problems:
        raise ModelLoadError(f"{name_or_path}: incomplete checkpoint: {'; '.join(problems)}; refusing a model with "
                             "randomly initialised tensors (re-save or re-convert it)")
    if info.get("unexpected_keys"):
        logger.warning("%s: %d tensor(s) in the weights that the model does not use (e.g. %s)", name_or_path,
                       len(info["unexpected_keys"]), sorted(info["unexpected_keys"])[0])


def model_type(name_or_path: str) -> str | None:
    """The `model_type` of the config saved at `name_or_path` (None when there is no readable config)."""
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(name_or_path)
    except (OSError, ValueError):
        return None
    return config.get("model_type")


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


def load_clip2video_weights(name_or_path: str, trust_remote_code: bool = False) -> torch.nn.Module:
    """The CLIP2Video model saved at `name_or_path` (a local folder or a Hub repo id), refused when incomplete.

    The one way the scripts read a CLIP2Video checkpoint (`search_videos.py`, `run_retrieval.py`): with
    `trust_remote_code` the folder's own code (`AutoModel`), else this repository's classes.

    Raises:
        ModelSourceError: `name_or_path` is neither an existing folder nor a repo the Hub provided.
        ModelLoadError: not a loadable CLIP2Video model, or an incomplete one (a tensor missing or of another shape).
    """
    name_or_path = check_model_source(name_or_path)
    found = model_type(name_or_path)
    if found is not None and found != "clip2video":
        raise ModelLoadError(f"{name_or_path}: model_type {found!r}, not a CLIP2Video model")
    try:
        if trust_remote_code:
            from transformers import AutoModel

            model, info = AutoModel.from_pretrained(name_or_path, trust_remote_code=True, output_loading_info=True)
        else:
            from modeling_clip2video import CLIP2VideoModel

            model, info = CLIP2VideoModel.from_pretrained(name_or_path, output_loading_info=True)
    except OSError as error:
        if not Path(name_or_path).is_dir():  # a Hub id: unknown, private, or the Hub is not reachable (offline)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelSourceError(f"{name_or_path}: no such folder, and the Hub did not provide it (unknown repo or "
                                   f"Hub not reachable: {reason})") from None
        raise ModelLoadError(f"{name_or_path}: not a CLIP2Video model folder ({error})") from None
    except (ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{name_or_path}: not a loadable CLIP2Video model ({reason})") from None
    _check_complete(name_or_path, info)
    return model


def load_model(name_or_path: str, device: str | torch.device | None = None, bf16: bool = False,
               trust_remote_code: bool = False) -> LoadedModel:
    """Loads a CLIP2Video model and its processor (Hub id or local folder), in eval mode.

    Args:
        name_or_path: a local folder or a Hub repo id holding a CLIP2Video model and its processor.
        device: where to put the model (default: where it loads, the CPU).
        bf16: encode under bfloat16 autocast (recorded in the fingerprint dict, `identity`).
        trust_remote_code: run the folder's own modeling / processing code (`AutoModel`, `AutoProcessor`); off by
            default: this repository's classes read the weights and the saved settings.

    Raises:
        ModelSourceError: `name_or_path` is neither an existing folder nor a repo the Hub provided (a mistyped local
            path is named as a missing folder, not sent to the Hub).
        ModelLoadError: the folder (or repo) holds no loadable CLIP2Video model, an incomplete one (a tensor missing or
            of another shape), or no processor.
    """
    model = load_clip2video_weights(name_or_path, trust_remote_code)
    name_or_path = check_model_source(name_or_path)
    try:
        processor = load_processor(name_or_path, trust_remote_code=trust_remote_code)
    except ProcessorNotFoundError as error:
        raise ModelLoadError(f"{error} (the converter and run_retrieval.py save one next to the model)") from None
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedModel(model, processor, str(name_or_path), model_fingerprint(model, processor), bf16)


__all__ = ["LoadedModel", "ModelLoadError", "check_model_available", "load_clip2video_weights", "load_model", "model_fingerprint", "model_type"]
