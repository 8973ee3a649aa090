"""Timed windows (issue 19 items 1 and 2): a long video made of concatenated clips of known content is indexed as
windows; each stored vector is the model's vector of that span cut out as its own file; queries return moments."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

import folder_index  # noqa: E402
import index_store  # noqa: E402
import search_videos  # noqa: E402
from datasets_scripts.synthetic import encode_video, render_event  # noqa: E402
from processing_clip2video import window_spans  # noqa: E402
from test_search_videos import EVENTS, FAST, index_folder, loaded, model_dir, write_event_video  # noqa: E402, F401

#: (event, frames) of the long video's clips, at FPS: 4 clips of 2 s.
CLIPS = [(EVENTS[0], 10), (EVENTS[2], 10), (EVENTS[3], 10), (EVENTS[5], 10)]
FPS = 5
WINDOW = ["--window_seconds", "2", "--window_stride", "1"]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A folder with one 8 s video (4 clips of known content) and one 2.4 s clip (shorter than a window of 4 s)."""
    folder = tmp_path_factory.mktemp("videos")
    frames = np.concatenate([render_event(event, count, 32, np.random.default_rng(number))
                             for number, (event, count) in enumerate(CLIPS)])
    encode_video(frames, str(folder / "long.mp4"), fps=FPS)
    write_event_video(folder / "short.mp4", EVENTS[4], seed=9)
    return folder, frames


@pytest.fixture(scope="module")
def window_index(long_video, model_dir, tmp_path_factory) -> Path:
    index_dir = tmp_path_factory.mktemp("index") / "windows"
    report = index_folder(long_video[0], model_dir, index_dir, *WINDOW)
    assert report["encoded"] == 2 and report["skipped"] == []
    return index_dir


def stored(index_dir: Path) -> dict[tuple[str, float], tuple[dict, np.ndarray]]:
    index = folder_index.VideoIndex(index_dir)
    return {(record["path"], record["start"]): (record, np.array(index.vectors(shard)[row]))
            for shard, row, record in index.all_records()}


def test_each_window_is_the_span_cut_out_as_its_own_file(long_video, window_index, loaded, tmp_path):
    folder, frames = long_video
    rows = stored(window_index)
    long_rows = sorted((key[1], record) for key, (record, _) in rows.items() if key[0] == "long.mp4")
    duration = len(frames) / FPS
    assert [(record["start"], record["end"]) for _, record in long_rows] == window_spans(duration, 2.0, 1.0)
    assert all(record["duration"] == pytest.approx(duration, abs=1e-3) for _, record in long_rows)
    assert long_rows[-1][1]["end"] == pytest.approx(duration)  # the last window ends at the video's end
    for start, record in long_rows:
        first, last = round(start * FPS), round(record["end"] * FPS)
        cut = tmp_path / f"cut{first}.mp4"
        encode_video(frames[first:last], str(cut), fps=FPS)
        inputs = loaded.processor(videos=[str(cut)], return_tensors="pt")
        with torch.no_grad():
            expected = loaded.model.get_video_features(inputs["pixel_values"], inputs["video_mask"]).pooler_output[0]
        assert np.abs(rows[("long.mp4", start)][1] - expected.numpy()).max() <= 1e-4, start
        assert record["frames"] == int(inputs["video_mask"].sum())


def test_a_video_shorter_than_one_window_is_one_window(long_video, model_dir, tmp_path):
    index_dir = tmp_path / "wide"
    index_folder(long_video[0], model_dir, index_dir, "--window_seconds", "4", "--window_stride", "3")
    rows = stored(index_dir)
    short = [record for (path, _), (record, _) in rows.items() if path == "short.mp4"]
    assert [(record["start"], record["end"]) for record in short] == [(0.0, pytest.approx(2.4, abs=1e-3))]
    long = sorted((record["start"], record["end"]) for (path, _), (record, _) in rows.items() if path == "long.mp4")
    assert long == [(0.0, 4.0), (3.0, 7.0), (4.0, 8.0)]  # past the end: the last window is moved back to end there


def test_moments_are_merged_windows_with_times(window_index, loaded, long_video):
    folder, _ = long_video
    caption = CLIPS[1][0].caption
    windows = search_videos.search(window_index, text=caption, k=50, model=loaded, merge=False)
    rows = stored(window_index)
    query = loaded.encode_text([caption])[0].numpy()
    assert len(windows) == len(rows)
    for hit in windows:  # raw windows: each with the score of its own stored vector
        vector = rows[(hit.record["path"], hit.start)][1]
        assert hit.score == pytest.approx(loaded.logit_scale * float(query @ vector), abs=1e-4)
        assert (hit.start, hit.end) == (hit.record["start"], hit.record["end"])
    assert [hit.score for hit in windows] == sorted((hit.score for hit in windows), reverse=True)

    moments = search_videos.search(window_index, text=caption, k=10, model=loaded)
    assert moments[0].score == windows[0].score
    assert moments[0].start <= windows[0].start and moments[0].end >= windows[0].end
    assert len(moments) < len(windows)
    long_moments = [moment for moment in moments if moment.path.endswith("long.mp4")]
    for first, second in zip(long_moments, long_moments[1:]):
        assert search_videos._iou((first.start, first.end), (second.start, second.end)) < search_videos.NMS_IOU
    one_each = search_videos.search(window_index, text=caption, k=10, model=loaded, per_video=1)
    assert sorted(Path(hit.path).name for hit in one_each) == ["long.mp4", "short.mp4"]


def hit(path: str, score: float, start: float, end: float) -> index_store.Hit:
    return index_store.Hit(path=path, score=score, record={"path": path, "start": start, "end": end},
                           start=start, end=end)


def test_merge_moments_by_hand():
    windows = [hit("a", 10.0, 4.0, 6.0), hit("a", 9.9, 5.0, 7.0),  # overlaps the best window, within 5 %: joins
               hit("a", 9.8, 6.0, 8.0),   # touches the best window [4, 6), within 5 %: joins, the moment is [4, 8)
               hit("a", 9.0, 7.0, 9.0),   # apart from [4, 6); IoU 1/5 < 0.3 with [4, 8): a moment of its own
               hit("b", 8.0, 4.0, 6.0),   # another video: its own moment
               hit("a", 7.0, 0.0, 2.0)]   # apart: its own moment
    moments = search_videos.merge_moments(windows, k=10)
    assert [(m.path, m.score, m.start, m.end) for m in moments] == [
        ("a", 10.0, 4.0, 8.0), ("a", 9.0, 7.0, 9.0), ("b", 8.0, 4.0, 6.0), ("a", 7.0, 0.0, 2.0)]
    suppressed = search_videos.merge_moments([hit("a", 10.0, 4.0, 6.0), hit("a", 9.9, 6.0, 8.0),
                                              hit("a", 9.8, 6.5, 8.0)], k=10)
    assert [(m.start, m.end) for m in suppressed] == [(4.0, 8.0)]  # [6.5, 8): IoU 0.375 with [4, 8), apart from [4, 6)
    low = search_videos.merge_moments([hit("a", 10.0, 4.0, 6.0), hit("a", 5.0, 5.0, 7.0), hit("a", 4.0, 6.0, 8.0)],
                                      k=10)
    assert [(m.start, m.end) for m in low] == [(4.0, 6.0), (6.0, 8.0)]  # low scores: suppressed (IoU 1/3), or apart
    assert len(search_videos.merge_moments(windows, k=10, per_video=1)) == 2
    assert len(search_videos.merge_moments(windows, k=2)) == 2
    assert [m.score for m in search_videos.merge_moments(windows, k=10, merge=False)] == [10, 9.9, 9.8, 9, 8, 7]


def test_outputs_carry_the_times(window_index, loaded, tmp_path, capsys):
    capsys.readouterr()
    caption = CLIPS[2][0].caption
    assert search_videos.main(["query", str(window_index), caption, "-k", "3", "--json",
                               "--html", str(tmp_path / "moments.html")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [set(("path", "start", "end", "score")) <= set(hit) for hit in result["hits"]] == [True] * 3
    assert all(0 <= hit["start"] < hit["end"] for hit in result["hits"])
    page = (tmp_path / "moments.html").read_text()
    first = result["hits"][0]
    assert f'#t={first["start"]:g},{first["end"]:g}"' in page and page.count("<video src=") == 3
    assert page.count('<img src="data:image/jpeg;base64,') == 3
    assert search_videos.main(["query", str(window_index), caption, "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    rank, score, path, start, end = lines[0].split()
    assert (path, float(start), float(end)) == (first["path"], pytest.approx(first["start"], abs=0.01),
                                                pytest.approx(first["end"], abs=0.01))


def test_windows_of_an_index_are_its_own(long_video, window_index, model_dir, caplog):
    caplog.clear()
    assert search_videos.main(["index", str(long_video[0]), "--model", str(model_dir), "--index", str(window_index),
                               *FAST, "--window_seconds", "3"]) == 1
    assert "built with --window_seconds 2.0, this run asks for 3.0" in caplog.records[-1].getMessage()
    report = index_folder(long_video[0], model_dir, window_index, *WINDOW)  # same windows: nothing to do
    assert report["encoded"] == 0 and report["unchanged"] == 2


# ----------------------------------------------------------------------------------------------------------------------
# Moment evaluation (issue 19 item 4)


def test_moment_eval_scores_each_caption_against_its_span(long_video, window_index, model_dir, loaded, tmp_path,
                                                          capsys, caplog):
    from moment_eval import read_annotations
    from retrieval_metrics import moment_retrieval_metrics

    folder, _ = long_video
    charades = tmp_path / "charades_test.txt"
    charades.write_text("".join(f"long {2.0 * number:.1f} {2.0 * number + 2:.1f}##{event.caption}\n"
                                for number, (event, _) in enumerate(CLIPS)))
    qvhighlights = tmp_path / "qv.jsonl"
    qvhighlights.write_text(json.dumps({"qid": 1, "vid": "long", "query": CLIPS[1][0].caption,
                                        "relevant_windows": [[2, 4]]}) + "\n")
    assert [(query.video, query.start, query.end) for query in read_annotations(str(qvhighlights))] == \
        [("long", 2.0, 4.0)]
    capsys.readouterr()
    assert search_videos.main(["index", str(folder), "--model", str(model_dir), "--index", str(window_index), *FAST,
                               *WINDOW, "--do_moment_eval", "--annotations", str(charades)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["queries"] == 4
    own, everywhere, truth = [], [], []
    for number, (event, _) in enumerate(CLIPS):
        hits = search_videos.search(window_index, text=event.caption, k=10, model=loaded,
                                    filter=index_store.SearchFilter(path_prefix="long.mp4"))
        own.append([(hit.start, hit.end, hit.score) for hit in hits])
        hits = search_videos.search(window_index, text=event.caption, k=10, model=loaded)
        everywhere.append([(hit.start, hit.end, hit.score) if hit.path.endswith("long.mp4") else (-1, -1, hit.score)
                           for hit in hits])
        truth.append([(2.0 * number, 2.0 * number + 2)])
    assert metrics["in_video"] == pytest.approx(moment_retrieval_metrics(own, truth))
    assert metrics["in_collection"] == pytest.approx(moment_retrieval_metrics(everywhere, truth))
    assert set(metrics["in_video"]) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP@0.5", "mAP@0.75", "mAP"}

    for content, reason in (("nosuch 0 2##a caption\n", "video 'nosuch' of the annotations: not in the index"),
                            ("long 3 1##backwards\n", "is not a span of seconds"),
                            ("long zero 2##a caption\n", "not an annotation row")):
        charades.write_text(content)
        caplog.clear()
        assert search_videos.main(["index", str(folder), "--model", str(model_dir), "--index", str(window_index),
                                   *FAST, *WINDOW, "--do_moment_eval", "--annotations", str(charades)]) == 1
        assert reason in caplog.records[-1].getMessage()


def test_an_ambiguous_video_stem_is_refused():
    from moment_eval import AnnotationError, MomentQuery, resolve_videos

    queries = [MomentQuery("dog", 0.0, 1.0, "a dog")]
    assert resolve_videos(queries, ["a/dog.mp4", "b/cat.mp4"]) == {"dog": "a/dog.mp4"}
    with pytest.raises(AnnotationError, match=r"'dog' of the annotations: names 2 indexed files \(a/dog.mp4, b/dog"):
        resolve_videos(queries, ["a/dog.mp4", "b/dog.mp4"])


def test_moment_demo_reports_the_index_metrics_and_chance(model_dir, tmp_path):
    """`scripts/moment_demo.py` on a tiny random model: long videos of synthetic clips, one table row per setting,
    the figures in [0, 100] and equal to its JSON line."""
    import os
    import subprocess
    import sys

    from test_search_videos import REPO

    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "moment_demo.py"), str(model_dir), "--videos", "2", "--clips", "3",
         "--workdir", str(tmp_path / "demo")], env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("6 captions in 2 videos of 3 clips (2.4 s each)")
    metrics = json.loads(lines[-1])
    assert metrics["queries"] == 6
    for line in lines[2:-1]:
        setting, *values = line.split()
        assert [float(value) for value in values] == pytest.approx(
            [round(value, 1) for value in metrics[setting].values()], abs=0.051)
        assert all(0 <= float(value) <= 100 for value in values)
