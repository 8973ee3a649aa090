import pytest

from configuration_clip2video import CLIP2VideoConfig
from conftest import tiny_config


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
