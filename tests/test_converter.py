"""Converter CLI: options, presets, strictness and error messages."""

import pickle
import subprocess
import sys

import pytest
import torch

import convert_original_checkpoint as converter
from conftest import FIXTURES, REPO_ROOT

OPTIONS = ["--center_weight", "0.3", "--cross_num_hidden_layers", "2"]


@pytest.fixture(scope="module")
def original_state():
    return torch.load(FIXTURES / "golden_orig_state_dict.bin", weights_only=True)


def run_cli(tmp_path, state_or_path, *options):
    if isinstance(state_or_path, dict):
        path = tmp_path / "pytorch_model.bin.2"
        torch.save(state_or_path, path)
    else:
        path = state_or_path
    return converter.main(["--checkpoint_path", str(path), "--output_dir", str(tmp_path / "out"), *options])


def test_help_documents_every_option():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "convert_original_checkpoint.py"), "--help"],
                            capture_output=True, text=True, check=True)
    for option in ("--checkpoint_path", "--output_dir", "--preset", "--max_frames", "--sim_type", "--temporal_type",
                   "--temporal_proj", "--center_type", "--centerK", "--center_weight", "--center_proj",
                   "--cross_num_hidden_layers", "msrvtt", "sigmoid_selfA", "TAB_TDB"):
        assert option in result.stdout, option


def test_presets_and_overrides():
    args = converter.build_parser().parse_args(["--checkpoint_path", "x", "--output_dir", "y", "--preset", "vatex"])
    assert converter.options_from_args(args).centerK == 7
    args = converter.build_parser().parse_args(
        ["--checkpoint_path", "x", "--output_dir", "y", "--preset", "vatex", "--centerK", "3", "--temporal_proj", ""])
    options = converter.options_from_args(args)
    assert (options.centerK, options.temporal_proj) == (3, "")
    assert converter.config_kwargs_from_options(options)["tdb_projection"] == "none"


def test_module_prefix_and_fp16_tensors_are_accepted(tmp_path, original_state):
    assert original_state["clip.visual.proj"].dtype == torch.float16  # as the original saves them
    prefixed = {"module." + key: value for key, value in original_state.items()}
    assert run_cli(tmp_path, prefixed, *OPTIONS) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "configuration_clip2video.py").is_file()
    config = (tmp_path / "out" / "config.json").read_text()
    assert '"AutoModel": "modeling_clip2video.CLIP2VideoModel"' in config and '"float16"' not in config
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "trust_remote_code=True" in card
    assert "pytorch_model.bin.2" in card and "center weight 0.3" in card


def test_missing_and_unknown_keys_are_listed(tmp_path, original_state, caplog):
    broken = dict(original_state)
    del broken["emb_center"]
    broken["some_new_head.weight"] = torch.zeros(3)
    assert run_cli(tmp_path, broken, *OPTIONS) == 2
    assert "some_new_head.weight" in caplog.text and "temporal_alignment_block.center_embeds" in caplog.text


def test_options_that_do_not_fit_the_checkpoint_fail(tmp_path, original_state, caplog):
    assert run_cli(tmp_path, original_state) == 2  # default 4 temporal layers, the fixture has 2
    assert "temporal_transformer.layers.2" in caplog.text
    caplog.clear()
    assert run_cli(tmp_path, original_state, *OPTIONS, "--centerK", "7") == 2
    assert "center" in caplog.text and "shape" in caplog.text


def test_modules_the_original_never_reads_are_dropped_with_a_log(tmp_path, original_state, caplog):
    # without TAB the original still builds nothing for it, but TDB tensors are read; TAB tensors become unexpected
    assert run_cli(tmp_path, original_state, *OPTIONS, "--center_type", "") == 2
    assert "weight_center" in caplog.text
    caplog.clear()
    # with plain subtraction the original builds `trans_layernorm` and never reads it; the TDB attention is not built
    no_attention = {k: v for k, v in original_state.items() if not k.startswith("frame2t_attention.")}
    assert run_cli(tmp_path, no_attention, *OPTIONS, "--temporal_proj", "") == 0
    assert "trans_layernorm" in caplog.text


def test_not_a_checkpoint(tmp_path, caplog):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    assert run_cli(tmp_path, text_file) == 2
    assert "notes.txt" in caplog.text and "not a PyTorch checkpoint" in caplog.text
    caplog.clear()
    assert run_cli(tmp_path, tmp_path / "absent.bin") == 2
    assert "absent.bin: no such file" in caplog.text
    caplog.clear()
    torch.save([torch.zeros(2)], tmp_path / "list.bin")
    assert run_cli(tmp_path, tmp_path / "list.bin") == 2
    assert "expected a non-empty dict of tensors" in caplog.text


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_that_need_code_execution_are_refused(tmp_path, caplog, capsys):
    path = tmp_path / "evil.bin"
    with open(path, "wb") as handle:
        pickle.dump({"clip.logit_scale": Payload()}, handle)
    assert run_cli(tmp_path, path) == 2
    assert "evil.bin" in caplog.text and "refused to unpickle" in caplog.text
    assert "this must never run" not in capsys.readouterr().out
    torch.save({"weights": Payload()}, tmp_path / "evil_zip.bin")
    caplog.clear()
    assert run_cli(tmp_path, tmp_path / "evil_zip.bin") == 2
    assert "refused to unpickle" in caplog.text
