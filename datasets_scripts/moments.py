"""`synthetic-moments`: long videos made of synthetic-motion events, each caption's span known.

A long video is a run of `segments_per_video` events of `synthetic-motion` (same shapes, colours and drawing), one
after the other, each `frames_per_segment` frames at `fps`; every event is a possible query and every other event of
the collection is a distractor for it. Captions are unique over the whole collection (no two segments share one), so
each query has exactly one ground-truth moment: `[start, end)` of its segment in its video, in seconds.

The annotations are written in QVHighlights' jsonl format (one line per query: `qid`, `query`, `vid`, `duration`,
`relevant_windows` = `[[start, end]]`), so they double as a real-format sample for that source.

    >>> from datasets_scripts.moments import generate_moment_videos
    >>> queries = generate_moment_videos("moments", num_videos=20, segments_per_video=5)
    >>> queries[0]["query"], queries[0]["relevant_windows"]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .synthetic import all_captions, encode_video, event_pairs, EVENT_KINDS, render_event

ANNOTATIONS = "annotations.jsonl"


@dataclass(frozen=True)
class MomentVideosConfig:
    """Generation parameters (all of them decide the videos: same values, same files).

    Args:
        num_videos (`int`, defaults to 20): long videos to write.
        segments_per_video (`int`, defaults to 5): events per video, back to back.
        frames_per_segment (`int`, defaults to 12): frames of one event (12 at 5 fps: 2.4 s, a default-run clip).
        fps (`int`, defaults to 5): frame rate of the files.
        frame_size (`int`, defaults to 40): square frame side in pixels (the default run's size).
        seed (`int`, defaults to 0): random seed.
    """

    num_videos: int = 20
    segments_per_video: int = 5
    frames_per_segment: int = 12
    fps: int = 5
    frame_size: int = 40
    seed: int = 0

    def __post_init__(self):
        for name in ("num_videos", "segments_per_video", "frames_per_segment", "fps", "frame_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MomentVideosConfig.{name} must be an integer >= 1, got {value!r}")
        if self.num_videos * self.segments_per_video > len(all_captions()):
            raise ValueError(f"{self.num_videos} x {self.segments_per_video} segments need as many distinct captions; "
                             f"the generator has {len(all_captions())}")

    @property
    def segment_seconds(self) -> float:
        return self.frames_per_segment / self.fps


def _distinct_events(config: MomentVideosConfig, rng: np.random.Generator) -> list:
    """`num_videos * segments_per_video` events with pairwise different captions, in a seeded order."""
    events = [event for kind in EVENT_KINDS for pair in event_pairs(kind) for event in pair]
    order = rng.permutation(len(events))[: config.num_videos * config.segments_per_video]
    return [events[i] for i in order]


def generate_moment_videos(folder: str | os.PathLike, config: MomentVideosConfig | None = None, **options) -> list[dict]:
    """Writes `moment-{k:03d}.mp4` long videos and `annotations.jsonl` into `folder`; returns the annotations.

    Args:
        folder: output folder (created; files of this generator only are written: `moment-*.mp4`,
            `annotations.jsonl`).
        config: the generation parameters, or their fields as keywords.

    Returns:
        one dict per query: `qid`, `query`, `vid` (file stem), `path` (file name in `folder`), `duration` (seconds),
        `relevant_windows` (`[[start, end]]` seconds).
    """
    config = config or MomentVideosConfig(**options)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng([config.seed, 7])
    events = _distinct_events(config, rng)
    seconds = config.segment_seconds
    duration = config.segments_per_video * seconds
    annotations = []
    for video in range(config.num_videos):
        name = f"moment-{video:03d}"
        mine = events[video * config.segments_per_video:(video + 1) * config.segments_per_video]
        frames = [render_event(event, config.frames_per_segment, config.frame_size,
                               np.random.default_rng([config.seed, video, segment]))
                  for segment, event in enumerate(mine)]
        encode_video(np.concatenate(frames), os.path.join(folder, f"{name}.mp4"), config.fps)
        for segment, event in enumerate(mine):
            annotations.append({"qid": len(annotations), "query": event.caption, "vid": name, "path": f"{name}.mp4",
                                "duration": duration,
                                "relevant_windows": [[round(segment * seconds, 6), round((segment + 1) * seconds, 6)]]})
    with open(os.path.join(folder, ANNOTATIONS), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in annotations)
    return annotations
