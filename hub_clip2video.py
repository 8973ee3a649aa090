# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The project's model card on the Hub for `model.push_to_hub` / `processor.push_to_hub`.

transformers uploads a placeholder card ("This is the model card of a 🤗 transformers model...") when the target
repository has none. CLIP2Video models and processors replace it, just before the upload, by the project's card:

1. the card of the folder the model (or processor) was loaded from, when it is a CLIP2Video card (`run_retrieval.py`
   and the converter write one, with the metrics, the data and the usage snippet);
2. else the card the target repository already has, when it is a CLIP2Video card (a processor pushed after its model);
3. else a card built by `build_model_card` (below: usage snippet, `library_name`, licence,
   architecture), when the project is installed.

The usage snippet of the card names the repository pushed to. Shipped with every model folder (remote code), so a
model loaded with `trust_remote_code=True` keeps its card when pushed again.
"""

from __future__ import annotations

import logging
import re
from typing import Sequence
from pathlib import Path


logger = logging.getLogger(__name__)

#: The Hub tag every CLIP2Video model card carries (the first of `MODEL_CARD_TAGS`).
CARD_TAG = "clip2video"


#: Hub tags of every CLIP2Video model card (`custom_code`: the model loads with `trust_remote_code=True`).
MODEL_CARD_TAGS = ("clip2video", "video-text-retrieval", "video-retrieval", "custom_code")
PAPER = "CLIP2Video (Fang et al., [arXiv 2106.11097](https://arxiv.org/abs/2106.11097))"


def usage_snippet(repo: str, config, with_processor: bool) -> str:
    """A Python block loading `repo` with `trust_remote_code=True` and computing the retrieval similarity.

    `config` (a `CLIP2VideoConfig`) gives the shapes quoted in the comments; without a saved processor the snippet
    starts from token ids and pixel values.
    """
    dim, frames, size = config.retrieval_embed_dim, config.num_frames, config.vision_config.image_size
    lines = ["import torch", "from transformers import AutoModel" + (", AutoProcessor" if with_processor else ""), "",
             f'model = AutoModel.from_pretrained("{repo}", trust_remote_code=True).eval()']
    if with_processor:
        lines += [f'processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)',
                  'inputs = processor(text=["a red square moves from left to right"], videos=["video.mp4"], '
                  'return_tensors="pt")',
                  "with torch.no_grad():",
                  '    text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output',
                  '    video = model.get_video_features(inputs["pixel_values"], inputs["video_mask"]).pooler_output',
                  f"# text: (captions, {dim}), video: (videos, {dim})"]
    else:
        lines += ["with torch.no_grad():",
                  "    text = model.get_text_features(input_ids, attention_mask).pooler_output",
                  f"    video = model.get_video_features(pixel_values, video_mask).pooler_output  # pixel_values: "
                  f"(videos, {frames}, 3, {size}, {size})",
                  f"# text: (captions, {dim}), video: (videos, {dim})"]
    lines.append("similarity = model.logit_scale.exp() * text @ video.T  # index `video` once, search with one matrix "
                 "product")
    return "```python\n" + "\n".join(lines) + "\n```"


def architecture_summary(config, num_parameters: int) -> str:
    """One paragraph naming the temporal blocks of `config` (a `CLIP2VideoConfig`) and the model's size."""
    tdb = f"`{config.tdb_projection}`" if config.use_tdb else "off"
    tab = (f"input `{config.tab_input}`, {config.num_centers} centers, center weight {config.center_weight}"
           if config.use_tab else "off")
    return (f"Temporal head `{config.temporal_head}` ({config.num_temporal_layers} layers), TDB {tdb}, TAB {tab}; "
            f"{config.num_frames} frames of {config.vision_config.image_size} px, {num_parameters / 1e6:.2f} M "
            f"parameters.")


def build_model_card(*, title: str, summary: str, repo: str, config, num_parameters: int, with_processor: bool,
                     sections: Sequence[tuple[str, str]] = (), base_model: str | None = None,
                     datasets: Sequence[str] = (), metrics: Sequence[str] = ()):
    """The Hub model card (`huggingface_hub.ModelCard`) of a CLIP2Video model folder.

    The YAML front matter is built from `ModelCardData` (MIT licence, `transformers`, feature extraction, the
    `MODEL_CARD_TAGS`, `base_model`, `datasets`, `metrics`); the text is `# title`, `summary`, a usage section with
    the `trust_remote_code=True` snippet, the `(heading, markdown)` `sections`, and the architecture. Save it with
    `write_text(folder / "README.md", str(card))`.
    """
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", license="mit", pipeline_tag="feature-extraction",
                         tags=list(MODEL_CARD_TAGS), base_model=base_model, datasets=list(datasets) or None,
                         metrics=list(metrics) or None)
    parts = [f"# {title}", summary, "## Usage", usage_snippet(repo, config, with_processor)]
    for heading, text in sections:
        parts += [f"## {heading}", text]
    parts += ["## Model", architecture_summary(config, num_parameters)]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(part.strip() for part in parts) + "\n")


def _our_card(path) -> str | None:
    """The text of the README at `path` when it is a CLIP2Video model card (its metadata has the `clip2video` tag)."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(Path(path).read_text(encoding="utf-8"), ignore_metadata_errors=True)
    except (OSError, ValueError):
        return None
    return str(card) if CARD_TAG in (card.data.tags or []) else None


def _source_card(name_or_path: str | None) -> str | None:
    """The CLIP2Video card of the folder (or cached Hub repository) an object was loaded from, if any."""
    if not name_or_path:
        return None
    from transformers.utils import cached_file

    try:
        path = cached_file(str(name_or_path), "README.md", _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    return _our_card(path) if path else None


def _built_card(repo_id: str, config, num_parameters: int | None, with_processor: bool) -> str:
    """A card from `build_model_card` for a model pushed without one of its own."""
    summary = f"A {PAPER} video-text retrieval model."
    card = build_model_card(title=f"CLIP2Video ({repo_id.split('/')[-1]})", summary=summary, repo=repo_id,
                            config=config, num_parameters=num_parameters or config.estimated_num_parameters(),
                            with_processor=with_processor)
    return str(card)


def write_push_card(folder, repo_id: str, source: str | None, config=None, num_parameters: int | None = None,
                    with_processor: bool | None = None) -> None:
    """Write the project's card into `folder/README.md` (about to be uploaded to `repo_id`), see the module docstring.

    Args:
        source: where the object was loaded from (its `name_or_path`); its card wins.
        config: the model's `CLIP2VideoConfig` (a processor passes None: the config of `source` is read if any).
        num_parameters: the model's size for the card (None: estimated from the config).
        with_processor: whether the usage snippet uses the processor (None: whether `source` has one).
    """
    readme = Path(folder) / "README.md"
    text = _source_card(source) or (_our_card(readme) if readme.is_file() else None)
    if text is None:
        if config is None and source:
            config = _source_config(source)
        if with_processor is None:
            with_processor = _has_file(source, "processor_config.json")
        text = _built_card(repo_id, config, num_parameters, with_processor) if config is not None else None
    if text is None:
        logger.warning("%s: no CLIP2Video model card found or buildable; the upload keeps transformers' card", repo_id)
        return
    text = re.sub(r'from_pretrained\("[^"]*"', f'from_pretrained("{repo_id}"', text)
    readme.write_text(text, encoding="utf-8")


def _has_file(source: str | None, name: str) -> bool:
    if not source:
        return False
    from transformers.utils import cached_file

    try:
        return cached_file(str(source), name, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False) is not None
    except (OSError, ValueError):
        return False


def _source_config(source: str):
    """The `CLIP2VideoConfig` saved at `source`, when the project is installed and the config readable."""
    try:
        from configuration_clip2video import CLIP2VideoConfig
    except ImportError:
        return None
    try:
        return CLIP2VideoConfig.from_pretrained(str(source)) if _has_file(source, "config.json") else None
    except (OSError, ValueError):
        return None


__all__ = ["CARD_TAG", "MODEL_CARD_TAGS", "PAPER", "build_model_card", "usage_snippet", "write_push_card"]
