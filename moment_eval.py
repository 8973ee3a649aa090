# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Moment evaluation of an index of timed windows (`search_videos.py index ... --do_moment_eval --annotations FILE`):
every annotated caption is a query, scored against its ground-truth span with
`retrieval_metrics.moment_retrieval_metrics` (Moment-DETR's definitions), two ways:

- `in_video`: the moments found in the query's own video (the usual moment-retrieval setting);
- `in_collection`: the moments found in the whole index; a moment of another video counts as a miss (it enters the
  metrics as the empty span `(-1, -1)`, which overlaps nothing).

Annotation files (the format is told from the text): Charades-STA text (`VIDEO_ID START END##sentence` per line,
seconds); QVHighlights rows (`vid`, `query`, `relevant_windows`: every window is ground truth); ActivityNet Captions
json (`{video_id: {duration, timestamps, sentences}}`, a query per sentence); or JSON lines with `video` (a path
relative to the indexed folder, or a file stem), `start`, `end` (seconds) and `caption` (also spelled `query` /
`sentence`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from datasets_scripts import SplitFileError
from datasets_scripts.moment_annotations import ACTIVITYNET_CAPTIONS, CHARADES_STA, MOMENT_READERS, QVHIGHLIGHTS
from index_store import IndexStore, SearchFilter


#: Moments per query that enter the metrics (Moment-DETR's 10 best).
PREDICTIONS = 10


class AnnotationError(ValueError):
    """An annotation file that cannot be read, or a row that names no indexed video or no valid span."""


@dataclass(frozen=True)
class MomentQuery:
    """One annotated caption: the video (as the file names it), its ground-truth span in seconds, and any further
    ground-truth windows of the same caption (QVHighlights' other `relevant_windows`)."""

    video: str
    start: float
    end: float
    caption: str
    more_windows: tuple[tuple[float, float], ...] = ()

    @property
    def windows(self) -> list[tuple[float, float]]:
        """Every ground-truth window of the caption, its span first (what the metrics match predictions against)."""
        return [(self.start, self.end), *self.more_windows]


def _json_row(fields: dict, source: str) -> MomentQuery:
    caption = next((fields[name] for name in ("caption", "query", "sentence") if name in fields), None)
    if not isinstance(caption, str) or "video" not in fields or "start" not in fields or "end" not in fields:
        raise AnnotationError(f"{source}: a row needs video, start, end and caption (or query / sentence)")
    return MomentQuery(str(fields["video"]), float(fields["start"]), float(fields["end"]), caption)


def _json_lines(path: str, numbered: list[tuple[int, str]]) -> list[MomentQuery]:
    queries = []
    for number, line in numbered:
        try:
            fields = json.loads(line)
            if not isinstance(fields, dict):
                raise TypeError("not a json object")
            queries.append(_json_row(fields, f"{path}:{number}"))
        except (ValueError, TypeError, KeyError) as error:
            if isinstance(error, AnnotationError):
                raise
            raise AnnotationError(f"{path}:{number}: not an annotation row ({error})") from None
    return queries


def _dataset_rows(path: str, kind: str) -> list[MomentQuery]:
    """The queries of an annotation file of `MOMENT_FORMATS`, read by the dataset readers
    (`datasets_scripts.moment_annotations`)."""
    try:
        columns = MOMENT_READERS[kind](path)
    except SplitFileError as error:
        raise AnnotationError(f"not an annotation row: {error}") from None
    if kind != QVHIGHLIGHTS:
        return [MomentQuery(*row) for row in zip(columns["video_id"], columns["start"], columns["end"],
                                                  columns["caption"])]
    queries = []  # every relevant window is ground truth; the first is the query's span
    for video, windows, caption, qid in zip(columns["video_id"], columns["relevant_windows"], columns["caption"],
                                            columns["qid"]):
        if not windows:
            raise AnnotationError(f"{path}: query {qid} has no relevant_windows")
        queries.append(MomentQuery(video, *windows[0], caption, tuple(tuple(window) for window in windows[1:])))
    return queries


def annotation_format(text: str) -> str:
    """The format of an annotation file's text: one of `MOMENT_FORMATS`, or `"json-lines"` (rows of `video`,
    `start`, `end`, `caption`)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first.lstrip().startswith(("{", "[")):
        return CHARADES_STA
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # json lines (or broken json: its rows say where)
    if isinstance(document, dict) and document and all(isinstance(entry, dict) and "sentences" in entry
                                                       for entry in document.values()):
        return ACTIVITYNET_CAPTIONS
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return "json-lines"
    return QVHIGHLIGHTS if isinstance(row, dict) and "relevant_windows" in row else "json-lines"


def read_annotations(path: str) -> list[MomentQuery]:
    """The queries of an annotation file: Charades-STA text, QVHighlights rows, ActivityNet Captions json, or
    json lines (see the module docstring); the format is told from the text.

    Raises:
        AnnotationError: naming the file, the line and what is wrong.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path}: unreadable annotation file ({error})") from None
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not numbered:
        raise AnnotationError(f"{path}: no annotation rows")
    kind = annotation_format(text)
    queries = _json_lines(path, numbered) if kind == "json-lines" else _dataset_rows(path, kind)
    if not queries:
        raise AnnotationError(f"{path}: no annotation rows")
    one_a_line = kind != ACTIVITYNET_CAPTIONS  # a query a line: errors name the line
    for index, query in enumerate(queries):
        where = f"{path}:{numbered[index][0]}" if one_a_line else f"{path}: video {query.video!r}"
        for start, end in query.windows:
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
                raise AnnotationError(f"{where}: span [{start}, {end}) is not a span of seconds")
    return queries


def resolve_videos(queries: list[MomentQuery], paths) -> dict[str, str]:
    """Indexed path of each query's video: the same relative path, or the one indexed file of that stem.

    Raises:
        AnnotationError: a video that is not in the index, or a stem that names two indexed files (never guessed).
    """
    paths = sorted(paths)
    by_stem: dict[str, list[str]] = {}
    for path in paths:
        by_stem.setdefault(PurePosixPath(path).stem, []).append(path)
    resolved = {}
    for query in queries:
        if query.video in resolved:
            continue
        if query.video in paths:
            resolved[query.video] = query.video
            continue
        found = by_stem.get(query.video, [])
        if len(found) != 1:
            reason = "not in the index" if not found else f"names {len(found)} indexed files ({', '.join(found[:3])})"
            raise AnnotationError(f"video {query.video!r} of the annotations: {reason}")
        resolved[query.video] = found[0]
    return resolved


def evaluate_moments(store: IndexStore, loaded, queries: list[MomentQuery], k: int = PREDICTIONS,
                     ranked=None, merge: bool = True) -> dict:
    """`in_video` and `in_collection` moment metrics of `queries` against an index of windows (see the module
    docstring); `ranked` is `search_videos.ranked` (the query route of the command line); `merge=False` scores the
    raw windows (`query --no_merge`) instead of the merged moments."""
    from retrieval_metrics import moment_retrieval_metrics

    if store.meta.get("window_seconds") is None:
        raise AnnotationError(f"{store.location}: moment evaluation needs an index of timed windows "
                              "(index --window_seconds W)")
    indexed = resolve_videos(queries, store.files())
    root = Path(store.meta["video_dir"])
    vectors = loaded.encode_text([query.caption for query in queries])
    in_video, in_collection, truth = [], [], []
    for query, vector in zip(queries, vectors):
        path = indexed[query.video]
        own = ranked(store, vector[None], k, loaded.logit_scale, merge=merge, filter=SearchFilter(path_prefix=path))
        in_video.append([(hit.start, hit.end, hit.score) for hit in own if hit.path == str(root / path)])
        found = ranked(store, vector[None], k, loaded.logit_scale, merge=merge)
        in_collection.append([(hit.start, hit.end, hit.score) if hit.path == str(root / path) else
                              (-1.0, -1.0, hit.score) for hit in found])
        truth.append(query.windows)
    return {"queries": len(queries), "in_video": moment_retrieval_metrics(in_video, truth),
            "in_collection": moment_retrieval_metrics(in_collection, truth)}


__all__ = ["AnnotationError", "MomentQuery", "evaluate_moments", "read_annotations", "resolve_videos"]
