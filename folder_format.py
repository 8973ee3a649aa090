# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The files of a folder index (`folder_index.FolderIndex`), each read back with checks and written atomically.

Index layout (INDEX_DIR):

    manifest.json          format, version, video root, model fingerprint, windows, shard list, videos that failed
    shards/<id>.npy        (rows, retrieval_embed_dim) float32 vectors, memory-mapped at query time
    shards/<id>.jsonl      one JSON record per row (`index_store`: path relative to the root, size, mtime_ns,
                           duration, frames, start, end)
    shards/<id>.lookup.npy (3, rows) uint64 path lookup: the records' path keys (BLAKE2b, 64 bits) in increasing order,
                           their rows, the byte offsets of their lines in the .jsonl; written with the shard, derived
                           from the .jsonl (an index without it still works: it is rebuilt and saved on first use)
    shards/<id>.codes.npy  (rows, dim) int8 codes of the vectors, with shards/<id>.scales.npy (per-dimension scales)
                           and shards/<id>.norms.npy (error norms): the coarse stage of the exact two-stage search
                           (`vector_search.py`); derived data, recomputed from the vectors when missing
    pending/<name>.npy     vectors committed by a run that has not been merged yet
    pending/<name>.json    (the .json, written last, marks the chunk complete)
    report.json            what the last index run did: encoded, unchanged, removed, skipped (with reasons)

Every name read from a manifest is untrusted: a shard id is a plain file-name stem (`SHARD_ID`), a record path stays
inside the indexed folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

import vector_search
from index_store import IndexFormatError
from utils_clip2video import TMP_PREFIX, atomic_write, write_json


INDEX_FORMAT = "clip2video-video-index"
INDEX_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "report.json"
SHARDS = "shards"
PENDING = "pending"
LOCK = ".lock"
LOOKUP_SUFFIX = ".lookup.npy"
#: Suffixes of a shard's files in `shards/` (`Shard.file_names`).
SHARD_SUFFIXES = (".npy", ".jsonl", LOOKUP_SUFFIX, ".codes.npy", ".scales.npy", ".norms.npy")


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as handle:
        np.save(handle, np.ascontiguousarray(array))


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    with atomic_write(path, "w") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


#: What a shard id read from a manifest may be: a plain file-name stem (letters, digits, `-`, `_`; no dot, slash or
#: `..`), so that `shards/<id>.npy` and its siblings stay inside the index folder and never name another shard's files.
SHARD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: Rows checked for non-finite values at a time.
CHECK_ROWS = 8192


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass
class Shard:
    """One shard: `rows` vectors in `shards/<id>.npy`, their records in `shards/<id>.jsonl`, and the path lookup of
    the records in `shards/<id>.lookup.npy` (derived from the records: rebuilt when missing)."""

    id: str
    rows: int

    def vectors_path(self, index_dir: Path) -> Path:
        return index_dir / SHARDS / f"{self.id}.npy"

    def records_path(self, index_dir: Path) -> Path:
        return index_dir / SHARDS / f"{self.id}.jsonl"

    def codes_paths(self, index_dir: Path) -> dict[str, Path]:
        """The int8 search codes derived from the vectors (`vector_search.Int8Codes`): codes, scales, error norms."""
        return {name: index_dir / SHARDS / f"{self.id}.{name}.npy" for name in ("codes", "scales", "norms")}

    def lookup_path(self, index_dir: Path) -> Path:
        return index_dir / SHARDS / f"{self.id}{LOOKUP_SUFFIX}"

    def file_names(self) -> list[str]:
        """Every file of the shard, by name in `shards/`."""
        return [f"{self.id}{suffix}" for suffix in SHARD_SUFFIXES]


def _npy_problem(path: Path, error: Exception) -> str:
    """What is wrong with a `.npy` file numpy could not load: empty, truncated (the header's shape needs more bytes),
    or not a `.npy` file at all."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[version]
            shape, _, dtype = read_header(handle)
            needed = handle.tell() + math.prod(shape) * dtype.itemsize
    except Exception:  # noqa: BLE001 - the header itself is unreadable
        return f"not a .npy file ({type(error).__name__}: {error})"
    if size < needed:
        return f"truncated: {size} bytes, its header ({dtype} {shape}) needs {needed}"
    return f"unreadable .npy file ({type(error).__name__}: {error})"


def load_npy(path: Path, shape: tuple[int, ...], dtype, mmap_mode: str | None = None) -> np.ndarray:
    """A `.npy` array of the expected shape and dtype (memory-mapped with `mmap_mode`; never unpickled).

    Raises:
        FileNotFoundError: the file is missing.
        IndexFormatError: the file is empty, truncated, not a `.npy` file, or of another shape or dtype (named).
    """
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise IndexFormatError(f"{path}: {_npy_problem(path, error)}") from None
    if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
        raise IndexFormatError(f"{path}: {array.dtype} {array.shape}, expected {np.dtype(dtype)} {tuple(shape)}")
    return array


def non_finite_rows(vectors: np.ndarray) -> np.ndarray:
    """Row numbers of `(rows, dim)` vectors holding a NaN or an infinity (checked `CHECK_ROWS` rows at a time)."""
    bad = [start + np.flatnonzero(~np.isfinite(vectors[start : start + CHECK_ROWS]).all(axis=1))
           for start in range(0, len(vectors), CHECK_ROWS)]
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def check_finite(vectors: np.ndarray, source: Path) -> None:
    """Raises `IndexFormatError` naming `source` and the rows when a vector holds NaN or infinity (such a row would
    rank first with score NaN in a float32 scan and has no error bound in the int8 one)."""
    rows = non_finite_rows(vectors)
    if len(rows):
        shown = ", ".join(str(row) for row in rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
        raise IndexFormatError(f"{source}: rows {shown} hold non-finite values (NaN or inf); re-create the index")


def parse_record(line: bytes | str, source: Path, row: int | str) -> dict:
    """A video record (`path`, `size`, `mtime_ns`, ...) read from `source`, checked: the path must be relative to the
    indexed folder and stay inside it (no absolute path, no `..`), the sizes integers.

    Raises:
        IndexFormatError: naming `source`, the row and what is wrong.
    """
    try:
        record = json.loads(line) if isinstance(line, (bytes, str)) else line
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexFormatError(f"{source}: record {row} is not JSON ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        raise IndexFormatError(f"{source}: record {row} has no path")
    path = record["path"]
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise IndexFormatError(f"{source}: record {row} has the path {path!r}, which is not a plain path inside the "
                               "indexed folder")
    if not (_is_count(record.get("size")) and isinstance(record.get("mtime_ns"), int)):
        raise IndexFormatError(f"{source}: record {row} ({path!r}) has no integer size and mtime_ns")
    for name in ("start", "end"):
        value = record.get(name)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise IndexFormatError(f"{source}: record {row} ({path!r}) has {name}={value!r}, not seconds >= 0")
    return record


def write_codes(index_dir: Path, shard: Shard, vectors: np.ndarray) -> vector_search.Int8Codes:
    """Quantizes a shard's vectors for the two-stage search and writes the codes next to them (atomically)."""
    codes = vector_search.quantize_int8(vectors)
    paths = shard.codes_paths(index_dir)
    write_npy(paths["norms"], np.stack([codes.residual_norms, codes.code_norms]))
    write_npy(paths["scales"], codes.scales)
    write_npy(paths["codes"], codes.codes)
    return codes


def read_codes(index_dir: Path, shard: Shard, dim: int) -> vector_search.Int8Codes:
    """A shard's int8 codes, memory-mapped.

    Raises:
        FileNotFoundError: a codes file is missing.
        IndexFormatError: a codes file is damaged (named, with what is wrong).
    """
    paths = shard.codes_paths(index_dir)
    norms = load_npy(paths["norms"], (2, shard.rows), np.float32)
    if not (np.all(np.isfinite(norms)) and np.all(norms >= 0)):
        raise IndexFormatError(f"{paths['norms']}: error norms must be finite and >= 0")
    codes = vector_search.Int8Codes(codes=load_npy(paths["codes"], (shard.rows, dim), np.int8, mmap_mode="c"),
                                    scales=load_npy(paths["scales"], (dim,), np.float32),
                                    residual_norms=norms[0], code_norms=norms[1])
    try:
        codes.check(shard.rows, dim)
    except ValueError as error:
        raise IndexFormatError(f"{paths['scales']}: {error}") from None
    return codes


def path_key(path: str) -> np.uint64:
    """64-bit key of a record path (the first 8 bytes of its BLAKE2b digest): the same in every process and run.
    (File names that are not valid UTF-8 reach Python as surrogate escapes: they are hashed as their raw bytes.)"""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def build_path_lookup(records_path: Path, rows: int) -> np.ndarray:
    """The path lookup of a shard's records: a `(3, rows)` uint64 array whose rows are the records' `path_key`s in
    increasing order, their row numbers in the shard, and the byte offsets of their lines in `records_path`.

    A lookup is a binary search in the first row (`np.searchsorted` on the memory-mapped file touches O(log rows) pages)
    and one read of the record line, which confirms the path (keys may collide).
    """
    data = records_path.read_bytes()
    lines = data.splitlines(keepends=True)
    if len(lines) != rows:
        raise IndexFormatError(f"{records_path}: {len(lines)} records, manifest says {rows}")
    offsets = np.cumsum([0] + [len(line) for line in lines[:-1]], dtype=np.uint64)
    keys = np.array([path_key(parse_record(line, records_path, row)["path"]) for row, line in enumerate(lines)],
                    dtype=np.uint64)
    order = np.argsort(keys, kind="stable")
    return np.stack([keys[order], order.astype(np.uint64), offsets[order]])


def write_path_lookup(index_dir: Path, shard: Shard) -> np.ndarray:
    """Builds a shard's path lookup from its records file and writes it (atomically) next to it."""
    lookup = build_path_lookup(shard.records_path(index_dir), shard.rows)
    write_npy(shard.lookup_path(index_dir), lookup)
    return lookup


@dataclass
class Manifest:
    """The index's table of contents (`manifest.json`)."""

    video_dir: str
    model: dict
    dim: int
    shards: list[Shard] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    window_seconds: float | None = None
    window_stride: float | None = None
    format: str = INDEX_FORMAT
    version: int = INDEX_VERSION

    @property
    def num_videos(self) -> int:
        return sum(shard.rows for shard in self.shards)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def meta(self) -> dict:
        """The `IndexStore.meta` of the index."""
        return {"video_dir": self.video_dir, "model": self.model, "dim": self.dim, "window_seconds": self.window_seconds,
                "window_stride": self.window_stride, "failed": self.failed}

    @classmethod
    def from_meta(cls, meta: dict) -> "Manifest":
        return cls(video_dir=meta["video_dir"], model=dict(meta["model"]), dim=int(meta["dim"]),
                   window_seconds=meta.get("window_seconds"), window_stride=meta.get("window_stride"))

    @staticmethod
    def is_ours(index_dir: Path) -> bool:
        """True when `index_dir/manifest.json` says the folder is an index of this format (whatever its version or
        other fields): only then may a run delete files in it."""
        try:
            data = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("format") == INDEX_FORMAT

    @classmethod
    def load(cls, index_dir: Path) -> "Manifest":
        """Reads and checks `manifest.json`: every name in it is untrusted (a shard id must be a plain file-name stem,
        see `SHARD_ID`; sizes must be counts).

        Raises:
            IndexFormatError: not an index, an unknown format version, or a malformed manifest (what is wrong named).
        """
        path = index_dir / MANIFEST
        if not path.is_file():
            raise IndexFormatError(f"{index_dir}: not a video index (no {MANIFEST})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise IndexFormatError(f"{path}: unreadable manifest ({error})") from None
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("version") != INDEX_VERSION:
            found = data if isinstance(data, dict) else {}
            raise IndexFormatError(
                f"{path}: format {found.get('format')!r} version {found.get('version')!r}, expected {INDEX_FORMAT!r} "
                f"version {INDEX_VERSION}")
        try:
            data["shards"] = [Shard(**shard) for shard in data["shards"]]
            manifest = cls(**data)
        except (KeyError, TypeError) as error:  # a field missing, unknown or of the wrong kind
            raise IndexFormatError(f"{path}: malformed manifest ({type(error).__name__}: {error})") from None
        problem = manifest._problem()
        if problem:
            raise IndexFormatError(f"{path}: malformed manifest ({problem})")
        manifest.failed = [parse_record(item, path, f"failed {row}") for row, item in enumerate(manifest.failed)]
        return manifest

    def _problem(self) -> str | None:
        """What is wrong with a manifest read from disk, or None."""
        if not (isinstance(self.video_dir, str) and isinstance(self.model, dict)
                and isinstance(self.model.get("fingerprint"), str) and isinstance(self.model.get("name_or_path"), str)):
            return "video_dir, model.fingerprint and model.name_or_path must be strings"
        if not (_is_count(self.dim) and self.dim > 0):
            return f"dim must be a positive integer, got {self.dim!r}"
        for shard in self.shards:
            if not (isinstance(shard.id, str) and SHARD_ID.fullmatch(shard.id)):
                return f"shard id {shard.id!r} is not a plain file name (letters, digits, '-', '_')"
            if not _is_count(shard.rows):
                return f"shard {shard.id}: rows must be a count, got {shard.rows!r}"
        if len({shard.id for shard in self.shards}) != len(self.shards):
            return "a shard is listed twice"
        if not isinstance(self.failed, list):
            return "failed must be a list of records"
        for name in ("window_seconds", "window_stride"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and math.isfinite(value) and value > 0):
                return f"{name} must be a positive number of seconds or null, got {value!r}"
        return None

    def save(self, index_dir: Path) -> None:
        write_json(index_dir / MANIFEST, self.to_dict())


def own_folder(folder: Path, index_dir: Path) -> bool:
    """True if `folder` exists as a real folder of the index; raises `IndexFormatError` for a symbolic link (a run must
    never delete, through it, files of another folder or index)."""
    if folder.is_symlink():
        raise IndexFormatError(f"{folder}: a symbolic link; an index's {folder.name}/ must be its own folder "
                               f"(refusing to write through it into another index)")
    return folder.is_dir()


def is_shard_file(name: str) -> bool:
    """True for a name a shard of this format may have in `shards/` (`<id><suffix>`, see `SHARD_ID`)."""
    return any(name.endswith(suffix) and SHARD_ID.fullmatch(name[: -len(suffix)]) for suffix in SHARD_SUFFIXES)


def write_pending_chunk(index_dir: Path, vectors: np.ndarray, records: list[dict], failed: list[dict],
                        prefix: str) -> None:
    """Commits encoded videos: `pending/<name>.npy` then `pending/<name>.json` (its presence marks completion).

    Raises:
        ValueError: a vector holds NaN or inf (the indexing loop turns such videos into skips first).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    bad = non_finite_rows(vectors)
    if len(bad):
        raise ValueError(f"non-finite vectors for {[records[row]['path'] for row in bad[:10]]}")
    name = f"{prefix}-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
    folder = index_dir / PENDING
    if not own_folder(folder, index_dir):
        folder.mkdir(parents=True, exist_ok=True)
    write_npy(folder / f"{name}.npy", vectors)
    write_json(folder / f"{name}.json", {"rows": len(records), "records": records, "failed": failed})


def read_pending_chunk(marker: Path, dim: int) -> tuple[Path, np.ndarray, list[dict], list[dict]]:
    """One complete pending chunk (its `.json` marker, vectors, records, failures), checked like the shards.

    Raises:
        IndexFormatError: naming the file and what is wrong (unreadable, records or vectors malformed, NaN rows).
    """
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexFormatError(f"{marker}: unreadable pending chunk ({error})") from None
    if not (isinstance(data, dict) and _is_count(data.get("rows")) and isinstance(data.get("records"), list)
            and isinstance(data.get("failed"), list) and len(data["records"]) == data["rows"]):
        raise IndexFormatError(f"{marker}: malformed pending chunk (rows, records and failed expected)")
    records = [parse_record(record, marker, row) for row, record in enumerate(data["records"])]
    failed = [parse_record(item, marker, f"failed {row}") for row, item in enumerate(data["failed"])]
    vectors_path = marker.with_suffix(".npy")
    try:
        vectors = load_npy(vectors_path, (data["rows"], dim), np.float32) if data["rows"] else \
            np.zeros((0, dim), np.float32)
    except FileNotFoundError:
        raise IndexFormatError(f"{vectors_path}: missing (its marker {marker.name} says it was written)") from None
    check_finite(vectors, vectors_path)
    return marker, vectors, records, failed


def read_pending_chunks(index_dir: Path, dim: int) -> list[tuple[Path, np.ndarray, list[dict], list[dict]]]:
    """Complete pending chunks (vectors, records, failures), oldest first; incomplete ones are ignored."""
    folder = index_dir / PENDING
    if not own_folder(folder, index_dir):
        return []
    return [read_pending_chunk(marker, dim) for marker in sorted(folder.glob("*.json"))
            if not marker.name.startswith(TMP_PREFIX)]
