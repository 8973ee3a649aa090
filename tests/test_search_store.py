"""Tests of the search index's storage interface (`index_store`, the folder engine) and of what an index run may
touch: folders that are not indexes, the user's videos, incomplete checkpoints, remote code, deleted files, starting
over (issue 23 items 3, 8, 11, 15, 23). Each defect test fails without its fix."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

import folder_format  # noqa: E402
import folder_index  # noqa: E402
import index_engines  # noqa: E402
import index_store  # noqa: E402
import loading_clip2video  # noqa: E402
import search_videos  # noqa: E402
from test_search_videos import (  # noqa: E402, F401 (fixtures)
    EVENTS, FAST, REPO, index_folder, loaded, model_dir, save_tiny_model, write_event_video,
)


@pytest.fixture
def video_dir(tmp_path) -> Path:
    folder = tmp_path / "videos"
    for number, event in enumerate(EVENTS[:3]):
        write_event_video(folder / f"video{number}.mp4", event, seed=number)
    return folder


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def last_error(caplog) -> str:
    return caplog.records[-1].getMessage()


# ----------------------------------------------------------------------------------------------------------------------
# Item 3: a folder is the index's only when its manifest says so


def test_a_folder_that_is_not_an_index_is_never_written_into(video_dir, model_dir, tmp_path, caplog):
    mine = tmp_path / "my_folder"
    (mine / "shards").mkdir(parents=True)
    (mine / "shards" / "holiday.mp4").write_bytes(b"my own video")
    (mine / "shards" / "0123-abc.npy").write_bytes(b"my own array")
    (mine / ".tmp-notes.txt").write_text("my notes")
    (mine / "notes.txt").write_text("keep me")
    before = folder_state(mine)
    caplog.clear()
    assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(mine), *FAST]) == 1
    assert last_error(caplog).startswith(f"IndexFormatError: {mine}: not a video index")
    assert folder_state(mine) == before and not (mine / folder_format.LOCK).exists()
    # --overwrite does not make it the project's either
    assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(mine), *FAST,
                               "--overwrite"]) == 1
    assert folder_state(mine) == before


def test_index_into_the_video_folder_itself_keeps_the_videos(video_dir, model_dir, tmp_path, caplog):
    (video_dir / "shards").mkdir()
    shutil.copy(video_dir / "video0.mp4", video_dir / "shards" / "kept.mp4")
    (video_dir / ".tmp-draft.mp4").write_bytes((video_dir / "video1.mp4").read_bytes())
    before = folder_state(video_dir)
    caplog.clear()
    assert search_videos.main(["index", str(video_dir), "--model", str(model_dir), "--index", str(video_dir),
                               *FAST]) == 1
    assert "IndexFormatError: " in last_error(caplog) and str(video_dir) in last_error(caplog)
    assert folder_state(video_dir) == before


def test_an_index_inside_the_video_folder_indexes_the_videos_only(video_dir, model_dir, tmp_path):
    report = index_folder(video_dir, model_dir, video_dir / "index")
    assert report["encoded"] == 3 and report["skipped"] == []
    again = index_folder(video_dir, model_dir, video_dir / "index")
    assert again["encoded"] == 0 and again["unchanged"] == 3


def test_stale_file_cleanup_deletes_only_names_the_index_writes(video_dir, model_dir, tmp_path):
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir)
    (index_dir / "shards" / "readme.txt").write_text("mine")
    (index_dir / "shards" / "0-gone.npy").write_bytes(b"a leftover shard file")
    (index_dir / "shards" / ".tmp-x").write_bytes(b"a killed run's temporary file")
    index_folder(video_dir, model_dir, index_dir)
    names = {path.name for path in (index_dir / "shards").iterdir()}
    assert "readme.txt" in names and "0-gone.npy" not in names and ".tmp-x" not in names


# ----------------------------------------------------------------------------------------------------------------------
# Item 8: an incomplete checkpoint is refused


def test_a_checkpoint_missing_a_tensor_is_refused(video_dir, model_dir, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    broken = Path(shutil.copytree(model_dir, tmp_path / "broken"))
    weights = load_file(broken / "model.safetensors")
    del weights["temporal_alignment_block.center_embeds"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(loading_clip2video.ModelLoadError,
                       match=r"incomplete checkpoint: 1 tensor\(s\) missing .*temporal_alignment_block.center_embeds"):
        loading_clip2video.load_model(str(broken))
    caplog.clear()
    assert search_videos.main(["index", str(video_dir), "--model", str(broken), "--index", str(tmp_path / "index"),
                               *FAST]) == 1
    assert last_error(caplog).startswith(f"ModelLoadError: {broken}: incomplete checkpoint")
    assert not (tmp_path / "index").exists()


# ----------------------------------------------------------------------------------------------------------------------
# Item 11: the model an index records runs no code of its folder unless asked


def test_the_recorded_model_runs_no_remote_code_by_default(video_dir, model_dir, tmp_path):
    shipped = Path(shutil.copytree(model_dir, tmp_path / "handed_over"))
    marker = tmp_path / "their_code_ran"
    modeling = shipped / "modeling_clip2video.py"
    modeling.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n" + modeling.read_text())
    index_folder(video_dir, shipped, tmp_path / "index")
    assert not marker.exists()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    query = [sys.executable, str(REPO / "search_videos.py"), "query", str(tmp_path / "index"), EVENTS[0].caption]
    result = subprocess.run(query, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not marker.exists(), "the index's model folder ran its own code without --trust_remote_code"
    result = subprocess.run(query + ["--trust_remote_code"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert marker.read_text() == "ran"  # asked for: transformers' remote code path, and the same fingerprint


# ----------------------------------------------------------------------------------------------------------------------
# Item 15: --html pointing at a folder


def test_html_pointing_at_a_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    with pytest.raises(SystemExit) as stopped:
        search_videos.main(["query", str(tmp_path / "index"), "a caption", "--html", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert f"--html {tmp_path / 'out'} is a folder; give the name of the page to write" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# Item 23: deleted files, starting over


def test_a_deleted_file_is_not_shown(video_dir, model_dir, loaded, tmp_path, caplog, capsys):
    index_folder(video_dir, model_dir, tmp_path / "index")
    (video_dir / "video1.mp4").unlink()
    hits = search_videos.search(tmp_path / "index", text=EVENTS[1].caption, k=3, model=loaded)
    assert sorted(Path(hit.path).name for hit in hits) == ["video0.mp4", "video2.mp4"]
    assert "1 hit(s) left out: their files were deleted since the index run" in caplog.text
    capsys.readouterr()
    assert search_videos.main(["query", str(tmp_path / "index"), EVENTS[1].caption, "-k", "3", "--json"]) == 0
    assert [Path(hit["path"]).name for hit in json.loads(capsys.readouterr().out)["hits"]] == \
        [Path(hit.path).name for hit in hits]


def test_overwrite_starts_the_index_over_with_another_model(video_dir, model_dir, tmp_path, caplog):
    index_dir = tmp_path / "index"
    index_folder(video_dir, model_dir, index_dir)
    (index_dir / "notes.txt").write_text("not the index's")
    other = save_tiny_model(tmp_path / "other", seed=1)
    caplog.clear()
    assert search_videos.main(["index", str(video_dir), "--model", str(other), "--index", str(index_dir),
                               *FAST]) == 1
    assert last_error(caplog).startswith("ModelMismatchError: ") and "--overwrite starts over" in last_error(caplog)
    report = index_folder(video_dir, other, index_dir, "--overwrite")
    assert report["encoded"] == 3 and (index_dir / "notes.txt").read_text() == "not the index's"
    assert len(folder_index.VideoIndex(index_dir)) == 3
    hits = search_videos.search(index_dir, text=EVENTS[0].caption, k=3, model=str(other))
    assert len(hits) == 3
    assert search_videos.main(["query", str(index_dir), "a red square", "--model", str(model_dir)]) == 1


# ----------------------------------------------------------------------------------------------------------------------
# The interface, on the folder engine


def meta(tmp_path: Path, dim: int = 4) -> dict:
    return index_store.new_meta(str(tmp_path / "videos"), {"name_or_path": "m", "fingerprint": "f", "bf16": False},
                                dim)


def test_folder_engine_add_is_idempotent_and_filters_apply(tmp_path):
    location = str(tmp_path / "store")
    records = [index_store.make_record(f"{folder}/v{row}.mp4", 10, 1, duration, 6, start, start + 2.0)
               for row, (folder, duration, start) in enumerate([("a", 3.0, 0.0), ("a", 3.0, 1.0), ("b", 9.0, 0.0)])]
    vectors = np.eye(3, 4, dtype=np.float32)
    with index_engines.create_index(location, meta(tmp_path)) as store:
        store.add(records, vectors)
        store.commit()
        store.add(records[:1], vectors[:1] * 2)  # the same rows again: they replace the first ones
        store.commit()
        store.merge()
        assert len(store) == 3
        with pytest.raises(ValueError, match="finite"):
            store.add(records[:1], np.full((1, 4), np.nan, np.float32))
    store = index_engines.open_index(location)
    assert isinstance(store, folder_index.FolderIndex) and len(store) == 3
    assert np.array_equal(store.vector("a/v0.mp4"), vectors[0] * 2)
    assert store.record("a/v1.mp4", 1.0)["start"] == 1.0 and store.record("a/v1.mp4", 5.0) is None
    query = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    hits = store.search(query, k=3, scale=2.0)[0]
    assert Path(hits[0].path).name == "v0.mp4" and [hit.score for hit in hits] == [4.0, 2.0, 2.0]
    assert hits[0].path == str(tmp_path / "videos" / "a" / "v0.mp4") and (hits[0].start, hits[0].end) == (0.0, 2.0)
    only_b = store.search(query, k=3, filter=index_store.SearchFilter(path_prefix="b/"))[0]
    assert [hit.record["path"] for hit in only_b] == ["b/v2.mp4"]
    long = store.search(query, k=3, filter=index_store.SearchFilter(min_duration=5.0))[0]
    assert [hit.record["path"] for hit in long] == ["b/v2.mp4"]
    assert store.search(query, k=3, filter=index_store.SearchFilter(max_duration=1.0))[0] == []
    with index_engines.create_index(location, meta(tmp_path)) as writer:
        writer.remove(["a/v0.mp4"])
        writer.merge()
    assert set(index_engines.open_index(location).files()) == {"a/v1.mp4", "b/v2.mp4"}
    with pytest.raises(index_store.ModelMismatchError, match="vectors of width 4"):
        index_engines.create_index(location, meta(tmp_path, dim=8))


def test_locations_choose_their_engine(tmp_path, monkeypatch):
    assert index_engines.is_milvus_location("videos.db") and index_engines.is_milvus_location("http://host:19530")
    assert not index_engines.is_milvus_location(str(tmp_path / "index"))
    assert index_engines.engine_for(str(tmp_path / "index")) is folder_index.FolderIndex
    monkeypatch.setitem(sys.modules, "milvus_index", None)  # as without pymilvus
    with pytest.raises(index_store.EngineNotInstalledError, match="needs pymilvus"):
        index_engines.engine_for("videos.db")
