# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Index a folder of videos with a CLIP2Video model and search it by text or by example video.

    python search_videos.py index VIDEO_DIR --model MODEL --index INDEX [--bf16] [--batch_size 8] [--overwrite]
    python search_videos.py index VIDEO_DIR --model MODEL --index INDEX --window_seconds 4 --window_stride 2
    python search_videos.py query INDEX "a red square moves from left to right" -k 10 [--json] [--html OUT.html]
    python search_videos.py query INDEX --video clip.mp4 -k 10 [--per_video 2] [--no_merge]
    accelerate launch search_videos.py index VIDEO_DIR --model MODEL --index INDEX   # shards across processes
    python app.py INDEX [--model MODEL] [--port 7860]   # the web app and its HTTP API, over the same index

MODEL is a Hub id or a local folder with a CLIP2Video model and its processor, e.g. the output of `run_retrieval.py`
or of `convert_original_checkpoint.py`; code stored next to it runs only with `--trust_remote_code` (as transformers).
INDEX is a folder (`folder_index`, the default engine) or a Milvus location (`*.db`, `http://host:19530`): the
commands go through `index_store`, whatever the engine.

Exactness: `get_text_features` / `get_video_features` are the model's retrieval vectors, and
`logit_scale.exp() * text @ video.T` is exactly `forward(...).logits_per_text`. The index stores the float32 video
vectors, so a text query's score for a video is the model's logit for that (caption, video) pair. Video-by-example
queries use the same formula with the query video's vector in place of the caption's.

Search by example: a `--video` file that is in a whole-video index, unchanged (same size and mtime as recorded), is not
encoded again: its stored vector is the query. The path may be given relative to the working directory, absolute, or
through symlinks (`index_relative_paths`).

Timed windows (`index --window_seconds W --window_stride S`): one row per window `[start, end)` of each video. A query
returns moments (`path`, `start`, `end`, `score`), best first: windows of one video are merged into moments by
`merge_moments` (temporal non-maximum suppression: a window that overlaps or touches the best window of a moment and
scores within 5 % of it joins it, a window whose IoU with a moment reaches `NMS_IOU` = 0.3 is suppressed); `--no_merge` returns the raw
windows, `--per_video N` caps the moments of one file.

A hit whose file was deleted since the index run is not shown (the log says how many were left out: run `index`
again); files changed since are shown with their stored score.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from transformers import HfArgumentParser

import report_clip2video as report
from index_engines import is_milvus_location, open_index
from index_store import Hit, IndexStore, SearchFilter, VideoIndexError, check_model
from loading_clip2video import LoadedModel, ModelLoadError, load_model
from utils_clip2video import ModelSourceError, check_at_least
from video_indexing import IndexSettings, build_index, read_video


logger = logging.getLogger("search_videos")

#: IoU at or above which a window is suppressed by a better moment of the same video (`merge_moments`).
NMS_IOU = 0.3
#: A window next to a moment's best window joins the moment when its score is within this share of the best's.
MERGE_WITHIN = 0.05


# ----------------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------------


def _positive_seconds(arguments, *names: str) -> None:
    for name in names:
        value = getattr(arguments, name)
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"--{name} must be a number of seconds > 0, got {value!r}")


def _json_object(text: str | None, option: str) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--{option} must be a JSON object ({error}), got {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--{option} must be a JSON object, got {text!r}")
    return value


@dataclass(kw_only=True)
class MilvusArguments:
    """Options of a Milvus location (`--index videos.db` or `http://host:19530`), spelled as pymilvus spells them;
    given with a folder index they are an error."""

    token: str | None = field(default=None, metadata={"help": (
        "Milvus: `user:password` or an API key (default: the MILVUS_TOKEN environment variable).")})
    db_name: str | None = field(default=None, metadata={"help": "Milvus: database (default: the server's default)."})
    collection_name: str | None = field(default=None, metadata={"help": "Milvus: collection (default: videos)."})
    milvus_search_params: str | None = field(default=None, metadata={"help": (
        'Milvus: search parameters of the vector index, as JSON (e.g. \'{"ef": 128}\' for HNSW, '
        '\'{"nprobe": 32}\' for IVF_*).')})

    #: The options above that only a Milvus location takes (checked in `_check_milvus_options`).
    MILVUS_ONLY = ("token", "db_name", "collection_name", "milvus_search_params")

    def _check_milvus_options(self, location: str, names: Sequence[str]) -> None:
        if not is_milvus_location(location):
            given = [name for name in names if getattr(self, name) is not None]
            if given:
                raise ValueError(f"--{given[0]} is an option of a Milvus location (*.db, http://...), and "
                                 f"{location} is a folder index")

    def open_options(self, location: str) -> dict:
        """Keyword arguments of `open_index` for `location`: the Milvus options, none for a folder index.

        Raises:
            ValueError: a Milvus option given with a folder index, or a `--milvus_search_params` that is not JSON.
        """
        self._check_milvus_options(location, self.MILVUS_ONLY)
        return self.engine_options() if is_milvus_location(location) else {}

    def engine_options(self) -> dict:
        """Keyword arguments of `open_index` for a Milvus location (`open_options` for any location)."""
        return {"token": self.token, "db_name": self.db_name, "collection_name": self.collection_name,
                "search_params": _json_object(self.milvus_search_params, "milvus_search_params")}


@dataclass(kw_only=True)
class IndexArguments(MilvusArguments):
    """Arguments of `search_videos.py index VIDEO_DIR --model MODEL --index INDEX`; bad values raise ValueError
    naming the option."""

    video_dir: str | None = field(default=None, metadata={
        "help": "Folder of videos (searched recursively); also accepted as the first positional argument."})
    model: str = field(metadata={"help": "Hub id or local folder of a CLIP2Video model with its processor."})
    index: str = field(metadata={"help": (
        "Index location: a folder (created if missing, updated incrementally otherwise) or a Milvus location "
        "(*.db file, http://host:19530).")})
    batch_size: int = field(default=8, metadata={"help": "Videos (or windows) per forward pass."})
    num_workers: int = field(default=2, metadata={"help": "DataLoader processes decoding videos (0: in-process)."})
    bf16: bool = field(default=False, metadata={"help": "Encode under bfloat16 autocast (recorded in the index)."})
    commit_every: int = field(default=256, metadata={
        "help": "Write encoded vectors to disk every N videos (a killed run loses at most this much work)."})
    shard_rows: int = field(default=65536, metadata={"help": "Maximum rows per shard file (folder index)."})
    retry_failed: bool = field(default=False, metadata={"help": "Try again the unreadable videos that did not change."})
    overwrite: bool = field(default=False, metadata={"help": (
        "Start the index over (another model, other windows): removes what the index wrote, nothing else.")})
    window_seconds: float | None = field(default=None, metadata={"help": (
        "Store one vector per window of this many seconds (default: one vector per video).")})
    window_stride: float | None = field(default=None, metadata={"help": (
        "Seconds from one window's start to the next's (default: --window_seconds, windows side by side).")})
    trust_remote_code: bool = field(default=False, metadata={"help": (
        "Run the model folder's own code (AutoModel/AutoProcessor with trust_remote_code=True); off: this "
        "repository's classes load the weights.")})
    milvus_index_type: str | None = field(default=None, metadata={"help": (
        "Milvus: vector index type, inner product: FLAT (exact, the default), HNSW, HNSW_SQ, IVF_FLAT, IVF_SQ8; on a "
        "server also IVF_PQ, DISKANN, SCANN. An existing collection gets its index rebuilt (nothing is encoded "
        "again).")})
    milvus_index_params: str | None = field(default=None, metadata={"help": (
        'Milvus: build parameters of the vector index, as JSON (e.g. \'{"M": 32, "efConstruction": 256}\').')})
    do_moment_eval: bool = field(default=False, metadata={"help": (
        "After indexing (with --window_seconds), score every caption of --annotations against its ground-truth span "
        "(moment_eval.py: in its own video and in the whole collection) and print the metrics as JSON.")})
    annotations: str | None = field(default=None, metadata={"help": (
        "Timestamped captions for --do_moment_eval: Charades-STA text (VIDEO START END##sentence), JSON lines "
        "(video, start, end, caption; or QVHighlights' vid, query, relevant_windows) or ActivityNet Captions json.")})

    def __post_init__(self):
        if not self.video_dir:
            raise ValueError("give the folder of videos to index (VIDEO_DIR)")
        check_at_least(self, 1, "batch_size", "commit_every", "shard_rows")
        check_at_least(self, 0, "num_workers")
        _positive_seconds(self, "window_seconds", "window_stride")
        if self.window_stride is not None and self.window_seconds is None:
            raise ValueError("--window_stride needs --window_seconds")
        if self.window_seconds is not None and self.window_stride is None:
            self.window_stride = self.window_seconds
        if self.do_moment_eval and (self.annotations is None or self.window_seconds is None):
            raise ValueError("--do_moment_eval needs --annotations FILE and --window_seconds")
        self._check_milvus_options(self.index, self.MILVUS_ONLY + ("milvus_index_type", "milvus_index_params"))
        if is_milvus_location(self.index):
            from milvus_index import check_index_type

            check_index_type(self.index, self.milvus_index_type)
            _json_object(self.milvus_index_params, "milvus_index_params")

    def settings(self) -> IndexSettings:
        open_options = self.engine_options() if is_milvus_location(self.index) else {}
        engine_options = {**open_options, "index_type": self.milvus_index_type,
                          "index_params": _json_object(self.milvus_index_params, "milvus_index_params")} \
            if is_milvus_location(self.index) else {"shard_rows": self.shard_rows}
        return IndexSettings(
            video_dir=self.video_dir, model=self.model, index=self.index, batch_size=self.batch_size,
            num_workers=self.num_workers, bf16=self.bf16, commit_every=self.commit_every,
            retry_failed=self.retry_failed, overwrite=self.overwrite, trust_remote_code=self.trust_remote_code,
            window_seconds=self.window_seconds, window_stride=self.window_stride, engine_options=engine_options,
            open_options=open_options)


@dataclass(kw_only=True)
class QueryArguments(MilvusArguments):
    """Arguments of `search_videos.py query INDEX "caption"` (or `--video PATH`); bad values raise ValueError naming
    the option."""

    index: str | None = field(default=None, metadata={
        "help": "Index made by `search_videos.py index`; also accepted as the first positional argument."})
    text: str | None = field(default=None, metadata={
        "help": "Caption to search for; also accepted as the second positional argument."})
    video: str | None = field(default=None, metadata={
        "help": "Search by example: a video file (an indexed, unchanged one is not encoded again)."})
    k: int = field(default=10, metadata={"help": "Number of hits (moments, with windows).", "aliases": ["-k"]})
    per_video: int | None = field(default=None, metadata={"help": "At most this many moments of one video."})
    no_merge: bool = field(default=False, metadata={
        "help": "Windows as they are stored, each with its own score (no merging into moments)."})
    model: str | None = field(default=None, metadata={
        "help": "Model to encode the query (default: the one recorded in the index); refused if it is not the model "
                "that built the index."})
    trust_remote_code: bool = field(default=False, metadata={"help": (
        "Run the model folder's own code (also for the model an index records: off, an index handed over by someone "
        "else runs nothing of theirs).")})
    backend: Literal["auto", "int8", "flat", "faiss"] = field(default="auto", metadata={"help": (
        "Folder index: how the exact top k is found (every backend gives the same hits): auto (the faster of flat and "
        "int8 on this CPU, measured at first use; flat below 32,768 rows), int8 (int8 scan with an error bound + float32 rescoring), flat (float32 scan) or faiss.")})
    path_prefix: str | None = field(default=None, metadata={"help": "Only videos under this folder of the index."})
    min_duration: float | None = field(default=None, metadata={"help": "Only videos of at least this many seconds."})
    max_duration: float | None = field(default=None, metadata={"help": "Only videos of at most this many seconds."})
    json: bool = field(default=False, metadata={"help": "Print the hits as JSON (path, start, end, score, ...)."})
    html: str | None = field(default=None, metadata={
        "help": "Write an HTML gallery (each hit plays from its start, with a strip of its frames)."})
    thumbnails: int = field(default=6, metadata={"help": "Frames per thumbnail strip in --html."})

    def __post_init__(self):
        if not self.index:
            raise ValueError("give the index (INDEX)")
        if (self.text is None) == (self.video is None):
            raise ValueError("give a caption or --video PATH (exactly one)")
        check_at_least(self, 1, "k", "thumbnails")
        if self.per_video is not None:
            check_at_least(self, 1, "per_video")
        self._check_milvus_options(self.index, self.MILVUS_ONLY)
        _json_object(self.milvus_search_params, "milvus_search_params")
        if self.html is not None and Path(self.html).is_dir():
            raise ValueError(f"--html {self.html} is a folder; give the name of the page to write (e.g. "
                             f"{Path(self.html) / 'hits.html'})")
        self.search_filter()

    def search_filter(self) -> SearchFilter | None:
        if self.path_prefix is None and self.min_duration is None and self.max_duration is None:
            return None
        try:
            return SearchFilter(self.path_prefix, self.min_duration, self.max_duration)
        except ValueError as error:
            raise ValueError(f"--{error}") from None


# ----------------------------------------------------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------------------------------------------------


def index_relative_paths(video: str | os.PathLike, root: Path) -> list[str]:
    """The forms an example video's path may have among the index's records (relative to the indexed `root`, forward
    slashes, as the scan stores them), most literal first: from its absolute path with `.` and `..` removed (a
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


def indexed_vector(store: IndexStore, video: str | os.PathLike) -> torch.Tensor | None:
    """`(1, dim)` stored vector of an example video that is in a whole-video index and unchanged since, or None.

    The file counts as unchanged when its size and mtime are those recorded at indexing, the rule index runs use to
    decide what to encode again; a file edited since (and not re-indexed yet) returns None, so that it is encoded anew
    rather than searched with the vector of its old contents. In an index of windows a video has no one vector: None.
    """
    if store.meta.get("window_seconds") is not None:
        return None
    stat = os.stat(video)
    for relative in index_relative_paths(video, Path(store.meta["video_dir"])):
        record = store.record(relative)
        if record is None:
            continue
        if (record["size"], record["mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
            logger.info("%s changed since it was indexed (size or mtime differ): encoding it again", video)
            return None
        return torch.from_numpy(store.vector(relative))[None]
    return None


def encode_query(loaded: LoadedModel, store: IndexStore, text: str | None, video: str | None) -> torch.Tensor:
    """`(1, dim)` query vector: a caption's, or a video's (its stored vector when the file is indexed and unchanged,
    see `indexed_vector`; otherwise the model encodes it, decoded as indexing decodes).

    Raises:
        FileNotFoundError: `video` is not a file.
    """
    if text is not None:
        return loaded.encode_text([text])
    if not os.path.isfile(video):
        raise FileNotFoundError(f"{video}: no such file")
    stored = indexed_vector(store, video)
    if stored is not None:
        return stored
    video_processor = loaded.processor.video_processor
    frames, _ = read_video(video_processor, os.path.abspath(video))  # VideoDecodeError names the file
    pixel_values, video_mask = video_processor.collate([frames])
    return loaded.encode_videos(pixel_values, video_mask)


def _iou(first: tuple[float, float], second: tuple[float, float]) -> float:
    overlap = min(first[1], second[1]) - max(first[0], second[0])
    union = max(first[1], second[1]) - min(first[0], second[0])
    return max(overlap, 0.0) / union if union > 0 else 0.0


def merge_moments(windows: Sequence[Hit], k: int, per_video: int | None = None, merge: bool = True) -> list[Hit]:
    """Moments out of window hits (best first): temporal non-maximum suppression per video.

    Each window, best first, either joins a moment of its video whose best window it overlaps or touches and whose
    score it nearly reaches (within `MERGE_WITHIN`, 5 %, of it: both score high; the moment then spans both and keeps
    its best window's score), is suppressed when its IoU with a moment of its video is `NMS_IOU` (0.3) or more, or
    starts a new moment. `merge=False` keeps every window as it is (each with its own
    score). At most `per_video` moments of one file, `k` in all.
    """
    moments: list[Hit] = []
    seeds: dict[int, tuple[float, float]] = {}
    per_file: dict[str, int] = {}
    for window in sorted(windows, key=lambda hit: -hit.score):
        span = (window.start, window.end if window.end is not None else window.start)
        mine = [moment for moment in moments if moment.path == window.path]
        if merge:
            joined = next((moment for moment in mine if seeds[id(moment)][0] <= span[1]
                           and span[0] <= seeds[id(moment)][1]
                           and window.score >= moment.score - MERGE_WITHIN * abs(moment.score)), None)
            if joined is not None:
                joined.start, joined.end = min(joined.start, span[0]), max(joined.end, span[1])
                continue
            if any(_iou(span, (moment.start, moment.end)) >= NMS_IOU for moment in mine):
                continue
        if per_video is not None and per_file.get(window.path, 0) >= per_video:
            continue
        moment = Hit(path=window.path, score=window.score, record=window.record, start=span[0], end=span[1])
        moments.append(moment)
        seeds[id(moment)] = span
        per_file[window.path] = per_file.get(window.path, 0) + 1
    return moments[:k]


def _shown(hits: list[Hit], missing: set[str] | None = None) -> list[Hit]:
    """The hits whose file still exists (a deleted file is left out, counted in the log and added to `missing`)."""
    present = [hit for hit in hits if os.path.exists(hit.path)]
    if len(present) < len(hits):
        logger.warning("%d hit(s) left out: their files were deleted since the index run (run `index` again)",
                       len(hits) - len(present))
        if missing is not None:
            missing.update(hit.path for hit in hits if not os.path.exists(hit.path))
    return present


def ranked(store: IndexStore, query: torch.Tensor, k: int, scale: float, per_video: int | None = None,
           merge: bool = True, filter: SearchFilter | None = None, backend: str = "auto",
           missing: set[str] | None = None) -> list[Hit]:
    """The top `k` hits (moments, with windows) of one query vector, deleted files left out (their paths added to
    `missing` when given): asks the store for more rows until `k` hits remain or the index is exhausted. Rows of equal
    score are taken in (path, start) order, so that every engine (whatever order its search leaves ties in) merges the
    same moments."""
    options = {} if backend == "auto" else {"backend": backend}
    windows = store.meta.get("window_seconds") is not None
    wanted = k * 4 if windows else k
    while True:
        rows = store.search(query, k=min(wanted, max(len(store), 1)), filter=filter, scale=scale, **options)[0]
        present = sorted(_shown(rows, missing), key=lambda hit: (-hit.score, hit.record["path"], hit.start))
        hits = merge_moments(present, k, per_video, merge) if windows or per_video else present[:k]
        if len(hits) >= k or len(rows) < wanted or wanted >= len(store):
            return hits
        wanted *= 2


def search(index: str | os.PathLike | IndexStore, text: str | None = None, video: str | None = None, k: int = 10,
           per_video: int | None = None, merge: bool = True, filter: SearchFilter | None = None,
           model: str | LoadedModel | None = None, backend: str = "auto", trust_remote_code: bool = False,
           missing: set[str] | None = None) -> list[Hit]:
    """Python API: the top `k` videos (or moments, `Hit.start` / `Hit.end`) of an index for a caption or an example
    video. Hits whose files were deleted since the index run are left out; pass a set as `missing` to get their paths.

    Example:
        >>> for hit in search("my_index", text="a dog catches a frisbee", k=5):
        ...     print(f"{hit.score:8.3f}  {hit.path}  {hit.start:.1f}-{hit.end:.1f} s")
    """
    if (text is None) == (video is None):
        raise ValueError("give exactly one of `text` and `video`")
    store = open_index(index if isinstance(index, IndexStore) else os.fspath(index))
    if not isinstance(model, LoadedModel):
        model = load_model(model or store.meta["model"]["name_or_path"], bf16=store.meta["model"].get("bf16", False),
                           trust_remote_code=trust_remote_code)
    check_model(store.meta, model.identity, store.location)
    query = encode_query(model, store, text, video)
    return ranked(store, query, k, model.logit_scale, per_video, merge, filter, backend, missing)


def write_gallery(path: str, query: str, hits: list[Hit], processor, num_frames: int, windows: bool = False) -> None:
    """A self-contained HTML page (`report_clip2video`): one row per hit with rank, score, path (a link to the file),
    its times, a player that starts at the hit (`#t=start,end`) and a strip of `num_frames` frames of the hit's span,
    decoded as indexing decodes."""
    rows = []
    for rank, hit in enumerate(hits, 1):
        span = (hit.start, hit.end) if windows and hit.end is not None else None
        try:
            frames, _ = read_video(processor.video_processor, hit.path, span=span, frame_sampling="uniform",
                                   num_frames=num_frames)
            image = report.data_uri(report.thumbnail_strip(frames, height=72, count=num_frames))
        except Exception as error:  # noqa: BLE001 - a preview is optional; the hit is still listed
            logger.warning("no thumbnails for %s: %s", report.printable(hit.path), error)
            image = None
        duration = hit.record.get("duration")
        times = f"{hit.start:.2f}-{hit.end:.2f} s of " if span else ""
        fragment = f"#t={hit.start:g},{hit.end:g}" if span else ""
        rows.append([report.Cell(str(rank)), report.Cell(f"{hit.score:.4f}"),
                     report.Cell(hit.path, link=Path(hit.path).as_uri() + fragment,
                                 note=times + ("" if duration is None else f"{duration:.2f} s, ")
                                 + f"{hit.record.get('frames')} frames used", video=Path(hit.path).as_uri() + fragment),
                     report.Cell(image=image, text="" if image else "no preview")])
    report.write_page(path, report.render_page(query, rows, columns=("#", "score", "video", "frames")))


def run_query(args: QueryArguments) -> list[Hit]:
    store = open_index(args.index, **args.open_options(args.index))
    try:
        loaded = load_model(args.model or store.meta["model"]["name_or_path"],
                            bf16=store.meta["model"].get("bf16", False), trust_remote_code=args.trust_remote_code)
    except ModelSourceError as error:
        if args.model:
            raise
        raise ModelSourceError(f"{error} (the model recorded in the index {args.index}: pass --model)") from None
    hits = search(store, text=args.text, video=args.video, k=args.k, per_video=args.per_video,
                  merge=not args.no_merge, filter=args.search_filter(), model=loaded, backend=args.backend)
    query = args.text if args.text is not None else f"video: {args.video}"
    windows = store.meta.get("window_seconds") is not None
    if args.json:
        print(json.dumps({"query": query, "index": store.location, "model": loaded.fingerprint,
                          "hits": [hit.to_dict(rank) for rank, hit in enumerate(hits, 1)]}, indent=1))
    else:
        for rank, hit in enumerate(hits, 1):  # file names are untrusted: no control character reaches the terminal
            times = f"  {hit.start:8.2f} {hit.end:8.2f}" if windows and hit.end is not None else ""
            print(f"{rank:3d}  {hit.score:9.4f}  {report.printable(hit.path)}{times}")
    if args.html:
        write_gallery(args.html, query, hits, loaded.processor, args.thumbnails, windows)
        logger.info("gallery written to %s", args.html)
    return hits


def run_moment_eval(args: IndexArguments) -> dict:
    """`index ... --do_moment_eval`: the moment metrics of the annotated captions (`moment_eval`), printed as JSON."""
    from accelerate import PartialState

    from moment_eval import evaluate_moments, read_annotations

    if not PartialState().is_main_process:
        return {}
    queries = read_annotations(args.annotations)
    store = open_index(args.index, **args.settings().open_options)
    loaded = load_model(args.model, bf16=args.bf16, trust_remote_code=args.trust_remote_code)
    check_model(store.meta, loaded.identity, store.location)
    metrics = evaluate_moments(store, loaded, queries, ranked=ranked)
    print(json.dumps(metrics, indent=1))
    for setting in ("in_video", "in_collection"):
        logger.info("moments %s: %s", setting, ", ".join(f"{name} {value:.1f}" for name, value in
                                                          metrics[setting].items()))
    return metrics


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


#: Per command: its arguments and the fields also given as positional arguments, in order.
COMMANDS = {"index": (IndexArguments, ("video_dir",), "Create or update an index of a video folder."),
            "query": (QueryArguments, ("index", "text"), "Search an index by text or by example video.")}


def build_parser() -> argparse.ArgumentParser:
    """The `index` / `query` command line: each command's options from its dataclass (`HfArgumentParser`), plus its
    positional spellings (`index VIDEO_DIR`, `query INDEX "caption"`), stored under `<field>_positional`."""
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
            report = build_index(arguments.settings())
            if arguments.do_moment_eval and report is not None:
                run_moment_eval(arguments)
        else:
            run_query(arguments)
    except (VideoIndexError, ModelLoadError, ValueError, FileNotFoundError) as error:
        logger.error("%s: %s", type(error).__name__, error)
        return 1
    return 0


__all__ = ["Hit", "IndexArguments", "QueryArguments", "load_model", "main", "merge_moments", "search"]


if __name__ == "__main__":
    sys.exit(main())
