"""Moment-retrieval metrics against hand-computed cases, and non-finite scores refused everywhere a score is ranked."""

import math

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, random_text, random_video, tiny_config
from retrieval_metrics import NonFiniteScoresError, moment_retrieval_metrics, retrieval_metrics, temporal_iou


def test_partial_overlap_by_hand():
    # IoU of [2, 12] with [0, 10] = 8 / 12: above 0.3, 0.5, 0.55, 0.6, 0.65; below 0.7 and above
    result = moment_retrieval_metrics([[(2.0, 12.0, 0.9)]], [[(0.0, 10.0)]])
    assert result["R1@0.3"] == result["R1@0.5"] == 100.0 and result["R1@0.7"] == 0.0
    assert result["mIoU"] == pytest.approx(100 * 8 / 12)
    assert (result["mAP@0.5"], result["mAP@0.75"]) == (100.0, 0.0)
    assert result["mAP"] == pytest.approx(40.0)  # hits at 4 of the 10 thresholds


def test_r1_takes_the_top_scored_prediction_and_its_best_ground_truth_window():
    # the top prediction [18, 30] overlaps the second window most (10 / 12), input order of predictions irrelevant
    predictions = [[(0.0, 4.0, 0.2), (18.0, 30.0, 0.8)]]
    result = moment_retrieval_metrics(predictions, [[(0.0, 10.0), (20.0, 30.0)]])
    assert result["mIoU"] == pytest.approx(100 * 10 / 12)
    assert result["R1@0.7"] == 100.0


def test_average_precision_follows_the_ranking():
    # a miss ranked first, then the two windows: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> AP = 2/3 at every IoU
    predictions = [[(40.0, 50.0, 0.9), (0.0, 10.0, 0.8), (20.0, 30.0, 0.7)]]
    result = moment_retrieval_metrics(predictions, [[(0.0, 10.0), (20.0, 30.0)]])
    assert [result[key] for key in ("mAP", "mAP@0.5", "mAP@0.75")] == pytest.approx([100 * 2 / 3] * 3)
    assert result["R1@0.3"] == 0.0 and result["mIoU"] == 0.0


def test_a_window_is_matched_once_and_only_the_ten_best_predictions_count():
    duplicate = moment_retrieval_metrics([[(0.0, 10.0, 0.9), (0.0, 10.0, 0.8)]], [[(0.0, 10.0)]])
    assert duplicate["mAP"] == 100.0  # the second copy is a false positive after the only true positive
    late = [(100.0 + i, 101.0 + i, 1.0 - i / 100) for i in range(10)] + [(0.0, 10.0, 0.01)]
    assert moment_retrieval_metrics([late], [[(0.0, 10.0)]])["mAP"] == 0.0  # the hit is 11th


def test_ties_keep_the_given_order():
    ahead = moment_retrieval_metrics([[(0.0, 10.0, 0.5), (50.0, 60.0, 0.5)]], [[(0.0, 10.0)]])
    behind = moment_retrieval_metrics([[(50.0, 60.0, 0.5), (0.0, 10.0, 0.5)]], [[(0.0, 10.0)]])
    assert ahead["R1@0.5"] == 100.0 and ahead["mAP"] == 100.0
    assert behind["R1@0.5"] == 0.0 and behind["mAP"] == pytest.approx(50.0)  # precision 1/2 at recall 1


def test_a_query_without_predictions_is_a_miss_and_queries_are_averaged():
    result = moment_retrieval_metrics({"q1": [(0.0, 10.0, 0.9)], "q2": []}, {"q2": [(5.0, 6.0)], "q1": [(0.0, 10.0)]})
    assert result == {"R1@0.3": 50.0, "R1@0.5": 50.0, "R1@0.7": 50.0, "mIoU": 50.0, "mAP@0.5": 50.0,
                      "mAP@0.75": 50.0, "mAP": 50.0}


def test_bad_moment_inputs_raise():
    with pytest.raises(NonFiniteScoresError, match=r"predictions\[0\]"):
        moment_retrieval_metrics([[(0.0, 1.0, math.nan)]], [[(0.0, 1.0)]])
    with pytest.raises(ValueError, match="ground_truth of query 0 is empty"):
        moment_retrieval_metrics([[(0.0, 1.0, 0.5)]], [[]])
    with pytest.raises(ValueError, match="ends before it starts"):
        moment_retrieval_metrics([[(2.0, 1.0, 0.5)]], [[(0.0, 1.0)]])
    with pytest.raises(ValueError, match="1 queries of predictions for 2"):
        moment_retrieval_metrics([[(0.0, 1.0, 0.5)]], [[(0.0, 1.0)], [(0.0, 1.0)]])
    assert temporal_iou([[3.0, 3.0]], [[3.0, 3.0]]).item() == 0.0  # empty spans: 0, not NaN


def test_the_evaluate_module_scores_moments_with_the_same_function():
    import evaluate

    predictions = [[[2.0, 12.0, 0.9], [40.0, 50.0, 0.3]], [[20.0, 30.0, 0.5]]]
    references = [[[0.0, 10.0]], [[20.0, 28.0], [0.0, 5.0]]]
    metric = evaluate.load(str(REPO_ROOT / "metrics" / "clip2video_retrieval"), "moment")
    assert metric.compute(predictions=predictions, references=references) == moment_retrieval_metrics(
        predictions, references)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_similarities_are_never_ranked(bad):
    similarity = np.eye(3)
    similarity[1, 1] = bad
    with pytest.raises(NonFiniteScoresError, match="similarity: 1 of 9 values"):
        retrieval_metrics(similarity)
    with pytest.raises(NonFiniteScoresError):  # a collapsed NaN model scored R@1 = 100 before
        retrieval_metrics(torch.full((4, 4), math.nan))


def test_nan_weights_give_an_error_instead_of_features():
    from data_clip2video import encode_texts, encode_videos
    from modeling_clip2video import CLIP2VideoModel

    model = CLIP2VideoModel(tiny_config()).eval()
    with torch.no_grad():
        model.visual_projection.weight.fill_(math.nan)
        pixels, mask = random_video(model.config, [6, 3])
        with pytest.raises(NonFiniteScoresError, match="video features"):
            encode_videos(model, pixels, mask)
        model.text_projection.weight.fill_(math.nan)
        ids, attention = random_text(model.config, [5, 7])
        with pytest.raises(NonFiniteScoresError, match="text features"):
            encode_texts(model, ids, attention)
