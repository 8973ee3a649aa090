"""Acceptance demo of `search_videos.py`: index the synthetic-motion test videos with a trained model and check that
each caption's top hit is the video it describes.

    python run_retrieval.py                                           # the default run trains a small CLIP2Video
    python scripts/search_demo.py outputs/synthetic-motion            # any folder with a model and its processor

Generates (or reuses) the test split of `synthetic-motion`, runs `search_videos.py index` on its video folder, queries
every caption and prints the share of captions whose top hit is their video (text->video R@1 through the index), with
a few example queries. The test split is made of time-reversed twin pairs, so only a model that sees frame order can
get far above 50%.
"""

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_engines import open_index  # noqa: E402
import search_videos  # noqa: E402
from utils_clip2video import int_at_least  # noqa: E402
from datasets_scripts import load_benchmark  # noqa: E402

logger = logging.getLogger("search_demo")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Folder (or Hub id) of a CLIP2Video model saved with its processor.")
    parser.add_argument("--test_size", type=int_at_least(2), default=100,
                        help="Test videos to generate (even).")
    parser.add_argument("--workdir", default=None, help="Where videos, cache and index go (default: a temp folder).")
    parser.add_argument("--examples", type=int_at_least(0), default=5, help="Example queries to print.")
    parser.add_argument("--frame_size", type=int_at_least(1), default=None, help=(
        "Frame size of the generated videos (default: the model processor's crop size, as in training)."))
    args = parser.parse_args(argv)
    if args.test_size % 2:
        parser.error(f"argument --test_size: must be even (time-reversed twin pairs), got {args.test_size}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    loaded = search_videos.load_model(args.model)
    frame_size = args.frame_size or loaded.processor.video_processor.crop_size["height"]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="clip2video-search-demo-"))
    dataset = load_benchmark("synthetic-motion", "test", video_dir=str(workdir / "videos"),
                             cache_dir=str(workdir / "cache"), test_size=args.test_size, frame_size=frame_size)
    video_dir = Path(dataset[0]["video"]).parent
    index_dir = workdir / "index"
    if search_videos.main(["index", str(video_dir), "--model", args.model, "--index", str(index_dir)]) != 0:
        return 1

    index = open_index(str(index_dir))
    captions = dataset["caption"]
    queries = loaded.encode_text(captions)
    top = index.search(queries, k=1, scale=loaded.logit_scale)
    correct = [Path(hits[0].path).name == Path(row["video"]).name for hits, row in zip(top, dataset)]
    for caption, hits, row in list(zip(captions, top, dataset))[: args.examples]:
        found, expected = Path(hits[0].path).name, Path(row["video"]).name
        verdict = "ok" if found == expected else f"expected {expected}"
        print(f"{caption!r:55} -> {found} ({hits[0].score:.2f})  {verdict}")
    print(f"top hit is the described video for {sum(correct)}/{len(correct)} captions "
          f"({100 * sum(correct) / len(correct):.1f}%; order-invariant models are capped at 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
