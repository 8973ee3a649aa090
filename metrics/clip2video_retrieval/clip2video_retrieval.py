# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""`evaluate` wrapper of `retrieval_metrics`: video-text retrieval R@k, median and mean rank.

Loads offline from its folder: `evaluate.load("metrics/clip2video_retrieval")`.
"""

import datasets
import evaluate
import numpy as np


# `retrieval_metrics.py` in this folder is a link to the repository's module; evaluate copies it with the script.
from .retrieval_metrics import flatten_metrics, moment_retrieval_metrics, retrieval_metrics


_DESCRIPTION = """\
Text->video and video->text retrieval metrics of CLIP2Video (arXiv 2106.11097) and CLIP4Clip:
Recall@1/5/10 (percent), median rank (MedianR = MR), mean rank (MeanR), rank standard deviation,
for splits with one caption per video (square similarity) or several (group-level video->text).
Each example is one caption: its row of similarities to every video and its ground-truth video.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): one row per caption, the caption's similarity to every video
        (captions grouped by video, as in the benchmark splits).
    references (`list[int]`): the ground-truth video index of every caption.
    tie_rule (`str`, defaults to `"pessimistic"`): `"pessimistic"` (a tie counts against the
        model), `"optimistic"`, or `"original"` (CLIP2Video's: every tied position is a rank).
    median_rule (`str`, defaults to `"original"`): `"average"` (numpy), `"lower"` (torch) or
        `"original"` (lower for multi-caption text->video, average elsewhere).
Returns:
    `t2v_R1`, `t2v_R5`, `t2v_R10`, `t2v_MedianR`, `t2v_MR`, `t2v_MeanR`, `t2v_Std_Rank` and the
    same with `v2t_`.

The `"moment"` configuration scores moment retrieval instead (`retrieval_metrics.moment_retrieval_metrics`,
Moment-DETR's definitions): each example is one query,
    predictions (`list[list[float]]`): the query's predicted moments `[start, end, score]` (seconds).
    references (`list[list[float]]`): its ground-truth windows `[start, end]`.
and it returns `R1@0.3`, `R1@0.5`, `R1@0.7`, `mIoU`, `mAP@0.5`, `mAP@0.75`, `mAP` (percent).
Examples:
    >>> metric = evaluate.load("metrics/clip2video_retrieval")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 1])["t2v_R1"]
    100.0
    >>> moments = evaluate.load("metrics/clip2video_retrieval", "moment")
    >>> moments.compute(predictions=[[[0.0, 5.0, 0.9]]], references=[[[0.0, 10.0]]])["mIoU"]
    50.0
"""

_CITATION = """\
@article{fang2021clip2video,
  title={CLIP2Video: Mastering Video-Text Retrieval via Image CLIP},
  author={Fang, Han and Xiong, Pengfei and Xu, Luhui and Chen, Yu},
  journal={arXiv preprint arXiv:2106.11097},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Clip2videoRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=self._features(),
        )

    def _features(self) -> datasets.Features:
        if self.config_name == "moment":
            windows = datasets.Sequence(datasets.Sequence(datasets.Value("float64")))
            return datasets.Features({"predictions": windows, "references": windows})
        return datasets.Features(
            {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
        )

    def _compute(self, predictions, references, tie_rule="pessimistic", median_rule="original"):
        if self.config_name == "moment":
            return moment_retrieval_metrics(predictions, references)
        similarity = np.asarray(predictions, dtype=np.float64)
        metrics = retrieval_metrics(similarity, np.asarray(references), tie_rule=tie_rule, median_rule=median_rule)
        return flatten_metrics(metrics)
