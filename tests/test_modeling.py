import os

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from conftest import TINY_TEXT, TINY_VISION, random_text, random_video, tiny_config
from loss_clip2video import clip2video_loss
from modeling_clip2video import CLIP2VideoModel


def build(seed: int = 0, **overrides) -> CLIP2VideoModel:
    torch.manual_seed(seed)
    return CLIP2VideoModel(tiny_config(**overrides)).eval()


def inputs(model, text_lengths=(9, 4, 16, 2), valid=(6, 3, 1, 2), seed=0):
    ids, mask = random_text(model.config, list(text_lengths), seed)
    pixels, video_mask = random_video(model.config, list(valid), seed)
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, video_mask=video_mask)


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_logits_are_the_scaled_dot_product_of_retrieval_features():
    model = build()
    batch = inputs(model)
    with torch.no_grad():
        out = model(**batch)
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
        video = model.get_video_features(batch["pixel_values"], batch["video_mask"]).pooler_output
    scale, cw = model.logit_scale.exp(), model.config.center_weight
    assert text.shape == video.shape == (4, 2 * model.config.projection_dim)
    assert max_diff(out.logits_per_text, scale * text @ video.t()) < 1e-5
    # the mixture of the two similarities of the paper, from the separate unit embeddings
    mixed = scale * (cw * out.text_global_embeds @ out.video_global_embeds.t()
                     + (1 - cw) * out.text_alignment_embeds @ out.video_alignment_embeds.t())
    assert max_diff(out.logits_per_text, mixed) < 1e-5
    assert torch.allclose(out.logits_per_video, out.logits_per_text.t())
    for embeds in (out.text_global_embeds, out.video_global_embeds, out.text_alignment_embeds, text, video):
        assert torch.allclose(embeds.norm(dim=-1), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize("original_padding", [True, False])
def test_feature_methods_follow_transformers_v5_output_convention(original_padding):
    """As CLIPModel.get_text_features / XCLIPModel.get_video_features: a BaseModelOutputWithPooling whose pooler_output
    is the retrieval vector, the tower's states, hidden states / attentions on request, a tuple with return_dict=False."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    model = build(original_padding=original_padding)
    batch = inputs(model)
    config = model.config
    with torch.no_grad():
        out = model(**batch)
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"])
        video = model.get_video_features(batch["pixel_values"], batch["video_mask"])
        tower = model.text_model(input_ids=batch["input_ids"]).last_hidden_state
        text_tuple = model.get_text_features(batch["input_ids"], batch["attention_mask"], return_dict=False)
        video_tuple = model.get_video_features(batch["pixel_values"], batch["video_mask"], return_dict=False)
        model.set_attn_implementation("eager")  # SDPA kernels return no attention weights (as in transformers)
        text_all = model.get_text_features(batch["input_ids"], output_hidden_states=True, output_attentions=True)
        video_all = model.get_video_features(batch["pixel_values"], batch["video_mask"], output_hidden_states=True,
                                             output_attentions=True)
    assert isinstance(text, BaseModelOutputWithPooling) and isinstance(video, BaseModelOutputWithPooling)
    assert torch.equal(text.pooler_output, out.text_embeds) and torch.equal(video.pooler_output, out.video_embeds)
    assert text.hidden_states is None and text.attentions is None and video.hidden_states is None
    assert torch.equal(text.last_hidden_state, tower)
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + 1
    frames_shape = (4, config.num_frames, patches, config.vision_config.hidden_size)
    assert video.last_hidden_state.shape == frames_shape
    padded = batch["video_mask"] == 0
    assert (video.last_hidden_state[padded].abs().sum() == 0) == (not original_padding)
    assert isinstance(text_tuple, tuple) and torch.equal(text_tuple[1], text.pooler_output)
    assert isinstance(video_tuple, tuple) and torch.equal(video_tuple[1], video.pooler_output)
    layers = config.text_config.num_hidden_layers
    assert len(text_all.hidden_states) == layers + 1 and len(text_all.attentions) == layers
    assert torch.equal(text_all.hidden_states[0], model.text_model.embeddings(input_ids=batch["input_ids"]))
    layers = config.vision_config.num_hidden_layers
    assert len(video_all.hidden_states) == layers + 1 and len(video_all.attentions) == layers
    assert video_all.hidden_states[-1].shape == frames_shape
    assert video_all.attentions[0].shape[:3] == (4, config.num_frames, config.vision_config.num_attention_heads)
    assert torch.allclose(video_all.pooler_output, video.pooler_output, atol=1e-6)


def test_loss_is_the_original_weighted_symmetric_cross_entropy():
    model = build().train()
    batch = inputs(model)
    out = model(**batch, return_loss=True)
    scale, cw = model.logit_scale.exp(), model.config.center_weight

    def symmetric(logits):
        return -(logits.log_softmax(1).diag().mean() + logits.log_softmax(0).diag().mean()) / 2

    expected = (cw * symmetric(scale * out.text_global_embeds @ out.video_global_embeds.t())
                + (1 - cw) * symmetric(scale * out.text_alignment_embeds @ out.video_alignment_embeds.t()))
    assert abs(out.loss.item() - expected.item()) < 1e-5
    out.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), "every parameter gets a gradient"
    for name in ("logit_scale", "temporal_alignment_block.center_weights", "temporal_alignment_block.center_embeds",
                 "temporal_difference_block.type_embeddings.weight", "frame_position_embeddings.weight",
                 "temporal_transformer.layers.1.mlp.fc2.weight", "vision_model.embeddings.patch_embedding.weight"):
        assert grads[name].abs().sum() > 0, name


def test_loss_without_tab_is_the_global_symmetric_cross_entropy():
    model = build(use_tab=False).train()
    out = model(**inputs(model), return_loss=True)
    assert out.text_alignment_embeds is None and out.text_embeds.shape[-1] == model.config.projection_dim
    expected = clip2video_loss(out.text_global_embeds, out.video_global_embeds, model.logit_scale)
    assert abs(out.loss.item() - expected.item()) < 1e-6
    out.loss.backward()


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    reference = build().train()
    checkpointed = build().train()
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.temporal_transformer.layers[0].gradient_checkpointing
    batch = inputs(reference)
    losses = []
    for model in (reference, checkpointed):
        loss = model(**batch, return_loss=True).loss
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-6
    for (name, a), (_, b) in zip(reference.named_parameters(), checkpointed.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_a_video_does_not_depend_on_its_batch_mates():
    model = build()
    batch = inputs(model, valid=(6, 3, 1, 2))
    with torch.no_grad():
        together = model.get_video_features(batch["pixel_values"], batch["video_mask"]).pooler_output
        alone = torch.cat([model.get_video_features(batch["pixel_values"][i : i + 1],
                                                    batch["video_mask"][i : i + 1]).pooler_output for i in range(4)])
    assert max_diff(together, alone) < 1e-5


def test_original_padding_leaks_padding_and_the_fix_does_not():
    valid, frames = 3, 6
    for original in (True, False):
        model = build(original_padding=original)
        pixels, mask = random_video(model.config, [valid])
        with torch.no_grad():
            padded = model.get_video_features(pixels, mask).pooler_output
            unpadded = model.get_video_features(pixels[:, :valid], mask[:, :valid]).pooler_output
            junk = pixels.clone()
            junk[:, valid:] = torch.randn_like(junk[:, valid:])
            junk_padded = model.get_video_features(junk, mask).pooler_output
        if original:  # the boundary difference token sees the encoded zero frame (as in the original's TDB, `modules/modeling.py`)
            assert max_diff(padded, unpadded) > 1e-3
        else:
            assert max_diff(padded, unpadded) < 1e-5
            assert max_diff(padded, junk_padded) < 1e-6  # padded frames are never encoded


def test_videos_without_any_valid_frame_are_refused():
    model = build()
    pixels, mask = random_video(model.config, [4, 2])
    mask[1] = 0
    with pytest.raises(ValueError, match=r"videos \[1\].*no valid frame"):
        model.get_video_features(pixels, mask)
    with pytest.raises(ValueError, match="pixel_values"):
        model.get_video_features(pixels[0], mask)


VARIANTS = [
    dict(temporal_head="mean", use_tdb=False, use_tab=False),
    dict(temporal_head="mean", use_tdb=False, tab_input="none"),
    dict(use_tdb=False, use_tab=False),
    dict(use_tdb=False, tab_input="plain"),
    dict(tdb_projection="mlp"),
    dict(tdb_projection="none", tab_input="plain"),
    dict(tab_input="none", center_weight=0.0),
    dict(num_frames=1),
    dict(num_frames=2, num_centers=1, center_weight=1.0),
    dict(num_frames=16, num_temporal_layers=3, original_padding=False),
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_variants_train_and_index(overrides):
    model = build(**overrides).train()
    frames = model.config.num_frames
    batch = inputs(model, valid=[frames, max(1, frames // 2), 1, frames])
    out = model(**batch, return_loss=True)
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits_per_text).all()
    out.loss.backward()
    assert out.text_embeds.shape == (4, model.config.retrieval_embed_dim)
    scale = model.logit_scale.exp()
    assert max_diff(out.logits_per_text, scale * out.text_embeds @ out.video_embeds.t()) < 1e-4


def tiny_clip(seed=0) -> CLIPModel:
    torch.manual_seed(seed)
    config = CLIPConfig(text_config=TINY_TEXT, vision_config=TINY_VISION, projection_dim=64)
    clip = CLIPModel(config)
    with torch.no_grad():
        for p in clip.parameters():  # no parameter equals its default initialisation
            p.add_(torch.randn_like(p) * 0.05)
    return clip


@pytest.mark.parametrize("tdb_projection", ["attention", "mlp"])
def test_from_clip_copies_clip_and_initialises_the_temporal_blocks_like_the_original(tmp_path, tdb_projection):
    clip = tiny_clip()
    clip.save_pretrained(tmp_path)
    torch.manual_seed(1)
    model = CLIP2VideoModel.from_clip(str(tmp_path), num_frames=6, num_temporal_layers=3, tdb_projection=tdb_projection,
                                      num_centers=50)
    own = model.state_dict()
    for name, tensor in clip.state_dict().items():
        assert torch.equal(own[name], tensor), name
    text_positions = clip.text_model.embeddings.position_embedding.weight
    assert torch.equal(model.frame_position_embeddings.weight, text_positions)
    assert torch.equal(model.temporal_difference_block.type_embeddings.weight, text_positions[:2])
    text_layers = clip.text_model.encoder.layers
    for index in range(2):  # the temporal transformer's first layers are the text layers
        for (name, a), (_, b) in zip(model.temporal_transformer.layers[index].named_parameters(),
                                     text_layers[index].named_parameters()):
            assert torch.equal(a, b), (index, name)
    for a, b in zip(model.temporal_alignment_block.frame_encoder.layers[0].parameters(), text_layers[0].parameters()):
        assert torch.equal(a, b)
    tdb = model.temporal_difference_block
    if tdb_projection == "attention":
        for a, b in zip(tdb.difference_attention.layers[0].parameters(), text_layers[0].parameters()):
            assert torch.equal(a, b)
    else:
        assert torch.equal(tdb.difference_projection.weight, clip.visual_projection.weight[:, :64])
    assert torch.equal(tdb.difference_layer_norm.weight, torch.ones(64))
    assert torch.equal(tdb.difference_layer_norm.bias, torch.zeros(64))
    # the third temporal layer has no text counterpart (2 text layers): it keeps a fresh initialisation
    assert not torch.equal(model.temporal_transformer.layers[2].mlp.fc1.weight, text_layers[1].mlp.fc1.weight)
    centers = model.temporal_alignment_block.center_weights
    assert 0.11 < centers.std().item() < 0.14 and abs(centers.mean().item()) < 0.02
    assert model.temporal_transformer.layers[0].layer_norm1.eps == 1e-12
    # and the CLIP similarity machinery is intact: frame features equal CLIP's image embeddings
    pixels, mask = random_video(model.config, [6])
    with torch.no_grad():
        frames = model(input_ids=random_text(model.config, [5])[0], pixel_values=pixels, video_mask=mask).frame_embeds
        expected = clip.get_image_features(pixel_values=pixels[0]).pooler_output
    assert max_diff(frames[0], expected) < 1e-5


def test_save_and_load_round_trip(tmp_path):
    model = build(tdb_projection="mlp", num_centers=3)
    batch = inputs(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "modeling_clip2video.py").is_file()
    loaded = CLIP2VideoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits_per_text, loaded(**batch).logits_per_text)


def test_sdpa_and_eager_attention_agree_and_switch_together():
    model = build()
    batch = inputs(model)
    assert model.temporal_transformer.layers[0].self_attn.config._attn_implementation == "sdpa"
    with torch.no_grad():
        sdpa = model(**batch).logits_per_text
        model.set_attn_implementation("eager")
        assert model.temporal_transformer.layers[0].self_attn.config._attn_implementation == "eager"
        eager = model(**batch).logits_per_text
    assert max_diff(sdpa, eager) < 1e-5


def test_bf16_autocast_and_low_precision_towers_stay_close():
    model = build()
    batch = inputs(model)
    with torch.no_grad():
        reference = model(**batch).logits_per_text
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(**batch).logits_per_text
        model.cast_clip_towers(torch.bfloat16)
        assert model.vision_model.encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
        assert model.vision_model.encoder.layers[0].layer_norm1.weight.dtype == torch.float32
        assert model.temporal_transformer.layers[0].mlp.fc1.weight.dtype == torch.float32
        low = model(**batch).logits_per_text
    assert low.dtype == torch.float32
    assert 0 < max_diff(reference, autocast) < 0.3 and 0 < max_diff(reference, low) < 0.3


def test_temporal_mlp_equals_clips_quick_gelu_mlp():
    from transformers.models.clip.modeling_clip import CLIPMLP

    model = build()
    fused = model.temporal_transformer.layers[0].mlp
    assert type(fused).__name__ == "CLIP2VideoQuickGELUMLP"
    reference = CLIPMLP(fused.config)
    reference.load_state_dict(fused.state_dict())
    hidden = torch.randn(3, 11, model.config.projection_dim) * 3
    with torch.no_grad():
        assert max_diff(fused(hidden), reference(hidden)) < 1e-5
    assert set(fused.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


@pytest.mark.parametrize("cpu_bytes", [0, 600_000], ids=["all-on-disk", "cpu-and-disk"])
def test_offloaded_model_gives_the_outputs_of_the_plain_model(tmp_path, cpu_bytes):
    """`from_pretrained(..., device_map="auto", max_memory=..., offload_folder=...)`: accelerate's hooks load each
    module's weights only inside its own forward, so every parameter must be read there."""
    model = build()
    batch = inputs(model)
    model.save_pretrained(tmp_path / "model")
    offloaded = CLIP2VideoModel.from_pretrained(tmp_path / "model", device_map="auto", max_memory={"cpu": cpu_bytes},
                                                offload_folder=tmp_path / "offload").eval()
    placement = set(offloaded.hf_device_map.values())
    assert "disk" in placement and (cpu_bytes == 0 or "cpu" in placement)
    assert offloaded.temporal_transformer.layers[0].mlp.fc1.weight.is_meta  # really offloaded
    with torch.no_grad():
        expected = model(**batch)
        got = offloaded(**batch)
        video = offloaded.get_video_features(batch["pixel_values"], batch["video_mask"]).pooler_output
    assert max_diff(got.logits_per_text, expected.logits_per_text) < 1e-5
    assert max_diff(got.loss, expected.loss) < 1e-5
    assert max_diff(video, expected.video_embeds) < 1e-6


def test_missing_weights_get_the_initialisation_of_a_fresh_model():
    """Weights absent from a checkpoint are initialised as `__init__` does: `logit_scale` from the config, the CLIP
    towers with CLIP's initialisation (not the generic N(0, 0.02)); the loaded weights are kept."""
    model = build(logit_scale_init_value=1.5)
    dropped = ("logit_scale", "vision_model.encoder.layers.0.", "text_model.encoder.layers.1.mlp.")
    state = {key: value for key, value in model.state_dict().items() if not key.startswith(dropped)}
    loaded = CLIP2VideoModel.from_pretrained(None, config=model.config, state_dict=state)
    assert loaded.logit_scale.item() == pytest.approx(1.5)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    vision, text = model.config.vision_config, model.config.text_config
    # CLIP's std for fc1 is (2 * width) ** -0.5, for q_proj width ** -0.5 * (2 * layers) ** -0.5
    for weight, std in [
        (loaded.vision_model.encoder.layers[0].mlp.fc1.weight, (2 * vision.hidden_size) ** -0.5),
        (loaded.vision_model.encoder.layers[0].self_attn.q_proj.weight,
         vision.hidden_size**-0.5 * (2 * vision.num_hidden_layers) ** -0.5),
        (loaded.text_model.encoder.layers[1].mlp.fc1.weight, (2 * text.hidden_size) ** -0.5),
    ]:
        assert abs(weight.std().item() - std) < 0.1 * std and abs(std - 0.02) > 0.3 * std
    empty = CLIP2VideoModel.from_pretrained(None, config=model.config, state_dict={})
    assert empty.logit_scale.item() == pytest.approx(1.5)
    assert all(torch.isfinite(p).all() for p in empty.parameters())


def test_forward_returns_tower_attentions_and_hidden_states_and_refuses_unknown_arguments():
    model = build()
    model.set_attn_implementation("eager")
    batch = inputs(model)
    with torch.no_grad():
        plain = model(**batch)
        out = model(**batch, output_attentions=True, output_hidden_states=True)
        as_tuple = model(**batch, return_dict=False)
    assert plain.text_model_output.attentions is None and plain.vision_model_output.hidden_states is None
    text, vision = model.config.text_config, model.config.vision_config
    assert len(out.text_model_output.attentions) == text.num_hidden_layers
    assert len(out.text_model_output.hidden_states) == text.num_hidden_layers + 1
    assert len(out.vision_model_output.attentions) == vision.num_hidden_layers
    assert out.vision_model_output.hidden_states[0].shape[:2] == (4, model.config.num_frames)
    assert torch.allclose(out.logits_per_text, plain.logits_per_text)
    assert torch.equal(as_tuple[0], plain.loss) and torch.equal(as_tuple[1], plain.logits_per_text)
    with pytest.raises(TypeError, match="foo_bar"):
        model(**batch, foo_bar=1)
    with pytest.raises(TypeError, match="output_attention"):
        model.get_text_features(batch["input_ids"], output_attention=True)
    with pytest.raises(TypeError, match="videomask"):
        model.get_video_features(batch["pixel_values"], videomask=batch["video_mask"])


def test_loss_by_default_for_paired_batches_only():
    """`return_loss` defaults to True (transformers.Trainer reads that default); a batch of N captions and M != N
    videos is a plain similarity query and gets no loss."""
    model = build()
    batch = inputs(model)
    with torch.no_grad():
        assert model(**batch).loss is not None and model(**batch, return_loss=False).loss is None
        unpaired = model(input_ids=batch["input_ids"][:3], attention_mask=batch["attention_mask"][:3],
                         pixel_values=batch["pixel_values"], video_mask=batch["video_mask"])
    assert unpaired.loss is None and unpaired.logits_per_text.shape == (3, 4)


class PairDataset(torch.utils.data.Dataset):
    """Caption `i` with video `i`, one dict of tensors per pair (what the processor gives for one pair)."""

    def __init__(self, config, size: int, seed: int):
        ids, mask = random_text(config, [2 + (i % 7) for i in range(size)], seed)
        pixels, video_mask = random_video(config, [1 + (i % config.num_frames) for i in range(size)], seed)
        self.rows = [dict(input_ids=ids[i], attention_mask=mask[i], pixel_values=pixels[i], video_mask=video_mask[i])
                     for i in range(size)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def test_trainer_trains_evaluates_and_predicts_with_a_stock_collator(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = build().train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train, evaluation = PairDataset(model.config, 8, seed=0), PairDataset(model.config, 6, seed=1)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=3,
                             gradient_accumulation_steps=2, max_steps=6, learning_rate=2e-3, warmup_steps=0,
                             logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation)  # default_data_collator
    assert trainer.can_return_loss and not trainer.model_accepts_loss_kwargs
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    for name in ("logit_scale", "temporal_transformer.layers.0.mlp.fc1.weight", "vision_model.embeddings.class_embedding",
                 "temporal_alignment_block.center_weights", "text_projection.weight"):
        assert not torch.equal(dict(model.named_parameters())[name], before[name]), name

    metrics = trainer.evaluate()
    model.eval()
    batches = [torch.utils.data.default_collate([evaluation[i] for i in range(s, s + 3)]) for s in (0, 3)]
    with torch.no_grad():
        outputs = [model(**batch) for batch in batches]
    assert metrics["eval_loss"] == pytest.approx(sum(o.loss.item() for o in outputs) / 2, rel=1e-5)
    prediction = trainer.predict(evaluation)
    # the outputs after the loss, without the towers' per-layer states (config.keys_to_ignore_at_inference)
    assert len(prediction.predictions) == 9
    logits_per_text = prediction.predictions[0]
    assert logits_per_text.shape == (6, 3)
    expected = torch.cat([o.logits_per_text for o in outputs]).numpy()
    assert abs(logits_per_text - expected).max() < 1e-5


class _Features(torch.nn.Module):
    """`get_video_features` / `get_text_features` as a module returning the retrieval vector (for compile / export)."""

    def __init__(self, model, side: str):
        super().__init__()
        self.model, self.side = model, side

    def forward(self, values, mask):
        if self.side == "video":
            return self.model.get_video_features(values, mask).pooler_output
        return self.model.get_text_features(values, mask).pooler_output


@pytest.mark.parametrize("side,original_padding", [("video", False), ("video", True), ("text", True)])
def test_feature_methods_compile_in_one_graph_and_export(side, original_padding):
    """torch.compile(fullgraph=True) and torch.export trace the feature methods without a data-dependent guard; the
    no-valid-frame check stays a ValueError in eager mode and becomes a runtime assertion in the graphs."""
    torch._dynamo.reset()
    model = build(original_padding=original_padding)
    batch = inputs(model, valid=(6, 3, 1, 2))
    args = (batch["pixel_values"], batch["video_mask"]) if side == "video" else (batch["input_ids"],
                                                                                batch["attention_mask"])
    module = _Features(model, side)
    with torch.no_grad():
        expected = module(*args)
        compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
        program = torch.export.export(module, args)
        exported = program.module()
        assert max_diff(compiled(*args), expected) < 1e-6
        assert max_diff(exported(*args), expected) < 1e-6
        # no frame selection by a boolean mask in a graph (a data-dependent frame count, which inductor fails on)
        assert not [node for node in program.graph.nodes if node.target is torch.ops.aten.index.Tensor
                    and any(getattr(index, "meta", {}).get("val", torch.empty(0)).dtype == torch.bool
                            for index in node.args[1] if index is not None)]
        if side == "video":
            empty = batch["video_mask"].clone()
            empty[2] = 0
            with pytest.raises(ValueError, match=r"videos \[2\].*no valid frame"):
                module(args[0], empty)
            for graph in (compiled, exported):
                with pytest.raises(RuntimeError):  # torch._check_tensor_all in the graph
                    graph(args[0], empty)


def test_readme_trainer_example_runs_as_written(tmp_path):
    """The README's "Using with Trainer" block, run unchanged in a fresh interpreter (the tokenizer folder linked in)."""
    import ast
    import math
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    section = (root / "README.md").read_text().split("## Using with Trainer", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "clip_tokenizer").symlink_to(root / "clip_tokenizer")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert math.isfinite(metrics["eval_loss"]) and metrics["epoch"] == 2.0
    assert (tmp_path / "clip2video-trainer").is_dir()


def test_a_checkpoint_tensor_of_the_wrong_shape_is_a_typed_error_naming_it(tmp_path):
    from safetensors.torch import load_file, save_file

    from modeling_clip2video import CheckpointMismatchError

    build().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["temporal_alignment_block.center_weights"] = torch.zeros(7, 64)  # the config says 5 centers
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError, match=r"center_weights \(checkpoint \(7, 64\), config \(5, 64\)\)"):
        CLIP2VideoModel.from_pretrained(tmp_path)
    model, info = CLIP2VideoModel.from_pretrained(tmp_path, ignore_mismatched_sizes=True, output_loading_info=True)
    assert [key for key, *_ in info["mismatched_keys"]] == ["temporal_alignment_block.center_weights"]
