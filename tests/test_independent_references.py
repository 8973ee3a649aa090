"""Expected values that do not come from the code under test: the loss and the similarities of `CLIP2VideoModel`
recomputed from the CLIP towers' own outputs with the original's formulas, a symmetric cross-entropy written out in
float64, known-value cases of the loss, and the dual softmax computed by hand."""

import math

import numpy as np
import pytest
import torch

from conftest import random_text, random_video, tiny_config
from loss_clip2video import clip2video_loss
from modeling_clip2video import CLIP2VideoModel
from retrieval_metrics import dual_softmax_rescore
from test_modeling import VARIANTS


def build(seed: int = 0, **overrides) -> CLIP2VideoModel:
    torch.manual_seed(seed)
    return CLIP2VideoModel(tiny_config(**overrides)).eval()


def batch_for(model, valid=None, seed=3):
    frames = model.config.num_frames
    valid = valid or [frames, max(1, frames // 2), 1, frames]
    ids, mask = random_text(model.config, [9, 4, 16, 2], seed)
    pixels, video_mask = random_video(model.config, valid, seed)
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, video_mask=video_mask)


def symmetric_cross_entropy_by_hand(logits: torch.Tensor) -> float:
    """InfoNCE both ways, written out in float64: mean over rows of `logsumexp(row) - diagonal`, the same over columns,
    averaged."""
    matrix = logits.detach().double().numpy()
    n = matrix.shape[0]

    def direction(m):
        return sum(math.log(sum(math.exp(v - m[i].max()) for v in m[i])) + m[i].max() - m[i, i] for i in range(n)) / n

    return (direction(matrix) + direction(matrix.T)) / 2


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def text_global_by_hand(model, ids) -> torch.Tensor:
    """`t_g`: CLIP's text embedding (projected end-of-text state), unit length — from the text tower alone."""
    return unit(model.text_projection(model.text_model(input_ids=ids).pooler_output))


def mean_pooled_video_by_hand(model, pixels, video_mask) -> torch.Tensor:
    """The original's meanP `v_g`: CLIP image embedding of each real frame, unit length, averaged, unit length."""
    videos = []
    for frames, mask in zip(pixels, video_mask):
        real = frames[mask.bool()]
        embeds = unit(model.visual_projection(model.vision_model(pixel_values=real).pooler_output))
        videos.append(unit(embeds.mean(dim=0)))
    return torch.stack(videos)


# ----------------------------------------------------------------------------------------------------------------------
# Known values
# ----------------------------------------------------------------------------------------------------------------------


def test_loss_known_values():
    n, scale = 4, 10.0
    eye, log_scale = torch.eye(n, dtype=torch.float64), torch.tensor(math.log(scale), dtype=torch.float64)
    # Perfectly separated unit embeddings: logits = s I, each row's loss log(1 + (n - 1) e^-s), both directions alike.
    perfect = math.log(1 + (n - 1) * math.exp(-scale))
    assert clip2video_loss(eye, eye, log_scale).item() == pytest.approx(perfect, rel=1e-9)
    # Every caption matched to the wrong video (a cyclic shift): the diagonal is 0, one other entry s.
    shifted = eye.roll(1, dims=0)
    wrong = math.log(math.exp(scale) + n - 1)
    assert clip2video_loss(eye, shifted, log_scale).item() == pytest.approx(wrong, rel=1e-9)
    # All embeddings equal: uniform rows, log n.
    same = torch.ones(n, 2, dtype=torch.float64) / math.sqrt(2)
    assert clip2video_loss(same, same, log_scale).item() == pytest.approx(math.log(n), rel=1e-12)
    # With TAB terms: cw * global + (1 - cw) * TAB.
    mixed = clip2video_loss(eye, eye, log_scale, 0.3, eye, shifted).item()
    assert mixed == pytest.approx(0.3 * perfect + 0.7 * wrong, rel=1e-9)


def test_dual_softmax_known_values():
    similarity = np.array([[1.0, 0.0], [0.5, 0.2]])
    t = 2.0
    # text->video: each score times the softmax of its column (over the captions)
    col0 = [math.exp(2.0) / (math.exp(2.0) + math.exp(1.0)), math.exp(1.0) / (math.exp(2.0) + math.exp(1.0))]
    col1 = [math.exp(0.0) / (math.exp(0.0) + math.exp(0.4)), math.exp(0.4) / (math.exp(0.0) + math.exp(0.4))]
    expected = np.array([[1.0 * col0[0], 0.0 * col1[0]], [0.5 * col0[1], 0.2 * col1[1]]])
    np.testing.assert_allclose(dual_softmax_rescore(similarity, t, "text_to_video"), expected, rtol=1e-12)
    # video->text: each score times the softmax of its row (over the videos)
    row0 = [math.exp(2.0) / (math.exp(2.0) + 1.0), 1.0 / (math.exp(2.0) + 1.0)]
    row1 = [math.exp(1.0) / (math.exp(1.0) + math.exp(0.4)), math.exp(0.4) / (math.exp(1.0) + math.exp(0.4))]
    expected = np.array([[1.0 * row0[0], 0.0 * row0[1]], [0.5 * row1[0], 0.2 * row1[1]]])
    np.testing.assert_allclose(dual_softmax_rescore(similarity, t, "video_to_text"), expected, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# The model against the towers and the original's formulas
# ----------------------------------------------------------------------------------------------------------------------


def test_mean_pooling_without_tab_from_the_clip_towers_alone():
    """meanP without TDB/TAB is CLIP4Clip's meanP: every number follows from the CLIP towers and the loss formula."""
    model = build(temporal_head="mean", use_tdb=False, use_tab=False).train()
    batch = batch_for(model)
    out = model(**batch, return_loss=True)
    with torch.no_grad():
        text = text_global_by_hand(model, batch["input_ids"])
        video = mean_pooled_video_by_hand(model, batch["pixel_values"], batch["video_mask"])
        logits = model.logit_scale.exp() * text @ video.T
    assert torch.allclose(out.text_global_embeds, text, atol=1e-6)
    assert torch.allclose(out.video_global_embeds, video, atol=1e-6)
    assert torch.allclose(out.logits_per_text, logits, atol=1e-5)
    assert out.loss.item() == pytest.approx(symmetric_cross_entropy_by_hand(logits), abs=1e-5)


def test_loss_without_tab_is_the_written_out_symmetric_cross_entropy():
    """The default temporal head without TAB: the loss is InfoNCE both ways on `s * t_g v_g^T`, `t_g` from the text
    tower alone, `v_g` the temporal head's output (as the original's `_similarity_TDB`)."""
    model = build(use_tab=False).train()
    batch = batch_for(model)
    out = model(**batch, return_loss=True)
    text = text_global_by_hand(model, batch["input_ids"]).detach()
    logits = model.logit_scale.exp().detach() * text @ out.video_global_embeds.detach().T
    assert torch.allclose(out.text_global_embeds, text, atol=1e-6)
    assert out.loss.item() == pytest.approx(symmetric_cross_entropy_by_hand(logits), abs=1e-5)
    assert out.loss.item() > 0.5  # not a degenerate batch


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_variants_against_the_original_similarity_and_loss(overrides):
    """Every variant: logits = s (cw t_g v_g^T + (1 - cw) t_c v_c^T) from the separate unit embeddings (not the
    concatenated retrieval vectors forward multiplies), `t_g` from the text tower, `v_g` by hand for meanP, the loss
    written out, and the one-side API (`get_*_features`, one sample at a time) reproducing the logits."""
    model = build(**overrides).train()
    config = model.config
    batch = batch_for(model)
    out = model(**batch, return_loss=True)
    scale, cw = model.logit_scale.exp().item(), config.center_weight
    tg, vg = out.text_global_embeds.detach(), out.video_global_embeds.detach()
    with torch.no_grad():
        assert torch.allclose(tg, text_global_by_hand(model, batch["input_ids"]), atol=1e-6)
        if config.temporal_head == "mean" and not config.use_tdb:
            assert torch.allclose(vg, mean_pooled_video_by_hand(model, batch["pixel_values"], batch["video_mask"]),
                                  atol=1e-6)
    for embeds in (tg, vg):
        assert torch.allclose(embeds.norm(dim=-1), torch.ones(4), atol=1e-5)
    global_logits = scale * tg @ vg.T
    if config.use_tab:
        tc, vc = out.text_alignment_embeds.detach(), out.video_alignment_embeds.detach()
        alignment_logits = scale * tc @ vc.T
        expected_logits = cw * global_logits + (1 - cw) * alignment_logits
        expected_loss = (cw * symmetric_cross_entropy_by_hand(global_logits)
                         + (1 - cw) * symmetric_cross_entropy_by_hand(alignment_logits))
    else:
        assert out.text_alignment_embeds is None and out.video_alignment_embeds is None
        expected_logits, expected_loss = global_logits, symmetric_cross_entropy_by_hand(global_logits)
    assert torch.allclose(out.logits_per_text.detach(), expected_logits, atol=1e-4)
    assert out.loss.item() == pytest.approx(expected_loss, abs=1e-4)
    # The retrieval API, one caption / one video at a time, gives the same similarity.
    with torch.no_grad():
        text = torch.cat([getattr(o, "pooler_output", o) for o in (
            model.get_text_features(batch["input_ids"][i : i + 1], batch["attention_mask"][i : i + 1])
            for i in range(4))])
        video = torch.cat([getattr(o, "pooler_output", o) for o in (
            model.get_video_features(batch["pixel_values"][i : i + 1], batch["video_mask"][i : i + 1])
            for i in range(4))])
    assert torch.allclose(scale * text @ video.T, expected_logits, atol=1e-4)
