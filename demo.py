"""Quick-start demo: a small CLIP2Video built from scratch encodes two synthetic videos and three captions.

It shows the retrieval API (`get_text_features` / `get_video_features`), checks that the scaled dot product of those
features is exactly the model's similarity, and prints the similarity matrix. The weights are random, so the numbers
mean nothing yet; the training script trains this kind of model on the synthetic benchmark.

    python demo.py
"""

import logging

import torch

from configuration_clip2video import CLIP2VideoConfig
from modeling_clip2video import CLIP2VideoModel

logger = logging.getLogger("demo")

WORDS = ["<pad>", "a", "red", "square", "moves", "from", "left", "to", "right", "blue", "circle", "<start>", "<end>"]
CAPTIONS = ["a red square moves from left to right", "a red square moves from right to left", "a blue circle"]


def tokenize(captions: list[str], length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy word-level tokenizer: `<start> words <end>` padded with 0 (the real processor uses CLIP's BPE)."""
    ids = torch.zeros(len(captions), length, dtype=torch.long)
    for row, caption in enumerate(captions):
        tokens = [WORDS.index("<start>"), *(WORDS.index(w) for w in caption.split()), WORDS.index("<end>")]
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids, (ids != 0).long()


def moving_square(num_frames: int, size: int, left_to_right: bool) -> torch.Tensor:
    """`(num_frames, 3, size, size)` frames of a red square crossing a grey background."""
    frames = torch.full((num_frames, 3, size, size), -0.5)
    side = size // 4
    for index in range(num_frames):
        step = index if left_to_right else num_frames - 1 - index
        x = round(step * (size - side) / max(num_frames - 1, 1))
        frames[index, :, size // 2 - side // 2 : size // 2 + side // 2, x : x + side] = torch.tensor([1.5, -1.0, -1.0])[
            :, None, None]
    return frames


def build_model() -> CLIP2VideoModel:
    """The demo's model: TDB and TAB on, 8 frames of 32 px, 64-wide 2-layer towers, random weights (seed 0)."""
    torch.manual_seed(0)
    config = CLIP2VideoConfig(
        text_config=dict(vocab_size=len(WORDS), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=WORDS.index("<start>"),
                         eos_token_id=WORDS.index("<end>"), pad_token_id=0),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=64, num_frames=8, num_temporal_layers=2,
    )
    return CLIP2VideoModel(config).eval()


def demo_inputs() -> dict[str, torch.Tensor]:
    """The three captions and two videos: a square moving left to right (8 frames), and right to left (6 frames
    followed by 2 padded all-zero frames, masked out)."""
    ids, mask = tokenize(CAPTIONS)
    short = torch.cat([moving_square(6, 32, False), torch.zeros(2, 3, 32, 32)])
    videos = torch.stack([moving_square(8, 32, True), short])  # (videos, frames, 3, H, W)
    video_mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2])
    return dict(input_ids=ids, attention_mask=mask, pixel_values=videos, video_mask=video_mask)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = build_model()
    config = model.config
    logger.info("CLIP2Video with %.2f M parameters (TDB %s, TAB %s, %d frames)",
                sum(p.numel() for p in model.parameters()) / 1e6, config.use_tdb, config.use_tab, config.num_frames)

    inputs = demo_inputs()
    with torch.no_grad():
        text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output  # (3, 2 * 64)
        video = model.get_video_features(inputs["pixel_values"], inputs["video_mask"]).pooler_output  # (2, 2 * 64)
        output = model(**inputs)
    indexed = model.logit_scale.exp() * text @ video.t()
    logger.info("retrieval features: text %s, video %s; |index - forward| = %.1e", tuple(text.shape),
                tuple(video.shape), (indexed - output.logits_per_text).abs().max().item())
    logger.info("similarity (captions x videos, random weights):")
    for caption, row in zip(CAPTIONS, output.logits_per_text.tolist()):
        logger.info("  %-40s %s", caption, "  ".join(f"{value:7.3f}" for value in row))


if __name__ == "__main__":
    main()
