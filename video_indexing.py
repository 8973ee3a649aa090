# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Indexing a folder of videos into an `index_store.IndexStore`: scan, plan (incremental on path + size + mtime),
decode (one route, shared with queries by example and the gallery), encode, commit; across processes with accelerate.

Multi-process runs (`accelerate launch`): the processes check in with each other (accelerate's `gather_object` /
`broadcast_object_list`) after loading the model, after the main process has opened the index and planned the work,
after every batch and after the merge. A failure on any process (a model that is not the index's, an index locked by
another run, unwritable or malformed, an error while encoding) stops every process within one batch; every process
logs the reason: the failed one its error, the others `RunAbortedError: process R of N failed: <error>`. The processes
stopped that way commit what they had encoded, which the next run keeps.

Timed windows (`window_seconds`, `window_stride`): a video gives one row per window `[start, end)` (seconds), its
frames chosen by the processor's sampling inside the window; the file is decoded once for all its windows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from datasets_scripts import VIDEO_EXTENSIONS
from frame_sampling import frame_times, timeline_duration
from index_engines import create_index, open_index
from index_store import IndexStore, RunAbortedError, make_record, new_meta
from loading_clip2video import LoadedModel, load_model


logger = logging.getLogger("search_videos")


# ----------------------------------------------------------------------------------------------------------------------
# Video folder scan
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFile:
    """One video of the folder: `path` relative to the root (forward slashes), size in bytes, mtime in ns."""

    path: str
    size: int
    mtime_ns: int

    def signature(self) -> tuple[int, int]:
        return self.size, self.mtime_ns


def scan_videos(root: Path, skip: Path | None = None) -> list[VideoFile]:
    """Every video file under `root` (recursively; hidden files and folders, and the folder `skip`, left out), sorted
    by path."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".")
                               and (skip is None or Path(folder, name).resolve() != skip))
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


# ----------------------------------------------------------------------------------------------------------------------
# Decoding: the one route of indexing, queries by example and the gallery
# ----------------------------------------------------------------------------------------------------------------------


def read_video(video_processor, path: str, span: tuple[float, float] | None = None, **options) -> tuple[list,
                                                                                                       float | None]:
    """The frames the processor chooses from one video file (before the transform; inside `span` seconds when given)
    and the video's duration in seconds (`video_duration`: from the frames' times, which the original sampling reads
    anyway), from the same decode (the duration is None for a span, whose video was measured when it was indexed).

    Raises:
        VideoDecodeError: naming the file and the reason.
    """
    if span is not None:
        return [np.asarray(frame) for frame in video_processor.load_frames(path, span=span, **options)], None
    options = video_processor._with_defaults(options)
    sample = None
    if options["do_sample_frames"]:
        sample = partial(video_processor.sample_frames, **{name: value for name, value in options.items()
                                                           if name != "spans"}, rng=np.random.default_rng(options["seed"]))
    frames, metadata = video_processor._load_video(path, sample, options)
    return [np.asarray(frame) for frame in frames], video_duration(metadata)


def video_duration(metadata) -> float | None:
    """Seconds from a decoded video's start to the end of its last frame, from the frames' own times, as its windows
    are laid out (a variable-frame-rate file's frame count over its guessed rate is not its length); from the count
    and the rate when there are no times; None when unknown."""
    timeline = metadata.read_timeline() if metadata.read_timeline is not None else None
    if timeline is not None and timeline.fps and math.isfinite(timeline.fps) and timeline.fps > 0:
        timestamps, durations, fps = frame_times(timeline, metadata.name)
        return round(timeline_duration(timestamps, durations, fps, timeline.total_num_frames), 3)
    if metadata.fps and metadata.total_num_frames and math.isfinite(metadata.fps):
        return round(metadata.total_num_frames / metadata.fps, 3)
    return None


def read_windows(video_processor, path: str, window_seconds: float, window_stride: float) -> tuple[list, np.ndarray]:
    """Per window of one video its frames (the processor's choice inside the window, resized to the model's input
    size, uint8) and the windows `(n, 2)` in seconds, the last ending at the video's end; the file is decoded once for
    all of them (the processor's `load_windows`)."""
    frames, spans = video_processor.load_windows(path, window_seconds=window_seconds, window_stride=window_stride)
    return [list(window) for window in frames], np.asarray(spans, dtype=np.float64).reshape(-1, 2)


class VideoFolderDataset(torch.utils.data.Dataset):
    """Decodes videos one by one (`read_video` / `read_windows`); an unreadable video gives an item with `error` set,
    not an exception, so that one bad file never stops a run.

    An item holds `windows` (per window its chosen frames, uint8; a whole-video index has one window, the whole
    video), `spans` `(windows, 2)` seconds and the video's `duration`; `to_model_inputs` transforms them."""

    def __init__(self, root: Path, videos: Sequence[VideoFile], processor, window_seconds: float | None = None,
                 window_stride: float | None = None):
        self.root, self.videos = root, list(videos)
        self.window_seconds, self.window_stride = window_seconds, window_stride
        self.video_processor = processor.video_processor

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, position: int) -> dict:
        video = self.videos[position]
        path = str(self.root / video.path)
        try:
            if self.window_seconds is None:
                frames, duration = read_video(self.video_processor, path)
                windows, spans = [frames], np.array([[0.0, duration if duration is not None else math.nan]])
            else:
                windows, spans = read_windows(self.video_processor, path, self.window_seconds, self.window_stride)
                duration = float(spans[-1, 1])
        except Exception as error:  # VideoDecodeError and anything a decoder may raise on a broken file
            reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            return {"video": video, "error": reason}
        return {"video": video, "windows": windows, "spans": spans, "duration": duration}


def _collate(items: list[dict]) -> list[dict]:
    return items


def encode_batch(loaded: LoadedModel, items: list[dict]) -> torch.Tensor:
    """Retrieval vectors `(windows of all items, dim)` of decoded items (one forward pass)."""
    pixel_values = torch.cat([item["pixel_values"] for item in items])
    video_mask = torch.cat([item["video_mask"] for item in items])
    return loaded.encode_videos(pixel_values, video_mask)


def forward_passes(items: list[dict], rows: int, video_processor) -> Iterator[list[dict]]:
    """`items` as model inputs (`pixel_values`, `video_mask`: the processor's transform of their frames), in groups of
    at most `rows` windows (a video of many windows is cut into parts: only one group is transformed at a time)."""
    group, size = [], 0
    for item in items:
        for start in range(0, len(item["windows"]), rows):
            windows = item["windows"][start : start + rows]
            if size + len(windows) > rows and group:
                yield group
                group, size = [], 0
            pixel_values, video_mask = video_processor.collate(windows)
            group.append({"video": item["video"], "pixel_values": pixel_values, "video_mask": video_mask})
            size += len(windows)
    if group:
        yield group


# ----------------------------------------------------------------------------------------------------------------------
# Coordination of the processes
# ----------------------------------------------------------------------------------------------------------------------


class ProcessAgreement:
    """Keeps the processes of a multi-process index run in step, so that a failure on any of them stops all of them.

    A process that fails must not simply leave: the others would wait for it in their next collective until the
    process group times out. Instead, at fixed points every process calls `check` with the exception it hit, or None;
    the outcomes are exchanged (accelerate's `gather_object`) and, if any failed, all raise at once: a failed process
    its own exception, the others `RunAbortedError` naming the failed process and its error. Every process makes the
    same calls in the same order. With one process, `check` only re-raises.

    Example:
        >>> agreement = ProcessAgreement(PartialState())
        >>> loaded = agreement.run(load_model, "my_model")         # every process loads; all fail if one fails
        >>> plan = agreement.run_on_main(make_plan, index_dir)     # the main process plans, every process gets it
    """

    def __init__(self, state=None):
        self.process_index = state.process_index if state is not None else 0
        self.num_processes = state.num_processes if state is not None else 1

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def check(self, error: Exception | None = None, value=None) -> list:
        """Collective: exchanges this process's outcome (and a small picklable `value`) with the others'.

        Returns:
            every process's `value`, by process index.

        Raises:
            `error` itself when it is not None; otherwise `RunAbortedError` when another process failed.
        """
        if self.num_processes == 1:
            if error is not None:
                raise error
            return [value]
        from accelerate.utils import gather_object

        outcome = None if error is None else f"{type(error).__name__}: {error}"
        outcomes = self._collective(gather_object, [(outcome, value)])
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
        from accelerate.utils import broadcast_object_list

        return self._collective(broadcast_object_list, [result], 0)[0]

    def _collective(self, operation, *args):
        try:
            return operation(*args)
        except RuntimeError as error:  # gloo/NCCL: a peer died (killed, crashed) or the group timed out
            raise RunAbortedError(f"process {self.process_index} of {self.num_processes} lost contact with the other "
                                  f"processes (did one die?): {error}") from None


# ----------------------------------------------------------------------------------------------------------------------
# One index run
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class IndexSettings:
    """What one index run does (plain values: the command line's `IndexArguments` hands them over)."""

    video_dir: str
    model: str
    index: str
    batch_size: int = 8
    num_workers: int = 2
    bf16: bool = False
    commit_every: int = 256
    retry_failed: bool = False
    overwrite: bool = False
    trust_remote_code: bool = False
    window_seconds: float | None = None
    window_stride: float | None = None
    engine_options: dict = field(default_factory=dict)
    #: What the other processes of a multi-process run pass to `open_index` (a Milvus location's connection).
    open_options: dict = field(default_factory=dict)


@dataclass
class IndexReport:
    """What one index run did (saved as `report.json` by the folder engine's run)."""

    encoded: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[dict] = field(default_factory=list)
    encoded_per_process: list[int] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.encoded} encoded, {self.unchanged} unchanged, {self.removed} removed, "
                f"{len(self.skipped)} unreadable")


@dataclass
class Plan:
    """Work of one index run: videos to encode, indexed paths to remove, and counts for the report."""

    todo: list[VideoFile]
    drop: set[str]
    unchanged: int
    skipped_unchanged: list[dict]


def plan_update(video_dir: Path, store: IndexStore, retry_failed: bool, skip: Path | None = None) -> Plan:
    """Compares the folder with the index on path + size + mtime."""
    on_disk = {video.path: video for video in scan_videos(video_dir, skip)}
    indexed = store.files()
    failed_items = store.meta["failed"]
    failed = {item["path"]: (item["size"], item["mtime_ns"]) for item in failed_items}

    def stale(path: str, signature: tuple[int, int]) -> bool:
        return path not in on_disk or on_disk[path].signature() != signature

    drop = {path for path, signature in [*indexed.items(), *failed.items()] if stale(path, signature)}
    todo, skipped = [], []
    for path, video in on_disk.items():
        if indexed.get(path) == video.signature():
            continue
        if failed.get(path) == video.signature() and not retry_failed:
            skipped.append(next(item for item in failed_items if item["path"] == path))
            continue
        todo.append(video)
    unchanged = len(on_disk) - len(todo) - len(skipped)
    return Plan(todo=todo, drop=drop, unchanged=unchanged, skipped_unchanged=skipped)


def _records_and_failures(items: list[dict], vectors: np.ndarray | None) -> tuple[list[dict], np.ndarray, list[dict]]:
    """Rows to store and failures of one decoded batch (`vectors`: the readable items' windows, in order). A video
    whose vector holds NaN or inf (a model that overflows, e.g. under bf16) is not indexed: it is reported as
    unreadable with that reason, like a video that does not decode."""
    records, keep, failed, row = [], [], [], 0
    for item in items:
        video = item["video"]
        if "error" not in item:
            windows = len(item["spans"])
            if not np.isfinite(vectors[row : row + windows]).all():
                item["error"] = "the model gave a non-finite vector (NaN or inf) for this video"
            else:
                keep.extend(range(row, row + windows))
                records.extend(make_record(video.path, video.size, video.mtime_ns, item["duration"],
                                           len(frames), start, end if math.isfinite(end) else None)
                               for frames, (start, end) in zip(item["windows"], item["spans"].tolist()))
            row += windows
        if "error" in item:
            logger.warning("skipping %s: %s", video.path, item["error"])
            failed.append({"path": video.path, "size": video.size, "mtime_ns": video.mtime_ns,
                           "reason": item["error"]})
    dim = vectors.shape[1] if vectors is not None else 0
    return records, (vectors[keep] if vectors is not None else np.zeros((0, dim), np.float32)), failed


def encode_videos(loaded: LoadedModel, video_dir: Path, videos: Sequence[VideoFile], store: IndexStore,
                  settings: IndexSettings, show_progress: bool = True, agreement: ProcessAgreement | None = None,
                  num_batches: int | None = None) -> tuple[int, list[dict]]:
    """Encodes `videos` in batches into `store`, committing every `settings.commit_every` videos.

    In a multi-process run every process checks in with `agreement` after each batch, `num_batches` times (the largest
    share's number of batches, so that a process with fewer videos keeps checking in until the others are done).

    Returns:
        the number of videos encoded and the records of the unreadable ones (`path`, `size`, `mtime_ns`, `reason`).
    """
    from tqdm.auto import tqdm

    agreement = agreement or ProcessAgreement()
    dataset = VideoFolderDataset(video_dir, videos, loaded.processor, settings.window_seconds, settings.window_stride)
    loader = torch.utils.data.DataLoader(dataset, batch_size=settings.batch_size, num_workers=settings.num_workers,
                                         collate_fn=_collate)
    num_batches = len(loader) if num_batches is None else num_batches
    batches = iter(loader)
    encoded, all_failed, uncommitted = 0, [], 0
    progress = tqdm(total=len(videos), desc="indexing", unit="video", disable=not show_progress)
    try:
        for step in range(num_batches):
            error = None
            try:
                items = next(batches, [])
                good = [item for item in items if "error" not in item]
                vectors = torch.cat([encode_batch(loaded, group) for group in forward_passes(
                    good, settings.batch_size, loaded.processor.video_processor)]).numpy() if good else None
                records, vectors, failed = _records_and_failures(items, vectors)
                if records:
                    store.add(records, vectors)
                store.set_failed(failed)
                encoded += len({record["path"] for record in records})
                all_failed += failed
                uncommitted += len(items)
                progress.update(len(items))
                if uncommitted >= settings.commit_every or step == num_batches - 1:
                    store.commit()
                    uncommitted = 0
            except Exception as caught:
                error = caught
            try:
                agreement.check(error)
            except RunAbortedError:
                _commit_before_stopping(store)
                raise
    finally:
        progress.close()
    return encoded, all_failed


def _commit_before_stopping(store: IndexStore) -> None:
    """`commit` for a process stopped by another's failure: its finished videos need not be encoded again."""
    try:
        store.commit()
    except Exception as error:  # the run is failing anyway; report the first error, not this one
        logger.warning("could not commit the videos encoded before stopping: %s", error)


def _load_indexing_model(settings: IndexSettings, video_dir: Path, device: torch.device) -> LoadedModel:
    """Every process: the model, after checking that there is a folder to index."""
    if not video_dir.is_dir():
        raise FileNotFoundError(f"{video_dir}: no such folder")
    return load_model(settings.model, device=device, bf16=settings.bf16,
                      trust_remote_code=settings.trust_remote_code)


def _open_and_plan(settings: IndexSettings, video_dir: Path, loaded: LoadedModel, held: contextlib.ExitStack,
                   opened: dict) -> Plan:
    """Main process: opens the index for the run (held by `held` until the run ends: merges what killed runs left),
    removes deleted and changed videos, and plans the work."""
    meta = new_meta(str(video_dir), loaded.identity, loaded.dim, settings.window_seconds, settings.window_stride)
    store = held.enter_context(create_index(settings.index, meta, overwrite=settings.overwrite,
                                            **settings.engine_options))
    index_path = Path(settings.index).resolve()
    plan = plan_update(video_dir, store, settings.retry_failed, skip=index_path if index_path.is_dir() else None)
    store.remove(plan.drop)
    store.merge()  # deleted and changed videos out
    opened["store"] = store
    logger.info("%s: %d rows indexed, %d videos to encode, %d removed", store.location, len(store), len(plan.todo),
                len(plan.drop))
    return plan


def _merge_and_report(store: IndexStore, plan: Plan, shares: list[tuple[int, list[dict]]],
                      started: float) -> IndexReport:
    """Main process: makes every process's rows visible and reports the run."""
    store.merge()
    failed = [item for _, share_failed in shares for item in share_failed]
    report = IndexReport(
        encoded=sum(encoded for encoded, _ in shares), unchanged=plan.unchanged,
        removed=len(plan.drop - {video.path for video in plan.todo}),
        skipped=sorted(failed + plan.skipped_unchanged, key=lambda item: item["path"]),
        encoded_per_process=[encoded for encoded, _ in shares], rows=len(store),
        seconds=round(time.perf_counter() - started, 3))
    write_report = getattr(store, "write_report", None)
    if write_report is not None:
        write_report(dataclasses.asdict(report))
    logger.info("%s: %s; %d rows in the index", store.location, report.summary(), len(store))
    for item in report.skipped:
        logger.info("  unreadable: %s (%s)", item["path"], item["reason"])
    return report


def build_index(settings: IndexSettings) -> IndexReport:
    """Creates or updates an index; runs on every process of an `accelerate launch`.

    Steps: every process loads the model; the main process opens the index for the run, merges what killed runs left,
    plans the work and broadcasts it; every process encodes its share (`todo[rank::world_size]`) and commits it; the
    main process merges. The processes check in with each other after each step and after every batch
    (`ProcessAgreement`), so a failure on any process stops every process promptly. The index stays valid: each write
    is atomic and becomes visible only at a merge.

    Returns:
        the run's report, on every process.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # like `Accelerator`, honour `ACCELERATE_USE_CPU` (multi-process CPU runs over gloo)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    agreement = ProcessAgreement(state)
    started = time.perf_counter()
    video_dir = Path(settings.video_dir).resolve()
    with contextlib.ExitStack() as held:  # the main process's hold on the index
        loaded = agreement.run(_load_indexing_model, settings, video_dir, state.device)
        opened = {}
        plan = agreement.run_on_main(_open_and_plan, settings, video_dir, loaded, held, opened)
        if agreement.is_main_process:
            store = opened["store"]
            agreement.run(lambda: None)  # in step with the others' open
        else:
            store = agreement.run(lambda: held.enter_context(open_index(settings.index,
                                                                        writer=f"r{state.process_index}",
                                                                        **settings.open_options)))
        mine = plan.todo[state.process_index :: state.num_processes]
        largest_share = math.ceil(len(plan.todo) / state.num_processes)  # process 0's: every process goes that far
        outcome = encode_videos(loaded, video_dir, mine, store, settings, show_progress=state.is_local_main_process,
                                agreement=agreement, num_batches=math.ceil(largest_share / settings.batch_size))
        shares = agreement.check(value=outcome)  # every process's (videos encoded, unreadable files)
        return agreement.run_on_main(_merge_and_report, store, plan, shares, started)


__all__ = ["IndexReport", "IndexSettings", "ProcessAgreement", "VideoFile", "build_index", "encode_batch",
           "plan_update", "read_video", "read_windows", "scan_videos"]
