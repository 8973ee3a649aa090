# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Sources of videos and captions: opening any `datasets` source, finding its columns, reading caption values, and
laying a split out like a benchmark split (one row per caption, grouped by video) with a report of what was skipped.

Sources (`load_source`): anything `datasets.load_dataset` takes (a packaged builder such as `videofolder`,
`csv`, `json`, `parquet`, `webdataset` with `data_dir` or `data_files`, or a Hub id), a `save_to_disk`
folder, or a prepared-shards folder (`frame_shards`), as a `Dataset` or, streamed, an `IterableDataset`.
`SourceArguments` holds the options that name a source (run_retrieval.py and prepare_shards.py parse them with
`HfArgumentParser`); its `open_split` opens one split with its columns and video folder.

Columns (`resolve_columns`): the video column may hold a path (relative to the data folder or file),
bytes, a `datasets.Video` value (read as `{"path", "bytes"}`, no torchcodec needed), a frame folder, or
already-chosen frames (a `(T, H, W, 3)` uint8 array, as prepared shards store them); the caption column a
string, a list of strings, or a webdataset `.json` record with a `caption`/`captions`/`text` key.

A source row's values (video reference, captions, span, id) and the caption table of a split are `caption_table`'s;
the frames of each video are read by `data_clip2video` (decoding, frame store, batches).
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from datasets_scripts import BENCHMARK_NAMES, MOMENT_FORMATS, read_moments


logger = logging.getLogger(__name__)


#: Video columns tried in order when `video_column` is not given (after any `datasets.Video` feature):
#: videofolder's `video`, webdataset keys, metadata files' `file_name`, prepared shards' `frames`.
VIDEO_COLUMNS = ("video", "mp4", "webm", "mkv", "avi", "mov", "file_name", "video_path", "path", "frames")
#: Caption columns tried in order when `caption_column` is not given (webdataset: `txt`, then `json`; QVHighlights:
#: `query`).
CAPTION_COLUMNS = ("caption", "captions", "text", "txt", "sentence", "sentences", "title", "json", "query")
#: Video id columns tried in order when `video_id_column` is not given (webdataset's sample key; QVHighlights: `vid`).
VIDEO_ID_COLUMNS = ("video_id", "videoid", "id", "__key__", "vid")
#: Span columns (seconds) tried in order when `start_column` / `end_column` are not given: (start, end) pairs of
#: columns, then columns holding `[start, end]` pairs (ActivityNet Captions' `timestamps`).
SPAN_COLUMNS = (("start", "end"), ("start_time", "end_time"), ("start_sec", "end_sec"))
SPAN_PAIR_COLUMNS = ("timestamp", "timestamps", "span", "relevant_windows")
#: Columns of a video's duration in seconds (a span ending after it is refused).
DURATION_COLUMNS = ("duration",)
#: Keys of a webdataset `.json` record (or any dict caption value) that hold the caption(s).
CAPTION_KEYS = ("caption", "captions", "text", "txt", "sentence", "title")
#: Files of a `Dataset.save_to_disk` / `DatasetDict.save_to_disk` folder.
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")
#: The original's `feature_framerate` per benchmark family where it is not 1 (as its `test/*.sh` scripts set it).
FEATURE_FRAMERATE = {"msrvtt": 2}


def default_feature_framerate(benchmark: Optional[str]) -> int:
    """The original's `feature_framerate` for a benchmark name (`msrvtt-9k` -> 2); 1 for MSVD, VATEX, the synthetic
    benchmark and own data (`benchmark=None`): one frame per second of the original's 5 fps images."""
    return FEATURE_FRAMERATE.get((benchmark or "").split("-")[0], 1)


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
    given = list(data_files.values())
    unprepared = [path for path in given if not is_prepared_source(path)]
    if not unprepared:  # prepared-shards folders only: each is read as its own source
        return given[0]
    first = unprepared[0]
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


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("hf:")


def _local_files(pattern: str) -> list[str]:
    """The files a local data file or glob names (sorted); a folder gives the files under it."""
    if os.path.isdir(pattern):
        return sorted(str(path) for path in Path(pattern).rglob("*") if path.is_file())
    return sorted(path for path in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(path))


def check_tar_shard(path: str) -> None:
    """Refuses a webdataset shard that `tarfile` would read only in part: a garbled header after the first member (the
    stream reader stops there as at the archive's end, so the rest of the shard would be dropped without a word), a
    member cut short, or no end-of-archive marker (a truncated copy). Reads headers only.

    Raises:
        DataSourceError: naming the shard, the byte offset and the last good member.
    """
    import tarfile

    size = os.path.getsize(path)
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
            end = tar.offset
    except (tarfile.TarError, EOFError, OSError) as error:
        if "unexpected end of data" in str(error):
            raise DataSourceError(f"{path}: truncated tar shard ({error}); copy the shard again") from None
        raise DataSourceError(f"{path}: not a readable tar shard ({error})") from None
    last = f"after member {members[-1].name!r}" if members else "before any member"
    if members and members[-1].offset_data + members[-1].size > size:
        raise DataSourceError(f"{path}: truncated tar shard: member {members[-1].name!r} is cut short "
                              f"({size} bytes in the file); copy the shard again")
    with open(path, "rb") as handle:
        handle.seek(end)
        block = handle.read(512)
    if not block:
        raise DataSourceError(f"{path}: truncated tar shard: it ends at byte {end} {last} without the end-of-archive "
                              "marker; copy the shard again")
    if block.count(0) != len(block):
        raise DataSourceError(f"{path}: damaged tar shard: unreadable header at byte {end} {last} (the members after "
                              "it would be lost); repair or drop the shard")


def check_data_files(data_files: Optional[dict[str, Any]], data_dir: Optional[str] = None,
                     builder: Optional[str] = None) -> None:
    """Local data files checked before `datasets` reads them: every glob matches a file, no file is empty, every
    webdataset shard (`.tar`, also under `data_dir`) is whole (`check_tar_shard`).

    Raises:
        DataSourceError: naming the file or glob.
    """
    for split, given in (data_files or {}).items():
        for pattern in [given] if isinstance(given, str) else list(given):
            if not _is_local(pattern) or is_prepared_source(pattern):
                continue
            files = _local_files(pattern)
            if not files:
                raise DataSourceError(f"{pattern} ({split}): no such file (no file matches)")
            for path in files:
                size = os.path.getsize(path)
                empty = size == 0 or (size < 4096 and not Path(path).read_bytes().strip())
                if empty and not os.path.isdir(pattern):  # a folder may hold empty side files
                    raise DataSourceError(f"{path} ({split}): empty file (no rows)")
                if path.lower().endswith(".tar"):
                    check_tar_shard(path)
    if builder == "webdataset" and data_dir and os.path.isdir(data_dir):
        for path in sorted(Path(data_dir).rglob("*.tar")):
            check_tar_shard(str(path))


def _looks_local(name: str) -> bool:
    """A name that can only mean a local file or folder (`./x`, `../x`, `/x`, `~/x`), not a Hub id or a builder."""
    return name.startswith((".", "/", "~"))


def _reader_options(name: str, data_files: Optional[dict[str, Any]], data_dir: Optional[str]) -> dict[str, Any]:
    """Builder options that keep every value as written: csv/tsv columns read as strings (ids `001` and `1` stay two
    ids; a caption `None` or `NA` is that caption; an empty cell is an empty string), tsv split at tabs."""
    if name != "csv":
        return {}
    import datasets

    if not data_files and data_dir:
        data_files = {"all": [os.path.join(data_dir, "**", pattern) for pattern in ("*.csv", "*.tsv")]}

    first = next((path for given in data_files.values() for pattern in ([given] if isinstance(given, str) else given)
                  if _is_local(pattern) for path in _local_files(pattern)
                  if path.lower().endswith((".csv", ".tsv"))), None)
    if first is None:
        return {"keep_default_na": False}
    separator = "\t" if first.lower().endswith(".tsv") else ","
    with open(first, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter=separator), [])
    options: dict[str, Any] = {"keep_default_na": False, "sep": separator}
    if header and len(set(header)) == len(header):
        options["features"] = datasets.Features({column: datasets.Value("string") for column in header})
    return options


def _per_split_files(data_dir: str, split: str) -> Optional[dict[str, list[str]]]:
    """The data files of `split` alone in a folder builder's `data_dir` (datasets' own split patterns: `train/`,
    `test/`, ...), so each split is read with its own metadata features."""
    from datasets.data_files import get_data_patterns

    try:
        patterns = get_data_patterns(os.path.abspath(data_dir))
    except Exception:  # datasets raises EmptyDatasetError and others: then the split cannot be singled out
        return None
    found = {str(key): value for key, value in patterns.items()}
    return {split: found[split]} if split in found else None


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
        DataSourceError: the split is not in the source, or the source cannot be opened (a missing local folder, a
            glob matching nothing, an empty file, a damaged tar shard, a file `datasets` cannot read).
    """
    import datasets
    from huggingface_hub.errors import HFValidationError

    if is_prepared_source(name_or_path):
        from frame_shards import load_prepared

        return load_prepared(name_or_path, split, streaming=streaming)
    if _looks_local(name_or_path) and not os.path.exists(name_or_path):
        raise DataSourceError(f"{name_or_path}: no such file or folder")
    if data_dir and not os.path.isdir(data_dir) and _is_local(data_dir):
        raise DataSourceError(f"--data_dir {data_dir}: no such folder")
    check_data_files(data_files, data_dir, name_or_path)
    if data_files and split in data_files:  # each split on its own terms (its own columns and features)
        data_files = {split: data_files[split]}
    try:
        if _is_saved_dataset(name_or_path):
            found = _pick_split(datasets.load_from_disk(name_or_path), split, name_or_path)
            if streaming:
                found = found.to_iterable_dataset(num_shards=max(1, min(len(found), 64)))
        else:
            options = dict(data_dir=data_dir, data_files=data_files, revision=revision, cache_dir=cache_dir,
                           streaming=streaming, **_reader_options(name_or_path, data_files, data_dir))
            try:
                found = datasets.load_dataset(name_or_path, config_name, **options)
            except ValueError as error:
                single = data_dir and not data_files and _per_split_files(data_dir, split)
                if "have different features" not in str(error) or not single:
                    raise
                found = datasets.load_dataset(name_or_path, config_name, **dict(options, data_files=single))
            found = _pick_split(found, split, name_or_path)
    except (FileNotFoundError, ValueError, StopIteration, HFValidationError, datasets.exceptions.DatasetNotFoundError,
            datasets.exceptions.DatasetGenerationError) as error:
        if isinstance(error, DataSourceError):
            raise
        generation = isinstance(error, datasets.exceptions.DatasetGenerationError) and error.__cause__ is not None
        cause = error.__cause__ if generation else error  # datasets wraps the reader's own error
        reason = "no rows" if isinstance(error, StopIteration) else str(cause) or type(cause).__name__
        mixed = re.search(r"Column\(/?([^)]*)\) changed from (\w+) to (\w+)", reason)
        if mixed:  # pyarrow's JSON reader (videofolder metadata.jsonl) wants one type per column
            files = _metadata_files(data_dir, data_files) or [name_or_path]
            column, first, other = mixed.groups()
            raise DataSourceError(
                f"{', '.join(files)}: column {column!r} holds both {first} and {other} values ({reason}); write every "
                f"value of {column!r} the same way (several captions: a list of strings, also for one caption)"
            ) from None
        where = ", ".join(_metadata_files(data_dir, data_files)) or name_or_path
        raise DataSourceError(f"{where}: cannot read the dataset: {reason}") from None
    return undecoded_videos(found)


def _metadata_files(data_dir: Optional[str], data_files: Optional[dict[str, Any]]) -> list[str]:
    """The data files a source reads, or the `metadata.*` files of a folder builder's `data_dir` (to name in errors)."""
    if data_files:
        return [str(value) for value in data_files.values()]
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
    """Which columns of a source hold the video, the caption(s) and, optionally, the video id, the clip's span in
    seconds (`start` and `end`; one column holding `[start, end]` pairs is both) and the video's duration."""

    video: str
    caption: str
    video_id: Optional[str] = None
    start: Optional[str] = None
    end: Optional[str] = None
    duration: Optional[str] = None


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
                    video_id_column: Optional[str] = None, start_column: Optional[str] = None,
                    end_column: Optional[str] = None) -> Columns:
    """The video, caption, id and span columns of `dataset` (given names checked, else the defaults).

    The span: `start_column` and `end_column` (seconds), else the first pair of `SPAN_COLUMNS` the source has, else
    the first of `SPAN_PAIR_COLUMNS` (`[start, end]` values); none: every row is its whole video.

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
    start = _column(available, start_column, (), "start", "--start_column", required=False)
    end = _column(available, end_column, (), "end", "--end_column", required=False)
    if start is None and end is None:
        pairs = [(s, e) for s, e in SPAN_COLUMNS if s in available and e in available]
        pair_column = next((name for name in SPAN_PAIR_COLUMNS if name in available), None)
        start, end = pairs[0] if pairs else (pair_column, pair_column)
    start, end = start or end, end or start  # one column given: it holds [start, end] pairs
    duration = next((name for name in DURATION_COLUMNS if name in available), None) if start else None
    return Columns(video, caption, video_id, start, end, duration)


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
        f"the first of {list(VIDEO_ID_COLUMNS)}, else the video's path (its file name when no other video has it).")})
    start_column: Optional[str] = field(default=None, metadata={"help": (
        "Column of the start (seconds) of each caption's clip; with --end_column. One column of [start, end] pairs "
        f"may be given as both. Default: the first of {[list(pair) for pair in SPAN_COLUMNS]} the source has, else "
        f"one of {list(SPAN_PAIR_COLUMNS)}; none: each caption is its whole video. Rows of one video with other "
        "spans are other clips.")})
    end_column: Optional[str] = field(default=None, metadata={"help": "Column of the end (seconds) of each clip."})
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

    @property
    def is_benchmark(self) -> bool:
        """A benchmark name of `datasets_scripts.load_benchmark` (or a mistyped one, that load_benchmark names the
        choices for) rather than a datasets source; never with data files."""
        name = self.dataset_name
        if self.data_files() or name is None:
            return False
        return name in BENCHMARK_NAMES or (not os.path.exists(name) and name.startswith(("msrvtt", "msvd", "vatex",
                                                                                          "synthetic")))

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
        if name in MOMENT_FORMATS:
            if split not in files:
                raise DataSourceError(f"{name}: give the {split} annotation file (--{split}_file)")
            check_data_files({split: files[split]})
            try:
                dataset = read_moments(name, files[split], self.video_dir)
            except ValueError as error:
                raise DataSourceError(str(error)) from None
            if streaming:
                dataset = dataset.to_iterable_dataset(num_shards=max(1, min(len(dataset), 64)))
        else:
            dataset = load_source(name, split, data_dir=self.data_dir, data_files=files or None,
                                  config_name=self.dataset_config_name, revision=self.revision,
                                  cache_dir=self.cache_dir, streaming=streaming)
        columns = resolve_columns(dataset, self.video_column, self.caption_column, self.video_id_column,
                                  self.start_column, self.end_column)
        base_dir = self.video_dir or source_base_dir(name, self.data_dir, files.get(split))
        return dataset, columns, base_dir


__all__ = [
    "CAPTION_COLUMNS",
    "VIDEO_COLUMNS",
    "ColumnNotFoundError",
    "Columns",
    "DataSourceError",
    "DataValidationError",
    "SourceArguments",
    "builder_for_files",
    "check_data_files",
    "check_prepared_sources",
    "check_tar_shard",
    "is_prepared_source",
    "load_source",
    "resolve_columns",
    "source_base_dir",
    "undecoded_videos",
]
