"""Tests of the Milvus engine (`milvus_index.py`) against Milvus Lite started by the tests themselves: the engine on
its own (keys, updates, filters, refusals, typed errors), then the same `search_videos.py` commands as for a folder
index, compared with the folder index on the same videos (a tiny model, small generated videos)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("av")

import folder_index  # noqa: E402
import index_engines  # noqa: E402
import index_store  # noqa: E402
import milvus_index  # noqa: E402
import search_videos  # noqa: E402
from index_store import SearchFilter, make_record, new_meta  # noqa: E402
from processing_clip2video import CLIP2VideoVideoProcessor  # noqa: E402
from test_search_videos import (  # noqa: E402,F401 - model_dir, loaded, video_dir: the same fixtures
    EVENTS, FAST, SLOW_INDEXER, accelerate_launch, child_pids, forward_logits, loaded, model_dir, record_encoded,
    running, save_tiny_model, video_dir, write_event_video,
)

REPO = Path(__file__).resolve().parents[1]
MODEL = {"name_or_path": "tiny", "fingerprint": "f" * 32, "bf16": False, "logit_scale": 1.0}
DIM = 8


def meta(dim: int = DIM, model: dict = MODEL, **windows) -> dict:
    return new_meta("/videos", model, dim, **windows)


def random_rows(count: int, seed: int = 0, prefix: str = "") -> tuple[list[dict], np.ndarray]:
    generator = np.random.default_rng(seed)
    records = [make_record(f"{prefix}{'ab'[number % 2]}_{number % 3}/v%{number}.mp4", 100 + number, 7,
                           None if number % 5 == 0 else float(number), 6) for number in range(count)]
    return records, generator.standard_normal((count, DIM)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# The engine on its own
# ----------------------------------------------------------------------------------------------------------------------


def test_rows_are_keyed_by_path_and_start_and_replaced_not_duplicated(tmp_path):
    location = str(tmp_path / "videos.db")
    records, vectors = random_rows(6)
    windows = [make_record("long.mp4", 9, 9, 10.0, 6, start, start + 4.0) for start in (0.0, 2.0, 4.0)]
    with index_engines.create_index(location, meta()) as store:
        store.add(records + windows, np.concatenate([vectors, vectors[:3] * 2]))
        assert store.files()["long.mp4"] == (-1, -1)  # not committed: a rerun encodes it again
        store.commit()
        assert store.files()["long.mp4"] == (9, 9) and len(store) == 9
        store.add(records[:2], vectors[:2] + 1)  # an update run re-adds two files: replaced, not doubled
        store.add(windows[1:2], vectors[:1])  # the same window of the same file twice in one run
        store.commit()
        assert len(store) == 9 - 2  # long.mp4 now has one window, the others' old rows were deleted
        assert np.array_equal(store.vector(records[0]["path"]), vectors[0] + 1)
        assert store.record("long.mp4")["start"] == 2.0 and store.record("long.mp4", 0.0) is None
        store.set_failed([{"path": records[3]["path"], "size": 1, "mtime_ns": 2, "reason": "no video stream"}])
        store.remove([records[4]["path"]])
        store.merge()
    store = index_engines.open_index(location)
    assert len(store) == 5 and set(store.files()) == {record["path"] for record in records} - {
        records[3]["path"], records[4]["path"]} | {"long.mp4"}
    assert store.meta["failed"] == [{"path": records[3]["path"], "size": 1, "mtime_ns": 2,
                                     "reason": "no video stream"}]
    assert {name: store.meta[name] for name in ("video_dir", "model", "dim")} == {
        "video_dir": "/videos", "model": MODEL, "dim": DIM}
    store.close()


def test_a_removal_or_failure_cut_short_leaves_the_file_to_be_redone(tmp_path, monkeypatch):
    """A run killed while it deletes a file's rows (a removal, or a file that now fails to decode) must not leave the
    file looking indexed: the next run redoes it."""
    records, vectors = random_rows(3)
    with index_engines.create_index(str(tmp_path / "videos.db"), meta()) as store:
        store.add(records, vectors)
        store.commit()
        calls = store._call

        def killed_at_delete(method, *args, **kwargs):
            if method == "delete":
                raise KeyboardInterrupt  # the run dies here
            return calls(method, *args, **kwargs)

        monkeypatch.setattr(store, "_call", killed_at_delete)
        with pytest.raises(KeyboardInterrupt):
            store.remove([records[0]["path"]])
        with pytest.raises(KeyboardInterrupt):
            store.set_failed([{"path": records[1]["path"], "size": 1, "mtime_ns": 1, "reason": "broken"}])
        monkeypatch.undo()
        files = store.files()
        assert files[records[0]["path"]] == files[records[1]["path"]] == (-1, -1)
        assert files[records[2]["path"]] == (records[2]["size"], records[2]["mtime_ns"])


def test_flat_search_is_the_exact_top_k_with_float32_scores(tmp_path):
    records, vectors = random_rows(40)
    with index_engines.create_index(str(tmp_path / "videos.db"), meta()) as store:
        store.add(records, vectors)
        store.commit()
        queries = np.random.default_rng(1).standard_normal((3, DIM)).astype(np.float32)
        hits = store.search(torch.from_numpy(queries), k=7, scale=3.0)
        exact = 3.0 * torch.from_numpy(queries) @ torch.from_numpy(vectors).T
        for row, query_hits in enumerate(hits):
            assert [hit.record["path"] for hit in query_hits] == [
                records[number]["path"] for number in torch.topk(exact[row], 7).indices.tolist()]
            assert [hit.score for hit in query_hits] == pytest.approx(torch.topk(exact[row], 7).values.tolist(),
                                                                      abs=1e-5)
            assert query_hits[0].path == "/videos/" + query_hits[0].record["path"]
        with pytest.raises(ValueError, match="non-finite"):
            store.search(np.full((1, DIM), np.nan, np.float32), k=3)
        with pytest.raises(ValueError, match="non-finite vectors"):
            store.add(records[:1], np.full((1, DIM), np.inf, np.float32))
        with pytest.raises(ValueError, match="folder index"):
            store.search(queries, k=3, backend="int8")


def test_index_type_is_kept_unless_another_is_asked_for_then_rebuilt_from_the_stored_vectors(tmp_path):
    location = str(tmp_path / "videos.db")
    records, vectors = random_rows(20)
    with index_engines.create_index(location, meta(), index_type="HNSW", index_params={"M": 8}) as store:
        store.add(records, vectors)
        store.commit()
        store.merge()
    with index_engines.create_index(location, meta()) as store:  # an update run without --milvus_index_type
        assert store._describe_index_type() == "HNSW"
    with index_engines.create_index(location, meta(), index_type="flat") as store:
        assert store._describe_index_type() == "FLAT" and len(store) == 20
        best = store.search(vectors[:1], k=1)[0][0]
        assert best.record["path"] == records[int(np.argmax(vectors @ vectors[0]))]["path"]


@pytest.mark.parametrize("path_prefix", ["a_1/", "ab", "a", "b_0/v%", "weird\\name/", "bad\udcff", "ünï/", "zz"])
def test_filters_are_expressions_with_the_folder_engines_meaning(path_prefix, tmp_path):
    records, vectors = random_rows(24)
    extra = [make_record(path, 1, 1, 5.0, 6) for path in ("weird\\name/x.mp4", "bad\udcff.mp4", "ünï/y.mp4",
                                                          "a_1x/decoy.mp4", "ax_1/decoy.mp4")]
    records += extra
    vectors = np.concatenate([vectors, np.ones((len(extra), DIM), np.float32)])
    with index_engines.create_index(str(tmp_path / "videos.db"), meta()) as store:
        store.add(records, vectors)
        store.commit()
        for search_filter in (SearchFilter(path_prefix=path_prefix), SearchFilter(path_prefix, 3.0, 15.0),
                              SearchFilter(min_duration=5.0), SearchFilter(max_duration=4.0)):
            hits = store.search(vectors[:1], k=100, filter=search_filter)[0]
            assert sorted(hit.record["path"] for hit in hits) == sorted(
                record["path"] for record in records if search_filter.matches(record)), search_filter


def test_another_model_or_width_is_refused_and_a_foreign_collection_left_alone(tmp_path):
    location = str(tmp_path / "videos.db")
    with index_engines.create_index(location, meta()) as store:
        store.add(*random_rows(3))
        store.commit()
    other = {**MODEL, "name_or_path": "other", "fingerprint": "0" * 32}
    with pytest.raises(index_store.ModelMismatchError, match="fingerprint"):
        index_engines.create_index(location, meta(model=other))
    with pytest.raises(index_store.ModelMismatchError, match="width 8"):
        index_engines.create_index(location, meta(dim=16))
    with pytest.raises(index_store.IndexFormatError, match="window"):
        index_engines.create_index(location, meta(window_seconds=4.0, window_stride=2.0))
    store = index_engines.open_index(location)
    with pytest.raises(index_store.ModelMismatchError):
        index_store.check_model(store.meta, other, store.location)
    assert len(store) == 3
    store.close()

    from pymilvus import DataType, MilvusClient  # someone else's collection in the same file

    client = MilvusClient(location)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection("theirs", schema=schema)
    client.close()
    for overwrite in (False, True):
        with pytest.raises(index_store.IndexFormatError, match="not a clip2video index"):
            index_engines.create_index(location, meta(), overwrite=overwrite, collection_name="theirs")
    client = MilvusClient(location)
    assert client.has_collection("theirs")
    client.close()
    with index_engines.create_index(location, meta(dim=16, model=other), overwrite=True) as store:
        assert len(store) == 0 and store.meta["dim"] == 16


def test_locations_that_are_not_milvus_lite_files_are_refused_untouched(tmp_path):
    folder = tmp_path / "looks_like.db"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")  # a folder index someone named *.db
    plain = tmp_path / "plain.db"
    plain.write_bytes(b"SQLite format 3\0")
    for location, reason in ((folder, "a folder index"), (plain, "a file")):
        before = sorted(path.name for path in tmp_path.rglob("*"))
        with pytest.raises(index_store.IndexFormatError, match=reason):
            index_engines.create_index(str(location), meta())
        assert sorted(path.name for path in tmp_path.rglob("*")) == before
    with pytest.raises(index_store.IndexFormatError, match="no such Milvus Lite file"):
        index_engines.open_index(str(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(ValueError, match="DISKANN needs a Milvus server|need a Milvus server"):
        index_engines.create_index(str(tmp_path / "new.db"), meta(), index_type="DISKANN")
    with pytest.raises(ValueError, match="collection name"):
        index_engines.open_index(str(tmp_path / "new.db"), collection_name="no-dashes")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_and_a_file_held_by_another_process_are_typed_errors(tmp_path, caplog):
    started = time.monotonic()
    with pytest.raises(milvus_index.MilvusUnavailableError, match=r"http://127\.0\.0\.1:\d+.*cannot connect"):
        index_engines.open_index(f"http://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 60
    assert "Traceback" not in caplog.text  # pymilvus's own logged traceback is kept quiet

    location = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; MilvusClient(sys.argv[1]); "
                               "print('open', flush=True); time.sleep(600)", str(location)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(index_store.IndexBusyError, match="another process has this Milvus Lite file open"):
            index_engines.create_index(str(location), meta())
    finally:
        holder.kill()
        holder.wait()


def test_writes_the_server_rejects_are_typed_and_large_ones_split(tmp_path, monkeypatch):
    from pymilvus.exceptions import MilvusException

    records, vectors = random_rows(10)
    with index_engines.create_index(str(tmp_path / "videos.db"), meta()) as store:
        with pytest.raises(index_store.IndexWriteError, match="refused upsert.*(length|max_length)"):
            store.add([make_record("x" * 70000 + ".mp4", 1, 1, 1.0, 6)], vectors[:1])
        sent, original = [], store._client.upsert

        def small_messages(collection, rows, **kwargs):  # a server whose message limit is 3 rows
            if collection == store.target.collection_name:
                if len(rows) > 3:
                    raise MilvusException(message="grpc: received message larger than max (4194314 vs. 4194304)")
                sent.append(len(rows))
            return original(collection, rows, **kwargs)

        monkeypatch.setattr(store._client, "upsert", small_messages)
        monkeypatch.setattr(milvus_index, "MAX_MESSAGE_BYTES", 4 * DIM * 1000)
        store.add(records, vectors)
        store.commit()
        assert sum(sent) == 10 and max(sent) <= 3 and len(store) == 10


# ----------------------------------------------------------------------------------------------------------------------
# The same commands as for a folder index
# ----------------------------------------------------------------------------------------------------------------------


def run_index(video_dir: Path, model_dir: Path, location, *extra: str) -> None:
    assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(location), *FAST,
                               *extra]) == 0


def same_hits(first: list, second: list) -> None:
    assert [(hit.path, hit.start, hit.end) for hit in first] == [(hit.path, hit.start, hit.end) for hit in second]
    assert [hit.score for hit in first] == pytest.approx([hit.score for hit in second], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("windows", [(), pytest.param(
    ("--window_seconds", "1", "--window_stride", "0.5"), marks=pytest.mark.skipif(
        not hasattr(CLIP2VideoVideoProcessor, "load_windows"), reason="timed windows need the processor's "
                                                                     "load_windows (the moments issue)"))])
def test_same_hits_as_the_folder_index(windows, video_dir, model_dir, loaded, tmp_path, capsys):
    run_index(video_dir, model_dir, tmp_path / "folder", *windows)
    run_index(video_dir, model_dir, tmp_path / "videos.db", *windows)
    milvus = index_engines.open_index(str(tmp_path / "videos.db"))
    assert milvus.meta["failed"][0]["path"] == "broken.mp4" and "broken.mp4" in milvus.meta["failed"][0]["reason"]
    assert len(milvus) == len(folder_index.FolderIndex.open(str(tmp_path / "folder")))
    for caption in (EVENTS[0].caption, EVENTS[3].caption):
        for options in ({}, {"per_video": 1}, {"merge": False}, {"filter": SearchFilter(path_prefix="nested/")},
                        {"filter": SearchFilter(min_duration=2.0, max_duration=3.0)}):
            same_hits(search_videos.search(tmp_path / "folder", text=caption, k=4, model=loaded, **options),
                      search_videos.search(milvus, text=caption, k=4, model=loaded, **options))
    example = str(video_dir / "video2.mp4")
    same_hits(search_videos.search(tmp_path / "folder", video=example, k=6, model=loaded),
              search_videos.search(milvus, video=example, k=6, model=loaded))
    if not windows:  # text scores are the model's logits
        paths = sorted(str(path) for path in video_dir.rglob("video*.mp4"))
        expected = forward_logits(loaded, [EVENTS[1].caption], paths)[0]
        scores = {hit.path: hit.score for hit in search_videos.search(milvus, text=EVENTS[1].caption, k=6,
                                                                      model=loaded)}
        assert (torch.tensor([scores[path] for path in paths]) - expected).abs().max() <= 1e-5
    milvus.close()

    printed = []
    for location in (tmp_path / "folder", tmp_path / "videos.db"):
        capsys.readouterr()
        assert search_videos.main(["query", str(location), EVENTS[2].caption, "-k", "3", "--json",
                                   "--html", str(tmp_path / f"{location.name}.html")]) == 0
        printed.append(json.loads(capsys.readouterr().out))
    folder_json, milvus_json = printed
    assert [hit["path"] for hit in folder_json["hits"]] == [hit["path"] for hit in milvus_json["hits"]]
    assert milvus_json["index"].startswith(str(tmp_path / "videos.db"))
    assert "<video" in (tmp_path / "videos.db.html").read_text()


@pytest.mark.slow
def test_update_adds_changes_and_removes_files(video_dir, model_dir, loaded, tmp_path, record_encoded):
    location = tmp_path / "videos.db"
    run_index(video_dir, model_dir, location)
    encoded = record_encoded
    encoded.clear()
    write_event_video(video_dir / "added.mp4", EVENTS[0], seed=10)
    write_event_video(video_dir / "video1.mp4", EVENTS[5], seed=11)  # changed contents
    (video_dir / "video3.mp4").unlink()
    run_index(video_dir, model_dir, location)
    assert sorted(encoded) == ["added.mp4", "video1.mp4"]
    store = index_engines.open_index(str(location))
    assert set(store.files()) == {"added.mp4", "video0.mp4", "video1.mp4", "video2.mp4", "nested/video4.mp4",
                                  "video5.mp4"} and len(store) == 6
    hits = search_videos.search(store, video=str(video_dir / "video1.mp4"), k=1, model=loaded)
    assert hits[0].path == str(video_dir / "video1.mp4") and hits[0].record["size"] == os.path.getsize(hits[0].path)
    store.close()
    encoded.clear()
    run_index(video_dir, model_dir, location)
    assert encoded == []


@pytest.mark.slow
def test_another_model_is_refused_by_index_and_query(video_dir, model_dir, tmp_path, capsys, caplog):
    location = tmp_path / "videos.db"
    run_index(video_dir, model_dir, location)
    other = save_tiny_model(tmp_path / "other", seed=1)
    assert search_videos.main(["index", str(video_dir), "--model", str(other), "--index", str(location), *FAST]) == 1
    assert search_videos.main(["query", str(location), "a caption", "--model", str(other)]) == 1
    assert caplog.text.count("ModelMismatchError") == 2 and "Traceback" not in caplog.text
    assert len(index_engines.open_index(str(location))) == 6


@pytest.mark.slow
def test_kill_9_while_indexing_then_rerun_leaves_no_duplicate_and_loses_nothing(video_dir, model_dir, loaded,
                                                                                  tmp_path, record_encoded):
    for number in range(6, 12):
        write_event_video(video_dir / f"video{number}.mp4", EVENTS[number % 6], seed=number)
    location, commits = tmp_path / "videos.db", tmp_path / "commits"
    script = tmp_path / "slow_indexer.py"
    script.write_text(SLOW_INDEXER.replace("video_indexing.encode_batch = slow", (
        "video_indexing.encode_batch = slow\n"
        "import milvus_index\n"
        "committing = milvus_index.MilvusIndex.commit\n"
        "def counted(self):\n"
        "    committing(self)\n"
        f"    open({str(commits)!r}, 'a').write('c')\n"
        "milvus_index.MilvusIndex.commit = counted")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script), "index", str(video_dir), "--model", str(model_dir), "--index", str(location),
         "--num_workers", "2", "--batch_size", "1", "--commit_every", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    workers = []
    try:
        deadline = time.monotonic() + 180
        while not (commits.exists() and len(commits.read_text()) >= 2 and workers):
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the indexer committed nothing in time"
            workers = child_pids(process.pid)
            time.sleep(0.05)
        time.sleep(0.5)  # into the next batch: rows written, not committed
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert [pid for pid in workers if running(pid)], "the workers died with the run: nothing tested"
        store = index_engines.open_index(str(location))  # at once: the killed run's workers do not hold the file
        committed = {path for path, signature in store.files().items() if signature != (-1, -1)}
        assert len(committed) >= 3
        store.close()
    finally:
        for pid in [process.pid, *workers]:  # this test's own processes, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()

    run_index(video_dir, model_dir, location)
    assert not committed & set(record_encoded), "committed videos were encoded again"
    store = index_engines.open_index(str(location))
    rows = list(store._iterate(store.target.collection_name, "", ["path", "start"]))
    assert len(rows) == len({(row["path"], row["start"]) for row in rows}) == 12 == len(store)
    assert set(store.files()) == {path.relative_to(video_dir).as_posix() for path in video_dir.rglob("video*")}
    paths = sorted(str(path) for path in video_dir.rglob("video*.mp4"))
    expected = forward_logits(loaded, [EVENTS[0].caption], paths)[0]
    hits = {hit.path: hit.score for hit in search_videos.search(store, text=EVENTS[0].caption, k=12, model=loaded)}
    assert (torch.tensor([hits[path] for path in paths]) - expected).abs().max() <= 1e-5


@contextlib.contextmanager
def lite_server(data_dir: Path):
    """A Milvus Lite gRPC server (`milvus-lite server`) on a free port, one worker thread (its engine takes one
    writer at a time): the server code path of the engine, with several client processes."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--host",
                               "127.0.0.1", "--port", str(port), "--max-workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, "the Milvus Lite server did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


@pytest.mark.slow
def test_two_processes_write_directly_to_a_server(video_dir, model_dir, tmp_path):
    with lite_server(tmp_path / "server_data") as uri:
        result, _ = accelerate_launch(REPO / "search_videos.py", "index", str(video_dir), "--model", str(model_dir),
                                      "--index", uri, "--collection_name", "shared", *FAST)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "3 encoded" not in result.stderr and "6 encoded" in result.stderr
        run_index(video_dir, model_dir, tmp_path / "single")
        store = index_engines.open_index(uri, collection_name="shared")
        single = folder_index.FolderIndex.open(str(tmp_path / "single"))
        assert set(store.files()) == set(single.files()) and len(store) == 6
        for path in single.files():
            assert np.allclose(store.vector(path), single.vector(path), atol=1e-6), path
        assert [item["path"] for item in store.meta["failed"]] == ["broken.mp4"]
        store.close()
