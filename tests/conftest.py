"""Shared helpers for the tests: tiny configurations, random inputs, the fixture folder."""

import os
import shutil
import sys
from pathlib import Path

# PyAV must load its FFmpeg libraries before anything imports decord: decord's bundled ones, loaded first, break
# PyAV's libvpx-vp9 encoder (avcodec_open2 returns EINVAL), which the tests use to write videos.
import av  # noqa: F401, I001
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from configuration_clip2video import CLIP2VideoConfig  # noqa: E402

TINY_TEXT = dict(
    vocab_size=99, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
    max_position_embeddings=16, bos_token_id=97, eos_token_id=98, pad_token_id=0,
)
TINY_VISION = dict(
    hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=16,
)


def tiny_config(**overrides) -> CLIP2VideoConfig:
    """A complete CLIP2Video of ~0.5 M parameters: width 64, 2-layer towers, 32 px frames, 6 frames."""
    options = dict(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=64, num_frames=6,
                   num_temporal_layers=2, center_weight=0.3)
    options.update(overrides)
    return CLIP2VideoConfig(**options)


def random_text(config: CLIP2VideoConfig, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids `[bos, words..., eos, 0...]` with the given total lengths (bos and eos included), and their mask."""
    generator = torch.Generator().manual_seed(seed)
    text = config.text_config
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, 1 : length - 1] = torch.randint(1, text.bos_token_id, (length - 2,), generator=generator)
        ids[row, 0], ids[row, length - 1] = text.bos_token_id, text.eos_token_id
        mask[row, :length] = 1
    return ids, mask


def random_video(config: CLIP2VideoConfig, valid: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel values `(batch, num_frames, 3, H, W)` (padded frames exact zeros) and the video mask."""
    generator = torch.Generator().manual_seed(seed)
    size, frames = config.vision_config.image_size, config.num_frames
    pixels = torch.randn(len(valid), frames, 3, size, size, generator=generator)
    drift = torch.linspace(0, 1, frames).view(1, frames, 1, 1, 1)
    pixels = pixels + drift * torch.randn(len(valid), 1, 3, size, size, generator=generator)
    mask = torch.zeros(len(valid), frames, dtype=torch.long)
    for row, count in enumerate(valid):
        mask[row, :count] = 1
        pixels[row, count:] = 0
    return pixels, mask


@pytest.fixture
def fixture_dir() -> Path:
    return FIXTURES


#: CI (`.ci/run` sets CI=true, as CI services do) must run every test whose dependency the README relies on.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip a test whose system dependency is missing here; under CI fail instead, so CI cannot go green without it."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: CI must install it, see .ci/run)", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item):
    """`@pytest.mark.requires_program("ffmpeg")`: skipped without the program on PATH, a failure under CI."""
    for marker in item.iter_markers("requires_program"):
        program = marker.args[0]
        if shutil.which(program) is None:
            skip_or_fail(f"needs the {program} program")
