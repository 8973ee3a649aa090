# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The search index in Milvus: a Milvus Lite file (`videos.db`, embedded, for development and tests) or a Milvus
server (`http://host:19530`, standalone or cluster), behind the same `index_store.IndexStore` interface as the folder
index, so that `search_videos.py index` / `query` and the Python API work on either.

    pip install -e ".[milvus]"
    python search_videos.py index VIDEO_DIR --index videos.db                      # Milvus Lite
    python search_videos.py index VIDEO_DIR --index http://host:19530 --collection_name videos --token user:password

What is stored, per index (a collection, `--collection_name`, default `videos`, in database `--db_name`):

    <collection>         one row per vector: id (primary key, from (path, start)), file_key, path, raw_path, size,
                         mtime_ns, duration, frames, start, end, vector (FLOAT_VECTOR, inner product)
                         collection properties: clip2video.format, .version, .meta (folder, model fingerprint,
                         windows) -- the model and width are checked before anything is read or written
    <collection>_files   one row per file: its state ("pending" while its rows are written, "done" once committed,
                         "failed" with the reason when it could not be encoded), size, mtime_ns, rows

Crash safety without a lock or a merge: the primary key of a row is a digest of `(path, start)`, so re-adding a row
replaces it (`upsert`); a file's old rows are deleted before its new ones are written, and the file is marked "done"
only at `commit`. A run killed at any point leaves files marked "pending", which `files()` reports with an impossible
signature: the next run encodes them again (and removes those whose video is gone). Every process of a
multi-process run writes its own files directly; nothing is merged afterwards.

Scores: Milvus finds the candidates (with `--milvus_index_type FLAT` the exact top k), the returned vectors are then
rescored here in float32 (`scale * query . vector`), exactly as the folder index scores them.

Milvus Lite serves one process per file (it locks it), and implements FLAT, HNSW, HNSW_SQ, IVF_FLAT, IVF_SQ8; a
server also has IVF_PQ, DISKANN, SCANN. Paths that are not valid UTF-8 (Milvus strings are UTF-8) are stored in a
displayable form in `path` and exactly, as hex bytes, in `raw_path`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from index_store import (
    EngineNotInstalledError, Hit, IndexBusyError, IndexFormatError, IndexStore, IndexWriteError, SearchFilter,
    VideoIndexError, check_meta,
)


logger = logging.getLogger(__name__)

FORMAT = "clip2video-video-index-milvus"
VERSION = 1
DEFAULT_COLLECTION = "videos"
FILES_SUFFIX = "_files"
#: Index types by where they exist: Milvus Lite implements these (others it accepts and ignores, searching without
#: an index), a server all of them.
LITE_INDEX_TYPES = ("FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "AUTOINDEX")
SERVER_INDEX_TYPES = LITE_INDEX_TYPES + ("IVF_PQ", "DISKANN", "SCANN")
#: Build parameters used when none are given (`--milvus_index_params` overrides them key by key).
DEFAULT_INDEX_PARAMS = {"HNSW": {"M": 16, "efConstruction": 200}, "HNSW_SQ": {"M": 16, "efConstruction": 200},
                        "IVF_FLAT": {"nlist": 128}, "IVF_SQ8": {"nlist": 128}, "IVF_PQ": {"nlist": 128, "nbits": 8},
                        "SCANN": {"nlist": 128}}
#: Hits per query a Milvus server returns at most (its `maxTopK`).
MAX_TOPK = 16384
#: Bytes of one insert request at most: well below a server's gRPC limit (64 MiB by default, 256 MiB in Milvus Lite);
#: a request the server still finds too large is split in two and sent again.
MAX_MESSAGE_BYTES = 16 << 20
#: Keys per `in [...]` expression of a delete or a query.
KEYS_PER_EXPRESSION = 512
MAX_VARCHAR = 65535
COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
QUIET_LOGGERS = ("pymilvus.decorators", "pymilvus.client.iterator.query_iterator", "milvus_lite.server_manager",
                 "grpc._server")
SCALAR_FIELDS = ("path", "raw_path", "size", "mtime_ns", "duration", "frames", "start", "end")


class MilvusUnavailableError(VideoIndexError):
    """The Milvus server (or Milvus Lite file) cannot be reached or opened."""


# ----------------------------------------------------------------------------------------------------------------------
# Keys, stored paths, expressions
# ----------------------------------------------------------------------------------------------------------------------


def _path_bytes(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def file_key(path: str) -> str:
    """Key of a file (BLAKE2b-128 of its path's bytes): the files collection's primary key."""
    return hashlib.blake2b(_path_bytes(path), digest_size=16).hexdigest()


def row_key(path: str, start: float) -> str:
    """Primary key of a row: BLAKE2b-128 of `(path, start)`; re-adding the same window of the same file replaces it."""
    return hashlib.blake2b(_path_bytes(path) + b"\0" + repr(round(float(start), 6)).encode(),
                           digest_size=16).hexdigest()


def stored_path(path: str) -> tuple[str, str]:
    """`(path, raw_path)` as stored: a valid UTF-8 path as it is (raw ""); any other as its display form (undecodable
    bytes as `\\xNN`) with its exact bytes in hex."""
    try:
        path.encode("utf-8")
        return path, ""
    except UnicodeEncodeError:
        raw = _path_bytes(path)
        return raw.decode("utf-8", "backslashreplace"), raw.hex()


def read_path(entity: dict) -> str:
    raw = entity.get("raw_path") or ""
    return bytes.fromhex(raw).decode("utf-8", "surrogateescape") if raw else entity["path"]


def literal(text: str) -> str:
    """A Milvus expression string literal (double quotes, backslash escapes)."""
    return json.dumps(text, ensure_ascii=False)


def filter_expression(search_filter: SearchFilter | None) -> str:
    """The boolean expression of a `SearchFilter` (`""`: no filter). A path prefix is a `like` pattern with its `%`
    and `_` escaped (a prefix with a backslash: a range of strings); a duration bound fails on an unknown (null)
    duration, as in the folder engine."""
    if search_filter is None:
        return ""
    terms = []
    if search_filter.path_prefix:
        prefix = stored_path(search_filter.path_prefix)[0]
        if "\\" in prefix:  # a `like` pattern cannot say a literal backslash the same way everywhere: a range can
            terms.append(f"(path >= {literal(prefix)} and path < {literal(prefix + chr(0x10FFFF))})")
        else:
            pattern = re.sub(r"([%_])", r"\\\1", prefix) + "%"
            terms.append(f"path like {literal(pattern)}")
    if search_filter.min_duration is not None:
        terms.append(f"duration >= {float(search_filter.min_duration)!r}")
    if search_filter.max_duration is not None:
        terms.append(f"duration <= {float(search_filter.max_duration)!r}")
    return " and ".join(terms)


def _keys_in(field: str, keys: Sequence[str]) -> Iterator[str]:
    for start in range(0, len(keys), KEYS_PER_EXPRESSION):
        yield f"{field} in [{', '.join(literal(key) for key in keys[start : start + KEYS_PER_EXPRESSION])}]"


# ----------------------------------------------------------------------------------------------------------------------
# Where the index is, and the connection
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MilvusTarget:
    """A Milvus location: `uri` (a Milvus Lite `.db` path or a server URI), `token` (`user:password` or an API key;
    default: the `MILVUS_TOKEN` environment variable), `db_name`, `collection_name`."""

    uri: str
    token: str = ""
    db_name: str = ""
    collection_name: str = DEFAULT_COLLECTION

    @property
    def lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))

    @property
    def files_collection(self) -> str:
        return self.collection_name + FILES_SUFFIX

    def __str__(self) -> str:
        database = f" database {self.db_name}" if self.db_name else ""
        return f"{self.uri} (collection {self.collection_name}{database})"

    @classmethod
    def parse(cls, location: str, token: str | None = None, db_name: str | None = None,
              collection_name: str | None = None) -> "MilvusTarget":
        collection_name = collection_name or DEFAULT_COLLECTION
        if not COLLECTION_NAME.fullmatch(collection_name):
            raise ValueError(f"--collection_name {collection_name!r}: a Milvus collection name is letters, digits "
                             "and '_', not starting with a digit")
        target = cls(str(location), token if token is not None else os.environ.get("MILVUS_TOKEN", ""),
                     db_name or "", collection_name)
        return cls(os.path.abspath(target.uri), target.token, target.db_name, collection_name) if target.lite \
            else target


def _check_lite_location(path: Path, creating: bool) -> None:
    """Refuses a `.db` location that is something else than a Milvus Lite data folder (a folder index, a file, any
    other non-empty folder): nothing is written into it."""
    if not path.exists():
        if not creating:
            raise IndexFormatError(f"{path}: no such Milvus Lite file (index a folder into it first)")
        return
    if path.is_dir() and (path / "manifest.json").exists():
        raise IndexFormatError(f"{path}: a folder index, not a Milvus Lite file (it is left as it is; give the "
                               "folder index another name than *.db, or index into another .db)")
    if not path.is_dir():
        raise IndexFormatError(f"{path}: not a Milvus Lite data folder (a file)")
    if any(path.iterdir()) and not (path / "collections").is_dir():
        raise IndexFormatError(f"{path}: not a Milvus Lite data folder (holds other files)")


@contextlib.contextmanager
def _quiet_pymilvus() -> Iterator[None]:
    """pymilvus logs every failed call with its traceback before raising (and warns on every query iterator that
    Milvus Lite has no server timestamp, which Lite's in-process gRPC server logs as an error); the errors are turned
    into typed ones here, with their reason, so these loggers stay silent meanwhile."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    states = [one.disabled for one in loggers]
    for one in loggers:
        one.disabled = True
    try:
        yield
    finally:
        for one, state in zip(loggers, states):
            one.disabled = state


def _reason(error: BaseException) -> str:
    """One line: Milvus's message, or gRPC's details."""
    message = getattr(error, "message", None)
    if message is None and callable(getattr(error, "details", None)):
        message = error.details()
    return " ".join(str(message or error).split())


#: LOCK files of the Milvus Lite folders this process opened (`_release_lite_locks_in_child`).
_LITE_LOCKS: set[str] = set()


def _release_lite_locks_in_child() -> None:
    """In a forked child (a DataLoader worker): closes its copies of the descriptors of Milvus Lite's `flock`s. A lock
    lives as long as any process holds a descriptor of it, so without this a `kill -9` of an index run would leave the
    file locked until its workers notice and exit, and an immediate rerun would be refused."""
    if not _LITE_LOCKS or not os.path.isdir("/proc/self/fd"):
        return
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            if os.readlink(f"/proc/self/fd/{name}") in _LITE_LOCKS:
                os.close(int(name))


os.register_at_fork(after_in_child=_release_lite_locks_in_child)


def _locked(lock: Path) -> bool:
    """Whether another process holds Milvus Lite's `flock` on `lock` (asked after a failed open)."""
    import fcntl

    try:
        descriptor = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(descriptor)


def connect(target: MilvusTarget, creating: bool = False, timeout: float | None = None):
    """A `MilvusClient` for the target.

    Raises:
        EngineNotInstalledError: pymilvus (or milvus-lite for a `.db`) is not installed (raised by `index_store`).
        IndexFormatError: a `.db` location that is not a Milvus Lite data folder.
        IndexBusyError: a Milvus Lite file another process has open.
        MilvusUnavailableError: the server cannot be reached (or refuses the credentials).
    """
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as error:
        raise EngineNotInstalledError(f"{target.uri}: a Milvus location needs pymilvus (pip install -e "
                                      f"\".[milvus]\"; {error})") from None
    if target.lite:
        _check_lite_location(Path(target.uri), creating)
        logging.getLogger("milvus_lite").setLevel(logging.WARNING)  # its start/stop/segment notes are not the user's
        _LITE_LOCKS.add(os.path.realpath(os.path.join(target.uri, "LOCK")))
    try:
        with _quiet_pymilvus():
            return MilvusClient(uri=target.uri, token=target.token, db_name=target.db_name, timeout=timeout)
    except MilvusException as error:
        causes, cause = [], error.__cause__ or error.__context__
        while cause is not None and len(causes) < 8 and all(cause is not seen for seen in causes):
            causes.append(cause)
            cause = cause.__cause__ or cause.__context__
        if target.lite and _locked(Path(target.uri) / "LOCK"):
            raise IndexBusyError(f"{target.uri}: another process has this Milvus Lite file open (Milvus Lite serves "
                                 "one process; for multi-process indexing or many clients use a Milvus server)"
                                 ) from None
        detail = "; ".join([_reason(error)] + [_reason(cause)[:200] for cause in causes[-1:]])
        raise MilvusUnavailableError(f"{target}: cannot connect to Milvus ({detail})") from None


# ----------------------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------------------


class MilvusIndex(IndexStore):
    """An index in a Milvus collection (see the module docstring).

    Example:
        >>> from index_engines import create_index, open_index
        >>> from index_store import new_meta
        >>> with create_index("videos.db", new_meta("/videos", model_fingerprint, 512)) as index:
        ...     index.add(records, vectors); index.commit(); index.merge()
        >>> hits = open_index("videos.db").search(query_vectors, k=10, scale=logit_scale)
    """

    def __init__(self, client, target: MilvusTarget, meta: dict, writer: str | None = None,
                 search_params: dict | None = None):
        self._client, self.target, self.location = client, target, str(target)
        self._meta, self.writer = meta, writer
        self._search_params = dict(search_params or {})
        self._started: dict[str, list] = {}  # files whose rows this writer replaced: path -> [size, mtime_ns, rows]
        self._index_type = None
        self._failed_cache: list[dict] | None = None  # `meta["failed"]`, read once (this store's writes reset it)
        self._known: set[str] | None = None  # `_stored_keys`

    # -- opening ---------------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, location: str, meta: dict, overwrite: bool = False, token: str | None = None,
               db_name: str | None = None, collection_name: str | None = None, index_type: str | None = None,
               index_params: dict | None = None, search_params: dict | None = None,
               timeout: float | None = None) -> "MilvusIndex":
        """Opens (or creates) the collection for an update run; see `IndexStore.create`. `index_type` and
        `index_params` build the vector index (None: FLAT for a new collection, an existing one's as it is; an
        existing collection whose index is of another type gets it rebuilt from its stored vectors, nothing is
        encoded again).

        Raises:
            ValueError: an index type the target does not have, or bad parameters.
            ModelMismatchError, IndexFormatError: see `index_store.check_meta`; IndexFormatError also for a
                collection that is not a clip2video index (left as it is, even with `overwrite`).
            IndexBusyError, MilvusUnavailableError: see `connect`.  IndexWriteError: the server refused a write.
        """
        target = MilvusTarget.parse(location, token, db_name, collection_name)
        requested = index_type
        index_type, index_params = _index_settings(target, index_type, index_params, int(meta["dim"]))
        client = connect(target, creating=True, timeout=timeout)
        store = cls(client, target, dict(meta), writer="main", search_params=search_params)
        try:
            exists = store._call("has_collection", target.collection_name)
            if exists:
                existing = store._read_meta()
                if overwrite:
                    store._call("drop_collection", target.files_collection)
                    store._call("drop_collection", target.collection_name)
                    exists = False
                else:
                    check_meta(existing, meta, store.location)
                    store._meta = existing
            if not exists:
                store._create_collections(index_type, index_params)
            else:
                store._ensure_files_collection()
                if requested is not None:
                    store._ensure_index(index_type, index_params)
                store._load()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(cls, location: str, writer: str | None = None, token: str | None = None, db_name: str | None = None,
             collection_name: str | None = None, search_params: dict | None = None, timeout: float | None = None,
             **_building) -> "MilvusIndex":
        """Opens an existing index for queries or, with `writer`, to add rows next to the run that created it
        (build options such as `index_type` are the creating run's and ignored here).

        Raises:
            IndexFormatError: no such collection, or one that is not a clip2video index.
            IndexBusyError, MilvusUnavailableError: see `connect`.
        """
        target = MilvusTarget.parse(location, token, db_name, collection_name)
        client = connect(target, creating=False, timeout=timeout)
        store = cls(client, target, {}, writer=writer, search_params=search_params)
        try:
            if not store._call("has_collection", target.collection_name):
                raise IndexFormatError(f"{store.location}: no such collection (index a folder into it first)")
            store._meta = store._read_meta()
            store._ensure_files_collection()
            store._load()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception), _quiet_pymilvus():
                self._client.close()
            self._client = None

    # -- calls to Milvus -------------------------------------------------------------------------------------------

    def _call(self, method: str, *args, **kwargs):
        """`client.<method>(...)`, its failures turned into typed errors naming the index and Milvus's reason."""
        from pymilvus.exceptions import MilvusException

        if self._client is None:
            raise IndexFormatError(f"{self.location}: the index was closed")
        try:
            with _quiet_pymilvus():
                return getattr(self._client, method)(*args, **kwargs)
        except MilvusException as error:
            reason = _reason(error)
            if "connect" in reason.lower() or "unavailable" in reason.lower() or "deadline" in reason.lower():
                raise MilvusUnavailableError(f"{self.location}: Milvus did not answer {method} ({reason})") from None
            if method in ("insert", "upsert", "delete", "create_collection", "create_index", "drop_collection",
                          "drop_index", "alter_collection_properties", "flush"):
                raise IndexWriteError(f"{self.location}: Milvus refused {method} ({reason})") from None
            raise IndexFormatError(f"{self.location}: Milvus failed {method} ({reason})") from None

    def _read_meta(self) -> dict:
        """The meta stored in the collection's properties, with the width from its vector field."""
        description = self._call("describe_collection", self.target.collection_name)
        properties = description.get("properties") or {}
        if properties.get("clip2video.format") != FORMAT:
            raise IndexFormatError(f"{self.location}: not a clip2video index (a collection without its "
                                   "clip2video.format property); nothing in it was changed")
        if properties.get("clip2video.version") != str(VERSION):
            raise IndexFormatError(f"{self.location}: index version {properties.get('clip2video.version')!r}, "
                                   f"expected {VERSION}")
        try:
            meta = json.loads(properties["clip2video.meta"])
            vector = next(field for field in description["fields"] if field["name"] == "vector")
            meta["dim"] = int(vector["params"]["dim"])
        except (KeyError, ValueError, StopIteration, TypeError) as error:
            raise IndexFormatError(f"{self.location}: malformed clip2video properties ({error})") from None
        self._index_type = self._describe_index_type()
        return meta

    def _describe_index_type(self) -> str | None:
        indexes = self._call("list_indexes", self.target.collection_name, field_name="vector")
        if not indexes:
            return None
        return self._call("describe_index", self.target.collection_name, indexes[0]).get("index_type")

    def _create_collections(self, index_type: str, index_params: dict) -> None:
        """The files collection first, then the vectors' collection with the meta in its properties (one call: a
        collection without them is never left behind)."""
        from pymilvus import DataType, MilvusClient

        self._ensure_files_collection()
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("file_key", DataType.VARCHAR, max_length=32)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("raw_path", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("size", DataType.INT64)
        schema.add_field("mtime_ns", DataType.INT64)
        schema.add_field("duration", DataType.DOUBLE, nullable=True)
        schema.add_field("frames", DataType.INT64)
        schema.add_field("start", DataType.DOUBLE)
        schema.add_field("end", DataType.DOUBLE, nullable=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(self._meta["dim"]))
        meta = {name: value for name, value in self._meta.items() if name not in ("dim", "failed")}
        self._call("create_collection", self.target.collection_name, schema=schema,
                   index_params=self._vector_index(index_type, index_params), consistency_level="Strong",
                   properties={"clip2video.format": FORMAT, "clip2video.version": str(VERSION),
                               "clip2video.meta": json.dumps(meta)})
        self._index_type = index_type
        self._load()

    def _ensure_files_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        if self._call("has_collection", self.target.files_collection):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("raw_path", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("state", DataType.VARCHAR, max_length=16)
        schema.add_field("size", DataType.INT64)
        schema.add_field("mtime_ns", DataType.INT64)
        schema.add_field("rows", DataType.INT64)
        schema.add_field("reason", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; unused
        self._call("create_collection", self.target.files_collection, schema=schema,
                   index_params=self._vector_index("FLAT", {}), consistency_level="Strong")

    def _vector_index(self, index_type: str, params: dict):
        index_params = self._client.prepare_index_params()
        index_params.add_index("vector", index_type=index_type, metric_type="IP", params=params)
        return index_params

    def _ensure_index(self, index_type: str, params: dict) -> None:
        """Rebuilds the vector index when the collection's is of another type (the vectors stay)."""
        if self._index_type == index_type:
            return
        logger.info("%s: vector index %s -> %s (rebuilt from the stored vectors)", self.location, self._index_type,
                    index_type)
        self._call("release_collection", self.target.collection_name)
        if self._index_type is not None:
            self._call("drop_index", self.target.collection_name, "vector")
        self._call("create_index", self.target.collection_name, self._vector_index(index_type, params))
        self._index_type = index_type

    def _load(self) -> None:
        for name in (self.target.collection_name, self.target.files_collection):
            self._call("load_collection", name)

    # -- what is stored --------------------------------------------------------------------------------------------

    @property
    def meta(self) -> dict:
        if self._failed_cache is None:
            self._failed_cache = self._failed()
        return {**self._meta, "failed": self._failed_cache}

    def _iterate(self, collection: str, expression: str, fields: list[str]) -> Iterator[dict]:
        """Every entity matching `expression` (a query iterator: a server caps plain queries at 16,384 rows)."""
        iterator = self._call("query_iterator", collection, batch_size=4096, filter=expression,
                              output_fields=fields)
        try:
            while True:
                with _quiet_pymilvus():
                    batch = iterator.next()
                if not batch:
                    return
                yield from batch
        finally:
            iterator.close()

    def _file_entities(self, states: Sequence[str]) -> Iterator[dict]:
        expression = f"state in [{', '.join(literal(state) for state in states)}]"
        yield from self._iterate(self.target.files_collection, expression,
                                 ["path", "raw_path", "state", "size", "mtime_ns", "reason"])

    def files(self) -> dict[str, tuple[int, int]]:
        """`{path: (size, mtime_ns)}` of the stored files; a file whose rows a killed run left half-written
        ("pending") has the signature `(-1, -1)`, which matches no file, so that the next run encodes it again or
        removes it."""
        return {read_path(entity): (entity["size"], entity["mtime_ns"]) if entity["state"] == "done" else (-1, -1)
                for entity in self._file_entities(("done", "pending"))}

    def _failed(self) -> list[dict]:
        failed = [{"path": read_path(entity), "size": entity["size"], "mtime_ns": entity["mtime_ns"],
                   "reason": entity["reason"]} for entity in self._file_entities(("failed",))]
        return sorted(failed, key=lambda item: item["path"])

    def __len__(self) -> int:
        result = self._call("query", self.target.collection_name, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def _row(self, path: str, start: float | None, vector: bool) -> dict | None:
        expression = f"file_key == {literal(file_key(path))}"
        if start is not None:
            expression += f" and start == {float(start)!r}"
        fields = list(SCALAR_FIELDS) + (["vector"] if vector else [])
        rows = self._call("query", self.target.collection_name, filter=expression, output_fields=fields)
        return min(rows, key=lambda row: row["start"]) if rows else None

    @staticmethod
    def _record(entity: dict) -> dict:
        return {"path": read_path(entity), "size": int(entity["size"]), "mtime_ns": int(entity["mtime_ns"]),
                "duration": entity.get("duration"), "frames": int(entity["frames"]), "start": float(entity["start"]),
                "end": entity.get("end")}

    def record(self, path: str, start: float | None = None) -> dict | None:
        row = self._row(path, start, vector=False)
        return None if row is None else self._record(row)

    def vector(self, path: str, start: float | None = None) -> np.ndarray | None:
        row = self._row(path, start, vector=True)
        return None if row is None else np.asarray(row["vector"], dtype=np.float32)

    # -- writing ---------------------------------------------------------------------------------------------------

    def _file_entity(self, path: str, state: str, size: int, mtime_ns: int, rows: int = 0, reason: str = "") -> dict:
        text, raw = stored_path(path)
        return {"key": file_key(path), "path": text, "raw_path": raw, "state": state, "size": int(size),
                "mtime_ns": int(mtime_ns), "rows": int(rows), "reason": reason[: MAX_VARCHAR // 4],
                "vector": [0.0, 0.0]}

    def _delete_rows(self, paths: Sequence[str]) -> None:
        for expression in _keys_in("file_key", [file_key(path) for path in paths]):
            self._call("delete", self.target.collection_name, filter=expression)

    def add(self, records: Sequence[dict], vectors: np.ndarray) -> None:
        """Adds rows (see `IndexStore.add`). The first time this writer sees a file, the file is marked "pending"
        and its old rows are deleted; its rows are then upserted (keys from `(path, start)`), in requests below
        `MAX_MESSAGE_BYTES`.

        Raises:
            ValueError: vectors of the wrong shape or not finite (named by path).
            IndexWriteError: the server refused a write (its reason named).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(records), int(self._meta["dim"])):
            raise ValueError(f"{self.location}: {len(records)} records need vectors of shape "
                             f"({len(records)}, {self._meta['dim']}), got {vectors.shape}")
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(bad):
            raise ValueError(f"{self.location}: non-finite vectors for {[records[row]['path'] for row in bad[:10]]}")
        new = sorted({record["path"] for record in records} - set(self._started))
        if new:
            first = {record["path"]: record for record in reversed(records)}
            stored = self._stored_keys()
            had_rows = [path for path in new if file_key(path) in stored]  # a delete costs a scan: only if needed
            self._mark_pending(new, {path: (first[path]["size"], first[path]["mtime_ns"]) for path in new})
            self._delete_rows(had_rows)
            self._failed_cache = None
            self._started.update({path: [first[path]["size"], first[path]["mtime_ns"], 0] for path in new})
        rows = []
        for record, vector in zip(records, vectors):
            text, raw = stored_path(record["path"])
            start = float(record.get("start") or 0.0)
            end = record.get("end", record.get("duration"))
            rows.append({"id": row_key(record["path"], start), "file_key": file_key(record["path"]), "path": text,
                         "raw_path": raw, "size": int(record["size"]), "mtime_ns": int(record["mtime_ns"]),
                         "duration": None if record.get("duration") is None else float(record["duration"]),
                         "frames": int(record["frames"]), "start": start, "end": None if end is None else float(end),
                         "vector": vector})
            self._started[record["path"]][2] += 1
        row_bytes = 4 * vectors.shape[1] + 256 + max((len(row["path"]) + len(row["raw_path"]) for row in rows),
                                                     default=0)
        per_request = max(1, MAX_MESSAGE_BYTES // row_bytes)
        for start in range(0, len(rows), per_request):
            self._upsert(rows[start : start + per_request])

    def _upsert(self, rows: list[dict]) -> None:
        """Upserts rows; a request the server finds too large (its message limit, lower than assumed) is split."""
        try:
            self._call("upsert", self.target.collection_name, rows)
        except IndexWriteError as error:
            too_large = any(word in str(error).lower() for word in ("too large", "larger than", "exceed", "resource"))
            if len(rows) < 2 or not too_large or "max_length" in str(error):
                raise
            half = len(rows) // 2
            logger.info("%s: an insert of %d rows was too large for the server; sending halves", self.location,
                        len(rows))
            self._upsert(rows[:half])
            self._upsert(rows[half:])

    def _stored_keys(self) -> set[str]:
        """Keys of the files that have an entry (only those can have rows: an entry is written before any row),
        read once per store and kept up to date by its own writes (other writers write other files)."""
        if self._known is None:
            self._known = {entity["key"] for entity in self._iterate(self.target.files_collection, "", ["key"])}
        return self._known

    def _mark_pending(self, paths: Sequence[str], signatures: dict | None = None) -> None:
        """Marks files "pending" before their rows change: a run killed in the middle leaves them to be redone."""
        signatures = signatures or {}
        self._stored_keys().update(file_key(path) for path in paths)
        entities = [self._file_entity(path, "pending", *signatures.get(path, (0, 0))) for path in paths]
        for start in range(0, len(entities), KEYS_PER_EXPRESSION):
            self._call("upsert", self.target.files_collection, entities[start : start + KEYS_PER_EXPRESSION])

    def remove(self, paths: Iterable[str]) -> None:
        """Removes the files' rows and entries (marked "pending" first, so that a kill halfway leaves nothing that
        looks indexed)."""
        paths = sorted(set(paths))
        if not paths:
            return
        self._mark_pending(paths)
        self._delete_rows(paths)
        for expression in _keys_in("key", [file_key(path) for path in paths]):
            self._call("delete", self.target.files_collection, filter=expression)
        for path in paths:
            self._started.pop(path, None)
        self._known.difference_update(file_key(path) for path in paths)
        self._failed_cache = None

    def set_failed(self, items: Sequence[dict]) -> None:
        """Records failures (replacing earlier ones of the same paths); a file that failed has no rows (they are
        deleted while it is marked "pending")."""
        if not items:
            return
        paths = [item["path"] for item in items]
        had_rows = [path for path in paths if file_key(path) in self._stored_keys()]
        self._mark_pending(paths)
        self._delete_rows(had_rows)
        self._call("upsert", self.target.files_collection,
                   [self._file_entity(item["path"], "failed", item["size"], item["mtime_ns"],
                                      reason=str(item.get("reason", ""))) for item in items])
        for path in paths:
            self._started.pop(path, None)
        self._failed_cache = None

    def commit(self) -> None:
        """Marks the files whose rows were added since the last commit "done" (every write before was acknowledged
        by Milvus, which makes it durable)."""
        if self._started:
            entities = [self._file_entity(path, "done", size, mtime_ns, rows)
                        for path, (size, mtime_ns, rows) in sorted(self._started.items())]
            for start in range(0, len(entities), KEYS_PER_EXPRESSION):
                self._call("upsert", self.target.files_collection, entities[start : start + KEYS_PER_EXPRESSION])
        self._started = {}

    def merge(self) -> None:
        """Every writer wrote directly: nothing to merge. Flushes, so that the server seals the new segments and
        builds their vector index (queries then use it)."""
        self._call("flush", self.target.collection_name)

    # -- queries ---------------------------------------------------------------------------------------------------

    def _params(self, k: int) -> dict:
        defaults = {"HNSW": {"ef": max(64, k)}, "HNSW_SQ": {"ef": max(64, k)}, "IVF_FLAT": {"nprobe": 16},
                    "IVF_SQ8": {"nprobe": 16}, "IVF_PQ": {"nprobe": 16}, "SCANN": {"nprobe": 16},
                    "DISKANN": {"search_list": max(100, k)}}
        return {**defaults.get(self._index_type, {}), **self._search_params}

    def search(self, queries, k: int, filter: SearchFilter | None = None, scale: float = 1.0,
               backend: str = "auto") -> list[list[Hit]]:
        """Top `k` per query: candidates from Milvus (exact with FLAT), rescored in float32 from their stored vectors
        (`scale * query . vector`, as the folder engine scores), best first. `k` above Milvus's `MAX_TOPK` returns
        `MAX_TOPK` hits.

        Raises:
            ValueError: bad queries (shape, NaN), `k` below 1, a `backend` (the folder index's option).
        """
        if backend != "auto":
            raise ValueError(f"--backend {backend} is an option of the folder index; Milvus searches with its "
                             "collection's index (--milvus_index_type at index time)")
        queries = torch.as_tensor(np.asarray(queries, dtype=np.float32)).contiguous()
        dim = int(self._meta["dim"])
        if queries.ndim != 2 or queries.shape[1] != dim:
            raise ValueError(f"queries must be (num_queries, {dim}), got {tuple(queries.shape)}")
        if not torch.isfinite(queries).all():
            raise ValueError("queries hold non-finite values (NaN or inf)")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        k = min(k, MAX_TOPK)
        if len(queries) == 0:
            return []
        results = self._call("search", self.target.collection_name, data=list(queries.numpy()), limit=k,
                             filter=filter_expression(filter), anns_field="vector",
                             output_fields=list(SCALAR_FIELDS) + ["vector"],
                             search_params={"metric_type": "IP", "params": self._params(k)})
        root = str(Path(self._meta["video_dir"]))
        found = []
        for query, hits in zip(queries, results):
            entities = [hit["entity"] for hit in hits]
            if not entities:
                found.append([])
                continue
            vectors = torch.from_numpy(np.asarray([entity["vector"] for entity in entities], dtype=np.float32))
            scores = (scale * torch.einsum("qd,qkd->qk", query[None], vectors[None]))[0].tolist()
            ranked = sorted(zip(scores, (self._record(entity) for entity in entities)),
                            key=lambda pair: (-pair[0], pair[1]["path"], pair[1]["start"]))
            found.append([Hit(path=os.path.join(root, record["path"]), score=score, record=record)
                          for score, record in ranked])
        return found


def check_index_type(location: str, index_type: str | None) -> str:
    """The vector index type (upper-cased; default FLAT), checked against what the location has.

    Raises:
        ValueError: a type Milvus (or Milvus Lite, which would silently search without it) does not have.
    """
    index_type = (index_type or "FLAT").upper()
    lite = MilvusTarget(str(location)).lite
    available = LITE_INDEX_TYPES if lite else SERVER_INDEX_TYPES
    if index_type not in available:
        where = ("Milvus Lite implements " if lite else "Milvus has ") + ", ".join(available)
        hint = "; IVF_PQ, DISKANN and SCANN need a Milvus server" if lite else ""
        raise ValueError(f"--milvus_index_type {index_type}: {where}{hint}")
    return index_type


def _index_settings(target: MilvusTarget, index_type: str | None, index_params: dict | None,
                    dim: int) -> tuple[str, dict]:
    """The vector index type and its build parameters (defaults completed)."""
    index_type = check_index_type(target.uri, index_type)
    if index_params is not None and not isinstance(index_params, dict):
        raise ValueError(f"--milvus_index_params must be a JSON object, got {index_params!r}")
    params = {**DEFAULT_INDEX_PARAMS.get(index_type, {}), **(index_params or {})}
    if index_type == "IVF_PQ" and "m" not in params:
        params["m"] = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m and dim % m == 0)
    return index_type, params


__all__ = ["MilvusIndex", "MilvusTarget", "MilvusUnavailableError", "connect", "filter_expression", "row_key"]
