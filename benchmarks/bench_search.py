"""Search latency of `search_videos.py` at a million videos: a synthetic index, the real on-disk format.

Writes an index of `--num_videos` random unit vectors of width `--dim` (default 1,000,000 x 1024 = 2 * projection_dim
of ViT-B/32 CLIP2Video with TAB: 4 GB of float32 shards plus 1 GB of int8 search codes) and measures, excluding the
text encoder, each backend of `VideoIndex.search` (every one returns the exact float32 top k):

* `flat`: float32 scan of every vector (the reference, and what the index did before the two-stage search);
* `int8`: two-stage exact search: int8 scan (the compiled dot-product kernel for one query, `torch._int_mm` for the
  batch) + error bound + float32 rescoring;
* `faiss`: FAISS `IndexFlatIP` (exact, float32, in RAM), when `faiss-cpu` is importable.

Figures: median wall time of one query (`VideoIndex.search`: scan, rescoring, records read) after a warm-up, so the
files are in the page cache; the time of 1,000 queries in one call; candidates rescored per query; whether every
backend returned the same top k as `flat` (ranking change); peak memory (VmHWM: memory-mapped pages count once
touched) and anonymous memory. Ratios to `flat` are measured in the same run.

    python benchmarks/bench_search.py                           # the issue's setting (~10 GB of RAM, 5 GB of disk)
    python benchmarks/bench_search.py --num_videos 100000       # a quick look
"""

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import folder_format  # noqa: E402
import folder_index  # noqa: E402
import vector_search  # noqa: E402
from utils_clip2video import int_at_least  # noqa: E402

logger = logging.getLogger("bench_search")


def memory_mib() -> dict:
    """Peak resident set (VmHWM) and current anonymous memory (RssAnon) of this process, in MiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                values[key] = round(int(rest.split()[0]) / 1024)
    return values


def write_synthetic_index(folder: Path, num_videos: int, dim: int, shard_rows: int, seed: int = 0) -> None:
    """An index in the real format (vectors, int8 codes, records, path lookup): unit-norm Gaussian vectors, shard by shard (memory
    stays at one shard)."""
    generator = torch.Generator().manual_seed(seed)
    shards = []
    (folder / folder_format.SHARDS).mkdir(parents=True, exist_ok=True)
    for start in range(0, num_videos, shard_rows):
        rows = min(shard_rows, num_videos - start)
        vectors = torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)
        shard = folder_format.Shard(id=f"bench-{start:09d}", rows=rows)
        folder_format.write_npy(shard.vectors_path(folder), vectors.numpy())
        folder_format.write_codes(folder, shard, vectors.numpy())  # as the index's commit does
        folder_format.write_jsonl(shard.records_path(folder), [
            {"path": f"video{start + row:07d}.mp4", "size": 0, "mtime_ns": 0, "duration": None, "frames": 12}
            for row in range(rows)])
        folder_format.write_path_lookup(folder, shard)
        shards.append(shard)
    folder_format.Manifest(video_dir=str(folder / "videos"), dim=dim, shards=shards,
                           model={"name_or_path": "synthetic", "fingerprint": "synthetic", "bf16": False}).save(folder)


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def same_topk(rows: np.ndarray, reference: np.ndarray) -> float:
    """Share of queries whose top k (as a set: exact float32 ties may come in either order) equals the reference."""
    return float(np.mean([set(a) == set(b) for a, b in zip(rows.tolist(), reference.tolist())]))


def hit_rows(index, hits_per_query) -> np.ndarray:
    """Global row numbers of `Hit`s (the benchmark's paths are `video<row>.mp4`)."""
    return np.array([[int(Path(hit.path).stem[len("video"):]) for hit in hits] for hits in hits_per_query])


def bench_backend(index, backend: str, queries: torch.Tensor, batch: torch.Tensor, k: int, repeats: int) -> dict:
    """One-query median latency (after a warm-up call) and one call with the batch."""
    start = time.perf_counter()
    index.search(queries[-1:], k=k, backend=backend)  # warm-up: page cache, records, NaN check of the vectors
    result = {"first_query_s": time.perf_counter() - start}
    single = [queries[i : i + 1] for i in range(repeats)]
    result["one_query_s"] = median_time(lambda: index.search(single.pop(), k=k, backend=backend), repeats)
    start = time.perf_counter()
    result["rows"] = hit_rows(index, index.search(batch, k=k, backend=backend))
    result["batch_s"] = time.perf_counter() - start
    result["memory_mib"] = memory_mib()
    return result


def candidates_per_query(index, queries: torch.Tensor, k: int) -> float:
    blocks = [vector_search.SearchBlock(index.vectors(shard), index.codes(shard))
              for shard in index.manifest.shards]
    return float(vector_search.exact_topk(blocks, queries, k).candidates.mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    positive = int_at_least(1)
    parser.add_argument("--num_videos", type=positive, default=1_000_000, help="Rows of the synthetic index.")
    parser.add_argument("--dim", type=positive, default=1024, help="Vector width (2 * projection_dim with TAB).")
    parser.add_argument("--num_queries", type=positive, default=1000, help="Queries of the batched measurement.")
    parser.add_argument("--k", type=positive, default=10, help="Hits per query.")
    parser.add_argument("--repeats", type=positive, default=7, help="Timed repeats of one query (median reported).")
    parser.add_argument("--shard_rows", type=positive, default=65536, help="Rows per shard of the synthetic index.")
    parser.add_argument("--workdir", default=None, help="Where to write the index (default: a temporary folder).")
    parser.add_argument("--threads", type=positive, default=None, help="torch / faiss threads (default: all cores).")
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    if args.k > args.num_videos:
        parser.error(f"argument --k: at most --num_videos ({args.num_videos}), got {args.k}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        folder = Path(folder)
        start = time.perf_counter()
        write_synthetic_index(folder, args.num_videos, args.dim, args.shard_rows)
        logger.info("index of %d x %d float32 written in %.1f s (%.2f GB)", args.num_videos, args.dim,
                    time.perf_counter() - start, args.num_videos * args.dim * 4 / 1e9)
        generator = torch.Generator().manual_seed(1)
        queries = torch.nn.functional.normalize(torch.randn(max(args.num_queries, args.repeats, 1), args.dim,
                                                            generator=generator), dim=1)
        index = folder_index.VideoIndex(folder)
        start = time.perf_counter()
        for shard in index.manifest.shards:
            index.codes(shard)
        figures = {"num_videos": args.num_videos, "dim": args.dim, "k": args.k, "num_queries": args.num_queries,
                   "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "loadavg_before": os.getloadavg(),
                   "codes_load_s": time.perf_counter() - start,
                   "compiled_kernels": vector_search.compiled_kernels() is not None}
        batch = queries[: args.num_queries]
        backends = ["flat", "int8"] + (["faiss"] if folder_index.faiss_available() else [])
        if not folder_index.faiss_available():
            logger.info("faiss: not installed (pip install faiss-cpu)")
        if args.threads and folder_index.faiss_available():
            import faiss

            faiss.omp_set_num_threads(args.threads)
        for backend in backends:
            figures[backend] = bench_backend(index, backend, queries, batch, args.k, args.repeats)
            logger.info("%s: %s", backend, {key: value for key, value in figures[backend].items() if key != "rows"})
        reference = figures["flat"]["rows"]
        for backend in backends:
            figures[backend]["same_topk_as_flat"] = same_topk(figures[backend].pop("rows"), reference)
            figures[backend]["one_query_speedup_vs_flat"] = (figures["flat"]["one_query_s"]
                                                             / figures[backend]["one_query_s"])
            figures[backend]["batch_speedup_vs_flat"] = figures["flat"]["batch_s"] / figures[backend]["batch_s"]
        figures["int8"]["candidates_per_query"] = candidates_per_query(index, batch[:100], args.k)
        figures["loadavg_after"] = os.getloadavg()
        figures["peak_memory_mib"] = memory_mib()["VmHWM"]
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
