# Copyright 2026 The clip2video authors. Licensed under the MIT licence.
"""Compiled C kernels of the int8 search (`vector_search.py`) and the thread pool its parts run on.

Two kernels, both exact: a dot product of int8 codes with an int8 query (AVX-512 VNNI where the CPU has it, a portable
loop otherwise; bound by memory bandwidth, 1 byte per dimension and row) and the search of the entries of an int32
matrix above per-column thresholds (one pass instead of a boolean mask written and read again). They are compiled
with the system C compiler on first use and cached (`build_kernels`: verified against a stamp of their key and digest
before they are loaded); without a compiler `compiled_kernels()` is None and the search uses `torch._int_mm` and numpy.
"""

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
from pathlib import Path

import numpy as np
import torch


logger = logging.getLogger(__name__)

#: Below this many estimates, comparisons run on one thread (numpy, or one call of the compiled search) rather than
#: on all of them.
PARALLEL_ELEMENTS = 1 << 20


_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_THREADS = 0


def run_parallel(function, jobs: list) -> list:
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
        run_parallel(lambda job: self.dot(*job), jobs)

    def rows_above(self, values: torch.Tensor, thresholds: torch.Tensor) -> np.ndarray:
        """`above` over a `(rows, cols)` int32 tensor, the rows split among threads (from `PARALLEL_ELEMENTS` entries:
        a smaller search takes less time than handing it to a thread): flat positions, ascending."""
        values_np, thresholds_np = np.ascontiguousarray(values.numpy()), thresholds.numpy().astype(np.int32)
        if values_np.size < PARALLEL_ELEMENTS:
            return self.above(values_np, thresholds_np)
        starts = list(range(0, len(values_np), PART_ROWS))
        parts = run_parallel(lambda start: self.above(values_np[start : start + PART_ROWS], thresholds_np)
                               + start * values_np.shape[1], starts)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


_KERNELS: CompiledKernels | None = None
_KERNELS_FAILED = False


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


__all__ = ["CompiledKernels", "build_kernels", "compiled_kernels", "kernel_cache_dir", "run_parallel"]
