# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Convert a checkpoint of the original CLIP2Video code (github.com/CryhanFang/CLIP2Video, `pytorch_model.bin.<N>`) into a
Hub-ready folder: `config.json` (with `auto_map`), `model.safetensors` and the remote-code files, loadable with
`AutoModel.from_pretrained(folder, trust_remote_code=True)`.

The options keep the original's names and values, so they can be copied from its `test/*.sh` scripts:

    python convert_original_checkpoint.py --checkpoint_path ckpt/pytorch_model.bin.2 --output_dir clip2video-msrvtt \\
        --preset msrvtt

Loading is strict: every tensor the converted model needs must come from the checkpoint, and every tensor of the
checkpoint must be used, except those the original creates but never reads under the given options (they are listed
in the log). CLIP sizes (widths, depths, patch, resolution, vocabulary, context length) are read from tensor shapes as
the original does; the start/end token ids are the two highest ids of the vocabulary. Every tensor must be a dense,
finite floating-point tensor (the original saves nothing else).

The folder is written through a staging folder and renamed into place, so a failed run (disk full, a bad option found
late) leaves `--output_dir` as it was. An existing non-empty `--output_dir` is refused unless `--overwrite_output_dir`;
then the converter's files replace those of the same name and every other file is kept. Exit status: 0 converted,
1 the folder could not be written, 2 bad options or checkpoint.
"""

import argparse
import logging
import math
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from configuration_clip2video import CLIP2VideoConfig
from modeling_clip2video import CLIP2VideoModel
from hub_clip2video import PAPER, build_model_card
from utils_clip2video import CLIP_TOKENIZER_DIR, check_output_folder, files_into_directory, write_text


logger = logging.getLogger("convert_original_checkpoint")


class CheckpointError(ValueError):
    """A file that is not a usable original CLIP2Video checkpoint (the message names the file and the reason)."""


# ----------------------------------------------------------------------------------------------------------------------
# Options: the original's names and values
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class OriginalOptions:
    """The architecture options of the original `utils/config.py`, with the released models' values as defaults."""

    max_frames: int = 12
    sim_type: str = "seqTransf"
    temporal_type: str = "TDB"
    temporal_proj: str = "sigmoid_selfA"
    center_type: str = "TAB"
    centerK: int = 5
    center_weight: float = 0.5
    center_proj: str = "TAB_TDB"
    cross_num_hidden_layers: int = 4
    # preprocessing, saved with the processor
    feature_framerate: int = 2
    max_words: int = 32


# Evaluation settings of the original's test scripts (test/*.sh); all three released checkpoints use TDB + TAB_TDB.
PRESETS = {
    "msrvtt": OriginalOptions(),
    "msvd": OriginalOptions(feature_framerate=1),
    "vatex": OriginalOptions(centerK=7, feature_framerate=1),
}
CLIP_VOCAB_SIZE = 49408


def config_kwargs_from_options(options: OriginalOptions) -> dict:
    """Map original options onto `CLIP2VideoConfig` fields, mirroring which code paths the original actually runs."""
    if options.sim_type not in ("meanP", "seqTransf"):
        raise ValueError(f"--sim_type must be meanP or seqTransf, got {options.sim_type!r}")
    transformer_head = options.sim_type == "seqTransf"
    # The original's global branch only uses TDB together with the temporal transformer.
    use_tdb = transformer_head and options.temporal_type == "TDB"
    use_tab = options.center_type == "TAB"
    tab_input = {"TAB_TDB": "tdb", "TAB": "plain"}.get(options.center_proj, "none")
    if use_tab and tab_input != "none" and not transformer_head:
        raise ValueError(f"--center_proj {options.center_proj} needs --sim_type seqTransf (the original fails otherwise)")
    if use_tab and tab_input == "tdb" and options.temporal_type != "TDB":
        raise ValueError("--center_proj TAB_TDB needs --temporal_type TDB (the original fails otherwise)")
    if (use_tdb and options.max_frames < 2) or (use_tab and tab_input == "tdb" and options.max_frames < 3):
        logger.warning("the original cannot run --max_frames %d with these options (TDB needs two frames, TAB_TDB "
                       "three); the converted model is well defined but has no original reference", options.max_frames)
    return dict(
        num_frames=options.max_frames,
        temporal_head="transformer" if transformer_head else "mean",
        num_temporal_layers=options.cross_num_hidden_layers,
        use_tdb=use_tdb,
        tdb_projection={"sigmoid_selfA": "attention", "sigmoid_mlp": "mlp"}.get(options.temporal_proj, "none"),
        use_tab=use_tab,
        tab_input=tab_input,
        num_centers=options.centerK,
        center_weight=options.center_weight,
        original_padding=True,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Reading the checkpoint
# ----------------------------------------------------------------------------------------------------------------------


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original checkpoint safely (`weights_only=True`): strip `module.`, cast every tensor to fp32.

    Raises `CheckpointError` naming the file for a missing or unreadable file, a pickle that needs code execution, and
    for content the original never saves: non-string keys, a key present with and without `module.`, non-tensors,
    sparse or data-less tensors, integer / boolean / complex tensors, NaN or infinite values (the keys are listed).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; expected the checkpoint file itself (e.g. pytorch_model.bin.2)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to unpickle: the file needs code execution to load (only plain tensors are accepted, "
            f"weights_only=True): {str(error).splitlines()[0]}"
        ) from error
    except (PermissionError, IsADirectoryError) as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror})") from error
    except Exception as error:  # torch.load reports garbage in many ways (KeyError, EOFError, RuntimeError, ...)
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: expected a non-empty dict of tensors, got {type(state).__name__}")
    converted = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key[len("module.") :] if key.startswith("module.") else key
        if name in converted:
            raise CheckpointError(f"{path}: {name!r} appears twice (with and without the `module.` prefix)")
        converted[name] = value
    _check_tensor_values(converted, path)
    return {key: value.float() for key, value in converted.items()}


def _check_tensor_values(state: dict[str, torch.Tensor], path: Path) -> None:
    """Every tensor of an original checkpoint is a dense floating-point tensor of finite values: anything else would
    be cast into the model's float parameters as zeros, rounded integers or NaN."""
    unusable = {key: "meta, no data" if value.is_meta else str(value.layout)
                for key, value in state.items() if value.is_meta or value.layout != torch.strided}
    if unusable:
        raise CheckpointError(f"{path}: {len(unusable)} tensors hold no dense data: {_listing(unusable)}")
    not_float = {key: str(value.dtype) for key, value in state.items() if not value.is_floating_point()}
    if not_float:
        raise CheckpointError(f"{path}: {len(not_float)} tensors are not floating point (the original's weights all "
                              f"are; converting would round them into float parameters): {_listing(not_float)}")
    not_finite = {key: f"{int((~torch.isfinite(value)).sum())} of {value.numel()} values"
                  for key, value in state.items() if not torch.isfinite(value).all()}
    if not_finite:
        raise CheckpointError(f"{path}: {len(not_finite)} tensors hold NaN or infinite values: {_listing(not_finite)}")


def _listing(found: dict[str, str], limit: int = 10) -> str:
    """`key (detail), ...` for the first `limit` keys (repr-quoted, so a hostile key cannot garble the terminal)."""
    items = [f"{key!r} ({detail})" for key, detail in sorted(found.items())[:limit]]
    return ", ".join(items) + (f", ... ({len(found) - limit} more)" if len(found) > limit else "")


def _require(state: dict, key: str, path: str, ndim: int | None = None) -> torch.Tensor:
    """`state[key]`, which must exist and, if `ndim` is given, have that many dimensions (none of them empty)."""
    if key not in state:
        raise CheckpointError(f"{path}: missing `{key}`; is this an original CLIP2Video checkpoint?")
    tensor = state[key]
    if ndim is not None and (tensor.dim() != ndim or 0 in tensor.shape):
        raise CheckpointError(f"{path}: `{key}` has shape {tuple(tensor.shape)}; expected {ndim} non-empty dimensions")
    return tensor


def _count_layers(state: dict, pattern: str) -> int:
    indices = {int(match.group(1)) for key in state if (match := re.match(pattern, key))}
    return len(indices)


def logit_scale_from_state_dict(state: dict, path: str = "checkpoint") -> float:
    """The original's `clip.logit_scale` (a log temperature): one value whose exponential is a finite float32."""
    tensor = _require(state, "clip.logit_scale", path)
    if tensor.numel() != 1:
        raise CheckpointError(f"{path}: `clip.logit_scale` has shape {tuple(tensor.shape)}; expected one value")
    value = float(tensor)
    limits = torch.finfo(torch.float32)
    if not math.log(limits.tiny) <= value <= math.log(limits.max):  # the similarity would be all inf or all 0
        raise CheckpointError(f"{path}: `clip.logit_scale` = {value} makes exp(logit_scale) overflow or underflow "
                              f"float32")
    return value


def clip_configs_from_state_dict(state: dict, path: str = "checkpoint") -> tuple[dict, dict, int]:
    """Infer `text_config`, `vision_config` and `projection_dim` from tensor shapes, as the original's `CLIP2Video.__init__`."""
    conv = _require(state, "clip.visual.conv1.weight", path, ndim=4)
    vision_width, patch = conv.shape[0], conv.shape[-1]
    positions = _require(state, "clip.visual.positional_embedding", path, ndim=2).shape[0] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions or grid == 0:
        raise CheckpointError(f"{path}: `clip.visual.positional_embedding` has {positions + 1} rows; expected a square "
                              f"grid of patches plus the class token")
    vision_layers = _count_layers(state, r"clip\.visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$")
    text_width = _require(state, "clip.ln_final.weight", path, ndim=1).shape[0]
    text_layers = _count_layers(state, r"clip\.transformer\.resblocks\.(\d+)\.")
    vocab_size = _require(state, "clip.token_embedding.weight", path, ndim=2).shape[0]
    projection_dim = _require(state, "clip.text_projection", path, ndim=2).shape[1]
    if vision_width < 64 or text_width < 64:
        raise CheckpointError(f"{path}: widths {vision_width}/{text_width} give no attention head (width // 64)")
    if vocab_size < 3:
        raise CheckpointError(f"{path}: a vocabulary of {vocab_size} tokens has no room for padding, start and end")
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=text_width,
        intermediate_size=_require(state, "clip.transformer.resblocks.0.mlp.c_fc.weight", path, ndim=2).shape[0],
        num_hidden_layers=text_layers,
        num_attention_heads=text_width // 64,
        max_position_embeddings=_require(state, "clip.positional_embedding", path, ndim=2).shape[0],
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=projection_dim,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=0,
    )
    vision_config = dict(
        hidden_size=vision_width,
        intermediate_size=_require(state, "clip.visual.transformer.resblocks.0.mlp.c_fc.weight", path, ndim=2).shape[0],
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_width // 64,
        image_size=patch * grid,
        patch_size=patch,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=projection_dim,
    )
    return text_config, vision_config, projection_dim


# ----------------------------------------------------------------------------------------------------------------------
# Key mapping
# ----------------------------------------------------------------------------------------------------------------------

_BLOCK_RENAMES = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}

_KEY_RENAMES = {
    "clip.visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "clip.visual.class_embedding": "vision_model.embeddings.class_embedding",
    "clip.visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "clip.visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "clip.visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "clip.visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "clip.visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "clip.token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "clip.positional_embedding": "text_model.embeddings.position_embedding.weight",
    "clip.ln_final.weight": "text_model.final_layer_norm.weight",
    "clip.ln_final.bias": "text_model.final_layer_norm.bias",
    "clip.logit_scale": "logit_scale",
    "frame_position_embeddings.weight": "frame_position_embeddings.weight",
    "type_position_embeddings.weight": "temporal_difference_block.type_embeddings.weight",
    "trans_layernorm.weight": "temporal_difference_block.difference_layer_norm.weight",
    "trans_layernorm.bias": "temporal_difference_block.difference_layer_norm.bias",
    "weight_center": "temporal_alignment_block.center_weights",
    "emb_center": "temporal_alignment_block.center_embeds",
}

# Transposed: the original multiplies `x @ W`, an nn.Linear computes `x @ weight.T`.
_TRANSPOSED_RENAMES = {
    "clip.visual.proj": "visual_projection.weight",
    "clip.text_projection": "text_projection.weight",
    "frame2t_projection": "temporal_difference_block.difference_projection.weight",
}

_STACK_PREFIXES = {
    "clip.visual.transformer.resblocks.": "vision_model.encoder.layers.",
    "clip.transformer.resblocks.": "text_model.encoder.layers.",
    "transformerClip.resblocks.": "temporal_transformer.layers.",
    "frame2t_attention.resblocks.": "temporal_difference_block.difference_attention.layers.",
    "actionClip.resblocks.": "temporal_alignment_block.frame_encoder.layers.",
}


def rename_original_key(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """One original key -> `{new_key: tensor}` (packed q/k/v split into three), or None for a key of no known module."""
    if key in _KEY_RENAMES:
        return {_KEY_RENAMES[key]: tensor}
    if key in _TRANSPOSED_RENAMES:
        return {_TRANSPOSED_RENAMES[key]: tensor.t().contiguous()}
    for old_prefix, new_prefix in _STACK_PREFIXES.items():
        match = re.fullmatch(re.escape(old_prefix) + r"(\d+)\.(.+)", key)
        if not match:
            continue
        layer, name = new_prefix + match.group(1) + ".", match.group(2)
        if name in ("attn.in_proj_weight", "attn.in_proj_bias"):
            suffix = name.rsplit("_", 1)[-1]  # weight | bias
            query, key_, value = tensor.chunk(3, dim=0)
            return {f"{layer}self_attn.{p}_proj.{suffix}": t.contiguous() for p, t in zip("qkv", (query, key_, value))}
        if name in _BLOCK_RENAMES:
            return {layer + _BLOCK_RENAMES[name]: tensor}
    return None


def original_modules(options: OriginalOptions) -> set[str]:
    """Top-level names of the modules the original `CLIP2Video.__init__` creates for `options` (whether used or not)."""
    modules = {"clip", "trans_layernorm"}
    if options.sim_type == "seqTransf":
        modules |= {"frame_position_embeddings", "transformerClip"}
    if options.temporal_proj == "sigmoid_mlp":
        modules.add("frame2t_projection")
    elif options.temporal_proj == "sigmoid_selfA":
        modules.add("frame2t_attention")
    if options.temporal_type == "TDB":
        modules.add("type_position_embeddings")
    if options.center_type == "TAB":
        modules |= {"weight_center", "emb_center"}
        if options.center_proj in ("TAB", "TAB_TDB"):
            modules.add("actionClip")
    return modules


def convert_state_dict(
    original: dict[str, torch.Tensor], expected_keys: set[str], options: OriginalOptions, path: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename an original state dict for a model whose parameters are `expected_keys`; strict in both directions.

    A module the original creates under `options` but never reads (e.g. `trans_layernorm` without a TDB projection) is
    dropped as a whole and logged. Any other key that finds no parameter, and any parameter not filled, is an error.
    """
    converted, unexpected, inert, used = {}, [], {}, set()
    created = original_modules(options)
    for key, tensor in original.items():
        renamed = rename_original_key(key, tensor)
        module = key.split(".")[0]
        if renamed is not None and set(renamed) <= expected_keys:
            converted.update(renamed)
            used.add(module)
        elif renamed is not None and module in created and module != "clip" and not set(renamed) & expected_keys:
            inert.setdefault(module, []).append(key)
        else:
            unexpected.append(key)
    # a module is inert only if none of its tensors is used
    for module in used & set(inert):
        unexpected += inert.pop(module)
    missing = sorted(expected_keys - set(converted))
    if unexpected or missing:
        raise CheckpointError(
            f"{path}: checkpoint does not match the model built from the given options "
            f"(check --sim_type/--temporal_type/--temporal_proj/--center_type/--center_proj/--centerK/"
            f"--cross_num_hidden_layers). Unexpected keys ({len(unexpected)}): {sorted(unexpected)[:20]}; "
            f"missing parameters ({len(missing)}): {missing[:20]}"
        )
    if inert:
        logger.warning("%s: dropping modules the original builds but never reads with these options: %s",
                       path, sorted(inert))
    return converted


def convert_checkpoint(checkpoint_path: str | Path, options: OriginalOptions) -> CLIP2VideoModel:
    """Build the `CLIP2VideoModel` equivalent to an original checkpoint evaluated with `options`."""
    path = str(checkpoint_path)
    original = load_original_state_dict(checkpoint_path)
    text_config, vision_config, projection_dim = clip_configs_from_state_dict(original, path)
    logit_scale = logit_scale_from_state_dict(original, path)
    temporal_options = config_kwargs_from_options(options)
    try:
        config = CLIP2VideoConfig(
            text_config=text_config,
            vision_config=vision_config,
            projection_dim=projection_dim,
            logit_scale_init_value=logit_scale,
            **temporal_options,
        )
    except ValueError as error:  # e.g. more frames than the checkpoint's position table
        raise CheckpointError(f"{path}: the options do not fit this checkpoint: {error}") from error
    model = CLIP2VideoModel(config)
    expected = set(model.state_dict())
    converted = convert_state_dict(original, expected, options, path)
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: tensor shapes do not fit the options: {error}") from error
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def _integer_at_least(minimum: int):
    """An argparse `type` accepting integers >= `minimum` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse `type` accepting a number in [0, 1] (NaN and infinities refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint_path", required=True, help="original checkpoint file, e.g. pytorch_model.bin.2")
    parser.add_argument("--output_dir", required=True,
                        help="folder to write the converted model to (absent or empty, else see --overwrite_output_dir)")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="write into a non-empty --output_dir: the converter's files (config, weights, code, "
                             "processor, README.md) replace those of the same name, every other file is kept")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="options of a released checkpoint (the original's test scripts: msrvtt and msvd use "
                             "centerK 5, vatex centerK 7); explicit options below override it")
    defaults = OriginalOptions()
    positive = _integer_at_least(1)
    parser.add_argument("--max_frames", type=positive, default=None,
                        help=f"frames per video (default {defaults.max_frames})")
    parser.add_argument("--sim_type", choices=["meanP", "seqTransf"], default=None,
                        help=f"global temporal head: mean pooling or temporal transformer (default {defaults.sim_type})")
    parser.add_argument("--temporal_type", choices=["TDB", ""], default=None,
                        help=f"'TDB' adds the Temporal Difference Block, '' does not (default {defaults.temporal_type})")
    parser.add_argument("--temporal_proj", choices=["sigmoid_selfA", "sigmoid_mlp", ""], default=None,
                        help="difference encoding in TDB: sigmoid_selfA (attention), sigmoid_mlp, or '' (plain "
                             f"subtraction) (default {defaults.temporal_proj})")
    parser.add_argument("--center_type", choices=["TAB", ""], default=None,
                        help=f"'TAB' adds the Temporal Alignment Block, '' does not (default {defaults.center_type})")
    parser.add_argument("--centerK", type=positive, default=None,
                        help=f"number of TAB centers (default {defaults.centerK})")
    parser.add_argument("--center_weight", type=_fraction, default=None,
                        help="weight of the global similarity in [0, 1]; TAB gets 1 - it "
                             f"(default {defaults.center_weight})")
    parser.add_argument("--center_proj", choices=["TAB_TDB", "TAB", ""], default=None,
                        help="extra TAB video tokens: TAB_TDB (one-layer transformer with the shared TDB), TAB (without "
                             f"TDB) or '' (none) (default {defaults.center_proj})")
    parser.add_argument("--cross_num_hidden_layers", type=positive, default=None,
                        help=f"layers of the temporal transformer (default {defaults.cross_num_hidden_layers})")
    parser.add_argument("--feature_framerate", type=positive, default=None,
                        help="frame-selection rate of the saved processor: keep every n-th of the 5 fps frames "
                             f"(msrvtt 2, msvd and vatex 1) (default {defaults.feature_framerate})")
    parser.add_argument("--max_words", type=_integer_at_least(2), default=None,
                        help=f"caption length of the saved processor, start and end tokens included "
                             f"(default {defaults.max_words})")
    return parser


def options_from_args(args: argparse.Namespace) -> OriginalOptions:
    """The preset (or the released defaults), overridden by every option given explicitly."""
    options = PRESETS[args.preset] if args.preset else OriginalOptions()
    overrides = {name: getattr(args, name) for name in OriginalOptions.__dataclass_fields__ if getattr(args, name) is not None}
    return OriginalOptions(**{**options.__dict__, **overrides})


def model_card(model: CLIP2VideoModel, name: str, checkpoint: str, options: OriginalOptions, with_processor: bool):
    """The Hub model card (`huggingface_hub.ModelCard`) describing the conversion and how to load the model."""
    summary = (
        f"{PAPER} converted from the original checkpoint `{Path(checkpoint).name}` with the options `{options}`. "
        "The converted model reproduces the original code's similarities (it keeps the original's padding semantics, "
        "`original_padding=True`); the original evaluated it with fp16 CLIP towers, which "
        "`model.cast_clip_towers(torch.float16)` reproduces."
    )
    return build_model_card(title=f"CLIP2Video ({name})", summary=summary, repo=name, config=model.config,
                            num_parameters=sum(p.numel() for p in model.parameters()), with_processor=with_processor)


def build_processor(model: CLIP2VideoModel, options: OriginalOptions):
    """The original's preprocessing as a `CLIP2VideoProcessor` (CLIP's tokenizer, 5 fps frame selection, transform),
    or None when the checkpoint's vocabulary is not CLIP's (then no tokenizer fits it)."""
    from processing_clip2video import CLIP2VideoProcessor

    config = model.config
    if config.text_config.vocab_size != CLIP_VOCAB_SIZE:
        logger.warning("vocabulary of %d tokens is not CLIP's %d: no processor is saved", config.text_config.vocab_size,
                       CLIP_VOCAB_SIZE)
        return None
    size = config.vision_config.image_size
    return CLIP2VideoProcessor.from_clip_tokenizer(
        str(CLIP_TOKENIZER_DIR), max_words=options.max_words, num_frames=config.num_frames,
        feature_framerate=options.feature_framerate, size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
    )


def save_converted(folder: Path, model: CLIP2VideoModel, processor, card) -> None:
    """Write the model (config, `model.safetensors`, remote code), its processor (if any) and card into `folder`."""
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    write_text(folder / "README.md", str(card))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = options_from_args(args)
    output = Path(args.output_dir)
    try:  # the output folder first: a refusal must not wait for a long conversion
        check_output_folder(output, args.overwrite_output_dir)
    except FileExistsError as error:
        logger.error("%s (pass --overwrite_output_dir to replace the converter's files in it, keeping the others)",
                     error)
        return 2
    except NotADirectoryError as error:
        logger.error("%s", error)
        return 2
    try:
        model = convert_checkpoint(args.checkpoint_path, options)
    except (CheckpointError, ValueError) as error:
        logger.error("%s", error)
        return 2
    processor = build_processor(model, options)
    name = output.resolve().name
    card = model_card(model, name, args.checkpoint_path, options, with_processor=processor is not None)
    try:
        with files_into_directory(output, overwrite=args.overwrite_output_dir) as staging:
            save_converted(staging, model, processor, card)
            written = sorted(path.name for path in staging.iterdir())
    except (OSError, SafetensorError) as error:
        logger.error("%s: could not write the converted model (%s: %s); the folder is as it was", output,
                     type(error).__name__, error)
        return 1
    logger.info("converted %s with %s -> %s (%s)", args.checkpoint_path, options, output, ", ".join(written))
    kept = sorted(set(path.name for path in output.iterdir()) - set(written))
    if kept:  # e.g. the processor of an earlier conversion into the same folder: the user decides
        logger.warning("%s: kept files this conversion did not write: %s", output, kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
