"""Benchmark dataset builders for CLIP2Video (MSR-VTT, MSVD, VATEX) and the `synthetic-motion` set.

Entry points:

* `load_benchmark(name, split, data_dir=None, video_dir=None, cache_dir=None, strict=False, **options)`
  -> `datasets.Dataset` with columns `video_id`, `video`, `caption`, `video_index`;
* `get_eval_index(dataset)` -> `EvalIndex` (caption -> video ground truth and cut-off points);
* `list_video_ids(name, split, data_dir)` -> the split's video ids, from the split file alone;
* `read_benchmark(name, split, data_dir, video_dir)` -> rows + `DataReport`, without datasets;
* `synthetic_vocabulary()` -> the words of the synthetic captions;
* `read_moments(name, path, video_dir)` -> a Charades-STA, QVHighlights or ActivityNet Captions annotation file as a
  `datasets.Dataset` of clips (`MOMENT_FORMATS`).
"""

from .benchmarks import (
    BENCHMARKS,
    DEFAULT_BASE_URL,
    BenchmarkSpec,
    SplitPlan,
    SplitSpec,
    read_benchmark,
)
from .benchmarks import list_video_ids as _list_real_video_ids
from .builder import (
    BENCHMARK_NAMES,
    FEATURES,
    SYNTHETIC_NAME,
    Clip2VideoBenchmarkConfig,
    Clip2VideoBenchmarks,
    load_benchmark,
)
from .errors import (
    BenchmarkError,
    BenchmarkFileNotFoundError,
    BenchmarkValidationError,
    SplitFileError,
    UnknownBenchmarkError,
    UnsafePickleError,
)
from .eval_index import EvalIndex, get_eval_index
from .formats import load_plain_pickle
from .moment_annotations import MOMENT_FORMATS, read_moments
from .report import DataReport
from .synthetic import ORDER_INVARIANT_R1_CAP, SyntheticMotionConfig, synthetic_vocabulary
from .videos import VIDEO_EXTENSIONS


def list_video_ids(name: str, split: str, data_dir=None, strict: bool = False, **synthetic_options) -> list[str]:
    """Video ids of a benchmark split, in order, without reading annotations or videos.

    Real benchmarks read only the split file in `data_dir` (so split sizes can be checked without the
    large annotation files); `synthetic-motion` takes the `SyntheticMotionConfig` fields as keywords.
    """
    from .benchmarks import normalize_split
    from .synthetic import list_video_ids as _list_synthetic_video_ids

    if name == SYNTHETIC_NAME:
        return _list_synthetic_video_ids(normalize_split(split), SyntheticMotionConfig(**synthetic_options))
    if data_dir is None:
        raise ValueError(f"list_video_ids({name!r}, {split!r}) needs data_dir (the folder with the split files)")
    return _list_real_video_ids(name, split, data_dir, strict=strict)


__all__ = [
    "BENCHMARKS",
    "BENCHMARK_NAMES",
    "DEFAULT_BASE_URL",
    "FEATURES",
    "MOMENT_FORMATS",
    "ORDER_INVARIANT_R1_CAP",
    "SYNTHETIC_NAME",
    "VIDEO_EXTENSIONS",
    "BenchmarkError",
    "BenchmarkFileNotFoundError",
    "BenchmarkSpec",
    "BenchmarkValidationError",
    "Clip2VideoBenchmarkConfig",
    "Clip2VideoBenchmarks",
    "DataReport",
    "EvalIndex",
    "SplitFileError",
    "SplitPlan",
    "SplitSpec",
    "SyntheticMotionConfig",
    "UnknownBenchmarkError",
    "UnsafePickleError",
    "get_eval_index",
    "list_video_ids",
    "load_benchmark",
    "load_plain_pickle",
    "read_benchmark",
    "read_moments",
    "synthetic_vocabulary",
]
