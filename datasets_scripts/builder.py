"""The `GeneratorBasedBuilder` behind every benchmark, and the `load_benchmark` entry point.

datasets 5.x no longer runs dataset scripts through `load_dataset`, so the builder is used directly:

    >>> from datasets_scripts import load_benchmark, get_eval_index
    >>> test = load_benchmark("msrvtt-full", "test", data_dir="data/msrvtt_data", video_dir="videos/all")
    >>> index = get_eval_index(test)  # caption -> video ground truth, cut-off points

There is one builder class and one builder config per (benchmark, split), named
`"<benchmark>.<split>"` (e.g. `"msvd.test"`). Each config builds just its split, so a user with only
the test videos can build the test split in `strict=True` mode.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import datasets

from . import synthetic
from .benchmarks import (
    BENCHMARKS,
    DEFAULT_BASE_URL,
    file_url,
    find_data_file,
    get_split_spec,
    normalize_split,
    plan_split,
)
from .errors import UnknownBenchmarkError
from .report import DataReport
from .videos import video_dir_fingerprint

logger = logging.getLogger(__name__)

SYNTHETIC_NAME = "synthetic-motion"
BENCHMARK_NAMES: tuple[str, ...] = tuple(BENCHMARKS) + (SYNTHETIC_NAME,)

#: The one schema of every benchmark: one row per caption.
FEATURES = datasets.Features(
    {
        "video_id": datasets.Value("string"),
        "video": datasets.Value("string"),  # path of the video file or frame folder
        "caption": datasets.Value("string"),
        "video_index": datasets.Value("int32"),  # position of the video in the split's video list
    }
)

REPORT_FILENAME = "validation_report.json"
VERSION = datasets.Version("1.0.0")

_CITATION = """\
@article{fang2021clip2video,
  title={CLIP2Video: Mastering Video-Text Retrieval via Image CLIP},
  author={Fang, Han and Xiong, Pengfei and Xu, Luhui and Chen, Yu},
  journal={arXiv preprint arXiv:2106.11097},
  year={2021}
}
"""


@dataclass
class Clip2VideoBenchmarkConfig(datasets.BuilderConfig):
    """Builder config of one (benchmark, split).

    Args:
        benchmark (`str`): benchmark name, e.g. `"msrvtt-full"`.
        split (`str`): `"train"`, `"validation"` or `"test"`.
        video_dir (`str`, *optional*): folder with the videos (real benchmarks) or where to write
            them (synthetic); `None`: real benchmarks are built without checking videos (`video` empty).
        strict (`bool`, defaults to `False`): raise on any validation problem instead of skipping.
        base_url (`str`): where split/annotation files are downloaded from when `data_dir` is `None`.
        input_fingerprint (`str`): hash of the input files and video folder listing (cache key only).
        synthetic_options (`str`): json of the `SyntheticMotionConfig` fields (synthetic only).
    """

    benchmark: str = ""
    split: str = ""
    video_dir: Optional[str] = None
    strict: bool = False
    base_url: str = DEFAULT_BASE_URL
    input_fingerprint: str = ""
    synthetic_options: str = ""


def _builder_configs() -> list[Clip2VideoBenchmarkConfig]:
    configs = []
    for name, spec in BENCHMARKS.items():
        for split in spec.splits:
            configs.append(
                Clip2VideoBenchmarkConfig(
                    name=f"{name}.{split}", version=VERSION, benchmark=name, split=split, description=spec.description
                )
            )
    for split in synthetic.SPLITS:
        configs.append(
            Clip2VideoBenchmarkConfig(
                name=f"{SYNTHETIC_NAME}.{split}",
                version=VERSION,
                benchmark=SYNTHETIC_NAME,
                split=split,
                description="Synthetic coloured-shape videos whose captions need temporal order.",
            )
        )
    return configs


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """Hash of this package's source: a code change invalidates prepared datasets."""
    digest = hashlib.sha1()
    folder = os.path.dirname(os.path.abspath(__file__))
    for filename in sorted(os.listdir(folder)):
        if filename.endswith(".py"):
            with open(os.path.join(folder, filename), "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()[:16]


class Clip2VideoBenchmarks(datasets.GeneratorBasedBuilder):
    """Video-text retrieval benchmarks of CLIP2Video, one caption per row.

    Columns: `video_id` (str), `video` (path of the video file or frame folder), `caption` (str),
    `video_index` (int, the video's position in the split's video list; rows are grouped by video).
    """

    VERSION = VERSION
    BUILDER_CONFIG_CLASS = Clip2VideoBenchmarkConfig
    BUILDER_CONFIGS = _builder_configs()

    def __init__(self, *args, dataset_name: str = "clip2video_benchmarks", hash: Optional[str] = None, **kwargs):
        # the default hash keys the cache on this package's code, so a code change rebuilds the tables
        super().__init__(*args, dataset_name=dataset_name, hash=hash or _code_hash(), **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=self.config.description or "",
            features=FEATURES,
            homepage="https://github.com/CryhanFang/CLIP2Video",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        if self.config.benchmark == SYNTHETIC_NAME:
            rows = self._synthetic_rows()
        else:
            rows = self._benchmark_rows(dl_manager)
        return [datasets.SplitGenerator(name=self.config.split, gen_kwargs={"rows": rows})]

    def _synthetic_rows(self) -> list[dict]:
        config = synthetic.SyntheticMotionConfig(**json.loads(self.config.synthetic_options or "{}"))
        return synthetic.generate_split(config, self.config.split, root=self.config.video_dir)

    def _benchmark_rows(self, dl_manager) -> list[dict]:
        spec, split_spec = get_split_spec(self.config.benchmark, self.config.split)
        if self.config.data_dir:
            files = {name: find_data_file(self.config.data_dir, spec, name) for name in split_spec.files}
        else:
            urls = {name: file_url(spec, name, self.config.base_url) for name in split_spec.files}
            files = dl_manager.download(urls)
        plan = plan_split(
            self.config.benchmark, self.config.split, files, video_dir=self.config.video_dir, strict=self.config.strict
        )
        self._write_report(plan.report.to_dict())
        return plan.rows

    def _write_report(self, report: dict) -> None:
        output_dir = getattr(self, "_output_dir", None)
        if output_dir and os.path.isdir(output_dir):
            with open(os.path.join(output_dir, REPORT_FILENAME), "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=1)

    def _generate_examples(self, rows: list[dict]):
        for key, row in enumerate(rows):
            yield key, row


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------

_COMMON_OPTIONS = ("download_mode",)
_REAL_OPTIONS = _COMMON_OPTIONS + ("base_url",)
_SYNTHETIC_OPTIONS = (
    _COMMON_OPTIONS
    + tuple(field.name for field in dataclasses.fields(synthetic.SyntheticMotionConfig))
    + ("num_proc",)
)


def _check_options(name: str, options: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"load_benchmark({name!r}) got unknown option(s) {unknown}; allowed: {', '.join(allowed)}")


def _file_fingerprint(paths: list[str]) -> str:
    digest = hashlib.sha1()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _real_config_kwargs(name: str, split: str, data_dir, video_dir, strict: bool, options: dict) -> dict:
    spec, split_spec = get_split_spec(name, split)
    base_url = options.get("base_url", DEFAULT_BASE_URL)
    if data_dir is not None:
        files = [find_data_file(data_dir, spec, filename) for filename in split_spec.files]  # fail early
        inputs = _file_fingerprint(files)
    else:
        inputs = hashlib.sha1(base_url.encode()).hexdigest()[:16]
    if video_dir is None:
        logger.warning(
            "%s/%s: no video_dir given; videos are not checked and the `video` column is empty", name, split
        )
    return {
        "data_dir": os.path.abspath(os.fspath(data_dir)) if data_dir is not None else None,
        "video_dir": os.path.abspath(os.fspath(video_dir)) if video_dir is not None else None,
        "strict": bool(strict),
        "base_url": base_url,
        "input_fingerprint": f"{inputs}-{video_dir_fingerprint(video_dir)}",
    }


def _synthetic_root(video_dir, cache_dir) -> str:
    """Where generated videos go: `video_dir`, else `<cache_dir>/clip2video`, else the default cache root."""
    if video_dir is not None:
        return os.path.abspath(os.fspath(video_dir))
    if cache_dir is not None:
        return os.path.abspath(os.path.join(os.fspath(cache_dir), "clip2video"))
    return os.path.abspath(synthetic.default_cache_root())


def _synthetic_config_kwargs(split: str, video_dir, cache_dir, options: dict) -> dict:
    field_names = {field.name for field in dataclasses.fields(synthetic.SyntheticMotionConfig)}
    config = synthetic.SyntheticMotionConfig(**{k: v for k, v in options.items() if k in field_names})
    root = _synthetic_root(video_dir, cache_dir)
    # generate (or find) the videos first, so they exist even when the prepared table comes from the cache
    synthetic.generate_split(config, split, root=root, num_proc=options.get("num_proc"))
    return {
        "video_dir": root,
        "synthetic_options": json.dumps(dataclasses.asdict(config), sort_keys=True),
        "input_fingerprint": config.fingerprint(),
    }


def load_benchmark(
    name: str,
    split: str,
    data_dir: Optional[str] = None,
    video_dir: Optional[str] = None,
    cache_dir: Optional[str] = None,
    strict: bool = False,
    **options: Any,
) -> datasets.Dataset:
    """Builds (or reuses from the cache) one split of a benchmark as a `datasets.Dataset`.

    Args:
        name: one of `BENCHMARK_NAMES`: `msrvtt-1k-a`, `msrvtt-9k`, `msrvtt-7k`, `msrvtt-full`, `msvd`,
            `vatex-hgr`, `vatex-1k5`, `synthetic-motion`.
        split: `"train"`, `"validation"` (alias `"val"`) or `"test"`, as the benchmark has them.
        data_dir: folder with the split/annotation files (flat, or the original `data/` tree with
            `msrvtt_data/`, `msvd_data/`, `vatex_data/`). `None`: download them from their public
            location (`base_url`). Ignored by `synthetic-motion`.
        video_dir: folder with the videos, matched by id (`<id>.mp4|avi|webm|mkv...` or a frame folder
            `<id>/`). `None`: no video check, `video` column empty. For `synthetic-motion`: where
            to write the generated videos (default: under `cache_dir`, else `$CLIP2VIDEO_CACHE` or the
            datasets cache).
        cache_dir: datasets cache folder for the prepared table (default: datasets' own).
        strict: raise on malformed lines, duplicate ids, empty captions, videos without captions or
            missing on disk, instead of logging and skipping them.
        **options: `download_mode` (datasets `DownloadMode` or its string); real benchmarks:
            `base_url`; `synthetic-motion`: `seed`, `train_size`, `test_size`, `num_frames`,
            `frame_size`, `fps` (see `SyntheticMotionConfig`) and `num_proc`.

    Returns:
        `datasets.Dataset` with columns `video_id`, `video`, `caption`, `video_index`; one row per
        caption, grouped by video in the split's order (use `get_eval_index` for evaluation).

    Raises:
        UnknownBenchmarkError: unknown name or split.
        BenchmarkFileNotFoundError: a needed file is not in `data_dir`.
        SplitFileError: a file is malformed (always for unreadable files; per line with `strict=True`).
        BenchmarkValidationError: `strict=True` and validation found problems.
    """
    split = normalize_split(split)
    if name == SYNTHETIC_NAME:
        _check_options(name, options, _SYNTHETIC_OPTIONS)
        config_kwargs = _synthetic_config_kwargs(split, video_dir, cache_dir, options)
    elif name in BENCHMARKS:
        _check_options(name, options, _REAL_OPTIONS)
        config_kwargs = _real_config_kwargs(name, split, data_dir, video_dir, strict, options)
    else:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARK_NAMES)}")

    builder = Clip2VideoBenchmarks(cache_dir=cache_dir, config_name=f"{name}.{split}", **config_kwargs)
    builder.download_and_prepare(download_mode=options.get("download_mode"))
    dataset = builder.as_dataset(split=split)
    _log_report(builder)
    return dataset


def _log_report(builder: Clip2VideoBenchmarks) -> None:
    """Logs the validation report saved with a prepared split (also when it came from the cache)."""
    path = os.path.join(builder.cache_dir, REPORT_FILENAME)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            DataReport.from_dict(json.load(handle)).log(logger)
