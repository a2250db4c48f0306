"""The indexes follow the database: committed vectors are added once, whenever the index is loaded; a
write that takes an exact index past the exact limit holds no exact index of all its vectors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_transfer import mixture, write_shard

from ibsearch.engine import Library
from ibsearch.index_sync import IndexSet
from ibsearch.integrity import verify_file
from ibsearch.search import Searcher
from ibsearch.store import FileEntry, Store, VectorEntry


def test_committed_vectors_are_held_once_even_when_the_index_is_first_loaded_after_the_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Store(tmp_path / "ibsearch.db") as store:
        store.bind_model("m", 8)
        indexes = IndexSet(tmp_path, store, 8, "m")
        rows = [
            (FileEntry(f"/a/{i}.jpg", 1, 1, str(i), "vision"), [VectorEntry(v, "vision")])
            for i, v in enumerate(vectors)
        ]
        first = [store.upsert_file(*rows[i]).vector_ids[0] for i in range(3)]
        with caplog.at_level(logging.INFO, logger="ibsearch"):
            indexes.add("vision", first, vectors[:3])  # the index is loaded only now, after the commit
        # A library's first vectors have no index file yet: that is no damage to report.
        assert indexes.repairs == {} and not [r for r in caplog.records if r.levelno >= logging.WARNING]
        later = [store.upsert_file(*rows[i]).vector_ids[0] for i in range(3, 6)]
        indexes.add("vision", later, vectors[3:])
        assert indexes.get("vision").ntotal == 6
        assert indexes.get("vision").summary() == store.vectors.id_summary("vision")
        indexes.save()
        assert verify_file(store, IndexSet(tmp_path, store, 8, "m"), "vision") == []


def shard_of(folder: Path, name: str, vectors: np.ndarray, start: int) -> str:
    paths = [f"/lib/{i:05d}.jpg" for i in range(start, start + len(vectors))]
    return str(write_shard(folder / f"{name}.parquet", paths, vectors))


def test_a_write_past_the_exact_limit_holds_no_exact_index_of_it_and_saves_the_approximate_kind(
    tiny_card: str, tmp_path: Path
):
    vectors = mixture(3000, seed=20)
    shard = shard_of(tmp_path, "all", vectors, 0)
    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu", create=True) as lib:
        lib.reindex(exact_below=1000)
        with lib.writing():
            lib.import_vectors([shard])  # 32 files per commit: the exact index grows by 32 at a time
            assert lib.indexes.held().get("vision", 0) < 1000  # not 3000 exact vectors in memory
            assert "reached the exact limit of 1,000" in lib.indexes.outgrown["vision"]
        assert "vision" in lib.indexes.rebuilt and lib.indexes.outgrown == {}
        index = lib.index("vision")
        assert index.approximate and index.ntotal == 3000
        assert index.summary() == lib.store.vectors.id_summary("vision")
        assert lib.check(repair=False).ok
    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu") as lib:
        assert lib.index("vision").approximate and lib.indexes.repairs == {}


def test_a_search_during_a_write_that_outgrew_the_exact_index_builds_it_then_and_finds_every_vector(
    tiny_card: str, tmp_path: Path
):
    vectors = mixture(3000, seed=21)
    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu", create=True) as lib:
        lib.reindex(exact_below=1000)
        with lib.writing(), Searcher(lib) as searcher:
            lib.import_vectors([shard_of(tmp_path, "first", vectors[:2000], 0)])
            assert "vision" in lib.indexes.outgrown
            hits = searcher.query(vector=vectors[1234], k=1)
            assert [h.path for h in hits] == ["/lib/01234.jpg"] and lib.indexes.outgrown == {}
            assert lib.indexes.held() == {"vision": 2000} and lib.index("vision").approximate
            lib.import_vectors([shard_of(tmp_path, "second", vectors[2000:], 2000)])  # added to it
            assert lib.indexes.held() == {"vision": 3000}
            assert [h.path for h in searcher.query(vector=vectors[2345], k=1)] == ["/lib/02345.jpg"]
        assert lib.index("vision").ntotal == 3000 and lib.check(repair=False).ok
