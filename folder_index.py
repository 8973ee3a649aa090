# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The folder index: today's exact on-disk index (`folder_format`) as an `index_store.IndexStore`.

Reading (`VideoIndex`): memory-mapped float32 vectors, exact top-k by an int8 scan with a proven error bound and
float32 rescoring (`vector_search`), a float32 scan, or FAISS; a long-lived reader follows index runs.

Writing (`FolderIndex`): one run holds the folder's lock; every process commits its rows as pending chunks, the main
process merges them into shards (`commit`). Every file is written to a temporary name and renamed, and the manifest is
replaced only after the files it names exist, so a run killed at any point leaves a valid index; the next run merges
the complete pending chunks (finished videos are not encoded again) and carries on.

A folder is the project's only when its manifest says so: a run never deletes a file in a folder whose manifest is
not this format's (`Manifest.is_ours`), and, in its own folders, only files of the names it writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

import folder_format
import vector_search
from folder_format import (
    LOCK, MANIFEST, PENDING, REPORT, SHARDS, Manifest, Shard, build_path_lookup, check_finite, is_shard_file,
    load_npy, own_folder, parse_record, path_key, read_codes, read_pending_chunks, write_jsonl, write_path_lookup,
    write_pending_chunk,
)
from index_store import (
    Hit, IndexBusyError, IndexChangedError, IndexFormatError, IndexStore, IndexWriteError, SearchFilter, check_meta,
    record_span,
)
from utils_clip2video import TMP_PREFIX, write_json


logger = logging.getLogger("search_videos")

#: Below this many indexed rows, `backend="auto"` scans the float32 vectors directly (already a few milliseconds).
COARSE_MIN_ROWS = 32768
BACKENDS = ("auto", "int8", "flat", "faiss")
#: Hits in one shard beyond which a search holds the shard's records file in memory (read once) instead of opening it
#: for each hit.
MANY_HITS = 64


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
                    self._codes[shard.id] = folder_format.write_codes(self.index_dir, shard, self.vectors(shard))
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

    def locate(self, path: str, start: float | None = None) -> tuple[Shard, int, dict] | None:
        """Shard, row and record of an indexed video (`path` relative to the root, as stored; `start`: the row of the
        window starting there, None: the file's first row), or None.

        Costs, per shard, a binary search in its memory-mapped path lookup and, where the key matches, one record line
        read: the other records are not read.
        """
        return self._following(self._locate, path, start)

    def _locate(self, path: str, start: float | None = None) -> tuple[Shard, int, dict] | None:
        key = path_key(path)
        for shard in self.manifest.shards:
            keys, rows, offsets = self._path_lookup(shard)
            for position in range(int(np.searchsorted(keys, key, "left")), int(np.searchsorted(keys, key, "right"))):
                record = self._record_at(shard, int(offsets[position]))
                if record.get("path") == path and (start is None or record_span(record)[0] == start):
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
                folder_format.write_npy(path, lookup)
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
               chunk_rows: int | None = None, filter: SearchFilter | None = None) -> list[list["Hit"]]:
        """Exact top-k of `scale * queries @ vectors.T` over the whole index (or the rows `filter` lets through: those
        are scanned in float32, whatever the backend).

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
            chunk_rows: rows per scan step (default: the backend's own).

        Returns:
            per query, up to `k` [`Hit`]s, best first. Scores are recomputed in float32 for the winners, so every
            backend reports identical scores.

        Raises:
            ValueError: bad queries, `k` or backend.
            IndexFormatError: a damaged shard file (named).
            IndexChangedError: index runs replaced the index twice during the search.
        """
        queries = torch.as_tensor(queries).float().contiguous()
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise ValueError(f"queries must be (num_queries, {self.manifest.dim}), got {tuple(queries.shape)}")
        if not torch.isfinite(queries).all():
            raise ValueError("queries hold non-finite values (NaN or inf)")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        return self._following(self._search, queries, k, scale, backend, chunk_rows, filter)

    def _search(self, queries: torch.Tensor, k: int, scale: float, backend: str,
                chunk_rows: int | None, filter: SearchFilter | None = None) -> list[list["Hit"]]:
        shards = [shard for shard in self.manifest.shards if shard.rows]
        allowed = None
        if filter is not None:
            allowed = np.flatnonzero([filter.matches(record) for shard in shards for record in self.records(shard)])
        k = min(k, self.manifest.num_videos if allowed is None else len(allowed))
        if k == 0:
            return [[] for _ in range(len(queries))]
        if allowed is not None:
            starts = np.cumsum([0] + [shard.rows for shard in shards])
            positions = np.searchsorted(starts, allowed, side="right") - 1
            block = np.concatenate([self.vectors(shards[position])[allowed[positions == position] - starts[position]]
                                    for position in np.unique(positions)])
            local = brute_force_topk([block], queries, k, chunk_rows or 65536)
            return self._hits(shards, queries, allowed[np.asarray(local, dtype=np.int64)], scale)
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


def remove_stale_files(index_dir: Path, manifest: Manifest) -> None:
    """Deletes temporary files of killed runs and shard files the manifest does not name: only plain files directly in
    the index's own folders whose names are the ones this format writes (nothing through a symbolic link, no
    subfolder, no file of another name)."""
    keep = {name for shard in manifest.shards for name in shard.file_names()}
    for folder in (index_dir, index_dir / SHARDS, index_dir / PENDING):
        if folder != index_dir and not own_folder(folder, index_dir):
            continue
        for path in folder.iterdir():
            if path.is_dir() and not path.is_symlink():
                continue
            if path.name.startswith(TMP_PREFIX) or (folder.name == SHARDS and is_shard_file(path.name)
                                                    and path.name not in keep):
                path.unlink(missing_ok=True)


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
    latest = {record["path"]: number for number, (_, _, records, _) in enumerate(chunks) for record in records}
    for number, (_, vectors, records, _) in enumerate(chunks):  # a file committed twice: its latest rows count
        keep = [row for row, record in enumerate(records) if latest[record["path"]] == number]
        moved_vectors.append(vectors[keep])
        moved_records.extend(records[row] for row in keep)

    new_shards = []
    if moved_records:
        merged = np.concatenate(moved_vectors) if moved_vectors else np.zeros((0, manifest.dim), np.float32)
        if not own_folder(index_dir / SHARDS, index_dir):
            (index_dir / SHARDS).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(moved_records), shard_rows):
            rows = min(shard_rows, len(moved_records) - start)
            shard = Shard(id=f"{time.time_ns()}-{uuid.uuid4().hex[:6]}", rows=rows)
            folder_format.write_npy(shard.vectors_path(index_dir), merged[start : start + shard_rows])
            folder_format.write_codes(index_dir, shard, merged[start : start + shard_rows])
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


# ----------------------------------------------------------------------------------------------------------------------
# The folder engine of `index_store.IndexStore`
# ----------------------------------------------------------------------------------------------------------------------


def check_index_location(index_dir: Path) -> None:
    """Raises `IndexFormatError` unless `index_dir` may become (or is) an index: missing, empty, or an index of this
    format by its manifest. Nothing is written before this check, so a folder of the user's is never touched."""
    if not index_dir.is_dir() or Manifest.is_ours(index_dir):
        return
    found = sorted(path.name for path in index_dir.iterdir() if path.name != LOCK)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise IndexFormatError(f"{index_dir}: not a video index (no {MANIFEST} of this format) and not empty "
                               f"({shown}); refusing to write into it: give a new or empty folder as --index")


def remove_index_files(index_dir: Path, manifest: Manifest) -> None:
    """`--overwrite`: deletes what the index wrote (manifest, report, shard files, pending chunks, temporary files),
    nothing else: a file of another name stays where it is."""
    for name in (MANIFEST, REPORT):
        (index_dir / name).unlink(missing_ok=True)
    for folder in (index_dir / SHARDS, index_dir / PENDING):
        if own_folder(folder, index_dir):
            for path in folder.iterdir():
                if path.is_file() and (is_shard_file(path.name) or path.name.startswith(TMP_PREFIX)
                                       or (folder.name == PENDING and path.suffix in (".npy", ".json"))):
                    path.unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when nothing else is in it
    remove_stale_files(index_dir, Manifest.from_meta(manifest.meta))


class FolderIndex(IndexStore):
    """A folder index as an `IndexStore` (see the module docstring).

    Example:
        >>> with FolderIndex.create("my_index", meta) as store:     # holds the folder's lock
        ...     store.add(records, vectors); store.commit(); store.merge()
        >>> FolderIndex.open("my_index").search(queries, k=10, scale=100.0)
    """

    def __init__(self, index_dir: Path, manifest: Manifest | None = None, writer: str | None = None,
                 shard_rows: int = 65536, held: contextlib.ExitStack | None = None):
        self.index_dir, self.location = index_dir, str(index_dir)
        self.writer, self.shard_rows, self._held = writer, shard_rows, held
        self.reader = VideoIndex(index_dir, manifest)
        self._records, self._vectors, self._failed, self._drop = [], [], [], set()
        self._last_located = None

    @classmethod
    def create(cls, location: str, meta: dict, overwrite: bool = False, shard_rows: int = 65536) -> "FolderIndex":
        index_dir = Path(location).resolve()
        if index_dir == Path(meta["video_dir"]).resolve():
            raise IndexFormatError(f"{index_dir}: is the folder of videos itself; give another folder as --index")
        check_index_location(index_dir)
        held = contextlib.ExitStack()
        try:
            held.enter_context(index_lock(index_dir))
            if (index_dir / MANIFEST).exists() and overwrite:
                if not Manifest.is_ours(index_dir):
                    raise IndexFormatError(f"{index_dir / MANIFEST}: not a manifest of this format; refusing to "
                                           "delete anything there")
                remove_index_files(index_dir, Manifest.from_meta(meta))
                logger.info("%s: --overwrite: the index starts over", index_dir)
            if (index_dir / MANIFEST).exists():
                manifest = Manifest.load(index_dir)
                check_meta(manifest.meta, meta, str(index_dir))
            else:
                manifest = Manifest.from_meta(meta)
                manifest.save(index_dir)
            remove_stale_files(index_dir, manifest)
            manifest = commit(index_dir, manifest, set(), shard_rows)  # what a killed run left
        except BaseException:
            held.close()
            raise
        return cls(index_dir, manifest, writer="r0", shard_rows=shard_rows, held=held)

    @classmethod
    def open(cls, location: str, writer: str | None = None) -> "FolderIndex":
        index_dir = Path(location)
        return cls(index_dir, Manifest.load(index_dir) if writer else None, writer=writer)

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    # -- what is stored --------------------------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        self.reader.refresh()
        return self.reader.manifest

    @property
    def meta(self) -> dict:
        return self.manifest.meta

    def files(self) -> dict[str, tuple[int, int]]:
        return {record["path"]: (record["size"], record["mtime_ns"]) for _, _, record in self.reader.all_records()}

    def __len__(self) -> int:
        return len(self.reader)

    def _located(self, path: str, start: float | None) -> tuple[Shard, int, dict] | None:
        """`VideoIndex.locate`, remembered for the last path (a query by example asks for its record, then its
        vector: one record read)."""
        self.reader.refresh()
        key = (path, start, id(self.reader.manifest))
        if self._last_located is None or self._last_located[0] != key:
            self._last_located = (key, self.reader.locate(path, start))
        return self._last_located[1]

    def record(self, path: str, start: float | None = None) -> dict | None:
        found = self._located(path, start)
        return None if found is None else found[2]

    def vector(self, path: str, start: float | None = None) -> np.ndarray | None:
        found = self._located(path, start)
        return None if found is None else np.array(self.reader.vectors(found[0])[found[1]])

    # -- writing ---------------------------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.writer is None:
            raise IndexWriteError(f"{self.index_dir}: opened for queries (open it with writer=NAME, or create it)")

    def add(self, records: Sequence[dict], vectors: np.ndarray) -> None:
        self._writable()
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(records), -1)
        if vectors.shape[1] != self.reader.manifest.dim or not np.isfinite(vectors).all():
            raise ValueError(f"vectors must be finite (rows, {self.reader.manifest.dim}), got {vectors.shape}")
        self._records.extend(dict(record) for record in records)
        self._vectors.append(vectors)

    def remove(self, paths: Iterable[str]) -> None:
        self._writable()
        self._drop.update(paths)

    def set_failed(self, items: Sequence[dict]) -> None:
        self._writable()
        self._failed.extend(dict(item) for item in items)

    def commit(self) -> None:
        """Writes what was added and failed as one pending chunk (removals are applied by `merge`)."""
        if self._records or self._failed:
            vectors = np.concatenate(self._vectors) if self._vectors else np.zeros((0, self.reader.manifest.dim))
            write_pending_chunk(self.index_dir, vectors, self._records, self._failed, self.writer)
        self._records, self._vectors, self._failed = [], [], []

    def merge(self) -> None:
        if self._held is None:
            raise IndexWriteError(f"{self.index_dir}: only the run that holds the index (create) merges it")
        self.commit()
        manifest = commit(self.index_dir, Manifest.load(self.index_dir), self._drop, self.shard_rows)
        manifest.save(self.index_dir)
        self._drop = set()
        self.reader = VideoIndex(self.index_dir, manifest)

    def write_report(self, report: dict) -> None:
        write_json(self.index_dir / REPORT, report)

    # -- queries ---------------------------------------------------------------------------------------------------

    def search(self, queries, k: int, filter: SearchFilter | None = None, scale: float = 1.0,
               backend: str = "auto") -> list[list[Hit]]:
        return self.reader.search(torch.as_tensor(queries), k=k, scale=scale, backend=backend, filter=filter)


__all__ = ["BACKENDS", "FolderIndex", "VideoIndex", "brute_force_topk", "commit", "faiss_available", "faiss_topk",
           "index_lock"]
