"""The indexes follow the database: committed vectors are added once, whenever the index is loaded."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ibsearch.index_sync import IndexSet
from ibsearch.store import Store


def test_committed_vectors_are_held_once_even_when_the_index_is_first_loaded_after_the_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Store(tmp_path / "ibsearch.db") as store:
        store.bind_model("m", 8)
        indexes = IndexSet(tmp_path, store, 8, "m")
        first = [store.upsert_file(f"/a/{i}.jpg", size=1, mtime_ns=1, content_hash=str(i), modality="vision",
                                   vectors=vectors[i]).vector_ids[0] for i in range(3)]  # fmt: skip
        with caplog.at_level(logging.INFO, logger="ibsearch"):
            indexes.add("vision", first, vectors[:3])  # the index is loaded only now, after the commit
        # A library's first vectors have no index file yet: that is no damage to report.
        assert indexes.repairs == {} and not [r for r in caplog.records if r.levelno >= logging.WARNING]
        later = [store.upsert_file(f"/a/{i}.jpg", size=1, mtime_ns=1, content_hash=str(i), modality="vision",
                                   vectors=vectors[i]).vector_ids[0] for i in range(3, 6)]  # fmt: skip
        indexes.add("vision", later, vectors[3:])
        assert indexes.get("vision").ntotal == 6
        assert indexes.get("vision").summary() == store.id_summary("vision")
        indexes.save()
        assert IndexSet(tmp_path, store, 8, "m").verify("vision") == []
