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


class NonFiniteScoresError(ValueError):
    """Scores or features hold NaN or infinity (NaN weights, a processor `image_std` of 0, an overflow in half
    precision): nothing is ranked or written, since a NaN compares false with everything and would rank first."""


def check_finite(values, what: str) -> None:
    """Raise `NonFiniteScoresError` naming `what` when `values` (array or tensor) holds NaN or infinity."""
    array = values.detach().float().cpu().numpy() if hasattr(values, "detach") else np.asarray(values, dtype=np.float64)
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise NonFiniteScoresError(f"{what}: {bad} of {array.size} values are NaN or infinite (broken weights, a "
                                   "processor image_std of 0 or a half-precision overflow?); nothing is scored")


def _as_matrix(similarity) -> np.ndarray:
    if hasattr(similarity, "detach"):  # a torch tensor
        similarity = similarity.detach().float().cpu().numpy()
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"similarity must be a 2-D (captions x videos) matrix, got shape {matrix.shape}")
    check_finite(matrix, "similarity")
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


# ----------------------------------------------------------------------------------------------------------------------
# Moment retrieval (temporal grounding)
# ----------------------------------------------------------------------------------------------------------------------

#: IoU thresholds of Moment-DETR's R1 (reported at 0.3, 0.5, 0.7) and of its mAP (0.5:0.05:0.95).
MOMENT_R1_THRESHOLDS = (0.3, 0.5, 0.7)
MOMENT_AP_THRESHOLDS = tuple(round(0.5 + 0.05 * step, 2) for step in range(10))
#: Predictions of a query that enter its average precision (Moment-DETR's `max_pred_windows`).
MOMENT_MAX_PREDICTIONS = 10


def temporal_iou(spans: np.ndarray, others: np.ndarray) -> np.ndarray:
    """`(n, m)` IoU of `(n, 2)` and `(m, 2)` `[start, end]` spans (0 where both are empty points)."""
    spans, others = np.asarray(spans, dtype=np.float64).reshape(-1, 2), np.asarray(others, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(spans[:, None, 1], others[None, :, 1]) - np.maximum(spans[:, None, 0], others[None, :, 0]),
                    0, None)
    union = (spans[:, 1] - spans[:, 0])[:, None] + (others[:, 1] - others[:, 0])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2011 / ActivityNet interpolation)."""
    precision = np.concatenate(([0.0], precision, [0.0]))
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def moment_average_precision(predictions: np.ndarray, ground_truth: np.ndarray,
                             thresholds: Sequence[float] = MOMENT_AP_THRESHOLDS) -> np.ndarray:
    """Average precision of one query at each IoU threshold (ActivityNet-style detection matching).

    `predictions` `(n, 3)` `[start, end, score]` best first, `ground_truth` `(m, 2)`. Each prediction, in that order,
    takes the unmatched ground-truth window it overlaps most (a true positive when that IoU reaches the threshold,
    a false positive otherwise; a window already taken passes to the next best); precision/recall over the ranked
    list give the interpolated AP. No prediction: 0.
    """
    average_precision = np.zeros(len(thresholds))
    if len(predictions) == 0:
        return average_precision
    ious = temporal_iou(predictions[:, :2], ground_truth)  # (n, m)
    for t, threshold in enumerate(thresholds):
        matched = np.zeros(len(ground_truth), dtype=bool)
        hits = np.zeros(len(predictions))
        for p, row in enumerate(ious):
            for g in np.argsort(row, kind="stable")[::-1]:  # best overlap first; ties: the later window (as the original)
                if row[g] < threshold:
                    break
                if not matched[g]:
                    matched[g], hits[p] = True, 1.0
                    break
        true_positives = np.cumsum(hits)
        precision = true_positives / np.arange(1, len(predictions) + 1)
        average_precision[t] = _interpolated_average_precision(precision, true_positives / len(ground_truth))
    return average_precision


def _moment_lists(values, name: str, width: int) -> list[np.ndarray]:
    """Per-query `(n, width)` float arrays from a sequence (or dict) of per-query lists, checked."""
    items = list(values.items()) if isinstance(values, dict) else list(enumerate(values))
    arrays = []
    for query, windows in items:
        array = np.asarray(list(windows), dtype=np.float64).reshape(-1, width) if len(windows) else np.zeros((0, width))
        if not np.all(np.isfinite(array)):
            raise NonFiniteScoresError(f"{name}[{query!r}] holds NaN or infinite values: {array.tolist()}")
        if np.any(array[:, 1] < array[:, 0]):
            raise ValueError(f"{name}[{query!r}]: a window ends before it starts: {array[:, :2].tolist()}")
        arrays.append(array)
    return arrays


def moment_retrieval_metrics(predictions, ground_truth) -> dict[str, float]:
    """Moment retrieval metrics with Moment-DETR's definitions (its `standalone_eval/eval.py`), in percent.

    Args:
        predictions: one entry per query (a list, or a dict keyed by query id), each a list of
            `(start, end, score)` predicted moments in seconds, in any order (ranked here by score, ties kept in the
            given order). A query with no prediction counts as a miss everywhere (R1 0, IoU 0, AP 0).
        ground_truth: one entry per query, in the same order (or with the same keys), each a non-empty list of
            `(start, end)` ground-truth windows.

    Returns:
        `R1@0.3`, `R1@0.5`, `R1@0.7`: share of queries whose top-scored prediction reaches that IoU with the
        ground-truth window it overlaps most; `mIoU`: mean of that IoU; `mAP@0.5`, `mAP@0.75`, `mAP` (mean over IoU
        0.5:0.05:0.95): per-query average precision of the `MOMENT_MAX_PREDICTIONS` best predictions (each taking the
        best-overlapping unmatched window; interpolated precision envelope), averaged over queries.
    """
    if isinstance(predictions, dict) != isinstance(ground_truth, dict) or (
            isinstance(predictions, dict) and set(predictions) != set(ground_truth)):
        raise ValueError("predictions and ground_truth must be both lists or both dicts with the same query ids")
    if isinstance(predictions, dict):
        predictions = {query: predictions[query] for query in ground_truth}
    predicted, truth = _moment_lists(predictions, "predictions", 3), _moment_lists(ground_truth, "ground_truth", 2)
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} queries of predictions for {len(truth)} of ground_truth")
    if not truth:
        raise ValueError("no queries to evaluate")
    top_ious, precisions = [], []
    for query, (ranked, windows) in enumerate(zip(predicted, truth)):
        if len(windows) == 0:
            raise ValueError(f"ground_truth of query {query} is empty: every query needs a ground-truth window")
        ranked = ranked[np.argsort(-ranked[:, 2], kind="stable")][:MOMENT_MAX_PREDICTIONS]
        top_ious.append(temporal_iou(ranked[:1, :2], windows).max() if len(ranked) else 0.0)
        precisions.append(moment_average_precision(ranked, windows))
    top_ious, precisions = np.asarray(top_ious), np.asarray(precisions).mean(axis=0)
    results = {f"R1@{threshold}": float(100.0 * np.mean(top_ious >= threshold)) for threshold in MOMENT_R1_THRESHOLDS}
    results["mIoU"] = float(100.0 * top_ious.mean())
    results["mAP@0.5"] = float(100.0 * precisions[MOMENT_AP_THRESHOLDS.index(0.5)])
    results["mAP@0.75"] = float(100.0 * precisions[MOMENT_AP_THRESHOLDS.index(0.75)])
    results["mAP"] = float(100.0 * precisions.mean())
    return results


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
    "MOMENT_AP_THRESHOLDS",
    "MOMENT_R1_THRESHOLDS",
    "NonFiniteScoresError",
    "TIE_RULES",
    "check_finite",
    "dsl_retrieval_metrics",
    "dual_softmax_rescore",
    "flatten_metrics",
    "ground_truth_ranks",
    "group_best_caption_scores",
    "moment_average_precision",
    "moment_retrieval_metrics",
    "retrieval_metrics",
    "summarize_ranks",
    "temporal_iou",
    "text_to_video_metrics",
    "video_to_text_metrics",
]
