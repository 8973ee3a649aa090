"""Time spans in the video processor: a clip `[start, end)` of a video chosen by the processor's own sampling (against
ffmpeg's cut of that span as its own file, at odd frame rates and on a variable-frame-rate file), many windows of one
video decoded once, and spans through the data path."""

import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import skip_or_fail
from processing_clip2video import CLIP2VideoProcessor, VideoDecodeError
from test_processing import TOKENIZER_DIR, coded_frame, read_code, write_timed_video, write_video


av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def processor():
    return CLIP2VideoProcessor.from_clip_tokenizer(str(TOKENIZER_DIR))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A 3 s 30 fps h264 video."""
    return {"h264": write_video(tmp_path_factory.mktemp("videos") / "h264.mp4", "libx264", 90, options={"qp": "0"})}


# ---------------------------------------------------------------------------------------------------
# Time spans: a clip of a video, and many windows of one video decoded once
# ---------------------------------------------------------------------------------------------------


def codes(frames) -> list[int]:
    return [read_code(frame) for frame in frames]


def cut(video: str, start: float, end: float, path) -> str:
    """`[start, end)` of `video` cut out as its own file by ffmpeg (re-encoded losslessly)."""
    if shutil.which("ffmpeg") is None:
        skip_or_fail("needs the ffmpeg program")
    subprocess.run(["ffmpeg", "-v", "0", "-y", "-ss", f"{start}", "-i", video, "-t", f"{end - start}", "-c:v",
                    "libx264", "-qp", "0", "-fps_mode", "passthrough", "-enc_time_base", "-1",
                    "-video_track_timescale", "1000", str(path)], check=True)
    return str(path)


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """~10 s videos at odd frame rates (29.97 and 25 fps) and a variable-frame-rate one, frames coded by index."""
    root = tmp_path_factory.mktemp("long")
    vfr = np.cumsum([0] + ([33] * 30 + [80] * 20 + [50] * 30) * 2).tolist()  # 30, 12.5 and 20 fps stretches, 8.2 s
    return {
        "29.97": write_video(root / "ntsc.mp4", "libx264", 300, fps=Fraction(30000, 1001), options={"qp": "0"}),
        "25": write_video(root / "pal.mkv", "libx264", 250, fps=25, options={"qp": "0"}),
        "vfr": write_timed_video(root / "vfr.mp4", vfr),
    }


def test_window_spans_lay_out_windows_to_the_videos_end():
    from processing_clip2video import window_spans

    assert window_spans(10.0, 4, 2) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]
    assert window_spans(11.0, 4, 2) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0), (7.0, 11.0)]
    assert window_spans(9.0, 4) == [(0.0, 4.0), (4.0, 8.0), (5.0, 9.0)]
    assert window_spans(3.2, 4, 2) == [(0.0, 3.2)]  # shorter than one window: the whole video
    assert window_spans(4.0, 4, 2) == [(0.0, 4.0)]
    for bad in (0, -1, float("nan"), "4"):
        with pytest.raises(ValueError, match="window_seconds"):
            window_spans(10.0, bad)


@pytest.mark.requires_program("ffmpeg")  # skipped without it; a failure under CI
@pytest.mark.parametrize("rate", ["29.97", "25", "vfr"])
def test_a_span_gives_the_frames_of_the_span_cut_out_as_its_own_file(processor, long_videos, tmp_path, rate):
    """`span=(start, end)` chooses the processor's frames inside the span as it would in that span cut out as its own
    file (ffmpeg -ss/-t), for every sampling mode; through `preprocess(spans=...)` the model inputs are the same."""
    vp = processor.video_processor
    video = long_videos[rate]
    with av.open(video) as container:  # spans from frame to frame, so that ffmpeg's cut keeps exactly their frames
        stream = container.streams.video[0]
        times = np.array(sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.size))
    # (the cut file's last frame lasts 1/30 s whatever it lasted in the video: spans of the VFR file end in a 30 fps
    # stretch, where the durations agree; ffmpeg's re-timing of the cut moves a pick by one frame at most there)
    same = (lambda a, b: a == b) if rate != "vfr" else (
        lambda a, b: len(a) == len(b) and np.abs(np.subtract(a, b)).max() <= 1)
    spans = [(1.5, 4.6), (0.0, 4.5), (2.0, 4.95)] if rate == "vfr" else [(1.5, 5.5), (0.0, 3.0), (4.2, 8.0)]
    for nominal_start, nominal_end in spans:
        start, end = (float(times[np.argmin(np.abs(times - t))]) for t in (nominal_start, nominal_end))
        clip = cut(video, start, end, tmp_path / f"clip{start}.mp4")
        for options in [{}, {"feature_framerate": 1}, {"frame_sampling": "uniform"}]:
            from_span = codes(vp.load_frames(video, span=(start, end), **options))
            from_clip = codes(vp.load_frames(clip, **options))
            assert same(from_span, from_clip), (start, end, options, from_span, from_clip)
            inputs = vp(video, spans=(start, end), **options)
            if rate != "vfr":
                assert torch.equal(inputs["pixel_values"], vp(clip, **options)["pixel_values"]), (start, end, options)
        every_image = dict(feature_framerate=1, num_frames=1000)  # all 5 fps images of the span, as of the clip's
        assert same(codes(vp.load_frames(video, span=(start, end), **every_image)),
                    codes(vp.load_frames(clip, **every_image)))


def test_spans_per_video_and_errors(processor, long_videos):
    vp = processor.video_processor
    video = long_videos["25"]
    batch = vp([video, video], spans=[(0.0, 2.0), None])
    assert torch.equal(batch["pixel_values"][0], vp(video, spans=(0.0, 2.0))["pixel_values"][0])
    assert torch.equal(batch["pixel_values"][1], vp(video)["pixel_values"][0])
    # an end past the video's end is cut to it; a span starting at or after the end is an error naming the video
    assert codes(vp.load_frames(video, span=(8.0, 50.0))) == codes(vp.load_frames(video, span=(8.0, 10.0)))
    with pytest.raises(VideoDecodeError, match=r"pal.mkv: span \[12, 14\) s starts at or after the end of the video"):
        vp(video, spans=(12.0, 14.0))
    for bad in [(3.0, 2.0), (-1.0, 2.0), ("a", 2), (1.0,)]:
        with pytest.raises(ValueError, match="span"):
            vp.load_frames(video, span=bad)
    with pytest.raises(ValueError, match="2 spans for 3 videos"):
        vp([video] * 3, spans=[(0, 1), (1, 2)])
    # the original's 5 fps images in memory: image k is at k / 5 s
    images = [coded_frame(k) for k in range(50)]
    assert codes(vp.load_frames(images, span=(2.0, 4.0), feature_framerate=1)) == list(range(10, 20))


@pytest.mark.parametrize("rate", ["29.97", "vfr"])
def test_windows_of_one_video_are_decoded_once_and_equal_each_spans_frames(processor, long_videos, monkeypatch, rate):
    import video_readers

    vp = processor.video_processor
    video = long_videos[rate]
    opened = []
    reader = video_readers.READERS["decord"]
    monkeypatch.setitem(video_readers.READERS, "decord", lambda *args: opened.append(1) or reader(*args))
    windows = vp.preprocess_windows(video, window_seconds=4, window_stride=2)
    assert len(opened) == 1  # one open of the file for all windows
    spans = windows["spans"].tolist()
    duration = {"29.97": 300 / (30000 / 1001), "vfr": None}[rate]
    assert spans[0][0] == 0 and all(end - start == pytest.approx(4) for start, end in spans)
    if duration is not None:
        assert spans[-1][1] == pytest.approx(duration, abs=1e-3) and len(spans) == 5
    assert windows["pixel_values"].shape == (len(spans), vp.num_frames, 3, 224, 224)
    for position, span in enumerate(spans):
        single = vp(video, spans=tuple(span))
        assert torch.equal(windows["pixel_values"][position], single["pixel_values"][0]), span
        assert torch.equal(windows["video_mask"][position], single["video_mask"][0]), span
    # explicit spans: ends cut to the video's end, a window past the end is an error
    frames, used = vp.load_windows(video, spans=[(1.0, 3.0), (7.0, 99.0)], frame_sampling="uniform", num_frames=4)
    assert used.tolist()[0] == [1.0, 3.0] and used[1, 1] < 11 and [f.shape[1:] for f in frames] == [(224, 224, 3)] * 2
    with pytest.raises(VideoDecodeError, match="starts at or after the end"):
        vp.load_windows(video, spans=[(1.0, 3.0), (60.0, 64.0)])


def test_a_video_shorter_than_one_window_is_one_window(processor, videos):
    vp = processor.video_processor
    windows = vp.preprocess_windows(videos["h264"], window_seconds=10)
    assert windows["spans"].tolist() == [[0.0, 3.0]]
    assert torch.equal(windows["pixel_values"], vp(videos["h264"])["pixel_values"])


def test_the_data_path_decodes_each_clips_span(processor, long_videos):
    """`decode_video(..., span=)` and a frame store with `spans` give the processor's frames of each span; a span
    after the video's end is a VideoDecodeError (a counted skip for the data path)."""
    import data_clip2video

    vp = processor.video_processor
    video = long_videos["25"]
    assert codes(data_clip2video.decode_video(video, vp, span=(2.0, 6.0))) == codes(vp.load_frames(video, span=(2, 6)))
    store = data_clip2video.VideoFrameStore([video, video, video], vp, spans=[(0.0, 3.0), None, (20.0, 24.0)])
    assert codes(store.load(0)) == codes(vp.load_frames(video, span=(0.0, 3.0)))
    assert codes(store.load(1)) == codes(vp.load_frames(video))
    with pytest.raises(VideoDecodeError, match="starts at or after the end of the video"):
        store.load(2)
