# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The contrastive loss of CLIP2Video: the original's symmetric cross-entropy (`clip2video_loss`, which the model's
`forward` computes on its own batch) and the same loss over the *global* batch of a distributed run
(`CLIP2VideoContrastiveLoss`).

The model knows nothing of processes: it returns unit text/video embeddings and its logit scale.
`CLIP2VideoContrastiveLoss` gathers the embeddings of every process (the open_clip way: `all_gather` for the other
processes' slices, the local slice kept as the autograd tensor itself) and applies `clip2video_loss` to the gathered
batch, so every process computes the loss of the whole global batch — the same value on every process, equal to a
1-process run on that batch.

Gradients. Each process back-propagates only through its own slice, and DDP then *averages* the
parameter gradients over the `W` processes; the local slice therefore carries its gradient
multiplied by `W` (`_ScaleGradient`), which makes the averaged gradient exactly the gradient of the
global-batch loss (the logit scale, used identically on every process, needs no correction). The
distributed-equivalence test checks loss and gradients against a 1-process run to 1e-5.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def symmetric_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """InfoNCE in both directions (original: `CrossEn` on `S` and `S.T`, averaged).

    Args:
        logits: `(batch, batch)` similarities, matching pairs on the diagonal.
    """
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def clip2video_loss(
    text_global: torch.Tensor,
    video_global: torch.Tensor,
    logit_scale: torch.Tensor,
    center_weight: float = 1.0,
    text_alignment: torch.Tensor | None = None,
    video_alignment: torch.Tensor | None = None,
) -> torch.Tensor:
    """The original training loss: `cw * L_sym(s * t_g v_g^T) + (1 - cw) * L_sym(s * t_c v_c^T)`, `L_sym` being the
    mean of the row and column cross-entropies (`CrossEn` of the original's `modules/until_module.py`, combined in
    `modules/modeling.py`).

    Without TAB embeddings it is `L_sym(s * t_g v_g^T)`. All embeddings are unit vectors of shape `(batch, dim)`, text row
    `i` pairs with video row `i`; `logit_scale` is the log temperature. Callers that gather features across processes
    pass the gathered tensors here.
    """
    scale = logit_scale.exp()
    global_loss = symmetric_cross_entropy(scale * text_global @ video_global.t())
    if text_alignment is None or video_alignment is None:
        return global_loss
    alignment_loss = symmetric_cross_entropy(scale * text_alignment @ video_alignment.t())
    return center_weight * global_loss + (1 - center_weight) * alignment_loss


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `factor`."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output * ctx.factor, None


def _distributed_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_pieces(tensor: torch.Tensor, world_size: int) -> list[torch.Tensor]:
    """Every process's `tensor` (first dimensions may differ), in rank order, without gradient."""
    local_size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes = [int(size.item()) for size in sizes]
    padding = [0, 0] * (tensor.ndim - 1) + [0, max(sizes) - tensor.shape[0]]
    padded = F.pad(tensor.detach(), padding).contiguous()
    buffers = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(buffers, padded)
    return [buffer[:size] for buffer, size in zip(buffers, sizes)]


def gather_uneven(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's `(local_size, ...)` tensor in rank order -> `(sum of local sizes, ...)`.

    Local sizes may differ (a skipped corrupt video, an uneven share of an evaluation split). No gradient flows
    through the result; in a 1-process run it is `tensor` itself.
    """
    _, world_size = _distributed_world()
    if world_size == 1:
        return tensor
    return torch.cat(_gather_pieces(tensor, world_size))


def gather_with_local_gradient(features: torch.Tensor, scale_local_gradient: bool = True) -> torch.Tensor:
    """Concatenate `(local_batch, dim)` features of every process in rank order -> `(global_batch, dim)`.

    Other processes' rows are constants; the local rows are `features` itself (so they keep their
    gradient), with the gradient scaled by the world size when `scale_local_gradient` (see the module
    docstring). Local batches may differ in size (a skipped corrupt video shortens one).
    """
    rank, world_size = _distributed_world()
    if world_size == 1:
        return features
    pieces = _gather_pieces(features, world_size)
    pieces[rank] = _ScaleGradient.apply(features, float(world_size)) if scale_local_gradient else features
    return torch.cat(pieces)


class CLIP2VideoContrastiveLoss(nn.Module):
    """`clip2video_loss` (the original's symmetric cross-entropy) on embeddings gathered from all processes.

    Args:
        center_weight: weight `cw` of the global term; `1 - cw` goes to the TAB term.
        gather: gather across processes (no effect in a 1-process run).

    Call it with a [`CLIP2VideoOutput`] (or anything with `text_global_embeds`, `video_global_embeds`,
    `text_alignment_embeds`, `video_alignment_embeds`) and the model's `logit_scale` parameter (log
    temperature). Caption `i` pairs with video `i` within each process's batch.
    """

    def __init__(self, center_weight: float = 0.5, gather: bool = True):
        super().__init__()
        self.center_weight = center_weight
        self.gather = gather

    def _gather(self, features: torch.Tensor | None) -> torch.Tensor | None:
        if features is None or not self.gather:
            return features
        return gather_with_local_gradient(features)

    def forward(self, outputs, logit_scale: torch.Tensor) -> torch.Tensor:
        return clip2video_loss(
            self._gather(outputs.text_global_embeds),
            self._gather(outputs.video_global_embeds),
            logit_scale,
            self.center_weight,
            self._gather(outputs.text_alignment_embeds),
            self._gather(outputs.video_alignment_embeds),
        )


__all__ = [
    "CLIP2VideoContrastiveLoss",
    "clip2video_loss",
    "gather_uneven",
    "gather_with_local_gradient",
    "symmetric_cross_entropy",
]
