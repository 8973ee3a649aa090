# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Moment evaluation of an index of timed windows (`search_videos.py index ... --do_moment_eval --annotations FILE`):
every annotated caption is a query, scored against its ground-truth span with
`retrieval_metrics.moment_retrieval_metrics` (Moment-DETR's definitions), two ways:

- `in_video`: the moments found in the query's own video (the usual moment-retrieval setting);
- `in_collection`: the moments found in the whole index; a moment of another video counts as a miss (it enters the
  metrics as the empty span `(-1, -1)`, which overlaps nothing).

Annotation files: Charades-STA text (`VIDEO_ID START END##sentence` per line, seconds) or JSON lines with `video`
(a path relative to the indexed folder, or a file stem), `start`, `end` (seconds) and `caption` (also spelled
`query` / `sentence`), or QVHighlights rows (`vid`, `query`, `relevant_windows`: the first window is the span).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from datasets_scripts import SplitFileError
from datasets_scripts.moment_annotations import read_charades_sta, read_qvhighlights
from index_store import IndexStore, SearchFilter


#: Moments per query that enter the metrics (Moment-DETR's 10 best).
PREDICTIONS = 10


class AnnotationError(ValueError):
    """An annotation file that cannot be read, or a row that names no indexed video or no valid span."""


@dataclass(frozen=True)
class MomentQuery:
    """One annotated caption: the video (as the file names it), its ground-truth span in seconds."""

    video: str
    start: float
    end: float
    caption: str


def _json_row(fields: dict, source: str) -> MomentQuery:
    caption = next((fields[name] for name in ("caption", "query", "sentence") if name in fields), None)
    if not isinstance(caption, str) or "video" not in fields or "start" not in fields or "end" not in fields:
        raise AnnotationError(f"{source}: a row needs video, start, end and caption (or query / sentence)")
    return MomentQuery(str(fields["video"]), float(fields["start"]), float(fields["end"]), caption)


def _dataset_rows(path: str, first: str) -> list[MomentQuery]:
    """Charades-STA text or QVHighlights rows, read by the dataset readers (`datasets_scripts.moment_annotations`)."""
    try:
        if first.lstrip().startswith("{"):
            columns = read_qvhighlights(path)  # the first relevant window is the query's span
            return [MomentQuery(video, *windows[0], caption) if windows else None for video, windows, caption in
                    zip(columns["video_id"], columns["relevant_windows"], columns["caption"])]
        columns = read_charades_sta(path)
    except SplitFileError as error:
        raise AnnotationError(f"not an annotation row: {error}") from None
    return [MomentQuery(*row) for row in zip(columns["video_id"], columns["start"], columns["end"], columns["caption"])]


def read_annotations(path: str) -> list[MomentQuery]:
    """The queries of a Charades-STA text file, QVHighlights rows or a JSON-lines file (see the module docstring).

    Raises:
        AnnotationError: naming the file, the line and what is wrong.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path}: unreadable annotation file ({error})") from None
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise AnnotationError(f"{path}: no annotation rows")
    first = numbered[0][1]
    if first.lstrip().startswith("{") and "relevant_windows" not in json.loads(first):
        queries = []
        for number, line in numbered:
            try:
                queries.append(_json_row(json.loads(line), f"{path}:{number}"))
            except (ValueError, TypeError, KeyError) as error:
                if isinstance(error, AnnotationError):
                    raise
                raise AnnotationError(f"{path}:{number}: not an annotation row ({error})") from None
    else:
        queries = _dataset_rows(path, first)
    for (number, _), query in zip(numbered, queries):
        if query is None:
            raise AnnotationError(f"{path}:{number}: no relevant_windows")
        if not (math.isfinite(query.start) and math.isfinite(query.end) and 0 <= query.start < query.end):
            raise AnnotationError(f"{path}:{number}: span [{query.start}, {query.end}) is not a span of seconds")
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
        truth.append([(query.start, query.end)])
    return {"queries": len(queries), "in_video": moment_retrieval_metrics(in_video, truth),
            "in_collection": moment_retrieval_metrics(in_collection, truth)}


__all__ = ["AnnotationError", "MomentQuery", "evaluate_moments", "read_annotations", "resolve_videos"]
