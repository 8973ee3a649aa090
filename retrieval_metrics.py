# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Video-text retrieval metrics: pure functions of a similarity matrix and a caption -> video index.

`similarity` is always `(num_captions, num_videos)`, captions grouped by video (the layout of every
benchmark split, see `datasets_scripts.get_eval_index`), and `caption_to_video[i]` is the ground-truth
video of caption `i`. Reported per direction: R@1/5/10 (percent), median rank `MedianR` (= `MR`),
mean rank `MeanR` and `Std_Rank`, ranks being 1-based.

Protocols (those of CLIP2Video's `evaluation/metrics.py` and `logging_rank`):

* **single caption per video** (MSR-VTT 1k-A, synthetic-motion): square matrix, ground truth on
  the diagonal; text->video ranks the videos for each caption, video->text ranks the captions for
  each video;
* **several captions per video** (MSVD, VATEX, MSR-VTT full): text->video ranks the videos for each
  caption; video->text is *group-level*: a video query scores every video's caption group by that
  group's best caption, and the ground truth is its own group.

**Ties** (`tie_rule`):

* `"pessimistic"` (default): rank = number of *other* candidates scoring at least the ground truth.
  A tie never helps the model, results do not depend on candidate order, and a collapsed model
  (all scores equal) gets R@1 = 0 instead of 100;
* `"optimistic"`: rank = number of candidates scoring strictly more;
* `"original"`: the original's behaviour. Single-caption and video->text: every position of the
  sorted row equal to the ground-truth score is reported as a rank, so a tie adds a rank and all
  percentages use that longer list (3 queries with one tie -> 4 ranks). Multi-caption text->video
  (a double argsort there): ties broken by candidate index, as a stable sort does.

Without exact ties all three agree.

**Median** (`median_rule`): `"average"` (numpy: mean of the two middle ranks for an even count),
`"lower"` (torch.median: the lower middle rank), or `"original"` (default: `"lower"` for
multi-caption text->video, `"average"` elsewhere, as the original computes them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


TIE_RULES = ("pessimistic", "optimistic", "original")
MEDIAN_RULES = ("original", "average", "lower")
DEFAULT_KS = (1, 5, 10)
DIRECTIONS = {"text_to_video": "t2v", "video_to_text": "v2t"}


def _as_matrix(similarity) -> np.ndarray:
    if hasattr(similarity, "detach"):  # a torch tensor
        similarity = similarity.detach().float().cpu().numpy()
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"similarity must be a 2-D (captions x videos) matrix, got shape {matrix.shape}")
    return matrix


def _check_rules(tie_rule: str, median_rule: str) -> None:
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    if median_rule not in MEDIAN_RULES:
        raise ValueError(f"median_rule must be one of {MEDIAN_RULES}, got {median_rule!r}")


def ground_truth_ranks(similarity, targets: Sequence[int], tie_rule: str = "pessimistic") -> np.ndarray:
    """0-based rank of each query's ground-truth candidate.

    Args:
        similarity: `(queries, candidates)` scores, higher = better.
        targets: `(queries,)` column of each query's ground truth.
        tie_rule: `"pessimistic"`, `"optimistic"`, `"original"` (see the module docstring) or
            `"index"` (ties broken by candidate index, as a stable sort does). With `"original"` a
            query whose ground truth ties with `n` other candidates contributes `n + 1` ranks.

    Returns:
        int64 array of ranks (`queries` long, longer with `"original"` and ties).
    """
    matrix = _as_matrix(similarity)
    targets = np.asarray(targets, dtype=np.int64)
    if targets.shape != (matrix.shape[0],):
        raise ValueError(f"targets must have one entry per query ({matrix.shape[0]}), got shape {targets.shape}")
    truth = matrix[np.arange(len(targets)), targets][:, None]
    better = (matrix > truth).sum(axis=1)
    ties = (matrix == truth).sum(axis=1) - 1  # other candidates with exactly the ground-truth score
    if tie_rule == "pessimistic":
        return better + ties
    if tie_rule == "optimistic":
        return better
    if tie_rule == "index":
        earlier = np.arange(matrix.shape[1])[None, :] < targets[:, None]
        return better + ((matrix == truth) & earlier).sum(axis=1)
    if tie_rule == "original":
        return np.concatenate([np.arange(b, b + t + 1) for b, t in zip(better, ties)]).astype(np.int64)
    raise ValueError(f"tie_rule must be one of {TIE_RULES + ('index',)}, got {tie_rule!r}")


def summarize_ranks(ranks, ks: Sequence[int] = DEFAULT_KS, median: str = "average") -> dict[str, float]:
    """Recall@k (percent), median/mean/std of the 1-based ranks, from 0-based `ranks`.

    Args:
        median: `"average"` (numpy's median) or `"lower"` (torch's median: lower middle value).
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.size == 0:
        raise ValueError("no ranks to summarize (empty similarity matrix?)")
    one_based = ranks + 1
    if median == "lower":
        median_rank = float(np.sort(one_based)[(one_based.size - 1) // 2])
    elif median == "average":
        median_rank = float(np.median(one_based))
    else:
        raise ValueError(f"median must be 'average' or 'lower', got {median!r}")
    results = {f"R{k}": float(100.0 * np.mean(ranks < k)) for k in ks}
    results.update(MedianR=median_rank, MR=median_rank, MeanR=float(one_based.mean()), Std_Rank=float(one_based.std()))
    return results


def _median_for(median_rule: str, multi_caption_t2v: bool) -> str:
    if median_rule == "original":
        return "lower" if multi_caption_t2v else "average"
    return median_rule


def group_best_caption_scores(similarity, caption_to_video: Sequence[int]) -> np.ndarray:
    """`(videos, videos)` matrix `M[q, g]` = best score of video `q` against the captions of video `g`.

    This is the original's multi-caption video->text matrix (after its max over the caption axis and
    transpose): row `q` is video query `q`, column `g` the caption group of video `g`.
    """
    matrix = _as_matrix(similarity)
    caption_to_video = np.asarray(caption_to_video, dtype=np.int64)
    num_videos = matrix.shape[1]
    if caption_to_video.shape != (matrix.shape[0],):
        raise ValueError(f"caption_to_video must have one entry per caption ({matrix.shape[0]}), got "
                         f"shape {caption_to_video.shape}")
    best = np.full((num_videos, num_videos), -np.inf)
    for group in range(num_videos):
        rows = matrix[caption_to_video == group]
        if len(rows) == 0:
            raise ValueError(f"video {group} has no caption")
        best[:, group] = rows.max(axis=0)
    return best


def _ranked_summary(matrix: np.ndarray, targets: np.ndarray, tie_rule: str, ks: Sequence[int], median: str,
                    return_ranks: bool) -> dict:
    """Ground-truth ranks of the `(queries, candidates)` matrix summarised (and listed when `return_ranks`)."""
    ranks = ground_truth_ranks(matrix, targets, tie_rule)
    results = summarize_ranks(ranks, ks, median)
    if return_ranks:
        results["ranks"] = ranks.tolist()
    return results


def text_to_video_metrics(
    similarity,
    caption_to_video: Sequence[int] | None = None,
    tie_rule: str = "pessimistic",
    median_rule: str = "original",
    ks: Sequence[int] = DEFAULT_KS,
    return_ranks: bool = False,
) -> dict:
    """Text->video retrieval: rank the videos for every caption (`caption_to_video=None`: square, diagonal)."""
    _check_rules(tie_rule, median_rule)
    matrix = _as_matrix(similarity)
    single = caption_to_video is None or _is_identity(caption_to_video, matrix.shape)
    targets = np.arange(matrix.shape[0]) if caption_to_video is None else np.asarray(caption_to_video)
    # The original's multi-caption path sorts (a double argsort): ties fall in candidate order there.
    rule = "index" if (tie_rule == "original" and not single) else tie_rule
    return _ranked_summary(matrix, targets, rule, ks, _median_for(median_rule, multi_caption_t2v=not single),
                           return_ranks)


def video_to_text_metrics(
    similarity,
    caption_to_video: Sequence[int] | None = None,
    tie_rule: str = "pessimistic",
    median_rule: str = "original",
    ks: Sequence[int] = DEFAULT_KS,
    return_ranks: bool = False,
) -> dict:
    """Video->text retrieval. Single caption per video: rank the captions for each video. Several:
    group-level, every caption group scored by its best caption (see `group_best_caption_scores`)."""
    _check_rules(tie_rule, median_rule)
    matrix = _as_matrix(similarity)
    if caption_to_video is None or _is_identity(caption_to_video, matrix.shape):
        per_video = matrix.T
    else:
        per_video = group_best_caption_scores(matrix, caption_to_video)
    return _ranked_summary(per_video, np.arange(per_video.shape[0]), tie_rule, ks,
                           _median_for(median_rule, multi_caption_t2v=False), return_ranks)


def retrieval_metrics(
    similarity,
    caption_to_video: Sequence[int] | None = None,
    tie_rule: str = "pessimistic",
    median_rule: str = "original",
    ks: Sequence[int] = DEFAULT_KS,
    return_ranks: bool = False,
) -> dict[str, dict]:
    """Both directions: `{"text_to_video": {...}, "video_to_text": {...}}`.

    Args:
        similarity: `(captions, videos)` scores (numpy array, torch tensor or nested lists).
        caption_to_video: ground-truth video of every caption; `None` means one caption per video
            in video order (square matrix).
        tie_rule, median_rule: see the module docstring.
        ks: the cut-offs of Recall@k.
        return_ranks: also return the 0-based ground-truth ranks under `"ranks"`.
    """
    options = dict(tie_rule=tie_rule, median_rule=median_rule, ks=ks, return_ranks=return_ranks)
    return {
        "text_to_video": text_to_video_metrics(similarity, caption_to_video, **options),
        "video_to_text": video_to_text_metrics(similarity, caption_to_video, **options),
    }


def dual_softmax_rescore(similarity, temperature: float = 100.0, direction: str = "text_to_video") -> np.ndarray:
    """Dual-softmax (DSL, Cheng et al. 2021) re-scoring of a `(captions, videos)` matrix.

    Every score is multiplied by a softmax prior over the *other* side's queries: for text->video,
    `S * softmax(t * S, over captions)` (a video that is the best match of many captions is damped);
    for video->text, `S * softmax(t * S, over videos)`. Uses the whole query set, so it is a
    transductive evaluation: report it under separate keys.
    """
    matrix = _as_matrix(similarity)
    axis = {"text_to_video": 0, "video_to_text": 1}[direction]
    logits = temperature * matrix
    logits = logits - logits.max(axis=axis, keepdims=True)
    prior = np.exp(logits)
    prior /= prior.sum(axis=axis, keepdims=True)
    return matrix * prior


def dsl_retrieval_metrics(similarity, caption_to_video=None, temperature: float = 100.0, **options) -> dict[str, dict]:
    """`retrieval_metrics` on the DSL re-scored matrices (one per direction)."""
    return {
        "text_to_video": text_to_video_metrics(
            dual_softmax_rescore(similarity, temperature, "text_to_video"), caption_to_video, **options
        ),
        "video_to_text": video_to_text_metrics(
            dual_softmax_rescore(similarity, temperature, "video_to_text"), caption_to_video, **options
        ),
    }


def flatten_metrics(metrics: dict[str, dict], prefix: str = "") -> dict[str, float]:
    """`{"text_to_video": {"R1": ...}}` -> `{"<prefix>t2v_R1": ...}` (rank lists dropped), for logs and JSON."""
    flat = {}
    for direction, values in metrics.items():
        short = DIRECTIONS.get(direction, direction)
        for key, value in values.items():
            if key != "ranks":
                flat[f"{prefix}{short}_{key}"] = value
    return flat


def _is_identity(caption_to_video, shape) -> bool:
    caption_to_video = np.asarray(caption_to_video)
    return shape[0] == shape[1] and bool(np.array_equal(caption_to_video, np.arange(shape[0])))


__all__ = [
    "DEFAULT_KS",
    "MEDIAN_RULES",
    "TIE_RULES",
    "dsl_retrieval_metrics",
    "dual_softmax_rescore",
    "flatten_metrics",
    "ground_truth_ranks",
    "group_best_caption_scores",
    "retrieval_metrics",
    "summarize_ranks",
    "text_to_video_metrics",
    "video_to_text_metrics",
]
