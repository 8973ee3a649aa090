import pytest

from configuration_clip2video import CLIP2VideoConfig
from conftest import TINY_TEXT, TINY_VISION, tiny_config


def test_defaults_are_the_released_msrvtt_model():
    config = CLIP2VideoConfig()
    assert (config.text_config.hidden_size, config.vision_config.hidden_size) == (512, 768)
    assert (config.vision_config.patch_size, config.vision_config.image_size) == (32, 224)
    assert config.text_config.max_position_embeddings == 77 and config.projection_dim == 512
    assert (config.num_frames, config.temporal_head, config.num_temporal_layers) == (12, "transformer", 4)
    assert (config.use_tdb, config.tdb_projection, config.use_tab, config.tab_input) == (True, "attention", True, "tdb")
    assert (config.num_centers, config.center_weight, config.original_padding) == (5, 0.5, True)
    assert config.temporal_layer_norm_eps == 1e-12
    assert config.retrieval_embed_dim == 1024
    assert CLIP2VideoConfig(use_tab=False).retrieval_embed_dim == 512


def test_round_trip(tmp_path):
    config = tiny_config(num_centers=7, tdb_projection="mlp", original_padding=False)
    config.save_pretrained(tmp_path)
    loaded = CLIP2VideoConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.text_config.hidden_size == 64 and loaded.num_centers == 7


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(num_frames=0), "num_frames"),
        (dict(num_frames=17), "num_frames"),  # more than the 16 frame positions of the tiny text tower
        (dict(num_frames=2.5), "num_frames"),
        (dict(temporal_head="lstm"), "temporal_head"),
        (dict(num_temporal_layers=0), "num_temporal_layers"),
        (dict(tdb_projection="sigmoid_selfA"), "tdb_projection"),
        (dict(tab_input="TAB_TDB"), "tab_input"),
        (dict(num_centers=0), "num_centers"),
        (dict(center_weight=1.5), "center_weight"),
        (dict(center_weight="half"), "center_weight"),
        (dict(use_tdb="yes"), "use_tdb"),
        (dict(original_padding=1), "original_padding"),
        (dict(temporal_layer_norm_eps=0.0), "temporal_layer_norm_eps"),
        (dict(projection_dim=32), "projection_dim"),
        (dict(temporal_head="mean"), "use_tdb"),  # TDB needs the transformer head
        (dict(use_tdb=False), "tab_input"),  # TAB's default input shares the TDB
        (dict(temporal_head="mean", use_tdb=False, tab_input="plain"), "tab_input"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


def test_valid_variants_construct():
    tiny_config(temporal_head="mean", use_tdb=False, use_tab=False)
    tiny_config(temporal_head="mean", use_tdb=False, tab_input="none")
    tiny_config(use_tdb=False, tab_input="plain")
    tiny_config(use_tab=False, tab_input="tdb", use_tdb=False)  # tab_input is irrelevant without TAB


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(vision_config={**TINY_VISION, "hidden_size": -32}), "vision_config.hidden_size"),
        (dict(vision_config={**TINY_VISION, "patch_size": 0}), "vision_config.patch_size"),
        (dict(vision_config={**TINY_VISION, "patch_size": 64}), "vision_config.patch_size"),  # larger than the image
        (dict(vision_config={**TINY_VISION, "num_hidden_layers": 0}), "vision_config.num_hidden_layers"),
        (dict(text_config={**TINY_TEXT, "vocab_size": -1}), "text_config.vocab_size"),
        (dict(text_config={**TINY_TEXT, "intermediate_size": 0}), "text_config.intermediate_size"),
        (dict(text_config={**TINY_TEXT, "layer_norm_eps": -1.0}), "text_config.layer_norm_eps"),
        (dict(num_temporal_layers=1_000_000_000), "num_temporal_layers"),  # built for hours before
        (dict(num_centers=10**9), "num_centers"),
        (dict(logit_scale_init_value=float("nan")), "logit_scale_init_value"),
        (dict(initializer_range=-1.0), "initializer_range"),
        (dict(temporal_layer_norm_eps=float("inf")), "temporal_layer_norm_eps"),
    ],
)
def test_tower_sizes_and_upper_bounds_raise_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(**overrides)


def test_sizes_giving_an_absurd_model_are_refused_before_building_it():
    wide = {**TINY_VISION, "hidden_size": 16384, "intermediate_size": 65536, "num_hidden_layers": 256,
            "num_attention_heads": 16}
    with pytest.raises(ValueError, match="B parameters"):
        tiny_config(vision_config=wide)
    assert 150e6 < CLIP2VideoConfig().estimated_num_parameters() < 190e6  # ViT-B/32 CLIP2Video: ~170 M


def test_a_config_json_with_a_huge_layer_count_fails_fast_at_load(tmp_path):
    import json
    import time

    from modeling_clip2video import CLIP2VideoModel

    tiny_config().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "num_temporal_layers": 1_000_000_000}))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="num_temporal_layers"):
        CLIP2VideoModel.from_pretrained(tmp_path)
    assert time.perf_counter() - start < 30
