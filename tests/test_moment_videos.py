"""The embedded moment benchmark's generator: long videos whose segments are known synthetic-motion events."""

import json

import numpy as np
import pytest

from datasets_scripts.moments import ANNOTATIONS, MomentVideosConfig, generate_moment_videos
from datasets_scripts.synthetic import decode_video, event_pairs, EVENT_KINDS, render_event


def test_segments_decode_to_their_events_and_spans_are_exact(tmp_path):
    config = MomentVideosConfig(num_videos=2, segments_per_video=3, frames_per_segment=6, fps=5, frame_size=32, seed=3)
    queries = generate_moment_videos(tmp_path, config)
    assert len(queries) == 6
    assert len({q["query"] for q in queries}) == 6  # one ground-truth moment per caption
    assert [json.loads(line) for line in (tmp_path / ANNOTATIONS).read_text().splitlines()] == queries
    frames = decode_video(str(tmp_path / "moment-001.mp4"))
    assert frames.shape == (18, 32, 32, 3)
    mine = [q for q in queries if q["vid"] == "moment-001"]
    assert [q["relevant_windows"] for q in mine] == [[[0.0, 1.2]], [[1.2, 2.4]], [[2.4, 3.6]]]
    assert all(q["duration"] == pytest.approx(3.6) for q in mine)
    events = {event.caption: event for kind in EVENT_KINDS for pair in event_pairs(kind) for event in pair}
    for segment, query in enumerate(mine):  # each segment is its caption's event, drawn with its own seed
        drawn = render_event(events[query["query"]], 6, 32, np.random.default_rng([3, 1, segment]))
        decoded = frames[segment * 6:(segment + 1) * 6].astype(float)
        assert np.abs(decoded - drawn).mean() < 3  # lossless luma; yuv420p chroma blurs the shape edges only
    second = generate_moment_videos(tmp_path / "again", config)
    assert second == queries  # deterministic for a seed
    assert np.array_equal(decode_video(str(tmp_path / "again" / "moment-001.mp4")), frames)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="num_videos"):
        MomentVideosConfig(num_videos=0)
    with pytest.raises(ValueError, match="distinct captions"):
        MomentVideosConfig(num_videos=10_000)
