# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""PyTorch CLIP2Video: CLIP towers from transformers plus the Temporal Difference Block (TDB) and the Temporal
Alignment Block (TAB) of Fang et al., "CLIP2Video: Mastering Video-Text Retrieval via Image CLIP" (arXiv 2106.11097).

Each block names the part of the original code (github.com/CryhanFang/CLIP2Video, `modules/modeling.py`) it reproduces.
Masks are `1` for valid frames/tokens and `0` for padding throughout.
"""

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ModelOutput
from transformers.models.clip.modeling_clip import CLIPEncoderLayer, CLIPMLP, CLIPPreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple, is_tracing, logging, torch_compilable_check


try:  # loaded as Hub remote code (a package) ...
    from .configuration_clip2video import CUSTOM_PIPELINES, CLIP2VideoConfig
    from .hub_clip2video import write_push_card
    from .loss_clip2video import clip2video_loss
except ImportError:  # ... or as a top-level module of the installed project
    from configuration_clip2video import CUSTOM_PIPELINES, CLIP2VideoConfig
    from hub_clip2video import write_push_card
    from loss_clip2video import clip2video_loss


logger = logging.get_logger(__name__)

# Additive attention-mask value of the original temporal transformers: `(1 - mask) * -1e6` on the keys. When every key of
# a row is masked (a video with a single valid frame, for the TDB difference attention), softmax is shift-invariant and
# the row attends to all keys; -inf would give NaN instead. Kept so converted checkpoints reproduce the original.
TEMPORAL_MASK_VALUE = -1e6
# Top-level modules that come from CLIP (same names as `CLIPModel`); everything else is a CLIP2Video block.
CLIP_MODULES = ("text_model", "vision_model", "visual_projection", "text_projection", "logit_scale")
# QuickGELU's constant: x * sigmoid(1.702 x).
QUICK_GELU_SCALE = 1.702
# Standard deviation of the original's random TAB centers (`64 ** -0.5`, independent of the width).
CENTER_INIT_STD = 64**-0.5


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model its config describes (a tensor of another shape)."""


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class CLIP2VideoOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss` and the batch is paired):
        The original contrastive loss (see [`clip2video_loss`]).
    logits_per_text (`torch.FloatTensor` of shape `(text_batch, video_batch)`):
        `exp(logit_scale) * (cw * global + (1 - cw) * TAB)` similarities, equal to the original inference similarity.
    logits_per_video (`torch.FloatTensor` of shape `(video_batch, text_batch)`):
        The transpose of `logits_per_text`.
    text_embeds (`torch.FloatTensor` of shape `(text_batch, retrieval_embed_dim)`):
        Retrieval embeddings of the captions, `[sqrt(cw) * t_g, sqrt(1 - cw) * t_c]` (see `get_text_features`).
    video_embeds (`torch.FloatTensor` of shape `(video_batch, retrieval_embed_dim)`):
        Retrieval embeddings of the videos, `[sqrt(cw) * v_g, sqrt(1 - cw) * v_c]` (see `get_video_features`).
    text_global_embeds (`torch.FloatTensor` of shape `(text_batch, projection_dim)`):
        Unit global caption embedding `t_g` (projected end-of-text state).
    video_global_embeds (`torch.FloatTensor` of shape `(video_batch, projection_dim)`):
        Unit global video embedding `v_g` (temporal head, optionally with TDB).
    text_alignment_embeds (`torch.FloatTensor` of shape `(text_batch, projection_dim)`, *optional*):
        Unit TAB caption embedding `t_c` (only with TAB).
    video_alignment_embeds (`torch.FloatTensor` of shape `(video_batch, projection_dim)`, *optional*):
        Unit TAB video embedding `v_c` (only with TAB).
    frame_embeds (`torch.FloatTensor` of shape `(video_batch, frames, projection_dim)`):
        Projected CLIP frame features, not normalised (padded frames included).
    text_model_output (`BaseModelOutputWithPooling`):
        The text tower's output (`hidden_states` / `attentions` with `output_hidden_states` / `output_attentions`).
    vision_model_output (`BaseModelOutputWithPooling`):
        The vision tower's output over the frames, laid out `(video_batch, frames, ...)` (see `get_video_features`).
    """

    loss: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_global_embeds: torch.FloatTensor | None = None
    video_global_embeds: torch.FloatTensor | None = None
    text_alignment_embeds: torch.FloatTensor | None = None
    video_alignment_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in self.values())


# ----------------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------------


def _additive_key_mask(token_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`(batch, length)` 0/1 validity -> `(batch, 1, length, length)` additive mask hiding invalid keys from every query."""
    length = token_mask.shape[-1]
    key_mask = (1.0 - token_mask.to(dtype))[:, None, None, :] * TEMPORAL_MASK_VALUE
    return key_mask.expand(-1, 1, length, length)


def _interleave(frames: torch.Tensor, differences: torch.Tensor) -> torch.Tensor:
    """`[f_0, d_0, f_1, d_1, ..., d_{T-2}, f_{T-1}]` from frames `(batch, T, ...)` and differences `(batch, T-1, ...)`."""
    pairs = torch.stack((frames[:, :-1], differences), dim=2).flatten(1, 2)
    return torch.cat((pairs, frames[:, -1:]), dim=1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` `(batch, length, dim)` over the valid positions of `mask` `(batch, length)` -> `(batch, dim)`."""
    mask = mask.to(values.dtype).unsqueeze(-1)
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class CLIP2VideoQuickGELUMLP(CLIPMLP):
    """CLIP's MLP (`fc1` -> QuickGELU -> `fc2`, same parameters) with QuickGELU evaluated as one SiLU pass.

    `x * sigmoid(1.702 x) = silu(1.702 x) / 1.702`; the two scalings are folded into the (small) weights of `fc1` and
    `fc2` on the fly, so the wide hidden activation is touched once instead of three times. Equal to CLIP's MLP up to
    float rounding (~1e-7 relative); used in the temporal layers, whose inputs are short sequences of many videos. When
    the weights are offloaded (accelerate's hooks load `fc1` / `fc2` only inside their own forward, e.g.
    `from_pretrained(..., device_map="auto")` with disk or CPU offload), it runs CLIP's MLP instead.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.fc1.weight.is_meta or self.fc2.weight.is_meta:
            return super().forward(hidden_states)
        hidden_states = F.silu(F.linear(hidden_states, self.fc1.weight * QUICK_GELU_SCALE, self.fc1.bias * QUICK_GELU_SCALE))
        return F.linear(hidden_states, self.fc2.weight / QUICK_GELU_SCALE, self.fc2.bias)


class CLIP2VideoTemporalTransformer(nn.Module):
    """A stack of CLIP transformer layers over a temporal token sequence (original: `module_cross.Transformer`, used as
    `transformerClip`, `frame2t_attention` and `actionClip`).

    The layers are text-tower layers (same width, heads and MLP as `config.text_config`, so they can be initialised from
    it) with the original's LayerNorm epsilon `config.temporal_layer_norm_eps`. Padding is hidden from the keys with the
    original's additive `-1e6`; each sample is masked with its own validity (the original's head-mixing mask bug is not
    reproduced, so a video's output does not depend on its batch-mates).
    """

    def __init__(self, config: CLIP2VideoConfig, num_layers: int):
        super().__init__()
        layer_config = copy.deepcopy(config.text_config)
        layer_config.layer_norm_eps = config.temporal_layer_norm_eps
        layer_config.num_hidden_layers = num_layers
        self.layers = nn.ModuleList([CLIPEncoderLayer(layer_config) for _ in range(num_layers)])
        for layer in self.layers:
            # Attention dispatch (sdpa / eager) follows the text tower's, which `set_attn_implementation` updates.
            layer.self_attn.config = config.text_config
            if layer_config.hidden_act == "quick_gelu":
                layer.mlp = CLIP2VideoQuickGELUMLP(layer_config)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            hidden_states: `(batch, length, dim)` tokens, position (and type) embeddings already added.
            token_mask: `(batch, length)`, 1 = valid token.

        Returns:
            `(batch, length, dim)` contextualised tokens (no final LayerNorm, as in the original).
        """
        attention_mask = _additive_key_mask(token_mask, hidden_states.dtype)
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)
        return hidden_states


class CLIP2VideoTemporalDifferenceBlock(nn.Module):
    """Temporal Difference Block (original: `CLIP2Video.temporal_difference_block`).

    Between every two adjacent frame features it inserts a token encoding their difference, giving `2T - 1` tokens.
    The difference is encoded according to `config.tdb_projection`: `"attention"` (add the right frame's position,
    one temporal transformer layer, then `2*sigmoid(LayerNorm(.)) - 1`), `"mlp"` (`2*sigmoid(LayerNorm(d @ W)) - 1`) or
    `"none"` (the raw difference). Frame tokens get type embedding 1 and difference tokens type 0; both get the left
    frame's position. With `config.original_padding`, a difference token is valid when its left frame is (the original's
    rule, which lets the first padded frame leak in); otherwise both of its frames must be valid.
    """

    def __init__(self, config: CLIP2VideoConfig):
        super().__init__()
        dim = config.projection_dim
        self.projection_type = config.tdb_projection
        self.original_padding = config.original_padding
        # row 0: difference tokens, row 1: frame tokens (original: `type_position_embeddings`)
        self.type_embeddings = nn.Embedding(2, dim)
        if self.projection_type == "attention":
            self.difference_attention = CLIP2VideoTemporalTransformer(config, num_layers=1)
        elif self.projection_type == "mlp":
            self.difference_projection = nn.Linear(dim, dim, bias=False)
        if self.projection_type != "none":
            # torch's default LayerNorm (eps 1e-5), as the original's `trans_layernorm`
            self.difference_layer_norm = nn.LayerNorm(dim)

    def encode_differences(
        self, differences: torch.Tensor, difference_mask: torch.Tensor, position_embeds: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            differences: `(batch, T-1, dim)` raw differences `f_{i+1} - f_i`.
            difference_mask: `(batch, T-1)` validity of the right frame of each pair (the attention key mask).
            position_embeds: `(T-1, dim)` positions of the right frames (rows 1..T-1 of the frame position table).

        Returns:
            `(batch, T-1, dim)` encoded differences, in `[-1, 1]` unless `tdb_projection="none"`.
        """
        if self.projection_type == "attention":
            differences = self.difference_attention(differences + position_embeds, difference_mask)
        elif self.projection_type == "mlp":
            differences = self.difference_projection(differences)
        else:
            return differences
        return 2 * torch.sigmoid(self.difference_layer_norm(differences)) - 1

    def forward(
        self, frame_embeds: torch.Tensor, frame_mask: torch.Tensor, position_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            frame_embeds: `(batch, T, dim)` frame features.
            frame_mask: `(batch, T)`, 1 = valid frame (leading ones).
            position_embeds: `(T, dim)` rows 0..T-1 of the frame position table.

        Returns:
            tokens `(batch, 2T-1, dim)` = token + position + type embedding, ordered `[f_0, d_0, f_1, ..., f_{T-1}]`,
            and their validity `(batch, 2T-1)`.
        """
        num_frames = frame_embeds.shape[1]
        differences = frame_embeds[:, 1:] - frame_embeds[:, :-1]
        if num_frames > 1:
            differences = self.encode_differences(differences, frame_mask[:, 1:], position_embeds[1:num_frames])
        difference_mask = frame_mask[:, :-1] if self.original_padding else frame_mask[:, :-1] * frame_mask[:, 1:]

        # through the module's forward, so that offloading hooks load the table
        difference_type, frame_type = self.type_embeddings(torch.arange(2, device=frame_embeds.device))
        frame_tokens = frame_embeds + position_embeds + frame_type
        difference_tokens = differences + position_embeds[: num_frames - 1] + difference_type
        return _interleave(frame_tokens, difference_tokens), _interleave(frame_mask, difference_mask)


class CLIP2VideoTemporalAlignmentBlock(nn.Module):
    """Temporal Alignment Block (original: `CLIP2Video.get_TAB_embedding` and `get_extra_TAB_embedding`).

    Tokens (caption tokens, or frame features plus temporally encoded tokens of every second frame) are softly assigned
    to `K` centers; the aggregated residuals to the centers are normalised, averaged over centers and normalised again.
    Holds the centers (original: `weight_center`, `emb_center`) and, unless `config.tab_input == "none"`, the one-layer
    temporal transformer that encodes the subsampled frames (original: `actionClip`).
    """

    def __init__(self, config: CLIP2VideoConfig):
        super().__init__()
        dim = config.projection_dim
        self.center_weights = nn.Parameter(torch.empty(config.num_centers, dim))
        self.center_embeds = nn.Parameter(torch.empty(config.num_centers, dim))
        if config.tab_input != "none":
            self.frame_encoder = CLIP2VideoTemporalTransformer(config, num_layers=1)

    def forward(self, tokens: torch.Tensor, token_weights: torch.Tensor) -> torch.Tensor:
        """
        Args:
            tokens: `(batch, length, dim)` token features (not normalised).
            token_weights: `(batch, length)` 0/1 weights of the tokens that take part.

        Returns:
            `(batch, dim)` unit alignment embedding.
        """
        assignment = torch.softmax(tokens @ self.center_weights.t(), dim=-1)  # (batch, length, K)
        weights = assignment * token_weights.to(assignment.dtype).unsqueeze(-1)
        # sum_n w_nk (e_n - c_k), without materialising the (batch, length, K, dim) differences
        residuals = torch.einsum("bnk,bnd->bkd", weights, tokens) - weights.sum(dim=1).unsqueeze(-1) * self.center_embeds
        residuals = F.normalize(residuals, dim=-1)
        return F.normalize(residuals.mean(dim=1), dim=-1)


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


class CLIP2VideoPreTrainedModel(CLIPPreTrainedModel):
    """Weight initialisation and loading for CLIP2Video; CLIP modules are initialised exactly as in transformers' CLIP."""

    config_class = CLIP2VideoConfig
    config: CLIP2VideoConfig
    base_model_prefix = "clip2video"
    input_modalities = ("video", "text")
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # The temporal transformers need arbitrary additive key masks, which flash/flex kernels do not take.
    _supports_flash_attn = False
    _supports_flex_attn = False
    # The loss is a contrastive loss over the batch, not a sum over tokens: transformers.Trainer must not pass
    # `num_items_in_batch` and must itself average the loss over gradient-accumulation steps.
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CLIP2VideoTemporalAlignmentBlock):
            init.normal_(module.center_weights, std=CENTER_INIT_STD)
            init.normal_(module.center_embeds, std=CENTER_INIT_STD)
        elif isinstance(module, CLIP2VideoModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    @torch.no_grad()
    def initialize_weights(self):
        """`PreTrainedModel.initialize_weights`, the CLIP towers first initialised as the transformers classes they are.

        For custom-code models transformers skips modules that hold no parameter of their own, but CLIP's
        `CLIPAttention` / `CLIPMLP` / `CLIPTextEmbeddings` initialise their children: weights missing from a checkpoint
        would get the generic `N(0, initializer_range)` instead of CLIP's initialisation (the one `__init__` gives)."""
        for tower in (self.text_model, self.vision_model):
            tower.initialize_weights()
        super().initialize_weights()


class CLIP2VideoModel(CLIP2VideoPreTrainedModel):
    """CLIP2Video for video-text retrieval.

    The CLIP parts carry exactly `CLIPModel`'s parameter names (`text_model`, `vision_model`, `text_projection`,
    `visual_projection`, `logit_scale`), so CLIP checkpoints load unchanged (see [`CLIP2VideoModel.from_clip`]). On top:
    `frame_position_embeddings` and `temporal_transformer` (global temporal head), `temporal_difference_block` (TDB) and
    `temporal_alignment_block` (TAB), each present only when the config uses it.

    Text and video never interact before the final dot product, so `get_text_features` and `get_video_features` give
    vectors whose scaled dot product is the model's similarity: an exact vector index of videos can be built once.
    """

    def __init__(self, config: CLIP2VideoConfig):
        super().__init__(config)
        text_config, vision_config = config.text_config, config.vision_config
        self.text_model = CLIPTextModel._from_config(text_config)
        self.vision_model = CLIPVisionModel._from_config(vision_config)
        self.visual_projection = nn.Linear(vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

        if config.temporal_head == "transformer":
            # One row per text position, as in the original (initialised from the text position table).
            self.frame_position_embeddings = nn.Embedding(text_config.max_position_embeddings, config.projection_dim)
            self.temporal_transformer = CLIP2VideoTemporalTransformer(config, config.num_temporal_layers)
        if config.use_tdb:
            self.temporal_difference_block = CLIP2VideoTemporalDifferenceBlock(config)
        if config.use_tab:
            self.temporal_alignment_block = CLIP2VideoTemporalAlignmentBlock(config)

        self.post_init()

    # ---------------------------------------------------------------------------------------------------- construction

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`; a checkpoint tensor whose shape does not fit the config raises
        `CheckpointMismatchError` naming the tensors and both shapes (transformers raises a bare `RuntimeError` after
        its load report), unless `ignore_mismatched_sizes=True` asks for those tensors to be initialised anew."""
        if kwargs.get("ignore_mismatched_sizes"):
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        with_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, ignore_mismatched_sizes=True,
                                              output_loading_info=True, **kwargs)
        if info["mismatched_keys"]:
            shown = ", ".join(f"{key} (checkpoint {tuple(saved)}, config {tuple(expected)})"
                              for key, saved, expected in sorted(info["mismatched_keys"])[:5])
            raise CheckpointMismatchError(f"{pretrained_model_name_or_path}: {len(info['mismatched_keys'])} tensors do "
                                          f"not fit its config.json: {shown}")
        return (model, info) if with_info else model

    @classmethod
    def from_clip(cls, clip: "str | CLIPModel", **config_kwargs) -> "CLIP2VideoModel":
        """Build a CLIP2Video model on a pretrained CLIP and initialise the temporal blocks as the original does.

        Args:
            clip: a `CLIPModel`, or a Hub id / local directory that `CLIPModel.from_pretrained` loads
                (e.g. `"openai/clip-vit-base-patch32"`).
            config_kwargs: temporal options of [`CLIP2VideoConfig`] (`num_frames`, `use_tdb`, `num_centers`, ...).

        The CLIP weights are copied unchanged. New modules, initialised as the original's `from_pretrained` (`modules/modeling.py`) does: the frame position table is a copy of the text
        position table; TDB type embeddings are its first two rows; the temporal transformer's layers and the one-layer
        TDB/TAB transformers are copies of the first text layers; the MLP difference projection is the first
        `projection_dim` rows of the visual projection; the TAB centers are random `N(0, 64**-0.5)`.
        """
        if not isinstance(clip, CLIPModel):
            clip = CLIPModel.from_pretrained(clip)
        clip_config = clip.config
        config = CLIP2VideoConfig(
            text_config=clip_config.text_config.to_dict(),
            vision_config=clip_config.vision_config.to_dict(),
            projection_dim=clip_config.projection_dim,
            logit_scale_init_value=float(clip.logit_scale.detach()),
            **config_kwargs,
        )
        model = cls(config)
        clip_state = {name: tensor.float() for name, tensor in clip.state_dict().items()}
        incompatible = model.load_state_dict(clip_state, strict=False)
        own_clip_keys = [key for key in incompatible.missing_keys if key.split(".")[0] in CLIP_MODULES]
        if incompatible.unexpected_keys or own_clip_keys:
            raise ValueError(
                f"CLIP weights do not fit the model: unexpected {incompatible.unexpected_keys}, missing {own_clip_keys}"
            )
        model.initialize_temporal_from_clip()
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with the custom pipelines that `config.custom_pipelines` names: the remote
        code written next to the model includes `pipeline_clip2video.py` (imported here so that transformers copies
        it), so `pipeline("zero-shot-video-classification", model=folder, trust_remote_code=True)` loads the folder."""
        try:  # as remote code; the line is what makes transformers copy the pipeline file
            from .pipeline_clip2video import ZeroShotVideoClassificationPipeline  # noqa: F401
        except ImportError:  # the installed project: `custom_object_save` reads the line above all the same
            pass
        # a pipeline built from this model replaced the class names by classes (transformers' `clean_custom_task`)
        self.config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _upload_modified_files(self, working_dir, repo_id: str, *args, **kwargs):
        """The upload of `push_to_hub`, with the project's model card instead of transformers' placeholder (the card
        of the folder the model came from, with its metrics and data; see `hub_clip2video.write_push_card`)."""
        write_push_card(working_dir, repo_id, self.name_or_path, self.config, self.num_parameters())
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    @torch.no_grad()
    def initialize_temporal_from_clip(self) -> None:
        """Overwrite the new modules with copies of the CLIP text tower, as the original does when it starts from CLIP
        (see `from_clip`). The TAB centers keep their random initialisation."""
        text_positions = self.text_model.embeddings.position_embedding.weight
        text_layers = self.text_model.encoder.layers
        if self.config.temporal_head == "transformer":
            self.frame_position_embeddings.weight.copy_(text_positions)
            _copy_layers(text_layers, self.temporal_transformer.layers)
        if self.config.use_tdb:
            tdb = self.temporal_difference_block
            tdb.type_embeddings.weight.copy_(text_positions[: tdb.type_embeddings.num_embeddings])
            if tdb.projection_type == "attention":
                _copy_layers(text_layers, tdb.difference_attention.layers)
            elif tdb.projection_type == "mlp":
                dim = self.config.projection_dim
                if self.visual_projection.in_features < dim:
                    raise ValueError("the MLP difference projection is initialised from the visual projection's first "
                                     f"{dim} input rows, but the vision width is {self.visual_projection.in_features}")
                tdb.difference_projection.weight.copy_(self.visual_projection.weight[:, :dim])
            if tdb.projection_type != "none":
                tdb.difference_layer_norm.reset_parameters()
        if self.config.use_tab and self.config.tab_input != "none":
            _copy_layers(text_layers, self.temporal_alignment_block.frame_encoder.layers)

    def cast_clip_towers(self, dtype: torch.dtype = torch.float16) -> "CLIP2VideoModel":
        """Run the CLIP towers (and their projections) in `dtype` while the temporal blocks stay in their precision.

        The original evaluated its released checkpoints with fp16 CLIP towers and fp32 temporal blocks, so its published
        numbers are fp16-tower numbers; `model.cast_clip_towers(torch.float16)` reproduces that setting: weights and
        embeddings in `dtype`, LayerNorms with fp32 parameters computing in fp32 and returning `dtype` (as the original's
        LayerNorm), tower outputs cast back to the temporal blocks' dtype.
        """
        for tower in (self.text_model, self.vision_model, self.text_projection, self.visual_projection):
            for module in tower.modules():
                if not isinstance(module, nn.LayerNorm):
                    for name, parameter in module.named_parameters(recurse=False):
                        parameter.data = parameter.data.to(dtype)
        return self

    # ------------------------------------------------------------------------------------------------------------ text

    def _encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None, BaseModelOutputWithPooling]:
        """Unit text embeddings `t_g` `(batch, projection_dim)` and, with TAB, `t_c` `(batch, projection_dim)` (else
        None), and the text tower's outputs (hidden states / attentions on request through `kwargs`).

        `input_ids` `(batch, length)`: start token, text, end token, padding; `attention_mask` `(batch, length)`, 1 on
        start..end tokens, is used by TAB only (the start token is left out of the TAB pooling, as in the original);
        the text tower is causal, so padding never reaches the used positions. Defaults to all ones.
        """
        text_outputs = self.text_model(input_ids=input_ids, return_dict=True, **kwargs)
        head_dtype = self.logit_scale.dtype  # the towers may run in lower precision (see `cast_clip_towers`)
        end_embeds = self.text_projection(text_outputs.pooler_output).to(head_dtype)
        token_embeds = self.text_projection(text_outputs.last_hidden_state).to(head_dtype) if self.config.use_tab else None
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return *self._text_embeds_from_states(end_embeds, token_embeds, attention_mask), text_outputs

    def _text_embeds_from_states(
        self, end_embeds: torch.Tensor, token_embeds: torch.Tensor | None, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`t_g` and (with TAB) `t_c` from projected text-tower states: the end-token state `(batch, dim)` and every
        token's state `(batch, length, dim)` (None without TAB); the start token is left out of the TAB pooling."""
        text_global = F.normalize(end_embeds, dim=-1)
        if not self.config.use_tab:
            return text_global, None
        token_weights = attention_mask.to(token_embeds.dtype).clone()
        token_weights[:, 0] = 0.0  # the start token does not take part in TAB
        return text_global, self.temporal_alignment_block(token_embeds, token_weights)

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling | tuple:
        """Encode captions; the retrieval embeddings `(batch, config.retrieval_embed_dim)` are the `pooler_output`.

        As transformers' `CLIPModel.get_text_features`, this returns the text tower's [`BaseModelOutputWithPooling`]
        (`last_hidden_state` `(batch, length, text_hidden_size)`, `hidden_states` / `attentions` with
        `output_hidden_states=True` / `output_attentions=True`) whose `pooler_output` is the retrieval vector, or its
        tuple with `return_dict=False` (the vector is then element 1).

        With TAB the vector is `[sqrt(cw) * t_g, sqrt(1 - cw) * t_c]`, so that
        `logit_scale.exp() * text.pooler_output @ video.pooler_output.T` (with `text = get_text_features(...)`,
        `video = get_video_features(...)`) is exactly the model's similarity (`cw` = `config.center_weight`). Captions
        and videos can thus be encoded independently and searched with one matrix product or any exact inner-product
        vector index.

        Example:

        ```python
        >>> text = model.get_text_features(input_ids, attention_mask).pooler_output  # (captions, retrieval_embed_dim)
        ```
        """
        _check_model_kwargs("get_text_features", kwargs)
        text_global, text_alignment, text_outputs = self._encode_text(input_ids, attention_mask, **kwargs)
        text_outputs.pooler_output = self._retrieval_embeds(text_global, text_alignment)
        return text_outputs

    # ----------------------------------------------------------------------------------------------------------- video

    def _encode_frames(
        self, pixel_values: torch.Tensor, video_mask: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, BaseModelOutputWithPooling]:
        """Projected CLIP features of every frame, `(batch, frames, projection_dim)`, not normalised, and the vision
        tower's outputs with every per-frame tensor laid out `(batch, frames, ...)`; hidden states / attentions on
        request (`kwargs`).

        With `config.original_padding` padded frames are encoded like real ones (their features enter TDB); otherwise
        they are skipped and their features (and tower outputs) are zeros (every token touching them is masked).

        Without `original_padding` only the valid frames go through the tower, except in a traced graph
        (`torch.compile`, `torch.export`), which encodes every frame and zeroes the padded ones: a data-dependent
        number of frames breaks inductor's convolution.
        """
        batch, num_frames = video_mask.shape
        pixels = pixel_values.flatten(0, 1).to(self.vision_model.embeddings.patch_embedding.weight.dtype)
        valid = None if self.config.original_padding else video_mask.flatten().bool()
        valid_only = valid is not None and not is_tracing(pixels)
        vision_outputs = self.vision_model(pixel_values=pixels[valid] if valid_only else pixels, return_dict=True, **kwargs)
        features = self.visual_projection(vision_outputs.pooler_output)

        def per_video(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else _frames_per_video(values, batch, num_frames, valid, valid_only)

        for key, value in vision_outputs.items():
            vision_outputs[key] = tuple(map(per_video, value)) if isinstance(value, tuple) else per_video(value)
        return per_video(features).to(self.logit_scale.dtype), vision_outputs

    def _encode_video(
        self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, BaseModelOutputWithPooling]:
        """Unit video embeddings `v_g` and (with TAB, else None) `v_c`, both `(batch, projection_dim)`, the frame
        features `(batch, frames, projection_dim)` and the vision tower's outputs (see `_encode_frames`). Arguments as
        in `get_video_features`."""
        video_mask = self._check_video_inputs(pixel_values, video_mask)
        frame_embeds, vision_outputs = self._encode_frames(pixel_values, video_mask, **kwargs)
        video_global = self._global_video_embeds(frame_embeds, video_mask)
        video_alignment = self._alignment_video_embeds(frame_embeds, video_mask) if self.config.use_tab else None
        return video_global, video_alignment, frame_embeds, vision_outputs

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling | tuple:
        """Encode videos; the retrieval embeddings `(batch, config.retrieval_embed_dim)` are the `pooler_output`.

        Args:
            pixel_values: `(batch, frames, 3, height, width)` normalised frames; padded frames are zeros.
            video_mask: `(batch, frames)`, 1 for real frames (leading ones). Defaults to all ones.

        As transformers' `XCLIPModel.get_video_features`, this returns the vision tower's
        [`BaseModelOutputWithPooling`] over the frames, here laid out per video: `last_hidden_state`
        `(batch, frames, patches + 1, vision_hidden_size)` and, on request (`output_hidden_states=True` /
        `output_attentions=True`), `hidden_states` / `attentions` with the same two leading dimensions (zeros at padded
        frames when `config.original_padding=False`, which skips them); `pooler_output` is the retrieval vector. With
        `return_dict=False` it is the tuple (the vector is element 1).

        With TAB the vector is `[sqrt(cw) * v_g, sqrt(1 - cw) * v_c]`: `logit_scale.exp() * text @ video.T` equals the
        original inference similarity (see `get_text_features`). A video's embedding does not depend on the other
        videos of the batch.

        Example:

        ```python
        >>> video = model.get_video_features(pixel_values, video_mask).pooler_output  # (videos, retrieval_embed_dim)
        ```
        """
        _check_model_kwargs("get_video_features", kwargs)
        video_global, video_alignment, _, vision_outputs = self._encode_video(pixel_values, video_mask, **kwargs)
        vision_outputs.pooler_output = self._retrieval_embeds(video_global, video_alignment)
        return vision_outputs

    # --------------------------------------------------------------------------------------------------------- forward

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
        return_loss: bool = True,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CLIP2VideoOutput | tuple:
        """Similarities of every caption with every video and the original training loss (caption `i` pairs with
        video `i`).

        Args:
            input_ids: `(text_batch, length)` CLIP token ids; attention_mask: `(text_batch, length)`, 1 = real token.
            pixel_values: `(video_batch, frames, 3, height, width)`; video_mask: `(video_batch, frames)`, 1 = real frame.
            return_loss: compute [`clip2video_loss`] when the batch is paired (`text_batch == video_batch`); the loss
                is None for other batches (a similarity matrix of any captions against any videos). On by default so
                that `transformers.Trainer` trains and evaluates the model with a stock collator; `False` skips it.
            kwargs: `output_attentions` / `output_hidden_states` (the towers' attentions / hidden states in
                `text_model_output` / `vision_model_output`, as `CLIPModel`), `return_dict`; any other keyword that
                transformers models do not take raises `TypeError`.
        """
        _check_model_kwargs("forward", kwargs)
        if input_ids is None or pixel_values is None:
            raise ValueError("CLIP2VideoModel.forward needs both `input_ids` and `pixel_values`; use "
                             "`get_text_features` / `get_video_features` to encode one side only")
        text_global, text_alignment, text_outputs = self._encode_text(input_ids, attention_mask, **kwargs)
        video_global, video_alignment, frame_embeds, vision_outputs = self._encode_video(
            pixel_values, video_mask, **kwargs
        )
        text_embeds = self._retrieval_embeds(text_global, text_alignment)
        video_embeds = self._retrieval_embeds(video_global, video_alignment)
        logits_per_text = self.logit_scale.exp() * text_embeds @ video_embeds.t()

        loss = None
        if return_loss and text_embeds.shape[0] == video_embeds.shape[0]:
            loss = clip2video_loss(
                text_global, video_global, self.logit_scale, self.config.center_weight, text_alignment, video_alignment
            )
        return CLIP2VideoOutput(
            loss=loss,
            logits_per_text=logits_per_text,
            logits_per_video=logits_per_text.t(),
            text_embeds=text_embeds,
            video_embeds=video_embeds,
            text_global_embeds=text_global,
            video_global_embeds=video_global,
            text_alignment_embeds=text_alignment,
            video_alignment_embeds=video_alignment,
            frame_embeds=frame_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )

    # --------------------------------------------------------------------------------------------------------- helpers

    def _contextualize_frames(
        self, frame_embeds: torch.Tensor, frame_mask: torch.Tensor, encoder: CLIP2VideoTemporalTransformer, use_tdb: bool
    ) -> torch.Tensor:
        """Temporal encoding with a residual: frames (+ TDB tokens) with positions through `encoder`, frame outputs
        plus the input features. `(batch, T, dim)` -> `(batch, T, dim)`."""
        positions = self.frame_position_embeddings(torch.arange(frame_embeds.shape[1], device=frame_embeds.device))
        if use_tdb:
            tokens, token_mask = self.temporal_difference_block(frame_embeds, frame_mask, positions)
            hidden = encoder(tokens, token_mask)[:, ::2]  # the frame tokens
        else:
            hidden = encoder(frame_embeds + positions, frame_mask)
        return hidden + frame_embeds

    def _global_video_embeds(self, frame_embeds: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """`v_g` (original: `_similarity` / `_similarity_TDB`): normalised frame outputs, masked mean, normalised."""
        if self.config.temporal_head == "transformer":
            frame_embeds = self._contextualize_frames(
                frame_embeds, video_mask, self.temporal_transformer, self.config.use_tdb
            )
        return F.normalize(_masked_mean(F.normalize(frame_embeds, dim=-1), video_mask), dim=-1)

    def _alignment_video_embeds(self, frame_embeds: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """`v_c`: TAB over the frame features and, unless `tab_input="none"`, the temporally encoded every-second frames."""
        tokens, weights = frame_embeds, video_mask
        if self.config.tab_input != "none":
            sub_frames, sub_mask = frame_embeds[:, ::2], video_mask[:, ::2]
            encoded = self._contextualize_frames(
                sub_frames, sub_mask, self.temporal_alignment_block.frame_encoder, self.config.tab_input == "tdb"
            )
            tokens, weights = torch.cat((frame_embeds, encoded), dim=1), torch.cat((video_mask, sub_mask), dim=1)
        return self.temporal_alignment_block(tokens, weights)

    def _retrieval_embeds(self, global_embeds: torch.Tensor, alignment_embeds: torch.Tensor | None) -> torch.Tensor:
        """`[sqrt(cw) * global, sqrt(1 - cw) * alignment]`, or `global` alone without TAB."""
        if alignment_embeds is None:
            return global_embeds
        weight = self.config.center_weight
        return torch.cat((weight**0.5 * global_embeds, (1 - weight) ** 0.5 * alignment_embeds), dim=-1)

    def _check_video_inputs(self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None) -> torch.Tensor:
        """Validate shapes and masks; returns the mask (all ones when None)."""
        if pixel_values.dim() != 5:
            raise ValueError(
                f"`pixel_values` must be (batch, frames, channels, height, width), got shape {tuple(pixel_values.shape)}"
            )
        batch, num_frames = pixel_values.shape[:2]
        if video_mask is None:
            video_mask = torch.ones(batch, num_frames, dtype=torch.long, device=pixel_values.device)
        if video_mask.shape != (batch, num_frames):
            raise ValueError(f"`video_mask` must have shape {(batch, num_frames)}, got {tuple(video_mask.shape)}")
        max_frames = self.config.text_config.max_position_embeddings
        if self.config.temporal_head == "transformer" and num_frames > max_frames:
            raise ValueError(f"{num_frames} frames per video exceed the frame position table ({max_frames} rows)")
        # transformers' traceable check: a ValueError in eager mode, a runtime assertion in compiled / exported graphs
        has_frame = video_mask.bool().any(dim=1)
        torch_compilable_check(
            has_frame,
            lambda: f"videos {(~has_frame).nonzero().flatten().tolist()} of the batch have no valid frame "
            "(`video_mask` is all zeros)",
        )
        return video_mask


CLIP2VideoModel.register_for_auto_class("AutoModel")


def _check_model_kwargs(method: str, kwargs: dict[str, Any]) -> None:
    """Raise `TypeError` for keyword arguments outside transformers' model kwargs (`TransformersKwargs`: the
    `output_attentions` / `output_hidden_states` flags and friends), so that a typo is not silently ignored."""
    unknown = sorted(set(kwargs) - set(TransformersKwargs.__annotations__))
    if unknown:
        raise TypeError(f"CLIP2VideoModel.{method}() got unexpected keyword arguments {unknown}")


def _frames_per_video(
    values: torch.Tensor, batch: int, num_frames: int, valid: torch.Tensor | None, valid_only: bool
) -> torch.Tensor:
    """Per-frame values `(frames encoded, ...)` -> `(batch, num_frames, ...)`, zeros at the frames that `valid`
    `(batch * num_frames,)` marks invalid (None: keep every frame). `valid_only`: `values` holds only the valid frames."""
    if valid is not None:
        if valid_only:
            values = values.new_zeros(batch * num_frames, *values.shape[1:]).index_put((valid,), values)
        else:
            values = values.masked_fill(~valid.view(-1, *[1] * (values.dim() - 1)), 0)
    return values.unflatten(0, (batch, num_frames))


@torch.no_grad()
def _copy_layers(source: nn.ModuleList, target: nn.ModuleList) -> None:
    """Copy the parameters of `source[i]` into `target[i]` for the layers both stacks have."""
    for source_layer, target_layer in zip(source, target):
        target_layer.load_state_dict(source_layer.state_dict())


__all__ = [
    "CheckpointMismatchError",
    "CLIP2VideoModel",
    "CLIP2VideoOutput",
    "CLIP2VideoPreTrainedModel",
    "CLIP2VideoTemporalAlignmentBlock",
    "CLIP2VideoTemporalDifferenceBlock",
    "CLIP2VideoTemporalTransformer",
    "CLIP_MODULES",
]
