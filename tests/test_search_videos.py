"""Tests of search_videos.py: a tiny model (CLIP vocabulary, so the real tokenizer fits) indexes a folder of small
generated videos; queries are checked against the model's `forward`, the index against edits, kills and bad files."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

import folder_format  # noqa: E402
import folder_index  # noqa: E402
import index_store  # noqa: E402
import loading_clip2video  # noqa: E402
import search_videos  # noqa: E402
import video_indexing  # noqa: E402
from conftest import TINY_TEXT, tiny_config  # noqa: E402
from datasets_scripts.synthetic import Event, encode_video, render_event  # noqa: E402
from modeling_clip2video import CLIP2VideoModel  # noqa: E402
from processing_clip2video import CLIP2VideoProcessor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EVENTS = [
    Event("move", ("red", "square", "left", "right")),
    Event("move", ("red", "square", "right", "left")),
    Event("size", ("blue", "circle", "grows")),
    Event("presence", ("green", "cross", "appears")),
    Event("recolour", ("purple", "diamond", "yellow")),
    Event("sequence", ("blue", "circle", "orange", "triangle")),
]
FAST = ["--num_workers", "0", "--batch_size", "4"]


def save_tiny_model(folder: Path, seed: int) -> Path:
    """A random tiny CLIP2Video whose text tower has CLIP's 49,408 tokens, saved with a 6-frame 32 px processor."""
    torch.manual_seed(seed)
    config = tiny_config(text_config={**TINY_TEXT, "vocab_size": 49408, "bos_token_id": 49406, "eos_token_id": 49407})
    CLIP2VideoModel(config).eval().save_pretrained(folder)
    processor = CLIP2VideoProcessor.from_clip_tokenizer(
        str(REPO / "clip_tokenizer"), max_words=16, num_frames=6, size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return folder


def write_event_video(path: Path, event: Event, seed: int) -> str:
    """A 12-frame 32x32 5 fps lossless h264 video of `event` (2.4 s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(render_event(event, 12, 32, np.random.default_rng(seed)), str(path), fps=5)
    return event.caption


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture(scope="module")
def loaded(model_dir):
    return search_videos.load_model(str(model_dir))


@pytest.fixture
def video_dir(tmp_path) -> Path:
    """Six event videos (one in a subfolder) and one broken file."""
    folder = tmp_path / "videos"
    for number, event in enumerate(EVENTS):
        write_event_video(folder / ("nested" if number == 4 else "") / f"video{number}.mp4", event, seed=number)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 4)
    return folder


def index_folder(video_dir: Path, model_dir: Path, index_dir: Path, *extra: str) -> dict:
    status = search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(index_dir), *FAST,
                                 *extra])
    assert status == 0
    return json.loads((index_dir / folder_format.REPORT).read_text())


def indexed_paths(index_dir: Path) -> set[str]:
    return {record["path"] for _, _, record in folder_index.VideoIndex(index_dir).all_records()}


def forward_logits(loaded, captions: list[str], paths: list[str]) -> torch.Tensor:
    """`(captions, videos)` logits of the model's forward on freshly preprocessed inputs."""
    inputs = loaded.processor(text=captions, videos=paths, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(**inputs).logits_per_text


@pytest.fixture
def record_encoded(monkeypatch) -> list[str]:
    """Paths of the videos that go through the model during the test."""
    encoded = []
    original = video_indexing.encode_batch

    def recording(loaded, items):
        encoded.extend(item["video"].path for item in items)
        return original(loaded, items)

    monkeypatch.setattr(video_indexing, "encode_batch", recording)
    return encoded


# ----------------------------------------------------------------------------------------------------------------------


def test_text_and_video_queries_are_exact(video_dir, model_dir, loaded, tmp_path):
    report = index_folder(video_dir, model_dir, tmp_path / "index")
    assert report["encoded"] == 6 and [item["path"] for item in report["skipped"]] == ["broken.mp4"]
    assert "broken.mp4" in report["skipped"][0]["reason"]  # the reason names the file

    paths = sorted(str(path) for path in video_dir.rglob("video*.mp4"))
    captions = [event.caption for event in EVENTS]
    expected = forward_logits(loaded, captions, paths)
    for row, caption in enumerate(captions):
        hits = search_videos.search(tmp_path / "index", text=caption, k=10, model=loaded)
        assert len(hits) == 6
        scores = {hit.path: hit.score for hit in hits}
        got = torch.tensor([scores[path] for path in paths])
        assert (got - expected[row]).abs().max() <= 1e-5
        assert [hit.score for hit in hits] == sorted(scores.values(), reverse=True)

    hit = search_videos.search(tmp_path / "index", text=captions[0], k=1, model=loaded)[0]
    assert hit.record["frames"] == 6 and hit.record["duration"] == pytest.approx(2.4, abs=0.05)
    assert hit.record["size"] == os.path.getsize(hit.path)

    # by example: an indexed video (its stored vector) and an outside copy (encoded now) give the same exact scores
    inside = search_videos.search(tmp_path / "index", video=paths[2], k=6, model=loaded)
    outside_copy = shutil.copy(paths[2], tmp_path / "query.mp4")
    outside = search_videos.search(tmp_path / "index", video=outside_copy, k=6, model=loaded)
    assert inside[0].path == paths[2] == outside[0].path
    assert inside[0].score == pytest.approx(loaded.logit_scale, rel=1e-5)  # unit vectors
    assert [hit.path for hit in inside] == [hit.path for hit in outside]
    assert np.allclose([hit.score for hit in inside], [hit.score for hit in outside], atol=1e-5)


def test_json_and_html_outputs(video_dir, model_dir, tmp_path, capsys):
    index_folder(video_dir, model_dir, tmp_path / "index")
    capsys.readouterr()
    caption = EVENTS[0].caption
    assert search_videos.main(["query", str(tmp_path / "index"), caption, "-k", "3", "--json",
                               "--html", str(tmp_path / "hits.html")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == caption and [hit["rank"] for hit in result["hits"]] == [1, 2, 3]
    assert result["hits"][0]["score"] >= result["hits"][1]["score"] >= result["hits"][2]["score"]
    assert all(Path(hit["path"]).is_file() and hit["frames"] == 6 for hit in result["hits"])
    page = (tmp_path / "hits.html").read_text()
    assert page.count('<img src="data:image/jpeg;base64,') == 3
    assert result["hits"][0]["path"] in page and caption in page

    assert search_videos.main(["query", str(tmp_path / "index"), caption, "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[2] == result["hits"][0]["path"]


def test_incremental_update_adds_changes_and_removes(video_dir, model_dir, loaded, tmp_path, record_encoded):
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir)
    record_encoded.clear()
    manifest_before = (index_dir / "manifest.json").read_text()

    report = index_folder(video_dir, model_dir, index_dir)  # nothing changed
    assert record_encoded == [] and report["encoded"] == 0 and report["unchanged"] == 6
    assert [item["path"] for item in report["skipped"]] == ["broken.mp4"]  # still reported, not retried
    assert (index_dir / "manifest.json").read_text() == manifest_before

    added = write_event_video(video_dir / "new.mp4", Event("size", ("white", "square", "shrinks")), seed=10)
    changed = write_event_video(video_dir / "video1.mp4", Event("presence", ("cyan", "circle", "disappears")), seed=11)
    (video_dir / "video3.mp4").unlink()
    report = index_folder(video_dir, model_dir, index_dir)
    assert sorted(record_encoded) == ["new.mp4", "video1.mp4"]
    assert report["encoded"] == 2 and report["removed"] == 1 and report["unchanged"] == 4
    assert indexed_paths(index_dir) == {"video0.mp4", "video1.mp4", "video2.mp4", "nested/video4.mp4", "video5.mp4",
                                        "new.mp4"}
    for caption, name in ((added, "new.mp4"), (changed, "video1.mp4")):  # the new vectors are the new contents'
        hits = {hit.path: hit.score for hit in search_videos.search(index_dir, text=caption, k=10, model=loaded)}
        expected = forward_logits(loaded, [caption], [str(video_dir / name)])[0, 0]
        assert abs(hits[str(video_dir / name)] - float(expected)) <= 1e-5

    write_event_video(video_dir / "broken.mp4", EVENTS[0], seed=12)  # a repaired file is picked up
    record_encoded.clear()
    report = index_folder(video_dir, model_dir, index_dir)
    assert record_encoded == ["broken.mp4"] and report["skipped"] == []
    assert folder_format.Manifest.load(index_dir).failed == []


def test_refuses_a_different_model(video_dir, model_dir, tmp_path):
    index_folder(video_dir, model_dir, tmp_path / "index")
    other = save_tiny_model(tmp_path / "other", seed=1)
    with pytest.raises(index_store.ModelMismatchError, match="fingerprint"):
        search_videos.search(tmp_path / "index", text="a red square", model=str(other))
    assert search_videos.main(["query", str(tmp_path / "index"), "a red square", "--model", str(other)]) == 1
    assert search_videos.main(["index", str(video_dir), "--model", str(other), "--index", str(tmp_path / "index"),
                               *FAST]) == 1
    # the same weights loaded from another place are the same model
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    assert search_videos.main(["query", str(tmp_path / "index"), "a red square", "--model", str(copy)]) == 0


SLOW_INDEXER = textwrap.dedent("""
    import sys, time
    import search_videos
    import video_indexing

    original = video_indexing.encode_batch

    def slow(loaded, items):  # one video a second or so: room to kill the run halfway
        time.sleep(0.4)
        return original(loaded, items)

    video_indexing.encode_batch = slow
    sys.exit(search_videos.main(sys.argv[1:]))
""")


def kill_after_commits(tmp_path, argv: list[str], index_dir, chunks: int) -> None:
    """Runs `search_videos.py` (its encoder slowed down: `SLOW_INDEXER`) with `argv` and `kill -9`s it once `chunks`
    chunks are committed to `index_dir/pending`."""
    (tmp_path / "slow_indexer.py").write_text(SLOW_INDEXER)
    process = subprocess.Popen([sys.executable, str(tmp_path / "slow_indexer.py"), *argv],
                               env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len([path for path in (index_dir / "pending").glob("*.json") if not path.name.startswith(".")]) < chunks:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the indexer committed nothing in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL


def test_killed_run_resumes_without_redoing_finished_videos(video_dir, model_dir, loaded, tmp_path, record_encoded):
    for number in range(6, 12):
        write_event_video(video_dir / f"video{number}.mp4", EVENTS[number % 6], seed=number)
    index_dir = tmp_path / "index"
    kill_after_commits(tmp_path, ["index", str(video_dir), "--model", str(model_dir), "--index", str(index_dir),
                                  "--num_workers", "0", "--batch_size", "1", "--commit_every", "2"], index_dir, 3)

    committed = {record["path"] for _, _, records, _ in folder_format.read_pending_chunks(index_dir, 128)
                 for record in records}
    assert len(committed) >= 3
    assert len(folder_index.VideoIndex(index_dir)) == 0  # the killed run's manifest is valid (nothing merged yet)

    report = index_folder(video_dir, model_dir, index_dir)
    assert not committed & set(record_encoded), "finished videos were encoded again"
    assert len(record_encoded) == 12 - len(committed)  # the broken file never reaches the model
    assert report["encoded"] == len(record_encoded)
    index = folder_index.VideoIndex(index_dir)
    assert indexed_paths(index_dir) == {path.relative_to(video_dir).as_posix() for path in video_dir.rglob("video*")}
    assert list((index_dir / "pending").iterdir()) == [] and len(index) == 12
    paths = sorted(str(path) for path in video_dir.rglob("video*.mp4"))
    expected = forward_logits(loaded, [EVENTS[0].caption], paths)[0]
    hits = {hit.path: hit.score for hit in search_videos.search(index_dir, text=EVENTS[0].caption, k=12, model=loaded)}
    assert (torch.tensor([hits[path] for path in paths]) - expected).abs().max() <= 1e-5


def test_brute_force_topk_over_shards_and_chunks_matches_full_sort():
    generator = np.random.default_rng(0)
    blocks = [generator.standard_normal((rows, 16)).astype(np.float32) for rows in (5, 0, 37, 11)]
    queries = torch.from_numpy(generator.standard_normal((3, 16)).astype(np.float32))
    rows = folder_index.brute_force_topk(blocks, queries, k=7, chunk_rows=8)
    full = queries @ torch.from_numpy(np.concatenate(blocks)).T
    assert rows.tolist() == torch.topk(full, 7, dim=1).indices.tolist()
    if folder_index.faiss_available():
        assert folder_index.faiss_topk(blocks, queries, 7).tolist() == rows.tolist()


@pytest.mark.skipif(not folder_index.faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_backend_gives_the_same_hits(video_dir, model_dir, loaded, tmp_path):
    index_folder(video_dir, model_dir, tmp_path / "index")
    for caption in (EVENTS[0].caption, EVENTS[3].caption):
        torch_hits = search_videos.search(tmp_path / "index", text=caption, k=6, model=loaded)
        faiss_hits = search_videos.search(tmp_path / "index", text=caption, k=6, model=loaded, backend="faiss")
        assert [(hit.path, hit.score) for hit in torch_hits] == [(hit.path, hit.score) for hit in faiss_hits]


def accelerate_launch(script: Path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """Runs `script` in a real 2-process gloo `accelerate launch` on the CPU; returns the result and the seconds taken
    (a hang fails the test with `TimeoutExpired` after `timeout` seconds)."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate launcher not installed")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", str(script), *args], env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def test_accelerate_two_processes_shard_the_folder_and_merge(video_dir, model_dir, tmp_path):
    result, _ = accelerate_launch(REPO / "search_videos.py", "index", str(video_dir), "--model", str(model_dir),
                                  "--index", str(tmp_path / "sharded"), *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "sharded" / folder_format.REPORT).read_text())
    assert report["encoded"] == 6 and [item["path"] for item in report["skipped"]] == ["broken.mp4"]
    assert report["encoded_per_process"] == [3, 3]  # 7 files, every other one: the broken file is rank 0's
    index_folder(video_dir, model_dir, tmp_path / "single")
    sharded, single = folder_index.VideoIndex(tmp_path / "sharded"), folder_index.VideoIndex(tmp_path / "single")
    vectors = {}
    for index in (sharded, single):
        for shard, row, record in index.all_records():
            vectors.setdefault(record["path"], []).append(np.array(index.vectors(shard)[row]))
    assert len(vectors) == 6
    for path, (from_sharded, from_single) in vectors.items():
        assert np.allclose(from_sharded, from_single, atol=1e-6), path


# A hang shows as `TimeoutExpired` after HANG_TIMEOUT seconds (the process group's own timeout is 30 minutes); a prompt
# stop takes the launcher's start-up, the model load and a few seconds, even on a loaded machine.
HANG_TIMEOUT, PROMPT = 180, 120


def index_logs(output: str) -> list[str]:
    """The `search_videos` log lines of a launch's output (both processes), without their timestamps."""
    return [line.split(" search_videos: ", 1)[1] for line in output.splitlines() if " search_videos: " in line]


@pytest.mark.parametrize("failure", ["model mismatch", "lock held by another run"])
def test_accelerate_run_stops_every_process_when_the_main_process_fails(failure, video_dir, model_dir, tmp_path):
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir)
    manifest = (index_dir / folder_format.MANIFEST).read_text()
    model = save_tiny_model(tmp_path / "other", seed=1) if failure == "model mismatch" else model_dir
    with folder_index.index_lock(index_dir) if failure.startswith("lock") else contextlib.nullcontext():
        result, seconds = accelerate_launch(REPO / "search_videos.py", "index", str(video_dir), "--model", str(model),
                                            "--index", str(index_dir), *FAST, timeout=HANG_TIMEOUT)
    assert result.returncode != 0 and seconds < PROMPT, (seconds, result.stderr[-3000:])
    reason = ("ModelMismatchError: " if failure == "model mismatch" else "IndexBusyError: ") + str(index_dir)
    logs = index_logs(result.stderr)
    assert any(line.startswith(reason) for line in logs), result.stderr[-3000:]  # process 0: its own error
    assert any(line.startswith(f"RunAbortedError: process 0 of 2 failed: {reason}") for line in logs), logs  # the other
    assert (index_dir / folder_format.MANIFEST).read_text() == manifest  # the index is untouched
    assert not (index_dir / "pending").exists() or list((index_dir / "pending").iterdir()) == []


FAILING_INDEXER = textwrap.dedent("""
    import os, sys, time
    import torch
    import search_videos
    import video_indexing

    original, batches = video_indexing.encode_batch, []

    def flaky(loaded, items):  # process 1 runs out of device memory at its second batch; process 0 is slow
        batches.append(items)
        if os.environ["RANK"] == "1" and len(batches) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated on process 1)")
        time.sleep(0.5)
        return original(loaded, items)

    video_indexing.encode_batch = flaky
    sys.exit(search_videos.main(sys.argv[1:]))
""")


def test_accelerate_run_stops_every_process_when_another_fails_while_encoding(video_dir, model_dir, tmp_path,
                                                                             record_encoded):
    for number in range(6, 12):
        write_event_video(video_dir / f"video{number}.mp4", EVENTS[number % 6], seed=number)
    index_dir = tmp_path / "index"
    (tmp_path / "failing_indexer.py").write_text(FAILING_INDEXER)
    result, seconds = accelerate_launch(
        tmp_path / "failing_indexer.py", "index", str(video_dir), "--model", str(model_dir), "--index", str(index_dir),
        "--num_workers", "0", "--batch_size", "1", "--commit_every", "1", timeout=HANG_TIMEOUT)
    assert result.returncode != 0 and seconds < PROMPT, (seconds, result.stderr[-3000:])
    assert "OutOfMemoryError: CUDA out of memory" in result.stderr  # process 1's own traceback
    assert any(line.startswith("RunAbortedError: process 1 of 2 failed: OutOfMemoryError: CUDA out of memory")
               for line in index_logs(result.stderr)), result.stderr[-3000:]

    # process 0 stopped within a batch of the failure (its share is 7 files) and kept what it had encoded
    committed = [record["path"] for marker, _, records, _ in folder_format.read_pending_chunks(index_dir, 128)
                 for record in records]
    assert 1 <= len(committed) <= 3, committed
    assert len(folder_index.VideoIndex(index_dir)) == 0  # a valid index: nothing merged, no partial manifest
    report = index_folder(video_dir, model_dir, index_dir)
    assert not set(committed) & set(record_encoded) and report["encoded"] == 12 - len(committed)
    assert len(folder_index.VideoIndex(index_dir)) == 12


def test_unusable_index_folders_are_refused_with_their_reason(video_dir, model_dir, tmp_path, caplog):
    (tmp_path / "a_file").write_text("not a folder")
    for index_dir, reason in ((tmp_path / "a_file" / "index", "IndexWriteError: "),
                              (tmp_path / "no_fields", "IndexFormatError: "),
                              (tmp_path / "a_list", "IndexFormatError: ")):
        if index_dir.name != "index":
            index_dir.mkdir()
            fields_missing = {"format": folder_format.INDEX_FORMAT, "version": folder_format.INDEX_VERSION}
            (index_dir / folder_format.MANIFEST).write_text("[]" if index_dir.name == "a_list" else
                                                            json.dumps(fields_missing))
        caplog.clear()
        assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(index_dir),
                                   *FAST]) == 1
        assert caplog.records[-1].getMessage().startswith(reason + str(index_dir)), caplog.records[-1].getMessage()
    with pytest.raises(index_store.IndexFormatError, match="malformed manifest"):
        folder_index.VideoIndex(tmp_path / "no_fields")


# ----------------------------------------------------------------------------------------------------------------------
# Search by example video: the path lookup


def lookup_files(index_dir: Path) -> set[str]:
    return {path.name for path in (index_dir / "shards").glob("*" + folder_format.LOOKUP_SUFFIX)}


def shard_ids(index_dir: Path) -> set[str]:
    return {shard.id for shard in folder_format.Manifest.load(index_dir).shards}


def watch_record_reads(monkeypatch) -> list[bytes]:
    """Lists the record lines parsed from now on (`json.loads` of bytes); reading a shard's records whole fails."""
    parsed, original = [], json.loads

    def counting(text, *args, **kwargs):
        if isinstance(text, bytes):
            parsed.append(text)
        return original(text, *args, **kwargs)

    def whole_shard(self, shard):
        raise AssertionError(f"shard {shard.id}: every record read")

    monkeypatch.setattr(json, "loads", counting)
    monkeypatch.setattr(folder_index.VideoIndex, "_lines", whole_shard)
    return parsed


@pytest.fixture
def count_encoded(loaded, monkeypatch) -> list[int]:
    """Number of videos the model encodes for queries during the test."""
    encoded, original = [], loaded.encode_videos

    def counting(pixel_values, video_mask):
        encoded.append(len(pixel_values))
        return original(pixel_values, video_mask)

    monkeypatch.setattr(loaded, "encode_videos", counting)
    return encoded


def test_video_query_of_an_indexed_file_reads_one_record(video_dir, model_dir, loaded, tmp_path, monkeypatch):
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir, "--shard_rows", "2")
    assert len(shard_ids(index_dir)) == 3  # written with their lookups
    assert lookup_files(index_dir) == {shard + folder_format.LOOKUP_SUFFIX for shard in shard_ids(index_dir)}
    (tmp_path / "outside_link.mp4").symlink_to(video_dir / "nested" / "video4.mp4")
    (tmp_path / "root_link").symlink_to(video_dir, target_is_directory=True)
    (video_dir / "inside_link.mp4").symlink_to(video_dir / "video0.mp4")  # indexed under its own name by the next run
    index_folder(video_dir, model_dir, index_dir, "--shard_rows", "2")
    monkeypatch.chdir(video_dir)
    forms = {"./video5.mp4": "video5.mp4", str(video_dir / "video1.mp4"): "video1.mp4",
             "nested/../video3.mp4": "video3.mp4", str(tmp_path / "outside_link.mp4"): "nested/video4.mp4",
             str(tmp_path / "root_link" / "video2.mp4"): "video2.mp4", "inside_link.mp4": "inside_link.mp4"}

    store = folder_index.FolderIndex.open(index_dir)
    index = store.reader
    stored = {relative: np.array(index.vectors(shard)[row])
              for shard, row, record in index.all_records() for relative in [record["path"]]}
    with monkeypatch.context() as patched:
        parsed = watch_record_reads(patched)
        patched.setattr(loaded, "encode_videos", lambda *args: pytest.fail("an indexed video was encoded"))
        for form, relative in forms.items():
            parsed.clear()
            query = search_videos.encode_query(loaded, store, None, form)
            assert np.array_equal(query[0].numpy(), stored[relative]), form
            assert len(parsed) == 1 and json.loads(parsed[0])["path"] == relative, (form, parsed)
        parsed.clear()
        assert index.locate("not/indexed.mp4") is None and parsed == []

    hits = search_videos.search(index_dir, video=str(tmp_path / "outside_link.mp4"), k=3, model=loaded)
    assert hits[0].path == str(video_dir / "nested" / "video4.mp4")
    assert hits[0].score == pytest.approx(loaded.logit_scale, rel=1e-5)  # its own stored (unit) vector: the top hit


def test_video_query_encodes_unindexed_and_edited_files(video_dir, model_dir, loaded, tmp_path, count_encoded):
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir)
    store = folder_index.FolderIndex.open(index_dir)
    index = store.reader
    stored = {record["path"]: np.array(index.vectors(shard)[row]) for shard, row, record in index.all_records()}

    def fresh(path: Path) -> np.ndarray:
        inputs = loaded.processor(videos=[str(path)], return_tensors="pt")
        return loaded.model.get_video_features(inputs["pixel_values"], inputs["video_mask"]).pooler_output.detach()[0].numpy()

    copy = Path(shutil.copy(video_dir / "video2.mp4", tmp_path / "copy.mp4"))  # not in the index: encoded
    assert np.allclose(search_videos.encode_query(loaded, store, None, str(copy))[0], stored["video2.mp4"], atol=1e-5)
    assert count_encoded == [1]

    write_event_video(video_dir / "video1.mp4", Event("size", ("white", "square", "shrinks")), seed=20)  # edited
    query = search_videos.encode_query(loaded, store, None, str(video_dir / "video1.mp4"))[0].numpy()
    assert count_encoded == [1, 1]
    assert np.allclose(query, fresh(video_dir / "video1.mp4"), atol=1e-5)
    assert not np.allclose(query, stored["video1.mp4"], atol=1e-3)  # not the stale stored vector

    touched = video_dir / "video3.mp4"  # same bytes, new mtime: the index run's rule says changed, so encoded too
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    assert np.allclose(search_videos.encode_query(loaded, store, None, str(touched))[0], stored["video3.mp4"],
                       atol=1e-5)
    assert count_encoded == [1, 1, 1]

    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        search_videos.search(index_dir, video=str(video_dir / "missing.mp4"), model=loaded)


def test_index_without_lookup_files_still_finds_paths(video_dir, model_dir, tmp_path, monkeypatch, caplog):
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir, "--shard_rows", "2")
    expected = {record["path"]: (shard.id, row) for shard, row, record in
                folder_index.VideoIndex(index_dir).all_records()}
    lookups = lookup_files(index_dir)
    for name in lookups:  # an index written before lookups existed
        (index_dir / "shards" / name).unlink()

    def read_only(path, array):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as patched:  # a read-only index: lookups built in memory, nothing written
        patched.setattr(folder_format, "write_npy", read_only)
        index = folder_index.VideoIndex(index_dir)
        assert {path: (shard.id, row) for path in expected for shard, row in [index.find(path)]} == expected
        assert lookup_files(index_dir) == set()

    index = folder_index.VideoIndex(index_dir)  # built from the records and saved on first use
    assert index.find("not/indexed.mp4") is None and lookup_files(index_dir) == lookups
    assert {path: (shard.id, row) for path in expected for shard, row in [index.find(path)]} == expected

    damaged = sorted(index_dir.glob("shards/*" + folder_format.LOOKUP_SUFFIX))[0]
    folder_format.write_npy(damaged, np.zeros((3, 1), np.uint64))
    index = folder_index.VideoIndex(index_dir)
    assert {path: (shard.id, row) for path in expected for shard, row in [index.find(path)]} == expected
    assert "rebuilding it" in caplog.text and np.load(damaged).shape == (3, 2)

    (video_dir / "video0.mp4").unlink()  # the next run replaces a shard: its lookup goes with it, the new one's comes
    folder_format.write_npy(index_dir / "shards" / f"gone{folder_format.LOOKUP_SUFFIX}", np.zeros((3, 0), np.uint64))
    index_folder(video_dir, model_dir, index_dir, "--shard_rows", "2")
    assert lookup_files(index_dir) == {shard + folder_format.LOOKUP_SUFFIX for shard in shard_ids(index_dir)}
    index = folder_index.VideoIndex(index_dir)
    assert index.find("video0.mp4") is None and index.find("video5.mp4") is not None


# ----------------------------------------------------------------------------------------------------------------------
# Hostile input: names and files read from disk, killed runs, bad options (each test fails without its fix)


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_names_read_from_an_index_cannot_reach_outside_it(video_dir, model_dir, tmp_path, caplog):
    """A shard id from a manifest (`../../victim/shards/<id>`), a `shards/` folder that is a link into another index,
    or a record path that leaves the indexed folder are refused; the other index is untouched."""
    victim, attacker = tmp_path / "victim", tmp_path / "attacker"
    index_folder(video_dir, model_dir, victim)
    index_folder(video_dir, model_dir, attacker)
    victim_files = folder_state(victim)
    victim_shard = folder_format.Manifest.load(victim).shards[0].id
    manifest_path = attacker / folder_format.MANIFEST
    good = json.loads(manifest_path.read_text())
    write_event_video(video_dir / "new.mp4", EVENTS[2], seed=40)  # a change: the next run rewrites small shards
    for bad_id in (f"../../victim/shards/{victim_shard}", f"../../victim/shards", f"{victim_shard}.codes", "/etc/x",
                   "", "..", 7):
        manifest_path.write_text(json.dumps({**good, "shards": [{**good["shards"][0], "id": bad_id}]}))
        with pytest.raises(index_store.IndexFormatError, match=r"manifest.json: malformed manifest \(shard id"):
            folder_index.VideoIndex(attacker)
        caplog.clear()
        assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(attacker),
                                   *FAST]) == 1
        assert caplog.records[-1].getMessage().startswith(f"IndexFormatError: {manifest_path}: malformed manifest")
        assert folder_state(victim) == victim_files, bad_id

    manifest_path.write_text(json.dumps(good))
    shutil.rmtree(attacker / "shards")
    (attacker / "shards").symlink_to(victim / "shards", target_is_directory=True)
    caplog.clear()
    assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(attacker),
                               *FAST]) == 1
    assert "a symbolic link" in caplog.records[-1].getMessage()
    assert folder_state(victim) == victim_files

    shard = folder_format.Manifest.load(victim).shards[0]
    records = shard.records_path(victim).read_text().splitlines()
    records[0] = json.dumps({**json.loads(records[0]), "path": "../outside.mp4"})
    shard.records_path(victim).write_text("\n".join(records) + "\n")
    shard.lookup_path(victim).unlink()
    with pytest.raises(index_store.IndexFormatError,
                       match=re.escape(f"{shard.records_path(victim)}: record 0 has the path '../outside.mp4'")):
        folder_index.VideoIndex(victim).search(torch.ones(1, 128), k=3)


def test_long_lived_index_follows_a_reindex(video_dir, model_dir, loaded, tmp_path, monkeypatch):
    """A `VideoIndex` kept open across index runs (a server) answers from the new state, also when a run replaces the
    index in the middle of a search; a file that vanished without a run is named."""
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir, "--shard_rows", "2")
    query = loaded.encode_text([EVENTS[0].caption])
    server = folder_index.VideoIndex(index_dir)
    assert len(server.search(query, k=6, scale=loaded.logit_scale)[0]) == 6 and server.locate("video3.mp4")

    (video_dir / "video3.mp4").unlink()
    write_event_video(video_dir / "late.mp4", EVENTS[2], seed=30)
    index_folder(video_dir, model_dir, index_dir, "--shard_rows", "2")  # replaces and deletes shard files

    def fresh_hits():
        return [(hit.path, hit.score) for hit in
                folder_index.VideoIndex(index_dir).search(query, k=10, scale=loaded.logit_scale)[0]]

    hits = [(hit.path, hit.score) for hit in server.search(query, k=10, scale=loaded.logit_scale)[0]]
    assert hits == fresh_hits() and str(video_dir / "late.mp4") in dict(hits)
    assert str(video_dir / "video3.mp4") not in dict(hits)
    assert server.locate("video3.mp4") is None and server.locate("late.mp4")[2]["path"] == "late.mp4"

    original, runs = folder_index.VideoIndex._search, []

    def reindexed_meanwhile(self, *args):  # an index run lands between the manifest check and the reads
        if not runs:
            runs.append(1)
            (video_dir / "video5.mp4").unlink()
            index_folder(video_dir, model_dir, index_dir, "--shard_rows", "2")
        return original(self, *args)

    with monkeypatch.context() as patched:
        patched.setattr(folder_index.VideoIndex, "_search", reindexed_meanwhile)
        hits = [(hit.path, hit.score) for hit in server.search(query, k=10, scale=loaded.logit_scale)[0]]
    assert runs and hits == fresh_hits() and str(video_dir / "video5.mp4") not in dict(hits)

    shard = server.manifest.shards[0]
    shard.records_path(index_dir).unlink()
    with pytest.raises(index_store.IndexFormatError,
                       match=re.escape(f"{shard.records_path(index_dir)}: missing (named by")):
        server.search(query, k=10)


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
    return children


def running(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the DataLoader workers")
def test_rerun_right_after_kill_9_while_dataloader_workers_live(video_dir, model_dir, tmp_path):
    """`kill -9` of an index run leaves its DataLoader workers alive for a few seconds; they must not hold the index's
    lock: an immediate rerun works."""
    index_dir = tmp_path / "index"
    (tmp_path / "slow_indexer.py").write_text(SLOW_INDEXER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "slow_indexer.py"), "index", str(video_dir), "--model", str(model_dir),
         "--index", str(index_dir), "--num_workers", "2", "--batch_size", "1", "--commit_every", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    workers = []
    try:
        deadline = time.monotonic() + 120
        while not (workers and list((index_dir / "pending").glob("[!.]*.json"))):
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the indexer committed nothing in time"
            workers = child_pids(process.pid)
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        with folder_index.index_lock(index_dir):  # at once: the killed run's workers still live
            assert [pid for pid in workers if running(pid)], "the workers died with the run: nothing tested"
        report = index_folder(video_dir, model_dir, index_dir)
        assert len(folder_index.VideoIndex(index_dir)) == 6 and report["skipped"][0]["path"] == "broken.mp4"
    finally:
        process.kill()
        process.wait()
        for pid in workers:  # this test's own processes, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_non_finite_vectors_are_refused_on_write_and_on_open(video_dir, model_dir, loaded, tmp_path, monkeypatch):
    index_dir = tmp_path / "index"
    original = video_indexing.encode_batch

    def overflowing(loaded, items):  # the model gives NaN for one video
        vectors = original(loaded, items)
        for row, item in enumerate(items):
            if item["video"].path == "video2.mp4":
                vectors[row, 3] = float("nan")
        return vectors

    with monkeypatch.context() as patched:
        patched.setattr(video_indexing, "encode_batch", overflowing)
        report = index_folder(video_dir, model_dir, index_dir)
    reasons = {item["path"]: item["reason"] for item in report["skipped"]}
    assert report["encoded"] == 5 and "non-finite vector (NaN or inf)" in reasons["video2.mp4"]
    assert "video2.mp4" not in indexed_paths(index_dir)

    shard = folder_format.Manifest.load(index_dir).shards[0]
    path = shard.vectors_path(index_dir)
    vectors = np.load(path)
    vectors[1, 0], vectors[3, 5] = np.nan, np.inf
    np.save(path, vectors)
    query = loaded.encode_text([EVENTS[0].caption])
    for backend in ("flat", "int8"):
        with pytest.raises(index_store.IndexFormatError,
                           match=re.escape(f"{path}: rows 1, 3 hold non-finite values (NaN or inf)")):
            folder_index.VideoIndex(index_dir).search(query, k=3, backend=backend)


def _scramble(path: Path, rows: slice = slice(None)) -> None:
    lookup = np.load(path)
    lookup[rows] = np.random.default_rng(0).integers(1 << 40, 1 << 62, lookup[rows].shape, dtype=np.uint64)
    np.save(path, lookup)


def test_damaged_index_files_are_named_with_what_is_wrong(video_dir, model_dir, loaded, tmp_path, caplog):
    pristine = tmp_path / "pristine"
    index_folder(video_dir, model_dir, pristine, "--shard_rows", "3")
    shard = folder_format.Manifest.load(pristine).shards[0]
    query = loaded.encode_text([EVENTS[0].caption])
    expected = [(hit.path, hit.score) for hit in folder_index.VideoIndex(pristine).search(query, k=6)[0]]

    def text(index_dir, backend="flat"):
        return folder_index.VideoIndex(index_dir).search(query, k=6, backend=backend)

    def by_example(index_dir):
        return search_videos.encode_query(loaded, folder_index.FolderIndex.open(index_dir), None,
                                          str(video_dir / "video0.mp4"))

    vectors, records, lookup = "shards/{id}.npy", "shards/{id}.jsonl", "shards/{id}.lookup.npy"
    cases = [  # (damage, file it is in, operation, what the error says)
        (lambda path: path.write_bytes(b""), vectors, text, "empty file (0 bytes)"),
        (lambda path: path.write_bytes(path.read_bytes()[:300]), vectors, text, "truncated: 300 bytes"),
        (lambda path: path.write_bytes(b"not numpy at all" * 20), vectors, text, "not a .npy file"),
        (lambda path: np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True), vectors, text,
         "unreadable .npy file (ValueError: Array can't be memory-mapped: Python objects"),
        (lambda path: np.save(path, np.zeros((3, 64), np.float32)), vectors, text,
         "float32 (3, 64), expected float32 (3, 128)"),
        (lambda path: _scramble(path), lookup, text, "its rows are not those of the shard's 3 records"),
        (lambda path: _scramble(path, rows=slice(2, 3)), lookup, by_example, ""),
        (lambda path: path.write_bytes(b"{not json}\n" * 3), records, text, "no record at byte"),
        (lambda path: path.write_bytes(b""), records, text, "no record at byte"),
        (lambda path: np.save(path, np.zeros((2, 3), np.float32)), "shards/{id}.norms.npy",
         lambda index_dir: text(index_dir, "int8"), "the int8 search codes do not bound the stored vectors"),
    ]
    for number, (damage, name, operation, reason) in enumerate(cases):
        index_dir = Path(shutil.copytree(pristine, tmp_path / f"case{number}"))
        path = index_dir / name.format(id=shard.id)
        damage(path)
        if name == lookup and operation is by_example:  # offsets point past the records: named via the records file
            path, reason = index_dir / records.format(id=shard.id), "no record at byte"
        with pytest.raises(index_store.IndexFormatError, match=re.escape(f"{path}") + ".*" + re.escape(reason)):
            operation(index_dir)

    # derived files that are unreadable are recomputed, not errors
    index_dir = Path(shutil.copytree(pristine, tmp_path / "derived"))
    (index_dir / f"shards/{shard.id}.codes.npy").write_bytes(b"")
    (index_dir / f"shards/{shard.id}.lookup.npy").write_bytes(b"\x93NUMPY")
    assert [(hit.path, hit.score) for hit in text(index_dir, "int8")[0]] == expected
    stored_shard, stored_row, _ = folder_index.VideoIndex(pristine).locate("video0.mp4")
    stored = folder_index.VideoIndex(pristine).vectors(stored_shard)[stored_row]
    assert np.array_equal(by_example(index_dir)[0], stored)

    # a malformed manifest or pending chunk: the index run stops and names it
    for number, (name, content, reason) in enumerate([
            ("manifest.json", lambda data: {**data, "dim": "128"}, "malformed manifest (dim must be a positive"),
            ("manifest.json", lambda data: {**data, "shards": [{**data["shards"][0], "rows": -3}]},
             "rows must be a count"),
            ("pending/r0-1-abc.json", None, "unreadable pending chunk")]):
        index_dir = Path(shutil.copytree(pristine, tmp_path / f"manifest{number}"))
        path = index_dir / name
        if content is None:
            path.parent.mkdir(exist_ok=True)
            path.write_text('{"rows": 1, "rec')
        else:
            path.write_text(json.dumps(content(json.loads(path.read_text()))))
        caplog.clear()
        assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(index_dir),
                                   *FAST]) == 1
        assert caplog.records[-1].getMessage().startswith(f"IndexFormatError: {path}: "), caplog.records[-1]
        assert reason in caplog.records[-1].getMessage()


def test_plain_text_output_escapes_control_characters(video_dir, model_dir, tmp_path, capsys):
    """File names are untrusted: escape codes and line breaks in a name are printed as escapes (one line per hit), and
    names that are not UTF-8 are indexed and shown too."""
    hostile = ["evil\x1b[2J\x1b]0;pwned\x07\nname.mp4", os.fsdecode(b"caf\xe9 \xe2\x80\xae4pm.mp4")]
    for number, name in enumerate(hostile):
        shutil.copy(video_dir / "video0.mp4", video_dir / name)
    index_folder(video_dir, model_dir, tmp_path / "index")
    capsys.readouterr()
    assert search_videos.main(["query", str(tmp_path / "index"), EVENTS[0].caption, "-k", "8",
                               "--html", str(tmp_path / "hits.html")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 8 and all(line.split()[0] == str(rank) for rank, line in enumerate(lines, 1))
    assert not any(char in out for char in "\x1b\x07\u202e")
    shown = {line.split(maxsplit=2)[2] for line in lines}
    assert str(video_dir / "evil\\x1b[2J\\x1b]0;pwned\\x07\\x0aname.mp4") in shown
    assert str(video_dir / "caf\\xe9 \\u202e4pm.mp4") in shown
    page = (tmp_path / "hits.html").read_text(encoding="utf-8")
    assert "\x1b" not in page and "evil\\x1b[2J" in page and page.count("<img src=") == 8

    assert search_videos.main(["query", str(tmp_path / "index"), EVENTS[0].caption, "-k", "8", "--json"]) == 0
    paths = {hit["path"] for hit in json.loads(capsys.readouterr().out)["hits"]}
    assert {str(video_dir / name) for name in hostile} <= paths  # JSON escapes them itself, exactly


@pytest.mark.parametrize("command, option, message", [
    ("index", ["--batch_size", "0"], "--batch_size must be an integer >= 1, got 0"),
    ("index", ["--shard_rows", "0"], "--shard_rows must be an integer >= 1, got 0"),
    ("index", ["--commit_every", "-2"], "--commit_every must be an integer >= 1, got -2"),
    ("index", ["--num_workers", "-1"], "--num_workers must be an integer >= 0, got -1"),
    ("index", ["--batch_size", "2.5"], "argument --batch_size/--batch-size: invalid int value: '2.5'"),
    ("query", ["-k", "-1"], "-k must be an integer >= 1, got -1"),
    ("query", ["-k", "0"], "-k must be an integer >= 1, got 0"),
    ("query", ["--thumbnails", "0"], "--thumbnails must be an integer >= 1, got 0"),
    ("query", ["--backend", "gpu"], "argument --backend: invalid choice: 'gpu'"),
])
def test_numeric_options_are_checked_when_parsed(command, option, message, tmp_path, capsys):
    """Every bad option value stops the command line at once (status 2) with a message naming the option; nothing is
    loaded or written."""
    if command == "index":
        argv = ["index", str(tmp_path / "videos"), "--model", "m", "--index", str(tmp_path / "index"), *option]
    else:
        argv = ["query", str(tmp_path / "index"), "a caption", *option]
    with pytest.raises(SystemExit) as stopped:
        search_videos.main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_mistyped_model_names_the_missing_folder(video_dir, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model, reason in ((str(tmp_path / "models" / "mine"), "no such folder (and not a Hub repo id)"),
                          ("./mine", "no such folder (and not a Hub repo id)"),
                          ("someone/no-such-model", "no such folder, and the Hub did not provide it")):
        for argv in (["index", str(video_dir), "--model", model, "--index", str(tmp_path / "index"), *FAST],
                     ["query", str(tmp_path / "index"), "a caption", "--model", model]):
            if argv[0] == "query" and not (tmp_path / "index").exists():
                continue
            caplog.clear()
            assert search_videos.main(argv) == 1
            assert caplog.records[-1].getMessage().startswith(f"ModelSourceError: {model}: {reason}")
    assert not (tmp_path / "index").exists()


# ----------------------------------------------------------------------------------------------------------------------
# README promises: --bf16, the fingerprint covers preprocessing, the search demo runs


def stored_vectors(index_dir: Path) -> dict[str, np.ndarray]:
    index = folder_index.VideoIndex(index_dir)
    return {record["path"]: np.array(index.vectors(shard)[row]) for shard, row, record in index.all_records()}


def test_bf16_index_is_close_to_float32_and_ranks_alike(video_dir, model_dir, loaded, tmp_path, capsys):
    index_folder(video_dir, model_dir, tmp_path / "fp32")
    index_folder(video_dir, model_dir, tmp_path / "bf16", "--bf16")
    assert folder_format.Manifest.load(tmp_path / "bf16").model["bf16"] is True
    exact, half = stored_vectors(tmp_path / "fp32"), stored_vectors(tmp_path / "bf16")
    assert exact.keys() == half.keys() and len(exact) == 6
    for path in exact:
        difference = np.abs(exact[path] - half[path]).max()
        assert 1e-4 < difference < 0.05, (path, difference)  # bf16 arithmetic was used, and stays close
        assert exact[path] @ half[path] / np.linalg.norm(exact[path]) / np.linalg.norm(half[path]) > 0.995

    for event in EVENTS:  # the query is encoded under bf16 too (recorded in the index); scores close to fp32's
        fp32 = {hit.path: hit.score for hit in search_videos.search(tmp_path / "fp32", text=event.caption, k=6)}
        bf16 = search_videos.search(tmp_path / "bf16", text=event.caption, k=6)
        assert max(abs(hit.score - fp32[hit.path]) for hit in bf16) < 0.02 * loaded.logit_scale
        assert [hit.score for hit in bf16] == sorted((hit.score for hit in bf16), reverse=True)
    copy = shutil.copy(video_dir / "video2.mp4", tmp_path / "copy.mp4")  # encoded now, under bf16: finds itself
    hits = search_videos.search(tmp_path / "bf16", video=copy, k=2)
    assert hits[0].path == str(video_dir / "video2.mp4") and hits[0].score == pytest.approx(loaded.logit_scale,
                                                                                             rel=1e-3)
    assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(tmp_path / "bf16"),
                               *FAST]) == 1  # a float32 run does not mix its vectors into a bf16 index


def test_fingerprint_changes_with_preprocessing(video_dir, model_dir, loaded, tmp_path, caplog):
    """Every preprocessing setting enters the fingerprint: an index refuses a model whose processor differs."""
    import copy

    fingerprints = {"as saved": loaded.fingerprint}
    assert loading_clip2video.model_fingerprint(loaded.model, loaded.processor) == loaded.fingerprint
    changes = {"num_frames": 4, "frame_sampling": "uniform", "feature_framerate": 1, "extraction_fps": 2.0,
               "size": {"shortest_edge": 40}, "crop_size": {"height": 24, "width": 24},
               "image_mean": [0.5, 0.5, 0.5], "image_std": [0.2, 0.2, 0.2], "resample": 2, "do_normalize": False,
               "rescale_factor": 1 / 256}
    for name, value in changes.items():
        processor = copy.deepcopy(loaded.processor)
        setattr(processor.video_processor, name, value)
        fingerprints[name] = loading_clip2video.model_fingerprint(loaded.model, processor)
    processor = copy.deepcopy(loaded.processor)
    processor.max_words = 8
    fingerprints["max_words"] = loading_clip2video.model_fingerprint(loaded.model, processor)
    assert len(set(fingerprints.values())) == len(fingerprints), fingerprints

    index_folder(video_dir, model_dir, tmp_path / "index")
    other = Path(shutil.copytree(model_dir, tmp_path / "four_frames"))
    processor = copy.deepcopy(loaded.processor)
    processor.video_processor.num_frames = 4
    processor.save_pretrained(other)
    caplog.clear()
    assert search_videos.main(["query", str(tmp_path / "index"), "a red square", "--model", str(other)]) == 1
    assert caplog.records[-1].getMessage().startswith("ModelMismatchError: ")


def test_search_demo_runs_and_reports_what_the_index_finds(model_dir, loaded, tmp_path):
    """`scripts/search_demo.py` on a tiny random model: it indexes the generated test videos and its report (per
    caption: the top hit; the share of correct top hits) is what the index answers."""
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "search_demo.py"), str(model_dir), "--test_size", "4", "--workdir",
         str(workdir), "--examples", "4"], env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5
    correct = 0
    for line in lines[:4]:
        caption, rest = line.rsplit(" -> ", 1)
        found = rest.split()[0]
        hit = search_videos.search(workdir / "index", text=caption.strip()[1:-1], k=1, model=loaded)[0]
        assert Path(hit.path).name == found and f"({hit.score:.2f})" in rest
        correct += rest.endswith("ok")
    assert lines[4].startswith(f"top hit is the described video for {correct}/4 captions")
