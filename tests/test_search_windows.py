"""Timed windows (issue 19 items 1 and 2): a long video made of concatenated clips of known content is indexed as
windows; each stored vector is the model's vector of that span cut out as its own file; queries return moments.
The same holds for a variable-frame-rate and a 29.97 fps video, with bad files in the folder, across two processes,
through updates and after a killed run."""

import json
import logging
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

import folder_format  # noqa: E402
import folder_index  # noqa: E402
import index_store  # noqa: E402
import search_videos  # noqa: E402
from datasets_scripts.synthetic import encode_video, render_event  # noqa: E402
from processing_clip2video import window_spans  # noqa: E402
from test_search_videos import (  # noqa: E402, F401
    EVENTS, FAST, REPO, accelerate_launch, index_folder, kill_after_commits, loaded, model_dir, record_encoded,
    write_event_video,
)

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
# Timed windows of a variable-frame-rate and a 29.97 fps video, bad files among them, two processes, updates


@dataclass(frozen=True)
class TimedFrames:
    """Frames, each shown from `pts[i]` for `durations[i]` (in ticks of `time_base` seconds)."""

    frames: np.ndarray
    pts: np.ndarray
    durations: np.ndarray
    time_base: Fraction

    @property
    def duration(self) -> float:
        return float((self.pts[-1] + self.durations[-1]) * self.time_base)

    def cut(self, start: float, end: float) -> "TimedFrames":
        """`[start, end)` as its own video: the frames that begin inside it, timed from the first of them."""
        first, last = (round(Fraction(value).limit_denominator(10**6) / self.time_base) for value in (start, end))
        inside = (self.pts >= first) & (self.pts < last)
        return TimedFrames(self.frames[inside], self.pts[inside] - self.pts[inside][0], self.durations[inside],
                           self.time_base)

    def write(self, path: Path) -> str:
        """A lossless h264 mp4 without B-frames (so that the container stores each frame's own duration)."""
        with av.open(str(path), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=30, options={"qp": "0", "preset": "ultrafast", "bf": "0"})
            stream.codec_context.thread_count = 1
            stream.width, stream.height, stream.pix_fmt = self.frames.shape[2], self.frames.shape[1], "yuv420p"
            stream.time_base = stream.codec_context.time_base = self.time_base
            lasting = dict(zip(self.pts.tolist(), self.durations.tolist()))

            def mux(packets):
                for packet in packets:
                    packet.duration = lasting[packet.pts]
                    container.mux(packet)

            for image, pts in zip(self.frames, self.pts.tolist()):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts, frame.time_base = pts, self.time_base
                mux(stream.encode(frame))
            mux(stream.encode(None))
        return str(path)


def timed_clips(clips: list[tuple[int, int, int]], time_base: Fraction, seed: int) -> TimedFrames:
    """Clips of known content (`EVENTS[i]`) one after the other, clip `(event, frames, ticks)` at one frame every
    `ticks` of `time_base`."""
    frames = np.concatenate([render_event(EVENTS[event], count, 32, np.random.default_rng(seed + number))
                             for number, (event, count, _) in enumerate(clips)])
    durations = np.concatenate([[ticks] * count for _, count, ticks in clips]).astype(np.int64)
    return TimedFrames(frames, np.concatenate([[0], np.cumsum(durations)[:-1]]), durations, time_base)


#: 8, 5, 4 and 6.25 fps stretches (7.92 s: the last window is moved back to [5.92, 7.92)), and 29.97 fps (5.005 s).
TIMED = {
    "vfr.mp4": timed_clips([(0, 16, 125), (2, 10, 200), (3, 8, 250), (5, 12, 160)], Fraction(1, 1000), seed=20),
    "ntsc.mp4": timed_clips([(1, 50, 1001), (4, 50, 1001), (2, 50, 1001)], Fraction(1, 30000), seed=30),
}
#: What a run of the mixed folder indexes (5 fps `partial.mkv`: its decodable part) and skips, with the reasons.
READABLE = ["ntsc.mp4", "partial.mkv", "short.mp4", "vfr.mp4"]
UNREADABLE = {"empty.mp4": "empty file", "truncated.mp4": "truncated: the header declares 12.000 s of video"}


def remux(source: str, target: Path, faststart: bool = False) -> Path:
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(source) as inputs, av.open(str(target), "w", options=options) as output:
        stream = output.add_stream_from_template(inputs.streams.video[0])
        for packet in inputs.demux(inputs.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                output.mux(packet)
    return target


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> tuple[Path, Path]:
    """The VFR and 29.97 fps videos, a 2.4 s clip, and bad files: an empty one, a 12 s mp4 with its index in front cut
    in half (it declares frames it lacks), the same video as mkv cut at 60 % (no index: its decodable part is the
    video). Returns the folder and the untruncated mkv (outside it)."""
    folder, originals = tmp_path_factory.mktemp("mixed"), tmp_path_factory.mktemp("originals")
    for name, video in TIMED.items():
        video.write(folder / name)
    write_event_video(folder / "short.mp4", EVENTS[4], seed=9)
    (folder / "empty.mp4").write_bytes(b"")
    frames = np.concatenate([render_event(EVENTS[event], 12, 32, np.random.default_rng(40 + event))
                             for event in (0, 3, 5, 1, 2)])
    encode_video(frames, str(originals / "long.mp4"), fps=5)
    for name, remuxed, fraction in (("truncated.mp4", remux(str(originals / "long.mp4"), originals / "fast.mp4",
                                                                  faststart=True), 0.5),
                                    ("partial.mkv", remux(str(originals / "long.mp4"), originals / "long.mkv"), 0.6)):
        data = remuxed.read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * fraction)])
    return folder, originals / "long.mkv"


class LogLines(logging.Handler):
    """The messages of the log records it is handed."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def mixed_index(mixed_folder, model_dir, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """The mixed folder indexed in windows of 2 s every 1 s by one process: the index, its report, the log lines."""
    index_dir = tmp_path_factory.mktemp("mixed_index") / "windows"
    logs = LogLines()
    logging.getLogger("search_videos").addHandler(logs)
    try:
        report = index_folder(mixed_folder[0], model_dir, index_dir, *WINDOW)
    finally:
        logging.getLogger("search_videos").removeHandler(logs)
    return index_dir, report, logs.lines


def features(loaded, video: str, span: tuple[float, float] | None = None) -> tuple[np.ndarray, int]:
    """`get_video_features` of the processor's inputs of `video` (of its `span`) and how many frames they hold."""
    inputs = loaded.processor(videos=[video], return_tensors="pt", **({} if span is None else {"spans": span}))
    with torch.no_grad():
        vector = loaded.model.get_video_features(inputs["pixel_values"], inputs["video_mask"]).pooler_output[0]
    return vector.numpy(), int(inputs["video_mask"].sum())


@pytest.mark.parametrize("name", sorted(TIMED))
def test_windows_of_variable_and_odd_frame_rates_are_their_spans_cut_out(name, mixed_index, loaded, tmp_path):
    """Each window's record carries its span and the video's duration (from the frames' own times), the last window
    ends at the video's end, and its vector is the model's vector of that span cut out as its own file (the frames
    beginning inside it, each lasting as long as in the video)."""
    index_dir, _, _ = mixed_index
    video = TIMED[name]
    rows = sorted((key[1], value) for key, value in stored(index_dir).items() if key[0] == name)
    spans = window_spans(video.duration, 2.0, 1.0)
    assert [(record["start"], record["end"]) for _, (record, _) in rows] == spans
    assert spans[-1][1] == pytest.approx(video.duration) and spans[-1][0] != round(spans[-1][0])  # moved back
    for start, (record, vector) in rows:
        assert record["duration"] == pytest.approx(video.duration, abs=1e-3)
        cut = video.cut(record["start"], record["end"]).write(tmp_path / f"cut{start}.mp4")
        expected, frames = features(loaded, cut)
        assert np.abs(vector - expected).max() <= 1e-4, (name, start)
        assert record["frames"] == frames


def test_bad_files_in_a_windowed_run_are_counted_and_logged(mixed_folder, mixed_index, loaded):
    """An empty file and an mp4 that declares frames it lacks are skipped with their reasons (counted, logged, kept
    as failed for the next run); a truncated mkv, which declares nothing, is indexed over its decodable part: windows
    to its last decodable frame, each the model's vector of that span of the untruncated video."""
    index_dir, report, logs = mixed_index
    assert report["encoded"] == len(READABLE) and report["rows"] == len(stored(index_dir))
    assert sorted({path for path, _ in stored(index_dir)}) == READABLE
    assert [item["path"] for item in report["skipped"]] == sorted(UNREADABLE)
    for item in report["skipped"]:
        assert item["path"] in item["reason"] and UNREADABLE[item["path"]] in item["reason"], item
        assert f"skipping {item['path']}: {item['reason']}" in logs
    assert [item["path"] for item in folder_format.Manifest.load(index_dir).failed] == sorted(UNREADABLE)

    with av.open(str(mixed_folder[0] / "partial.mkv")) as container:
        decodable = sum(1 for _ in container.decode(video=0))
    # (with only a handful of frames left FFmpeg's probe reads to the end and fills in the segment's duration, which
    # then counts as declared: such a file is skipped as truncated, like an mp4)
    assert 20 <= decodable < 60
    partial = sorted((record["start"], record["end"], vector) for (path, _), (record, vector) in
                     stored(index_dir).items() if path == "partial.mkv")
    assert [(start, end) for start, end, _ in partial] == window_spans(decodable / 5, 2.0, 1.0)
    for start, end, vector in partial:
        expected, _ = features(loaded, str(mixed_folder[1]), span=(start, end))
        assert np.abs(vector - expected).max() <= 1e-4, start


def test_a_whole_video_lasts_until_its_last_window_ends(mixed_folder, mixed_index, model_dir, tmp_path):
    """A whole-video index records each video's duration from its frames' own times, as its windows are laid out: a
    variable-frame-rate video's frame count over its guessed rate (46 frames at 200 fps here) is not its length."""
    index_folder(mixed_folder[0], model_dir, tmp_path / "whole")
    whole = stored(tmp_path / "whole")
    assert sorted(path for path, _ in whole) == READABLE
    ends = {}
    for (path, _), (record, _) in stored(mixed_index[0]).items():
        ends[path] = max(ends.get(path, 0.0), record["end"])
    for (path, _), (record, _) in whole.items():
        assert record["duration"] == record["end"] == pytest.approx(ends[path], abs=1e-3), path
    assert whole[("vfr.mp4", 0.0)][0]["duration"] == pytest.approx(TIMED["vfr.mp4"].duration, abs=1e-3)


def test_two_processes_index_the_same_windows_as_one(mixed_folder, mixed_index, model_dir, tmp_path):
    """`accelerate launch` with 2 processes over the mixed folder: the same rows (path, start, end, frames, vector)
    and the same skipped files as the one-process run; each process encodes its share."""
    index_dir, single_report, _ = mixed_index
    result, _ = accelerate_launch(REPO / "search_videos.py", "index", str(mixed_folder[0]), "--model", str(model_dir),
                                  "--index", str(tmp_path / "sharded"), *FAST, *WINDOW)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "sharded" / folder_format.REPORT).read_text())
    # the 6 files by path, every other one: rank 0 gets empty.mp4, partial.mkv, truncated.mp4
    assert report["encoded_per_process"] == [1, 3]
    assert report["skipped"] == single_report["skipped"] and report["rows"] == single_report["rows"]
    sharded, single = stored(tmp_path / "sharded"), stored(index_dir)
    assert sharded.keys() == single.keys()
    for key, (record, vector) in sharded.items():
        assert record == single[key][0]
        assert np.abs(vector - single[key][1]).max() <= 1e-5, key


def test_a_windowed_update_replaces_every_window_of_a_changed_video(mixed_folder, model_dir, loaded, tmp_path,
                                                                    record_encoded):
    """A changed video's windows are all replaced by the new file's (none of the old, longer file's is left), a
    deleted video's are removed, an added one's are encoded, an unchanged one is not encoded again."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("vfr.mp4", "ntsc.mp4", "short.mp4"):
        shutil.copy2(mixed_folder[0] / name, folder / name)
    index_dir = tmp_path / "index"
    index_folder(folder, model_dir, index_dir, *WINDOW)
    before = stored(index_dir)
    record_encoded.clear()
    changed = render_event(EVENTS[1], 8, 32, np.random.default_rng(50))
    encode_video(changed, str(folder / "vfr.mp4"), fps=5)  # 7 windows of 7.92 s become one of 1.6 s
    (folder / "ntsc.mp4").unlink()
    TIMED["vfr.mp4"].write(folder / "added.mp4")
    report = index_folder(folder, model_dir, index_dir, *WINDOW)
    assert set(record_encoded) == {"vfr.mp4", "added.mp4"}
    assert (report["encoded"], report["removed"], report["unchanged"]) == (2, 1, 1)
    after = stored(index_dir)
    shorts = [key for key in before if key[0] == "short.mp4"]
    assert sorted(after) == sorted([("vfr.mp4", 0.0), *shorts] +
                                   [("added.mp4", start) for path, start in before if path == "vfr.mp4"])
    record, vector = after[("vfr.mp4", 0.0)]
    assert (record["start"], record["end"]) == (0.0, pytest.approx(1.6, abs=1e-3))
    assert np.abs(vector - features(loaded, str(folder / "vfr.mp4"))[0]).max() <= 1e-4
    for (path, start), (record, vector) in before.items():
        if path == "vfr.mp4":  # the same file under a new name: the same windows
            added, added_vector = after[("added.mp4", start)]
            assert {**added, "path": path, "mtime_ns": record["mtime_ns"]} == record
            assert np.abs(added_vector - vector).max() <= 1e-5
    for key in shorts:
        assert after[key][0] == before[key][0] and np.array_equal(after[key][1], before[key][1])


def test_a_killed_windowed_run_resumes_without_redoing_or_doubling_windows(mixed_folder, mixed_index, model_dir,
                                                                          tmp_path, record_encoded):
    """`kill -9` halfway through a windowed run: the rerun keeps the videos whose windows were committed (all of
    them: a video's windows are committed together), encodes the rest, and every window is in the index once."""
    folder = tmp_path / "videos"
    folder.mkdir()
    names = [f"copy{number}.mp4" for number in range(6)]
    for name in names:
        shutil.copy2(mixed_folder[0] / "vfr.mp4", folder / name)
    index_dir = tmp_path / "index"
    kill_after_commits(tmp_path, ["index", str(folder), "--model", str(model_dir), "--index", str(index_dir),
                                  "--num_workers", "0", "--batch_size", "1", "--commit_every", "1", *WINDOW],
                       index_dir, 2)
    windows = [start for path, start in stored(mixed_index[0]) if path == "vfr.mp4"]
    committed = [record["path"] for _, _, records, _ in folder_format.read_pending_chunks(index_dir, 128)
                 for record in records]
    assert 2 <= len(set(committed)) < len(names)
    assert sorted(committed) == sorted(path for path in set(committed) for _ in windows)  # whole videos

    report = index_folder(folder, model_dir, index_dir, *WINDOW)
    assert not set(committed) & set(record_encoded) and set(committed) | set(record_encoded) == set(names)
    assert report["encoded"] == len(names) - len(set(committed))
    rows = [(record["path"], record["start"]) for _, _, record in folder_index.VideoIndex(index_dir).all_records()]
    assert sorted(rows) == sorted((name, start) for name in names for start in windows)  # each window once
    single = stored(mixed_index[0])
    for (path, start), (_, vector) in stored(index_dir).items():
        assert np.abs(vector - single[("vfr.mp4", start)][1]).max() <= 1e-5, (path, start)


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
