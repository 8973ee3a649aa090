# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The model card of a model trained by `run_retrieval.py` and its push to the Hub.

`--push_to_hub` publishes the model folder: weights, config, remote code, processor, card and the results
(`all_results.json`). What is about the run rather than the model stays local unless `--push_reports`: the
TensorBoard logs (`runs/`), the training history, the visual report with its thumbnails of the user's test videos
and the data report. Checkpoints, the baseline's folder and exported features are never pushed.

Example:
    >>> card = training_card(model.config, num_parameters, CardFacts(data="videofolder (my_videos)", ...), rows)
    >>> push_model_folder("outputs/run", "me/clip2video-mine", push_reports=False)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

from huggingface_hub import HfApi

from evaluation_clip2video import metrics_table
from hub_clip2video import PAPER, build_model_card


logger = logging.getLogger("run_retrieval")

#: Never pushed: training state, the mean-pooling baseline, temporary folders, exported features (of the test set).
NEVER_PUSHED = ["checkpoints/**", "mean_pooling/**", ".tmp-*", "**/.tmp-*", "features.*"]
#: Pushed only with --push_reports: logs, training history, visual report (thumbnails of the test videos), data report.
REPORTS = ["runs/**", "train_history.json", "report/**", "data_report.json"]


@dataclass(frozen=True)
class CardFacts:
    """What the card says about the training run (plain values from the script's arguments)."""

    data: str  # the data as named in the card: a benchmark, Hub id or builder and its folder
    train_split: str
    eval_split: str
    repo: str  # where the usage snippet loads from
    base_model: Optional[str] = None  # None: from scratch
    card_datasets: Sequence[str] = ()
    tie_rule: str = "pessimistic"
    recipe: dict = field(default_factory=dict)  # learning rates, weight decay, batch, epochs, warm-up, seed


def training_card(config, num_parameters: int, facts: CardFacts, results: dict[str, dict[str, float]]) -> str:
    """The model card (README.md) of a trained model: usage, results table (only when it was evaluated), training
    settings, architecture."""
    origin = "from " + facts.base_model if facts.base_model else "from scratch"
    summary = (f"A {PAPER} video-text retrieval model trained with `run_retrieval.py` of the clip2video project, "
               f"{origin}, on `{facts.data}` ({facts.train_split} split)")
    summary += f", evaluated on its {facts.eval_split} split." if results else "; not evaluated."
    recipe = facts.recipe
    training_text = (f"AdamW, learning rate {recipe['learning_rate']} (new modules) / {recipe['clip_learning_rate']} "
                     f"(CLIP), weight decay {recipe['weight_decay']}, global batch {recipe['train_batch_size']}, "
                     f"{recipe['num_train_epochs']} epochs, warm-up {recipe['warmup_ratio']} then cosine, seed "
                     f"{recipe['seed']}; symmetric InfoNCE over the global batch (global + TAB terms).")
    sections = []
    if results:
        results_text = (f"{metrics_table(results)}\n\nR@k in percent, MdR/MnR = median/mean rank (1 = best); "
                        "T2V = text-to-video, V2T = video-to-text.")
        sections.append((f"Results ({facts.data} {facts.eval_split}, tie rule `{facts.tie_rule}`)", results_text))
    sections.append(("Training", training_text))
    card = build_model_card(
        title=f"CLIP2Video — {facts.data}", summary=summary, repo=facts.repo, config=config,
        num_parameters=num_parameters, with_processor=True, sections=sections, base_model=facts.base_model,
        datasets=facts.card_datasets, metrics=["recall"] if results else ())
    return str(card)


def ignore_patterns(push_reports: bool) -> list[str]:
    """`upload_folder`'s ignore patterns: never the training state; the run's reports only when asked."""
    return NEVER_PUSHED + ([] if push_reports else REPORTS)


def push_model_folder(folder: str, repo_id: str, token: Optional[str] = None, private: bool = False,
                      push_reports: bool = False) -> str:
    """Create the repository (if needed) and upload the model folder (see the module docstring for what stays)."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload CLIP2Video from run_retrieval.py",
                      ignore_patterns=ignore_patterns(push_reports))
    logger.info("pushed %s to https://huggingface.co/%s", folder, repo_id)
    return repo_id


__all__ = ["CardFacts", "ignore_patterns", "push_model_folder", "training_card"]
