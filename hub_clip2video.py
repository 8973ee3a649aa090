# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The project's model card on the Hub for `model.push_to_hub` / `processor.push_to_hub`.

transformers uploads a placeholder card ("This is the model card of a 🤗 transformers model...") when the target
repository has none. CLIP2Video models and processors replace it, just before the upload, by the project's card:

1. the card of the folder the model (or processor) was loaded from, when it is a CLIP2Video card (`run_retrieval.py`
   and the converter write one, with the metrics, the data and the usage snippet);
2. else the card the target repository already has, when it is a CLIP2Video card (a processor pushed after its model);
3. else a card built by the project's `utils_clip2video.build_model_card` (usage snippet, `library_name`, licence,
   architecture), when the project is installed.

The usage snippet of the card names the repository pushed to. Shipped with every model folder (remote code), so a
model loaded with `trust_remote_code=True` keeps its card when pushed again.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path


logger = logging.getLogger(__name__)

#: The Hub tag every CLIP2Video model card carries (`utils_clip2video.MODEL_CARD_TAGS`).
CARD_TAG = "clip2video"


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


def _built_card(repo_id: str, config, num_parameters: int | None, with_processor: bool) -> str | None:
    """A card from the project's `build_model_card`, or None when the project is not installed (remote code only)."""
    try:
        from utils_clip2video import PAPER, build_model_card
    except ImportError:
        return None
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


__all__ = ["CARD_TAG", "write_push_card"]
