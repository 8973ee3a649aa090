#!/usr/bin/env python
# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Training throughput (samples/s) and peak memory of CLIP2Video for a fixed small config:
fp32 vs bf16 autocast, with and without gradient checkpointing.

    python benchmarks/bench_train.py                     # CPU (or the first GPU when there is one)
    python benchmarks/bench_train.py --width 512 --layers 12 --image_size 224 --patch_size 32 --batch_size 32

Each setting runs `--warmup` then `--steps` optimizer steps of the real training step (forward, the contrastive loss,
backward, AdamW) on random inputs. Peak memory: `torch.cuda.max_memory_allocated` on GPU, the growth of the process's
peak RSS above the RSS after building the model on CPU (each setting runs in a fresh process there).
"""

import argparse
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configuration_clip2video import CLIP2VideoConfig  # noqa: E402
from loss_clip2video import CLIP2VideoContrastiveLoss  # noqa: E402
from modeling_clip2video import CLIP2VideoModel  # noqa: E402


def build(args) -> CLIP2VideoModel:
    width = args.width
    text = dict(vocab_size=49408, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=args.layers,
                num_attention_heads=max(1, width // 64), max_position_embeddings=32, bos_token_id=49406,
                eos_token_id=49407, pad_token_id=0)
    vision = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=args.layers,
                  num_attention_heads=max(1, width // 64), image_size=args.image_size, patch_size=args.patch_size)
    config = CLIP2VideoConfig(text_config=text, vision_config=vision, projection_dim=width, num_frames=args.frames,
                              num_temporal_layers=2, original_padding=False)
    return CLIP2VideoModel(config)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_memory_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run(args, dtype: str, checkpointing: bool, device: torch.device) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build(args).to(device).train()
    if checkpointing:
        model.activation_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = CLIP2VideoContrastiveLoss(model.config.center_weight)
    batch, frames, size = args.batch_size, args.frames, args.image_size
    input_ids = torch.randint(1, 49000, (batch, 32), device=device)
    input_ids[:, 0], input_ids[:, 20], input_ids[:, 21:] = 49406, 49407, 0
    attention_mask = (torch.arange(32, device=device) < 21).long().expand(batch, 32)
    pixel_values = torch.randn(batch, frames, 3, size, size, device=device)
    video_mask = torch.ones(batch, frames, dtype=torch.long, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = current_memory_mb()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def step():
        with autocast:
            outputs = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                            video_mask=video_mask)
            loss = loss_fn(outputs, model.logit_scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    peak = peak_memory_mb(device) - (before if device.type == "cpu" else 0)
    return args.steps * batch / elapsed, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=128, help="width of both towers and the embeddings")
    parser.add_argument("--layers", type=int, default=2, help="layers per tower")
    parser.add_argument("--image_size", type=int, default=64, help="frame size")
    parser.add_argument("--patch_size", type=int, default=16, help="ViT patch size")
    parser.add_argument("--frames", type=int, default=12, help="frames per video")
    parser.add_argument("--batch_size", type=int, default=32, help="pairs per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per setting")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, threads {torch.get_num_threads()}, width {args.width}, layers {args.layers}, "
          f"{args.frames} frames of {args.image_size} px (patch {args.patch_size}), batch {args.batch_size}")
    print("| precision | grad. checkpointing | samples/s | peak memory (MiB) |\n|---|---|---:|---:|")
    for checkpointing in (False, True):
        for dtype in ("fp32", "bf16"):
            if device.type == "cpu":  # a fresh process per setting, so its peak RSS is its own
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    throughput, peak = pool.submit(run, args, dtype, checkpointing, device).result()
            else:
                throughput, peak = run(args, dtype, checkpointing, device)
            print(f"| {dtype} | {'yes' if checkpointing else 'no'} | {throughput:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
