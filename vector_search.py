# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Exact top-k inner-product search over float32 vectors, at a fraction of the cost of a float32 scan.

Two stages, with a proof instead of a recall figure:

1. **Coarse scan over int8 codes.** Each stored block of vectors `x_i` (a shard of the index) is kept a second time as
   int8 codes with one float32 scale per dimension: `x_i = scales * codes_i + e_i`. The codes are a quarter of the
   bytes, which is what a scan is bound by, and they feed int8 arithmetic. For every query `q` and row `i` the scan
   gives an estimate `s~` of the score `s = q . x_i`, and a bound `|s - s~| <= B` that covers every error on the
   way: the rounding of the codes (`|q . e_i| <= ||q|| ||e_i||`, Cauchy-Schwarz, with `||e_i||` stored per row), the
   rounding of the query to int8 when it is quantized, and float32 arithmetic (`gamma_n` bounds of the sums).
2. **Exact rescoring.** Rows are scanned chunk by chunk. Each chunk's rows of best estimate are rescored in float32
   from the stored vectors at once, and `tau`, the k-th largest rescored score (less its float32 rounding bound), is
   a proven lower bound of the k-th best score. A row whose upper bound `s~ + B` is below `tau` has a score below
   that of k rows, so it cannot be in the top k. Every other row is a candidate, rescored at the end; the top k of the
   candidates is the exact top k. (Before k rows were rescored, the rows of the chunk's k largest group maxima, once
   rescored, give `tau`.)

The ranking is the float32 ranking (ties at the k-th score may come in either order) and the scores are float32 dot
products of the stored vectors: no approximation reaches the result, only the cost depends on the data (how many
candidates the bound leaves; about 130 per query out of a million for random unit vectors, see
`benchmarks/bench_search.py`).

The scan: the queries are quantized to int8 too, and the products of codes and queries are exact int32 integers:
`torch._int_mm` for batches (an int8 matrix product on the CPU's VNNI units, compute bound), and for up to
`DOT_MAX_QUERIES` queries a small C dot-product kernel compiled on first use (`search_kernels.py`, AVX-512 VNNI where the
CPU has it; bound by memory bandwidth: 1 byte per dimension and row). Without a C compiler, `_int_mm` does both.
(A `torch.compile`d float32 pass over the codes was tried and removed: its bound is tighter, 45 instead of 86
candidates per query, but one query took 0.29 s instead of 0.011 s over 65,536 x 1024 vectors on one thread, after a
30 s compilation; `benchmarks/bench_search.py`.)

If the stored codes do not bound the vectors (damaged norm or code files), the search notices it on the rows it
rescores and raises `InconsistentCodesError` instead of returning a wrong top k.

Example:
    >>> codes = quantize_int8(vectors)                       # (rows, dim) float32 -> Int8Codes
    >>> result = exact_topk([SearchBlock(vectors, codes)], queries, k=10)
    >>> result.rows                                         # (num_queries, k) int64, best first
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from search_kernels import PARALLEL_ELEMENTS, CompiledKernels, compiled_kernels, run_parallel


logger = logging.getLogger(__name__)

#: Unit roundoff of float32.
FLOAT32_ROUNDOFF = 2.0 ** -24
#: Largest int8 code (codes lie in [-127, 127], symmetric).
CODE_MAX = 127
#: Relative slack on every bound, for the float32/float64 arithmetic of the bounds and thresholds themselves.
BOUND_SLACK = 1e-5
#: Target elements of one (rows x queries) block of estimates of the "int8" kernel (256 MB of int32): large blocks keep
#: the int8 matrix product efficient, and the per-block work of finding candidates is cheap next to it.
BLOCK_ELEMENTS = 1 << 26
#: Candidates gathered and rescored at a time by one thread (bounds the memory of the rescoring to
#: 2 * threads * RESCORE_ROWS * dim floats).
RESCORE_ROWS = 8192
#: Groups of rows whose maxima give the first chunk its provisional threshold (the k largest maxima are k distinct rows).
TAU_GROUPS = 1024
#: Bytes of a comparison mask searched at once for candidates (as one uint64 word).
WORD = 8
#: The scan gives up for a float32 scan when it has kept more than CANDIDATE_SHARE of all (query, row) pairs (and
#: more than MIN_CANDIDATE_LIMIT): then the bounds do not prune (collections of near-identical vectors).
CANDIDATE_SHARE = 0.05
MIN_CANDIDATE_LIMIT = 1 << 20
#: Up to this many queries, the int8 scan runs one pass of the dot-product kernel per query instead of `_int_mm`
#: (a matrix-vector product, which `_int_mm` is slow at).
DOT_MAX_QUERIES = 4


def _round_up(array: np.ndarray) -> np.ndarray:
    """float64 -> the smallest float32 values >= the input (so a bound stays a bound after the cast)."""
    rounded = array.astype(np.float32)
    return np.where(rounded.astype(np.float64) < array, np.nextafter(rounded, np.float32(np.inf)), rounded)


# ----------------------------------------------------------------------------------------------------------------------
# Codes
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Int8Codes:
    """int8 codes of a block of vectors and what bounds their error: `x_i = scales * codes[i] + e_i`.

    Attributes:
        codes: `(rows, dim)` int8 in [-127, 127].
        scales: `(dim,)` float32, positive: one scale per dimension (the dimension's largest |x| / 127).
        residual_norms: `(rows,)` float32, `>= ||e_i||` (computed in float64 and rounded up).
        code_norms: `(rows,)` float32, `>= ||codes[i]||`.
    """

    codes: np.ndarray
    scales: np.ndarray
    residual_norms: np.ndarray
    code_norms: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)

    def check(self, rows: int, dim: int) -> None:
        """Raises ValueError unless the arrays have the shapes and types of a `(rows, dim)` block."""
        expected = {"codes": ((rows, dim), np.int8), "scales": ((dim,), np.float32),
                    "residual_norms": ((rows,), np.float32), "code_norms": ((rows,), np.float32)}
        for name, (shape, dtype) in expected.items():
            array = getattr(self, name)
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"{name}: {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}")
        if not (np.all(np.isfinite(self.scales)) and np.all(self.scales > 0)):
            raise ValueError("scales must be finite and positive")


def quantize_int8(vectors: np.ndarray, chunk_rows: int = 8192) -> Int8Codes:
    """Per-dimension symmetric int8 codes of `(rows, dim)` float32 vectors, with rounded-up error norms.

    Raises:
        ValueError: if a vector is not finite (a NaN has no bound).
    """
    vectors = np.asarray(vectors)
    rows, dim = vectors.shape
    scales = np.zeros(dim, dtype=np.float32)
    for start in range(0, rows, chunk_rows):
        block = np.asarray(vectors[start : start + chunk_rows], dtype=np.float32)
        if not np.all(np.isfinite(block)):
            raise ValueError(f"rows {start}..{start + len(block) - 1} hold non-finite values")
        np.maximum(scales, np.abs(block).max(axis=0), out=scales)
    scales = np.where(scales > 0, scales / CODE_MAX, 1.0).astype(np.float32)
    codes = np.empty((rows, dim), dtype=np.int8)
    residual_norms = np.empty(rows, dtype=np.float32)
    code_norms = np.empty(rows, dtype=np.float32)
    scales64 = scales.astype(np.float64)
    for start in range(0, rows, chunk_rows):
        block = np.asarray(vectors[start : start + chunk_rows], dtype=np.float64)
        block_codes = np.clip(np.rint(block / scales64), -CODE_MAX, CODE_MAX)
        codes[start : start + len(block)] = block_codes
        residual = np.sqrt(((block - block_codes * scales64) ** 2).sum(axis=1))
        residual_norms[start : start + len(block)] = _round_up(residual * (1 + BOUND_SLACK))
        code_norms[start : start + len(block)] = _round_up(np.sqrt((block_codes ** 2).sum(axis=1)))
    return Int8Codes(codes=codes, scales=scales, residual_norms=residual_norms, code_norms=code_norms)


@dataclass
class SearchBlock:
    """One block of the searched collection: its float32 vectors (for rescoring) and their int8 codes (for the scan)."""

    vectors: np.ndarray
    codes: Int8Codes


# ----------------------------------------------------------------------------------------------------------------------
# Scan kernels: estimates and their error bounds, in the kernel's own units
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class ScanQueries:
    """Queries prepared for one block's scan. The kernel's estimate `W[i, q]` (rows x queries) relates to the score by
    `|q . x_i - unit[q] * W[i, q]| <= unit[q] * (residual_weight[q] * ||e_i|| + code_weight[q] * ||codes_i||)`."""

    unit: np.ndarray  # (num_queries,) float64
    residual_weight: np.ndarray  # (num_queries,) float64
    code_weight: np.ndarray  # (num_queries,) float64
    operand: torch.Tensor  # what the kernel multiplies the codes with


def _dot_error_factor(terms: int) -> float:
    """gamma_n = n u / (1 - n u): relative error bound of a float32 sum of `terms` rounded products, any order."""
    nu = terms * FLOAT32_ROUNDOFF
    return nu / (1 - nu)


def prepare_int8(queries: torch.Tensor, scales: np.ndarray) -> ScanQueries:
    """int8 operand: `q * scales = unit * d + f` with `d` int8 per query; the estimate is the exact int32 `d . codes_i`.

    The score is `q . x_i = unit (d . codes_i) + f . codes_i + q . e_i` (up to the float32 rounding of `q * scales`),
    so in units of `unit` the error is at most `(||q|| ||e_i|| + (||f|| + u ||q'||) ||codes_i||) / unit`.
    """
    queries64 = queries.double().numpy()
    scaled = (queries * torch.from_numpy(scales)).double().numpy()  # q' as the float32 product, exactly in float64
    peak = np.abs(scaled).max(axis=1)
    unit = np.where(peak > 0, peak / CODE_MAX, 1.0)
    digits = np.clip(np.rint(scaled / unit[:, None]), -CODE_MAX, CODE_MAX)
    remainder = np.linalg.norm(scaled - digits * unit[:, None], axis=1)
    rounding = FLOAT32_ROUNDOFF * np.linalg.norm(scaled, axis=1)
    return ScanQueries(unit=unit, residual_weight=np.linalg.norm(queries64, axis=1) / unit,
                       code_weight=(remainder + rounding) / unit,
                       operand=torch.from_numpy(np.ascontiguousarray(digits.T.astype(np.int8))))


def scan_int8(codes: torch.Tensor, prepared: ScanQueries, out: torch.Tensor | None = None) -> torch.Tensor:
    """`(rows, num_queries)` int32 exact products of the codes and the int8 queries (`operand`: `(dim, queries)`).

    Up to `DOT_MAX_QUERIES` queries go to the compiled dot-product kernel (`compiled_kernels`) when it is available,
    more to `torch._int_mm`; both give the same integers."""
    rows, num_queries = len(codes), prepared.operand.shape[1]
    if out is None:
        out = torch.empty((rows, num_queries), dtype=torch.int32)
    kernels = _dot_kernels(num_queries)
    if kernels is None:
        return torch._int_mm(codes, prepared.operand, out=out)
    kernels.matmul(codes, prepared.operand, out)
    return out


def _dot_kernels(num_queries: int) -> CompiledKernels | None:
    """The compiled kernels when `num_queries` is few enough for the dot-product kernel, else None (`_int_mm`)."""
    return compiled_kernels() if num_queries <= DOT_MAX_QUERIES else None


# ----------------------------------------------------------------------------------------------------------------------
# Which scan is faster on this CPU
# ----------------------------------------------------------------------------------------------------------------------

#: Below this many rows `choose_backend` takes the float32 scan: it takes a few milliseconds already.
FLAT_MAX_ROWS = 32768
#: The int8 scan is chosen only when the probe measures it at least this much faster than the float32 scan (the
#: two-stage search adds the bound, the candidate search and the rescoring to the scan).
INT8_MIN_SPEEDUP = 1.5
#: Bytes of int8 codes the probe scans (small enough for a fraction of a second where `_int_mm` is slow).
PROBE_CODE_BYTES = 1 << 21
#: Queries of the probe's batch (more than `DOT_MAX_QUERIES`: the `_int_mm` path).
PROBE_BATCH = 16

_SPEEDS: dict[tuple[int, bool, int], float] = {}


@dataclass(frozen=True)
class BackendChoice:
    """What `choose_backend` chose (`"flat"`: the float32 scan, `flat_topk`; `"int8"`: `exact_topk`) and why."""

    backend: str
    reason: str


def cpu_features() -> str:
    """The CPU's int8-relevant instruction sets as the kernel and `torch._int_mm` see them, e.g. `"AVX2, no VNNI"`."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    vnni = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI" if "avx_vnni" in flags else "no VNNI"
    return f"{capability}, {vnni}" if flags else capability


def int8_scan_speedup(dim: int, num_queries: int) -> float:
    """How many times faster the int8 scan (`scan_int8`: the compiled dot kernel for up to `DOT_MAX_QUERIES`
    queries, `torch._int_mm` for more) runs than the float32 scan's product on this CPU, for `(rows, dim)` codes and
    1 or `PROBE_BATCH` queries, on `PROBE_CODE_BYTES` of random data. Measured once per process, dimension, regime
    and thread count (about 0.1 s, up to 0.5 s where `_int_mm` is slow), then cached."""
    few = num_queries <= DOT_MAX_QUERIES
    cache_key = (dim, few, torch.get_num_threads())
    if cache_key not in _SPEEDS:
        rows = max(1024, PROBE_CODE_BYTES // dim)
        count = 1 if few else PROBE_BATCH
        generator = torch.Generator().manual_seed(0)
        vectors = torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)
        queries = torch.nn.functional.normalize(torch.randn(count, dim, generator=generator), dim=1)
        codes = quantize_int8(vectors.numpy())
        prepared = prepare_int8(queries, codes.scales)
        code_tensor, out = torch.from_numpy(codes.codes), torch.empty((rows, count), dtype=torch.int32)

        def best_of(function, repeats: int = 3, budget: float = float("inf")) -> float:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                function()
                times.append(time.perf_counter() - start)
                if sum(times) > budget:  # far slower already: no need to measure it precisely
                    break
            return min(times)

        flat = best_of(lambda: torch.topk(queries @ vectors.T, min(10, rows), dim=1))
        int8 = best_of(lambda: scan_int8(code_tensor, prepared, out), budget=20 * flat)
        _SPEEDS[cache_key] = flat / int8
    return _SPEEDS[cache_key]


def choose_backend(rows: int, num_queries: int, dim: int) -> BackendChoice:
    """The faster exact search for `num_queries` queries over `rows` vectors of width `dim` on this CPU: never a
    path slower than the float32 scan.

    Below `FLAT_MAX_ROWS` rows the float32 scan; otherwise the two-stage int8 search when its scan measured at least
    `INT8_MIN_SPEEDUP` times faster than the float32 product (`int8_scan_speedup`: on CPUs without VNNI units
    `torch._int_mm` can be 100 times slower than a float32 product), else the float32 scan.
    """
    if rows < FLAT_MAX_ROWS:
        return BackendChoice("flat", f"{rows} vectors, fewer than {FLAT_MAX_ROWS}: the float32 scan takes milliseconds")
    kernel = ("the compiled dot kernel" if num_queries <= DOT_MAX_QUERIES and compiled_kernels() is not None
              else "torch._int_mm")
    speedup = int8_scan_speedup(dim, num_queries)
    measured = (f"the int8 scan ({kernel}) measured {speedup:.2f}x the speed of the float32 product at "
                f"{'1 query' if num_queries <= DOT_MAX_QUERIES else f'{PROBE_BATCH} queries'} on this CPU "
                f"({cpu_features()}, {torch.get_num_threads()} threads)")
    if speedup >= INT8_MIN_SPEEDUP:
        return BackendChoice("int8", measured)
    return BackendChoice("flat", f"{measured}, below {INT8_MIN_SPEEDUP}x: the float32 scan")


class _Workspace:
    """Reused output buffers: a fresh allocation of hundreds of MB per chunk costs page faults and zeroing every
    time (the int8 product runs about 30% faster into a reused buffer)."""

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        buffer = self.buffers.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.shape[1] != shape[1] or len(buffer) < shape[0]:
            buffer = self.buffers[name] = torch.empty(shape, dtype=dtype)
        return buffer[: shape[0]]


# ----------------------------------------------------------------------------------------------------------------------
# Two-stage top-k
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class TopK:
    """Result of `exact_topk`: `rows` `(num_queries, k)` int64 global row numbers (blocks concatenated), best first;
    `scores` `(num_queries, k)` float32 exact scores; `candidates` `(num_queries,)` rows rescored per query."""

    rows: np.ndarray
    scores: np.ndarray
    candidates: np.ndarray


class _RunningThreshold:
    """Per query, the k largest proven lower bounds of the scores of k *distinct* rows (exact float32 scores of rescored
    rows, less their rounding bound); `tau` is the smallest of them (-inf until k rows were rescored). A row whose upper
    bound is below `tau` scores below k rows, so it is not in the top k."""

    def __init__(self, num_queries: int, k: int):
        self.k = k
        self.found = 0
        self.limit = float("inf")
        self.best = np.full((num_queries, k), -np.inf)

    def update(self, lower: np.ndarray) -> None:
        """Merges a `(num_queries, n)` table of lower bounds of rows not merged before (-inf: no row)."""
        merged = np.concatenate([self.best, lower], axis=1)
        self.best = -np.partition(-merged, self.k - 1, axis=1)[:, : self.k]

    @property
    def tau(self) -> np.ndarray:
        return self.best.min(axis=1)


def _as_threshold(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """Thresholds rounded DOWN to the estimate's dtype (so that `W >= threshold` keeps every row it must keep)."""
    if dtype == torch.int32:
        return torch.from_numpy(np.clip(np.floor(values), -2**31, 2**31 - 1).astype(np.int32))
    rounded = values.astype(np.float32)
    rounded = np.where(rounded.astype(np.float64) > values, np.nextafter(rounded, np.float32(-np.inf)), rounded)
    return torch.from_numpy(rounded)


def _rows_above(estimates: torch.Tensor, thresholds: torch.Tensor, workspace: _Workspace) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """(rows, queries) where `estimates[row, query] >= thresholds[query]`, for `(rows, queries)` estimates.

    int32 estimates go to the compiled search (`CompiledKernels.rows_above`: one pass, no mask). Otherwise candidates
    are rare, so the comparison's boolean mask is searched 8 bytes at a time (viewed as uint64 words) and only the
    nonzero words are expanded."""
    kernels = compiled_kernels() if estimates.dtype == torch.int32 else None
    if kernels is not None:
        positions = kernels.rows_above(estimates, thresholds)
        return positions // estimates.shape[1], positions % estimates.shape[1]
    if estimates.numel() < PARALLEL_ELEMENTS:  # numpy: no thread start-up for a small comparison
        mask = estimates.numpy() >= thresholds.numpy()
    else:
        mask = torch.ge(estimates, thresholds, out=workspace.get("mask", tuple(estimates.shape), torch.bool)).numpy()
    num_queries = mask.shape[1]
    flat = mask.reshape(-1)
    whole = len(flat) - len(flat) % WORD
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    positions = (words[:, None] * WORD + np.arange(WORD)).ravel()
    positions = np.concatenate([positions[flat[positions]], whole + np.flatnonzero(flat[whole:])])
    return positions // num_queries, positions % num_queries


def _best_per_query(values: np.ndarray, queries: np.ndarray, num_queries: int, k: int) -> np.ndarray:
    """Indices of each query's k largest `values` (all of them where a query has fewer), grouped by query."""
    order = np.lexsort((-values, queries))
    counts = np.bincount(queries, minlength=num_queries)
    rank = np.arange(len(order)) - (np.cumsum(counts) - counts)[queries[order]]
    return order[rank < k]


def _top_per_query(values: np.ndarray, queries: np.ndarray, num_queries: int, k: int) -> np.ndarray:
    """`(num_queries, k)` table of each query's k largest `values` (-inf where a query has fewer)."""
    table = np.full((num_queries, k), -np.inf)
    best = _best_per_query(values, queries, num_queries, k)
    counts = np.bincount(queries[best], minlength=num_queries)
    table[queries[best], np.arange(len(best)) - (np.cumsum(counts) - counts)[queries[best]]] = values[best]
    return table


def _row_scores(vectors: np.ndarray | torch.Tensor, rows: np.ndarray, queries: torch.Tensor,
                query_numbers: np.ndarray) -> np.ndarray:
    """float32 scores `queries[query_numbers[j]] . vectors[rows[j]]`, rows gathered in ascending order, in parts of
    `RESCORE_ROWS` shared among threads (numpy's gather and einsum: about 4x faster than torch's index_select and a
    product)."""
    scores = np.empty(len(rows), dtype=np.float32)
    vectors = vectors.numpy() if isinstance(vectors, torch.Tensor) else vectors
    queries = queries.numpy()
    order = np.argsort(rows, kind="stable")

    def score(start: int) -> None:
        part = order[start : start + RESCORE_ROWS]
        gathered = np.take(vectors, rows[part], axis=0)
        scores[part] = np.einsum("nd,nd->n", gathered, np.take(queries, query_numbers[part], axis=0))

    run_parallel(score, list(range(0, len(order), RESCORE_ROWS)))
    return scores


def _score_error(codes: Int8Codes, rows: np.ndarray, query_norms: np.ndarray) -> np.ndarray:
    """Bound on `|float32 score - q . x_i|` of rescored pairs: `gamma_{D+1} ||q|| ||x_i||` (D products rounded and
    summed in any order), with `||x_i|| <= max(scales) ||codes_i|| + ||e_i||`."""
    norms = float(codes.scales.max()) * codes.code_norms[rows].astype(np.float64) + codes.residual_norms[rows]
    return _dot_error_factor(codes.codes.shape[1] + 1) * query_norms * norms * (1 + BOUND_SLACK)


def _rescored_lower(block: SearchBlock, rows: np.ndarray, queries: torch.Tensor, query_norms: np.ndarray,
                    query_numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 scores of (row, query) pairs of one block and proven lower bounds of their real scores."""
    scores = _row_scores(block.vectors, rows, queries, query_numbers)
    return scores, scores - _score_error(block.codes, rows, query_norms[query_numbers])


def _provisional_tau(estimates: torch.Tensor, block: SearchBlock, start: int, queries: torch.Tensor,
                     query_norms: np.ndarray, k: int) -> np.ndarray:
    """A threshold for a chunk scanned before k rows were rescored: the chunk's rows are cut into `TAU_GROUPS` groups,
    and the rows of the k largest group maxima (k distinct rows, close to the chunk's k best) are rescored; their
    k-th score, less its rounding bound, is the threshold (-inf if the chunk has fewer than k rows). Nothing is merged
    into the running threshold (those rows are found again)."""
    rows, num_queries = estimates.shape
    if rows < k:
        return np.full(num_queries, -np.inf)
    size = max(1, rows // TAU_GROUPS)  # rows // size >= min(rows, TAU_GROUPS) >= k groups
    groups = rows // size
    maxima = estimates[: groups * size].reshape(groups, size, num_queries).amax(dim=1)
    chosen = torch.topk(maxima, k, dim=0).indices.numpy().T  # (queries, k) group numbers
    members = chosen[:, :, None] * size + np.arange(size)  # (queries, k, size) rows
    values = estimates.numpy()[members, np.arange(num_queries)[:, None, None]]
    best = np.take_along_axis(members, values.argmax(axis=2)[:, :, None], axis=2)[:, :, 0]  # (queries, k)
    _, lower = _rescored_lower(block, best.ravel() + start, queries, query_norms, np.repeat(np.arange(num_queries), k))
    return lower.reshape(num_queries, k).min(axis=1)


def _scan_few(blocks: Sequence[SearchBlock], queries: torch.Tensor) -> list[tuple[ScanQueries, torch.Tensor] | None]:
    """For up to `DOT_MAX_QUERIES` queries with the compiled kernels: every block's prepared queries and int8
    estimates in one parallel pass over all the codes (a one-query scan is a few milliseconds per block, so a pool per
    block would leave threads waiting); `None` per block otherwise (each block is scanned in `_scan_block`)."""
    kernels = _dot_kernels(len(queries))
    if kernels is None:
        return [None] * len(blocks)
    prepared = [prepare_int8(queries, block.codes.scales) for block in blocks]
    estimates = [torch.empty((len(block.codes), len(queries)), dtype=torch.int32) for block in blocks]
    kernels.matmul_blocks([(torch.from_numpy(np.asarray(block.codes.codes)), ready.operand, out)
                           for block, ready, out in zip(blocks, prepared, estimates)])
    return list(zip(prepared, estimates))


def _scan_block(number: int, block: SearchBlock, queries: torch.Tensor, query_norms: np.ndarray, k: int,
                threshold: _RunningThreshold, chunk_rows: int, workspace: _Workspace,
                scanned: tuple[ScanQueries, torch.Tensor] | None = None) -> list[tuple[np.ndarray, ...]]:
    """Scans one block chunk by chunk; returns its candidates as (query numbers, local rows, upper bounds, scores).

    A row is a candidate when its upper bound reaches the running threshold `tau`. Each chunk's k candidates of best
    estimate per query are rescored at once (`scores`; NaN for the others) and raise `tau` for the chunks after it;
    before k rows were rescored, a provisional threshold (`_provisional_tau`) stands in for `tau`. `scanned`: the
    block's prepared queries and `(rows, queries)` estimates, already computed (then the block is one chunk).
    `query_norms`: `(num_queries,)` float64 norms of the queries; `number`: the block's, for `InconsistentCodesError`.
    """
    codes = block.codes
    if scanned is not None:
        prepared, chunk_rows = scanned[0], len(codes)
    else:
        prepared = prepare_int8(queries, codes.scales)
    all_codes = torch.from_numpy(np.asarray(codes.codes))
    found = []
    for start in range(0, len(codes), chunk_rows):
        stop = min(start + chunk_rows, len(codes))
        if scanned is not None:
            estimates = scanned[1]
        else:
            estimates = scan_int8(all_codes[start:stop], prepared,
                                  workspace.get("estimates", (stop - start, len(queries)), torch.int32))
        # one bound per (query, chunk): the chunk's largest error norms, in the kernel's units (with slack)
        bound = (prepared.residual_weight * float(codes.residual_norms[start:stop].max())
                 + prepared.code_weight * float(codes.code_norms[start:stop].max())) * (1 + BOUND_SLACK)
        tau = running = threshold.tau
        if np.isneginf(running).any():
            tau = np.maximum(running, _provisional_tau(estimates, block, start, queries, query_norms, k))
        # keep rows whose upper bound unit * (W + bound) reaches tau, i.e. W >= tau / unit - bound
        rows, query_numbers = _rows_above(estimates, _as_threshold(tau / prepared.unit - bound, estimates.dtype),
                                          workspace)
        values = estimates.numpy()[rows, query_numbers].astype(np.float64)
        upper = prepared.unit[query_numbers] * (values + bound[query_numbers])
        rows += start
        # rescore each query's k best estimates when they are above the running threshold (only those can raise it;
        # all of them while it is not set, so that it is set after this chunk)
        best = _best_per_query(values, query_numbers, len(queries), k)
        best = best[prepared.unit[query_numbers[best]] * values[best] >= running[query_numbers[best]]]
        scores = np.full(len(rows), np.nan, dtype=np.float32)
        scores[best], lower = _rescored_lower(block, rows[best], queries, query_norms, query_numbers[best])
        _check_bound(number, scores[best], lower, prepared.unit[query_numbers[best]] * values[best],
                     upper[best] - prepared.unit[query_numbers[best]] * values[best])
        threshold.update(_top_per_query(lower, query_numbers[best], len(queries), k))
        found.append((query_numbers, rows, upper, scores))
        threshold.found += len(rows)
        if threshold.found > threshold.limit:
            raise _TooManyCandidates
    return found


class InconsistentCodesError(ValueError):
    """The int8 codes of block `block` (-1: of some block) do not bound its vectors: a rescored score lies outside the
    interval its estimate and error bound allow. The codes or norms were damaged after they were computed."""

    def __init__(self, block: int, detail: str):
        super().__init__(f"block {block}: {detail}" if block >= 0 else detail)
        self.block = block


def _check_bound(block: int, scores: np.ndarray, lower: np.ndarray, estimates: np.ndarray, bounds: np.ndarray) -> None:
    """Raises `InconsistentCodesError` unless every rescored pair's score (float32, within `scores - lower` of the
    real one) is within `bounds` of its estimate, as the codes promise (a free check on every rescored row)."""
    slack = (scores - lower) + BOUND_SLACK * np.abs(estimates) + 1e-30
    outside = np.abs(scores.astype(np.float64) - estimates) > bounds + slack
    if outside.any():
        position = int(np.flatnonzero(outside)[0])
        raise InconsistentCodesError(block, f"a rescored score {scores[position]:.6g} is outside its estimate "
                                            f"{estimates[position]:.6g} +- {bounds[position]:.3g}")


@dataclass
class _Candidates:
    """(query, row) pairs the bound could not rule out, with their exact scores (NaN where not rescored yet)."""

    query: np.ndarray  # (n,) int64
    block: np.ndarray  # (n,) int64 block number
    row: np.ndarray  # (n,) int64 row within the block
    score: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return len(self.row)

    def subset(self, selected: np.ndarray) -> "_Candidates":
        return _Candidates(self.query[selected], self.block[selected], self.row[selected], self.score[selected])


def _pair_scores(blocks: Sequence[SearchBlock], queries: torch.Tensor, pairs: _Candidates) -> np.ndarray:
    """Exact float32 scores `queries[q] . vectors[row]` of candidate pairs, block by block."""
    scores = np.empty(len(pairs), dtype=np.float32)
    for number, block in enumerate(blocks):
        selected = np.flatnonzero(pairs.block == number)
        if len(selected):
            scores[selected] = _row_scores(block.vectors, pairs.row[selected], queries, pairs.query[selected])
    return scores


def _final_topk(blocks: Sequence[SearchBlock], queries: torch.Tensor, k: int, candidates: _Candidates) -> np.ndarray:
    """Rescores the candidates not rescored yet and returns the `(num_queries, k)` indices of each query's k best
    (every query has at least k candidates: the k rows that set its threshold)."""
    pending = np.flatnonzero(np.isnan(candidates.score))
    candidates.score[pending] = _pair_scores(blocks, queries, candidates.subset(pending))
    best = _best_per_query(candidates.score.astype(np.float64), candidates.query, len(queries), k)
    if len(best) != k * len(queries):  # the bounds guarantee k, if the codes bound the vectors
        raise InconsistentCodesError(-1, "fewer than k rows survived the bounds")
    return best.reshape(len(queries), k)


def flat_topk(blocks: Sequence[np.ndarray], queries: torch.Tensor, k: int, chunk_rows: int = 65536) -> np.ndarray:
    """Exact top-k rows of `queries @ concat(blocks).T` by a float32 scan, chunk by chunk (memory bounded by
    `chunk_rows`): the reference the two-stage search is tested against, and its fallback.

    Args:
        blocks: `(rows_i, dim)` float32 arrays (e.g. memory-mapped shards), concatenated in order.
        queries: `(num_queries, dim)` float32.
        k: `<= sum(rows_i)`.

    Returns:
        `(num_queries, k)` int64 global row numbers, best first.
    """
    best_scores = torch.full((len(queries), 0), -torch.inf)
    best_rows = torch.zeros((len(queries), 0), dtype=torch.long)
    offset = 0
    for block in blocks:
        for start in range(0, len(block), chunk_rows):
            chunk = torch.from_numpy(np.asarray(block[start : start + chunk_rows]))
            scores = queries @ chunk.T  # (num_queries, chunk)
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            best_scores = torch.cat([best_scores, top.values], dim=1)
            best_rows = torch.cat([best_rows, top.indices + offset + start], dim=1)
            keep = torch.topk(best_scores, min(k, best_scores.shape[1]), dim=1)
            best_scores, best_rows = keep.values, torch.gather(best_rows, 1, keep.indices)
        offset += len(block)
    return best_rows.numpy()


class _TooManyCandidates(Exception):
    """The bounds leave too many candidates (near-identical vectors): a float32 scan is cheaper."""


def exact_topk(blocks: Sequence[SearchBlock], queries: torch.Tensor, k: int, chunk_rows: int | None = None) -> TopK:
    """Exact top-k rows of `queries @ concat(vectors).T` by an int8 scan with error bounds and float32 rescoring.

    Args:
        blocks: the collection, block after block (global row numbers run through them in order).
        queries: `(num_queries, dim)` float32.
        k: hits per query, `1 <= k <= total rows`.
        chunk_rows: rows scanned at a time (default: `BLOCK_ELEMENTS` estimates).

    Returns:
        `TopK` (rows, exact float32 scores, candidates rescored per query).
    """
    queries = queries.detach().float().contiguous()
    total = sum(len(block.codes) for block in blocks)
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}], got {k}")
    if not torch.isfinite(queries).all():
        raise ValueError("queries hold non-finite values")
    if chunk_rows is None:
        chunk_rows = max(1024, BLOCK_ELEMENTS // max(1, len(queries)))
    threshold = _RunningThreshold(len(queries), k)
    threshold.limit = max(MIN_CANDIDATE_LIMIT, CANDIDATE_SHARE * len(queries) * total)
    offsets = np.concatenate([[0], np.cumsum([len(block.codes) for block in blocks])])
    query_norms = np.linalg.norm(queries.double().numpy(), axis=1)
    try:
        workspace = _Workspace()
        scanned = _scan_few(blocks, queries)
        per_block = [_scan_block(number, block, queries, query_norms, k, threshold, chunk_rows, workspace, done)
                     for number, (block, done) in enumerate(zip(blocks, scanned))]
    except _TooManyCandidates:
        logger.info("two-stage search: the bounds rule out too few rows (near-identical vectors); float32 scan")
        rows = flat_topk([block.vectors for block in blocks], queries, k)
        numbers = np.searchsorted(offsets, rows.ravel(), side="right") - 1
        pairs = _Candidates(query=np.repeat(np.arange(len(queries)), k), block=numbers,
                            row=rows.ravel() - offsets[numbers], score=np.full(rows.size, np.nan, dtype=np.float32))
        scores = _pair_scores(blocks, queries, pairs).reshape(rows.shape)
        return TopK(rows=rows, scores=scores, candidates=np.full(len(queries), total))
    tau = threshold.tau
    parts, rescored = [], np.zeros(len(queries), dtype=np.int64)
    for number, found in enumerate(per_block):
        for found_queries, found_rows, upper, scores in found:
            rescored += np.bincount(found_queries[~np.isnan(scores)], minlength=len(queries))
            alive = upper >= tau[found_queries]  # tau only grew after these were kept
            parts.append(_Candidates(found_queries[alive], np.full(int(alive.sum()), number), found_rows[alive],
                                     scores[alive]))
    candidates = _Candidates(*(np.concatenate([getattr(part, name) for part in parts])
                               for name in ("query", "block", "row", "score")))
    rescored += np.bincount(candidates.query[np.isnan(candidates.score)], minlength=len(queries))
    best = _final_topk(blocks, queries, k, candidates)
    return TopK(rows=offsets[candidates.block[best]] + candidates.row[best], scores=candidates.score[best],
                candidates=rescored)
