# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Index a folder of videos with a CLIP2Video model and search it by text or by example video.

    python search_videos.py index VIDEO_DIR --model MODEL --index INDEX_DIR [--bf16] [--batch_size 8]
    python search_videos.py query INDEX_DIR "a red square moves from left to right" -k 10 [--json] [--html OUT.html]
    python search_videos.py query INDEX_DIR --video clip.mp4 -k 10
    accelerate launch search_videos.py index VIDEO_DIR --model MODEL --index INDEX_DIR   # shards across processes

MODEL is a Hub id or a local folder with a CLIP2Video model and its processor (loaded with `trust_remote_code`), e.g.
the output of `run_retrieval.py` or of `convert_original_checkpoint.py`.

Exactness: `get_text_features` / `get_video_features` are the model's retrieval vectors, and
`logit_scale.exp() * text @ video.T` is exactly `forward(...).logits_per_text`. The index stores the float32 video
vectors, so a text query's score for a video is the model's logit for that (caption, video) pair. Video-by-example
queries use the same formula with the query video's vector in place of the caption's.

Search by example: a `--video` file that is in the index, unchanged, is not encoded again: its stored vector is the
query. The file is looked up by path, per shard a binary search in the lookup and one record line read, whatever the
size of the index; the path may be given relative to the working directory (`./x.mp4`), absolute, or through
symlinks (it is matched as written, with its folder's symlinks resolved, and fully resolved, against the paths stored
relative to the indexed root). "Unchanged" is the index runs' rule: same size and mtime as recorded; a file edited
since it was indexed is encoded anew (its stored vector describes the old contents) until the next index run.

Index layout (INDEX_DIR):

    manifest.json          format version, video root, model fingerprint, shard list, videos that failed to decode
    shards/<id>.npy        (rows, retrieval_embed_dim) float32 video vectors, memory-mapped at query time
    shards/<id>.jsonl      one JSON record per row: path (relative to the root), size, mtime_ns, duration, frames
    shards/<id>.lookup.npy (3, rows) uint64 path lookup: the records' path keys (BLAKE2b, 64 bits) in increasing order,
                           their rows, the byte offsets of their lines in the .jsonl; written with the shard, derived
                           from the .jsonl (an index without it still works: it is rebuilt and saved on first use)
    shards/<id>.codes.npy  (rows, dim) int8 codes of the vectors, with shards/<id>.scales.npy (per-dimension scales)
                           and shards/<id>.norms.npy (error norms): the coarse stage of the exact two-stage search
                           (`vector_search.py`); derived data, recomputed from the vectors when missing
    pending/<name>.npy     vectors encoded by a run that has not been merged yet (committed every --commit_every
    pending/<name>.json    videos; the .json, written last, marks the chunk complete)
    report.json            what the last index run did: encoded, unchanged, removed, skipped (with reasons)

Every file is written to a temporary name and renamed (`os.replace`), and the manifest is replaced only after the
files it names exist, so a run killed at any point leaves a valid index; the next run merges the complete pending
chunks (finished videos are not encoded again) and carries on.

Multi-process runs (`accelerate launch`): the processes check in with each other after loading the model, after the
main process has opened the index and planned the work, after every batch and after the merge. A failure on any
process (a model that is not the index's, an index locked by another run, unwritable or malformed, an error while
encoding) stops every process within one batch; the run exits with status 1 and every process logs the reason: the
failed one its error, the others `RunAbortedError: process R of N failed: <error>`. The processes stopped that way
commit what they had encoded, which the next run keeps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
from transformers import HfArgumentParser

import report_clip2video as report
import vector_search
from datasets_scripts import VIDEO_EXTENSIONS
from data_clip2video import VideoBatcher, decode_video
from utils_clip2video import (
    TMP_PREFIX, ModelSourceError, ProcessorNotFoundError, atomic_write, check_model_source, load_processor, write_json,
)


logger = logging.getLogger("search_videos")

INDEX_FORMAT = "clip2video-video-index"
INDEX_VERSION = 1
MANIFEST = "manifest.json"
REPORT = "report.json"
SHARDS = "shards"
PENDING = "pending"
LOCK = ".lock"
#: Below this many indexed videos, `backend="auto"` scans the float32 vectors directly (already a few milliseconds).
COARSE_MIN_ROWS = 32768
BACKENDS = ("auto", "int8", "flat", "faiss", "fused")
LOOKUP_SUFFIX = ".lookup.npy"
#: Hits in one shard beyond which a search holds the shard's records file in memory (read once) instead of opening it
#: for each hit.
MANY_HITS = 64


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------


class VideoIndexError(Exception):
    """Base class of the index errors."""


class IndexFormatError(VideoIndexError):
    """An index folder is missing, not an index, or from an unknown format version."""


class ModelMismatchError(VideoIndexError):
    """The model given for a query (or an incremental run) is not the model that built the index."""


class ModelLoadError(VideoIndexError):
    """A model folder (or Hub repo) that exists but holds no loadable CLIP2Video model."""


class IndexChangedError(VideoIndexError):
    """The index was rewritten by an index run while this process was reading it, and the files it was reading are
    gone: open it again (a `VideoIndex` picks up a finished run by itself at its next search)."""


class IndexBusyError(VideoIndexError):
    """Another index run holds the index's lock."""


class IndexWriteError(VideoIndexError):
    """The index folder cannot be created or written (a file in the way, no permission, read-only file system)."""


class RunAbortedError(VideoIndexError):
    """Another process of a multi-process index run failed (or died): this one stops too; the message says which
    process and why."""


# ----------------------------------------------------------------------------------------------------------------------
# Files of the index (every write atomic: `utils_clip2video.atomic_write`)
# ----------------------------------------------------------------------------------------------------------------------


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as handle:
        np.save(handle, np.ascontiguousarray(array))


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    with atomic_write(path, "w") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


# ----------------------------------------------------------------------------------------------------------------------
# Model, processor and fingerprint
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A CLIP2Video model, its processor and the fingerprint that identifies both (weights, config, preprocessing)."""

    model: torch.nn.Module
    processor: object
    name_or_path: str
    fingerprint: str
    bf16: bool = False

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Retrieval vectors of captions, `(len(texts), retrieval_embed_dim)` float32 on the CPU."""
        inputs = self.processor(text=list(texts), return_tensors="pt")
        with self._autocast():
            features = self.model.get_text_features(
                inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device)).pooler_output
        return features.float().cpu()

    @torch.no_grad()
    def encode_videos(self, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """Retrieval vectors of preprocessed videos `(batch, frames, 3, H, W)` -> `(batch, retrieval_embed_dim)`."""
        with self._autocast():
            features = self.model.get_video_features(
                pixel_values.to(self.device), video_mask.to(self.device)).pooler_output
        return features.float().cpu()


def _processor_settings(processor) -> dict:
    """The preprocessing choices that change a video's or caption's vector (they enter the fingerprint)."""
    video = processor.video_processor
    names = ("num_frames", "frame_sampling", "feature_framerate", "extraction_fps", "size", "crop_size", "image_mean",
             "image_std", "resample", "do_resize", "do_center_crop", "do_rescale", "rescale_factor", "do_normalize")
    settings = {name: getattr(video, name, None) for name in names}
    settings = json.loads(json.dumps(settings, default=lambda value: getattr(value, "__dict__", str(value))))
    settings["max_words"] = getattr(processor, "max_words", None)
    settings["tokenizer_vocab_size"] = len(processor.tokenizer) if getattr(processor, "tokenizer", None) else None
    return settings


def model_fingerprint(model: torch.nn.Module, processor) -> str:
    """`sha256` over the model's config, every parameter and buffer (names, dtypes, shapes, bytes) and the processor's
    preprocessing settings: two loads of the same weights give the same fingerprint, whatever the path or Hub id."""
    digest = hashlib.sha256()
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "auto_map", "architectures", "torch_dtype", "dtype"):
        config.pop(volatile, None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(json.dumps(_processor_settings(processor), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def load_model(name_or_path: str, device: str | torch.device | None = None, bf16: bool = False) -> LoadedModel:
    """Loads a CLIP2Video model and its processor (Hub id or local folder, `trust_remote_code=True`).

    Raises:
        ModelSourceError: `name_or_path` is neither an existing folder nor a repo the Hub provided (the message says
            which: a mistyped local path is named as a missing folder, not sent to the Hub).
        ModelLoadError: the folder (or repo) holds no loadable CLIP2Video model.
        IndexFormatError: the folder has no processor (pass one saved next to the model; the converter and the training
            script both save it).
    """
    from transformers import AutoModel

    name_or_path = check_model_source(name_or_path)
    try:
        model = AutoModel.from_pretrained(name_or_path, trust_remote_code=True).eval()
    except OSError as error:
        if not Path(name_or_path).is_dir():  # a Hub id: unknown, private, or the Hub is not reachable (offline)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelSourceError(f"{name_or_path}: no such folder, and the Hub did not provide it (unknown repo or "
                                   f"Hub not reachable: {reason})") from None
        raise ModelLoadError(f"{name_or_path}: not a CLIP2Video model folder ({error})") from None
    except ValueError as error:
        raise ModelLoadError(f"{name_or_path}: not a CLIP2Video model ({error})") from None
    try:
        processor = load_processor(name_or_path, trust_remote_code=True)
    except ProcessorNotFoundError as error:
        raise IndexFormatError(f"{error} (the converter and run_retrieval.py save one next to the model)") from None
    if device is not None:
        model.to(device)
    return LoadedModel(model, processor, str(name_or_path), model_fingerprint(model, processor), bf16)


# ----------------------------------------------------------------------------------------------------------------------
# Video folder scan and per-video metadata
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFile:
    """One video of the folder: `path` relative to the root (forward slashes), size in bytes, mtime in ns."""

    path: str
    size: int
    mtime_ns: int

    def signature(self) -> tuple[int, int]:
        return self.size, self.mtime_ns


def scan_videos(root: Path) -> list[VideoFile]:
    """Every video file under `root` (recursively, hidden files and folders skipped), sorted by path."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in files:
            if name.startswith(".") or not name.lower().endswith(VIDEO_EXTENSIONS):
                continue
            full = os.path.join(folder, name)
            try:
                stat = os.stat(full)
            except OSError:  # vanished while scanning
                continue
            found.append(VideoFile(Path(os.path.relpath(full, root)).as_posix(), stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda video: video.path)


def probe_duration(path: str) -> float | None:
    """Duration in seconds from the container (PyAV), or None when unknown."""
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return round(float(stream.duration * stream.time_base), 3)
            if container.duration:
                return round(container.duration / 1_000_000, 3)
    except Exception:  # metadata only; decoding errors are the processor's to report
        return None
    return None


class VideoFolderDataset(torch.utils.data.Dataset):
    """Decodes and preprocesses videos one by one through the training data path (`data_clip2video.decode_video`:
    the processor's frame choice; `VideoBatcher`: its transform); an unreadable video gives an item with `error`
    set, not an exception, so that one bad file never stops a run."""

    def __init__(self, root: Path, videos: Sequence[VideoFile], processor):
        self.root, self.videos = root, list(videos)
        video_processor = processor.video_processor
        self.batcher = VideoBatcher(video_processor, {}, video_processor.num_frames)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, position: int) -> dict:
        video = self.videos[position]
        path = str(self.root / video.path)
        try:
            pixel_values, video_mask = self.batcher([decode_video(path, self.batcher.video_processor, {})])
        except Exception as error:  # VideoDecodeError and anything a decoder may raise on a broken file
            reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            return {"video": video, "error": reason}
        return {"video": video, "pixel_values": pixel_values[0], "video_mask": video_mask[0],
                "duration": probe_duration(path)}


def _collate(items: list[dict]) -> list[dict]:
    return items


# ----------------------------------------------------------------------------------------------------------------------
# The index on disk
# ----------------------------------------------------------------------------------------------------------------------


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
        return [f"{self.id}{suffix}" for suffix in (".npy", ".jsonl", LOOKUP_SUFFIX, ".codes.npy", ".scales.npy",
                                                    ".norms.npy")]


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
    format: str = INDEX_FORMAT
    version: int = INDEX_VERSION

    @property
    def num_videos(self) -> int:
        return sum(shard.rows for shard in self.shards)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

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
        return None

    def save(self, index_dir: Path) -> None:
        write_json(index_dir / MANIFEST, self.to_dict())


def check_model(manifest: Manifest, loaded: LoadedModel, index_dir: Path) -> None:
    """Raises `ModelMismatchError` unless `loaded` is the model (and preprocessing) that built the index."""
    if loaded.fingerprint != manifest.model["fingerprint"]:
        raise ModelMismatchError(
            f"{index_dir}: built with model {manifest.model['name_or_path']!r} (fingerprint "
            f"{manifest.model['fingerprint']}), but {loaded.name_or_path!r} has fingerprint {loaded.fingerprint}: "
            "a different model or preprocessing gives incomparable scores; query with the index's model or re-index")


def _manifest_stamp(index_dir: Path) -> tuple[int, int, int] | None:
    """Identity of the manifest file (inode, mtime, size): an index run replaces it by a new file (`os.replace`)."""
    try:
        stat = os.stat(index_dir / MANIFEST)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class VideoIndex:
    """Read access to an index: memory-mapped vectors, records, exact top-k search.

    A long-lived `VideoIndex` (a server) follows the index: each `search` and `locate` first checks whether an index
    run has replaced the manifest since, and if so reads the new one (and drops what it held of the old shards). A run
    that replaces the index in the middle of a search makes the search start again on the new state; if the files
    vanish again, `IndexChangedError` says to reopen the index.

    Example:
        >>> index = VideoIndex(Path("my_index"))
        >>> hits = index.search(query_vectors, k=10, scale=model_logit_scale)   # list (per query) of Hit
    """

    def __init__(self, index_dir: str | os.PathLike, manifest: Manifest | None = None):
        self.index_dir = Path(index_dir)
        # a manifest given by the caller (an index run, under the lock) is the state to use: no following
        self._stamp = None if manifest is not None else _manifest_stamp(self.index_dir)
        self.manifest = manifest if manifest is not None else Manifest.load(self.index_dir)
        self._forget_shards()

    def _forget_shards(self) -> None:
        self._records: dict[str, list[bytes]] = {}
        self._record_bytes: dict[str, bytes] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._codes: dict[str, vector_search.Int8Codes] = {}
        self._faiss = None
        self._lookups: dict[str, np.ndarray] = {}
        self._offsets: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.manifest.num_videos

    def _changed(self) -> bool:
        return self._stamp is not None and _manifest_stamp(self.index_dir) != self._stamp

    def refresh(self) -> bool:
        """Reads the manifest again if an index run replaced it since; returns whether it did."""
        if not self._changed():
            return False
        stamp = _manifest_stamp(self.index_dir)
        self.manifest = Manifest.load(self.index_dir)
        self._stamp = stamp
        self._forget_shards()
        logger.info("%s: the index changed on disk; now %d videos", self.index_dir, self.manifest.num_videos)
        return True

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Turns a shard file that is gone into `IndexChangedError` (an index run replaced it) or `IndexFormatError`
        (the manifest names a file that is not there)."""
        try:
            yield
        except FileNotFoundError as error:
            if self._changed():
                raise IndexChangedError(f"{self.index_dir}: an index run replaced the index while it was read "
                                        f"({error.filename} is gone); open it again") from None
            raise IndexFormatError(f"{error.filename}: missing (named by {self.index_dir / MANIFEST})") from None

    def _following(self, operation, *args):
        """`operation(*args)` on the current state of the index, once more on the new state if an index run replaced
        the index meanwhile."""
        self.refresh()
        try:
            with self._reading():
                return operation(*args)
        except IndexChangedError:
            self.refresh()
            with self._reading():
                return operation(*args)

    def vectors(self, shard: Shard) -> np.ndarray:
        """The shard's `(rows, dim)` float32 vectors, memory-mapped copy-on-write (never written back; writable so that
        torch can wrap it without a copy); checked once for NaN / inf rows."""
        if shard.id not in self._vectors:
            path = shard.vectors_path(self.index_dir)
            with self._reading():
                array = load_npy(path, (shard.rows, self.manifest.dim), np.float32, mmap_mode="c")
            check_finite(array, path)
            self._vectors[shard.id] = array
        return self._vectors[shard.id]

    def codes(self, shard: Shard) -> vector_search.Int8Codes:
        """The shard's int8 search codes (memory-mapped). An index written before they existed, or whose code files are
        missing or unreadable, gets them computed from the vectors and saved (kept in memory only if the folder is
        read-only)."""
        if shard.id not in self._codes:
            try:
                self._codes[shard.id] = read_codes(self.index_dir, shard, self.manifest.dim)
            except (FileNotFoundError, IndexFormatError) as error:
                logger.info("shard %s: computing its int8 search codes (%s)", shard.id, error)
                try:
                    self._codes[shard.id] = write_codes(self.index_dir, shard, self.vectors(shard))
                except OSError:
                    self._codes[shard.id] = vector_search.quantize_int8(self.vectors(shard))
        return self._codes[shard.id]

    def _lines(self, shard: Shard) -> list[bytes]:
        """The raw JSON lines of a shard's records (parsed on demand: a query reads only its hits)."""
        if shard.id not in self._records:
            with self._reading():
                lines = shard.records_path(self.index_dir).read_bytes().splitlines()
            if len(lines) != shard.rows:
                raise IndexFormatError(f"{shard.records_path(self.index_dir)}: {len(lines)} records, manifest says "
                                       f"{shard.rows}")
            self._records[shard.id] = lines
        return self._records[shard.id]

    def record(self, shard: Shard, row: int) -> dict:
        """The record of one row: `path` (relative to the root), `size`, `mtime_ns`, `duration`, `frames`.

        Read through the path lookup's line offsets (one line read) unless the shard's records are already loaded."""
        if shard.id in self._records:
            return parse_record(self._records[shard.id][row], shard.records_path(self.index_dir), row)
        with self._reading():
            return self._record_at(shard, int(self._record_offsets(shard)[row]))

    def _hold_record_bytes(self, shard: Shard) -> None:
        """Keeps the shard's records file in memory, so that `_record_at` slices it instead of opening the file."""
        if shard.id not in self._record_bytes:
            self._record_bytes[shard.id] = shard.records_path(self.index_dir).read_bytes()

    def _record_offsets(self, shard: Shard) -> np.ndarray:
        """Byte offset of each row's record line (from the path lookup, which holds them in key order)."""
        if shard.id not in self._offsets:
            _, rows, offsets = self._path_lookup(shard)
            if not np.array_equal(np.sort(rows), np.arange(shard.rows, dtype=np.uint64)):
                raise IndexFormatError(f"{shard.lookup_path(self.index_dir)}: its rows are not those of the shard's "
                                       f"{shard.rows} records (damaged; delete it to rebuild it)")
            by_row = np.empty(shard.rows, dtype=np.uint64)
            by_row[rows.astype(np.int64)] = offsets
            self._offsets[shard.id] = by_row
        return self._offsets[shard.id]

    def records(self, shard: Shard) -> list[dict]:
        source = shard.records_path(self.index_dir)
        return [parse_record(line, source, row) for row, line in enumerate(self._lines(shard))]

    def all_records(self) -> Iterator[tuple[Shard, int, dict]]:
        for shard in self.manifest.shards:
            for row, record in enumerate(self.records(shard)):
                yield shard, row, record

    def locate(self, path: str) -> tuple[Shard, int, dict] | None:
        """Shard, row and record of an indexed video (`path` relative to the root, as stored), or None.

        Costs, per shard, a binary search in its memory-mapped path lookup and, where the key matches, one record line
        read: the other records are not read.
        """
        return self._following(self._locate, path)

    def _locate(self, path: str) -> tuple[Shard, int, dict] | None:
        key = path_key(path)
        for shard in self.manifest.shards:
            keys, rows, offsets = self._path_lookup(shard)
            for position in range(int(np.searchsorted(keys, key, "left")), int(np.searchsorted(keys, key, "right"))):
                record = self._record_at(shard, int(offsets[position]))
                if record.get("path") == path:
                    if int(rows[position]) >= shard.rows:
                        raise IndexFormatError(f"{shard.lookup_path(self.index_dir)}: row {int(rows[position])} of a "
                                               f"shard of {shard.rows} (damaged; delete it to rebuild it)")
                    return shard, int(rows[position]), record
        return None

    def find(self, path: str) -> tuple[Shard, int] | None:
        """Shard and row of an indexed video (path relative to the root), or None (see `locate`)."""
        found = self.locate(path)
        return None if found is None else found[:2]

    def _path_lookup(self, shard: Shard) -> np.ndarray:
        """The shard's path lookup (`build_path_lookup`), memory-mapped; an index written before lookups existed, or
        whose lookup file is missing or damaged, gets it built from the records and saved (kept in memory only when
        the index is not writable)."""
        if shard.id in self._lookups:
            return self._lookups[shard.id]
        path = shard.lookup_path(self.index_dir)
        lookup = None
        if path.is_file():
            try:
                lookup = load_npy(path, (3, shard.rows), np.uint64, mmap_mode="r")
            except (FileNotFoundError, IndexFormatError) as error:
                logger.warning("%s: unusable path lookup, rebuilding it (%s)", path, error)
        if lookup is None:
            lookup = build_path_lookup(shard.records_path(self.index_dir), shard.rows)
            try:
                write_npy(path, lookup)
            except OSError as error:  # a read-only index: keep the lookup for this session only
                logger.info("%s: path lookup not saved (%s)", path, error)
        self._lookups[shard.id] = lookup
        return lookup

    def _record_at(self, shard: Shard, offset: int) -> dict:
        """The record whose line starts at byte `offset` of the shard's records file (held in memory or read)."""
        records_path = shard.records_path(self.index_dir)
        data = self._record_bytes.get(shard.id)
        size = len(data) if data is not None else records_path.stat().st_size
        line = b""
        if offset < size:
            if data is not None:
                end = data.find(b"\n", offset)
                line = data[offset : end if end >= 0 else len(data)]
            else:
                with open(records_path, "rb") as handle:
                    handle.seek(offset)
                    line = handle.readline()
        try:
            return parse_record(line, records_path, f"at byte {offset}")
        except IndexFormatError:
            raise IndexFormatError(f"{records_path}: no record at byte {offset} (its path lookup "
                                   f"{shard.lookup_path(self.index_dir).name} does not match it: damaged; delete the "
                                   "lookup to rebuild it)") from None

    def search(self, queries: torch.Tensor, k: int = 10, scale: float = 1.0, backend: str = "auto",
               chunk_rows: int | None = None) -> list[list["Hit"]]:
        """Exact top-k of `scale * queries @ vectors.T` over the whole index.

        Args:
            queries: `(num_queries, dim)` float32 retrieval vectors.
            k: hits per query, `>= 1` (fewer when the index is smaller).
            scale: `logit_scale.exp()` of the model, so that scores are the model's logits.
            backend: how the top k is found; every backend gives the exact float32 top k:

                - `"int8"`: two stages (`vector_search.exact_topk`): an int8 scan of the shards' codes with a proven
                  error bound, then float32 rescoring of the rows the bound cannot rule out.
                - `"flat"`: a float32 scan of every vector (the reference; 4x the bytes of the int8 scan).
                - `"faiss"`: FAISS `IndexFlatIP` (`pip install faiss-cpu`), built in RAM from the shards on the first
                  such call and kept by this `VideoIndex`.
                - `"auto"` (default): "flat" below `COARSE_MIN_ROWS` videos, else "int8".
                - `"fused"`: deprecated spelling of "int8" (kept for old command lines).
            chunk_rows: rows per scan step (default: the backend's own).

        Returns:
            per query, up to `k` [`Hit`]s, best first. Scores are recomputed in float32 for the winners, so every
            backend reports identical scores.

        Raises:
            ValueError: bad queries, `k` or backend.
            IndexFormatError: a damaged shard file (named).
            IndexChangedError: index runs replaced the index twice during the search.
        """
        queries = queries.float().contiguous()
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise ValueError(f"queries must be (num_queries, {self.manifest.dim}), got {tuple(queries.shape)}")
        if not torch.isfinite(queries).all():
            raise ValueError("queries hold non-finite values (NaN or inf)")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if backend == "fused":
            logger.warning("backend 'fused' is deprecated: it is the 'int8' backend")
            backend = "int8"
        return self._following(self._search, queries, k, scale, backend, chunk_rows)

    def _search(self, queries: torch.Tensor, k: int, scale: float, backend: str,
                chunk_rows: int | None) -> list[list["Hit"]]:
        shards = [shard for shard in self.manifest.shards if shard.rows]
        k = min(k, self.manifest.num_videos)
        if k == 0:
            return [[] for _ in range(len(queries))]
        if backend == "auto":
            backend = "flat" if self.manifest.num_videos < COARSE_MIN_ROWS else "int8"
        if backend == "faiss":
            if self._faiss is None:
                self._faiss = build_faiss_index([self.vectors(shard) for shard in shards], self.manifest.dim)
            global_rows = faiss_topk([], queries, k, flat=self._faiss)
        elif backend == "flat":
            global_rows = brute_force_topk([self.vectors(shard) for shard in shards], queries, k,
                                           chunk_rows or 65536)
        else:
            blocks = [vector_search.SearchBlock(self.vectors(shard), self.codes(shard)) for shard in shards]
            try:
                global_rows = vector_search.exact_topk(blocks, queries, k, chunk_rows=chunk_rows).rows
            except vector_search.InconsistentCodesError as error:
                paths = shards[error.block].codes_paths(self.index_dir)
                raise IndexFormatError(
                    f"{paths['norms']} (with {paths['codes'].name}, {paths['scales'].name}): the int8 search codes do "
                    f"not bound the stored vectors ({error}); damaged: delete these three files to have them "
                    "recomputed") from None
        return self._hits(shards, queries, np.asarray(global_rows, dtype=np.int64), scale)

    def _hits(self, shards: list[Shard], queries: torch.Tensor, rows: np.ndarray, scale: float) -> list[list["Hit"]]:
        """`Hit`s of `(num_queries, k)` global rows: scores `scale * (query @ vector)` recomputed from the stored
        vectors (the same formula for every backend), records parsed, best first."""
        starts = np.cumsum([0] + [shard.rows for shard in shards])
        positions = np.searchsorted(starts, rows, side="right") - 1
        vectors = np.empty(rows.shape + (self.manifest.dim,), dtype=np.float32)
        for position in np.unique(positions):
            mine = positions == position
            vectors[mine] = self.vectors(shards[position])[rows[mine] - starts[position]]
            if np.count_nonzero(mine) > MANY_HITS:  # a large batch: reading the shard's records at once is cheaper
                self._hold_record_bytes(shards[position])
        scores = scale * torch.einsum("qd,qkd->qk", queries, torch.from_numpy(vectors))
        root = str(Path(self.manifest.video_dir))
        results = []
        for query_rows, query_positions, query_scores in zip(rows.tolist(), positions.tolist(), scores.tolist()):
            hits = []
            for row, position, score in zip(query_rows, query_positions, query_scores):
                record = self.record(shards[position], row - int(starts[position]))
                hits.append(Hit(path=os.path.join(root, record["path"]), score=score, record=record))
            hits.sort(key=lambda hit: -hit.score)
            results.append(hits)
        return results


@dataclass
class Hit:
    """One search result: absolute path, score (the model's logit for a text query) and the stored record."""

    path: str
    score: float
    record: dict

    def to_dict(self, rank: int) -> dict:
        return {"rank": rank, "path": self.path, "score": self.score, "duration": self.record.get("duration"),
                "frames": self.record.get("frames"), "size": self.record.get("size")}


# ----------------------------------------------------------------------------------------------------------------------
# Top-k over stored vectors
# ----------------------------------------------------------------------------------------------------------------------


#: The float32 scan (the "flat" backend and the reference), also used by the two-stage search as its fallback.
brute_force_topk = vector_search.flat_topk


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def build_faiss_index(blocks: Sequence[np.ndarray], dim: int):
    """FAISS `IndexFlatIP` (exact inner product, float32, in RAM) holding the blocks' rows in order."""
    try:
        import faiss
    except ImportError:
        raise ImportError("the faiss backend needs `pip install faiss-cpu`") from None
    flat = faiss.IndexFlatIP(dim)
    for block in blocks:
        flat.add(np.ascontiguousarray(block, dtype=np.float32))
    return flat


def faiss_topk(blocks: Sequence[np.ndarray], queries: torch.Tensor, k: int, flat=None) -> np.ndarray:
    """Top-k rows with FAISS `IndexFlatIP` (`flat`, or one built from `blocks` for this call)."""
    flat = flat if flat is not None else build_faiss_index(blocks, queries.shape[1])
    _, rows = flat.search(queries.numpy(), k)
    return rows.astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------------
# Building and updating the index
# ----------------------------------------------------------------------------------------------------------------------


def _below(value, minimum: int) -> str | None:
    """Why `value` is not an integer `>= minimum`, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"must be an integer >= {minimum}, got {value!r}"
    return None


def _check_at_least(arguments, minimum: int, *names: str) -> None:
    """Raises ValueError naming the option (`--name`) when one of the integer fields `names` is below `minimum`."""
    for name in names:
        problem = _below(getattr(arguments, name), minimum)
        if problem:
            raise ValueError(f"{'-' if len(name) == 1 else '--'}{name} {problem}")


def int_at_least(minimum: int):
    """An argparse `type=` for plain `ArgumentParser` scripts (the benchmark, the demo): an integer `>= minimum`, else
    argparse's message naming the option."""

    def parse(text: str) -> int:
        value = int(text)
        if _below(value, minimum):
            raise argparse.ArgumentTypeError(_below(value, minimum))
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


@dataclass(kw_only=True)
class IndexArguments:
    """Arguments of `search_videos.py index VIDEO_DIR --model MODEL --index INDEX_DIR`; bad values raise ValueError
    naming the option."""

    video_dir: str | None = field(default=None, metadata={
        "help": "Folder of videos (searched recursively); also accepted as the first positional argument."})
    model: str = field(metadata={"help": "Hub id or local folder of a CLIP2Video model with its processor."})
    index: str = field(metadata={"help": "Index folder (created if missing, updated incrementally otherwise)."})
    batch_size: int = field(default=8, metadata={"help": "Videos per forward pass."})
    num_workers: int = field(default=2, metadata={"help": "DataLoader processes decoding videos (0: in-process)."})
    bf16: bool = field(default=False, metadata={"help": "Encode under bfloat16 autocast (recorded in the index)."})
    commit_every: int = field(default=256, metadata={
        "help": "Write encoded vectors to disk every N videos (a killed run loses at most this much work)."})
    shard_rows: int = field(default=65536, metadata={"help": "Maximum rows per shard file."})
    retry_failed: bool = field(default=False, metadata={"help": "Try again the unreadable videos that did not change."})

    def __post_init__(self):
        if not self.video_dir:
            raise ValueError("give the folder of videos to index (VIDEO_DIR)")
        _check_at_least(self, 1, "batch_size", "commit_every", "shard_rows")
        _check_at_least(self, 0, "num_workers")


@dataclass
class IndexReport:
    """What one index run did (saved as `report.json`)."""

    encoded: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[dict] = field(default_factory=list)
    encoded_per_process: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.encoded} encoded, {self.unchanged} unchanged, {self.removed} removed, "
                f"{len(self.skipped)} unreadable")


@contextlib.contextmanager
def index_lock(index_dir: Path) -> Iterator[None]:
    """Exclusive lock on the index for one writer (`filelock`; creates the folder). The OS releases it when the
    process dies, even while DataLoader workers forked from it live on: filelock closes its descriptor in forked
    children, so an immediate rerun after a `kill -9` gets the lock.

    Raises:
        IndexWriteError: the folder cannot be created or written.
        IndexBusyError: another run holds the lock.
    """
    import filelock

    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(index_dir / LOCK, timeout=0)
        lock.acquire()
    except filelock.Timeout:
        raise IndexBusyError(f"{index_dir}: another index run is writing this index") from None
    except OSError as error:
        raise IndexWriteError(f"{index_dir}: cannot create or write the index folder ({error.strerror or error})"
                              ) from None
    try:
        yield
    finally:
        lock.release()


def _new_manifest(video_dir: Path, loaded: LoadedModel) -> Manifest:
    return Manifest(video_dir=str(video_dir), dim=int(loaded.model.config.retrieval_embed_dim), model={
        "name_or_path": loaded.name_or_path, "fingerprint": loaded.fingerprint, "bf16": loaded.bf16,
        "logit_scale": loaded.logit_scale})


def open_for_update(index_dir: Path, video_dir: Path, loaded: LoadedModel) -> Manifest:
    """The manifest of an existing index (checked against the model and the folder) or a new one."""
    if not (index_dir / MANIFEST).exists():
        return _new_manifest(video_dir, loaded)
    manifest = Manifest.load(index_dir)
    check_model(manifest, loaded, index_dir)
    if Path(manifest.video_dir) != video_dir:
        raise IndexFormatError(f"{index_dir}: indexes {manifest.video_dir}, not {video_dir}; use another --index")
    if manifest.model.get("bf16", False) != loaded.bf16:
        raise ModelMismatchError(f"{index_dir}: built with bf16={manifest.model.get('bf16')}, this run has "
                                 f"bf16={loaded.bf16}")
    return manifest


def _own_folder(folder: Path, index_dir: Path) -> bool:
    """True if `folder` exists as a real folder of the index; raises `IndexFormatError` for a symbolic link (a run must
    never delete, through it, files of another folder or index)."""
    if folder.is_symlink():
        raise IndexFormatError(f"{folder}: a symbolic link; an index's {folder.name}/ must be its own folder "
                               f"(refusing to write through it into another index)")
    return folder.is_dir()


def remove_stale_files(index_dir: Path, manifest: Manifest) -> None:
    """Deletes temporary files of killed runs and shard files the manifest does not name (only plain files directly in
    the index's own folders: nothing through a symbolic link, no subfolder)."""
    keep = {name for shard in manifest.shards for name in shard.file_names()}
    for folder in (index_dir, index_dir / SHARDS, index_dir / PENDING):
        if folder != index_dir and not _own_folder(folder, index_dir):
            continue
        for path in folder.iterdir():
            if path.is_dir() and not path.is_symlink():
                continue
            if path.name.startswith(TMP_PREFIX) or (folder.name == SHARDS and path.name not in keep):
                path.unlink(missing_ok=True)


def write_pending_chunk(index_dir: Path, vectors: np.ndarray, records: list[dict], failed: list[dict],
                        prefix: str) -> None:
    """Commits encoded videos: `pending/<name>.npy` then `pending/<name>.json` (its presence marks completion).

    Raises:
        ValueError: a vector holds NaN or inf (`PendingChunkWriter` turns such videos into skips first).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    bad = non_finite_rows(vectors)
    if len(bad):
        raise ValueError(f"non-finite vectors for {[records[row]['path'] for row in bad[:10]]}")
    name = f"{prefix}-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
    folder = index_dir / PENDING
    if not _own_folder(folder, index_dir):
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
    if not _own_folder(folder, index_dir):
        return []
    return [read_pending_chunk(marker, dim) for marker in sorted(folder.glob("*.json"))
            if not marker.name.startswith(TMP_PREFIX)]


def commit(index_dir: Path, manifest: Manifest, drop: set[str], shard_rows: int) -> Manifest:
    """Merges the pending chunks into shards and removes the rows of `drop` paths (deleted or changed videos).

    Order of writes: new shard files, then the manifest (atomic), then the deletion of the replaced shards and the
    merged chunks. A kill before the manifest leaves the old index plus the chunks; a kill after it leaves chunks whose
    videos are already indexed, and merging them again replaces those rows: the operation is idempotent.
    """
    index = VideoIndex(index_dir, manifest)
    chunks = read_pending_chunks(index_dir, manifest.dim)
    new_paths = {record["path"] for _, _, records, _ in chunks for record in records}
    drop = set(drop) | new_paths
    failed = {item["path"]: item for item in sorted(manifest.failed, key=lambda item: item["path"])
              if item["path"] not in drop}
    for _, _, _, chunk_failed in chunks:
        failed.update({item["path"]: item for item in chunk_failed})
    for path in new_paths:
        failed.pop(path, None)
    failed = dict(sorted(failed.items()))

    # Shards without dropped rows stay as they are; when something changes, small shards are merged with the new rows
    # (so that incremental runs do not pile up tiny files).
    dropped_rows = {shard.id: [row for row, record in enumerate(index.records(shard)) if record["path"] in drop]
                    for shard in manifest.shards}
    if not chunks and not any(dropped_rows.values()) and list(failed) == [item["path"] for item in manifest.failed]:
        return manifest
    kept_shards, moved_vectors, moved_records = [], [], []
    for shard in manifest.shards:
        if not dropped_rows[shard.id] and shard.rows >= shard_rows // 2:
            kept_shards.append(shard)
            continue
        alive = sorted(set(range(shard.rows)) - set(dropped_rows[shard.id]))
        if alive:
            moved_vectors.append(np.asarray(index.vectors(shard)[alive]))
            records = index.records(shard)
            moved_records.extend(records[row] for row in alive)
    for _, vectors, records, _ in chunks:
        moved_vectors.append(vectors)
        moved_records.extend(records)

    new_shards = []
    if moved_records:
        merged = np.concatenate(moved_vectors) if moved_vectors else np.zeros((0, manifest.dim), np.float32)
        if not _own_folder(index_dir / SHARDS, index_dir):
            (index_dir / SHARDS).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(moved_records), shard_rows):
            rows = min(shard_rows, len(moved_records) - start)
            shard = Shard(id=f"{time.time_ns()}-{uuid.uuid4().hex[:6]}", rows=rows)
            write_npy(shard.vectors_path(index_dir), merged[start : start + shard_rows])
            write_codes(index_dir, shard, merged[start : start + shard_rows])
            write_jsonl(shard.records_path(index_dir), moved_records[start : start + shard_rows])
            write_path_lookup(index_dir, shard)
            new_shards.append(shard)
    replaced = [shard for shard in manifest.shards if shard not in kept_shards]
    updated = dataclasses.replace(manifest, shards=kept_shards + new_shards,
                                  failed=list(failed.values()))
    updated.save(index_dir)
    for shard in replaced:
        for name in shard.file_names():
            (index_dir / SHARDS / name).unlink(missing_ok=True)
    for marker, _, _, _ in chunks:
        marker.unlink(missing_ok=True)
        marker.with_suffix(".npy").unlink(missing_ok=True)
    return updated


@dataclass
class Plan:
    """Work of one index run: videos to encode, indexed paths to remove, and counts for the report."""

    todo: list[VideoFile]
    drop: set[str]
    unchanged: int
    skipped_unchanged: list[dict]


def plan_update(video_dir: Path, manifest: Manifest, index_dir: Path, retry_failed: bool) -> Plan:
    """Compares the folder with the index on path + size + mtime."""
    on_disk = {video.path: video for video in scan_videos(video_dir)}
    index = VideoIndex(index_dir, manifest)
    indexed = {record["path"]: (record["size"], record["mtime_ns"]) for _, _, record in index.all_records()}
    failed = {item["path"]: (item["size"], item["mtime_ns"]) for item in manifest.failed}
    def stale(path: str, signature: tuple[int, int]) -> bool:
        return path not in on_disk or on_disk[path].signature() != signature

    drop = {path for path, signature in [*indexed.items(), *failed.items()] if stale(path, signature)}
    todo, skipped = [], []
    for path, video in on_disk.items():
        if indexed.get(path) == video.signature():
            continue
        if failed.get(path) == video.signature() and not retry_failed:
            skipped.append(next(item for item in manifest.failed if item["path"] == path))
            continue
        todo.append(video)
    unchanged = len(on_disk) - len(todo) - len(skipped)
    return Plan(todo=todo, drop=drop, unchanged=unchanged, skipped_unchanged=skipped)


def encode_batch(loaded: LoadedModel, items: list[dict]) -> torch.Tensor:
    """Retrieval vectors `(len(items), dim)` of decoded items (each with `pixel_values` `(frames, 3, H, W)`)."""
    pixel_values = torch.stack([item["pixel_values"] for item in items])
    video_mask = torch.stack([item["video_mask"] for item in items])
    return loaded.encode_videos(pixel_values, video_mask)


class ProcessAgreement:
    """Keeps the processes of a multi-process index run in step, so that a failure on any of them stops all of them.

    A process that fails must not simply leave: the others would wait for it in their next collective until the
    process group times out, or carry on encoding for nothing, and (under `accelerate launch`) be killed without
    saying why. Instead, at fixed points every process calls `check` with the exception it hit, or None; the processes
    exchange these outcomes and, if any failed, all raise at once: a failed process its own exception, the others
    `RunAbortedError` naming the failed process and its error. Every process must make the same calls in the same
    order. With one process, `check` only re-raises.

    Example:
        >>> agreement = ProcessAgreement(state.process_index, state.num_processes)
        >>> loaded = agreement.run(load_model, "my_model")         # every process loads; all fail if one fails
        >>> plan = agreement.run_on_main(make_plan, index_dir)     # the main process plans, every process gets it
    """

    def __init__(self, process_index: int = 0, num_processes: int = 1):
        self.process_index, self.num_processes = process_index, num_processes

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def check(self, error: Exception | None = None, value=None) -> list:
        """Collective: exchanges this process's outcome with the others'.

        Args:
            error: the exception this process hit since the last check, or None.
            value: a small picklable value to share (e.g. counts).

        Returns:
            every process's `value`, by process index.

        Raises:
            `error` itself when it is not None; otherwise `RunAbortedError` when another process failed.
        """
        if self.num_processes == 1:
            if error is not None:
                raise error
            return [value]
        outcome = None if error is None else f"{type(error).__name__}: {error}"
        outcomes = [None] * self.num_processes
        self._collective(torch.distributed.all_gather_object, outcomes, (outcome, value))
        if error is not None:
            raise error
        failures = [f"process {rank} of {self.num_processes} failed: {message}"
                    for rank, (message, _) in enumerate(outcomes) if message is not None]
        if failures:
            raise RunAbortedError("; ".join(failures))
        return [shared for _, shared in outcomes]

    def run(self, function, *args):
        """Every process runs `function(*args)` and checks in; returns this process's result."""
        try:
            result, error = function(*args), None
        except Exception as caught:
            result, error = None, caught
        self.check(error)
        return result

    def run_on_main(self, function, *args):
        """The main process runs `function(*args)` while the others wait; every process checks in and gets its result
        (broadcast: it may be large)."""
        result = self.run(function, *args) if self.is_main_process else self.run(lambda: None)
        if self.num_processes == 1:
            return result
        box = [result]
        self._collective(torch.distributed.broadcast_object_list, box, 0)
        return box[0]

    def _collective(self, operation, *args) -> None:
        try:
            operation(*args)
        except RuntimeError as error:  # gloo/NCCL: a peer died (killed, crashed) or the group timed out
            raise RunAbortedError(f"process {self.process_index} of {self.num_processes} lost contact with the other "
                                  f"processes (did one die?): {error}") from None


class PendingChunkWriter:
    """Collects a process's encoded videos and unreadable files, and commits them as pending chunks."""

    def __init__(self, index_dir: Path, dim: int, prefix: str):
        self.index_dir, self.dim, self.prefix = index_dir, dim, prefix
        self.vectors, self.records, self.failed = [], [], []
        self.encoded, self.all_failed = 0, []

    def __len__(self) -> int:
        """Videos waiting to be committed."""
        return len(self.records) + len(self.failed)

    def add(self, items: list[dict], vectors: np.ndarray | None) -> None:
        """Adds one decoded batch: `vectors` are those of its readable items, in order (None when there are none).

        A video whose vector holds NaN or inf (a model that overflows, e.g. under bf16) is not indexed: it is counted
        and reported as unreadable, with that reason, like a video that does not decode."""
        if vectors is not None:
            readable = [item for item in items if "error" not in item]
            for row in non_finite_rows(vectors):
                readable[row]["error"] = "the model gave a non-finite vector (NaN or inf) for this video"
            vectors = vectors[np.isfinite(vectors).all(axis=1)]
            vectors = vectors if len(vectors) else None
        for item in items:
            if "error" in item:
                video = item["video"]
                logger.warning("skipping %s: %s", video.path, item["error"])
                self.failed.append({"path": video.path, "size": video.size, "mtime_ns": video.mtime_ns,
                                    "reason": item["error"]})
        if vectors is not None:
            self.vectors.append(vectors)
            self.records.extend({"path": item["video"].path, "size": item["video"].size,
                                 "mtime_ns": item["video"].mtime_ns, "duration": item["duration"],
                                 "frames": int(item["video_mask"].sum())} for item in items if "error" not in item)

    def flush(self) -> None:
        """Writes what was added since the last flush as one pending chunk (nothing when empty)."""
        if not len(self):
            return
        vectors = np.concatenate(self.vectors) if self.vectors else np.zeros((0, self.dim))
        write_pending_chunk(self.index_dir, vectors, self.records, self.failed, self.prefix)
        self.encoded, self.all_failed = self.encoded + len(self.records), self.all_failed + self.failed
        self.vectors, self.records, self.failed = [], [], []

    def save_before_stopping(self) -> None:
        """`flush` for a process stopped by another's failure: its finished videos need not be encoded again."""
        try:
            self.flush()
        except Exception as error:  # the run is failing anyway; report the first error, not this one
            logger.warning("could not commit the %d videos encoded before stopping: %s", len(self), error)


def encode_videos(loaded: LoadedModel, video_dir: Path, videos: Sequence[VideoFile], index_dir: Path,
                  args: IndexArguments, prefix: str, show_progress: bool = True,
                  agreement: ProcessAgreement | None = None, num_batches: int | None = None) -> tuple[int, list[dict]]:
    """Encodes `videos` in batches and commits them as pending chunks every `args.commit_every` videos.

    In a multi-process run every process checks in with `agreement` after each batch, `num_batches` times (the largest
    share's number of batches, so that a process with fewer videos keeps checking in until the others are done): a
    failure on any process stops every process within one batch; the processes stopped by another's failure commit
    what they had encoded, which the next run keeps.

    Returns:
        the number of videos encoded and the records of the unreadable ones (`path`, `size`, `mtime_ns`, `reason`).
    """
    from tqdm.auto import tqdm

    agreement = agreement or ProcessAgreement()
    loader = torch.utils.data.DataLoader(
        VideoFolderDataset(video_dir, videos, loaded.processor), batch_size=args.batch_size,
        num_workers=args.num_workers, collate_fn=_collate)
    num_batches = len(loader) if num_batches is None else num_batches
    batches = iter(loader)
    pending = PendingChunkWriter(index_dir, int(loaded.model.config.retrieval_embed_dim), prefix)
    progress = tqdm(total=len(videos), desc="indexing", unit="video", disable=not show_progress)
    try:
        for step in range(num_batches):
            error = None
            try:
                items = next(batches, [])
                good = [item for item in items if "error" not in item]
                pending.add(items, encode_batch(loaded, good).numpy() if good else None)
                progress.update(len(items))
                if len(pending) >= args.commit_every or step == num_batches - 1:
                    pending.flush()
            except Exception as caught:
                error = caught
            try:
                agreement.check(error)
            except RunAbortedError:
                pending.save_before_stopping()
                raise
    finally:
        progress.close()
    return pending.encoded, pending.all_failed


def _load_indexing_model(args: IndexArguments, video_dir: Path, device: torch.device) -> LoadedModel:
    """Every process: the model, after checking that there is a folder to index."""
    if not video_dir.is_dir():
        raise FileNotFoundError(f"{video_dir}: no such folder")
    return load_model(args.model, device=device, bf16=args.bf16)


def _open_and_plan(index_dir: Path, video_dir: Path, loaded: LoadedModel, args: IndexArguments,
                   held: contextlib.ExitStack) -> Plan:
    """Main process: takes the index's lock (held by `held` until the run ends), checks the index against the model
    and the folder, merges what killed runs left, removes deleted and changed videos, and plans the work."""
    held.enter_context(index_lock(index_dir))
    manifest = open_for_update(index_dir, video_dir, loaded)
    remove_stale_files(index_dir, manifest)
    manifest = commit(index_dir, manifest, set(), args.shard_rows)  # what a killed run left
    plan = plan_update(video_dir, manifest, index_dir, args.retry_failed)
    manifest = commit(index_dir, manifest, plan.drop, args.shard_rows)  # deleted and changed videos out
    manifest.save(index_dir)
    logger.info("%s: %d videos indexed, %d to encode, %d removed", index_dir, manifest.num_videos, len(plan.todo),
                len(plan.drop))
    return plan


def _merge_and_report(index_dir: Path, args: IndexArguments, plan: Plan, shares: list[tuple[int, list[dict]]],
                      started: float) -> IndexReport:
    """Main process: merges every process's pending chunks into the shards and writes `report.json`."""
    manifest = commit(index_dir, Manifest.load(index_dir), set(), args.shard_rows)
    failed = [item for _, share_failed in shares for item in share_failed]
    report = IndexReport(
        encoded=sum(encoded for encoded, _ in shares), unchanged=plan.unchanged,
        removed=len(plan.drop - {video.path for video in plan.todo}),
        skipped=sorted(failed + plan.skipped_unchanged, key=lambda item: item["path"]),
        encoded_per_process=[encoded for encoded, _ in shares], seconds=round(time.perf_counter() - started, 3))
    write_json(index_dir / REPORT, dataclasses.asdict(report))
    logger.info("%s: %s; %d videos in the index", index_dir, report.summary(), manifest.num_videos)
    for item in report.skipped:
        logger.info("  unreadable: %s (%s)", item["path"], item["reason"])
    return report


def build_index(args: IndexArguments) -> IndexReport:
    """Creates or updates an index (see the module docstring); runs on every process of an `accelerate launch`.

    Steps: every process loads the model; the main process takes the lock, merges what killed runs left, plans the
    work and broadcasts it; every process encodes its share (`todo[rank::world_size]`) into its own pending chunks; the
    main process merges them. The processes check in with each other after each step and after every batch
    (`ProcessAgreement`), so a failure on any process (a model that is not the index's, a locked or unwritable index,
    a malformed manifest, an error while encoding) stops every process promptly, each raising the error or a
    `RunAbortedError` that names it. The index stays valid: each write is atomic and the manifest is replaced last.

    Returns:
        the run's report, on every process.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # like `Accelerator`, honour `ACCELERATE_USE_CPU` (multi-process CPU runs over gloo)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    agreement = ProcessAgreement(state.process_index, state.num_processes)
    started = time.perf_counter()
    video_dir, index_dir = Path(args.video_dir).resolve(), Path(args.index).resolve()
    with contextlib.ExitStack() as held:  # the main process's lock on the index
        loaded = agreement.run(_load_indexing_model, args, video_dir, state.device)
        plan = agreement.run_on_main(_open_and_plan, index_dir, video_dir, loaded, args, held)
        mine = plan.todo[state.process_index :: state.num_processes]
        largest_share = math.ceil(len(plan.todo) / state.num_processes)  # process 0's: every process goes that far
        outcome = encode_videos(loaded, video_dir, mine, index_dir, args, prefix=f"r{state.process_index}",
                                show_progress=state.is_local_main_process, agreement=agreement,
                                num_batches=math.ceil(largest_share / args.batch_size))
        shares = agreement.check(value=outcome)  # every process's (videos encoded, unreadable files)
        return agreement.run_on_main(_merge_and_report, index_dir, args, plan, shares, started)


# ----------------------------------------------------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class QueryArguments:
    """Arguments of `search_videos.py query INDEX_DIR "caption"` (or `--video PATH`); bad values raise ValueError
    naming the option."""

    index: str | None = field(default=None, metadata={
        "help": "Index folder made by `search_videos.py index`; also accepted as the first positional argument."})
    text: str | None = field(default=None, metadata={
        "help": "Caption to search for; also accepted as the second positional argument."})
    video: str | None = field(default=None, metadata={
        "help": "Search by example: a video file (an indexed, unchanged one is not encoded again)."})
    k: int = field(default=10, metadata={"help": "Number of hits.", "aliases": ["-k"]})
    model: str | None = field(default=None, metadata={
        "help": "Model to encode the query (default: the one recorded in the index); refused if it is not the model "
                "that built the index."})
    backend: Literal["auto", "int8", "flat", "faiss", "fused"] = field(default="auto", metadata={"help": (
        "How the exact top k is found (every backend gives the same hits): auto (flat below 32,768 videos, else "
        "int8), int8 (int8 scan with an error bound + float32 rescoring), flat (float32 scan) or faiss; 'fused' is a "
        "deprecated spelling of int8.")})
    json: bool = field(default=False, metadata={"help": "Print the hits as JSON."})
    html: str | None = field(default=None, metadata={"help": "Write an HTML gallery (thumbnail strip per hit)."})
    thumbnails: int = field(default=6, metadata={"help": "Frames per thumbnail strip in --html."})

    def __post_init__(self):
        if not self.index:
            raise ValueError("give the index folder (INDEX_DIR)")
        if (self.text is None) == (self.video is None):
            raise ValueError("give a caption or --video PATH (exactly one)")
        _check_at_least(self, 1, "k", "thumbnails")


def index_relative_paths(video: str | os.PathLike, root: Path) -> list[str]:
    """The forms an example video's path may have among the index's records (relative to the indexed `root`, forward
    slashes, as `scan_videos` stores them), most literal first: from its absolute path with `.` and `..` removed (a
    symlink inside the root is indexed under its own name), with its folder's symlinks resolved, and fully resolved.
    Forms outside the root and duplicates are left out."""
    absolute = Path(os.path.abspath(video))
    relative = []
    for candidate in (absolute, absolute.parent.resolve() / absolute.name, absolute.resolve()):
        try:
            form = candidate.relative_to(root).as_posix()
        except ValueError:
            continue
        if form not in relative:
            relative.append(form)
    return relative


def indexed_vector(index: VideoIndex, video: str | os.PathLike) -> torch.Tensor | None:
    """`(1, dim)` stored vector of an example video that is in the index and unchanged since, or None.

    The file counts as unchanged when its size and mtime are those recorded at indexing, the rule index runs use to
    decide what to encode again; a file edited since (and not re-indexed yet) returns None, so that it is encoded anew
    rather than searched with the vector of its old contents.
    """
    stat = os.stat(video)
    for relative in index_relative_paths(video, Path(index.manifest.video_dir)):
        found = index.locate(relative)
        if found is None:
            continue
        shard, row, record = found
        if (record["size"], record["mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
            logger.info("%s changed since it was indexed (size or mtime differ): encoding it again", video)
            return None
        return torch.from_numpy(np.array(index.vectors(shard)[row]))[None]
    return None


def encode_query(loaded: LoadedModel, index: VideoIndex, text: str | None, video: str | None) -> torch.Tensor:
    """`(1, dim)` query vector: a caption's, or a video's (its stored vector when the file is indexed and unchanged,
    see `indexed_vector`; otherwise the model encodes it).

    Raises:
        FileNotFoundError: `video` is not a file.
    """
    if text is not None:
        return loaded.encode_text([text])
    if not os.path.isfile(video):
        raise FileNotFoundError(f"{video}: no such file")
    stored = indexed_vector(index, video)
    if stored is not None:
        return stored
    inputs = loaded.processor(videos=[os.path.abspath(video)], return_tensors="pt")  # VideoDecodeError names the file
    return loaded.encode_videos(inputs["pixel_values"], inputs["video_mask"])


def search(index_dir: str | os.PathLike, text: str | None = None, video: str | None = None, k: int = 10,
           model: str | LoadedModel | None = None, backend: str = "auto") -> list[Hit]:
    """Python API: the top `k` videos of an index for a caption or an example video.

    Example:
        >>> for hit in search("my_index", text="a dog catches a frisbee", k=5):
        ...     print(f"{hit.score:8.3f}  {hit.path}")
    """
    if (text is None) == (video is None):
        raise ValueError("give exactly one of `text` and `video`")
    index = VideoIndex(index_dir)
    if not isinstance(model, LoadedModel):
        model = load_model(model or index.manifest.model["name_or_path"], bf16=index.manifest.model.get("bf16", False))
    check_model(index.manifest, model, index.index_dir)
    query = encode_query(model, index, text, video)
    return index.search(query, k=k, scale=model.logit_scale, backend=backend)[0]


def write_gallery(path: str, query: str, hits: list[Hit], processor, num_frames: int) -> None:
    """A self-contained HTML page (`report_clip2video`): one row per hit with rank, score, path (a link to the file),
    duration and a strip of `num_frames` frames spread over the video."""
    rows = []
    for rank, hit in enumerate(hits, 1):
        try:
            frames = processor.video_processor.load_frames(hit.path, frame_sampling="uniform", num_frames=num_frames)
            image = report.data_uri(report.thumbnail_strip(frames, height=72, count=num_frames))
        except Exception as error:  # noqa: BLE001 - a preview is optional; the hit is still listed
            logger.warning("no thumbnails for %s: %s", report.printable(hit.path), error)
            image = None
        duration = hit.record.get("duration")
        rows.append([report.Cell(str(rank)), report.Cell(f"{hit.score:.4f}"),
                     report.Cell(hit.path, link=Path(hit.path).as_uri(),
                                 note=("" if duration is None else f"{duration:.2f} s, ")
                                 + f"{hit.record.get('frames')} frames used"),
                     report.Cell(image=image, text="" if image else "no preview")])
    report.write_page(path, report.render_page(query, rows, columns=("#", "score", "video", "frames")))


def run_query(args: QueryArguments) -> list[Hit]:
    index = VideoIndex(args.index)
    try:
        loaded = load_model(args.model or index.manifest.model["name_or_path"],
                            bf16=index.manifest.model.get("bf16", False))
    except ModelSourceError as error:
        if args.model:
            raise
        raise ModelSourceError(f"{error} (the model recorded in the index {args.index}: pass --model)") from None
    hits = search(args.index, text=args.text, video=args.video, k=args.k, model=loaded, backend=args.backend)
    query = args.text if args.text is not None else f"video: {args.video}"
    if args.json:
        print(json.dumps({"query": query, "index": str(Path(args.index).resolve()), "model": loaded.fingerprint,
                          "hits": [hit.to_dict(rank) for rank, hit in enumerate(hits, 1)]}, indent=1))
    else:
        for rank, hit in enumerate(hits, 1):  # file names are untrusted: no control character reaches the terminal
            print(f"{rank:3d}  {hit.score:9.4f}  {report.printable(hit.path)}")
    if args.html:
        write_gallery(args.html, query, hits, loaded.processor, args.thumbnails)
        logger.info("gallery written to %s", args.html)
    return hits


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


#: Per command: its arguments and the fields also given as positional arguments, in order.
COMMANDS = {"index": (IndexArguments, ("video_dir",), "Create or update an index of a video folder."),
            "query": (QueryArguments, ("index", "text"), "Search an index by text or by example video.")}


def build_parser() -> argparse.ArgumentParser:
    """The `index` / `query` command line: each command's options from its dataclass (`HfArgumentParser`), plus its
    positional spellings (`index VIDEO_DIR`, `query INDEX_DIR "caption"`), stored under `<field>_positional`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    for command, (arguments, positional, help_text) in COMMANDS.items():
        subparser = commands.add_parser(command, dataclass_types=[arguments], help=help_text, description=help_text)
        for name in positional:
            subparser.add_argument(f"{name}_positional", metavar=name.upper(), nargs="?", default=None,
                                   help=f"Same as --{name}.")
    return parser


def parse_arguments(argv: Sequence[str] | None = None) -> IndexArguments | QueryArguments:
    """The command's arguments; a bad value (`--batch_size 0`, `-k -1`, ...) exits with status 2 and a message naming
    the option, before anything is loaded or written."""
    parser = build_parser()
    namespace = vars(parser.parse_args(argv))
    command = namespace.pop("command")
    arguments, positional, _ = COMMANDS[command]
    for name in positional:
        given = namespace.pop(f"{name}_positional")
        if given is not None and namespace[name] is not None:
            parser.error(f"{command}: {name.upper()} given twice (positional and --{name})")
        namespace[name] = given if given is not None else namespace[name]
    try:
        return arguments(**namespace)
    except ValueError as error:
        parser.error(f"{command}: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 with a one-line message for index, model and decoding errors; 2 for
    bad options)."""
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if isinstance(arguments, IndexArguments):
            build_index(arguments)
        else:
            run_query(arguments)
    except (VideoIndexError, ValueError, FileNotFoundError) as error:
        logger.error("%s: %s", type(error).__name__, error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
