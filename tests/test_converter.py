"""Converter CLI: options, presets, strictness, errors naming the file and key, and the output folder."""

import errno
import logging
import pickle
import subprocess
import sys
from pathlib import Path

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


# ----------------------------------------------------------------------------------------------------------------------
# Values and names read from the checkpoint
# ----------------------------------------------------------------------------------------------------------------------


def test_integer_tensors_are_refused_not_converted_to_zeros(tmp_path, original_state, caplog):
    as_int64 = {key: value.long() for key, value in original_state.items()}
    assert run_cli(tmp_path, as_int64, *OPTIONS) == 2
    assert "116 tensors are not floating point" in caplog.text and "'actionClip.resblocks.0.attn.in_proj_bias' " \
        "(torch.int64)" in caplog.text
    assert not (tmp_path / "out").exists()
    caplog.clear()
    one_bool = dict(original_state, weight_center=original_state["weight_center"] > 0)
    assert run_cli(tmp_path, one_bool, *OPTIONS) == 2
    assert "1 tensors are not floating point" in caplog.text and "'weight_center' (torch.bool)" in caplog.text


def test_non_finite_values_are_refused(tmp_path, original_state, caplog):
    broken = dict(original_state)
    broken["emb_center"] = broken["emb_center"].clone()
    broken["emb_center"][0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    assert run_cli(tmp_path, broken, *OPTIONS) == 2
    total = original_state["emb_center"].numel()
    assert f"1 tensors hold NaN or infinite values: 'emb_center' (3 of {total} values)" in caplog.text
    caplog.clear()
    for scale in (100.0, -100.0):  # exp overflows / underflows float32: every similarity inf / 0
        caplog.clear()
        assert run_cli(tmp_path, dict(original_state, **{"clip.logit_scale": torch.tensor(scale)}), *OPTIONS) == 2
        assert f"`clip.logit_scale` = {scale} makes exp(logit_scale) overflow or underflow float32" in caplog.text


def test_a_key_with_and_without_the_module_prefix_is_refused(tmp_path, original_state, caplog):
    twice = dict(original_state, **{"module.emb_center": torch.zeros_like(original_state["emb_center"])})
    assert run_cli(tmp_path, twice, *OPTIONS) == 2
    assert "'emb_center' appears twice (with and without the `module.` prefix)" in caplog.text


@pytest.mark.parametrize("key, value, message", [
    ("clip.text_projection", torch.zeros(128), "`clip.text_projection` has shape (128,); expected 2 non-empty"),
    ("clip.visual.conv1.weight", torch.zeros(192, 3, 16), "`clip.visual.conv1.weight` has shape (192, 3, 16)"),
    ("clip.logit_scale", torch.zeros(3), "`clip.logit_scale` has shape (3,); expected one value"),
    ("clip.visual.positional_embedding", torch.zeros(4, 192), "has 4 rows; expected a square grid of patches"),
    ("clip.token_embedding.weight", torch.zeros(2, 128), "a vocabulary of 2 tokens has no room"),
])
def test_malformed_shapes_are_named(tmp_path, original_state, caplog, key, value, message):
    assert run_cli(tmp_path, dict(original_state, **{key: value}), *OPTIONS) == 2
    assert message in caplog.text and "pytorch_model.bin.2" in caplog.text


def test_a_folder_or_an_unreadable_file_as_checkpoint(tmp_path, caplog):
    assert run_cli(tmp_path, tmp_path) == 2
    assert f"{tmp_path}: is a folder; expected the checkpoint file itself" in caplog.text


# ----------------------------------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, value", [
    ("--max_frames", "0"), ("--max_frames", "two"), ("--centerK", "-1"), ("--cross_num_hidden_layers", "0"),
    ("--feature_framerate", "0"), ("--max_words", "1"), ("--center_weight", "1.5"), ("--center_weight", "nan"),
    ("--temporal_proj", "sigmoid_selfa"), ("--center_proj", "tab_tdb"), ("--temporal_type", "tdb"),
])
def test_bad_option_values_fail_at_parse_time_naming_the_option(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:  # before the checkpoint is read: the path does not exist
        converter.main(["--checkpoint_path", str(tmp_path / "absent.bin"), "--output_dir", str(tmp_path / "out"),
                        option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("frames, options, warned", [
    (1, [], True),                                 # TDB needs two frames
    (2, [], True),                                 # TAB_TDB subsamples every second frame: one frame for its TDB
    (3, [], False),
    (1, ["--center_proj", "TAB"], True),           # TDB alone, one frame
    (2, ["--center_proj", "TAB"], False),          # TDB alone, two frames: fine
    (1, ["--temporal_type", "", "--center_proj", "TAB"], False),  # no TDB anywhere: one frame is fine
])
def test_settings_the_original_cannot_run_are_warned_about(caplog, frames, options, warned):
    args = converter.build_parser().parse_args(
        ["--checkpoint_path", "x", "--output_dir", "y", "--max_frames", str(frames), *options])
    with caplog.at_level(logging.WARNING, logger="convert_original_checkpoint"):
        kwargs = converter.config_kwargs_from_options(converter.options_from_args(args))
    assert kwargs["num_frames"] == frames
    expected = f"the original cannot run --max_frames {frames} with these options"
    assert (expected in caplog.text) == warned, caplog.text


def test_a_one_frame_conversion_warns_and_still_converts(tmp_path, original_state, caplog):
    assert run_cli(tmp_path, original_state, *OPTIONS, "--max_frames", "1") == 0
    assert "the original cannot run --max_frames 1" in caplog.text
    assert '"num_frames": 1' in (tmp_path / "out" / "config.json").read_text()


# ----------------------------------------------------------------------------------------------------------------------
# The output folder: never half-written, never deleting what the run did not write
# ----------------------------------------------------------------------------------------------------------------------


def tree(folder):
    """`{relative path: bytes}` of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def disk_full_after(monkeypatch, step):
    """Make the conversion fail with ENOSPC while writing: in the weights (`weights`) or after them (`card`)."""
    real_save = converter.CLIP2VideoModel.save_pretrained

    def save_then_fill_the_disk(self, folder, *args, **kwargs):
        if step == "weights":
            (Path(folder) / "model.safetensors").write_bytes(b"\0" * 1000)  # half-written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, folder, *args, **kwargs)

    def card_fails(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(converter.CLIP2VideoModel, "save_pretrained", save_then_fill_the_disk)
    if step == "card":
        monkeypatch.setattr(converter, "write_text", card_fails)


@pytest.mark.parametrize("step", ["weights", "card"])
def test_disk_full_leaves_no_output_folder(tmp_path, original_state, caplog, monkeypatch, step):
    disk_full_after(monkeypatch, step)
    assert run_cli(tmp_path, original_state, *OPTIONS) == 1
    assert "could not write the converted model (OSError: [Errno 28] No space left on device" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pytorch_model.bin.2"]  # no folder, no staging left


@pytest.mark.parametrize("step", ["weights", "card"])
def test_disk_full_leaves_an_existing_folder_as_it_was(tmp_path, original_state, caplog, monkeypatch, step):
    assert run_cli(tmp_path, original_state, *OPTIONS) == 0  # a first conversion, then the user's own file
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    before = tree(tmp_path / "out")
    (tmp_path / "empty").mkdir()
    disk_full_after(monkeypatch, step)
    assert run_cli(tmp_path, original_state, *OPTIONS, "--center_weight", "0.7", "--overwrite_output_dir") == 1
    assert tree(tmp_path / "out") == before
    assert converter.main(["--checkpoint_path", str(tmp_path / "pytorch_model.bin.2"), "--output_dir",
                           str(tmp_path / "empty"), *OPTIONS]) == 1
    assert list((tmp_path / "empty").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out", "pytorch_model.bin.2"]


def test_a_non_empty_output_folder_needs_overwrite_which_keeps_other_files(tmp_path, original_state, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("keep")
    (out / "config.json").write_text("{}")  # a stale file the converter writes: replaced
    assert run_cli(tmp_path, original_state, *OPTIONS) == 2
    assert f"{out}: folder exists and is not empty (pass --overwrite_output_dir" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "thesis.tex"]
    caplog.clear()
    assert run_cli(tmp_path, original_state, *OPTIONS, "--overwrite_output_dir") == 0
    assert (out / "thesis.tex").read_text() == "keep"
    assert f"{out}: kept files this conversion did not write: ['thesis.tex']" in caplog.text
    assert converter.CLIP2VideoModel.from_pretrained(out).config.center_weight == 0.3
    # once more over its own output: the same files, replaced
    assert run_cli(tmp_path, original_state, *OPTIONS, "--center_weight", "0.7", "--overwrite_output_dir") == 0
    assert converter.CLIP2VideoModel.from_pretrained(out).config.center_weight == 0.7
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "configuration_clip2video.py", "hub_clip2video.py", "loss_clip2video.py",
        "model.safetensors", "modeling_clip2video.py", "pipeline_clip2video.py", "thesis.tex"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_an_empty_output_folder_is_used_and_a_file_is_refused(tmp_path, original_state, caplog):
    (tmp_path / "out").mkdir()
    assert run_cli(tmp_path, original_state, *OPTIONS) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    (tmp_path / "file").write_text("not a folder")
    assert converter.main(["--checkpoint_path", str(tmp_path / "pytorch_model.bin.2"), "--output_dir",
                           str(tmp_path / "file"), *OPTIONS, "--overwrite_output_dir"]) == 2
    assert f"{tmp_path / 'file'}: exists and is not a folder" in caplog.text
    assert (tmp_path / "file").read_text() == "not a folder"
