"""Embedded moment benchmark: long videos made of synthetic-motion test clips (each clip's caption is a query, the
other clips of its video are distractors), indexed as timed windows and scored with `search_videos.py index
--do_moment_eval` (Moment-DETR's metrics, in the query's own video and in the whole collection), next to chance
(the windows of the query's video ranked by random scores); `in_*` are merged moments (the default query),
`windows_*` the raw windows (`query --no_merge`).

    python scripts/moment_demo.py outputs/synthetic-motion [--videos 20] [--clips 5] [--workdir DIR]

Each clip is the benchmark's own (12 frames at 5 fps = 2.4 s); windows are one clip long, every half clip, so a
clip's span is exactly one window.
"""

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_videos  # noqa: E402
from datasets_scripts import load_benchmark  # noqa: E402
from datasets_scripts.synthetic import encode_video  # noqa: E402
from index_engines import open_index  # noqa: E402
from moment_eval import evaluate_moments, read_annotations  # noqa: E402
from retrieval_metrics import moment_retrieval_metrics  # noqa: E402
from utils_clip2video import int_at_least  # noqa: E402


def read_frames(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def build_long_videos(dataset, folder: Path, clips: int, fps: int, seed: int) -> tuple[Path, float]:
    """Writes the long videos and their Charades-STA annotation file; returns it and the clip length in seconds."""
    videos = {}
    for row in dataset:
        videos.setdefault(row["video"], row["caption"])
    order = np.random.default_rng(seed).permutation(len(videos))
    items = [list(videos.items())[position] for position in order]
    lines, clip_seconds = [], None
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(len(items) // clips):
        group = items[number * clips : (number + 1) * clips]
        frames = [read_frames(path) for path, _ in group]
        name = f"long-{number:03d}"
        encode_video(np.concatenate(frames), str(folder / f"{name}.mp4"), fps=fps)
        start = 0.0
        for clip, (_, caption) in zip(frames, group):
            end = start + len(clip) / fps
            lines.append(f"{name} {start:.3f} {end:.3f}##{caption}\n")
            clip_seconds, start = len(clip) / fps, end
    annotations = folder.parent / "annotations.txt"
    annotations.write_text("".join(lines))
    return annotations, clip_seconds


def chance(store, queries, seed: int) -> dict:
    """The metrics of the stored windows of each query's own video ranked by random scores."""
    rng = np.random.default_rng(seed)
    root = store.meta["video_dir"]
    windows = {}
    for path in store.files():
        stem = Path(path).stem
        found = store.search(np.ones((1, store.meta["dim"]), np.float32), k=len(store),
                             filter=search_videos.SearchFilter(path_prefix=path))[0]
        windows[stem] = [(hit.start, hit.end) for hit in found if hit.path == str(Path(root) / path)]
    predictions = [[(start, end, float(score)) for (start, end), score in
                    zip(windows[query.video], rng.random(len(windows[query.video])))] for query in queries]
    truth = [query.windows for query in queries]
    return moment_retrieval_metrics(predictions, truth)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Folder (or Hub id) of a CLIP2Video model saved with its processor.")
    parser.add_argument("--videos", type=int_at_least(1), default=20, help="Long videos to build.")
    parser.add_argument("--clips", type=int_at_least(2), default=5, help="Clips per long video.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="Where videos, cache and index go (default: a temp folder).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    loaded = search_videos.load_model(args.model)
    frame_size = loaded.processor.video_processor.crop_size["height"]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="clip2video-moment-demo-"))
    size = args.videos * args.clips + (args.videos * args.clips) % 2
    dataset = load_benchmark("synthetic-motion", "test", video_dir=str(workdir / "clips"),
                             cache_dir=str(workdir / "cache"), test_size=size, frame_size=frame_size)
    annotations, clip_seconds = build_long_videos(dataset, workdir / "videos", args.clips, fps=5, seed=args.seed)
    index = workdir / "index"
    if search_videos.main(["index", str(workdir / "videos"), "--model", args.model, "--index", str(index),
                           "--window_seconds", f"{clip_seconds:g}", "--window_stride", f"{clip_seconds / 2:g}",
                           "--num_workers", "0"]) != 0:
        return 1
    store, queries = open_index(str(index)), read_annotations(str(annotations))
    metrics = evaluate_moments(store, loaded, queries, ranked=search_videos.ranked)
    raw = evaluate_moments(store, loaded, queries, ranked=search_videos.ranked, merge=False)
    metrics["windows_in_video"], metrics["windows_in_collection"] = raw["in_video"], raw["in_collection"]
    metrics["chance_in_video"] = chance(store, queries, args.seed)
    names = list(metrics["in_video"])
    print(f"{len(queries)} captions in {args.videos} videos of {args.clips} clips ({clip_seconds:g} s each); "
          f"windows of {clip_seconds:g} s every {clip_seconds / 2:g} s")
    print(f"{'':22}" + "".join(f"{name:>9}" for name in names))
    for setting in ("in_video", "in_collection", "windows_in_video", "windows_in_collection", "chance_in_video"):
        print(f"{setting:22}" + "".join(f"{metrics[setting][name]:9.1f}" for name in names))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
