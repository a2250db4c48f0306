"""The writer's save holds no index it only writes: an exact index file is written from the database a
chunk at a time (FAISS's own bytes, read back mapped or not), and ``auto`` declines an approximate kind
on a sample before filling it with every vector."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import run_json
from test_index_sync import shard_of
from test_scale import killed_while_building
from test_transfer import DIM

from ibsearch.engine import Library
from ibsearch.idsets import summarize_ids
from ibsearch.index import BuildRecord, FaissIndex
from ibsearch.index.digest import file_digest
from ibsearch.index.stream import write_exact


def test_an_exact_index_file_written_chunk_by_chunk_is_the_file_faiss_writes_byte_for_byte(tmp_path: Path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((1000, 12)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.sort(rng.choice(1 << 40, size=1000, replace=False)).astype(np.int64)
    own = faiss.IndexIDMap2(faiss.IndexFlatIP(12))
    own.add_with_ids(vectors, ids)
    path = tmp_path / "vision.faiss"
    for chunk in (1, 7, 300, 5000):
        chunks = [(ids[i : i + chunk], vectors[i : i + chunk]) for i in range(0, 1000, chunk)]
        meta = write_exact(
            path, 12, [(ids[:0], vectors[:0]), *chunks], 1000, model_id="m", record=BuildRecord
        )
        assert path.read_bytes() == faiss.serialize_index(own).tobytes()
        assert meta.file_digest == file_digest(path) and meta.file_bytes == path.stat().st_size
        assert meta.summary == summarize_ids(ids) and meta.spec == "Flat" and meta.model_id == "m"
    mapped = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    assert faiss.serialize_index(mapped).tobytes() == faiss.serialize_index(own).tobytes()
    for mmap in (False, True):
        index = FaissIndex.load(path, mmap=mmap)
        _, found = index.search(vectors[:5], 1)
        assert found[:, 0].tolist() == ids[:5].tolist() and index.summary() == summarize_ids(ids)


def test_a_save_that_rebuilds_an_index_exact_writes_it_from_the_database_and_holds_none(
    tiny_card: str, tmp_path: Path
):
    """Directions without structure: ``auto`` declines the approximate kind on its training sample,
    without filling it with every vector, and the exact index is written straight to its file."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((3000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu", create=True) as lib:
        lib.reindex(exact_below=1000)
        lib.import_vectors([shard_of(tmp_path, "all", vectors, 0)])
        assert "vision" in lib.indexes.rebuilt and lib.indexes.held() == {}  # nothing kept in memory
        meta = FaissIndex.read_meta(lib.indexes.path("vision"))
        assert meta is not None and meta.spec == "Flat" and meta.count == 3000
        assert meta.record.declined == "IVF64,PQ256x4fs,Refine(SQfp16)" and meta.record.built_count == 3000
        assert "filled with a sample of 2,560 (all 3,000 only do worse)" in meta.record.reason
        index = lib.index("vision")  # loaded from the file, as a reader does
        assert not index.approximate and index.summary() == lib.store.vectors.id_summary("vision")
        scores, _ = index.search(vectors[[17, 2345]], 1)
        assert scores[:, 0].tolist() == pytest.approx([1.0, 1.0], abs=1e-5)  # each finds itself
        assert lib.check(repair=False).ok
    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu") as lib:
        assert lib.index("vision").ntotal == 3000 and lib.indexes.repairs == {}
        assert lib.info()["indexes"]["vision"]["kind"] == "exact"


def test_an_index_filled_with_its_sample_and_emptied_again_fills_to_the_same_bytes_as_a_fresh_one():
    """What ``auto``'s look at the sample leaves behind when it goes on to fill the index with every
    vector: nothing (the same codes in the same order, in the index and its refine codes)."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((6000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(6000, dtype=np.int64) * 2 + 5
    for spec in ("IVF64,PQ8x4fs,Refine(SQ8)", "IVF64_HNSW32,SQ8"):
        fresh, probed = FaissIndex(32, spec), FaissIndex(32, spec)
        for index in (fresh, probed):
            index.train(vectors[:2600])
        probed.add(ids[:2600], vectors[:2600])
        assert probed.remove(ids[:2600]) == 2600
        for index in (fresh, probed):
            for start in range(0, 6000, 1024):
                index.add(ids[start : start + 1024], vectors[start : start + 1024])
        for a, b in ((fresh._index, probed._index), (fresh._refine, probed._refine)):
            raw = [faiss.serialize_index(getattr(x, "raw", x)).tobytes() for x in (a, b) if x is not None]
            assert len(set(raw)) <= 1


def leftovers(lib_args: list[str]) -> list[str]:
    return [p.name for p in Path(lib_args[1]).iterdir() if p.name.endswith(".tmp")]


def test_a_kill_while_the_save_writes_an_exact_file_leaves_indexes_the_next_open_brings_up_to_date(
    tiny_card: str, tmp_path: Path, lib_args: list[str]
):
    rng = np.random.default_rng(6)
    vectors = rng.standard_normal((1500, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    run_json("import", shard_of(tmp_path, "first", vectors[:300], 0), *lib_args)
    run_json("reindex", "--exact-below", 1000, *lib_args)
    second = shard_of(tmp_path, "second", vectors[300:], 300)
    killed_while_building(
        lib_args, tmp_path / "writing", f"lib.import_vectors([{second!r}])", step="stream._take"
    )
    assert leftovers(lib_args)  # the file it was writing, cut short
    with Library.open(lib_args[1], model=tiny_card, device="cpu") as lib:
        index = lib.index("vision")  # the file from before the write, brought up to date
        assert index.ntotal == 1500 and index.summary() == lib.store.vectors.id_summary("vision")
    assert run_json("check", *lib_args)["ok"] and run_json("check", "--no-repair", *lib_args)["ok"]
    assert run_json("reindex", *lib_args) == {"vision": 1500}
    assert not leftovers(lib_args)
    assert run_json("info", *lib_args)["indexes"]["vision"]["kind"] == "exact"
