"""Similarity of N videos x M captions at ViT-B/32 widths: the original's evaluation loop versus feature indexing.

(a) original: for every (text batch, video batch) pair the temporal blocks (TDB, temporal transformer, TAB) run again
    on that pair's frame features and caption token states (the original `get_inference_logits`, batch 64);
(b) ours: video and caption retrieval features computed once each, then one matrix product.
Both start from the same precomputed CLIP frame features and caption token states, so only the post-CLIP cost
differs; the two similarity matrices are checked to agree. Random weights (the cost does not depend on them).

Also: the multi-caption shape (MSVD test: 670 videos x 27,763 captions, whose original loop makes ~434^2 calls; it is
timed on a sample of calls and extrapolated), and video-encoding throughput (CLIP towers + temporal blocks) in fp32 and
bf16 against a plain fp32 matmul peak measured in the same run.

    python benchmarks/bench_similarity.py                 # 1000 x 1000, as in the issue
    python benchmarks/bench_similarity.py --num_videos 256 --num_captions 256 --skip_msvd   # a quick look
"""

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from configuration_clip2video import CLIP2VideoConfig  # noqa: E402
from modeling_clip2video import CLIP2VideoModel  # noqa: E402


def timed(function, *args, repeats: int = 1):
    """Best wall time of `repeats` runs and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Plain square matmul throughput in GFLOP/s."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    seconds, _ = timed(lambda: a @ b, repeats=repeats)
    return 2 * size**3 / seconds / 1e9


class Features:
    """Precomputed CLIP outputs: frame features, caption end-of-text states and token states."""

    def __init__(self, config: CLIP2VideoConfig, num_videos: int, num_captions: int, words: int = 32, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        dim, frames = config.projection_dim, config.num_frames
        self.frames = torch.randn(num_videos, frames, dim, generator=generator)
        self.video_mask = torch.ones(num_videos, frames, dtype=torch.long)
        self.text_eot = torch.randn(num_captions, dim, generator=generator)
        self.text_tokens = torch.randn(num_captions, words, dim, generator=generator)
        lengths = torch.randint(4, words + 1, (num_captions,), generator=generator)
        self.text_mask = (torch.arange(words)[None] < lengths[:, None]).long()


def text_parts(model: CLIP2VideoModel, eot: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor):
    """`t_g`, `t_c` from CLIP text outputs (what `get_text_features` does after the text tower)."""
    return model._text_embeds_from_states(eot, tokens, mask)


def video_parts(model: CLIP2VideoModel, frames: torch.Tensor, mask: torch.Tensor):
    """`v_g`, `v_c` from frame features (what `get_video_features` does after the vision tower)."""
    return model._global_video_embeds(frames, mask), model._alignment_video_embeds(frames, mask)


def similarity_original_loop(model, data: Features, text_batches, video_batches) -> torch.Tensor:
    """The original evaluation: temporal blocks re-run for every (text batch, video batch) pair."""
    cw, scale = model.config.center_weight, model.logit_scale.exp()
    rows = []
    for t in text_batches:
        row = []
        for v in video_batches:
            t_g, t_c = text_parts(model, data.text_eot[t], data.text_tokens[t], data.text_mask[t])
            v_g, v_c = video_parts(model, data.frames[v], data.video_mask[v])
            row.append(scale * (cw * t_g @ v_g.t() + (1 - cw) * t_c @ v_c.t()))
        rows.append(torch.cat(row, dim=1))
    return torch.cat(rows)


def similarity_indexed(model, data: Features, chunk: int = 128) -> torch.Tensor:
    """Ours: retrieval features of every video and caption once, then one matmul."""
    videos = torch.cat([model._retrieval_embeds(*video_parts(model, data.frames[i : i + chunk],
                                                             data.video_mask[i : i + chunk]))
                        for i in range(0, len(data.frames), chunk)])
    texts = torch.cat([model._retrieval_embeds(*text_parts(model, data.text_eot[i : i + chunk],
                                                           data.text_tokens[i : i + chunk],
                                                           data.text_mask[i : i + chunk]))
                       for i in range(0, len(data.text_eot), chunk)])
    return model.logit_scale.exp() * texts @ videos.t()


def batches(count: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, count)) for i in range(0, count, size)]


def temporal_gflop_per_video(config: CLIP2VideoConfig) -> float:
    """Matmul FLOPs of the temporal blocks for one video (TDB attention, transformer, TAB attention and transformer)."""
    dim, frames = config.projection_dim, config.num_frames
    inter = config.text_config.intermediate_size
    per_token = 2 * (4 * dim * dim + 2 * dim * inter)  # q, k, v, out projections + MLP
    sub = math.ceil(frames / 2)
    tokens = (frames - 1) + config.num_temporal_layers * (2 * frames - 1) + (sub - 1) + (2 * sub - 1)
    return tokens * per_token / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_videos", type=int, default=1000)
    parser.add_argument("--num_captions", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=64, help="the original's batch_size_val")
    parser.add_argument("--encode_videos", type=int, default=4, help="videos for the encoding-throughput measurement")
    parser.add_argument("--skip_msvd", action="store_true", help="skip the 670 x 27,763 multi-caption shape")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    config = CLIP2VideoConfig()  # ViT-B/32 widths, 12 frames, 4 temporal layers, TDB + TAB
    model = CLIP2VideoModel(config).eval()
    peak32 = matmul_peak(torch.float32)
    floor = args.num_videos * temporal_gflop_per_video(config) / peak32
    print(f"fp32 matmul peak: {peak32:.0f} GFLOP/s; temporal blocks {temporal_gflop_per_video(config):.3f} GFLOP/video")

    with torch.inference_mode():
        data = Features(config, args.num_videos, args.num_captions)
        text_b, video_b = batches(args.num_captions, args.batch_size), batches(args.num_videos, args.batch_size)
        t_orig, s_orig = timed(similarity_original_loop, model, data, text_b, video_b)
        t_ours, s_ours = timed(similarity_indexed, model, data, repeats=2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t_bf16, s_bf16 = timed(similarity_indexed, model, data, repeats=2)
        agree = (s_orig - s_ours).abs().max().item()
        print(f"\n{args.num_videos} videos x {args.num_captions} captions ({len(text_b) * len(video_b)} original calls)")
        print(f"  (a) original loop      {t_orig:8.2f} s")
        print(f"  (b) features + matmul  {t_ours:8.2f} s   speed-up {t_orig / t_ours:6.1f}x   max |a-b| = {agree:.2e}")
        print(f"      fp32 floor {floor:.2f} s -> (b) at {t_ours / floor:.2f}x the floor")
        print(f"  (b) in bf16 autocast   {t_bf16:8.2f} s   speed-up {t_orig / t_bf16:6.1f}x   "
              f"max |a-b| = {(s_orig - s_bf16.float()).abs().max().item():.2e}")

        if not args.skip_msvd:
            videos, captions = 670, 27763
            msvd = Features(config, videos, captions, seed=1)
            text_b = batches(captions, args.batch_size)
            # the original encodes a video in the text batch holding its last caption: ~1.5 videos per call
            per_batch = videos / len(text_b)
            calls = len(text_b) ** 2
            sample = [(t, slice(0, max(1, round(per_batch)))) for t in text_b[:20]]
            start = time.perf_counter()
            for t, v in sample:
                similarity_original_loop(model, msvd, [t], [v])
            per_call = (time.perf_counter() - start) / len(sample)
            t_ours, _ = timed(similarity_indexed, model, msvd)
            print(f"\nMSVD shape: {videos} videos x {captions} captions, original ~{calls} calls of "
                  f"64 captions x ~{per_batch:.1f} videos")
            print(f"  (a) original loop      ~{per_call * calls:8.0f} s (extrapolated from {len(sample)} calls, "
                  f"{per_call * 1e3:.1f} ms each)")
            print(f"  (b) features + matmul  {t_ours:8.2f} s   speed-up ~{per_call * calls / t_ours:.0f}x")

        pixels = torch.randn(args.encode_videos, config.num_frames, 3, 224, 224)
        mask = torch.ones(args.encode_videos, config.num_frames, dtype=torch.long)
        vision = config.vision_config
        tokens = (vision.image_size // vision.patch_size) ** 2 + 1
        per_frame = 2 * tokens * vision.num_hidden_layers * (4 * vision.hidden_size**2
                                                              + 2 * vision.hidden_size * vision.intermediate_size)
        per_frame += 2 * (tokens - 1) * 3 * vision.patch_size**2 * vision.hidden_size
        video_gflop = (config.num_frames * per_frame) / 1e9 + temporal_gflop_per_video(config)
        model.get_video_features(pixels[:1], mask[:1])
        t32, _ = timed(model.get_video_features, pixels, mask, repeats=2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.get_video_features(pixels[:1], mask[:1])
            t16, _ = timed(model.get_video_features, pixels, mask, repeats=2)
        rate32 = args.encode_videos * video_gflop / t32
        print(f"\nvideo encoding ({config.num_frames} frames at 224 px, {video_gflop:.1f} GFLOP/video)")
        print(f"  fp32: {args.encode_videos / t32:.2f} videos/s = {rate32:.0f} GFLOP/s = {rate32 / peak32:.0%} of the "
              f"fp32 matmul peak")
        print(f"  bf16 autocast: {args.encode_videos / t16:.2f} videos/s ({t32 / t16:.2f}x fp32)")


if __name__ == "__main__":
    main()
