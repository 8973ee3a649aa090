"""Annotation files of timestamped captions in their real formats, as training sources (`--dataset_name`) and as the
ground truth of `--do_moment_eval` (`moment_eval.read_annotations`): Charades-STA, QVHighlights, ActivityNet Captions
and plain json lines; malformed files give errors naming the file and the place."""

import json

import pytest

from moment_eval import AnnotationError, annotation_format, read_annotations
from test_own_data import _table, write_video

# ActivityNet Captions' train.json / val_1.json as they come: one json object of videos (pretty-printed here, as
# people often re-save it), one caption a timestamp; the end past the duration is the dataset's own quirk.
ACTIVITYNET = {
    "v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
                      "sentences": ["A young woman is seen standing in a room.", " She then begins dancing around.",
                                    "She continues dancing."]},
    "v_ehGHCYKzyZ8": {"duration": 61.72, "timestamps": [[0, 8.6], [50.1, 62.5]],
                      "sentences": ["A man stands on a beach.", "He walks past the end of the video."]},
}


def test_activitynet_captions_trains_as_a_source_of_clips(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for seed, name in enumerate(ACTIVITYNET):
        write_video(videos / f"{name}.mp4", seed)
    (tmp_path / "val_1.json").write_text(json.dumps(ACTIVITYNET, indent=2))
    table = _table(tmp_path, "test", dataset_name="activitynet-captions", test_file=str(tmp_path / "val_1.json"),
                   video_dir=str(videos))
    assert list(table.rows["video_id"]) == ["v_QOlSCBRmfWY@0.83-19.86", "v_QOlSCBRmfWY@17.37-60.81",
                                            "v_QOlSCBRmfWY@56.26-79.42", "v_ehGHCYKzyZ8@0-8.6"]
    assert list(table.rows["caption"]) == ["A young woman is seen standing in a room.",
                                           "She then begins dancing around.", "She continues dancing.",
                                           "A man stands on a beach."]
    assert list(table.spans) == [(0.83, 19.86), (17.37, 60.81), (56.26, 79.42), (0.0, 8.6)]
    assert table.report.malformed == ["row 4: span [50.1, 62.5] ends after the video's end (duration 61.72)"]


@pytest.mark.parametrize("content, reason", [
    ("{", "not a json document"),
    ('{"v_a": {"timestamps": [[0, 1]], "sentences": []}}', "'v_a': expected lists 'timestamps' and 'sentences'"),
    ('{"v_a": {"timestamps": [[0, "x"]], "sentences": ["s"]}}', "'v_a': timestamps must be [start, end] seconds"),
    ('{"v_a": {"timestamps": [[0, 1, 2]], "sentences": ["s"]}}', "'v_a': timestamps must be [start, end] seconds"),
])
def test_a_malformed_activitynet_file_names_the_video(tmp_path, content, reason):
    (tmp_path / "videos").mkdir()
    (tmp_path / "val_1.json").write_text(content)
    with pytest.raises(Exception, match="val_1.json") as error:
        _table(tmp_path, "test", dataset_name="activitynet-captions", test_file=str(tmp_path / "val_1.json"),
               video_dir=str(tmp_path / "videos"))
    assert reason in str(error.value) and type(error.value).__module__ != "json.decoder"


def test_the_moment_ground_truth_of_every_format(tmp_path):
    charades = tmp_path / "charades_sta_test.txt"
    charades.write_text("long 0.0 2.5##a red square.\r\nlong 2.5 5##a blue circle.\r\n\r\n")  # CRLF, as some copies
    assert annotation_format(charades.read_text()) == "charades-sta"
    assert [(q.video, q.windows, q.caption) for q in read_annotations(str(charades))] == \
        [("long", [(0.0, 2.5)], "a red square."), ("long", [(2.5, 5.0)], "a blue circle.")]

    qvhighlights = tmp_path / "highlight_val_release.jsonl"
    qvhighlights.write_text(json.dumps({"qid": 7, "vid": "long", "query": "squares", "duration": 150,
                                        "relevant_windows": [[0, 2], [4, 6]]}) + "\n")
    (query,) = read_annotations(str(qvhighlights))
    assert (query.start, query.end) == (0.0, 2.0) and query.windows == [(0.0, 2.0), (4.0, 6.0)]  # all are truth

    activitynet = tmp_path / "val_1.json"
    activitynet.write_text(json.dumps(ACTIVITYNET, indent=2))
    assert annotation_format(activitynet.read_text()) == "activitynet-captions"
    queries = read_annotations(str(activitynet))
    assert [(q.video, q.windows[0]) for q in queries][:2] == [("v_QOlSCBRmfWY", (0.83, 19.86)),
                                                              ("v_QOlSCBRmfWY", (17.37, 60.81))]
    assert len(queries) == 5 and queries[1].caption == "She then begins dancing around."

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"video": "sub/long.mp4", "start": 1, "end": 3, "query": "a square"}) + "\n")
    assert annotation_format(rows.read_text()) == "json-lines"
    assert [(q.video, q.windows) for q in read_annotations(str(rows))] == [("sub/long.mp4", [(1.0, 3.0)])]


@pytest.mark.parametrize("content, reason", [
    ('{"video": "a", "start": 0,\n', "rows.jsonl:1: not an annotation row"),
    ('{"video": "a", "start": 0, "end": 1, "caption": "c"}\n[1, 2]\n', "rows.jsonl:2: not an annotation row"),
    ('{"video": "a", "start": 2, "end": 1, "caption": "c"}\n', "rows.jsonl:1: span [2.0, 1.0) is not a span"),
    ('{"vid": "a", "query": "q", "relevant_windows": []}\n', "query 1 has no relevant_windows"),
    ('{"v_a": {"timestamps": [[3, 1]], "sentences": ["s"]}}', "rows.jsonl: video 'v_a': span [3.0, 1.0)"),
    ("\n\n", "no annotation rows"),
])
def test_a_malformed_annotation_file_names_the_place(tmp_path, content, reason):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(content)
    with pytest.raises(AnnotationError) as error:
        read_annotations(str(rows))
    assert reason in str(error.value)
