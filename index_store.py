# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""What every search index engine implements: the record of one stored vector, the `IndexStore` interface, the
errors (`index_engines.open_index` / `create_index` pick the engine from the location).

    folder path                                  -> `folder_index.FolderIndex` (the default: exact search, one machine)
    *.db, http://, https://, tcp://, unix:...    -> `milvus_index.MilvusIndex` (optional: `pip install -e ".[milvus]"`)

The command line (`search_videos.py`) and the Python API (`search_videos.search`) only go through this module.

A record (one stored vector) is a plain dict:

    path      str    relative to the indexed folder, posix separators
    size      int    bytes of the file when it was encoded
    mtime_ns  int    its modification time (ns); with `size`, the rule that says a file changed
    duration  float  seconds of the video, or None when unknown
    frames    int    frames the model saw
    start     float  seconds; 0.0 for a whole-video record
    end       float  seconds; the video's duration (or None) for a whole-video record

A row is identified by `(path, start)`: with timed windows a video has one row per window. Rows of two files are never
merged under one key.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------


class VideoIndexError(Exception):
    """Base class of the index errors."""


class IndexFormatError(VideoIndexError):
    """An index location is missing, not an index, or from an unknown format version."""


class ModelMismatchError(VideoIndexError):
    """The model given for a query (or an update) is not the model that built the index."""


class IndexChangedError(VideoIndexError):
    """The index was rewritten by an index run while this process was reading it, and the files it was reading are
    gone: open it again."""


class IndexBusyError(VideoIndexError):
    """Another index run is writing the index."""


class IndexWriteError(VideoIndexError):
    """The index cannot be created or written (a file in the way, no permission, read-only, server refusal)."""


class RunAbortedError(VideoIndexError):
    """Another process of a multi-process index run failed (or died): this one stops too; the message says which
    process and why."""


class EngineNotInstalledError(VideoIndexError):
    """The location needs an optional engine whose package is not installed."""


# ----------------------------------------------------------------------------------------------------------------------
# Records and hits
# ----------------------------------------------------------------------------------------------------------------------


def make_record(path: str, size: int, mtime_ns: int, duration: float | None, frames: int, start: float = 0.0,
                end: float | None = None) -> dict:
    """A record (see the module docstring); a whole video (`end` None) ends at its duration."""
    return {"path": path, "size": int(size), "mtime_ns": int(mtime_ns), "duration": duration, "frames": int(frames),
            "start": round(float(start), 6), "end": duration if end is None else round(float(end), 6)}


def record_span(record: dict) -> tuple[float, float | None]:
    """`(start, end)` seconds of a record (records written before windows existed: the whole video)."""
    return float(record.get("start") or 0.0), record.get("end", record.get("duration"))


@dataclass
class Hit:
    """One search result: absolute path, score (the model's logit for a text query), the stored record; `start` /
    `end` are the hit's seconds (a whole video: 0 and its duration; a merged moment: the span of its windows)."""

    path: str
    score: float
    record: dict
    start: float = 0.0
    end: float | None = None

    def __post_init__(self):
        if self.start == 0.0 and self.end is None:
            self.start, self.end = record_span(self.record)

    def to_dict(self, rank: int) -> dict:
        return {"rank": rank, "path": self.path, "start": self.start, "end": self.end, "score": self.score,
                "duration": self.record.get("duration"), "frames": self.record.get("frames"),
                "size": self.record.get("size")}


@dataclass(frozen=True)
class SearchFilter:
    """Which records a search may return: paths under `path_prefix` (relative to the indexed folder, posix), videos
    whose duration is within `[min_duration, max_duration]` seconds (a record of unknown duration fails a duration
    bound). The folder engine applies it in numpy (`matches`), Milvus as a boolean expression."""

    path_prefix: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None

    def __post_init__(self):
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")

    def matches(self, record: dict) -> bool:
        if self.path_prefix and not record["path"].startswith(self.path_prefix):
            return False
        duration = record.get("duration")
        if self.min_duration is not None and (duration is None or duration < self.min_duration):
            return False
        if self.max_duration is not None and (duration is None or duration > self.max_duration):
            return False
        return True


# ----------------------------------------------------------------------------------------------------------------------
# The interface
# ----------------------------------------------------------------------------------------------------------------------


#: Fields of `IndexStore.meta` that must be equal for an update (or a query) to use an existing index.
IDENTITY = ("dim", "window_seconds", "window_stride")


def new_meta(video_dir: str, model: dict, dim: int, window_seconds: float | None = None,
             window_stride: float | None = None) -> dict:
    """The `meta` of a new index: the indexed folder, the model's fingerprint dict (`name_or_path`, `fingerprint`,
    `bf16`, `logit_scale`), the vector width and the windows (None: one vector per file)."""
    return {"video_dir": video_dir, "model": dict(model), "dim": int(dim), "window_seconds": window_seconds,
            "window_stride": window_stride, "failed": []}


def check_meta(existing: dict, wanted: dict, location: str) -> None:
    """Raises unless an index with `existing` meta may be updated by a run that wants `wanted`.

    Raises:
        ModelMismatchError: another model (fingerprint), another precision (bf16) or another vector width.
        IndexFormatError: another indexed folder, other window settings.
    """
    check_model(existing, wanted["model"], location)
    if bool(existing["model"].get("bf16", False)) != bool(wanted["model"].get("bf16", False)):
        raise ModelMismatchError(f"{location}: built with bf16={existing['model'].get('bf16')}, this run has "
                                 f"bf16={wanted['model'].get('bf16')} (start over with --overwrite)")
    if existing["dim"] != wanted["dim"]:
        raise ModelMismatchError(f"{location}: vectors of width {existing['dim']}, the model gives {wanted['dim']}")
    if existing["video_dir"] != wanted["video_dir"]:
        raise IndexFormatError(f"{location}: indexes {existing['video_dir']}, not {wanted['video_dir']}; use another "
                               "--index (or --overwrite to start over)")
    for name in ("window_seconds", "window_stride"):
        if existing.get(name) != wanted.get(name):
            raise IndexFormatError(f"{location}: built with --{name} {existing.get(name)}, this run asks for "
                                   f"{wanted.get(name)}; use the same windows, another --index, or --overwrite")


def check_model(meta: dict, model: dict, location: str) -> None:
    """Raises `ModelMismatchError` unless `model` (a fingerprint dict) is the model and preprocessing that built the
    index whose meta is `meta`."""
    if model["fingerprint"] != meta["model"]["fingerprint"]:
        raise ModelMismatchError(
            f"{location}: built with model {meta['model']['name_or_path']!r} (fingerprint "
            f"{meta['model']['fingerprint']}), but {model['name_or_path']!r} has fingerprint {model['fingerprint']}: "
            "a different model or preprocessing gives incomparable scores; query with the index's model or re-index "
            "(index ... --overwrite starts over)")


class IndexStore(abc.ABC):
    """A search index: stored vectors with their records, exact inner-product search.

    Writing: one run at a time holds the index (`create`, on the main process); in a multi-process run the other
    processes `open(location, writer=NAME)` and add their rows too. Rows become durable with `commit` and visible
    to queries once `merge` ran (the main process, after every process committed). A killed run then a rerun leaves
    no duplicate row and loses nothing committed.

    Every engine is a context manager (`close` releases what it holds: a lock, a connection).
    """

    location: str

    # -- opening ---------------------------------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def create(cls, location: str, meta: dict, overwrite: bool = False) -> "IndexStore":
        """Opens `location` for an update run (holding it until `close`): creates the index when there is none,
        checks an existing one against `meta` (`check_meta`), or, with `overwrite`, starts it over (removing only
        what the index itself wrote).

        Raises:
            ModelMismatchError, IndexFormatError: see `check_meta`; IndexFormatError also for a location that holds
                something that is not an index (nothing of it is deleted).
            IndexBusyError: another run writes the index.  IndexWriteError: it cannot be created or written.
        """

    @classmethod
    @abc.abstractmethod
    def open(cls, location: str, writer: str | None = None) -> "IndexStore":
        """Opens an existing index for queries, or (`writer`: a name unique within the run, e.g. `r1`) for adding
        rows next to the run that `create`d it.

        Raises:
            IndexFormatError: not an index (named), an unknown format version.
        """

    def close(self) -> None:
        """Releases what the store holds (lock, connection)."""

    def __enter__(self) -> "IndexStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what is stored --------------------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def meta(self) -> dict:
        """`video_dir`, `model` (fingerprint dict), `dim`, `window_seconds`, `window_stride`, `failed` (records of the
        videos that could not be encoded, each with its `reason`)."""

    @abc.abstractmethod
    def files(self) -> dict[str, tuple[int, int]]:
        """`{path: (size, mtime_ns)}` of every stored file (for incremental planning)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Rows stored."""

    @abc.abstractmethod
    def record(self, path: str, start: float | None = None) -> dict | None:
        """The record of a stored row (`start` None: the file's first row), or None."""

    @abc.abstractmethod
    def vector(self, path: str, start: float | None = None) -> np.ndarray | None:
        """The `(dim,)` float32 vector of a stored row (`start` None: the file's first row), or None."""

    # -- writing ---------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def add(self, records: Sequence[dict], vectors: np.ndarray) -> None:
        """Adds rows: `records[i]` describes `vectors[i]` (`(n, dim)` float32, finite). Re-adding a file's rows
        replaces them (idempotent per `(path, start)`)."""

    @abc.abstractmethod
    def remove(self, paths: Iterable[str]) -> None:
        """Removes every row (and failure) of these files."""

    @abc.abstractmethod
    def set_failed(self, items: Sequence[dict]) -> None:
        """Records videos that could not be encoded (`path`, `size`, `mtime_ns`, `reason`), replacing earlier
        failures of the same paths."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Makes what was added, removed and failed since the last commit durable."""

    @abc.abstractmethod
    def merge(self) -> None:
        """Main process, after every writer committed: makes every committed change visible to queries."""

    def write_report(self, report: dict) -> None:
        """Keeps what the last index run did (`video_indexing.IndexReport` as a dict); default: only logged."""

    # -- queries ---------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def search(self, queries, k: int, filter: SearchFilter | None = None, scale: float = 1.0) -> list[list[Hit]]:
        """Exact top `k` of `scale * queries @ vectors.T` per query (`(q, dim)` float32 tensor or array), best first,
        float32 scores; a non-finite row is never ranked (engines refuse to store one).

        Raises:
            ValueError: bad queries (shape, NaN) or `k`.
        """


__all__ = [
    "EngineNotInstalledError",
    "Hit",
    "IndexBusyError",
    "IndexChangedError",
    "IndexFormatError",
    "IndexStore",
    "IndexWriteError",
    "ModelMismatchError",
    "RunAbortedError",
    "SearchFilter",
    "VideoIndexError",
    "check_meta",
    "check_model",
    "make_record",
    "new_meta",
    "record_span",
]
