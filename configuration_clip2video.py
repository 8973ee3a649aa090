# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""CLIP2Video model configuration."""

import copy
import math
import os
from typing import Any

from transformers import CLIPTextConfig, CLIPVisionConfig, PretrainedConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)

TEMPORAL_HEADS = ("mean", "transformer")
TDB_PROJECTIONS = ("attention", "mlp", "none")
TAB_INPUTS = ("tdb", "plain", "none")
# Upper bounds far above any CLIP (ViT-bigG: 48 layers, width 1664): a typo such as `num_temporal_layers: 1000000000`
# is refused at construction instead of building a model for hours.
MAX_LAYERS = 256
MAX_WIDTH = 16384
MAX_CENTERS = 1024
MAX_VOCAB_SIZE = 1_000_000
MAX_POSITIONS = 65536
MAX_IMAGE_SIZE = 8192
MAX_PARAMETERS = 20_000_000_000
#: The custom pipelines of every CLIP2Video model (`pipeline_clip2video.py`, written next to the model by
#: `CLIP2VideoModel.save_pretrained`), in the form `Pipeline.save_pretrained` writes into `config.custom_pipelines`.
CUSTOM_PIPELINES = {
    "zero-shot-video-classification": {"impl": "pipeline_clip2video.ZeroShotVideoClassificationPipeline",
                                       "pt": ["AutoModel"], "type": "multimodal"},
    "feature-extraction": {"impl": "pipeline_clip2video.CLIP2VideoFeatureExtractionPipeline", "pt": ["AutoModel"],
                           "type": "multimodal"},
}
#: The pipeline `pipeline(model=folder, trust_remote_code=True)` builds when no task is named (see
#: `CLIP2VideoConfig.from_pretrained`); the other one is reached by its task name.
DEFAULT_PIPELINE_TASK = "zero-shot-video-classification"


class CLIP2VideoConfig(PretrainedConfig):
    r"""
    Configuration of a [`CLIP2VideoModel`]: a CLIP text tower and a CLIP vision tower (as in [`CLIPConfig`]) plus the
    temporal blocks of CLIP2Video (Fang et al., 2021, arXiv 2106.11097): a temporal transformer over frame features,
    the Temporal Difference Block (TDB) and the Temporal Alignment Block (TAB).

    The defaults reproduce the released MSR-VTT model: ViT-B/32 towers, 12 frames, a 4-layer temporal transformer, TDB
    with difference-level attention, TAB fed by the shared TDB, 5 centers, center weight 0.5, and the original's padding
    semantics. The original repository's command-line options map onto these fields as follows (see
    `convert_original_checkpoint.py`):

    | original option | field |
    |---|---|
    | `--max_frames` | `num_frames` |
    | `--sim_type meanP / seqTransf` | `temporal_head="mean" / "transformer"` |
    | `--cross_num_hidden_layers` | `num_temporal_layers` |
    | `--temporal_type TDB` | `use_tdb=True` |
    | `--temporal_proj sigmoid_selfA / sigmoid_mlp / ''` | `tdb_projection="attention" / "mlp" / "none"` |
    | `--center_type TAB` | `use_tab=True` |
    | `--center_proj TAB_TDB / TAB / ''` | `tab_input="tdb" / "plain" / "none"` |
    | `--centerK` | `num_centers` |
    | `--center_weight` | `center_weight` |

    Args:
        text_config (`dict` or [`CLIPTextConfig`], *optional*):
            Configuration of the CLIP text tower. Defaults to CLIP ViT-B/32's (width 512, 12 layers, 77 positions).
        vision_config (`dict` or [`CLIPVisionConfig`], *optional*):
            Configuration of the CLIP vision tower. Defaults to CLIP ViT-B/32's (width 768, 12 layers, patch 32, 224 px).
        projection_dim (`int`, *optional*, defaults to 512):
            Width `D` of the joint embedding space. The temporal blocks work in this space and are initialised from the
            text tower's layers, so it must equal `text_config.hidden_size` (true for every OpenAI CLIP).
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial value of the learnable log temperature (CLIP's `ln(1/0.07)`).
        num_frames (`int`, *optional*, defaults to 12):
            Frames per video `T` (the original's `max_frames`). Videos may have fewer valid frames (see `video_mask`);
            at most `text_config.max_position_embeddings`, the number of rows of the frame position table.
        temporal_head (`str`, *optional*, defaults to `"transformer"`):
            How frame features become the global video embedding: `"mean"` (mean pooling of normalised frame features)
            or `"transformer"` (temporal transformer with a residual connection, then mean pooling).
        num_temporal_layers (`int`, *optional*, defaults to 4):
            Layers of the temporal transformer (the original's `cross_num_hidden_layers`).
        use_tdb (`bool`, *optional*, defaults to `True`):
            Insert a Temporal Difference Block token between every two adjacent frames. Needs
            `temporal_head="transformer"`.
        tdb_projection (`str`, *optional*, defaults to `"attention"`):
            How TDB encodes a difference of adjacent frame features: `"attention"` (one transformer layer over the
            differences, then `2*sigmoid(LayerNorm(.))-1`), `"mlp"` (`2*sigmoid(LayerNorm(diff @ W))-1`) or `"none"`
            (the plain subtraction).
        use_tab (`bool`, *optional*, defaults to `True`):
            Add the Temporal Alignment Block: text tokens and frame tokens are softly assigned to `num_centers` shared
            centers and compared as aggregated center residuals; its similarity is mixed with the global one.
        tab_input (`str`, *optional*, defaults to `"tdb"`):
            Extra video tokens that TAB sees besides the frame features, computed on every second frame by a one-layer
            transformer: `"tdb"` (with the shared TDB inserting difference tokens), `"plain"` (frames only) or
            `"none"` (no extra tokens). `"tdb"` needs `use_tdb`; `"tdb"` and `"plain"` need
            `temporal_head="transformer"`.
        num_centers (`int`, *optional*, defaults to 5):
            Number of TAB centers `K` (the released VATEX model uses 7).
        center_weight (`float`, *optional*, defaults to 0.5):
            Weight `cw` of the global similarity; TAB gets `1 - cw`. Used both at inference and in the loss.
        original_padding (`bool`, *optional*, defaults to `True`):
            Reproduce the original's handling of padded frames: the zero-filled padding frames are encoded by CLIP like
            real frames and the TDB token between the last real frame and the first padded frame counts as valid, so
            the padding leaks into the embedding. Converted checkpoints need this to give the published numbers. With
            `False`, padded frames are never encoded and every token touching one is masked, so a video's embedding
            does not depend on how much padding it carries.
        temporal_layer_norm_eps (`float`, *optional*, defaults to 1e-12):
            LayerNorm epsilon inside the temporal transformer layers (the original's hand-written LayerNorm).
        initializer_factor (`float`, *optional*, defaults to 1.0):
            Scale of CLIP's weight initialisation (as in [`CLIPConfig`]).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of new linear and embedding weights.

    Example:

    ```python
    >>> from configuration_clip2video import CLIP2VideoConfig
    >>> from modeling_clip2video import CLIP2VideoModel

    >>> config = CLIP2VideoConfig(num_frames=8, num_centers=7)  # ViT-B/32 towers, VATEX-like TAB
    >>> model = CLIP2VideoModel(config)  # random weights; use `CLIP2VideoModel.from_clip(...)` to start from CLIP
    >>> config.retrieval_embed_dim
    1024
    ```
    """

    model_type = "clip2video"
    # Per-layer tower states are not predictions: transformers.Trainer leaves them out of what it gathers at evaluation.
    keys_to_ignore_at_inference = ["text_model_output", "vision_model_output"]
    sub_configs_defaults = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}

    text_config: dict | CLIPTextConfig | None = None
    vision_config: dict | CLIPVisionConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    num_frames: int = 12
    temporal_head: str = "transformer"
    num_temporal_layers: int = 4
    use_tdb: bool = True
    tdb_projection: str = "attention"
    use_tab: bool = True
    tab_input: str = "tdb"
    num_centers: int = 5
    center_weight: float = 0.5
    original_padding: bool = True
    temporal_layer_norm_eps: float = 1e-12
    initializer_factor: float = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        # `pipeline(task, model=folder, trust_remote_code=True)` finds the project's pipelines here
        self.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        self._check_towers()
        self._check_temporal_options()
        parameters = self.estimated_num_parameters()
        if parameters > MAX_PARAMETERS:
            raise ValueError(f"these sizes give about {parameters / 1e9:.0f} B parameters (more than "
                             f"{MAX_PARAMETERS / 1e9:.0f} B): check the widths and layer counts of config.json")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """`PretrainedConfig.from_pretrained`, offering only the default pipeline to a `pipeline()` call without a task.

        transformers' `pipeline(model=..., trust_remote_code=True)` loads the config with `_from_pipeline=None` when no
        task is given, and infers the task only when `config.custom_pipelines` names exactly one: the config then
        names `DEFAULT_PIPELINE_TASK` alone (the model's own config, and every folder it saves, keep both).
        """
        untasked_pipeline = "_from_pipeline" in kwargs and kwargs["_from_pipeline"] is None
        loaded = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if untasked_pipeline:
            config = loaded[0] if isinstance(loaded, tuple) else loaded
            config.custom_pipelines = {DEFAULT_PIPELINE_TASK: copy.deepcopy(CUSTOM_PIPELINES[DEFAULT_PIPELINE_TASK])}
        return loaded

    @property
    def retrieval_embed_dim(self) -> int:
        """Width of the vectors returned by `get_text_features` / `get_video_features`: `2 * projection_dim` with TAB
        (global part and TAB part concatenated), `projection_dim` without."""
        return self.projection_dim * (2 if self.use_tab else 1)

    def _check_towers(self) -> None:
        """Raise `ValueError` naming the field for a tower size that cannot build a model (transformers checks types
        and head divisibility, not signs or sizes: a vision `hidden_size` of -32 would fail deep inside torch)."""
        for prefix, tower in (("text_config", self.text_config), ("vision_config", self.vision_config)):
            for name, maximum in (("hidden_size", MAX_WIDTH), ("intermediate_size", 4 * MAX_WIDTH),
                                  ("num_hidden_layers", MAX_LAYERS), ("num_attention_heads", MAX_WIDTH)):
                _require_int(f"{prefix}.{name}", getattr(tower, name), minimum=1, maximum=maximum)
            _require_positive_number(f"{prefix}.layer_norm_eps", tower.layer_norm_eps)
        _require_int("text_config.vocab_size", self.text_config.vocab_size, minimum=1, maximum=MAX_VOCAB_SIZE)
        _require_int("text_config.max_position_embeddings", self.text_config.max_position_embeddings, minimum=1,
                     maximum=MAX_POSITIONS)
        vision = self.vision_config
        _require_int("vision_config.image_size", vision.image_size, minimum=1, maximum=MAX_IMAGE_SIZE)
        _require_int("vision_config.patch_size", vision.patch_size, minimum=1, maximum=vision.image_size)
        _require_int("vision_config.num_channels", vision.num_channels, minimum=1, maximum=4)

    def estimated_num_parameters(self) -> int:
        """Rough parameter count from the sizes (transformer layers and embedding tables), without building the model."""
        text, vision = self.text_config, self.vision_config

        def layers(count: int, width: int, inner: int) -> int:
            return count * (4 * width * width + 2 * width * inner)

        temporal = self.num_temporal_layers + 2  # the global stack, the TDB and TAB one-layer transformers
        patches = (vision.image_size // vision.patch_size) ** 2
        return (layers(text.num_hidden_layers, text.hidden_size, text.intermediate_size)
                + layers(vision.num_hidden_layers, vision.hidden_size, vision.intermediate_size)
                + layers(temporal, text.hidden_size, text.intermediate_size)
                + (text.vocab_size + text.max_position_embeddings) * text.hidden_size
                + (patches + 1 + vision.patch_size**2 * vision.num_channels) * vision.hidden_size)

    def _check_temporal_options(self) -> None:
        """Raise `ValueError` naming the field for any invalid or inconsistent temporal option."""
        _require_int("projection_dim", self.projection_dim, minimum=1, maximum=MAX_WIDTH)
        _require_int("num_frames", self.num_frames, minimum=1)
        _require_int("num_temporal_layers", self.num_temporal_layers, minimum=1, maximum=MAX_LAYERS)
        _require_int("num_centers", self.num_centers, minimum=1, maximum=MAX_CENTERS)
        for name in ("use_tdb", "use_tab", "original_padding"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, got {getattr(self, name)!r}")
        _require_choice("temporal_head", self.temporal_head, TEMPORAL_HEADS)
        _require_choice("tdb_projection", self.tdb_projection, TDB_PROJECTIONS)
        _require_choice("tab_input", self.tab_input, TAB_INPUTS)
        if isinstance(self.center_weight, bool) or not isinstance(self.center_weight, (int, float)):
            raise ValueError(f"`center_weight` must be a number in [0, 1], got {self.center_weight!r}")
        if not 0.0 <= float(self.center_weight) <= 1.0:
            raise ValueError(f"`center_weight` must be in [0, 1], got {self.center_weight}")
        _require_positive_number("temporal_layer_norm_eps", self.temporal_layer_norm_eps)
        _require_number("logit_scale_init_value", self.logit_scale_init_value)
        for name in ("initializer_factor", "initializer_range"):
            _require_number(name, getattr(self, name), minimum=0.0)

        if self.projection_dim != self.text_config.hidden_size:
            raise ValueError(
                f"`projection_dim` ({self.projection_dim}) must equal `text_config.hidden_size` "
                f"({self.text_config.hidden_size}): the temporal blocks are text-tower layers working in the joint space"
            )
        max_frames = self.text_config.max_position_embeddings
        if self.num_frames > max_frames:
            raise ValueError(
                f"`num_frames` ({self.num_frames}) exceeds the frame position table, which has "
                f"`text_config.max_position_embeddings` = {max_frames} rows"
            )
        if self.use_tdb and self.temporal_head != "transformer":
            raise ValueError("`use_tdb=True` needs `temporal_head='transformer'` (TDB tokens feed the temporal transformer)")
        if self.use_tab and self.tab_input == "tdb" and not self.use_tdb:
            raise ValueError("`tab_input='tdb'` shares the TDB's parameters and needs `use_tdb=True`")
        if self.use_tab and self.tab_input != "none" and self.temporal_head != "transformer":
            raise ValueError(
                f"`tab_input='{self.tab_input}'` uses the frame position table and needs `temporal_head='transformer'`"
            )


def _require_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be an integer {bounds}, got {value!r}")


def _require_number(name: str, value: Any, minimum: float | None = None) -> None:
    """A finite int or float (not a bool), at least `minimum` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            minimum is not None and value < minimum):
        bounds = "a finite number" if minimum is None else f"a finite number >= {minimum}"
        raise ValueError(f"`{name}` must be {bounds}, got {value!r}")


def _require_positive_number(name: str, value: Any) -> None:
    _require_number(name, value, minimum=0.0)
    if value <= 0:
        raise ValueError(f"`{name}` must be positive, got {value!r}")


def _require_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")


CLIP2VideoConfig.register_for_auto_class()

__all__ = ["CUSTOM_PIPELINES", "CLIP2VideoConfig"]
