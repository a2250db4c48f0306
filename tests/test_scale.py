"""Libraries past the exact limit: an approximate index chosen, tuned and kept correct under change.

Vectors come in through ``ibsearch import`` (real Parquet, real SQLite, real FAISS, the real CLI); the
exact limit is lowered through ``reindex --exact-below`` so that a few thousand vectors cross it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_json
from test_transfer import DIM, mixture, run, write_shard

from ibsearch.engine import Library
from ibsearch.index import LiveIndex, SearchTuning
from ibsearch.search import Searcher
from ibsearch.store import FileEntry, VectorEntry

N = 6000  # vectors in the library (exact limit set to 4000)
K = 10


def paths_for(start: int, n: int) -> list[str]:
    return [f"/library/{i // 1000:02d}/{i:06d}.jpg" for i in range(start, start + n)]


@pytest.fixture(scope="module")
def built(tiny_card, tmp_path_factory):
    """A library of N vectors that crossed the exact limit of 4000 during its second import (built once,
    copied for each test)."""
    folder = tmp_path_factory.mktemp("scale")
    lib_args = ["--library", str(folder / "lib"), "--model", tiny_card, "--device", "cpu"]
    vectors = mixture(N, seed=10)
    run_json("import", write_shard(folder / "first.parquet", paths_for(0, 3000), vectors[:3000]), *lib_args)
    counts = run_json("reindex", "--exact-below", 4000, *lib_args)
    assert counts == {"vision": 3000}
    assert run_json("info", *lib_args)["indexes"]["vision"]["kind"] == "exact"
    run_json(
        "import", write_shard(folder / "second.parquet", paths_for(3000, 3000), vectors[3000:]), *lib_args
    )
    return folder / "lib", vectors


@pytest.fixture
def big(built, lib_args):
    """A copy of the built library, for one test to change."""
    shutil.copytree(built[0], lib_args[1])
    return lib_args, built[1]


def exact_top(
    vectors: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> np.ndarray:
    scores = queries @ vectors.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def open_lib(lib_args: list[str]) -> Library:
    return Library.open(lib_args[1], model=lib_args[3], device="cpu")


def test_crossing_the_exact_limit_switches_to_an_approximate_index_with_recall_095_on_held_out_queries(big):
    lib_args, vectors = big
    facts = run_json("info", *lib_args)["indexes"]["vision"]
    assert facts["kind"] == "approximate" and facts["spec"].startswith("IVF") and facts["recall"] >= 0.95
    assert facts["spec"] == "IVF128,PQ256x4fs,Refine(SQfp16)"  # fast-scan codes ranked by 16-bit ones
    assert (Path(lib_args[1]) / "vision.faiss.refine").is_file()
    assert facts["built"] and "reached the exact limit" in facts["reason"]
    code, out = run("info", *lib_args)
    assert code == 0 and "index     vision" in out and "recall@10" in out and "built" in out
    recall = held_out_recall(lib_args, vectors, mixture(200, seed=99))  # queries not in the library
    assert recall >= 0.95, recall
    assert run_json("check", *lib_args)["ok"]


def held_out_recall(lib_args: list[str], vectors: np.ndarray, queries: np.ndarray) -> float:
    """Recall@K of the library's ``Searcher`` (its approximate index) against exact search of
    ``vectors`` (the library's, in path order) for ``queries``."""
    truth = exact_top(vectors, queries, K)
    paths = np.array(paths_for(0, len(vectors)))
    with open_lib(lib_args) as lib, Searcher(lib) as searcher:
        assert isinstance(lib.index("vision"), LiveIndex) and lib.index("vision").approximate
        found = [{h.path for h in searcher.query(vector=q, k=K)} for q in queries]
    return float(np.mean([len(f & set(paths[t])) / K for f, t in zip(found, truth, strict=True)]))


def tight_clusters(n: int, seed: int, centres: int = 30) -> np.ndarray:
    """``n`` unit vectors in tight clusters: a random unit centre plus noise a third of its norm (the
    same centres for every seed). A cluster's members all lie within a narrow band of scores of a
    query from it, so its top 10 are told apart by differences far finer than by its cluster."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(54321).standard_normal((centres, DIM)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    noise = rng.standard_normal((n, DIM)).astype(np.float32) / np.float32(3 * np.sqrt(DIM))
    x = middle[rng.integers(centres, size=n)] + noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_auto_keeps_an_approximate_index_on_tightly_clustered_vectors_at_the_recall_target(
    lib_args, tmp_path
):
    """Clusters of ~200 near-equal members (as bursts of near-duplicate photos): ``auto`` must neither
    decline its index for exact nor miss the target on held-out queries."""
    vectors = tight_clusters(N, seed=20)
    run_json("import", write_shard(tmp_path / "tight.parquet", paths_for(0, N), vectors), *lib_args)
    assert run_json("reindex", "--exact-below", 4000, *lib_args) == {"vision": N}
    facts = run_json("info", *lib_args)["indexes"]["vision"]
    assert facts["kind"] == "approximate" and facts["recall"] >= 0.95, facts
    recall = held_out_recall(lib_args, vectors, tight_clusters(200, seed=21))
    assert recall >= 0.95, recall
    assert run_json("check", *lib_args)["ok"]


def test_added_files_are_found_at_once_and_removed_files_never_come_back(big, tmp_path):
    lib_args, _ = big
    new = mixture(40, seed=11)
    run_json("import", write_shard(tmp_path / "new.parquet", paths_for(N, 40), new), *lib_args)
    assert run_json("info", *lib_args)["indexes"]["vision"]["changed_since_built"] == 40  # no retrain yet
    with open_lib(lib_args) as lib, Searcher(lib) as searcher:
        for i in range(0, 40, 7):
            assert searcher.query(vector=new[i], k=1)[0].path == paths_for(N + i, 1)[0]
    run_json("remove", "/library/01", *lib_args)  # the files 1000..1999
    gone = {p for p in paths_for(1000, 1000)}
    queries = mixture(100, seed=12)
    with open_lib(lib_args) as lib, Searcher(lib) as searcher:
        for q in queries:
            assert not gone & {h.path for h in searcher.query(vector=q, k=50)}
    assert run_json("check", *lib_args)["ok"]


def test_a_memory_mapped_index_follows_a_database_it_was_not_saved_with(big):
    """A writer killed before saving (or at work): the database moved on, the file did not. A reader maps
    the file, holds the new vectors in an exact delta and the removed ones as tombstones."""
    lib_args, vectors = big
    extra = mixture(5, seed=13)
    with open_lib(lib_args) as writer:
        store = writer.store
        added = []
        for i, v in enumerate(extra):
            stored = store.upsert_file(
                FileEntry(f"/late/{i}.jpg", 1, 1, str(i), "vision"), [VectorEntry(v, "vision")]
            )
            added += stored.vector_ids
        store.delete_files(paths_for(0, 50))  # no index is told: as after a kill
    with open_lib(lib_args) as lib, Searcher(lib) as searcher:
        lib.indexes.mmap_from = 0
        index = lib.index("vision")
        assert index.read_only and index.delta is not None and len(index.tombstones) == 50
        assert index.summary() == lib.store.vectors.id_summary("vision")
        got, found = index.vectors_of(np.array([*added, index.base.ids()[0]], dtype=np.int64))
        np.testing.assert_array_equal(got, added)  # the approximate file holds codes: left to the store
        np.testing.assert_array_equal(found, extra)
        for i, v in enumerate(extra):
            hit = searcher.query(vector=v, k=1)[0]
            assert hit.path == f"/late/{i}.jpg" and added[i] in index.delta.ids()
        for q in vectors[:50]:
            assert not set(paths_for(0, 50)) & {h.path for h in searcher.query(vector=q, k=20)}
        hits = searcher.query(vector=vectors[0], k=K, path_prefix="/library/00")
        assert len(hits) == K and "/library/00/000000.jpg" not in {h.path for h in hits}
    assert run_json("check", *lib_args)["ok"]  # the writer merges delta and tombstones into the file
    with open_lib(lib_args) as lib:
        lib.indexes.mmap_from = 0
        assert not lib.index("vision").pending


@pytest.mark.parametrize("post_filter", [True, False])  # tried on unfiltered hits first / listed first
@pytest.mark.parametrize("full_scan_below", [10_000, 0])  # exact over the filter's vectors / inside IVF
def test_filters_give_k_hits_whenever_k_files_match_down_to_a_tenth_of_a_percent(
    big, full_scan_below, post_filter, monkeypatch
):
    lib_args, vectors = big
    paths = np.array(paths_for(0, N))
    tuning = SearchTuning(post_filter=post_filter, full_scan_below=full_scan_below)
    with open_lib(lib_args) as lib, Searcher(lib, tuning=tuning) as searcher:
        listed = []  # the filters that were turned into every matching vector id (not candidates only)
        select = lib.store.vectors.select_ids
        monkeypatch.setattr(
            lib.store.vectors,
            "select_ids",
            lambda *a, **kw: listed.append(kw.get("among") is None) or select(*a, **kw),
        )
        queries = mixture(20, seed=14)
        cases = (("/library/0[024]/*", 0.5), ("/library/05/*", 1 / 6), ("/library/03/00300[0-5].jpg", 0.001))
        for glob, share in cases:
            allowed = np.array([Path(p).match(glob.lstrip("/")) for p in paths])
            assert allowed.mean() == pytest.approx(share, rel=0.01)
            truth = exact_top(vectors, queries, K, allowed)
            recall = []
            listed.clear()
            for q, t in zip(queries, truth, strict=True):
                hits = searcher.query(vector=q, k=K, path_glob=glob)
                assert len(hits) == min(K, int(allowed.sum())), glob
                assert all(allowed[paths == h.path].all() for h in hits)
                recall.append(len({h.path for h in hits} & set(paths[t])) / len(hits))
            assert np.mean(recall) >= (0.9 if share > 0.01 else 1.0), (glob, np.mean(recall))
            # A broad filter is answered from the unfiltered search's best hits; a narrow one is listed.
            if post_filter and share == 0.5:
                assert sum(listed) <= 2, glob  # (a query whose candidates hold fewer than k may list)
            elif share < 0.01:
                assert sum(listed) == len(queries), glob
        none = searcher.query(vector=queries[0], k=K, path_glob="/nothing/*")
        assert none == []


def test_check_compares_every_code_of_an_approximate_index_with_the_database(big):
    lib_args, _ = big
    with open_lib(lib_args) as lib:
        from ibsearch.index import FaissIndex
        from ibsearch.index.rows import IndexRows

        path = lib.indexes.path("vision")
        index = FaissIndex.load(path)
        rows = IndexRows(index)
        ids, vectors = lib.store.vectors.by_id(rows.ids[:200])
        assert rows.differing(ids, vectors) == []
        import faiss

        ivf = faiss.extract_index_ivf(index._index)
        first = next(i for i in range(ivf.nlist) if ivf.invlists.list_size(i))
        codes = faiss.rev_swig_ptr(ivf.invlists.get_codes(first), ivf.code_size)
        codes[:4] = 255 - codes[:4]  # a damaged row, ids and counts untouched
        index.record = index.record  # same sidecar facts
        index.save(path)
    code, out = run("check", "--no-repair", "--json", *lib_args)
    report = json.loads(out)
    assert code == 1 and not report["ok"] and any("index row(s) differ" in p for p in report["problems"])
    report = run_json("check", *lib_args)  # saved with its damage (the checksum holds): the rows tell
    assert report["ok"] and len(report["repaired"]) == 1, report
    assert report["repaired"][0].startswith("vision: ") and report["repaired"][0].endswith(
        " index row(s) differed from the database: rebuilt from the database"
    )
    assert run_json("check", "--no-repair", *lib_args)["ok"]


def test_a_kill_during_the_rebuild_leaves_a_library_that_opens_and_answers_correctly(big, tmp_path):
    lib_args, vectors = big
    flag = tmp_path / "building"
    killed_while_building(lib_args, flag, 'lib.reindex(index="IVF64,Flat")')
    queries = mixture(20, seed=15)
    paths = np.array(paths_for(0, N))
    truth = exact_top(vectors, queries, K)
    with open_lib(lib_args) as lib, Searcher(lib) as searcher:
        assert lib.index("vision").spec != "IVF64,Flat"  # the old index, intact
        found = [{h.path for h in searcher.query(vector=q, k=K)} for q in queries]
    assert np.mean([len(f & set(paths[t])) / K for f, t in zip(found, truth, strict=True)]) >= 0.95
    report = run_json("check", *lib_args)
    assert report["ok"] and report["repaired"] == []
    assert run_json("info", *lib_args)["index_policy"]["kind"] == "IVF64,Flat"  # what was asked is kept
    run_json("reindex", *lib_args)
    assert run_json("info", *lib_args)["indexes"]["vision"]["spec"] == "IVF64,Flat"
    leftovers = [p.name for p in Path(lib_args[1]).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def killed_while_building(
    lib_args: list[str], flag: Path, action: str, check: str = "", step: str = "builder.build_approximate"
) -> None:
    """Run ``action`` (Python, on ``lib``) in a child process and SIGKILL it once ``step`` (an approximate
    build, or e.g. ``stream._take``: a chunk of an exact file written) has begun (``check`` held at that
    moment, ``flag`` touched)."""
    child = textwrap.dedent(f"""
        import pathlib, ibsearch.index.builder as builder, ibsearch.index.stream as stream
        from ibsearch.engine import Library
        real = {step}
        def announced(*args, **kwargs):  # the real step, after telling the test it has begun
            {check or "pass"}
            pathlib.Path({str(flag)!r}).touch()
            return real(*args, **kwargs)
        {step} = announced
        with Library.open({lib_args[1]!r}, model={lib_args[3]!r}, device="cpu") as lib:
            {action}
    """)
    proc = subprocess.Popen([sys.executable, "-c", child])
    deadline = time.monotonic() + 120  # a child under load (2 cores shared) can take a minute
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and flag.exists()


def test_a_kill_while_a_write_past_the_exact_limit_rebuilds_leaves_indexes_the_next_open_brings_up_to_date(
    tiny_card, tmp_path, lib_args
):
    """The write that crosses the limit holds no exact index of every vector, so the file it leaves,
    should it be killed during the rebuild, is the one from before the write."""
    vectors, flag = mixture(N, seed=10), tmp_path / "building"
    run_json("import", write_shard(tmp_path / "first.parquet", paths_for(0, 3000), vectors[:3000]), *lib_args)
    run_json("reindex", "--exact-below", 4000, *lib_args)
    second = write_shard(tmp_path / "second.parquet", paths_for(3000, 3000), vectors[3000:])
    killed_while_building(
        lib_args, flag, f"lib.import_vectors([{str(second)!r}])",
        check='assert lib.indexes.held() == {} and "vision" in lib.indexes.outgrown',
    )  # fmt: skip
    queries = mixture(20, seed=15)
    truth, paths = exact_top(vectors, queries, K), np.array(paths_for(0, N))
    with open_lib(lib_args) as lib, Searcher(lib) as searcher:
        assert lib.index("vision").spec == "Flat" and lib.index("vision").ntotal == N  # brought up to date
        found = [{h.path for h in searcher.query(vector=q, k=K)} for q in queries]
    assert found == [set(paths[t]) for t in truth]  # exact: every hit
    assert run_json("check", *lib_args)["ok"] and run_json("check", "--no-repair", *lib_args)["ok"]
    run_json("reindex", *lib_args)
    assert run_json("info", *lib_args)["indexes"]["vision"]["kind"] == "approximate"


def test_a_library_that_changed_enough_since_its_build_is_retrained_when_the_write_ends(big, tmp_path):
    lib_args, _ = big
    before = run_json("info", *lib_args)["indexes"]["vision"]
    with open_lib(lib_args) as lib:
        lib.indexes.set_policy(lib.indexes.policy.with_changes(retrain_after=0.1))  # default: half
    run_json("remove", "/library/05", *lib_args)  # 1000 removed: 17 % of the vectors it was built on
    after = run_json("info", *lib_args)["indexes"]["vision"]
    assert after["built"] > before["built"] and after["changed_since_built"] == 0
    assert "added or removed since it was built on 6,000" in after["reason"] and after["recall"] >= 0.95
    assert after["vectors"] == N - 1000


def test_an_index_kind_can_be_forced_and_is_remembered(big):
    lib_args, _ = big
    assert run_json("reindex", "--index", "exact", *lib_args) == {"vision": N}
    info = run_json("info", *lib_args)
    assert info["indexes"]["vision"]["kind"] == "exact" and info["index_policy"]["kind"] == "exact"
    run_json("reindex", *lib_args)
    assert run_json("info", *lib_args)["indexes"]["vision"]["kind"] == "exact"
    code, out = run("reindex", "--index", "HNSW32", *lib_args)
    assert code == 1 and "HNSW cannot delete" in out
    code, out = run("reindex", "--index", "IVF999999,Flat", *lib_args)
    assert code == 0 and "exact" in out  # too few vectors to train it: exact until there are more
    assert "too few to train" in run_json("info", *lib_args)["indexes"]["vision"]["reason"]
    run_json("reindex", "--index", "auto", *lib_args)
    assert run_json("info", *lib_args)["indexes"]["vision"]["kind"] == "approximate"


def test_the_gpu_search_path_runs_on_the_cpu_with_the_same_hits(big):
    lib_args, vectors = big
    queries = mixture(10, seed=17)
    run_json("reindex", "--index", "exact", *lib_args)
    with open_lib(lib_args) as lib:
        faiss_hits = [Searcher(lib).query(vector=q, k=K, path_prefix="/library/02") for q in queries]
        torch_searcher = Searcher(lib, search_device="cpu")
        index = lib.index("vision")
        assert index.device == "cpu"
        torch_hits = [torch_searcher.query(vector=q, k=K, path_prefix="/library/02") for q in queries]
        assert type(index._device_index()).__name__ == "TorchExactIndex"
    assert [[h.path for h in hits] for hits in torch_hits] == [[h.path for h in hits] for hits in faiss_hits]
    for a, b in zip(torch_hits, faiss_hits, strict=True):
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_a_raw_vector_is_a_query_term_weighted_like_the_others(big):
    lib_args, vectors = big
    with open_lib(lib_args) as lib, Searcher(lib) as searcher:
        from ibsearch import weighted
        from ibsearch.errors import UsageError

        mixed = searcher.query(vector=[weighted(vectors[5], 1.0), weighted(vectors[9], 0.001)], k=1)
        assert mixed[0].path == paths_for(5, 1)[0]
        assert searcher.query(vector=[vectors[5], vectors[5]], k=1)[0].score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(UsageError, match=r"shape \(1024,\)"):
            searcher.query(vector=vectors[5][:100])
        with pytest.raises(UsageError, match="empty vector"):
            searcher.query(vector=np.zeros(1024))
    assert os.path.isdir(lib_args[1])
