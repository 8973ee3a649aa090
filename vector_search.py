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
`DOT_MAX_QUERIES` queries a small C dot-product kernel compiled on first use (`CompiledKernels`, AVX-512 VNNI where the
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

import concurrent.futures
import ctypes
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


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
#: Below this many estimates, comparisons run on one thread (numpy, or one call of the compiled search) rather than
#: on all of them.
PARALLEL_ELEMENTS = 1 << 20
#: Bytes of a comparison mask searched at once for candidates (as one uint64 word).
WORD = 8
#: The scan gives up for a float32 scan when it has kept more than CANDIDATE_SHARE of all (query, row) pairs (and
#: more than MIN_CANDIDATE_LIMIT): then the bounds do not prune (collections of near-identical vectors).
CANDIDATE_SHARE = 0.05
MIN_CANDIDATE_LIMIT = 1 << 20


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


_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_THREADS = 0


def _run_parallel(function, jobs: list) -> list:
    """`[function(job) for job in jobs]` on `torch.get_num_threads()` threads (for work that releases the GIL: ctypes
    calls, numpy gathers and products)."""
    global _POOL, _POOL_THREADS
    threads = torch.get_num_threads()
    if threads <= 1 or len(jobs) <= 1:
        return [function(job) for job in jobs]
    if _POOL is None or _POOL_THREADS != threads:
        _POOL = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="clip2video-search")
        _POOL_THREADS = threads
    return list(_POOL.map(function, jobs))


# ----------------------------------------------------------------------------------------------------------------------
# Compiled kernels: a dot product for a few queries (bound by memory: 1 byte per dimension and row) and the search of
# the estimates above the thresholds (one pass instead of a boolean mask written and read again)
# ----------------------------------------------------------------------------------------------------------------------

#: Up to this many queries, the int8 scan runs one pass of the dot-product kernel per query instead of `_int_mm`
#: (a matrix-vector product, which `_int_mm` is slow at).
DOT_MAX_QUERIES = 4
#: Rows per call of a compiled kernel (a scan's rows are shared among `torch.get_num_threads()` threads in such parts).
PART_ROWS = 16384

_KERNEL_SOURCE = r"""
#include <stdint.h>
/* out[i * out_stride] = sum_j codes[i, j] * query[j], exactly in int32 (|sum| <= dim * 127 * 128 < 2^31). */
static void dot_portable(const int8_t *codes, int64_t rows, int64_t dim, const int8_t *query, int32_t *out,
                         int64_t out_stride) {
    for (int64_t i = 0; i < rows; i++) {
        const int8_t *row = codes + i * dim;
        int32_t sum = 0;
        for (int64_t j = 0; j < dim; j++) sum += (int32_t)row[j] * (int32_t)query[j];
        out[i * out_stride] = sum;
    }
}
/* Positions i * cols + j, in order, of the entries values[i, j] >= thresholds[j] of a (rows, cols) matrix; writes at
   most `capacity` of them and returns how many there are. */
static int64_t above_portable(const int32_t *values, int64_t rows, int64_t cols, const int32_t *thresholds,
                              int64_t *out, int64_t capacity) {
    int64_t count = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (values[i * cols + j] >= thresholds[j]) {
                if (count < capacity) out[count] = i * cols + j;
                count++;
            }
    return count;
}
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* AVX-512 VNNI multiplies unsigned by signed bytes: (c ^ 0x80) = c + 128 as unsigned, so
   sum_j (c_j + 128) q_j - 128 sum_j q_j = sum_j c_j q_j, all exact in int32. */
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void dot_vnni(const int8_t *codes, int64_t rows, int64_t dim, const int8_t *query, int32_t *out,
                     int64_t out_stride) {
    const int64_t whole = dim - dim % 64;
    int32_t query_sum = 0;
    for (int64_t j = 0; j < whole; j++) query_sum += query[j];
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t i = 0; i < rows; i++) {
        const int8_t *row = codes + i * dim;
        __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
        int64_t j = 0;
        for (; j + 128 <= whole; j += 128) {
            even = _mm512_dpbusd_epi32(even, _mm512_xor_si512(_mm512_loadu_si512(row + j), flip),
                                       _mm512_loadu_si512(query + j));
            odd = _mm512_dpbusd_epi32(odd, _mm512_xor_si512(_mm512_loadu_si512(row + j + 64), flip),
                                      _mm512_loadu_si512(query + j + 64));
        }
        if (j < whole)
            even = _mm512_dpbusd_epi32(even, _mm512_xor_si512(_mm512_loadu_si512(row + j), flip),
                                       _mm512_loadu_si512(query + j));
        int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(even, odd)) - 128 * query_sum;
        for (j = whole; j < dim; j++) sum += (int32_t)row[j] * (int32_t)query[j];
        out[i * out_stride] = sum;
    }
}
/* above_portable, 16 comparisons at a time. */
__attribute__((target("avx512f")))
static int64_t above_avx512(const int32_t *values, int64_t rows, int64_t cols, const int32_t *thresholds,
                            int64_t *out, int64_t capacity) {
    const int64_t whole = cols - cols % 16;
    int64_t count = 0;
    for (int64_t i = 0; i < rows; i++) {
        const int32_t *row = values + i * cols;
        for (int64_t j = 0; j < cols; j += 16) {
            __mmask16 lanes = j < whole ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - j)) - 1);
            __m512i v = _mm512_maskz_loadu_epi32(lanes, row + j);
            __m512i t = _mm512_maskz_loadu_epi32(lanes, thresholds + j);
            unsigned int hits = _mm512_mask_cmpge_epi32_mask(lanes, v, t);
            while (hits) {
                int lane = __builtin_ctz(hits);
                if (count < capacity) out[count] = i * cols + j + lane;
                count++;
                hits &= hits - 1;
            }
        }
    }
    return count;
}
static int has_vnni(void) { return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"); }
static int has_avx512(void) { return __builtin_cpu_supports("avx512f"); }
#else
static int has_vnni(void) { return 0; }
static int has_avx512(void) { return 0; }
#endif
/* Each entry point returns through *simd whether the SIMD path ran (allow_simd = 0 forces the portable one). */
void clip2video_int8_dot(const int8_t *codes, int64_t rows, int64_t dim, const int8_t *query, int32_t *out,
                         int64_t out_stride, int allow_simd, int *simd) {
    *simd = allow_simd && has_vnni();
#if defined(__x86_64__) && defined(__GNUC__)
    if (*simd) { dot_vnni(codes, rows, dim, query, out, out_stride); return; }
#endif
    dot_portable(codes, rows, dim, query, out, out_stride);
}
int64_t clip2video_above(const int32_t *values, int64_t rows, int64_t cols, const int32_t *thresholds, int64_t *out,
                         int64_t capacity, int allow_simd, int *simd) {
    *simd = allow_simd && has_avx512();
#if defined(__x86_64__) && defined(__GNUC__)
    if (*simd) return above_avx512(values, rows, cols, thresholds, out, capacity);
#endif
    return above_portable(values, rows, cols, thresholds, out, capacity);
}
"""


class CompiledKernels:
    """`_KERNEL_SOURCE` compiled with the system C compiler and loaded with ctypes (which releases the GIL, so the
    rows of a call are split among threads). Both kernels are exact: the dot product gives the integers
    `torch._int_mm` gives, the search the
    entries numpy's comparison finds."""

    def __init__(self, library_path: str):
        self.library = ctypes.CDLL(library_path)
        #: The library file this was loaded from (the cached one, for a verified private copy of it).
        self.path = library_path
        pointer, integer = ctypes.c_void_p, ctypes.c_int64
        self._dot = self.library.clip2video_int8_dot
        self._dot.restype = None
        self._dot.argtypes = [pointer, integer, integer, pointer, pointer, integer, ctypes.c_int, pointer]
        self._above = self.library.clip2video_above
        self._above.restype = ctypes.c_int64
        self._above.argtypes = [pointer, integer, integer, pointer, pointer, integer, ctypes.c_int, pointer]

    def dot(self, codes: np.ndarray, query: np.ndarray, out: np.ndarray, allow_simd: bool = True) -> bool:
        """`out[i] = codes[i] . query` for C-contiguous int8 `(rows, dim)` codes and `(dim,)` query into an int32
        `(rows,)` `out` (a strided view is fine); one thread. Returns whether the SIMD path ran."""
        if codes.dtype != np.int8 or query.dtype != np.int8 or out.dtype != np.int32:
            raise TypeError("codes and query must be int8, out int32")
        if not codes.flags.c_contiguous or query.shape != (codes.shape[1],) or out.shape != (codes.shape[0],):
            raise ValueError("codes must be C-contiguous (rows, dim), query (dim,) and out (rows,)")
        query, simd = np.ascontiguousarray(query), ctypes.c_int(0)
        self._dot(codes.ctypes.data, codes.shape[0], codes.shape[1], query.ctypes.data, out.ctypes.data,
                  out.strides[0] // out.itemsize, int(allow_simd), ctypes.byref(simd))
        return bool(simd.value)

    def above(self, values: np.ndarray, thresholds: np.ndarray, allow_simd: bool = True) -> np.ndarray:
        """Flat positions `i * cols + j`, ascending, of the entries `values[i, j] >= thresholds[j]` of a C-contiguous
        int32 `(rows, cols)` matrix; one thread."""
        if values.dtype != np.int32 or thresholds.dtype != np.int32:
            raise TypeError("values and thresholds must be int32")
        if not values.flags.c_contiguous or values.ndim != 2 or thresholds.shape != (values.shape[1],):
            raise ValueError("values must be C-contiguous (rows, cols) and thresholds (cols,)")
        thresholds, simd = np.ascontiguousarray(thresholds), ctypes.c_int(0)
        out = np.empty(max(1024, values.size // 512), dtype=np.int64)
        while True:
            count = self._above(values.ctypes.data, values.shape[0], values.shape[1], thresholds.ctypes.data,
                                out.ctypes.data, len(out), int(allow_simd), ctypes.byref(simd))
            if count <= len(out):
                return out[:count]
            out = np.empty(count, dtype=np.int64)  # more entries than expected: once more, with room for all

    def matmul(self, codes: torch.Tensor, operand: torch.Tensor, out: torch.Tensor) -> None:
        """`out = codes @ operand` (int8 `(rows, dim)` x int8 `(dim, queries)` -> int32 `(rows, queries)`), one pass
        per query, the rows split among `torch.get_num_threads()` threads."""
        self.matmul_blocks([(codes, operand, out)])

    def matmul_blocks(self, products: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        """`matmul` for several `(codes, operand, out)` at once: one pool of parts for all of them, so that no thread
        waits at the end of each block."""
        jobs = []
        for codes, operand, out in products:
            codes_np, out_np = np.ascontiguousarray(codes.numpy()), out.numpy()
            for number, query in enumerate(operand.numpy().T):
                query = np.ascontiguousarray(query)
                jobs += [(codes_np[start : start + PART_ROWS], query, out_np[start : start + PART_ROWS, number])
                         for start in range(0, len(codes_np), PART_ROWS)]
        _run_parallel(lambda job: self.dot(*job), jobs)

    def rows_above(self, values: torch.Tensor, thresholds: torch.Tensor) -> np.ndarray:
        """`above` over a `(rows, cols)` int32 tensor, the rows split among threads (from `PARALLEL_ELEMENTS` entries:
        a smaller search takes less time than handing it to a thread): flat positions, ascending."""
        values_np, thresholds_np = np.ascontiguousarray(values.numpy()), thresholds.numpy().astype(np.int32)
        if values_np.size < PARALLEL_ELEMENTS:
            return self.above(values_np, thresholds_np)
        starts = list(range(0, len(values_np), PART_ROWS))
        parts = _run_parallel(lambda start: self.above(values_np[start : start + PART_ROWS], thresholds_np)
                               + start * values_np.shape[1], starts)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


_KERNELS: CompiledKernels | None = None
_KERNELS_FAILED = False


def _dot_kernels(num_queries: int) -> CompiledKernels | None:
    """The compiled kernels when `num_queries` is few enough for the dot-product kernel, else None (`_int_mm`)."""
    return compiled_kernels() if num_queries <= DOT_MAX_QUERIES else None


def kernel_cache_dir() -> Path:
    """Where compiled kernels are kept: `$CLIP2VIDEO_CACHE/kernels`, else `~/.cache/clip2video/kernels`."""
    root = os.environ.get("CLIP2VIDEO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "clip2video")
    return Path(root) / "kernels"


#: How the kernels are compiled (with the compiler in front); part of the cache key.
COMPILE_FLAGS = ("-O3", "-shared", "-fPIC")


def _compiler_line() -> tuple[list[str], str]:
    """The compiler command (`$CC`, else cc, gcc or clang) and what identifies it: the command line, the compiler's
    own version line and the platform. Raises RuntimeError when no C compiler works here."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise RuntimeError("no C compiler found (set CC)")
    command = shlex.split(compiler)
    try:
        version = subprocess.run(command + ["--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"cannot run the C compiler {compiler}: {error}") from None
    identity = "\0".join([shlex.join(command + list(COMPILE_FLAGS)), (version.stdout.splitlines() or [""])[0],
                          platform.machine(), platform.system()])
    return command, identity


def _private(path: Path) -> bool:
    """Whether `path` belongs to this user and nobody else can write it (so nobody else can plant a library)."""
    try:
        status = path.stat()
    except OSError:
        return False
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


def _load_copy(data: bytes, name: str) -> CompiledKernels:
    """Loads library bytes already verified, from a private copy: what runs is what was checked, and a cache file
    truncated or replaced later cannot reach the mapped library (a truncated mapping dies of SIGBUS)."""
    with tempfile.TemporaryDirectory(prefix="clip2video-kernels-") as private:
        copy = Path(private) / name
        copy.write_bytes(data)
        return CompiledKernels(str(copy))


def build_kernels(cache_dir: Path | None = None) -> CompiledKernels:
    """Compiles `_KERNEL_SOURCE` once per source and compiler line (the library's name holds their hash) and loads it.

    The cache keeps the library and a stamp (`.json`: the full key and the SHA-256 of the library's bytes). A cached
    library is loaded only when the stamp's key is this source and compiler line, its bytes hash to the stamp's
    digest, and the folder and files are this user's and writable by nobody else; otherwise it is compiled again
    (a truncated or replaced file, a stamp from another build) — into a private temporary folder, uncached, when the
    cache folder is not private. The bytes are loaded from a private copy (`_load_copy`).

    Raises:
        RuntimeError: when no C compiler works here.
    """
    command, identity = _compiler_line()
    key = hashlib.sha256("\0".join([_KERNEL_SOURCE, identity]).encode()).hexdigest()
    cache_dir = Path(cache_dir or kernel_cache_dir())
    library = cache_dir / f"search_kernels-{key[:16]}.so"
    stamp = library.with_suffix(".json")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        logger.info("kernel cache %s unusable (%s); compiling into a private folder", cache_dir, error)
    cached = _private(cache_dir) and os.access(cache_dir, os.W_OK)
    if cached and _private(library) and _private(stamp):
        try:
            recorded = json.loads(stamp.read_text())
            data = library.read_bytes()
        except (OSError, ValueError):
            recorded, data = {}, b""
        if (isinstance(recorded, dict) and recorded.get("key") == key
                and recorded.get("sha256") == hashlib.sha256(data).hexdigest()):
            kernels = _load_copy(data, library.name)
            kernels.path = str(library)
            return kernels
        logger.warning("compiled search kernels %s do not match their stamp (truncated, replaced or another "
                       "build); compiling them again", library)
    elif not cached:
        logger.warning("kernel cache %s is not private to this user; compiling into a private folder", cache_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir if cached else None, prefix="clip2video-kernels-") as work:
        source = Path(work) / "search_kernels.c"
        source.write_text(_KERNEL_SOURCE)
        built = Path(work) / library.name
        try:
            result = subprocess.run(command + list(COMPILE_FLAGS) + [str(source), "-o", str(built)],
                                    capture_output=True, text=True)
        except OSError as error:
            raise RuntimeError(f"cannot run the C compiler {shlex.join(command)}: {error}") from None
        if result.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed: {result.stderr.strip()[:500]}")
        data = built.read_bytes()
        kernels = _load_copy(data, library.name)
        if cached:  # atomic renames: another process never reads half a file (a stale pair fails the check)
            written = Path(work) / stamp.name
            written.write_text(json.dumps({"key": key, "sha256": hashlib.sha256(data).hexdigest()}))
            os.replace(built, library)
            os.replace(written, stamp)
            kernels.path = str(library)
    return kernels


def compiled_kernels() -> CompiledKernels | None:
    """The compiled kernels, checked on a small probe, or None when they cannot be built here (logged once; the scan
    then uses `torch._int_mm` and numpy)."""
    global _KERNELS, _KERNELS_FAILED
    if _KERNELS is None and not _KERNELS_FAILED:
        try:
            kernels = build_kernels()
            codes = np.arange(-60, 70, dtype=np.int8).reshape(2, 65)
            query = np.arange(65, dtype=np.int8) - 32
            products = np.empty(2, dtype=np.int32)
            kernels.dot(codes, query, products)
            values = np.arange(-20, 20, dtype=np.int32).reshape(2, 20)
            thresholds = np.arange(20, dtype=np.int32) - 12
            if not (np.array_equal(products, codes.astype(np.int32) @ query.astype(np.int32))
                    and np.array_equal(kernels.above(values, thresholds), np.flatnonzero(values >= thresholds))):
                raise RuntimeError("the compiled kernels give wrong results")
            _KERNELS = kernels
        except Exception as error:  # no compiler, read-only cache, unsupported platform: the fallbacks are exact too
            _KERNELS_FAILED = True
            logger.warning("compiled search kernels unavailable (%s: %s); using torch._int_mm and numpy",
                           type(error).__name__, error)
    return _KERNELS


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

    _run_parallel(score, list(range(0, len(order), RESCORE_ROWS)))
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
