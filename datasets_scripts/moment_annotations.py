"""Annotation files of timestamped captions (moment retrieval datasets), read as sources of clips.

* **Charades-STA** (`charades_sta_train.txt`, `charades_sta_test.txt`): one caption a line,
  `VIDEO_ID START END##sentence` (seconds), e.g. `3MSZA 24.3 30.4##person turn a light on.`
* **QVHighlights** (`highlight_train_release.jsonl`, `highlight_val_release.jsonl`): one query a line, a json
  object with `qid`, `query`, `vid`, `duration` and `relevant_windows` (`[[start, end], ...]` seconds; each window is
  a clip of the query).
* **ActivityNet Captions** (`train.json`, `val_1.json`, `val_2.json`): one json object
  `{video_id: {"duration": seconds, "timestamps": [[start, end], ...], "sentences": [...]}}`; each sentence is a
  caption of its own timestamp.

`read_moments(name, path, video_dir)` gives a `datasets.Dataset` with the columns `video_id`, `video` (the file of
that id in `video_dir`, `""` when there is none: counted as missing), `caption` and the span (`start` / `end`, or
QVHighlights' `relevant_windows`; and `duration` where the file has it), which `data_sources.build_caption_table` lays out one clip per
span. Spans are checked there (`0 <= start < end`, not past `duration`).
"""

from __future__ import annotations

import json
import os
from typing import Optional

from .errors import PathLike, SplitFileError
from .formats import _read_text
from .videos import index_video_dir

CHARADES_STA = "charades-sta"
QVHIGHLIGHTS = "qvhighlights"
ACTIVITYNET_CAPTIONS = "activitynet-captions"
#: Annotation formats `read_moments` reads (their names for `--dataset_name`).
MOMENT_FORMATS = (CHARADES_STA, QVHIGHLIGHTS, ACTIVITYNET_CAPTIONS)


def read_charades_sta(path: PathLike) -> dict[str, list]:
    """Columns `video_id`, `start`, `end`, `caption` of a Charades-STA annotation file, one row a line.

    Raises:
        SplitFileError: a line that is not `VIDEO_ID START END##sentence` (naming the file and the line).
    """
    columns: dict[str, list] = {"video_id": [], "start": [], "end": [], "caption": []}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        head, separator, sentence = line.partition("##")
        fields = head.split()
        if not separator or len(fields) != 3:
            raise SplitFileError(path, f"expected 'VIDEO_ID START END##sentence', got {line!r}", line=number)
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise SplitFileError(path, f"start and end must be seconds, got {fields[1]!r} {fields[2]!r}",
                                 line=number) from None
        columns["video_id"].append(fields[0])
        columns["start"].append(start)
        columns["end"].append(end)
        columns["caption"].append(sentence.strip())
    if not columns["video_id"]:
        raise SplitFileError(path, "no annotation line")
    return columns


def read_qvhighlights(path: PathLike) -> dict[str, list]:
    """Columns `video_id`, `caption`, `relevant_windows`, `duration`, `qid` of a QVHighlights annotation file.

    Raises:
        SplitFileError: a line that is not a json object with `vid`, `query` and `relevant_windows`.
    """
    columns: dict[str, list] = {"video_id": [], "caption": [], "relevant_windows": [], "duration": [], "qid": []}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise SplitFileError(path, f"not a json object ({error.msg})", line=number) from None
        if not isinstance(entry, dict) or any(key not in entry for key in ("vid", "query", "relevant_windows")):
            raise SplitFileError(path, "expected a json object with 'vid', 'query' and 'relevant_windows'", line=number)
        windows = entry["relevant_windows"]
        if not isinstance(windows, list) or not all(isinstance(w, list) and len(w) == 2 for w in windows):
            raise SplitFileError(path, f"relevant_windows must be a list of [start, end], got {windows!r}", line=number)
        columns["video_id"].append(str(entry["vid"]))
        columns["caption"].append(entry["query"])
        columns["relevant_windows"].append([[float(value) for value in window] for window in windows])
        columns["duration"].append(None if entry.get("duration") is None else float(entry["duration"]))
        columns["qid"].append(str(entry.get("qid", number)))
    if not columns["video_id"]:
        raise SplitFileError(path, "no annotation line")
    return columns


def read_activitynet_captions(path: PathLike) -> dict[str, list]:
    """Columns `video_id`, `start`, `end`, `caption`, `duration` of an ActivityNet Captions file, one row a sentence.

    Raises:
        SplitFileError: not one json object of videos, or a video without `timestamps` and `sentences` lists of the
            same length, or a timestamp that is not `[start, end]` seconds (naming the file and the video).
    """
    try:
        videos = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise SplitFileError(path, f"not a json document ({error.msg})", line=error.lineno) from None
    if not isinstance(videos, dict) or not videos:
        raise SplitFileError(path, "expected a json object {video_id: {duration, timestamps, sentences}}")
    columns: dict[str, list] = {"video_id": [], "start": [], "end": [], "caption": [], "duration": []}
    for video_id, entry in videos.items():
        timestamps = entry.get("timestamps") if isinstance(entry, dict) else None
        sentences = entry.get("sentences") if isinstance(entry, dict) else None
        if not isinstance(timestamps, list) or not isinstance(sentences, list) or len(timestamps) != len(sentences):
            raise SplitFileError(path, f"video {video_id!r}: expected lists 'timestamps' and 'sentences' of one length")
        try:
            spans = [(float(start), float(end)) for start, end in timestamps]
            duration = None if entry.get("duration") is None else float(entry["duration"])
        except (TypeError, ValueError):
            raise SplitFileError(path, f"video {video_id!r}: timestamps must be [start, end] seconds, got "
                                       f"{timestamps!r}") from None
        for (start, end), sentence in zip(spans, sentences):
            columns["video_id"].append(str(video_id))
            columns["start"].append(start)
            columns["end"].append(end)
            columns["caption"].append(sentence.strip() if isinstance(sentence, str) else sentence)
            columns["duration"].append(duration)
    return columns


#: The reader of each of `MOMENT_FORMATS`.
MOMENT_READERS = {CHARADES_STA: read_charades_sta, QVHIGHLIGHTS: read_qvhighlights,
                  ACTIVITYNET_CAPTIONS: read_activitynet_captions}


def read_moments(name: str, path: PathLike, video_dir: Optional[PathLike]):
    """An annotation file of `MOMENT_FORMATS` as a `datasets.Dataset` of clips (see the module docstring).

    Raises:
        ValueError: `name` is not a moment format, or `video_dir` is not given.
        SplitFileError: the file is malformed.
    """
    import datasets

    if name not in MOMENT_READERS:
        raise ValueError(f"unknown annotation format {name!r}; choose one of {', '.join(MOMENT_FORMATS)}")
    if video_dir is None or not os.path.isdir(video_dir):
        raise ValueError(f"{name}: give --video_dir, the folder of the videos (found by id: <video_id>.mp4, ...); "
                         f"got {video_dir!r}")
    columns = MOMENT_READERS[name](path)
    found = index_video_dir(video_dir, wanted=set(columns["video_id"]))
    columns["video"] = [found.get(video_id, "") for video_id in columns["video_id"]]
    return datasets.Dataset.from_dict(columns)
