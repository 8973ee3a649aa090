# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""One source row -> its video, captions, clips and id; a split of a source -> a `CaptionTable` laid out like a
benchmark split (one row per caption, grouped by video or, for rows with a span, by clip) and the `DataReport` of what
was skipped.

The source itself (opening it, its columns, the options that name it) is `data_sources`'s; decoding the videos is
`data_clip2video`'s.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

try:
    from .processing_clip2video import VideoDecodeError
except ImportError:
    from processing_clip2video import VideoDecodeError
try:
    from .data_sources import CAPTION_KEYS, Columns, DataSourceError, DataValidationError
except ImportError:
    from data_sources import CAPTION_KEYS, Columns, DataSourceError, DataValidationError
from datasets_scripts import DataReport


logger = logging.getLogger(__name__)

#: Name of the data validation report written next to a run's outputs.
DATA_REPORT_FILENAME = "data_report.json"


def captions_of(value: Any) -> list[str]:
    """The captions of one row: a string, a list of strings, or a dict with a `caption`/`captions`/`text` key (a dict
    without one gives none: `build_caption_table` names such rows as malformed)."""
    if value is None:
        return []
    if isinstance(value, dict):
        for key in CAPTION_KEYS:
            if key in value:
                return captions_of(value[key])
        return []
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, (list, tuple)):
        return [caption for item in value for caption in captions_of(item)]
    return [str(value).strip()]


def _caption_problem(value: Any) -> Optional[str]:
    """Why a caption value holds no caption although it is not empty: a dict with none of `CAPTION_KEYS`."""
    if isinstance(value, dict) and not any(key in value for key in CAPTION_KEYS):
        return f"the caption {sorted(value)} has none of the keys {list(CAPTION_KEYS)}"
    return None


def _seconds(value: Any) -> Optional[float]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a number of seconds")
    return seconds


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    """`[start, end]` or a list of such pairs -> list of pairs (none for None / [])."""
    if value is None or (isinstance(value, (list, tuple)) and not len(value)):
        return []
    if isinstance(value, (list, tuple)) and len(value) == 2 and not isinstance(value[0], (list, tuple)):
        return [(value[0], value[1])]
    if isinstance(value, (list, tuple)) and all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in value):
        return [(pair[0], pair[1]) for pair in value]
    raise ValueError(f"{value!r} is not a [start, end] pair or a list of pairs")


def row_clips(record: dict, columns: Columns) -> list[tuple[list[str], Optional[tuple[float, float]]]]:
    """The clips of one source row: `(captions, span)` each, `span` `(start, end)` in seconds or None (the whole video).

    A row without span columns is one clip of its whole video. A span column of pairs may hold several spans: with a
    list of as many captions (ActivityNet Captions' `timestamps` and `sentences`) each caption is its span's, else every
    span gets all the row's captions (QVHighlights' `relevant_windows` of one `query`).

    Raises:
        ValueError: a span that is not `0 <= start < end` (seconds), ends after the row's `duration`, or is not a
            number.
    """
    value = record[columns.caption]
    if columns.start is None:
        return [(captions_of(value), None)]
    if columns.start == columns.end:
        raw = _pairs(record[columns.start])
    else:
        raw = [(record[columns.start], record[columns.end])]
    spans = []
    for start, end in raw:
        start, end = _seconds(start), _seconds(end)
        if start is None and end is None:
            continue
        if start is None or end is None or not 0 <= start < end:
            raise ValueError(f"span [{start}, {end}] is not a clip (seconds, 0 <= start < end)")
        duration = _seconds(record[columns.duration]) if columns.duration else None
        if duration is not None and end > duration + 1e-6:
            raise ValueError(f"span [{start:g}, {end:g}] ends after the video's end ({columns.duration} {duration:g})")
        spans.append((start, end))
    if not spans:
        return [(captions_of(value), None)]
    if len(spans) > 1 and isinstance(value, (list, tuple)) and len(value) == len(spans):
        return [(captions_of(item), span) for item, span in zip(value, spans)]
    captions = captions_of(value)
    return [(captions, span) for span in spans]


def seconds_text(seconds: float) -> str:
    """The shortest text of a time that reads back as the same number: `12.5`, `20`, `10000.12` (not `%g`'s
    `10000.1`, which two different times share)."""
    text = f"{seconds:g}"
    return text if float(text) == seconds else repr(float(seconds))


def clip_id(video_id: str, span: Optional[tuple[float, float]]) -> str:
    """The id of a clip: its video's id, and for a span its exact times (`video@12.5-20`)."""
    return video_id if span is None else f"{video_id}@{seconds_text(span[0])}-{seconds_text(span[1])}"


def _distinct_ids(ids: dict[Any, str]) -> dict[Any, str]:
    """`ids` with a `#n` suffix on every id that two clips share (a video named `a@1-2` beside the span 1-2 of `a`):
    two clips are two ids."""
    counts = Counter(ids.values())
    numbers: Counter = Counter()
    distinct = {}
    for key, name in ids.items():
        if counts[name] > 1:
            distinct[key] = f"{name}#{numbers[name]}"
            numbers[name] += 1
        else:
            distinct[key] = name
    return distinct


def video_reference(value: Any, base_dir: Optional[str] = None) -> Any:
    """What `decode_video` reads for one video value: a path (made absolute against `base_dir`), bytes, or frames.

    A `datasets.Video` value `{"path", "bytes"}` gives its bytes when it has them, else its path; a `VideoDecodeError`
    (a streamed prepared row whose frames are corrupt) is passed on for `decode_video` to raise, and so is one for a
    value that names no video (a number in a column of paths), so a stream counts the row as skipped.
    """
    if isinstance(value, VideoDecodeError):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if base_dir and not os.path.isabs(path) and "://" not in path:
            return os.path.join(base_dir, path)
        return path
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, np.ndarray, torch.Tensor)):
        return value
    if value is None:
        return None
    return VideoDecodeError(f"<{value!r}>: a {type(value).__name__} is not a video (expected a path, bytes, a "
                            "datasets.Video value, a frame folder or a (T, H, W, 3) array)")


def reference_name(reference: Any, fallback: str) -> str:
    """A printable name of a video reference (its path, else `fallback`)."""
    return reference if isinstance(reference, str) else fallback


def default_video_id(reference: Any, fallback: str) -> str:
    """A video's id when the source has no id column: its file (or folder) name without extension, else `fallback`."""
    if isinstance(reference, str) and reference:
        return Path(reference.rstrip("/")).stem or fallback
    return fallback


def _path_names(path: str, base_dir: Optional[str]) -> list[str]:
    """Ids of a video file, shortest first: the file name without extension, the path relative to `base_dir` without
    extension, with it, the whole path (`build_caption_table` takes the first that no other video of the split has)."""
    relative = os.path.relpath(path, base_dir) if base_dir and os.path.isabs(path) else path
    relative = relative.replace(os.sep, "/").rstrip("/")
    if relative.startswith("../"):
        relative = path
    return [default_video_id(path, path), os.path.splitext(relative)[0], relative, path]


def _unique_names(candidates: dict[Any, list[str]]) -> dict[Any, str]:
    """Gives each key the first of its candidate names that no other key takes (keys are distinct videos)."""
    names: dict[Any, str] = {}
    pending = list(candidates)
    for level in range(max((len(names) for names in candidates.values()), default=0)):
        at_level = {key: candidates[key][min(level, len(candidates[key]) - 1)] for key in pending}
        counts = Counter(at_level.values())
        taken = set(names.values())
        for key, name in at_level.items():
            if counts[name] == 1 and name not in taken:
                names[key] = name
        pending = [key for key in pending if key not in names]
    for number, key in enumerate(pending):  # identical last names of distinct keys: cannot happen for paths
        names[key] = f"{candidates[key][-1]}#{number}"
    return names


def is_missing(reference: Any) -> bool:
    """True for a reference that names no readable video: none, empty bytes, or a local path that does not exist."""
    if reference is None:
        return True
    if isinstance(reference, (bytes, bytearray)):
        return len(reference) == 0
    if isinstance(reference, str):
        return "://" not in reference and not os.path.exists(reference)
    return len(reference) == 0


# ----------------------------------------------------------------------------------------------------------------------
# Splits: one row per caption, grouped by video
# ----------------------------------------------------------------------------------------------------------------------


def gather_undecodable(reports: Sequence[DataReport], gather_object) -> None:
    """Gives every process's reports the undecodable videos all processes met (a training video is found undecodable
    only by the process that decodes it), sorted, so the report is the same on 1 and N processes.

    `gather_object` is `accelerate.utils.gather_object` (a collective: every process calls this).
    """
    found = gather_object([[report.undecodable_videos for report in reports]])
    for index, report in enumerate(reports):
        report.undecodable_videos = sorted({name for per_process in found for name in per_process[index]})


def write_data_report(reports: Sequence[DataReport], output_dir: str) -> Path:
    """`output_dir/data_report.json`: one entry per split, with counts and the names of skipped videos/captions."""
    path = Path(output_dir) / DATA_REPORT_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([report.to_dict() for report in reports], indent=2))
    return path


def _check_report(report: DataReport, strict: bool) -> None:
    """Logs what validation skipped; with `strict`, raises `DataValidationError` naming it instead."""
    if strict and report.has_problems:
        counts = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in report.counts().items() if count)
        raise DataValidationError(f"{report.source}/{report.split}: strict validation failed ({counts}): "
                                  + "; ".join(report.problem_lines()))
    if report.has_problems:
        report.log(logger)


class SourceVideos(Sequence):
    """Video references of a map-style split, read lazily from the source row of each video (bytes stay on disk
    until a video is decoded); picklable for DataLoader workers."""

    def __init__(self, dataset, column: str, source_rows: Sequence[int], base_dir: Optional[str]):
        self.dataset = dataset.select_columns([column])
        self.column, self.source_rows, self.base_dir = column, list(source_rows), base_dir

    def __len__(self) -> int:
        return len(self.source_rows)

    def __getitem__(self, video_index: int) -> Any:
        return video_reference(self.dataset[self.source_rows[video_index]][self.column], self.base_dir)


def _video_column_summary(dataset, column: str) -> tuple[list[Optional[str]], list[bool], dict[int, str]]:
    """The video column read without materialising video bytes: per row its path (None for in-memory values), whether
    it holds bytes, and the rows whose value names no video (a number among paths: why)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    paths: list[Optional[str]] = []
    has_bytes: list[bool] = []
    bad: dict[int, str] = {}
    if type(dataset.features.get(column)).__name__ == "Json":  # mixed values (json): each row on its own
        for row, value in enumerate(dataset.select_columns([column])[column]):
            reference = video_reference(value)
            if isinstance(reference, VideoDecodeError):
                bad[row] = f"video value {value!r} ({type(value).__name__}) is not a path"
            paths.append(value if isinstance(value, str) else (value or {}).get("path") if isinstance(value, dict)
                         else None)
            has_bytes.append(isinstance(value, dict) and bool(value.get("bytes")))
        return paths, has_bytes, bad
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=4096):
        array = table.column(column).combine_chunks()
        if pa.types.is_struct(array.type):
            paths += array.field("path").to_pylist()
            has_bytes += pc.fill_null(pc.greater(pc.binary_length(array.field("bytes")), 0), False).to_pylist()
        elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            paths += array.to_pylist()
            has_bytes += [False] * len(array)
        elif pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
            paths += [None] * len(array)
            has_bytes += pc.fill_null(pc.greater(pc.binary_length(array), 0), False).to_pylist()
        elif pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type):
            raise DataSourceError(f"video column {column!r} holds {array.type} values (row {len(paths)}: "
                                  f"{array[0].as_py()!r}), not paths, bytes or frames: pass --video_column")
        else:  # in-memory frames: read per video when decoded
            paths += [None] * len(array)
            has_bytes += pc.is_valid(array).to_pylist()
    return paths, has_bytes, bad


@dataclass
class CaptionTable:
    """A source split laid out like a benchmark split: one row per caption, grouped by video (by clip, for rows with
    a span: rows of one video with different spans are different clips, with different ids).

    `videos[v]` is what `decode_video` reads for video `v` and `spans[v]` the part of it that is the clip, `(start,
    end)` in seconds or None for the whole video; `rows` has the benchmark columns `video_id`, `caption`, `video_index`
    and `video` (its printable name), and `start` / `end` (seconds; None: the whole video) when the source has spans.
    """

    rows: Any  # datasets.Dataset
    videos: Sequence[Any]
    report: DataReport
    spans: Sequence[Optional[tuple[float, float]]] = ()


def _identity(record: dict, row: int, path: Optional[str], columns: Columns, source: str,
              base_dir: Optional[str]) -> tuple[Any, list[str]]:
    """What makes a row's video one video (rows with the same key are one video) and its candidate ids.

    An id column names the video (a webdataset `__key__` only within its shard: keys restart in each tar); without
    one the video's path does, and its id is the shortest of its names that no other video of the split has (`dog`,
    else `a/dog`, else `a/dog.mp4`); a video held as bytes with no id is its own row.

    Raises:
        ValueError: the id column is empty for this row.
    """
    if columns.video_id:
        value = record[columns.video_id]
        if value is None or not str(value).strip():
            raise ValueError(f"no video id ({columns.video_id} is {value!r})")
        video_id = str(value)
        if columns.video_id == "__key__" and record.get("__url__"):
            shard = Path(str(record["__url__"])).name
            return ("key", record["__url__"], video_id), [video_id, f"{shard.split('.')[0]}/{video_id}",
                                                           f"{shard}/{video_id}"]
        return ("id", video_id), [video_id]
    if path is not None:
        return ("path", path), _path_names(path, base_dir)
    return ("row", row), [f"{source}[{row}]"]


#: One clip of a source row: its id, captions and span (`(start, end)` seconds; None: the whole video).
Clip = tuple[str, list[str], Optional[tuple[float, float]]]


def stream_clips(row: dict, columns: Columns, base_dir: Optional[str]) -> tuple[Any, list[Clip]]:
    """One streamed source row as what a stream collator reads: the video reference and the row's clips, each `(id,
    captions, span)`, with the ids `build_caption_table` would give (a webdataset key with its shard; a clip's span in
    its id) — the video's file name when the source has no id column.

    Raises:
        ValueError: the row has no video id, or a span that is not one (the collator counts the row as skipped).
    """
    reference = video_reference(row[columns.video], base_dir)
    path = reference if isinstance(reference, str) else None
    key, names = _identity(row, 0, path, columns, "<stream row>", None)
    video_id = names[1] if key[0] == "key" else names[0]
    problem = _caption_problem(row[columns.caption])
    if problem:
        raise ValueError(f"{video_id}: {problem}")
    return reference, [(clip_id(video_id, span), captions, span) for captions, span in row_clips(row, columns)]


def build_caption_table(dataset, columns: Columns, base_dir: Optional[str], source: str, split: str,
                        strict: bool = False) -> CaptionTable:
    """Groups a map-style source by video (rows with the same id merge their captions; rows with a span are clips,
    grouped by video and span) and validates it.

    Skipped, and named in the returned report (`strict`: `DataValidationError` instead): a video whose local file is
    missing or whose value is empty (`missing_videos`); an empty caption, and a video left with none
    (`empty_captions`); a row whose id is empty, whose video value is not a video, whose caption is a record without
    a caption key, or whose span is not a span of the video (`malformed`, by row); a row whose id is already another
    video's (`duplicate_ids`: an id column naming two files).
    """
    import datasets

    report = DataReport(source=source, split=split, listed_videos=len(dataset))
    paths, has_bytes, bad_values = _video_column_summary(dataset, columns.video)
    wanted = [c for c in (columns.caption, columns.video_id, columns.start, columns.end, columns.duration) if c]
    if columns.video_id == "__key__" and "__url__" in (dataset.column_names or ()):
        wanted.append("__url__")
    readable = dataset.select_columns(list(dict.fromkeys(wanted)))
    clips: dict[Any, dict[str, Any]] = {}  # (video key, span) -> first row, names, captions
    video_paths: dict[Any, Optional[str]] = {}  # video key -> the file it names
    empty: list[Any] = []
    for row, record in enumerate(readable):
        path = video_reference(paths[row], base_dir) if paths[row] else None
        if row in bad_values:
            report.malformed.append(f"row {row}: {bad_values[row]}")
            continue
        try:
            key, names = _identity(record, row, path, columns, source, base_dir)
            row_spans = row_clips(record, columns)
        except ValueError as error:
            report.malformed.append(f"row {row}: {error}")
            continue
        if not has_bytes[row] and (path is None or is_missing(path)):
            report.missing_videos.append(reference_name(path, names[0]))
            continue
        if video_paths.setdefault(key, path) != path:
            report.duplicate_ids.append(f"{names[0]} (row {row}: {path}; the id is {video_paths[key]}'s)")
            continue
        problem = _caption_problem(record[columns.caption])
        if problem:
            report.malformed.append(f"row {row}: {problem}")
            continue
        for captions, span in row_spans:
            clip = clips.setdefault((key, span), {"row": row, "names": names, "span": span, "captions": []})
            kept = [caption for caption in captions if caption]
            if len(kept) < len(captions) or not captions:
                empty.append((key, span))
            clip["captions"].extend(kept)
    video_names = _unique_names({key: clip["names"] for (key, _), clip in clips.items()})
    ids = _distinct_ids({clip_key: clip_id(video_names[clip_key[0]], clip_key[1]) for clip_key in clips})
    report.empty_captions.extend(ids[clip_key] for clip_key in empty)
    kept_clips = [clip_key for clip_key, clip in clips.items() if clip["captions"]]
    with_spans = any(clip_key[1] is not None for clip_key in kept_clips)
    columns_out: dict[str, list] = {"video_id": [], "video": [], "caption": [], "video_index": []}
    if with_spans:
        columns_out.update(start=[], end=[])
    for video_index, clip_key in enumerate(kept_clips):
        clip = clips[clip_key]
        name = reference_name(video_reference(paths[clip["row"]], base_dir) if paths[clip["row"]] else None,
                              ids[clip_key])
        for caption in clip["captions"]:
            columns_out["video_id"].append(ids[clip_key])
            columns_out["video"].append(name)
            columns_out["caption"].append(caption)
            columns_out["video_index"].append(video_index)
            if with_spans:
                columns_out["start"].append(clip["span"][0] if clip["span"] else None)
                columns_out["end"].append(clip["span"][1] if clip["span"] else None)
    report.num_videos, report.num_captions = len(kept_clips), len(columns_out["caption"])
    _check_report(report, strict)
    if not kept_clips:
        raise DataSourceError(f"{source}/{split}: no video with a caption left after validation"
                              + (f" ({'; '.join(report.problem_lines())})" if report.has_problems else ""))
    features = {"video_id": datasets.Value("string"), "video": datasets.Value("string"),
                "caption": datasets.Value("string"), "video_index": datasets.Value("int32")}
    if with_spans:
        features.update(start=datasets.Value("float64"), end=datasets.Value("float64"))
    rows = datasets.Dataset.from_dict(columns_out, features=datasets.Features(features))
    videos = SourceVideos(dataset, columns.video, [clips[clip_key]["row"] for clip_key in kept_clips], base_dir)
    return CaptionTable(rows, videos, report, [clip_key[1] for clip_key in kept_clips])


__all__ = [
    "DATA_REPORT_FILENAME",
    "CaptionTable",
    "DataReport",
    "SourceVideos",
    "build_caption_table",
    "captions_of",
    "clip_id",
    "default_video_id",
    "gather_undecodable",
    "row_clips",
    "stream_clips",
    "video_reference",
    "write_data_report",
]
