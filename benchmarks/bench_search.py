"""Search latency of `search_videos.py` at a million videos: a synthetic index, the real on-disk format.

Writes an index of `--num_videos` random unit vectors of width `--dim` (default 1,000,000 x 1024 = 2 * projection_dim
of ViT-B/32 CLIP2Video with TAB; 4 GB of float32 shards) and measures, excluding the text encoder:

* one query: median wall time of `VideoIndex.search` (exact top-k over the memory-mapped shards, scores recomputed,
  records read) after one warm-up pass, so the shards are in the page cache;
* 1,000 queries batched: one `brute_force_topk` call;
* peak memory (VmHWM; memory-mapped pages are page cache and count in it once touched) and anonymous memory;
* the FAISS `IndexFlatIP` backend when `faiss-cpu` is importable (its build copies the vectors into RAM);
* what float16 storage would change: top-k overlap with the float32 ranking, and the one-query time over a float16 copy.

    python benchmarks/bench_search.py                           # the issue's setting (needs ~10 GB of RAM, 4 GB disk)
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
import search_videos  # noqa: E402

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
    """An index in the real format: unit-norm Gaussian vectors, shard by shard (memory stays at one shard)."""
    generator = torch.Generator().manual_seed(seed)
    shards = []
    (folder / search_videos.SHARDS).mkdir(parents=True, exist_ok=True)
    for start in range(0, num_videos, shard_rows):
        rows = min(shard_rows, num_videos - start)
        vectors = torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)
        shard = search_videos.Shard(id=f"bench-{start:09d}", rows=rows)
        search_videos.write_npy(shard.vectors_path(folder), vectors.numpy())
        search_videos.write_jsonl(shard.records_path(folder), [
            {"path": f"video{start + row:07d}.mp4", "size": 0, "mtime_ns": 0, "duration": None, "frames": 12}
            for row in range(rows)])
        shards.append(shard)
    search_videos.Manifest(video_dir=str(folder / "videos"), dim=dim, shards=shards,
                           model={"name_or_path": "synthetic", "fingerprint": "synthetic", "bf16": False}).save(folder)


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_torch(index, queries: torch.Tensor, batch: torch.Tensor, k: int, repeats: int, chunk_rows: int) -> dict:
    blocks = [index.vectors(shard) for shard in index.manifest.shards]
    index.search(queries[:1], k=k, chunk_rows=chunk_rows)  # warm-up: page cache, record lines
    single = [queries[i : i + 1] for i in range(repeats)]
    result = {
        "one_query_s": median_time(lambda: index.search(single.pop(), k=k, chunk_rows=chunk_rows), repeats),
        "one_query_topk_only_s": median_time(lambda: search_videos.brute_force_topk(blocks, queries[:1], k, chunk_rows),
                                             repeats),
    }
    start = time.perf_counter()
    rows = search_videos.brute_force_topk(blocks, batch, k, chunk_rows)
    result["batch_s"] = time.perf_counter() - start
    result["memory_mib"] = memory_mib()
    return result, rows


def bench_faiss(index, queries: torch.Tensor, batch: torch.Tensor, k: int, repeats: int) -> tuple[dict, np.ndarray]:
    import faiss

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(index.manifest.dim)
    for shard in index.manifest.shards:
        flat.add(np.ascontiguousarray(index.vectors(shard)))
    result = {"build_s": time.perf_counter() - start}
    single = [queries[i : i + 1].numpy() for i in range(repeats)]
    flat.search(single[0], k)
    result["one_query_s"] = median_time(lambda: flat.search(single.pop(), k), repeats)
    start = time.perf_counter()
    _, rows = flat.search(batch.numpy(), k)
    result["batch_s"] = time.perf_counter() - start
    result["memory_mib"] = memory_mib()
    del flat
    return result, rows


def float16_change(index, queries: torch.Tensor, k: int, chunk_rows: int, repeats: int) -> dict:
    """Top-k of float16-rounded vectors (scored in float32) against the float32 top-k, and a float16 one-query time."""
    blocks = [index.vectors(shard) for shard in index.manifest.shards]
    exact = search_videos.brute_force_topk(blocks, queries, k, chunk_rows)
    half_matrix = np.empty((sum(len(block) for block in blocks), index.manifest.dim), dtype=np.float16)
    offsets = np.cumsum([0] + [len(block) for block in blocks])
    for block, offset in zip(blocks, offsets):
        half_matrix[offset : offset + len(block)] = block
    halves = (half_matrix[offset : offset + len(block)].astype(np.float32) for block, offset in zip(blocks, offsets))
    rounded = search_videos.brute_force_topk(halves, queries, k, chunk_rows)
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, rounded)])
    same_order = np.mean([np.array_equal(a, b) for a, b in zip(exact, rounded)])
    half_matrix = torch.from_numpy(half_matrix)
    query = queries[:1].half()
    one_query = median_time(lambda: torch.topk((half_matrix @ query.T)[:, 0], k), repeats)
    return {"queries": len(queries), "topk_overlap": float(overlap), "same_topk_order": float(same_order),
            "one_query_fp16_s": one_query}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_videos", type=int, default=1_000_000, help="Rows of the synthetic index.")
    parser.add_argument("--dim", type=int, default=1024, help="Vector width (2 * projection_dim with TAB).")
    parser.add_argument("--num_queries", type=int, default=1000, help="Queries of the batched measurement.")
    parser.add_argument("--k", type=int, default=10, help="Hits per query.")
    parser.add_argument("--repeats", type=int, default=7, help="Timed repeats of one query (median reported).")
    parser.add_argument("--chunk_rows", type=int, default=65536, help="Rows per matrix product (torch backend).")
    parser.add_argument("--fp16_queries", type=int, default=50, 
                        help="Queries for the float16 ranking change (0: skip).")
    parser.add_argument("--workdir", default=None, help="Where to write the index (default: a temporary folder).")
    parser.add_argument("--threads", type=int, default=None, help="torch / faiss threads (default: all cores).")
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        folder = Path(folder)
        start = time.perf_counter()
        write_synthetic_index(folder, args.num_videos, args.dim, args.chunk_rows)
        logger.info("index of %d x %d float32 written in %.1f s (%.2f GB)", args.num_videos, args.dim,
                    time.perf_counter() - start, args.num_videos * args.dim * 4 / 1e9)
        generator = torch.Generator().manual_seed(1)
        queries = torch.nn.functional.normalize(torch.randn(max(args.num_queries, args.repeats, 1), args.dim,
                                                            generator=generator), dim=1)
        index = search_videos.VideoIndex(folder)
        figures = {"num_videos": args.num_videos, "dim": args.dim, "k": args.k, "num_queries": args.num_queries,
                   "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "loadavg_before": os.getloadavg()}
        figures["torch"], torch_rows = bench_torch(index, queries, queries[: args.num_queries], args.k, args.repeats,
                                                   args.chunk_rows)
        logger.info("torch: %s", figures["torch"])
        if search_videos.faiss_available():
            import faiss

            if args.threads:
                faiss.omp_set_num_threads(args.threads)
            figures["faiss"], faiss_rows = bench_faiss(index, queries, queries[: args.num_queries], args.k,
                                                       args.repeats)
            figures["faiss"]["same_topk_as_torch"] = float(np.mean(
                [set(a) == set(b) for a, b in zip(torch_rows, faiss_rows)]))
            logger.info("faiss: %s", figures["faiss"])
        else:
            logger.info("faiss: not installed (pip install faiss-cpu)")
        if args.fp16_queries:
            figures["float16_storage"] = float16_change(index, queries[: args.fp16_queries], args.k, args.chunk_rows,
                                                        args.repeats)
            logger.info("float16 storage: %s", figures["float16_storage"])
        figures["loadavg_after"] = os.getloadavg()
        figures["peak_memory_mib"] = memory_mib()["VmHWM"]
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
