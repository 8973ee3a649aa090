# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""The one data path of CLIP2Video: a source of videos and captions -> decoded frames -> batches -> features.

Training, evaluation, feature export (`run_retrieval.py`), prepared frame shards and search indexing
(`search_videos.py`) all read videos through this module, so a new source or format is added once.

Sources (`load_source`): anything `datasets.load_dataset` takes (a packaged builder such as `videofolder`,
`csv`, `json`, `parquet`, `webdataset` with `data_dir` or `data_files`, or a Hub id), a `save_to_disk`
folder, or a prepared-shards folder (`frame_shards`), as a `Dataset` or, streamed, an `IterableDataset`.
`SourceArguments` holds the options that name a source (run_retrieval.py and prepare_shards.py parse them with
`HfArgumentParser`); its `open_split` opens one split with its columns and video folder.

Columns (`resolve_columns`): the video column may hold a path (relative to the data folder or file),
bytes, a `datasets.Video` value (read as `{"path", "bytes"}`, no torchcodec needed), a frame folder, or
already-chosen frames (a `(T, H, W, 3)` uint8 array, as prepared shards store them); the caption column a
string, a list of strings, or a webdataset `.json` record with a `caption`/`captions`/`text` key.

Decoding (`decode_video`) is the video processor's `load_frames` (its frame choice); the CLIP transform
runs once per batch (`VideoBatcher`, the processor's `transform_frames`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

try:
    from .processing_clip2video import CLIP2VideoVideoProcessor, VideoDecodeError, VideoProcessorOptionError
    from .retrieval_metrics import check_finite
except ImportError:
    from processing_clip2video import CLIP2VideoVideoProcessor, VideoDecodeError, VideoProcessorOptionError
    from retrieval_metrics import check_finite


logger = logging.getLogger(__name__)

#: Video columns tried in order when `video_column` is not given (after any `datasets.Video` feature):
#: videofolder's `video`, webdataset keys, metadata files' `file_name`, prepared shards' `frames`.
VIDEO_COLUMNS = ("video", "mp4", "webm", "mkv", "avi", "mov", "file_name", "video_path", "path", "frames")
#: Caption columns tried in order when `caption_column` is not given (webdataset: `txt`, then `json`).
CAPTION_COLUMNS = ("caption", "captions", "text", "txt", "sentence", "sentences", "title", "json")
#: Video id columns tried in order when `video_id_column` is not given (webdataset's sample key).
VIDEO_ID_COLUMNS = ("video_id", "videoid", "id", "__key__")
#: Keys of a webdataset `.json` record (or any dict caption value) that hold the caption(s).
CAPTION_KEYS = ("caption", "captions", "text", "txt", "sentence", "title")
#: Files of a `Dataset.save_to_disk` / `DatasetDict.save_to_disk` folder.
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")
#: Name of the data validation report written next to a run's outputs.
DATA_REPORT_FILENAME = "data_report.json"
#: The original's `feature_framerate` per benchmark family where it is not 1 (as its `test/*.sh` scripts set it).
FEATURE_FRAMERATE = {"msrvtt": 2}


def default_feature_framerate(benchmark: Optional[str]) -> int:
    """The original's `feature_framerate` for a benchmark name (`msrvtt-9k` -> 2); 1 for MSVD, VATEX, the synthetic
    benchmark and own data (`benchmark=None`): one frame per second of the original's 5 fps images."""
    return FEATURE_FRAMERATE.get((benchmark or "").split("-")[0], 1)


@dataclass
class VideoArguments:
    """The video processor options the scripts take (`run_retrieval.py`, `prepare_shards.py`, parsed with
    `HfArgumentParser`): unset ones keep the model's video processor's values, and the processor checks them. A
    new frame option is one more field here (and the processor's attribute)."""

    frame_sampling: Optional[str] = field(default=None, metadata={"help": (
        "'original' (5 fps images, every feature_framerate-th, uniform pick), 'uniform' or 'random_segment' "
        "(default: the model's video processor's, 'original').")})
    feature_framerate: Optional[int] = field(default=None, metadata={"help": (
        "The original's feature_framerate; default per benchmark (MSR-VTT 2, MSVD/VATEX/synthetic/own data 1).")})
    video_backend: Optional[str] = field(default=None, metadata={"help": (
        "'decord' (falls back to PyAV) or 'pyav' (default: the model's video processor's, 'decord').")})

    def __post_init__(self):
        try:  # the processor's own check, at parse time
            CLIP2VideoVideoProcessor(**self.video_processor_kwargs(None))
        except VideoProcessorOptionError as error:
            raise ValueError(f"--{error}") from None

    def video_processor_kwargs(self, benchmark: Optional[str]) -> dict[str, Any]:
        """The options given, for `CLIP2VideoVideoProcessor.for_model`, with the data's `feature_framerate` default
        (`default_feature_framerate` of the benchmark name, None for own data)."""
        given = {option.name: getattr(self, option.name) for option in dataclasses.fields(VideoArguments)}
        given = {name: value for name, value in given.items() if value is not None}
        return {"feature_framerate": default_feature_framerate(benchmark), **given}


class DataSourceError(ValueError):
    """A data source cannot be read as video-caption pairs (unknown split, no such column, bad value)."""


class ColumnNotFoundError(DataSourceError):
    """A video/caption/id column is not in the source; the message lists the available ones."""


class DataValidationError(DataSourceError):
    """`strict` validation found missing or undecodable videos or empty captions."""


# ----------------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------------


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name)) for name in SAVED_DATASET_FILES)


def is_prepared_source(path: str) -> bool:
    """True for a prepared-shards folder (`frame_shards`: frames already chosen and sized for the model)."""
    if not os.path.isdir(path):
        return False
    try:
        from frame_shards import is_prepared_dir, is_unfinished_prepared_dir
    except ImportError:
        return False
    return is_prepared_dir(path) or is_unfinished_prepared_dir(path)  # unfinished: load_prepared says so


def check_prepared_sources(sources: Iterable[Optional[str]], video_processor) -> None:
    """Refuses a prepared-shards folder among `sources` whose frames are not the ones the run's video processor
    (its `frame_options()`: frame count, frame size, frame choice) would give.

    Raises:
        `frame_shards.PreparedShardsError` naming the folder and each differing option.
    """
    for source in sources:
        if source and is_prepared_source(source):
            from frame_shards import check_frame_options

            check_frame_options(source, video_processor)


#: `datasets` builder of a data file, by its extension (`--train_file` etc. without `--dataset_name`).
BUILDER_OF_EXTENSION = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet",
                        "tar": "webdataset"}


def builder_for_files(data_files: dict[str, str]) -> str:
    """The packaged `datasets` builder that reads `data_files` (split -> file or glob), from the first file's extension.

    Raises:
        DataSourceError: the extension names no builder (the message asks for `--dataset_name`).
    """
    first = next(iter(data_files.values()))
    extension = os.path.splitext(first)[1].lower().lstrip(".")
    if extension not in BUILDER_OF_EXTENSION:
        raise DataSourceError(f"cannot tell the format of {first}: pass --dataset_name (csv, json, parquet, "
                              "webdataset, ...)")
    return BUILDER_OF_EXTENSION[extension]


def _pick_split(found, split: str, source: str):
    """`found[split]` of a DatasetDict / IterableDatasetDict, or a DataSourceError naming the splits there are."""
    if not hasattr(found, "keys"):
        return found
    if split in found:
        return found[split]
    raise DataSourceError(f"{source}: no split {split!r}; available splits: {sorted(found.keys())}")


def load_source(name_or_path: str, split: str, *, data_dir: Optional[str] = None,
                data_files: Optional[dict[str, str]] = None, config_name: Optional[str] = None,
                revision: Optional[str] = None, cache_dir: Optional[str] = None, streaming: bool = False):
    """One split of any source, as a `datasets.Dataset` (or `IterableDataset` with `streaming`).

    Args:
        name_or_path: a packaged builder (`videofolder`, `csv`, `json`, `parquet`, `webdataset`, ...), a Hub dataset
            id, a `save_to_disk` folder, or a prepared-shards folder (`frame_shards`).
        split: the split to read (`train`, `validation`, `test`, ...).
        data_dir, data_files, config_name, revision, cache_dir: as `datasets.load_dataset` takes them;
            `data_files` maps split -> file or glob.
        streaming: read lazily, shard by shard.

    Returns:
        the split; `datasets.Video` columns are cast to `decode=False` (`{"path", "bytes"}` values).

    Raises:
        DataSourceError: the split is not in the source, or the source cannot be opened.
    """
    import datasets

    if is_prepared_source(name_or_path):
        from frame_shards import load_prepared

        return load_prepared(name_or_path, split, streaming=streaming)
    try:
        if _is_saved_dataset(name_or_path):
            found = _pick_split(datasets.load_from_disk(name_or_path), split, name_or_path)
            if streaming:
                found = found.to_iterable_dataset(num_shards=max(1, min(len(found), 64)))
        else:
            found = datasets.load_dataset(name_or_path, config_name, data_dir=data_dir, data_files=data_files,
                                          revision=revision, cache_dir=cache_dir, streaming=streaming)
            found = _pick_split(found, split, name_or_path)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        if isinstance(error, DataSourceError):
            raise
        mixed = re.search(r"Column\(/?([^)]*)\) changed from (\w+) to (\w+)", str(error))
        if mixed:  # pyarrow's JSON reader (videofolder metadata.jsonl) wants one type per column
            files = _metadata_files(data_dir, data_files) or [name_or_path]
            column, first, other = mixed.groups()
            raise DataSourceError(
                f"{', '.join(files)}: column {column!r} holds both {first} and {other} values ({error}); write every "
                f"value of {column!r} the same way (several captions: a list of strings, also for one caption)"
            ) from None
        raise DataSourceError(f"{name_or_path}: cannot read the dataset: {error}") from None
    return undecoded_videos(found)


def _metadata_files(data_dir: Optional[str], data_files: Optional[dict[str, str]]) -> list[str]:
    """The data files a source reads, or the `metadata.*` files of a folder builder's `data_dir` (to name in errors)."""
    if data_files:
        return list(data_files.values())
    if data_dir and os.path.isdir(data_dir):
        return sorted(str(path) for path in Path(data_dir).rglob("metadata.*"))
    return []


def undecoded_videos(dataset):
    """Casts every `datasets.Video` column to `Video(decode=False)`: values become `{"path", "bytes"}` dicts that
    `decode_video` reads with the processor's decoder (datasets' own decoding needs torchcodec and samples no frames)."""
    import datasets

    features = dataset.features or {}
    for name, feature in features.items():
        if isinstance(feature, datasets.Video) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Video(decode=False))
    return dataset


def source_base_dir(name_or_path: str, data_dir: Optional[str], data_file: Optional[str]) -> Optional[str]:
    """The folder relative video paths are resolved against: the data file's, else `data_dir`, else a local folder."""
    if data_file and os.path.exists(data_file):
        return os.path.dirname(os.path.abspath(data_file))
    if data_dir:
        return os.path.abspath(data_dir)
    if os.path.isdir(name_or_path):
        return os.path.abspath(name_or_path)
    return None


# ----------------------------------------------------------------------------------------------------------------------
# Columns and values
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Which columns of a source hold the video, the caption(s) and (optionally) the video id."""

    video: str
    caption: str
    video_id: Optional[str] = None


def _column(available: Sequence[str], given: Optional[str], candidates: Sequence[str], role: str, option: str,
            required: bool = True) -> Optional[str]:
    if given is not None:
        if given not in available:
            raise ColumnNotFoundError(f"{option} {given!r} is not a column of the dataset; available columns: "
                                      f"{list(available)}")
        return given
    for candidate in candidates:
        if candidate in available:
            return candidate
    if required:
        raise ColumnNotFoundError(f"no {role} column found (tried {list(candidates)}); pass {option}: available "
                                  f"columns: {list(available)}")
    return None


def resolve_columns(dataset, video_column: Optional[str] = None, caption_column: Optional[str] = None,
                    video_id_column: Optional[str] = None) -> Columns:
    """The video, caption and id columns of `dataset` (given names checked, else the defaults).

    Raises:
        ColumnNotFoundError: a given column is missing, or no default matches; the message lists the columns.
    """
    import datasets

    available = list(dataset.column_names or (dataset.features or {}).keys())
    if not available and isinstance(dataset, datasets.IterableDataset):  # a mapped stream (prepared shards) has no
        available = list(next(iter(dataset)).keys())  # features: its columns are those of its first row
    video_features = [name for name, feature in (dataset.features or {}).items() if isinstance(feature, datasets.Video)]
    video = _column(available, video_column, [*video_features, *VIDEO_COLUMNS], "video", "--video_column")
    caption = _column(available, caption_column, CAPTION_COLUMNS, "caption", "--caption_column")
    video_id = _column(available, video_id_column, VIDEO_ID_COLUMNS, "video id", "--video_id_column", required=False)
    return Columns(video, caption, video_id)


@dataclass
class SourceArguments:
    """Where a split's videos and captions come from: the source options of `run_retrieval.py` and `prepare_shards.py`
    (both parse them with `HfArgumentParser`), and the split they open through this module."""

    dataset_name: Optional[str] = field(default=None, metadata={"help": (
        "A benchmark of datasets_scripts.load_benchmark (msrvtt-1k-a, msrvtt-9k, msrvtt-7k, msrvtt-full, msvd, "
        "vatex-hgr, vatex-1k5, synthetic-motion), or what datasets.load_dataset takes: a packaged builder "
        "(videofolder, csv, json, parquet, webdataset, ... with --data_dir or --train_file/--test_file), a "
        "save_to_disk folder, a prepared-shards folder or a Hub dataset id. Unset with --train_file/--test_file: "
        "the builder their extension names.")})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Configuration of a Hub dataset."})
    revision: Optional[str] = field(default=None, metadata={"help": "Revision (branch, tag, commit) of a Hub dataset."})
    train_file: Optional[str] = field(default=None, metadata={"help": (
        "Training data file or glob (csv, json/jsonl, parquet, webdataset .tar, or a prepared-shards folder).")})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Validation data file or glob."})
    test_file: Optional[str] = field(default=None, metadata={"help": "Test data file or glob."})
    video_column: Optional[str] = field(default=None, metadata={"help": (
        "Column of the video (path, bytes, datasets.Video, frame folder). Default: the first datasets.Video "
        f"feature, else the first of {list(VIDEO_COLUMNS)}.")})
    caption_column: Optional[str] = field(default=None, metadata={"help": (
        f"Column of the caption (a string or a list of strings). Default: the first of {list(CAPTION_COLUMNS)}.")})
    video_id_column: Optional[str] = field(default=None, metadata={"help": (
        "Column of the video id (rows with the same id are one video with several captions). Default: "
        f"the first of {list(VIDEO_ID_COLUMNS)}, else the video's file name.")})
    strict: bool = field(default=False, metadata={"help": (
        "Refuse data with missing or undecodable videos or empty captions (DataValidationError) instead of "
        "skipping, counting and naming them in a report.")})
    data_dir: Optional[str] = field(default=None, metadata={"help": (
        "Folder of the split/annotation files (benchmarks) or the data folder of a builder (e.g. videofolder).")})
    video_dir: Optional[str] = field(default=None, metadata={"help": (
        "Folder of the videos (or frame folders); own data: the folder relative video paths start from "
        "(default: the data file's folder, else --data_dir).")})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "datasets cache (and synthetic videos)."})

    def data_files(self) -> dict[str, str]:
        """Split -> file of --train_file / --validation_file / --test_file."""
        files = {"train": self.train_file, "validation": self.validation_file, "test": self.test_file}
        return {split: path for split, path in files.items() if path}

    def source_name(self) -> str:
        """The builder, folder or Hub id read: --dataset_name, else the builder the data files' extension names."""
        if self.dataset_name is not None:
            return self.dataset_name
        files = self.data_files()
        if not files:
            raise DataSourceError(
                "give --dataset_name (a benchmark, a builder such as videofolder, csv, json, parquet, webdataset, a "
                "save_to_disk folder or a Hub dataset id) or --train_file/--validation_file/--test_file")
        return builder_for_files(files)

    def open_split(self, split: str, streaming: bool = False):
        """Split `split` of the (non-benchmark) source, its columns and the folder its relative video paths start from.

        Returns:
            `(dataset, Columns, base_dir)`: a `Dataset` (an `IterableDataset` with `streaming=True`) whose video
            columns are left undecoded (`undecoded_videos`).
        """
        files = self.data_files()
        name = self.source_name()
        if split in files and is_prepared_source(files[split]):
            name, files = files[split], {}
        dataset = load_source(name, split, data_dir=self.data_dir, data_files=files or None,
                              config_name=self.dataset_config_name, revision=self.revision, cache_dir=self.cache_dir,
                              streaming=streaming)
        columns = resolve_columns(dataset, self.video_column, self.caption_column, self.video_id_column)
        base_dir = self.video_dir or source_base_dir(name, self.data_dir, files.get(split))
        return dataset, columns, base_dir


def captions_of(value: Any) -> list[str]:
    """The captions of one row: a string, a list of strings, or a dict with a `caption`/`captions`/`text` key."""
    if value is None:
        return []
    if isinstance(value, dict):
        for key in CAPTION_KEYS + ("captions",):
            if key in value:
                return captions_of(value[key])
        return []
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, (list, tuple)):
        return [caption for item in value for caption in captions_of(item)]
    return [str(value).strip()]


def video_reference(value: Any, base_dir: Optional[str] = None) -> Any:
    """What `decode_video` reads for one video value: a path (made absolute against `base_dir`), bytes, or frames.

    A `datasets.Video` value `{"path", "bytes"}` gives its bytes when it has them, else its path; a `VideoDecodeError`
    (a streamed prepared row whose frames are corrupt) is passed on for `decode_video` to raise.
    """
    if isinstance(value, VideoDecodeError):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if base_dir and not os.path.isabs(path) and "://" not in path:
            return os.path.join(base_dir, path)
        return path
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, np.ndarray, torch.Tensor)):
        return value
    if value is None:
        return None
    raise DataSourceError(f"unsupported video value of type {type(value).__name__} (expected a path, bytes, a "
                          "datasets.Video value, a frame folder or a (T, H, W, 3) array)")


def reference_name(reference: Any, fallback: str) -> str:
    """A printable name of a video reference (its path, else `fallback`)."""
    return reference if isinstance(reference, str) else fallback


def default_video_id(reference: Any, fallback: str) -> str:
    """A video's id when the source has no id column: its file (or folder) name without extension, else `fallback`."""
    if isinstance(reference, str) and reference:
        return Path(reference.rstrip("/")).stem or fallback
    return fallback


def is_missing(reference: Any) -> bool:
    """True for a reference that names no readable video: none, empty bytes, or a local path that does not exist."""
    if reference is None:
        return True
    if isinstance(reference, (bytes, bytearray)):
        return len(reference) == 0
    if isinstance(reference, str):
        return "://" not in reference and not os.path.exists(reference)
    return len(reference) == 0


# ----------------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------------


def as_prepared_frames(value: Any) -> Optional[list[np.ndarray]]:
    """Frames already chosen (and sized) for the model, e.g. a prepared shard's `frames` `(T, H, W, 3)` uint8, as a
    list of `(H, W, 3)` arrays; None when `value` is not in-memory frames."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if isinstance(value, list) and value and not isinstance(value[0], np.ndarray):
        value = np.asarray(value, dtype=np.uint8)
    if isinstance(value, np.ndarray):
        if value.ndim != 4 or value.shape[-1] != 3 or value.dtype != np.uint8 or len(value) == 0:
            raise VideoDecodeError(f"<frames>: expected (T, H, W, 3) uint8 frames, got {value.dtype} {value.shape}")
        return list(value)
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return [np.asarray(frame) for frame in value]
    return None


def decode_video(value: Any, video_processor, base_dir: Optional[str] = None,
                 rng: Optional[np.random.Generator] = None, span: Optional[tuple[float, float]] = None
                 ) -> list[np.ndarray]:
    """The frames the processor chooses from one video (or from its span), before the CLIP transform.

    Args:
        value: a path (file or frame folder; relative to `base_dir`), bytes, a `datasets.Video` value, or
            already-chosen frames (`(T, H, W, 3)` uint8, returned as they are: no decoder, no re-sampling).
        video_processor: the run's `CLIP2VideoVideoProcessor` (its frame options); its `load_frames` decodes and
            picks the frames.
        base_dir: folder that relative paths are resolved against.
        rng: generator of random frame choices (`random_segment`, jitter).
        span: the clip `[start, end)` in seconds to choose the frames in (None: the whole video); already-chosen
            frames are the clip's already.

    Returns:
        `n` frames (`1 <= n <= num_frames`), each an `(H, W, 3)` uint8 array.

    Raises:
        VideoDecodeError: naming the video and the reason (missing, empty, undecodable, too short).
    """
    reference = video_reference(value, base_dir)
    if isinstance(reference, VideoDecodeError):
        raise reference
    prepared = as_prepared_frames(reference)
    if prepared is not None:
        return prepared
    if reference is None:
        raise VideoDecodeError("<none>: the row has no video")
    if isinstance(reference, str) and "://" not in reference and not os.path.exists(reference):
        raise VideoDecodeError(f"{reference}: no such file or folder")
    return [np.asarray(frame) for frame in video_processor.load_frames(reference, rng=rng, span=span)]


# ----------------------------------------------------------------------------------------------------------------------
# Splits: one row per caption, grouped by video
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class DataReport:
    """What validation found in one split of a source (lists name videos; counts are their lengths)."""

    source: str
    split: str
    num_source_rows: int = 0
    num_videos: int = 0
    num_captions: int = 0
    missing_videos: list[str] = field(default_factory=list)
    empty_captions: list[str] = field(default_factory=list)
    undecodable_videos: list[str] = field(default_factory=list)

    def problem_lines(self) -> list[str]:
        lines = []
        for kind in ("missing_videos", "empty_captions", "undecodable_videos"):
            names = getattr(self, kind)
            if names:
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                lines.append(f"{self.source}/{self.split}: {len(names)} {kind.replace('_', ' ')} skipped: {shown}")
        return lines

    def add_undecodable(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self.undecodable_videos:
                self.undecodable_videos.append(name)

    def check(self, strict: bool) -> None:
        """Logs every problem; with `strict`, raises `DataValidationError` instead."""
        lines = self.problem_lines()
        if strict and lines:
            raise DataValidationError("strict validation failed: " + "; ".join(lines))
        for line in lines:
            logger.warning("%s", line)


def gather_undecodable(reports: Sequence[DataReport], gather_object) -> None:
    """Gives every process's reports the undecodable videos all processes met (a training video is found undecodable
    only by the process that decodes it), sorted, so the report is the same on 1 and N processes.

    `gather_object` is `accelerate.utils.gather_object` (a collective: every process calls this).
    """
    found = gather_object([[report.undecodable_videos for report in reports]])
    for index, report in enumerate(reports):
        report.undecodable_videos = sorted({name for per_process in found for name in per_process[index]})


def write_data_report(reports: Sequence[DataReport], output_dir: str) -> Path:
    """`output_dir/data_report.json`: one entry per split, with counts and the names of skipped videos/captions."""
    entries = []
    for report in reports:
        entry = dataclasses.asdict(report)
        entry["counts"] = {kind: len(entry[kind]) for kind in ("missing_videos", "empty_captions", "undecodable_videos")}
        entries.append(entry)
    path = Path(output_dir) / DATA_REPORT_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2))
    return path


class SourceVideos(Sequence):
    """Video references of a map-style split, read lazily from the source row of each video (bytes stay on disk
    until a video is decoded); picklable for DataLoader workers."""

    def __init__(self, dataset, column: str, source_rows: Sequence[int], base_dir: Optional[str]):
        self.dataset = dataset.select_columns([column])
        self.column, self.source_rows, self.base_dir = column, list(source_rows), base_dir

    def __len__(self) -> int:
        return len(self.source_rows)

    def __getitem__(self, video_index: int) -> Any:
        return video_reference(self.dataset[self.source_rows[video_index]][self.column], self.base_dir)


def _video_column_summary(dataset, column: str) -> tuple[list[Optional[str]], list[bool]]:
    """The video column read without materialising video bytes: per row its path (None for in-memory values) and
    whether it holds bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    paths: list[Optional[str]] = []
    has_bytes: list[bool] = []
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=4096):
        array = table.column(column).combine_chunks()
        if pa.types.is_struct(array.type):
            paths += array.field("path").to_pylist()
            has_bytes += pc.fill_null(pc.greater(pc.binary_length(array.field("bytes")), 0), False).to_pylist()
        elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            paths += array.to_pylist()
            has_bytes += [False] * len(array)
        elif pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
            paths += [None] * len(array)
            has_bytes += pc.fill_null(pc.greater(pc.binary_length(array), 0), False).to_pylist()
        else:  # in-memory frames: read per video when decoded
            paths += [None] * len(array)
            has_bytes += pc.is_valid(array).to_pylist()
    return paths, has_bytes


@dataclass
class CaptionTable:
    """A source split laid out like a benchmark split: one row per caption, grouped by video.

    `videos[v]` is what `decode_video` reads for video `v`; `rows` has the benchmark columns `video_id`, `caption`,
    `video_index` (and `video`: its printable name).
    """

    rows: Any  # datasets.Dataset
    videos: Sequence[Any]
    report: DataReport


def build_caption_table(dataset, columns: Columns, base_dir: Optional[str], source: str, split: str,
                        strict: bool = False) -> CaptionTable:
    """Groups a map-style source by video (rows with the same id merge their captions) and validates it.

    A video whose local file is missing, or whose value is empty, is skipped; so is an empty caption (a video left
    with no caption goes too). Both are named in the returned report (`strict`: `DataValidationError` instead).
    """
    import datasets

    report = DataReport(source=source, split=split, num_source_rows=len(dataset))
    paths, has_bytes = _video_column_summary(dataset, columns.video)
    readable = dataset.select_columns([c for c in (columns.caption, columns.video_id) if c])
    order: list[str] = []
    grouped: dict[str, tuple[int, list[str]]] = {}
    for row, record in enumerate(readable):
        path = video_reference(paths[row], base_dir) if paths[row] else None
        fallback = f"{source}[{row}]"
        video_id = str(record[columns.video_id]) if columns.video_id else default_video_id(path, fallback)
        if not has_bytes[row] and (path is None or is_missing(path)):
            report.missing_videos.append(reference_name(path, video_id))
            continue
        captions = captions_of(record[columns.caption])
        kept = [caption for caption in captions if caption]
        if len(kept) < len(captions) or not captions:
            report.empty_captions.append(video_id)
        if video_id not in grouped:
            grouped[video_id] = (row, [])
            order.append(video_id)
        grouped[video_id][1].extend(kept)
    video_ids = [video_id for video_id in order if grouped[video_id][1]]
    source_rows = [grouped[video_id][0] for video_id in video_ids]
    columns_out = {"video_id": [], "video": [], "caption": [], "video_index": []}
    for video_index, video_id in enumerate(video_ids):
        row, captions = grouped[video_id]
        name = reference_name(video_reference(paths[row], base_dir) if paths[row] else None, video_id)
        for caption in captions:
            columns_out["video_id"].append(video_id)
            columns_out["video"].append(name)
            columns_out["caption"].append(caption)
            columns_out["video_index"].append(video_index)
    report.num_videos, report.num_captions = len(video_ids), len(columns_out["caption"])
    report.check(strict)
    if not video_ids:
        raise DataSourceError(f"{source}/{split}: no video with a caption left after validation")
    rows = datasets.Dataset.from_dict(columns_out, features=datasets.Features({
        "video_id": datasets.Value("string"), "video": datasets.Value("string"), "caption": datasets.Value("string"),
        "video_index": datasets.Value("int32")}))
    return CaptionTable(rows, SourceVideos(dataset, columns.video, source_rows, base_dir), report)


# ----------------------------------------------------------------------------------------------------------------------
# Decoded frames, datasets and batches
# ----------------------------------------------------------------------------------------------------------------------


class VideoFrameStore:
    """Decoded frames of every video of a split, by video index: `load(v)` -> list of uint8 `(H, W, 3)` frames.

    `videos[v]` is anything `decode_video` reads, `spans[v]` (optional) the clip `(start, end)` seconds of it that
    is video `v` (None: the whole video). Decoding and frame selection are the video processor's (`load_frames`,
    its frame options); the CLIP transform happens per batch (`VideoBatcher`), on all frames of the batch at once.
    With `cache=True` each video is decoded once per run. A video that cannot be decoded raises `VideoDecodeError`
    (the failure is cached too).
    """

    def __init__(self, videos: Sequence[Any], video_processor, cache: bool = False,
                 names: Optional[Sequence[str]] = None, spans: Optional[Sequence[Any]] = None):
        self.videos, self.video_processor, self.cache = videos, video_processor, cache
        self.names = names  # video ids, to name in-memory videos (bytes) in errors
        self.spans = spans
        self._frames: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.videos)

    def load(self, video_index: int) -> list:
        if video_index in self._frames:
            frames = self._frames[video_index]
            if isinstance(frames, VideoDecodeError):
                raise frames
            return frames
        try:
            value = self.videos[video_index]
            if value is None or (isinstance(value, str) and not value):
                raise VideoDecodeError(f"video {video_index}: no file (missing from video_dir)")
            span = self.spans[video_index] if self.spans else None
            try:
                frames = decode_video(value, self.video_processor, span=span)
            except VideoDecodeError as error:
                if self.names is not None and not isinstance(value, str):
                    raise VideoDecodeError(f"{self.names[video_index]}: {error}") from None
                raise
        except VideoDecodeError as error:
            if self.cache:
                self._frames[video_index] = error
            raise
        if self.cache:
            self._frames[video_index] = frames
        return frames

    def preload(self, indices: Sequence[int], disable_progress: bool = False) -> list[str]:
        """Decode `indices` into the cache; returns the names of the videos that failed (first time only)."""
        from tqdm.auto import tqdm

        failures = []
        indices = [index for index in indices if index not in self._frames]
        for index in tqdm(indices, desc="decoding videos", disable=disable_progress, leave=False):
            try:
                self.load(index)
            except VideoDecodeError as error:
                failures.append(str(error))
        return failures


class CaptionVideoDataset(torch.utils.data.Dataset):
    """Row `i` of a split: caption tokens and its video's frames (or the decode error, for the collator to count)."""

    def __init__(self, tokens: dict[str, torch.Tensor], video_of_row: Sequence[int], store: VideoFrameStore):
        self.tokens, self.video_of_row, self.store = tokens, list(video_of_row), store

    def __len__(self) -> int:
        return len(self.video_of_row)

    def __getitem__(self, row: int) -> dict[str, Any]:
        video = self.video_of_row[row]
        item = {"row": row, "input_ids": self.tokens["input_ids"][row], "attention_mask": self.tokens["attention_mask"][row]}
        try:
            item["frames"] = self.store.load(video)
        except VideoDecodeError as error:
            item["error"] = str(error)
        return item


class VideoDataset(torch.utils.data.Dataset):
    """Video `v` of a split (evaluation, export, indexing: every video once)."""

    def __init__(self, store: VideoFrameStore, indices: Sequence[int]):
        self.store, self.indices = store, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = {"video": self.indices[position]}
        try:
            item["frames"] = self.store.load(self.indices[position])
        except VideoDecodeError as error:
            item["error"] = str(error)
        return item


class VideoBatcher:
    """The collators of training and evaluation batches (picklable, for DataLoader workers), on the run's video
    processor: frames are collated by its `collate`, kept uint8 when already at the model's size (prepared shards,
    videos decoded at it: a quarter of the bytes to move, no float pass in the workers), and `to_device` moves a
    batch to the model's device, where the processor's `normalize` finishes such frames to the values of its CPU
    transform."""

    def __init__(self, video_processor):
        self.video_processor = video_processor

    def to_device(self, batch: dict[str, Any], device) -> dict[str, Any]:
        """Every tensor of a collated batch moved to `device`; uint8 `pixel_values` normalised there into the
        model's float32 `(batch, num_frames, 3, H, W)`."""
        moved = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
        if "pixel_values" in moved and moved["pixel_values"].dtype == torch.uint8:
            moved["pixel_values"] = self.video_processor.normalize(moved["pixel_values"], moved["video_mask"])
        return moved

    def collate_pairs(self, items: list[dict]) -> dict[str, Any]:
        """Training batch; rows whose video failed are dropped and named in `skipped`."""
        good = [item for item in items if "frames" in item]
        batch = {"skipped": [item["error"] for item in items if "error" in item], "rows": [item["row"] for item in good]}
        if good:
            batch["input_ids"] = torch.stack([item["input_ids"] for item in good])
            batch["attention_mask"] = torch.stack([item["attention_mask"] for item in good])
            batch["pixel_values"], batch["video_mask"] = self.video_processor.collate(
                [item["frames"] for item in good], keep_uint8=True)
        return batch

    def collate_videos(self, items: list[dict]) -> dict[str, Any]:
        """Batch of videos; a failed video gets one blank frame and `valid=False` (dropped later)."""
        blank = None
        valid = []
        for item in items:
            if "frames" in item:
                blank = item["frames"][:1]
            valid.append("frames" in item)
        if not any(valid):
            size = self.video_processor.crop_size
            blank = [np.zeros((size.height, size.width, 3), dtype=np.uint8)]
        videos = [item.get("frames", [np.zeros_like(blank[0])]) for item in items]
        pixel_values, video_mask = self.video_processor.collate(videos, keep_uint8=True)
        return {"video": torch.tensor([item["video"] for item in items]), "valid": torch.tensor(valid),
                "pixel_values": pixel_values, "video_mask": video_mask,
                "skipped": [item["error"] for item in items if "error" in item]}


class StreamCollator:
    """Training batches straight from streamed source rows (runs in DataLoader workers): each row's video is decoded
    and one of its captions is drawn (seeded by `seed`, the epoch and the video id, so a resumed run draws the same);
    rows whose video fails are dropped and named in `skipped`.

    Resuming mid-epoch: the first `skip_batches` batches of the epoch's stream come back as `{"skipped_for_resume":
    True}` without decoding. Batches reach the loader from its workers in turn (worker `w`'s `j`-th batch is at most
    the stream's batch `w + j * num_workers`, fewer when a worker has run dry), so a worker returns its `j`-th batch
    undecoded only when `w + j * num_workers < skip_batches`: never a batch the run still needs.
    """

    def __init__(self, batcher: VideoBatcher, tokenizer_fn, columns: Columns, base_dir: Optional[str], seed: int):
        self.batcher, self.tokenizer_fn, self.columns, self.base_dir, self.seed = (
            batcher, tokenizer_fn, columns, base_dir, seed)
        self.epoch = 0  # set before each pass: the caption drawn for a video changes from epoch to epoch
        self.skip_batches = 0
        self._calls = 0  # batches collated by this copy (one copy per worker, fresh each pass)

    def start_pass(self, epoch: int, skip_batches: int = 0) -> None:
        """Before each pass over the stream (the loader's workers copy the collator as it is then)."""
        self.epoch, self.skip_batches, self._calls = epoch, skip_batches, 0

    def _needed(self) -> bool:
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        position = worker + self._calls * num_workers
        self._calls += 1
        return position >= self.skip_batches

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        if not self._needed():
            return {"skipped_for_resume": True, "skipped": [], "rows": []}
        frames, captions, skipped, ids = [], [], [], []
        for row in rows:
            reference = video_reference(row[self.columns.video], self.base_dir)
            video_id = str(row[self.columns.video_id]) if self.columns.video_id else default_video_id(
                reference, "<stream row>")
            kept = [caption for caption in captions_of(row[self.columns.caption]) if caption]
            if not kept:
                skipped.append(f"{video_id}: empty caption")
                continue
            try:
                frames.append(decode_video(reference, self.batcher.video_processor))
            except VideoDecodeError as error:
                skipped.append(str(error) if isinstance(reference, str) else f"{video_id}: {error}")
                continue
            rng = np.random.default_rng([self.seed, self.epoch, zlib.crc32(video_id.encode())])
            captions.append(kept[int(rng.integers(len(kept)))])
            ids.append(video_id)
        batch: dict[str, Any] = {"skipped": skipped, "rows": ids}
        if frames:
            tokens = self.tokenizer_fn(captions)
            batch["input_ids"], batch["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
            batch["pixel_values"], batch["video_mask"] = self.batcher.video_processor.collate(frames, keep_uint8=True)
        return batch


# ----------------------------------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------------------------------


def encode_videos(model, pixel_values: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """Retrieval vectors `(batch, retrieval_embed_dim)` float32 of `pixel_values` `(batch, frames, 3, H, W)` (the
    `pooler_output` of `get_video_features`); `NonFiniteScoresError` if any is NaN or infinite."""
    features = model.get_video_features(pixel_values, video_mask).pooler_output.float()
    check_finite(features, "video features")
    return features


def encode_texts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Retrieval vectors `(batch, retrieval_embed_dim)` float32 of tokenised captions (`get_text_features`);
    `NonFiniteScoresError` if any is NaN or infinite."""
    features = model.get_text_features(input_ids, attention_mask).pooler_output.float()
    check_finite(features, "text features")
    return features


__all__ = [
    "CAPTION_COLUMNS",
    "DATA_REPORT_FILENAME",
    "VIDEO_COLUMNS",
    "CaptionTable",
    "CaptionVideoDataset",
    "ColumnNotFoundError",
    "Columns",
    "DataReport",
    "DataSourceError",
    "DataValidationError",
    "SourceVideos",
    "StreamCollator",
    "VideoBatcher",
    "VideoDataset",
    "VideoArguments",
    "VideoFrameStore",
    "SourceArguments",
    "build_caption_table",
    "builder_for_files",
    "captions_of",
    "check_prepared_sources",
    "decode_video",
    "default_feature_framerate",
    "encode_texts",
    "encode_videos",
    "gather_undecodable",
    "is_prepared_source",
    "load_source",
    "resolve_columns",
    "source_base_dir",
    "undecoded_videos",
    "video_reference",
    "write_data_report",
]
