"""FAISS indexes (real ones): exact and filtered search against brute force, files, torch path."""

from __future__ import annotations

import json
import os

import faiss
import numpy as np
import pytest

from ibsearch.errors import LibraryError, UsageError
from ibsearch.index import (
    BLAS_THRESHOLD,
    FaissIndex,
    LiveIndex,
    SearchTuning,
    StaleIndexError,
    TorchExactIndex,
    faiss_index,
    sidecar_path,
    torch_index,
)
from ibsearch.index import exact as exact_search
from ibsearch.store import FileEntry, Store, vector_entries

DIM = 32


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    """3000 vectors with scattered ids (not 0..n-1), and 12 queries."""
    vectors = unit(3000, seed=1)
    ids = np.arange(3000, dtype=np.int64) * 7 + 11
    return ids, vectors, unit(12, seed=2)


@pytest.fixture
def exact(data):
    ids, vectors, _ = data
    index = FaissIndex(DIM, model_id="tiny-test")
    index.add(ids, vectors)
    return index


def brute_force(ids, vectors, queries, k, allowed=None):
    scores = queries @ vectors.T
    if allowed is not None:
        scores[:, ~np.isin(ids, allowed)] = -np.inf
    k = min(k, int(np.isfinite(scores[0]).sum()))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def assert_same_hits(got, expected):
    (gs, gi), (es, ei) = got, expected
    assert gi.shape == ei.shape
    np.testing.assert_array_equal(gi, ei)
    np.testing.assert_allclose(gs, es, atol=1e-5)


def assert_same_ranking(got, expected):
    """The same hits in the same order, but for neighbours whose scores differ by rounding only (BLAS
    and FAISS's own loop sum in different orders: a ranking of thousands meets such near-ties)."""
    (gs, gi), (es, ei) = got, expected
    assert gi.shape == ei.shape
    np.testing.assert_allclose(gs, es, atol=1e-5)
    for row_got, row_expected in zip(gi, ei, strict=True):
        assert sorted(row_got) == sorted(row_expected)
    apart = np.ones(gs.shape, dtype=bool)
    near = np.abs(np.diff(es, axis=1)) < 1e-5
    apart[:, 1:] &= ~near
    apart[:, :-1] &= ~near
    np.testing.assert_array_equal(gi[apart], ei[apart])


def test_importing_the_index_package_sets_a_low_blas_threshold():
    assert faiss.cvar.distance_compute_blas_threshold == BLAS_THRESHOLD <= 32


def test_exact_search_returns_the_true_top_k_by_inner_product(data, exact):
    ids, vectors, queries = data
    assert_same_hits(exact.search(queries, 10), brute_force(ids, vectors, queries, 10))
    scores, hits = exact.search(queries[0], 1)  # a single (dim,) query
    assert hits.shape == (1, 1) and hits[0, 0] == brute_force(ids, vectors, queries[:1], 1)[1][0, 0]
    assert exact.search(vectors[5], 1)[1][0, 0] == ids[5]  # self-retrieval


@pytest.mark.parametrize("n_queries", [1, 3, 12])  # 12 >= FILTERED_BLAS_MIN_QUERIES: gathered BLAS path
@pytest.mark.parametrize("fraction", [0.002, 0.3, 0.95])
def test_filters_give_exactly_the_brute_force_filtered_top_k(data, exact, n_queries, fraction):
    ids, vectors, queries = data
    rng = np.random.default_rng(3)
    allowed = ids[rng.random(len(ids)) < fraction]
    allowed = np.concatenate([allowed, [10**9, 5]])  # ids the index does not hold are harmless
    got = exact.search(queries[:n_queries], 10, allowed_ids=allowed)
    assert_same_hits(got, brute_force(ids, vectors, queries[:n_queries], 10, allowed))
    assert np.isin(got[1], allowed).all()


@pytest.mark.parametrize("n_queries", [1, 5, 64, 65])  # 65: past EXACT_PRODUCT_MOST, FAISS's BLAS path
@pytest.mark.parametrize("mmap", [False, True])
def test_the_blas_product_path_equals_faiss_exact_search_mapped_or_not_filtered_or_not(
    tmp_path, data, exact, n_queries, mmap, monkeypatch
):
    import torch  # noqa: F401  (a process with torch loaded scores mapped rows by the product path)

    ids, vectors, _ = data
    path = tmp_path / "vision.faiss"
    exact.save(path)
    index = FaissIndex.load(path, mmap=mmap)
    # FAISS's file puts the vectors at an odd offset: mapped, they are scored by torch's BLAS, not numpy's
    rows = index.vectors_view()[1]
    assert rows.flags.aligned is not mmap and exact_search.blas_takes(rows)
    queries = unit(n_queries, seed=9)
    faiss_only = SearchTuning(exact_product_most=0)  # FAISS's own flat search, whatever the batch
    allowed = ids[np.random.default_rng(4).random(len(ids)) < 0.4]
    for filt in (None, allowed, allowed[:3], ids[:0]):
        for k in (1, 10, 5000):
            got = index.search(queries, k, allowed_ids=filt)
            assert_same_ranking(got, index.search(queries, k, allowed_ids=filt, tuning=faiss_only))
            assert_same_ranking(got, brute_force(ids, vectors, queries, k, filt))
    # its blocks of rows meet at the right places: a tiny block budget, many blocks
    monkeypatch.setattr(exact_search, "_BLOCK_BYTES", 4 * n_queries * 700)
    assert_same_hits(index.search(queries, 10), brute_force(ids, vectors, queries, 10))
    assert_same_hits(index.search(queries, 10, allowed), brute_force(ids, vectors, queries, 10, allowed))


def test_an_exact_search_hands_back_its_scores_at_a_sample_of_rows_only_where_the_rows_hold_the_sample(
    data, exact, monkeypatch
):
    ids, vectors, queries = data
    rows = np.sort(np.random.default_rng(6).choice(len(ids), 700, replace=False))
    monkeypatch.setattr(exact_search, "_BLOCK_BYTES", 4 * 900)  # a sample spread over many blocks
    for filt in (None, ids[::3]):  # a filter leaves the sample's scores whole
        sample = exact_search.ScoreSample(ids[rows], rows)
        assert_same_hits(
            exact.search(queries[0], 10, filt, sample=sample),
            brute_force(ids, vectors, queries[:1], 10, filt),
        )
        assert sample.scores is not None
        np.testing.assert_allclose(sample.scores, queries[:1] @ vectors[rows].T, atol=1e-5)
    ScoreSample = exact_search.ScoreSample
    for elsewhere in (ScoreSample(ids[rows] + 1, rows), ScoreSample(ids[:2], np.array([0, len(ids)]))):
        exact.search(queries[0], 10, sample=elsewhere)
        assert elsewhere.scores is None  # ids that are not at those rows: nothing is made up


def test_an_index_reads_the_vectors_it_holds_as_they_are_from_its_own_memory(data, exact):
    ids, vectors, _ = data
    live = LiveIndex(exact)
    wanted = np.array([ids[5], 3, ids[0], ids[2999], ids[7]])  # 3 is not held
    got, found = live.vectors_of(wanted)
    np.testing.assert_array_equal(got, wanted[[0, 2, 3, 4]])
    np.testing.assert_array_equal(found, vectors[[5, 0, 2999, 7]])
    live.remove(ids[:6])  # rows move: the index's own order of ids is found again
    live.add(np.array([10**6]), vectors[:1])
    got, found = live.vectors_of(wanted)
    np.testing.assert_array_equal(got, wanted[[3, 4]])
    np.testing.assert_array_equal(found, vectors[[2999, 7]])
    np.testing.assert_array_equal(live.vectors_of(np.array([10**6]))[1], vectors[:1])


def test_a_sparse_filter_over_huge_ids_uses_a_hash_selector_and_stays_exact():
    vectors = unit(500, seed=4)
    ids = np.arange(500, dtype=np.int64) * 10**12  # a bitmap up to the largest id would be too big
    index = FaissIndex(DIM)
    index.add(ids, vectors)
    allowed = ids[::5]
    assert isinstance(faiss_index.Selector(allowed).sel, faiss.IDSelectorBatch)
    for n_queries in (1, 10):
        q = unit(n_queries, seed=5)
        assert_same_hits(index.search(q, 7, allowed), brute_force(ids, vectors, q, 7, allowed))


def test_k_beyond_the_index_and_empty_indexes_or_filters_give_short_results(data, exact):
    ids, _, queries = data
    scores, hits = exact.search(queries[:2], 5000)
    assert hits.shape == (2, 3000) and (hits >= 0).all() and np.all(np.diff(scores, axis=1) <= 1e-6)
    assert exact.search(queries[:2], 10, allowed_ids=ids[:3])[1].shape == (2, 3)
    for allowed in ([], [123456789]):
        scores, hits = exact.search(queries[:2], 10, allowed_ids=allowed)
        assert scores.shape == hits.shape == (2, 0)
    empty = FaissIndex(DIM)
    assert empty.search(queries, 10)[1].shape == (12, 0)
    with pytest.raises(UsageError, match="k must be at least 1"):
        exact.search(queries, 0)
    with pytest.raises(UsageError, match="shape"):
        exact.search(np.zeros((2, DIM + 1), np.float32), 3)


def test_removed_ids_are_no_longer_found_and_the_summary_follows(data, exact):
    ids, vectors, queries = data
    before = exact.summary()
    assert exact.remove(np.concatenate([ids[:100], [999999999]])) == 100
    assert exact.ntotal == 2900 and exact.summary() != before
    assert_same_hits(exact.search(queries, 10), brute_force(ids[100:], vectors[100:], queries, 10))
    exact.add(ids[:100], vectors[:100])
    assert exact.summary() == before  # order-independent


def test_index_and_store_summaries_agree_on_the_same_id_set(tmp_path):
    with Store(tmp_path / "library.db") as store:
        store.bind_model("tiny-test", DIM)
        index = FaissIndex(DIM)
        for i in range(30):
            file = FileEntry(f"/m/{i}.jpg", size=1, mtime_ns=1, content_hash=str(i), modality="vision")
            up = store.upsert_file(file, vector_entries(unit(1 + i % 3, seed=i), "vision"))
            index.remove(up.removed_ids)
            index.add(up.vector_ids, unit(1 + i % 3, seed=i))
        removed = store.delete_files([f"/m/{i}.jpg" for i in range(0, 30, 4)])
        index.remove(removed)
        assert index.summary() == store.vectors.id_summary("vision")
        rebuilt = FaissIndex.build(DIM, store.vectors.chunks("vision", chunk_size=7))
        assert rebuilt.summary() == store.vectors.id_summary("vision")
        index.remove(index.ids()[:1])
        assert index.summary() != store.vectors.id_summary("vision")


def test_save_and_load_round_trip_atomically(tmp_path, data, exact):
    _, _, queries = data
    path = tmp_path / "indexes" / "vision.faiss"
    meta = exact.save(path)
    assert sorted(os.listdir(path.parent)) == ["vision.faiss", "vision.faiss.json"]  # no temp files left
    assert (meta.count, meta.dim, meta.model_id, meta.spec) == (3000, DIM, "tiny-test", "Flat")
    assert FaissIndex.read_meta(path) == meta and meta.summary == exact.summary()
    for mmap in (False, True):
        loaded = FaissIndex.load(path, mmap=mmap)
        assert (loaded.model_id, loaded.ntotal, loaded.read_only) == ("tiny-test", 3000, mmap)
        assert_same_hits(loaded.search(queries, 10), exact.search(queries, 10))
    with pytest.raises(UsageError, match="read-only"):
        FaissIndex.load(path, mmap=True).add([1], unit(1))
    exact.save(path)  # overwriting an existing index is fine too
    assert FaissIndex.load(path).summary() == exact.summary()


def test_a_stale_missing_or_damaged_index_file_is_detected(tmp_path, data, exact):
    path = tmp_path / "vision.faiss"
    with pytest.raises(StaleIndexError, match="no readable sidecar"):
        FaissIndex.load(path)
    exact.save(path)
    # A crash between writing the index and its sidecar: new index, old sidecar.
    old_sidecar = open(sidecar_path(path), "rb").read()
    exact.remove(data[0][:5])
    exact.save(path)
    open(sidecar_path(path), "wb").write(old_sidecar)
    with pytest.raises(StaleIndexError, match="does not match its sidecar") as err:
        FaissIndex.load(path)
    assert isinstance(err.value, LibraryError)
    meta = json.loads(old_sidecar)
    meta["count"] = 2995
    open(sidecar_path(path), "w").write(json.dumps(meta))
    with pytest.raises(StaleIndexError, match="does not match"):
        FaissIndex.load(path)
    exact.save(path)
    with open(path, "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(StaleIndexError, match="cannot read index"):
        FaissIndex.load(path)
    open(sidecar_path(path), "w").write("{not json")
    assert FaissIndex.read_meta(path) is None


def test_torch_matmul_search_equals_faiss_with_and_without_filters(data, exact, monkeypatch):
    ids, vectors, queries = data
    monkeypatch.setattr(torch_index, "_BLOCK_BYTES", 1)  # 1024-row blocks: exercise the top-k merge
    torch_exact = TorchExactIndex.from_faiss(exact, device="cpu")
    assert torch_exact.summary() == exact.summary()
    allowed = ids[::3]
    for n_queries, k, filt in ((1, 10, None), (12, 25, None), (1, 10, allowed), (12, 10, allowed)):
        assert_same_hits(
            torch_exact.search(queries[:n_queries], k, filt), exact.search(queries[:n_queries], k, filt)
        )
    assert torch_exact.search(queries, 10, allowed_ids=[])[1].shape == (12, 0)
    assert torch_exact.remove(ids[:10]) == 10 and exact.remove(ids[:10]) == 10
    torch_exact.add(ids[:3], vectors[:3])
    exact.add(ids[:3], vectors[:3])
    assert_same_hits(torch_exact.search(queries, 50), exact.search(queries, 50))


def test_torch_index_can_share_memory_with_a_numpy_array_on_cpu(data):
    ids, vectors, queries = data
    shared = TorchExactIndex.from_arrays(ids, vectors, device="cpu", copy=False)
    assert shared._vecs.data_ptr() == vectors.__array_interface__["data"][0]
    assert_same_hits(shared.search(queries, 5), brute_force(ids, vectors, queries, 5))


def test_an_ivf_index_with_all_lists_probed_is_exact_and_supports_filters_and_removal(data, tmp_path):
    ids, vectors, queries = data
    ivf = FaissIndex(DIM, "IVF16,Flat", nprobe=16)
    with pytest.raises(LibraryError, match="not trained"):
        ivf.add(ids, vectors)
    ivf.train(vectors)
    ivf.add(ids, vectors)
    allowed = ids[::4]
    assert_same_hits(ivf.search(queries, 10), brute_force(ids, vectors, queries, 10))
    assert_same_hits(ivf.search(queries, 10, allowed), brute_force(ids, vectors, queries, 10, allowed))
    assert ivf.remove(ids[:50]) == 50 and np.isin(ids[:50], ivf.ids()).sum() == 0
    ivf.save(tmp_path / "v.ivf")
    loaded = FaissIndex.load(tmp_path / "v.ivf", nprobe=16)
    assert loaded.spec == "IVF16,Flat" and loaded.summary() == ivf.summary()


def test_index_specs_that_cannot_delete_are_refused():
    with pytest.raises(UsageError, match="HNSW cannot delete"):
        FaissIndex(DIM, "HNSW32")
    with pytest.raises(UsageError, match="invalid refine codes 'NoSuch'"):
        FaissIndex(DIM, "IVF16,PQ8x4fs,Refine(NoSuch)")
    with pytest.raises(UsageError, match="fast-scan codes"):
        FaissIndex(DIM, "IVF16,SQ8,Refine(PQ8x4fs)")
    with pytest.raises(UsageError, match="invalid FAISS index spec"):
        FaissIndex(DIM, "NoSuchIndex42")


def recall_of(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_the_auto_kind_at_a_million_is_fast_scan_codes_refined_by_scalar_codes():
    from ibsearch.index.policy import approximate_spec

    assert approximate_spec(1_000_000, 1024) == "IVF2048_HNSW32,PQ256x4fs,Refine(SQfp16)"
    assert approximate_spec(200_000, 1024) == "IVF1024,PQ256x4fs,Refine(SQfp16)"
    assert approximate_spec(200_000, 30) == "IVF1024,SQ8"  # 4-bit codes cannot split 30 dimensions


def test_a_refined_fast_scan_index_ranks_with_its_finer_codes_and_follows_removals_and_adds(data, tmp_path):
    """``IVF16,PQ8x4fs,Refine(SQ8)``: all lists probed, the SQ8 codes rank the 4-bit codes' candidates
    (scores within SQ8's error of the exact ones, recall far above the 4-bit codes' own order), filters
    stay inside it, and vectors added after a removal get their own codes (FAISS 1.15 leaves removed
    rows' bits in a fast-scan block; see index/lists.py)."""
    from ibsearch.index.rows import IndexRows

    ids, vectors, queries = data
    index = FaissIndex(DIM, f"IVF16,PQ{DIM // 4}x4fs,Refine(SQ8)", nprobe=16)
    index.train(vectors)
    index.add(ids[:2900], vectors[:2900])
    truth = brute_force(ids[:2900], vectors[:2900], queries, 10)[1]
    scores, found = index.search(queries, 10)
    ivf = faiss.extract_index_ivf(index._index)
    coarse = ivf.search(queries, 10, params=faiss.SearchParametersIVF(nprobe=16))[1]  # 4-bit codes' top 10
    assert recall_of(found, truth) >= 0.85 and recall_of(found, truth) > recall_of(coarse, truth) + 0.2
    exact_scores = np.einsum("qd,qkd->qk", queries, vectors[np.searchsorted(ids, found)])
    np.testing.assert_allclose(scores, exact_scores, atol=0.02)
    assert (np.diff(scores, axis=1) <= 0).all()
    allowed = ids[:2900:5]
    found = index.search(queries, 10, allowed)[1]
    assert np.isin(found, allowed).all() and found.shape == (len(queries), 10)
    assert index.remove(ids[:40]) == 40 and index._refine is not None and index._refine.ntotal == 2860
    index.add(ids[2900:], vectors[2900:])
    assert [int(index.search(v, 1)[1][0, 0]) for v in vectors[2900:2950]] == list(ids[2900:2950])
    assert IndexRows(index).differing(ids[40:], vectors[40:]) == []
    path = tmp_path / "v.faiss"
    index.save(path)
    assert (tmp_path / "v.faiss.refine").exists()
    for mmap in (False, True):
        loaded = FaissIndex.load(path, mmap=mmap)
        assert_same_hits(loaded.search(queries, 10), index.search(queries, 10))
    with open(tmp_path / "v.faiss.refine", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(StaleIndexError, match="damaged or truncated"):
        FaissIndex.load(path, mmap=True)
    exact = FaissIndex(DIM)
    exact.add(ids[:5], vectors[:5])
    exact.save(path)  # another kind in its place: the refine file goes with the old kind
    assert not (tmp_path / "v.faiss.refine").exists() and FaissIndex.load(path).ntotal == 5
