"""The caption -> video index that the retrieval metrics need, computed without reading any video.

Every benchmark split is laid out one row per caption, rows grouped by video, videos in the
split's order, and `video_index` numbering the videos 0..V-1. From that column alone:

* `caption_to_video[i]`: the video of caption row `i` (the ground truth of text->video query `i`);
* `cut_off_points`: cumulative caption counts per video, as the original code builds them
  (`cut_off_points[v]` = index one past the last caption of video `v`); the multi-caption metrics
  reshape the (captions x videos) similarity into (V, max captions, V) with it.

Single-caption splits (MSR-VTT 1k-A, synthetic-motion) have `caption_to_video == range(V)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class EvalIndex:
    """Caption -> video ground truth of one split.

    Attributes:
        caption_to_video: length `num_captions`; video index of every caption row.
        cut_off_points: length `num_videos`; cumulative caption count after each video.
        video_ids: length `num_videos`; video id of every video index.
    """

    caption_to_video: tuple[int, ...]
    cut_off_points: tuple[int, ...]
    video_ids: tuple[str, ...]

    @property
    def num_videos(self) -> int:
        return len(self.cut_off_points)

    @property
    def num_captions(self) -> int:
        return len(self.caption_to_video)

    @property
    def captions_per_video(self) -> tuple[int, ...]:
        starts = (0,) + self.cut_off_points[:-1]
        return tuple(end - start for start, end in zip(starts, self.cut_off_points))

    @property
    def is_single_caption(self) -> bool:
        """True when caption `i` belongs to video `i` for every `i` (square similarity, GT on the diagonal)."""
        return self.num_captions == self.num_videos

    @property
    def first_caption_rows(self) -> tuple[int, ...]:
        """Row of the first caption of every video: encode videos from these rows only."""
        return (0,) + self.cut_off_points[:-1] if self.cut_off_points else ()

    @classmethod
    def from_columns(cls, video_index: Sequence[int], video_id: Sequence[str]) -> "EvalIndex":
        """Builds the index from the `video_index` and `video_id` columns of a split, in row order.

        Raises:
            ValueError: rows are not grouped by video in `video_index` order (e.g. the split was
                shuffled), or one video index carries two ids.
        """
        if len(video_index) != len(video_id):
            raise ValueError(f"video_index has {len(video_index)} rows but video_id has {len(video_id)}")
        cut_off_points: list[int] = []
        ids: list[str] = []
        for row, (index, vid) in enumerate(zip(video_index, video_id)):
            index = int(index)
            if index == len(ids):
                if ids:
                    cut_off_points.append(row)
                ids.append(vid)
            elif index != len(ids) - 1:
                raise ValueError(
                    f"row {row}: video_index {index} after {len(ids) - 1}; evaluation needs the split's rows "
                    "grouped by video in video_index order (do not shuffle or filter an evaluation split)"
                )
            elif ids[index] != vid:
                raise ValueError(f"row {row}: video_index {index} is both {ids[index]!r} and {vid!r}")
        if ids:
            cut_off_points.append(len(video_index))
        return cls(tuple(int(i) for i in video_index), tuple(cut_off_points), tuple(ids))


def get_eval_index(dataset: Any) -> EvalIndex:
    """Caption -> video index of a split returned by `load_benchmark` (reads two columns, no video).

    Args:
        dataset: a `datasets.Dataset` (or any mapping of column name -> sequence) with the
            `video_index` and `video_id` columns, in its original row order.
    """
    return EvalIndex.from_columns(list(dataset["video_index"]), list(dataset["video_id"]))
