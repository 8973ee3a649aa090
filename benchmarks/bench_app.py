"""Warm query latency of the search web app (`app.py`) at a million videos, server side, without the text encoder.

Writes an index of `--num_videos` random unit vectors of width `--dim` in the real folder format (the writer of
`bench_search.py`; default 1,000,000 x 1024, the width of ViT-B/32 CLIP2Video with TAB) and an empty file for each
video (the search checks that a hit's file still exists), serves it with `app.build_app`
(uvicorn on 127.0.0.1, in this process) and sends `GET /api/search?q=...&k=...` over one keep-alive connection. The
text encoder is replaced by precomputed random query vectors (a `LoadedModel` whose `encode_text` returns the next one),
so the figures are what the app adds to the encoder: the exact search, the records of the hits, the JSON, HTTP.

Figures per `--k` (10, the API's default, and 48, the hits the page fetches to page through; after `--warmup`
queries, so the shards are in the page cache): median and 95th percentile of

* `server_ms`: the time the app reports in its answer (`ms`: from the request's arrival in `SearchService.query` to its
  JSON ready, the search's lock, the index search and the records included);
* `http_ms`: the whole round trip seen by a client on the same machine (adds uvicorn, FastAPI, the socket).

    python benchmarks/bench_app.py                         # 1M x 1024 (5 GB of disk, ~6 GB of RAM)
    python benchmarks/bench_app.py --num_videos 100000     # a quick look
"""

import argparse
import http.client
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import app  # noqa: E402
from loading_clip2video import LoadedModel  # noqa: E402
from utils_clip2video import int_at_least  # noqa: E402
from bench_search import memory_mib, write_synthetic_index  # noqa: E402

logger = logging.getLogger("bench_app")


class PrecomputedQueries(LoadedModel):
    """A "model" whose text encoder returns the next of a set of precomputed unit vectors (no network runs): the app's
    own work is what gets timed. Its fingerprint is the synthetic index's."""

    def __init__(self, vectors: torch.Tensor, fingerprint: str):
        super().__init__(model=None, processor=None, name_or_path="precomputed", fingerprint=fingerprint)
        self.vectors, self.next = vectors, 0

    @property
    def logit_scale(self) -> float:
        return 100.0

    def encode_text(self, texts):
        vector = self.vectors[self.next % len(self.vectors)][None]
        self.next += 1
        return vector


def serve_in_thread(application):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    positive = int_at_least(1)
    parser.add_argument("--num_videos", type=positive, default=1_000_000, help="Rows of the synthetic index.")
    parser.add_argument("--dim", type=positive, default=1024, help="Vector width (2 * projection_dim with TAB).")
    parser.add_argument("--k", type=positive, nargs="+", default=[10, 48],
                        help="Hits per query, each measured in turn (10: the API's default; 48: the page's search).")
    parser.add_argument("--queries", type=positive, default=50, help="Timed queries per k.")
    parser.add_argument("--warmup", type=positive, default=5, help="Untimed queries first.")
    parser.add_argument("--shard_rows", type=positive, default=65536, help="Rows per shard of the synthetic index.")
    parser.add_argument("--workdir", default=None, help="Where to write the index (default: a temporary folder).")
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        folder = Path(folder)
        start = time.perf_counter()
        write_synthetic_index(folder, args.num_videos, args.dim, args.shard_rows)
        # the files themselves (empty): a search leaves out the hits whose file is gone, and checks each hit's
        (folder / "videos").mkdir()
        for row in range(args.num_videos):
            (folder / "videos" / f"video{row:07d}.mp4").touch()
        logger.info("index of %d x %d (and its empty files) written in %.1f s", args.num_videos, args.dim,
                    time.perf_counter() - start)
        generator = torch.Generator().manual_seed(1)
        vectors = torch.nn.functional.normalize(torch.randn(args.warmup + args.queries * len(args.k), args.dim,
                                                            generator=generator), dim=1)
        service = app.SearchService(folder, PrecomputedQueries(vectors, fingerprint="synthetic"),
                                    max_results=max(args.k))
        server, thread, port = serve_in_thread(app.build_app(service))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        figures = {"num_videos": args.num_videos, "dim": args.dim, "queries": args.queries,
                   "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "loadavg_before": os.getloadavg()}

        def ask(k: int) -> tuple[float, float]:
            """One query: the server's time and the round trip, in ms."""
            began = time.perf_counter()
            connection.request("GET", "/api/search?" + urllib.parse.urlencode({"q": "a query", "k": k}))
            response = connection.getresponse()
            answer = json.loads(response.read())
            elapsed = (time.perf_counter() - began) * 1000
            if response.status != 200 or len(answer["hits"]) != k:
                raise RuntimeError(f"k={k}: status {response.status}: {answer}")
            return answer["ms"], elapsed

        figures["first_query_ms"] = ask(args.k[0])[1]
        for _ in range(args.warmup - 1):
            ask(args.k[0])
        for k in args.k:
            times = [ask(k) for _ in range(args.queries)]
            figures[f"k={k}"] = {name: {"median": statistics.median(values), "p95": percentile(values, 0.95),
                                        "max": max(values)}
                                 for name, values in zip(("server_ms", "http_ms"), zip(*times))}
            logger.info("k=%d: %s", k, figures[f"k={k}"])
        connection.close()
        server.should_exit = True
        thread.join(30)
        figures.update(loadavg_after=os.getloadavg(), peak_memory_mib=memory_mib()["VmHWM"])
    report = json.dumps(figures, indent=1)
    print(report)
    if args.json:
        Path(args.json).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
