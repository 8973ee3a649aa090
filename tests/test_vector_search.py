"""The two-stage exact search (`vector_search.py`): the error bound holds for every row, and the top k is the float32
scan's, row for row, on random, anisotropic, nearly tied and exactly tied collections."""


import numpy as np
import pytest
import torch

import vector_search as vs
from conftest import skip_or_fail


def unit_rows(array: np.ndarray) -> np.ndarray:
    return (array / np.linalg.norm(array, axis=1, keepdims=True)).astype(np.float32)


def collection(kind: str, rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Test collections: isotropic; a few dominant dimensions (CLIP's embeddings have such outliers); clusters of
    near-duplicates (scores tied to 1e-7); exact duplicates (genuine ties); and concatenated unit halves (the layout
    of CLIP2Video's vectors)."""
    base = rng.standard_normal((rows, dim))
    if kind == "duplicates":
        return unit_rows(base[rng.integers(0, max(1, rows // 4), rows)])
    if kind == "outliers":
        base[:, :3] *= 40
    elif kind == "near-duplicates":
        centres = rng.standard_normal((6, dim))
        base = centres[rng.integers(0, 6, rows)] + 1e-6 * base
    elif kind == "halves":
        return np.concatenate([unit_rows(base[:, : dim // 2]), unit_rows(base[:, dim // 2 :])], axis=1)
    return unit_rows(base)


def reference_scores(blocks, queries) -> np.ndarray:
    vectors = np.concatenate([block.vectors for block in blocks]).astype(np.float64)
    return queries.double().numpy() @ vectors.T


def float32_scores(blocks, queries) -> np.ndarray:
    """`(num_queries, rows)` float32 scores of every row, each a float32 dot product of the stored vector and the query
    (numpy's `nd,nd->n` contraction, one row at a time: the arithmetic the search rescores in): the float32 scan."""
    vectors = np.concatenate([block.vectors for block in blocks])
    return np.stack([np.einsum("nd,nd->n", vectors, np.broadcast_to(query, vectors.shape))
                     for query in queries.numpy()])


def assert_exact_topk(result: vs.TopK, blocks, queries, k: int) -> None:
    """The float32 scan's top k, row for row: the same rows in the same order wherever scores differ (near-duplicates
    1e-7 apart included); rows whose float32 scores are exactly equal (genuine ties) may come in either order, and at
    the k-th score any of the rows tied there may be returned. Scores are those rows' float32 scores bit for bit, and
    within float32 rounding of the float64 scores."""
    scores = float32_scores(blocks, queries)
    reference = reference_scores(blocks, queries)
    assert result.rows.shape == result.scores.shape == (len(queries), k)
    for query, (rows, returned) in enumerate(zip(result.rows, result.scores)):
        assert len(set(rows.tolist())) == k
        np.testing.assert_array_equal(returned, scores[query, rows])  # the returned rows really score that
        expected = np.sort(scores[query])[::-1][:k]
        np.testing.assert_array_equal(returned, expected)  # the k best scores, best first
        for value in np.unique(expected):  # so each tie group gives as many rows as the scan's top k holds of it
            group = np.flatnonzero(scores[query] == value)
            here = rows[returned == value]
            assert len(here) == np.count_nonzero(expected == value) and set(here.tolist()) <= set(group.tolist())
            if len(group) == 1:  # a distinct score: exactly the scan's row
                assert here.tolist() == group.tolist()
        np.testing.assert_allclose(reference[query, rows], returned, atol=2e-6)


def compiled_kernels_or_skip() -> vs.CompiledKernels:
    """The compiled kernels; without a C compiler the test is skipped, except under CI (`CI=true`), where it fails:
    the README relies on the kernels, so CI must have a compiler."""
    kernels = vs.compiled_kernels()
    if kernels is None:
        skip_or_fail("no C compiler here: the compiled search kernels cannot be built")
    return kernels


@pytest.mark.parametrize("kind", ["isotropic", "outliers", "near-duplicates", "halves"])
def test_bound_covers_every_row(kind):
    """|q.x_i - unit * W_i| <= unit * (residual_weight ||e_i|| + code_weight ||codes_i||) for every query and row: the
    fact the pruning rests on. Estimates come from the kernel itself."""
    rng = np.random.default_rng(0)
    vectors = collection(kind, 3000, 96, rng)
    codes = vs.quantize_int8(vectors)
    queries = torch.from_numpy(collection(kind, 9, 96, rng))
    prepared = vs.prepare_int8(queries, codes.scales)
    estimates = vs.scan_int8(torch.from_numpy(codes.codes), prepared).double().numpy().T
    error = np.abs(queries.double().numpy() @ vectors.astype(np.float64).T - prepared.unit[:, None] * estimates)
    bound = prepared.unit[:, None] * (prepared.residual_weight[:, None] * codes.residual_norms
                                      + prepared.code_weight[:, None] * codes.code_norms)
    assert np.all(error <= bound)
    assert np.median(bound) < 0.05  # and it is tight enough to prune (scores of unit vectors span [-1, 1])


def test_quantize_reconstructs_and_rejects_nan():
    rng = np.random.default_rng(1)
    vectors = collection("outliers", 500, 40, rng)
    codes = vs.quantize_int8(vectors, chunk_rows=64)
    codes.check(500, 40)
    assert np.abs(codes.codes.astype(np.int32)).max() == vs.CODE_MAX
    residual = vectors.astype(np.float64) - codes.codes * codes.scales.astype(np.float64)
    assert np.all(np.linalg.norm(residual, axis=1) <= codes.residual_norms)
    assert np.all(np.linalg.norm(codes.codes.astype(np.float64), axis=1) <= codes.code_norms)
    assert np.all(np.abs(residual) <= codes.scales / 2 + 1e-9)
    vectors[7, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        vs.quantize_int8(vectors)


@pytest.mark.parametrize("kind", ["isotropic", "outliers", "near-duplicates", "duplicates", "halves"])
def test_exact_topk_equals_reference(kind):
    """Blocks of uneven sizes, chunks smaller than a block, k from 1 to beyond a chunk, 1 and 20 queries."""
    rng = np.random.default_rng(2)
    blocks = []
    for rows in (1, 700, 2300, 1500):
        vectors = collection(kind, rows, 64, rng)
        blocks.append(vs.SearchBlock(vectors, vs.quantize_int8(vectors)))
    for num_queries in (1, 20):
        queries = torch.from_numpy(collection(kind, num_queries, 64, rng))
        for k in (1, 10, 600):
            result = vs.exact_topk(blocks, queries, k, chunk_rows=512)
            assert_exact_topk(result, blocks, queries, k)
            assert np.all(result.candidates >= k)
    if kind == "isotropic":  # pruning does its job: few candidates out of 4,501 rows
        assert result.candidates.mean() < 0.5 * 4501


@pytest.mark.parametrize("shape", [(203, 5), (1, 1), (7, 3), (64, 1), (40000, 37), (3000, 1000)])
def test_rows_above_finds_every_entry(shape):
    rng = np.random.default_rng(8)
    estimates = torch.from_numpy(rng.integers(-1000, 1000, shape, dtype=np.int32))
    thresholds = torch.from_numpy(rng.integers(-1100, 1100, shape[1], dtype=np.int32))
    thresholds[0] = 990
    rows, queries = vs._rows_above(estimates, thresholds, vs._Workspace())
    expected = np.nonzero(estimates.numpy() >= thresholds.numpy())
    assert sorted(zip(rows.tolist(), queries.tolist())) == sorted(zip(*(index.tolist() for index in expected)))
    kernels = compiled_kernels_or_skip()
    for allow_simd in (True, False):  # the compiled search, both paths, in order
        positions = kernels.above(estimates.numpy(), thresholds.numpy(), allow_simd=allow_simd)
        np.testing.assert_array_equal(positions, np.flatnonzero(estimates.numpy() >= thresholds.numpy()))


def test_k_equals_collection_and_invalid_arguments():
    rng = np.random.default_rng(3)
    vectors = collection("isotropic", 50, 16, rng)
    blocks = [vs.SearchBlock(vectors, vs.quantize_int8(vectors))]
    queries = torch.from_numpy(collection("isotropic", 3, 16, rng))
    result = vs.exact_topk(blocks, queries, 50, chunk_rows=7)
    assert_exact_topk(result, blocks, queries, 50)
    with pytest.raises(ValueError, match="k must be"):
        vs.exact_topk(blocks, queries, 51)
    with pytest.raises(ValueError, match="non-finite"):
        vs.exact_topk(blocks, queries * float("nan"), 5)


@pytest.mark.parametrize("dim", [1, 63, 64, 100, 129, 1024])
def test_compiled_dot_kernel_equals_int_mm(dim):
    """The compiled dot-product kernel (few queries) gives the same int32 products as a 64-bit reference, on both of
    its paths (AVX-512 VNNI where the CPU has it, the portable loop), with extreme codes and strided outputs."""
    kernel = compiled_kernels_or_skip()
    rng = np.random.default_rng(dim)
    codes = rng.integers(-127, 128, (1001, dim), dtype=np.int8)
    codes[0], codes[1] = 127, -127
    operand = rng.integers(-127, 128, (dim, 3), dtype=np.int8)
    operand[:, 0] = -127
    expected = codes.astype(np.int64) @ operand.astype(np.int64)
    out = torch.full((1001, 3), 7, dtype=torch.int32)
    kernel.matmul(torch.from_numpy(codes), torch.from_numpy(operand), out)
    np.testing.assert_array_equal(out.numpy(), expected)
    for allow_simd in (True, False):
        column = np.zeros((1001, 2), dtype=np.int32)[:, 1]  # a strided view
        kernel.dot(codes, np.ascontiguousarray(operand[:, 1]), column, allow_simd=allow_simd)
        np.testing.assert_array_equal(column, expected[:, 1])
    if dim % 8 == 0 and dim >= 16:  # the shapes torch._int_mm takes
        prepared = vs.ScanQueries(unit=np.ones(3), residual_weight=np.ones(3), code_weight=np.ones(3),
                                  operand=torch.from_numpy(operand))
        assert torch.equal(vs.scan_int8(torch.from_numpy(codes), prepared),
                           torch._int_mm(torch.from_numpy(codes), torch.from_numpy(operand)))


def test_kernels_without_compiler_fall_back(tmp_path, monkeypatch):
    """No C compiler: building raises a clear error, the scan falls back to torch._int_mm and numpy and stays exact
    (one query: the dot-product kernel's job; 20 queries: the compiled search's)."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.raises(RuntimeError, match="no-such-compiler"):
        vs.build_kernels(tmp_path / "kernels")
    monkeypatch.setattr(vs, "_KERNELS", None)
    monkeypatch.setattr(vs, "_KERNELS_FAILED", False)
    monkeypatch.setenv("CLIP2VIDEO_CACHE", str(tmp_path / "cache"))
    assert vs.compiled_kernels() is None
    rng = np.random.default_rng(5)
    vectors = collection("isotropic", 4000, 64, rng)
    blocks = [vs.SearchBlock(vectors, vs.quantize_int8(vectors))]
    for count in (1, 20):
        queries = torch.from_numpy(collection("isotropic", count, 64, rng))
        assert_exact_topk(vs.exact_topk(blocks, queries, 10), blocks, queries, 10)


def test_kernels_are_built_once(tmp_path):
    """The library is cached under a name that hashes its source and compiler: a second build reuses the file."""
    compiled_kernels_or_skip()
    first = vs.build_kernels(tmp_path)
    (library,) = tmp_path.glob("search_kernels-*.so")
    stamp = library.stat().st_mtime_ns
    second = vs.build_kernels(tmp_path)
    assert library.stat().st_mtime_ns == stamp and list(tmp_path.iterdir()) == [library]
    assert first.library._name == second.library._name == str(library)


def test_kernels_are_cached_under_clip2video_cache(tmp_path, monkeypatch):
    """`$CLIP2VIDEO_CACHE/kernels` holds the compiled library when set; `~/.cache/clip2video/kernels` otherwise."""
    compiled_kernels_or_skip()
    monkeypatch.setenv("CLIP2VIDEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vs, "_KERNELS", None)
    monkeypatch.setattr(vs, "_KERNELS_FAILED", False)
    assert vs.kernel_cache_dir() == tmp_path / "cache" / "kernels"
    kernels = vs.compiled_kernels()
    (library,) = (tmp_path / "cache" / "kernels").glob("search_kernels-*.so")
    assert kernels.library._name == str(library)
    monkeypatch.delenv("CLIP2VIDEO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert vs.kernel_cache_dir() == tmp_path / "home" / ".cache" / "clip2video" / "kernels"


def test_damaged_codes_are_detected_not_trusted():
    """Codes whose norms were zeroed (or codes scrambled) no longer bound the vectors: the search says so instead of
    returning a wrong top k."""
    rng = np.random.default_rng(11)
    vectors = collection("isotropic", 3000, 64, rng)
    queries = torch.from_numpy(collection("isotropic", 3, 64, rng))
    good = vs.quantize_int8(vectors)
    zeroed = vs.Int8Codes(good.codes, good.scales, np.zeros_like(good.residual_norms), np.zeros_like(good.code_norms))
    scrambled = vs.Int8Codes(rng.permutation(good.codes), good.scales, good.residual_norms, good.code_norms)
    for codes in (zeroed, scrambled):
        blocks = [vs.SearchBlock(vectors[:1000], vs.quantize_int8(vectors[:1000])), vs.SearchBlock(vectors, codes)]
        with pytest.raises(vs.InconsistentCodesError, match="block 1: a rescored score") as raised:
            vs.exact_topk(blocks, queries, 10)
        assert raised.value.block == 1


@pytest.mark.parametrize("kind", ["outliers", "near-duplicates"])
def test_rescored_lower_bounds_hold(kind):
    """The lower bound of a rescored pair (float32 score less its rounding bound) never exceeds the real score: the
    running threshold rests on it."""
    rng = np.random.default_rng(6)
    vectors = collection(kind, 2000, 200, rng) * 3
    block = vs.SearchBlock(vectors, vs.quantize_int8(vectors))
    queries = torch.from_numpy(collection(kind, 4, 200, rng) * 5)
    rows = np.tile(np.arange(2000), 4)
    query_numbers = np.repeat(np.arange(4), 2000)
    scores, lower = vs._rescored_lower(block, rows, queries, np.linalg.norm(queries.double().numpy(), axis=1),
                                       query_numbers)
    real = np.einsum("nd,nd->n", vectors[rows].astype(np.float64), queries.double().numpy()[query_numbers])
    assert np.all(lower <= real) and np.all(np.abs(scores - real) <= scores - lower + 1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# In the index: codes written with the shards, derived again when missing or damaged, every backend the same hits
# ----------------------------------------------------------------------------------------------------------------------


def build_index(folder, vectors: np.ndarray, shard_rows: int):
    import folder_format as sv
    import folder_index as fi

    manifest = sv.Manifest(video_dir=str(folder / "videos"), dim=vectors.shape[1],
                           model={"name_or_path": "test", "fingerprint": "test", "bf16": False})
    records = [{"path": f"v{row:05d}.mp4", "size": row, "mtime_ns": row, "duration": 1.0, "frames": 12}
               for row in range(len(vectors))]
    sv.write_pending_chunk(folder, vectors, records, [], prefix="test")
    return fi.commit(folder, manifest, drop=set(), shard_rows=shard_rows)


def hit_paths(index, queries, backend, k=15):
    return [[(hit.path, hit.score) for hit in hits] for hits in index.search(queries, k=k, scale=2.0,
                                                                             backend=backend)]


def test_index_backends_agree_and_codes_are_derived_data(tmp_path):
    import folder_format as sv
    import folder_index as fi

    rng = np.random.default_rng(5)
    vectors = collection("halves", 2500, 32, rng)
    manifest = build_index(tmp_path, vectors, shard_rows=1000)
    assert [shard.rows for shard in manifest.shards] == [1000, 1000, 500]
    for shard in manifest.shards:  # codes were written next to each shard by the commit
        codes = sv.read_codes(tmp_path, shard, 32)
        assert np.array_equal(codes.codes, vs.quantize_int8(np.load(shard.vectors_path(tmp_path))).codes)
    queries = torch.from_numpy(collection("halves", 6, 32, rng))
    index = fi.VideoIndex(tmp_path)
    flat = hit_paths(index, queries, "flat")
    scores = 2.0 * queries.double().numpy() @ vectors.astype(np.float64).T
    assert [[path for path, _ in hits] for hits in flat] == [
        [f"{tmp_path / 'videos'}/v{row:05d}.mp4" for row in np.argsort(-row_scores)[:15]] for row_scores in scores]
    backends = ["int8", "auto"] + (["faiss"] if fi.faiss_available() else [])
    for backend in backends:
        assert hit_paths(index, queries, backend) == flat, backend

    # an index without codes (or with damaged ones) gets them computed again, and saved
    first, second = manifest.shards[0].codes_paths(tmp_path), manifest.shards[1].codes_paths(tmp_path)
    first["codes"].unlink()
    np.save(second["norms"], np.zeros((2, 3), np.float32))
    assert hit_paths(fi.VideoIndex(tmp_path), queries, "int8") == flat
    assert first["codes"].is_file() and np.load(second["norms"]).shape == (2, 1000)
    with pytest.raises(ValueError, match="backend must be one of"):
        index.search(queries, backend="torch-gpu")


def test_read_only_index_keeps_derived_codes_in_memory(tmp_path, monkeypatch):
    import folder_format as sv
    import folder_index as fi

    rng = np.random.default_rng(6)
    vectors = collection("isotropic", 300, 16, rng)
    manifest = build_index(tmp_path, vectors, shard_rows=1000)
    for path in manifest.shards[0].codes_paths(tmp_path).values():
        path.unlink()
    queries = torch.from_numpy(collection("isotropic", 2, 16, rng))
    expected = hit_paths(fi.VideoIndex(tmp_path), queries, "flat", k=5)

    def read_only(path, array):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sv, "write_npy", read_only)
    assert hit_paths(fi.VideoIndex(tmp_path), queries, "int8", k=5) == expected
    assert not manifest.shards[0].codes_paths(tmp_path)["codes"].exists()


def test_stale_code_files_are_removed_with_their_shard(tmp_path):
    import folder_format as sv
    import folder_index as fi

    rng = np.random.default_rng(7)
    manifest = build_index(tmp_path, collection("isotropic", 120, 8, rng), shard_rows=100)
    small = manifest.shards[1]  # 20 rows: merged again (with the new rows) by the next commit
    records = [{"path": f"w{row}.mp4", "size": 1, "mtime_ns": 1, "duration": 1.0, "frames": 12} for row in range(5)]
    sv.write_pending_chunk(tmp_path, collection("isotropic", 5, 8, rng), records, [], prefix="test")
    updated = fi.commit(tmp_path, manifest, drop=set(), shard_rows=100)
    assert small not in updated.shards
    names = {path.name for path in (tmp_path / sv.SHARDS).iterdir()}
    assert names == {name for shard in updated.shards for name in shard.file_names()}


def test_degenerate_collection_falls_back_to_the_float32_scan(monkeypatch, caplog):
    """Identical vectors: every row is a candidate; the search notices and scans float32 instead (same result)."""
    monkeypatch.setattr(vs, "MIN_CANDIDATE_LIMIT", 100)
    vectors = np.tile(collection("isotropic", 1, 32, np.random.default_rng(9)), (3000, 1))
    vectors[1234] *= 1.01  # one row scores a little higher than the rest for positive scores
    blocks = [vs.SearchBlock(vectors, vs.quantize_int8(vectors))]
    queries = torch.from_numpy(vectors[:2] * 1.0)
    with caplog.at_level("INFO", logger="vector_search"):
        result = vs.exact_topk(blocks, queries, 5)
    assert "float32 scan" in caplog.text
    assert result.rows[:, 0].tolist() == [1234, 1234]
    assert_exact_topk(result, blocks, queries, 5)
