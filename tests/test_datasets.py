"""Tests of `datasets_scripts`: the benchmark builders on tiny fake copies of the original files, and
the synthetic temporal benchmark.

The fake files are written here, in the exact original formats (csv headers, json layouts, pickle
of token lists). Tests on the full-size public split files run when `CLIP2VIDEO_SPLITS_DIR` names a
folder with `msrvtt_data/`, `msvd_data/` and `vatex_data/` (`.ci/run` points it at the team copy).
"""

import json
import logging
import os
import pickle
import shutil
import time

import numpy as np
import pytest

try:
    import decord
except ImportError:  # optional here: PyAV decodes the videos too
    decord = None

from datasets_scripts import (
    BENCHMARK_NAMES,
    DEFAULT_BASE_URL,
    ORDER_INVARIANT_R1_CAP,
    BenchmarkFileNotFoundError,
    BenchmarkValidationError,
    Clip2VideoBenchmarks,
    SplitFileError,
    SyntheticMotionConfig,
    UnknownBenchmarkError,
    UnsafePickleError,
    get_eval_index,
    list_video_ids,
    load_benchmark,
    load_plain_pickle,
    read_benchmark,
    synthetic,
    synthetic_vocabulary,
)
from datasets_scripts.synthetic import Event, all_captions, decode_video, encode_video
from datasets_scripts.videos import index_video_dir

# ------------------------------------------------------------------------------------------------
# Tiny fake benchmark, in the original formats
# ------------------------------------------------------------------------------------------------

# MSR-VTT: 10 videos; the json lists sentences interleaved (not grouped by video) on purpose.
MSRVTT_CAPTIONS = {f"video{i}": [f"clip {i} caption {k}" for k in range(2 + i % 3)] for i in range(10)}
JSFUSION_ROWS = [
    ("ret0", "msr7", "video7", "a man sings"),
    ("ret1", "msr8", "video8", "a dog runs"),
    ("ret2", "msr9", "video9", "two cars race"),
]
MSRVTT_SPLITS = {
    "MSRVTT_train.9k.csv": ["video0", "video1", "video2", "video3", "video4", "video5", "video6"],
    "MSRVTT_train.7k.csv": ["video0", "video1", "video2", "video3", "video4"],
    "MSRVTT_train.full.csv": ["video0", "video1", "video2"],
    "MSRVTT_val.full.csv": ["video3"],
    "MSRVTT_test.full.csv": ["video4", "video5", "video6"],
}
MSVD_SPLITS = {
    "train_list.txt": ["-4wsuPCjDBc_5_15", "-7KMZQEsJW4_205_208"],
    "val_list.txt": ["bQJQGoJF7_k_162_169"],
    "test_list.txt": ["eyhzdC936uk_15_27", "f-24IxG9ijw_25_40", "zv2RIbUsnSw_159_164"],
}
MSVD_CAPTIONS = {
    video_id: [["a", "person", "does", f"thing{k}", str(n)] for k in range(1 + n % 3)]
    for n, video_id in enumerate(sum(MSVD_SPLITS.values(), []))
}
VATEX_SPLITS = {
    "train_list.txt": ["Ptf_2VRj-V0_000122_000132", "CBL6uetTPHg_000089_000099"],
    "val_list.txt": ["3c0hLqxvSSI_000000_000010", "nM_ySHgMPW0_000000_000010"],
    "test_list.txt": ["sf2PPeXQrUA_000000_000010", "rIJPGdtdaHg_000006_000016"],
    "test1k5_sec_list.txt": ["nM_ySHgMPW0_000000_000010", "rIJPGdtdaHg_000006_000016"],
}
VATEX_IDS = sorted(set(sum(VATEX_SPLITS.values(), [])))
VATEX_CAPTIONS = {video_id: [f"english caption {k} of {video_id}" for k in range(10)] for video_id in VATEX_IDS}


def write_lines(path, lines, trailing_newline=True):
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    path.write_text(text, encoding="utf-8")


def write_fake_data(root):
    """Writes msrvtt_data/, msvd_data/, vatex_data/ under `root` in the original formats."""
    msrvtt = root / "msrvtt_data"
    msrvtt.mkdir(parents=True)
    write_lines(
        msrvtt / "MSRVTT_JSFUSION_test.csv",
        ["key,vid_key,video_id,sentence"] + [",".join(row) for row in JSFUSION_ROWS],
    )
    for filename, ids in MSRVTT_SPLITS.items():
        write_lines(msrvtt / filename, ["video_id"] + ids)
    sentences, sen_id = [], 0
    for k in range(max(len(c) for c in MSRVTT_CAPTIONS.values())):
        for video_id, captions in MSRVTT_CAPTIONS.items():
            if k < len(captions):
                sentences.append({"caption": captions[k], "video_id": video_id, "sen_id": sen_id})
                sen_id += 1
    annotation = {
        "info": {"year": 2016},
        "videos": [{"video_id": video_id, "id": n, "split": "train"} for n, video_id in enumerate(MSRVTT_CAPTIONS)],
        "sentences": sentences,
    }
    (msrvtt / "MSRVTT_data.json").write_text(json.dumps(annotation), encoding="utf-8")

    msvd = root / "msvd_data"
    msvd.mkdir()
    for filename, ids in MSVD_SPLITS.items():
        write_lines(msvd / filename, ids, trailing_newline=False)  # the original lists end without newline
    with open(msvd / "raw-captions.pkl", "wb") as handle:
        pickle.dump(MSVD_CAPTIONS, handle)

    vatex = root / "vatex_data"
    vatex.mkdir()
    for filename, ids in VATEX_SPLITS.items():
        write_lines(vatex / filename, ids)
    vatex_json = {
        video_id: {"enCap": captions, "chCap": ["中文"] * 10} for video_id, captions in VATEX_CAPTIONS.items()
    }
    (vatex / "vatex_data.json").write_text(json.dumps(vatex_json, ensure_ascii=False), encoding="utf-8")


def write_fake_videos(folder, video_ids):
    """One tiny real mp4 per id; a few ids as .avi/.webm names or as a frame folder instead."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    frames[:, 4:8, 4:8] = 255
    template = folder / "_template.mp4"
    encode_video(frames, str(template), fps=5)
    for n, video_id in enumerate(video_ids):
        if n % 7 == 3:
            (folder / video_id).mkdir()
            (folder / video_id / "00000001.jpg").write_bytes(b"\xff\xd8\xff")  # frame folder layout
        else:
            extension = {1: ".avi", 2: ".webm"}.get(n % 7, ".mp4")
            shutil.copyfile(template, folder / f"{video_id}{extension}")
    template.unlink()


ALL_VIDEO_IDS = list(MSRVTT_CAPTIONS) + list(MSVD_CAPTIONS) + VATEX_IDS


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """(data_dir, video_dir, cache_dir) of the complete fake benchmark."""
    root = tmp_path_factory.mktemp("benchmarks")
    write_fake_data(root / "data")
    write_fake_videos(root / "videos", ALL_VIDEO_IDS)
    return root / "data", root / "videos", root / "cache"


@pytest.fixture
def fake_copy(fake, tmp_path):
    """A private copy of the fake data and videos, for tests that damage them."""
    data_dir, video_dir, _ = fake
    shutil.copytree(data_dir, tmp_path / "data")
    shutil.copytree(video_dir, tmp_path / "videos")
    return tmp_path / "data", tmp_path / "videos", tmp_path / "cache"


def load(fake_dirs, name, split, **kwargs):
    data_dir, video_dir, cache_dir = fake_dirs
    return load_benchmark(
        name, split, data_dir=str(data_dir), video_dir=str(video_dir), cache_dir=str(cache_dir), **kwargs
    )


# ------------------------------------------------------------------------------------------------
# Structure of each benchmark
# ------------------------------------------------------------------------------------------------


def test_every_benchmark_has_a_config_per_split():
    names = {config.name for config in Clip2VideoBenchmarks.BUILDER_CONFIGS}
    assert "msrvtt-full.validation" in names and "vatex-1k5.test" in names and "synthetic-motion.train" in names
    assert set(BENCHMARK_NAMES) == {
        "msrvtt-1k-a",
        "msrvtt-9k",
        "msrvtt-7k",
        "msrvtt-full",
        "msvd",
        "vatex-hgr",
        "vatex-1k5",
        "synthetic-motion",
    }


def test_msrvtt_1k_a_is_single_caption_from_the_csv(fake):
    dataset = load(fake, "msrvtt-1k-a", "test")
    assert dataset.column_names == ["video_id", "video", "caption", "video_index"]
    assert dataset["video_id"] == ["video7", "video8", "video9"]
    assert dataset["caption"] == ["a man sings", "a dog runs", "two cars race"]
    assert dataset["video_index"] == [0, 1, 2]
    assert all(os.path.basename(path).startswith(vid) for path, vid in zip(dataset["video"], dataset["video_id"]))
    index = get_eval_index(dataset)
    assert index.is_single_caption and index.caption_to_video == (0, 1, 2) and index.cut_off_points == (1, 2, 3)


@pytest.mark.parametrize("name,csv_name", [("msrvtt-9k", "MSRVTT_train.9k.csv"), ("msrvtt-7k", "MSRVTT_train.7k.csv")])
def test_msrvtt_train_takes_every_json_sentence_of_the_csv_videos(fake, name, csv_name):
    dataset = load(fake, name, "train")
    expected = [(vid, caption) for vid in MSRVTT_SPLITS[csv_name] for caption in MSRVTT_CAPTIONS[vid]]
    assert list(zip(dataset["video_id"], dataset["caption"])) == expected
    index = get_eval_index(dataset)
    assert index.video_ids == tuple(MSRVTT_SPLITS[csv_name])
    # the 9k/7k benchmarks are evaluated on the 1k-A test
    assert load(fake, name, "test")["video_id"] == ["video7", "video8", "video9"]


def test_msrvtt_full_groups_interleaved_json_sentences_by_video(fake):
    for split, csv_name in [
        ("train", "MSRVTT_train.full.csv"),
        ("val", "MSRVTT_val.full.csv"),
        ("test", "MSRVTT_test.full.csv"),
    ]:
        dataset = load(fake, "msrvtt-full", split)
        ids = MSRVTT_SPLITS[csv_name]
        counts = [len(MSRVTT_CAPTIONS[vid]) for vid in ids]
        index = get_eval_index(dataset)
        assert index.video_ids == tuple(ids)
        assert index.cut_off_points == tuple(np.cumsum(counts))
        assert index.caption_to_video == tuple(np.repeat(np.arange(len(ids)), counts))
        assert dataset["caption"] == [c for vid in ids for c in MSRVTT_CAPTIONS[vid]]  # json order within a video
    assert index.first_caption_rows == (0, 3, 7)  # video4, video5, video6 have 3, 4, 2 captions


def test_msvd_joins_token_lists_and_keeps_pickle_order(fake):
    for split, filename in [("train", "train_list.txt"), ("validation", "val_list.txt"), ("test", "test_list.txt")]:
        dataset = load(fake, "msvd", split)
        ids = MSVD_SPLITS[filename]
        assert get_eval_index(dataset).video_ids == tuple(ids)
        assert dataset["caption"] == [" ".join(tokens) for vid in ids for tokens in MSVD_CAPTIONS[vid]]
    assert get_eval_index(dataset).captions_per_video == (1, 2, 3)


@pytest.mark.parametrize(
    "name,split,filename",
    [
        ("vatex-hgr", "train", "train_list.txt"),
        ("vatex-hgr", "validation", "val_list.txt"),
        ("vatex-hgr", "test", "test_list.txt"),
        ("vatex-1k5", "test", "test1k5_sec_list.txt"),
    ],
)
def test_vatex_takes_the_ten_english_captions(fake, name, split, filename):
    dataset = load(fake, name, split)
    ids = VATEX_SPLITS[filename]
    index = get_eval_index(dataset)
    assert index.video_ids == tuple(ids) and index.captions_per_video == (10,) * len(ids)
    assert dataset["caption"] == [c for vid in ids for c in VATEX_CAPTIONS[vid]]


def test_builder_can_be_used_directly(fake, tmp_path):
    """The datasets 5.x way without `load_benchmark`: builder + download_and_prepare + as_dataset."""
    data_dir, video_dir, _ = fake
    builder = Clip2VideoBenchmarks(
        config_name="vatex-1k5.test", data_dir=str(data_dir), video_dir=str(video_dir), cache_dir=str(tmp_path)
    )
    builder.download_and_prepare()
    dataset = builder.as_dataset(split="test")
    assert dataset["video_id"][::10] == VATEX_SPLITS["test1k5_sec_list.txt"]
    assert str(builder.config.version) == "1.0.0" and "clip2video_benchmarks" in builder.cache_dir


def test_read_benchmark_gives_the_eval_index_without_datasets(fake):
    data_dir, video_dir, _ = fake
    plan = read_benchmark("msvd", "test", data_dir / "msvd_data", video_dir)  # flat data_dir layout works too
    assert plan.eval_index.cut_off_points == (1, 3, 6)
    assert plan.report.num_videos == 3 and plan.report.num_captions == 6 and not plan.report.has_problems


def test_video_lookup_matches_extensions_and_frame_folders(fake):
    _, video_dir, _ = fake
    found = index_video_dir(video_dir)
    assert set(found) == set(ALL_VIDEO_IDS)
    assert found["video1"].endswith("video1.avi") and found["video2"].endswith("video2.webm")
    assert os.path.isdir(found["video3"])  # frame folder
    empty = video_dir.parent / "empty_frames"
    (empty / "video0").mkdir(parents=True, exist_ok=True)  # a folder without images is not a video
    assert index_video_dir(empty) == {}


def test_video_dir_none_builds_captions_without_paths(fake, caplog):
    data_dir, _, cache_dir = fake
    with caplog.at_level(logging.WARNING):
        dataset = load_benchmark("msrvtt-1k-a", "test", data_dir=str(data_dir), cache_dir=str(cache_dir))
    assert dataset["video"] == [None, None, None] and len(dataset) == 3
    assert "no video_dir" in caplog.text


def test_eval_index_refuses_a_shuffled_split(fake):
    dataset = load(fake, "msrvtt-full", "test").shuffle(seed=1)
    with pytest.raises(ValueError, match="grouped by video"):
        get_eval_index(dataset)


def test_unknown_names_splits_and_options(fake):
    with pytest.raises(UnknownBenchmarkError, match="msrvtt-1k-a"):
        load(fake, "msrvtt-1ka", "test")
    with pytest.raises(UnknownBenchmarkError, match="no split 'validation'"):
        load(fake, "vatex-1k5", "val")
    with pytest.raises(TypeError, match="base_urll"):
        load(fake, "msvd", "test", base_urll="x")


def test_missing_annotation_file_names_the_file(fake_copy):
    data_dir, _, _ = fake_copy
    (data_dir / "msvd_data" / "raw-captions.pkl").unlink()
    with pytest.raises(BenchmarkFileNotFoundError, match="raw-captions.pkl"):
        load(fake_copy, "msvd", "test")


def test_download_path_uses_the_public_urls(fake, tmp_path):
    """`data_dir=None` downloads each file with the download manager (mocked here: no network)."""
    data_dir, video_dir, _ = fake

    class FakeDownloadManager:
        def __init__(self):
            self.urls = None

        def download(self, urls):
            self.urls = dict(urls)
            return {name: str(data_dir / url.split("/data/", 1)[1]) for name, url in urls.items()}

    builder = Clip2VideoBenchmarks(config_name="msvd.test", cache_dir=str(tmp_path), video_dir=str(video_dir))
    manager = FakeDownloadManager()
    (generator,) = builder._split_generators(manager)
    assert manager.urls == {
        "test_list.txt": f"{DEFAULT_BASE_URL}/msvd_data/test_list.txt",
        "raw-captions.pkl": f"{DEFAULT_BASE_URL}/msvd_data/raw-captions.pkl",
    }
    assert DEFAULT_BASE_URL == "https://raw.githubusercontent.com/CryhanFang/CLIP2Video/main/data"
    assert [row["video_id"] for row in generator.gen_kwargs["rows"]][:1] == ["eyhzdC936uk_15_27"]


# ------------------------------------------------------------------------------------------------
# Validation: missing videos, duplicates, empty captions, malformed files, strict mode
# ------------------------------------------------------------------------------------------------


def test_missing_videos_are_counted_skipped_and_logged(fake_copy, caplog):
    data_dir, video_dir, _ = fake_copy
    for path in video_dir.glob("video5.*"):
        path.unlink()
    for path in video_dir.glob("video4.*"):
        path.unlink()
    with caplog.at_level(logging.WARNING):
        dataset = load(fake_copy, "msrvtt-full", "test")
    assert "2 video(s) missing from video_dir" in caplog.text and "video4, video5" in caplog.text
    index = get_eval_index(dataset)
    assert index.video_ids == ("video6",) and index.caption_to_video == (0,) * len(MSRVTT_CAPTIONS["video6"])
    report = read_benchmark("msrvtt-full", "test", data_dir, video_dir).report
    assert report.missing_videos == ["video4", "video5"] and report.listed_videos == 3 and report.num_videos == 1
    with pytest.raises(BenchmarkValidationError, match="2 video.*missing") as error:
        load(fake_copy, "msrvtt-full", "test", strict=True)
    assert error.value.report.missing_videos == ["video4", "video5"]


def test_cache_is_rebuilt_when_videos_change(fake_copy):
    _, video_dir, _ = fake_copy
    assert len(load(fake_copy, "msrvtt-1k-a", "test")) == 3
    assert len(load(fake_copy, "msrvtt-1k-a", "test")) == 3  # reused
    for path in video_dir.glob("video8.*"):
        path.unlink()
    assert load(fake_copy, "msrvtt-1k-a", "test")["video_id"] == ["video7", "video9"]


def test_duplicates_empty_captions_and_videos_without_captions(fake_copy, caplog):
    data_dir, video_dir, _ = fake_copy
    ids = MSVD_SPLITS["test_list.txt"]
    write_lines(data_dir / "msvd_data" / "test_list.txt", ids + [ids[0], "notInPickle_1_2"])
    captions = dict(MSVD_CAPTIONS)
    captions[ids[2]] = [["a", "cat"], [], [" "]]  # two empty captions
    with open(data_dir / "msvd_data" / "raw-captions.pkl", "wb") as handle:
        pickle.dump(captions, handle)
    with caplog.at_level(logging.WARNING):
        plan = read_benchmark("msvd", "test", data_dir, video_dir)
        load(fake_copy, "msvd", "test")
    report = plan.report
    assert report.duplicate_ids == [ids[0]]
    assert report.videos_without_captions == ["notInPickle_1_2"]
    assert len(report.empty_captions) == 2
    assert report.listed_videos == 5 and report.num_videos == 3 and report.num_captions == 1 + 2 + 1
    assert "1 duplicate video id(s)" in caplog.text and "2 empty caption(s)" in caplog.text
    with pytest.raises(SplitFileError, match=r"test_list.txt: line 4: duplicate video id"):
        read_benchmark("msvd", "test", data_dir, video_dir, strict=True)


def test_malformed_lines_are_skipped_or_raised(fake_copy):
    data_dir, video_dir, _ = fake_copy
    path = data_dir / "vatex_data" / "test_list.txt"
    write_lines(path, [VATEX_SPLITS["test_list.txt"][0], "two ids here", VATEX_SPLITS["test_list.txt"][1]])
    plan = read_benchmark("vatex-hgr", "test", data_dir, video_dir)
    assert plan.report.num_videos == 2 and len(plan.report.malformed) == 1
    assert "test_list.txt: line 2: expected one video id" in plan.report.malformed[0]
    with pytest.raises(SplitFileError) as error:
        load(fake_copy, "vatex-hgr", "test", strict=True)
    assert error.value.line == 2 and error.value.path == str(path)


@pytest.mark.parametrize(
    "filename,content,message",
    [
        (
            "msrvtt_data/MSRVTT_test.full.csv",
            "vid\nvideo4\n",
            r"MSRVTT_test.full.csv: line 1: csv header 'vid' lacks column\(s\) video_id",
        ),
        ("msrvtt_data/MSRVTT_data.json", '{"sentences": [', r"MSRVTT_data.json: line 1: not valid json"),
        (
            "msrvtt_data/MSRVTT_data.json",
            '{"videos": []}',
            r'MSRVTT_data.json: expected a json object with a "sentences" list',
        ),
        ("msrvtt_data/MSRVTT_test.full.csv", b"video_id\nvid\xff\n", r"MSRVTT_test.full.csv: not UTF-8"),
    ],
)
def test_malformed_files_raise_a_typed_error_naming_the_file(fake_copy, filename, content, message):
    data_dir, video_dir, _ = fake_copy
    target = data_dir / filename
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SplitFileError, match=message):
        read_benchmark("msrvtt-full", "test", data_dir, video_dir)


def test_malformed_json_entries_and_csv_rows(fake_copy):
    data_dir, video_dir, _ = fake_copy
    annotation = json.loads((data_dir / "msrvtt_data" / "MSRVTT_data.json").read_text())
    annotation["sentences"].insert(1, {"caption": "no id"})
    (data_dir / "msrvtt_data" / "MSRVTT_data.json").write_text(json.dumps(annotation))
    report = read_benchmark("msrvtt-full", "test", data_dir, video_dir).report
    assert report.malformed == [
        "%s: sentences[1]: missing or invalid video_id None" % (data_dir / "msrvtt_data" / "MSRVTT_data.json")
    ]
    (data_dir / "msrvtt_data" / "MSRVTT_JSFUSION_test.csv").write_text(
        "key,vid_key,video_id,sentence\nret0,msr7,video7\n"
    )
    with pytest.raises(SplitFileError, match=r"MSRVTT_JSFUSION_test.csv: line 2: expected 4 fields, got 3"):
        read_benchmark("msrvtt-1k-a", "test", data_dir, video_dir, strict=True)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused(fake_copy, tmp_path, monkeypatch, protocol):
    data_dir, video_dir, _ = fake_copy
    monkeypatch.chdir(tmp_path)
    path = data_dir / "msvd_data" / "raw-captions.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"eyhzdC936uk_15_27": [_Exploit()]}, handle, protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"raw-captions.pkl: refusing to load global (posix|nt|os)\.system"):
        read_benchmark("msvd", "test", data_dir, video_dir)
    with pytest.raises(UnsafePickleError):
        load(fake_copy, "msvd", "test")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_plain_pickle_loader_accepts_data_and_rejects_non_pickles(tmp_path):
    path = tmp_path / "ok.pkl"
    data = {"a": [["x", "y"], ("z",)], "b": {"n": 1, "f": 2.5, "raw": b"bytes", "none": None}}
    path.write_bytes(pickle.dumps(data))
    assert load_plain_pickle(path) == data
    path.write_bytes(pickle.dumps({1, 2}, protocol=2))  # a set needs builtins.set in protocol 2
    with pytest.raises(UnsafePickleError, match=r"refusing to load global (__builtin__|builtins)\.set"):
        load_plain_pickle(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(SplitFileError, match="ok.pkl: not a readable pickle"):
        load_plain_pickle(path)
    path.write_bytes(pickle.dumps(["not", "a", "dict"]))
    (tmp_path / "msvd_data").mkdir()
    shutil.copyfile(path, tmp_path / "msvd_data" / "raw-captions.pkl")
    write_lines(tmp_path / "msvd_data" / "test_list.txt", ["abc"])
    with pytest.raises(SplitFileError, match="expected a pickled dict"):
        read_benchmark("msvd", "test", tmp_path)


# ------------------------------------------------------------------------------------------------
# Full-size public split files (split lists only; the annotation files are not needed)
# ------------------------------------------------------------------------------------------------

SPLITS_DIR = os.environ.get("CLIP2VIDEO_SPLITS_DIR")
needs_splits = pytest.mark.skipif(not SPLITS_DIR, reason="CLIP2VIDEO_SPLITS_DIR is not set")

FULL_COUNTS = {
    ("msrvtt-1k-a", "test"): 1000,
    ("msrvtt-9k", "train"): 9000,
    ("msrvtt-9k", "test"): 1000,
    ("msrvtt-7k", "train"): 7010,
    ("msrvtt-full", "train"): 6513,
    ("msrvtt-full", "validation"): 497,
    ("msrvtt-full", "test"): 2990,
    ("msvd", "train"): 1200,
    ("msvd", "validation"): 100,
    ("msvd", "test"): 670,
    ("vatex-hgr", "train"): 25991,
    ("vatex-hgr", "validation"): 1500,
    ("vatex-hgr", "test"): 1500,
    ("vatex-1k5", "train"): 25991,
    ("vatex-1k5", "test"): 1500,
}


@needs_splits
@pytest.mark.parametrize("name,split", list(FULL_COUNTS))
def test_full_size_split_counts(name, split):
    ids = list_video_ids(name, split, SPLITS_DIR, strict=True)
    assert len(ids) == len(set(ids)) == FULL_COUNTS[name, split]


@needs_splits
def test_full_size_split_relations():
    ids = {key: set(list_video_ids(*key, SPLITS_DIR)) for key in FULL_COUNTS}
    assert not ids["msrvtt-9k", "train"] & ids["msrvtt-1k-a", "test"]
    assert len(ids["msrvtt-9k", "train"] | ids["msrvtt-1k-a", "test"]) == 10000
    full = [ids["msrvtt-full", s] for s in ("train", "validation", "test")]
    assert sum(map(len, full)) == len(set.union(*full)) == 10000
    assert ids["msrvtt-7k", "train"] == full[0] | full[1]
    assert len(ids["msrvtt-9k", "train"] & full[2]) == 1990  # 9k train overlaps the full test split
    assert not ids["vatex-hgr", "validation"] & ids["vatex-hgr", "test"]
    random_test = ids["vatex-1k5", "test"]
    assert (
        len(random_test & ids["vatex-hgr", "validation"]) == 776 and len(random_test & ids["vatex-hgr", "test"]) == 724
    )


@needs_splits
def test_full_size_split_files_build_with_a_fake_annotation(tmp_path):
    """The real MSVD test list + a generated pickle -> 670 videos, cut-off points per video."""
    ids = list_video_ids("msvd", "test", SPLITS_DIR)
    shutil.copyfile(os.path.join(SPLITS_DIR, "msvd_data", "test_list.txt"), tmp_path / "test_list.txt")
    with open(tmp_path / "raw-captions.pkl", "wb") as handle:
        pickle.dump({vid: [["caption", str(k)] for k in range(1 + n % 4)] for n, vid in enumerate(ids)}, handle)
    plan = read_benchmark("msvd", "test", tmp_path)
    assert plan.eval_index.num_videos == 670
    assert plan.eval_index.cut_off_points[-1] == sum(1 + n % 4 for n in range(670))


# ------------------------------------------------------------------------------------------------
# synthetic-motion
# ------------------------------------------------------------------------------------------------

SMALL = dict(train_size=8, test_size=10)


def test_every_event_reverses_to_another_caption_and_the_vocabulary_covers_them():
    captions = all_captions()
    assert len(captions) == len(set(captions)) == synthetic.max_test_size()
    words = set(synthetic_vocabulary()["words"])
    for kind in synthetic.EVENT_KINDS:
        for event, reverse in synthetic.event_pairs(kind):
            assert event.reversed() == reverse and reverse.reversed() == event
            assert event.caption != reverse.caption
            assert {w.strip(",") for w in event.caption.split()} <= words
    assert Event("move", ("red", "square", "left", "right")).caption == "a red square moves from left to right"
    assert (
        Event("sequence", ("blue", "circle", "green", "triangle")).reversed().caption
        == "a green triangle appears, then a blue circle"
    )
    assert Event("size", ("orange", "cross", "grows")).caption == "an orange cross grows"


def test_synthetic_is_deterministic(tmp_path):
    config = SyntheticMotionConfig(seed=3, **SMALL)
    first = {s: synthetic.generate_split(config, s, root=str(tmp_path / "a")) for s in ("train", "test")}
    again = {s: synthetic.generate_split(config, s, root=str(tmp_path / "b")) for s in ("train", "test")}
    other = {
        s: synthetic.generate_split(SyntheticMotionConfig(seed=4, **SMALL), s, root=str(tmp_path / "a"))
        for s in ("train", "test")
    }
    for split in ("train", "test"):
        assert [r["caption"] for r in first[split]] == [r["caption"] for r in again[split]]
        for row, twin in zip(first[split], again[split]):
            with open(row["video"], "rb") as a, open(twin["video"], "rb") as b:
                assert a.read() == b.read()
        assert [r["caption"] for r in first[split]] != [r["caption"] for r in other[split]]
    frames = decode_video(first["train"][0]["video"])
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8 and frames.max() > 0
    assert not np.array_equal(frames, decode_video(other["train"][0]["video"]))


def test_synthetic_test_pairs_are_exact_time_reversals_with_other_captions(tmp_path):
    config = SyntheticMotionConfig(seed=5, train_size=0, test_size=40, num_frames=9, frame_size=40)
    rows = synthetic.generate_split(config, "test", root=str(tmp_path))
    captions = [row["caption"] for row in rows]
    assert len(set(captions)) == len(captions)  # unique captions: one right video per caption
    for even, odd in zip(rows[0::2], rows[1::2]):
        forward, backward = decode_video(even["video"]), decode_video(odd["video"])
        assert forward.shape == (9, 40, 40, 3)
        assert np.array_equal(forward[::-1], backward)
        assert not np.array_equal(forward, backward)
        assert even["caption"] != odd["caption"]
        if decord is not None:  # the decoder the processor may use sees the same exact reversal
            reader = decord.VideoReader(odd["video"])
            assert np.array_equal(reader.get_batch(list(range(len(reader)))).asnumpy(), backward)
        # a frame-order-invariant summary (mean pooling) is identical for the twins
        assert np.array_equal(forward.astype(np.int64).sum(0), backward.astype(np.int64).sum(0))


def test_synthetic_train_rows_come_in_twin_pairs(tmp_path):
    """Row 2k + 1 of the training split is row 2k reversed in time with the reversed caption (hard negatives)."""
    config = SyntheticMotionConfig(seed=3, train_size=9, test_size=0, num_frames=8, frame_size=32)
    rows = synthetic.generate_split(config, "train", root=str(tmp_path))
    assert len(rows) == 9
    for even, odd in zip(rows[0:8:2], rows[1:8:2]):
        forward, backward = decode_video(even["video"]), decode_video(odd["video"])
        assert np.array_equal(forward[::-1], backward) and not np.array_equal(forward, backward)
        assert even["caption"] != odd["caption"]
    assert not np.array_equal(decode_video(rows[0]["video"]), decode_video(rows[2]["video"]))


def test_synthetic_shapes_differ_in_area_by_more_than_the_radius_spread():
    """At one radius the five shapes cover areas spaced further apart than the radius range can blur (a model from
    scratch tells shapes apart by area first), and each shape stays inside its radius box around the centre."""
    size, radius = 400, 100.0
    masks = {shape: synthetic._shape_mask(shape, 200.0, 200.0, radius, size) for shape in synthetic.SHAPES}
    areas = sorted(int(mask.sum()) / radius**2 for mask in masks.values())
    low, high = synthetic.SHAPE_RADIUS
    assert all(larger / smaller > (high / low) ** 2 for smaller, larger in zip(areas, areas[1:])), areas
    assert areas == pytest.approx([0.97, 1.42, 2.02, 3.14, 4.00], abs=0.02)  # cross, triangle, diamond, circle, square
    for shape, mask in masks.items():
        rows, cols = np.nonzero(mask)
        assert max(np.abs(rows + 0.5 - 200).max(), np.abs(cols + 0.5 - 200).max()) <= radius, shape


def _squared_distances(features):
    """Exact pairwise squared Euclidean distances of integer feature rows."""
    gram = features @ features.T
    norms = np.diag(gram)
    return norms[:, None] + norms[None, :] - 2 * gram


def _r1(similarity):
    """R@1 (%) with a query-independent tie-break (lowest index first), GT on the diagonal."""
    return 100.0 * float(np.mean(np.argmax(similarity, axis=1) == np.arange(len(similarity))))


def test_order_invariant_oracle_is_capped_and_temporal_oracle_is_not(tmp_path):
    """The best mean-pooling model (it knows every video's mean frame) vs one that sees frame order."""
    rows = synthetic.generate_split(
        SyntheticMotionConfig(seed=1, train_size=0, test_size=60), "test", root=str(tmp_path)
    )
    videos = [decode_video(row["video"]).astype(np.int64) for row in rows]
    n = len(rows)
    mean_pooled = np.stack([v.sum(0).ravel() for v in videos])  # sum = mean x frames, kept exact in integers
    ordered = np.stack([v.ravel() for v in videos])
    # caption i "describes" video i perfectly: score = -distance between the caption's video and the candidate
    invariant, temporal = -_squared_distances(mean_pooled), -_squared_distances(ordered)
    assert n == 60
    assert _r1(invariant) == _r1(invariant.T) == ORDER_INVARIANT_R1_CAP == 50.0  # twins tie: one of two wins
    assert _r1(temporal) == _r1(temporal.T) == 100.0


def test_load_benchmark_synthetic_uses_the_common_schema_and_the_cache(tmp_path, caplog):
    kwargs = dict(cache_dir=str(tmp_path / "cache"), seed=2, **SMALL)
    dataset = load_benchmark("synthetic-motion", "test", **kwargs)
    assert dataset.column_names == ["video_id", "video", "caption", "video_index"]
    assert dataset["video_index"] == list(range(10)) and get_eval_index(dataset).is_single_caption
    assert dataset["video_id"] == list_video_ids("synthetic-motion", "test", seed=2, **SMALL)
    first_video = dataset[0]["video"]
    assert os.path.isfile(first_video) and first_video.startswith(str(tmp_path / "cache"))
    mtime = os.path.getmtime(first_video)
    with caplog.at_level(logging.INFO, logger="datasets_scripts"):
        again = load_benchmark("synthetic-motion", "test", **kwargs)
    assert "reusing 10 cached videos" in caplog.text and os.path.getmtime(first_video) == mtime
    assert again["caption"] == dataset["caption"]
    train = load_benchmark(
        "synthetic-motion",
        "train",
        video_dir=str(tmp_path / "videos"),
        cache_dir=str(tmp_path / "cache"),
        seed=2,
        **SMALL,
    )
    assert len(train) == 8 and train[0]["video"].startswith(str(tmp_path / "videos"))
    with pytest.raises(ValueError, match="decord 0.6 cannot read"):
        load_benchmark("synthetic-motion", "test", cache_dir=str(tmp_path), frame_size=48)
    with pytest.raises(ValueError, match="test_size must be even"):
        load_benchmark("synthetic-motion", "test", cache_dir=str(tmp_path), test_size=3)
    with pytest.raises(TypeError, match="unknown option"):
        load_benchmark("synthetic-motion", "test", cache_dir=str(tmp_path), base_url="x")


def test_default_synthetic_size_is_generated_in_under_a_minute(tmp_path):
    """2,000 train + 500 test videos (the defaults); the second call reuses the cache.

    Measured as CPU time of this (single) process, so other jobs on a shared machine do not make the
    test flaky; about 10 s on one core here.
    """
    config = SyntheticMotionConfig()
    start, start_cpu = time.perf_counter(), time.process_time()
    train = synthetic.generate_split(config, "train", root=str(tmp_path), num_proc=1)
    test = synthetic.generate_split(config, "test", root=str(tmp_path), num_proc=1)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start
    assert (len(train), len(test)) == (2000, 500)
    assert cpu < 60, f"generation took {cpu:.1f} s of CPU ({wall:.1f} s wall)"
    start = time.perf_counter()
    assert synthetic.generate_split(config, "test", root=str(tmp_path)) == test
    assert time.perf_counter() - start < 5
    train_words = {word.strip(",") for row in train for word in row["caption"].split()}
    assert set(synthetic_vocabulary()["words"]) == train_words  # every kind, direction, colour and shape
