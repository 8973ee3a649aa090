#!/usr/bin/env python
# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""One prepared check of the CUDA path: is it exact, and how fast do training, encoding and search run on one GPU.

    python benchmarks/gpu_check.py --json gpu_check.json            # the first GPU, ViT-B/32 size, < 8 min on H100/H200
    python benchmarks/gpu_check.py --device cpu --tiny              # the same sections end to end on CPU, tiny sizes

Needs no download: the model is a random-weight CLIP2Video of ViT-B/32 size (`CLIP2VideoConfig()`'s defaults: 12-layer
towers of width 512 / 768, 32 px patches of 224 px frames, 12 frames); the videos are generated on the spot and
prepared into frame shards (`prepare_shards.py`) that training reads as run_retrieval.py does. Prints one JSON summary:

* `exactness`: the parity fixture's similarity (tests/fixtures, converted by the project's converter) on the device in
  fp32 against the CPU (<= 1e-4; cuDNN's TF32 convolutions off, and their error with the default on); one training step
  on the device against the CPU from the same uint8 frames (`VideoBatcher.to_device` normalises them where the model is;
  run_retrieval's `compute_loss` and the gathering `CLIP2VideoContrastiveLoss`): loss, gradients and the weights
  after an SGD and an AdamW step; the bf16-autocast error of the similarity; the int8 scan on the device
  (`torch._int_mm`) against the CPU scan (the same integers) and the top k against the float32 scan;
* `input`: clips/s of the prepared-shards DataLoader per worker core (what the input costs in CPU cores);
* `training`: samples/s and peak memory at ViT-B/32, 12 frames, 224 px, fp32 / bf16 x with / without gradient
  checkpointing, at the largest batch of `--batches` (64 / 128 / 256) that fits; then the bf16 setting fed by the
  shard DataLoader: GPU idle share (1 - compute-only time / fed time) and the CPU cores the input needs per GPU;
* `encoding`: videos/s of `get_video_features` at 12 frames, towers in fp16 and fp32 weights under bf16 autocast;
* `search`: latency on the device over `--search_rows` vectors (1M x 1024): one query and a batch, float32 and fp16
  products, and the int8 scan.

Each section has a time budget (`SECTION_BUDGETS`; settings left out for time are listed under `skipped`).
"""

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import caption_table  # noqa: E402
import data_clip2video  # noqa: E402
import data_sources  # noqa: E402
import vector_search  # noqa: E402
from configuration_clip2video import CLIP2VideoConfig  # noqa: E402
from loss_clip2video import CLIP2VideoContrastiveLoss  # noqa: E402
from modeling_clip2video import CLIP2VideoModel  # noqa: E402
from processing_clip2video import CLIP2VideoVideoProcessor  # noqa: E402
from run_retrieval import compute_loss  # noqa: E402


FIXTURES = REPO_ROOT / "tests" / "fixtures"
#: The parity fixture's model options (tests/test_parity.py, golden_config.json "model").
FIXTURE_OPTIONS = ["--center_weight", "0.3", "--cross_num_hidden_layers", "2"]
#: Seconds per section on the GPU run (about 6.5 minutes in all, so the run ends under 8 with start-up).
SECTION_BUDGETS = {"exactness": 45, "shards": 60, "input": 25, "training": 170, "encoding": 40, "search": 40}
TOLERANCES = {"parity_fp32": 1e-4, "train_loss": 1e-4, "train_sgd_weights": 1e-5, "bf16_similarity_relative": 3e-2}

FULL = dict(width=None, layers=None, image_size=224, patch_size=32, frames=12, batches=(64, 128, 256), steps=5,
            videos=16, seconds=12, workers=None, encode_batch=128, search_rows=1_000_000, search_dim=1024,
            exact_rows=50_000)
TINY = dict(width=64, layers=2, image_size=32, patch_size=16, frames=4, batches=(4, 8), steps=2, videos=4, seconds=2,
            workers=2, encode_batch=4, search_rows=20_000, search_dim=64, exact_rows=5_000)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, repeats: int) -> float:
    """Median seconds of `function()` over `repeats` calls after one warm-up, the device synchronised."""
    function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # the process's peak, all sections


def reset_peak(device: torch.device) -> None:
    """Frees what an earlier setting left (an out-of-memory attempt's tensors included) and restarts the peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


@contextlib.contextmanager
def cudnn_tf32(enabled: bool):
    """cuDNN convolutions (CLIP's patch embedding) in TF32 or full fp32 inside the block."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


# ----------------------------------------------------------------------------------------------------------------------
# Exactness
# ----------------------------------------------------------------------------------------------------------------------


def parity_model(workdir: Path) -> tuple[CLIP2VideoModel, dict]:
    """The parity fixture's original checkpoint converted by the project's converter, and its inputs."""
    import convert_original_checkpoint

    output_dir = workdir / "parity_model"
    status = convert_original_checkpoint.main(["--checkpoint_path", str(FIXTURES / "golden_orig_state_dict.bin"),
                                               "--output_dir", str(output_dir), *FIXTURE_OPTIONS])
    if status != 0:
        raise RuntimeError(f"the converter failed on the parity fixture (exit status {status})")
    io = torch.load(FIXTURES / "golden_io.pt", weights_only=True)
    inputs = dict(input_ids=io["input_ids"], attention_mask=io["input_mask"], pixel_values=io["video"][:, 0, :, 0],
                  video_mask=io["video_mask"][:, 0])
    return CLIP2VideoModel.from_pretrained(output_dir).eval(), {"inputs": inputs, "golden": io["sim_per_video"]}


def similarity(model, inputs: dict, device: torch.device, bf16: bool = False) -> torch.Tensor:
    moved = {name: value.to(device) for name, value in inputs.items()}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        return model(**moved).logits_per_text.float().cpu()


def check_parity(model, fixture: dict, device: torch.device) -> dict:
    """The fixture's similarity on `device` (fp32, TF32 convolutions off and on) and under bf16 autocast, against the
    CPU fp32 one (itself checked against the original's golden similarity)."""
    cpu = similarity(model.to("cpu"), fixture["inputs"], torch.device("cpu"))
    model.to(device)
    with cudnn_tf32(False):
        exact = similarity(model, fixture["inputs"], device)
    with cudnn_tf32(True):
        tf32 = similarity(model, fixture["inputs"], device)
    bf16 = similarity(model, fixture["inputs"], device, bf16=True)
    spread = float(cpu.abs().max())
    return {"cpu_vs_original_max_abs_diff": float((cpu - fixture["golden"]).abs().max()),
            "fp32_max_abs_diff": float((exact - cpu).abs().max()),
            "fp32_tf32_convolutions_max_abs_diff": float((tf32 - cpu).abs().max()),
            "bf16_max_abs_diff": float((bf16 - cpu).abs().max()),
            "bf16_max_relative_diff": float((bf16 - cpu).abs().max()) / spread,
            "bf16_same_ranking": bool(torch.equal(bf16.argmax(dim=1), cpu.argmax(dim=1)))}


def training_batch(config: CLIP2VideoConfig, batch_size: int, seed: int = 0) -> dict:
    """A collated training batch as the shard DataLoader gives it: uint8 frames `(batch, frames, H, W, 3)` (the last
    video with fewer frames than the model takes), tokens with padding."""
    generator = torch.Generator().manual_seed(seed)
    size, frames, length = config.vision_config.image_size, config.num_frames, 12
    pixel_values = torch.randint(0, 256, (batch_size, frames, size, size, 3), dtype=torch.uint8, generator=generator)
    video_mask = torch.ones(batch_size, frames, dtype=torch.long)
    video_mask[-1, frames // 2 :] = 0
    pixel_values[-1, frames // 2 :] = 0
    text = config.text_config
    input_ids = torch.randint(1, text.bos_token_id, (batch_size, length), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = text.bos_token_id, text.eos_token_id
    input_ids[0, 6:] = text.pad_token_id
    input_ids[0, 5] = text.eos_token_id
    attention_mask = (input_ids != text.pad_token_id).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values,
            "video_mask": video_mask, "rows": list(range(batch_size)), "skipped": []}


def batcher_for(config: CLIP2VideoConfig) -> data_clip2video.VideoBatcher:
    """The training batcher of a model: its processor's frame size and normalisation, its frame count."""
    return data_clip2video.VideoBatcher(CLIP2VideoVideoProcessor().for_model(config))


def one_step(model, batch: dict, batcher, device: torch.device, optimizer_name: str) -> dict:
    """run_retrieval's step on `device`: uint8 frames normalised there, the gathered loss, backward, one update."""
    model = model.to(device).train()
    moved = batcher.to_device(batch, device)
    loss_fn = CLIP2VideoContrastiveLoss(model.config.center_weight)
    loss = compute_loss(model, moved, loss_fn, model.logit_scale)
    loss.backward()
    gradients = {name: parameter.grad.detach().cpu().clone() for name, parameter in model.named_parameters()
                 if parameter.grad is not None}
    optimizer = (torch.optim.SGD(model.parameters(), lr=1e-2) if optimizer_name == "sgd"
                 else torch.optim.AdamW(model.parameters(), lr=1e-4))
    optimizer.step()
    weights = {name: parameter.detach().cpu().clone() for name, parameter in model.named_parameters()}
    return {"loss": loss.item(), "gradients": gradients, "weights": weights,
            "pixel_values": moved["pixel_values"].cpu()}


def check_training_step(model, device: torch.device) -> dict:
    """One training step from the same weights and uint8 batch on the CPU and on `device` (TF32 off)."""
    state = {name: value.clone() for name, value in model.to("cpu").state_dict().items()}
    batch, batcher = training_batch(model.config, 4), batcher_for(model.config)
    result = {}
    for optimizer_name in ("sgd", "adamw"):
        runs = []
        for where in (torch.device("cpu"), device):
            model.load_state_dict(state)
            model.zero_grad(set_to_none=True)
            with cudnn_tf32(False):
                runs.append(one_step(model, batch, batcher, where, optimizer_name))
        cpu, dev = runs
        weight_diff = max(float((cpu["weights"][name] - dev["weights"][name]).abs().max()) for name in cpu["weights"])
        result[f"{optimizer_name}_weights_max_abs_diff"] = weight_diff
        if optimizer_name == "sgd":
            result["normalised_frames_max_abs_diff"] = float((cpu["pixel_values"] - dev["pixel_values"]).abs().max())
            result["loss_cpu"], result["loss_device"] = cpu["loss"], dev["loss"]
            result["loss_abs_diff"] = abs(cpu["loss"] - dev["loss"])
            result["gradient_max_relative_diff"] = max(
                float((cpu["gradients"][name] - dev["gradients"][name]).norm() / cpu["gradients"][name].norm().clamp_min(1e-30))
                for name in cpu["gradients"])
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    return result


def check_int8_search(device: torch.device, rows: int, dim: int, k: int = 10, num_queries: int = 32) -> dict:
    """The int8 scan on `device` (`torch._int_mm`) gives the CPU scan's integers, and the two-stage search (CPU) the
    float32 scan's top k on `device`."""
    generator = torch.Generator().manual_seed(3)
    vectors = torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(num_queries, dim, generator=generator), dim=1)
    codes = vector_search.quantize_int8(vectors.numpy())
    prepared = vector_search.prepare_int8(queries, codes.scales)
    codes_tensor = torch.from_numpy(codes.codes)
    cpu_scan = vector_search.scan_int8(codes_tensor, prepared)
    device_scan = torch._int_mm(codes_tensor.to(device), prepared.operand.to(device)).cpu()
    two_stage = vector_search.exact_topk([vector_search.SearchBlock(vectors.numpy(), codes)], queries, k)
    flat = torch.topk(queries.to(device) @ vectors.to(device).T, k, dim=1).indices.cpu().numpy()
    same = [set(a) == set(b) for a, b in zip(two_stage.rows.tolist(), flat.tolist())]
    return {"rows": rows, "dim": dim, "queries": num_queries, "int8_scan_equal": bool(torch.equal(cpu_scan, device_scan)),
            "same_topk_as_float32_scan": float(np.mean(same))}


# ----------------------------------------------------------------------------------------------------------------------
# Prepared shards and the input pipeline
# ----------------------------------------------------------------------------------------------------------------------


def prepare_shard_folder(workdir: Path, config: CLIP2VideoConfig, num_videos: int, seconds: int) -> Path:
    """Generated h264 videos in a videofolder, prepared by `prepare_shards.py` at the model's frames and size."""
    import prepare_shards
    from bench_decode import make_video

    folder = workdir / "videos"
    folder.mkdir(parents=True)
    make_video(str(folder / "video0.mp4"), seconds)
    data = (folder / "video0.mp4").read_bytes()
    with open(folder / "metadata.jsonl", "w") as metadata:
        for index in range(num_videos):
            if index:
                (folder / f"video{index}.mp4").write_bytes(data)
            metadata.write(json.dumps({"file_name": f"video{index}.mp4", "text": f"clip number {index}"}) + "\n")
    output = workdir / "prepared"
    prepare_shards.main(["--dataset_name", "videofolder", "--data_dir", str(folder), "--output_dir", str(output),
                         "--cache_dir", str(workdir / "cache"), "--num_frames", str(config.num_frames),
                         "--image_size", str(config.vision_config.image_size), "--feature_framerate", "1"])
    return output


def shard_loader(prepared: Path, config: CLIP2VideoConfig, num_clips: int, batch_size: int, workers: int):
    """Training batches from the prepared shards through run_retrieval's data path (uint8 frames until `to_device`)."""
    batcher = batcher_for(config)
    dataset = data_sources.load_source(str(prepared), "train")
    table = caption_table.build_caption_table(dataset, data_sources.resolve_columns(dataset), None, str(prepared),
                                              "train")
    store = data_clip2video.VideoFrameStore(table.videos, batcher.video_processor)
    batch = training_batch(config, num_clips)
    tokens = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    pairs = data_clip2video.CaptionVideoDataset(tokens, [row % table.report.num_videos for row in range(num_clips)],
                                                store)
    return torch.utils.data.DataLoader(pairs, batch_size=batch_size, num_workers=workers, drop_last=True,
                                       collate_fn=batcher.collate_pairs, pin_memory=torch.cuda.is_available(),
                                       persistent_workers=False), batcher


def input_rate(prepared: Path, config: CLIP2VideoConfig, batch_size: int, workers: int, batches: int) -> dict:
    """Clips/s of the shard DataLoader alone (after its first batch), and per worker core."""
    loader, _ = shard_loader(prepared, config, batch_size * (batches + 1), batch_size, workers)
    iterator = iter(loader)
    next(iterator)
    start, clips = time.perf_counter(), 0
    for batch in iterator:
        clips += len(batch["rows"])
    rate = clips / (time.perf_counter() - start)
    cores = max(1, min(workers, len(os.sched_getaffinity(0))))
    return {"workers": workers, "batch_size": batch_size, "clips_per_second": rate,
            "clips_per_second_per_core": rate / cores}


# ----------------------------------------------------------------------------------------------------------------------
# Training and encoding throughput
# ----------------------------------------------------------------------------------------------------------------------


def model_config(sizes: dict) -> CLIP2VideoConfig:
    """ViT-B/32-size CLIP2Video (the config's defaults) at `sizes`' frames and frame size, or a tiny one."""
    if sizes["width"] is None:
        vision = dict(image_size=sizes["image_size"], patch_size=sizes["patch_size"])
        return CLIP2VideoConfig(vision_config=vision, num_frames=sizes["frames"])
    width, layers = sizes["width"], sizes["layers"]
    text = dict(vocab_size=99, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=97, eos_token_id=98, pad_token_id=0)
    vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=2,
                  image_size=sizes["image_size"], patch_size=sizes["patch_size"])
    return CLIP2VideoConfig(text_config=text, vision_config=vision, projection_dim=width, num_frames=sizes["frames"],
                            num_temporal_layers=2)


class Trainer:
    """run_retrieval's step (`compute_loss` with the gathering loss, AdamW, `to_device` normalisation) on a model."""

    def __init__(self, config: CLIP2VideoConfig, device: torch.device, bf16: bool, checkpointing: bool):
        torch.manual_seed(0)
        self.device, self.bf16 = device, bf16
        self.model = CLIP2VideoModel(config).to(device).train()
        if checkpointing:
            self.model.activation_checkpointing_enable()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.loss_fn = CLIP2VideoContrastiveLoss(config.center_weight)
        self.batcher = batcher_for(config)

    def step(self, batch: dict) -> None:
        batch = self.batcher.to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = compute_loss(self.model, batch, self.loss_fn, self.model.logit_scale)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def compute_rate(config, device, bf16: bool, checkpointing: bool, batch_size: int, steps: int) -> dict:
    """Samples/s and peak memory of the training step on one batch resident on the device (compute only)."""
    reset_peak(device)
    trainer = Trainer(config, device, bf16, checkpointing)
    batch = {key: value.to(device) if torch.is_tensor(value) else value
             for key, value in training_batch(config, batch_size).items()}
    seconds = timed(lambda: trainer.step(batch), device, steps)
    return {"batch_size": batch_size, "samples_per_second": batch_size / seconds, "step_s": seconds,
            "peak_memory_mib": peak_memory_mib(device)}


def largest_batch_rate(config, device, bf16, checkpointing, batches, steps) -> dict:
    """`compute_rate` at the largest of `batches` that fits in the device's memory (tried from the largest)."""
    too_large = []
    for batch_size in sorted(batches, reverse=True):
        try:
            return {**compute_rate(config, device, bf16, checkpointing, batch_size, steps), "out_of_memory": too_large}
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            too_large.append(batch_size)
            reset_peak(device)
    return {"batch_size": None, "out_of_memory": too_large}


def fed_rate(config, device, prepared: Path, batch_size: int, steps: int, workers: int, compute: dict) -> dict:
    """The bf16 step fed by the shard DataLoader: samples/s, and the GPU's idle share against compute only."""
    trainer = Trainer(config, device, bf16=True, checkpointing=False)
    loader, _ = shard_loader(prepared, config, batch_size * (steps + 1), batch_size, workers)
    iterator = iter(loader)
    trainer.step(next(iterator))  # warm-up (and the workers' start)
    synchronize(device)
    start = time.perf_counter()
    count = 0
    for batch in iterator:
        trainer.step(batch)
        count += len(batch["rows"])
    synchronize(device)
    elapsed = time.perf_counter() - start
    rate = count / elapsed
    return {"batch_size": batch_size, "workers": workers, "samples_per_second": rate,
            "gpu_idle_share": max(0.0, 1 - rate / compute["samples_per_second"])}


def encoding_rates(config, device, batch_size: int, steps: int) -> dict:
    """Videos/s of `get_video_features(...).pooler_output` at the model's frames: fp16 towers, bf16 autocast."""
    torch.manual_seed(0)
    model = CLIP2VideoModel(config).to(device).eval()
    size = config.vision_config.image_size
    pixel_values = torch.randn(batch_size, config.num_frames, 3, size, size, device=device)
    video_mask = torch.ones(batch_size, config.num_frames, dtype=torch.long, device=device)
    rates = {"batch_size": batch_size}

    def encode(target, pixels, bf16=False):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return target.get_video_features(pixel_values=pixels, video_mask=video_mask).pooler_output

    rates["bf16_autocast_videos_per_second"] = batch_size / timed(lambda: encode(model, pixel_values, True), device,
                                                                  steps)
    if device.type == "cuda":  # fp16 weights: a CPU has no fast fp16 kernels
        half = model.half()
        rates["fp16_videos_per_second"] = batch_size / timed(lambda: encode(half, pixel_values.half()), device, steps)
    return rates


# ----------------------------------------------------------------------------------------------------------------------
# Search on the device
# ----------------------------------------------------------------------------------------------------------------------


def search_latency(device: torch.device, rows: int, dim: int, k: int = 10, batch: int = 1000) -> dict:
    """Exact search over `rows` random unit vectors resident on the device: float32 and fp16 products + top k, one
    query and a batch; the int8 scan (`torch._int_mm`) of a batch of 64."""
    generator = torch.Generator(device=device).manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(rows, dim, device=device, generator=generator), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(batch, dim, device=device, generator=generator), dim=1)
    result = {"rows": rows, "dim": dim, "k": k, "batch": batch}

    def scan(stored, asked):
        return torch.topk(asked @ stored.T, k, dim=1)

    result["float32_one_query_ms"] = 1e3 * timed(lambda: scan(vectors, queries[:1]), device, 10)
    result["float32_batch_s"] = timed(lambda: [scan(vectors, part) for part in queries.split(100)], device, 2)
    half = vectors.half()
    result["fp16_one_query_ms"] = 1e3 * timed(lambda: scan(half, queries[:1].half()), device, 10)
    del half
    codes = torch.clamp(torch.round(vectors * 127 / vectors.abs().amax(dim=0)), -127, 127).to(torch.int8)
    operand = torch.randint(-127, 128, (dim, 64), dtype=torch.int8, device=device)
    result["int8_scan_64_queries_ms"] = 1e3 * timed(lambda: torch._int_mm(codes, operand), device, 3)
    result["float32_64_queries_ms"] = 1e3 * timed(lambda: scan(vectors, queries[:64]), device, 3)
    return result


# ----------------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------------


class Sections:
    """Runs sections in order within their budgets; records each one's seconds and any setting left out."""

    def __init__(self, budgets: dict[str, float]):
        self.budgets, self.seconds, self.skipped, self.started = budgets, {}, [], time.perf_counter()

    @contextlib.contextmanager
    def section(self, name: str):
        self.name, self.start = name, time.perf_counter()
        yield self
        self.seconds[name] = round(time.perf_counter() - self.start, 1)

    def has_time(self, what: str) -> bool:
        if time.perf_counter() - self.start < self.budgets[self.name]:
            return True
        self.skipped.append(f"{self.name}: {what} (budget of {self.budgets[self.name]} s spent)")
        return False


def run(args) -> dict:
    sizes = {**(TINY if args.tiny else FULL)}
    for name in ("steps", "search_rows", "search_dim", "workers"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    if args.batches:
        sizes["batches"] = tuple(args.batches)
    device = torch.device(args.device)
    cores = len(os.sched_getaffinity(0))
    workers = sizes["workers"] or max(1, min(cores - 2, 12))
    config = model_config(sizes)
    summary = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "cuda": torch.version.cuda, "cpu_cores": cores,
               "model": {"vision_hidden_size": config.vision_config.hidden_size,
                         "vision_layers": config.vision_config.num_hidden_layers,
                         "patch_size": config.vision_config.patch_size, "image_size": config.vision_config.image_size,
                         "num_frames": config.num_frames, "text_hidden_size": config.text_config.hidden_size,
                         "parameters": sum(p.numel() for p in CLIP2VideoModel(config).parameters())},
               "tolerances": TOLERANCES}
    budgets = {name: seconds * (1 if device.type == "cuda" else 10) for name, seconds in SECTION_BUDGETS.items()}
    sections = Sections(budgets)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as workdir:
        workdir = Path(workdir)
        with sections.section("exactness"):
            model, fixture = parity_model(workdir)
            exactness = {"parity": check_parity(model, fixture, device),
                         "training_step": check_training_step(model, device),
                         "int8_search": check_int8_search(device, sizes["exact_rows"], sizes["search_dim"])}
            summary["exactness"] = exactness
        with sections.section("shards"):
            prepared = prepare_shard_folder(workdir, config, sizes["videos"], sizes["seconds"])
        with sections.section("input"):
            summary["input"] = input_rate(prepared, config, min(sizes["batches"]), workers, batches=4)
        with sections.section("training"):
            training = {}
            for checkpointing in (False, True):
                for precision in ("fp32", "bf16"):
                    name = f"{precision}{'_checkpointing' if checkpointing else ''}"
                    if sections.has_time(name):
                        training[name] = largest_batch_rate(config, device, precision == "bf16", checkpointing,
                                                            sizes["batches"], sizes["steps"])
            compute = training.get("bf16", {})
            if compute.get("batch_size") and sections.has_time("fed by the DataLoader"):
                fed = fed_rate(config, device, prepared, compute["batch_size"], sizes["steps"], workers, compute)
                fed["cpu_cores_needed_per_gpu"] = (compute["samples_per_second"]
                                                   / summary["input"]["clips_per_second_per_core"])
                training["bf16_fed_by_shards"] = fed
            summary["training"] = training
        with sections.section("encoding"):
            summary["encoding"] = encoding_rates(config, device, sizes["encode_batch"], sizes["steps"])
        with sections.section("search"):
            summary["search"] = search_latency(device, sizes["search_rows"], sizes["search_dim"])
    parity, step = summary["exactness"]["parity"], summary["exactness"]["training_step"]
    summary["checks"] = {
        "parity_fp32": parity["fp32_max_abs_diff"] <= TOLERANCES["parity_fp32"],
        "train_loss": step["loss_abs_diff"] <= TOLERANCES["train_loss"],
        "train_sgd_weights": step["sgd_weights_max_abs_diff"] <= TOLERANCES["train_sgd_weights"],
        "bf16_similarity": parity["bf16_max_relative_diff"] <= TOLERANCES["bf16_similarity_relative"],
        "int8_search": summary["exactness"]["int8_search"]["int8_scan_equal"]
                       and summary["exactness"]["int8_search"]["same_topk_as_float32_scan"] == 1.0}
    summary["passed"] = all(summary["checks"].values())
    summary["sections_s"], summary["skipped"] = sections.seconds, sections.skipped
    summary["total_s"] = round(time.perf_counter() - sections.started, 1)
    summary["load_average"] = os.getloadavg()
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device to check (default: the first GPU)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU run of every section in a minute)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="training batch sizes to try")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: cores - 2, at most 12)")
    parser.add_argument("--search_rows", type=int, default=None, help="vectors of the search section (default 1M)")
    parser.add_argument("--search_dim", type=int, default=None, help="their width (default 1024)")
    parser.add_argument("--json", default=None, help="also write the summary to this file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here (torch {torch.__version__}); "
                     "use --device cpu --tiny for the CPU run")
    summary = run(args)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
