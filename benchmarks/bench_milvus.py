"""The folder index (exact) against Milvus Lite (FLAT, HNSW, IVF_FLAT, ...) on the same synthetic vectors, through the
storage interface the search commands use (`index_store.create_index` / `IndexStore.add` / `search`).

For each engine: insert throughput (rows a second, `add` + `commit` + `merge`, the index build included), the median
time of one query, the time of a batch of queries (`--batch_queries`, default 1,000, in one `search` call), and
recall@10 against the exact top 10 (the folder index's, which is the float32 top 10). Vectors are unit-norm Gaussian
rows of width `--dim`; queries are other such rows.

Milvus Lite is Milvus's embedded mode, meant for development and tests: its figures are not a Milvus server's
(a standalone or cluster server searches with its C++ engine; see docs/milvus.md).

    python benchmarks/bench_milvus.py                                     # 100,000 x 1024
    python benchmarks/bench_milvus.py --num_vectors 20000 --index_types FLAT,HNSW --batch_queries 100
"""

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import index_engines  # noqa: E402
import index_store  # noqa: E402
from utils_clip2video import int_at_least  # noqa: E402

logger = logging.getLogger("bench_milvus")
MODEL = {"name_or_path": "synthetic", "fingerprint": "synthetic", "bf16": False, "logit_scale": 1.0}


def unit_rows(count: int, dim: int, seed: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(count, dim, generator=generator), dim=1).numpy()


def build(location: str, vectors: np.ndarray, chunk: int, **options) -> tuple[index_store.IndexStore, float]:
    """Creates an index at `location` holding `vectors` (records `v<row>.mp4`); returns it and the seconds taken."""
    started = time.perf_counter()
    store = index_engines.create_index(location, index_store.new_meta("/videos", MODEL, vectors.shape[1]), **options)
    for start in range(0, len(vectors), chunk):
        rows = range(start, min(start + chunk, len(vectors)))
        store.add([index_store.make_record(f"v{row:07d}.mp4", 1, 1, 2.0, 12) for row in rows], vectors[rows.start:
                                                                                                        rows.stop])
        store.commit()
    store.merge()
    return store, time.perf_counter() - started


def rows_of(hits: list[list[index_store.Hit]]) -> list[list[int]]:
    return [[int(hit.record["path"][1:8]) for hit in query_hits] for query_hits in hits]


def measure(name: str, store: index_store.IndexStore, seconds: float, queries: np.ndarray, repeats: int,
            exact: list[list[int]] | None, k: int) -> dict:
    store.search(queries[:1], k=k)  # warm-up (loads, caches)
    times = []
    for row in range(repeats):
        started = time.perf_counter()
        store.search(queries[row : row + 1], k=k)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    batch = rows_of(store.search(queries, k=k))
    batch_seconds = time.perf_counter() - started
    recall = None if exact is None else float(np.mean([len(set(got) & set(want)) / k
                                                       for got, want in zip(batch, exact)]))
    figures = {"engine": name, "rows": len(store), "insert_rows_per_s": round(len(store) / seconds, 1),
               "insert_s": round(seconds, 2), "one_query_ms": round(1000 * statistics.median(times), 2),
               "batch_queries": len(queries), "batch_s": round(batch_seconds, 3),
               "batch_queries_per_s": round(len(queries) / batch_seconds, 1),
               "recall_at_10": None if recall is None else round(recall, 4)}
    logger.info("%s", figures)
    return {**figures, "_rows": batch}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_vectors", type=int_at_least(10), default=100_000)
    parser.add_argument("--dim", type=int_at_least(2), default=1024)
    parser.add_argument("--batch_queries", type=int_at_least(1), default=1000)
    parser.add_argument("--repeats", type=int_at_least(1), default=5, help="Single queries timed (median).")
    parser.add_argument("--index_types", default="FLAT,HNSW,IVF_FLAT",
                        help="Milvus vector index types, comma-separated (Milvus Lite: FLAT, HNSW, HNSW_SQ, IVF_FLAT, "
                             "IVF_SQ8).")
    parser.add_argument("--insert_chunk", type=int_at_least(1), default=4096, help="Rows per `add` call.")
    parser.add_argument("--json", default=None, help="Also write the figures to this file.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    k = 10
    vectors = unit_rows(args.num_vectors, args.dim, seed=0)
    queries = unit_rows(args.batch_queries, args.dim, seed=1)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        store, seconds = build(str(Path(scratch) / "folder"), vectors, args.insert_chunk)
        exact = measure("folder (exact)", store, seconds, queries, args.repeats, None, k)
        exact["recall_at_10"] = 1.0
        results.append(exact)
        store.close()
        for number, index_type in enumerate(name.strip().upper() for name in args.index_types.split(",")):
            location = str(Path(scratch) / f"lite{number}.db")
            store, seconds = build(location, vectors, args.insert_chunk, index_type=index_type)
            results.append(measure(f"Milvus Lite {index_type}", store, seconds, queries, args.repeats,
                                   exact["_rows"], k))
            store.close()
    figures = [{name: value for name, value in result.items() if name != "_rows"} for result in results]
    header = f"{args.num_vectors:,} vectors x {args.dim}, k={k}, {args.batch_queries} queries in one batch"
    print(header)
    print(f"{'engine':24s} {'insert rows/s':>14s} {'1 query ms':>11s} {'batch q/s':>10s} {'recall@10':>10s}")
    for row in figures:
        print(f"{row['engine']:24s} {row['insert_rows_per_s']:14,.0f} {row['one_query_ms']:11.1f} "
              f"{row['batch_queries_per_s']:10.1f} {row['recall_at_10']:10.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"setting": header, "figures": figures}, indent=1))
    return figures


if __name__ == "__main__":
    main()
