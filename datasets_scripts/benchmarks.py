"""Registry of the real benchmarks and the code that turns their files into rows.

All benchmarks share one pipeline (`plan_split`):

1. read the split's video ids (csv or text list) and the captions (from the split csv itself for
   MSR-VTT 1k-A, else from the benchmark's annotation file);
2. validate: malformed lines, duplicate ids, ids without captions, empty captions, videos missing
   from `video_dir` -- each is counted in a `DataReport` and skipped, or raised with
   `strict=True`;
3. lay out one row per caption, grouped by video in the split file's order, with `video_index`
   numbering the kept videos 0..V-1.

The benchmark table below is the only per-dataset code: which file lists each split's ids and where
its captions come from.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from .errors import (
    BenchmarkFileNotFoundError,
    BenchmarkValidationError,
    PathLike,
    SplitFileError,
    UnknownBenchmarkError,
)
from .eval_index import EvalIndex
from .formats import (
    CaptionRecord,
    IdRecord,
    read_caption_csv,
    read_id_csv,
    read_id_list,
    read_msrvtt_sentences,
    read_msvd_captions,
    read_vatex_captions,
)
from .report import DataReport
from .videos import index_video_dir

logger = logging.getLogger(__name__)

#: Where the original split and annotation files are published (CLIP2Video repository, `data/`).
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/CryhanFang/CLIP2Video/main/data"

#: Split names accepted as aliases.
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}

class CaptionSource(enum.Enum):
    """Where a split's captions come from."""

    SPLIT_CSV = "split_csv"  # the split csv itself (`sentence` column): MSR-VTT 1k-A test
    MSRVTT_JSON = "msrvtt_json"  # MSRVTT_data.json "sentences"
    MSVD_PICKLE = "msvd_pickle"  # raw-captions.pkl
    VATEX_JSON = "vatex_json"  # vatex_data.json "enCap"


ANNOTATION_FILES = {
    CaptionSource.SPLIT_CSV: None,
    CaptionSource.MSRVTT_JSON: "MSRVTT_data.json",
    CaptionSource.MSVD_PICKLE: "raw-captions.pkl",
    CaptionSource.VATEX_JSON: "vatex_data.json",
}


@dataclass(frozen=True)
class SplitSpec:
    """One split: the file listing its videos, the caption source, and the public video count."""

    ids_file: str
    captions: CaptionSource
    num_videos: int

    @property
    def annotation_file(self) -> Optional[str]:
        return ANNOTATION_FILES[self.captions]

    @property
    def files(self) -> tuple[str, ...]:
        return (self.ids_file,) + ((self.annotation_file,) if self.annotation_file else ())


@dataclass(frozen=True)
class BenchmarkSpec:
    """A real benchmark: its folder in the original `data/` tree and its splits."""

    name: str
    folder: str
    splits: Mapping[str, SplitSpec]
    description: str


_JSFUSION = SplitSpec("MSRVTT_JSFUSION_test.csv", CaptionSource.SPLIT_CSV, 1000)

BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "msrvtt-1k-a",
            "msrvtt_data",
            {"test": _JSFUSION},
            "MSR-VTT 1k-A test (JSFUSION): 1000 videos, one caption each.",
        ),
        BenchmarkSpec(
            "msrvtt-9k",
            "msrvtt_data",
            {"train": SplitSpec("MSRVTT_train.9k.csv", CaptionSource.MSRVTT_JSON, 9000), "test": _JSFUSION},
            "MSR-VTT 9k training videos (all their captions) with the 1k-A test.",
        ),
        BenchmarkSpec(
            "msrvtt-7k",
            "msrvtt_data",
            {"train": SplitSpec("MSRVTT_train.7k.csv", CaptionSource.MSRVTT_JSON, 7010), "test": _JSFUSION},
            "MSR-VTT 7k training videos (all their captions) with the 1k-A test.",
        ),
        BenchmarkSpec(
            "msrvtt-full",
            "msrvtt_data",
            {
                "train": SplitSpec("MSRVTT_train.full.csv", CaptionSource.MSRVTT_JSON, 6513),
                "validation": SplitSpec("MSRVTT_val.full.csv", CaptionSource.MSRVTT_JSON, 497),
                "test": SplitSpec("MSRVTT_test.full.csv", CaptionSource.MSRVTT_JSON, 2990),
            },
            "MSR-VTT full protocol: 6513/497/2990 videos, every caption (about 20 per video).",
        ),
        BenchmarkSpec(
            "msvd",
            "msvd_data",
            {
                "train": SplitSpec("train_list.txt", CaptionSource.MSVD_PICKLE, 1200),
                "validation": SplitSpec("val_list.txt", CaptionSource.MSVD_PICKLE, 100),
                "test": SplitSpec("test_list.txt", CaptionSource.MSVD_PICKLE, 670),
            },
            "MSVD: 1200/100/670 videos, every caption (about 40 per video).",
        ),
        BenchmarkSpec(
            "vatex-hgr",
            "vatex_data",
            {
                "train": SplitSpec("train_list.txt", CaptionSource.VATEX_JSON, 25991),
                "validation": SplitSpec("val_list.txt", CaptionSource.VATEX_JSON, 1500),
                "test": SplitSpec("test_list.txt", CaptionSource.VATEX_JSON, 1500),
            },
            "VATEX English, HGR split: 25991 train, 1500 validation, 1500 test videos, 10 captions each.",
        ),
        BenchmarkSpec(
            "vatex-1k5",
            "vatex_data",
            {
                "train": SplitSpec("train_list.txt", CaptionSource.VATEX_JSON, 25991),
                "test": SplitSpec("test1k5_sec_list.txt", CaptionSource.VATEX_JSON, 1500),
            },
            "VATEX English, the CLIP2Video authors' random 1.5k test split, 10 captions each.",
        ),
    )
}


def normalize_split(split: str) -> str:
    """`val` -> `validation`; other names unchanged (lower-cased)."""
    split = str(split).strip().lower()
    return SPLIT_ALIASES.get(split, split)


def get_split_spec(name: str, split: str) -> tuple[BenchmarkSpec, SplitSpec]:
    """Looks up a real benchmark and split, with a clear error listing the valid choices."""
    if name not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    split = normalize_split(split)
    if split not in spec.splits:
        raise UnknownBenchmarkError(
            f"benchmark {name!r} has no split {split!r}; choose one of {', '.join(spec.splits)}"
        )
    return spec, spec.splits[split]


def file_url(spec: BenchmarkSpec, filename: str, base_url: str = DEFAULT_BASE_URL) -> str:
    """Public download location of one of the benchmark's files."""
    return f"{base_url.rstrip('/')}/{spec.folder}/{filename}"


def find_data_file(data_dir: PathLike, spec: BenchmarkSpec, filename: str) -> str:
    """Finds `filename` in `data_dir` or in `data_dir/<folder>` (the original `data/` tree layout)."""
    data_dir = os.fspath(data_dir)
    candidates = [os.path.join(data_dir, filename), os.path.join(data_dir, spec.folder, filename)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise BenchmarkFileNotFoundError(filename, candidates)


def resolve_split_files(spec: BenchmarkSpec, split_spec: SplitSpec, data_dir: PathLike) -> dict[str, str]:
    """Local paths of the files a split needs, found in `data_dir`."""
    return {filename: find_data_file(data_dir, spec, filename) for filename in split_spec.files}


@dataclass
class SplitPlan:
    """The rows of one split (one per caption) and the validation report."""

    rows: list[dict]
    report: DataReport

    @property
    def eval_index(self) -> EvalIndex:
        return EvalIndex.from_columns(
            [row["video_index"] for row in self.rows], [row["video_id"] for row in self.rows]
        )


def _read_ids(path: str) -> tuple[list[IdRecord], list[SplitFileError]]:
    return read_id_csv(path) if path.lower().endswith(".csv") else read_id_list(path)


def _read_annotation(source: CaptionSource, path: str) -> tuple[dict[str, list[CaptionRecord]], list[SplitFileError]]:
    """Captions of every video in an annotation file, grouped by id (file order within a video)."""
    if source is CaptionSource.MSVD_PICKLE:
        return read_msvd_captions(path)
    if source is CaptionSource.VATEX_JSON:
        return read_vatex_captions(path)
    if source is CaptionSource.MSRVTT_JSON:
        records, issues = read_msrvtt_sentences(path)
        grouped: dict[str, list[CaptionRecord]] = {}
        for record in records:
            grouped.setdefault(record.video_id, []).append(record)
        return grouped, issues
    raise ValueError(f"{source} has no annotation file")


def _raise_or_record(issues: Sequence[SplitFileError], report: DataReport, strict: bool) -> None:
    if issues and strict:
        raise issues[0]
    report.malformed.extend(str(issue) for issue in issues)


def _unique_ids(records: Sequence, path: str, report: DataReport, strict: bool) -> list:
    """Keeps the first record of every video id; later ones are duplicates (recorded, or raised if strict)."""
    kept, seen = [], set()
    for record in records:
        if record.video_id in seen:
            if strict:
                where = getattr(record, "where", None) or f"line {record.line}"
                raise SplitFileError(path, f"duplicate video id {record.video_id!r}", entry=where)
            report.duplicate_ids.append(record.video_id)
            continue
        seen.add(record.video_id)
        kept.append(record)
    report.listed_videos = len(kept) + len(report.duplicate_ids)
    return kept


def _read_split_file(
    split_spec: SplitSpec, path: str, report: DataReport, strict: bool
) -> list[IdRecord] | list[CaptionRecord]:
    """Unique records of a split file: `CaptionRecord`s for the 1k-A csv, `IdRecord`s otherwise."""
    if split_spec.captions is CaptionSource.SPLIT_CSV:
        records, issues = read_caption_csv(path)
    else:
        records, issues = _read_ids(path)
    _raise_or_record(issues, report, strict)
    return _unique_ids(records, path, report, strict)


def list_video_ids(name: str, split: str, data_dir: PathLike, strict: bool = False) -> list[str]:
    """Video ids of a benchmark split, in order, read from the split file alone.

    Needs only the small split file (csv or list), not the large annotation files, so the split sizes
    can be checked without them. The synthetic benchmark is handled by `synthetic.list_video_ids`.

    Args:
        name: benchmark name, e.g. `"msrvtt-full"`.
        split: `"train"`, `"validation"` (or `"val"`) or `"test"`.
        data_dir: folder with the split files (flat, or the original `data/` tree with `msrvtt_data/` ...).
        strict: raise on malformed lines and duplicate ids instead of skipping them.
    """
    spec, split_spec = get_split_spec(name, split)
    report = DataReport(name, normalize_split(split))
    path = find_data_file(data_dir, spec, split_spec.ids_file)
    ids = [record.video_id for record in _read_split_file(split_spec, path, report, strict)]
    if report.has_problems:
        logger.warning("%s: %s", path, "; ".join(report.problem_lines()))
    return ids


def plan_split(
    name: str,
    split: str,
    files: Mapping[str, str],
    video_dir: Optional[PathLike] = None,
    strict: bool = False,
) -> SplitPlan:
    """Reads, validates and lays out one split of a real benchmark.

    Args:
        name: benchmark name.
        split: split name.
        files: local path of every file the split needs (`SplitSpec.files`), e.g. from
            `resolve_split_files` or from the download manager.
        video_dir: folder with the videos; `None` skips the video check and leaves `video` empty.
        strict: raise instead of skipping (see `BenchmarkValidationError`, `SplitFileError`).

    Returns:
        `SplitPlan` with rows `{video_id, video, caption, video_index}`.
    """
    spec, split_spec = get_split_spec(name, split)
    split = normalize_split(split)
    report = DataReport(name, split, videos_checked=video_dir is not None)
    ids_path = files[split_spec.ids_file]

    # 1. ids from the split file; captions from the same csv (1k-A) or from the annotation file
    records = _read_split_file(split_spec, ids_path, report, strict)
    ordered_ids = [record.video_id for record in records]
    if split_spec.captions is CaptionSource.SPLIT_CSV:
        captions = {
            record.video_id: [CaptionRecord(record.video_id, record.caption, f"{ids_path}: {record.where}")]
            for record in records
        }
    else:
        captions, issues = _read_annotation(split_spec.captions, files[split_spec.annotation_file])
        _raise_or_record(issues, report, strict)

    # 2. captions per video: drop empty ones, then videos left without captions
    kept_captions: dict[str, list[str]] = {}
    for video_id in ordered_ids:
        texts = []
        for record in captions.get(video_id, []):
            if record.caption:
                texts.append(record.caption)
            else:
                report.empty_captions.append(f"{video_id} ({record.where})")
        if texts:
            kept_captions[video_id] = texts
        else:
            report.videos_without_captions.append(video_id)

    # 3. videos on disk
    video_paths: dict[str, str] = {}
    if video_dir is not None:
        video_paths = index_video_dir(video_dir, wanted=set(kept_captions))
        report.missing_videos = [video_id for video_id in kept_captions if video_id not in video_paths]

    if strict and report.has_problems:
        raise BenchmarkValidationError(
            f"{name}/{split}: validation failed (strict=True): " + "; ".join(report.problem_lines()), report
        )

    # 4. rows: one per caption, grouped by video in split order
    rows = []
    missing = set(report.missing_videos)
    for video_id, texts in kept_captions.items():
        if video_id in missing:
            continue
        video_index = report.num_videos
        report.num_videos += 1
        for text in texts:
            rows.append(
                {"video_id": video_id, "video": video_paths.get(video_id), "caption": text, "video_index": video_index}
            )
    report.num_captions = len(rows)
    return SplitPlan(rows, report)


def read_benchmark(
    name: str, split: str, data_dir: PathLike, video_dir: Optional[PathLike] = None, strict: bool = False
) -> SplitPlan:
    """Reads and validates a split from local files without building a dataset.

    Gives the rows, the `DataReport` and the `eval_index` (caption -> video ground truth);
    no video is opened (only the `video_dir` listing is read).
    """
    spec, split_spec = get_split_spec(name, split)
    return plan_split(name, split, resolve_split_files(spec, split_spec, data_dir), video_dir=video_dir, strict=strict)
