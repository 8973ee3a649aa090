"""`DataReport`: what validation found in one split of a source, for the benchmarks built here and for own data
(`data_sources.build_caption_table`) alike. Every list names what was skipped; its length is the count.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Iterable

logger = logging.getLogger(__name__)

#: How many names of one kind a log line or error message shows.
MAX_NAMED = 10

#: Kinds of problem, in report order, with the words a log line says about them.
PROBLEMS = {
    "missing_videos": "video(s) missing from video_dir or the data folder, skipped",
    "duplicate_ids": "duplicate video id(s), later copies skipped",
    "videos_without_captions": "video(s) without any caption, skipped",
    "empty_captions": "empty caption(s), skipped",
    "malformed": "malformed line(s)/entr(ies)/row(s), skipped",
    "undecodable_videos": "undecodable video(s), skipped",
}
#: Kinds every source can have: counted in `counts()` even when zero.
ALWAYS_COUNTED = ("missing_videos", "empty_captions", "undecodable_videos")


@dataclass
class DataReport:
    """What validation found while building one split.

    Args:
        source: the benchmark name or the source as the run names it (builder and files).
        split: the split.
        listed_videos: entries the source lists (benchmarks: ids in the split file; own data: source rows).
        num_videos, num_captions: what is left after validation.
        videos_checked: False when the benchmark was built without a `video_dir` (videos not looked for).
        missing_videos, duplicate_ids, videos_without_captions, empty_captions, malformed, undecodable_videos:
            what was skipped, named (a video id, a path, or a place in a file: `file: line 3`, `row 3`).
    """

    source: str
    split: str
    listed_videos: int = 0
    num_videos: int = 0
    num_captions: int = 0
    videos_checked: bool = True
    missing_videos: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    videos_without_captions: list[str] = field(default_factory=list)
    empty_captions: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    undecodable_videos: list[str] = field(default_factory=list)

    @property
    def has_problems(self) -> bool:
        return any(getattr(self, kind) for kind in PROBLEMS)

    def counts(self) -> dict[str, int]:
        """Skipped items per kind: the kinds every source can have (`ALWAYS_COUNTED`) and any other that occurred."""
        return {kind: len(getattr(self, kind)) for kind in PROBLEMS
                if kind in ALWAYS_COUNTED or getattr(self, kind)}

    def problem_lines(self) -> list[str]:
        """One human-readable line per kind of problem (count and first names)."""
        lines = []
        for kind, words in PROBLEMS.items():
            names = getattr(self, kind)
            if names:
                shown = ", ".join(names[:MAX_NAMED]) + (", ..." if len(names) > MAX_NAMED else "")
                lines.append(f"{len(names)} {words}: {shown}")
        return lines

    def summary(self) -> str:
        head = (f"{self.source}/{self.split}: {self.num_videos} videos of {self.listed_videos} listed, "
                f"{self.num_captions} captions")
        if not self.videos_checked:
            head += " (videos not checked: no video_dir)"
        return "; ".join([head] + self.problem_lines())

    def log(self, log: logging.Logger = logger) -> None:
        """Logs the summary: INFO when clean, WARNING when something was skipped."""
        log.log(logging.WARNING if self.has_problems else logging.INFO, self.summary())

    def add_undecodable(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self.undecodable_videos:
                self.undecodable_videos.append(name)

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts()}

    @classmethod
    def from_dict(cls, entry: dict) -> "DataReport":
        return cls(**{key: value for key, value in entry.items() if key != "counts"})
