"""The library database on real SQLite files: schema, model binding, upserts, paths, filters, concurrency."""

from __future__ import annotations

import ast
import multiprocessing
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ibsearch
from ibsearch.errors import IbsearchError, LibraryError, UsageError
from ibsearch.store import SCHEMA_VERSION, FileEntry, Store, VectorError, vector_entries

DIM = 8


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lib" / "library.db") as s:
        s.bind_model("tiny-test", DIM)
        yield s


def add(store: Store, path: str, n: int = 1, content_hash: str | None = None, **kw):
    modality = kw.pop("modality", "vision")
    rows = vector_entries(
        unit(n, seed=len(path)), kw.pop("vector_modalities", modality), kw.pop("segments", None)
    )
    return store.upsert_file(
        FileEntry(
            path,
            size=kw.pop("size", 10),
            mtime_ns=kw.pop("mtime_ns", 1),
            content_hash=content_hash or "hash-of-" + os.fsencode(path).hex(),
            modality=modality,
            **kw,
        ),
        rows,
    )


def test_a_new_library_gets_the_current_schema_in_wal_mode_and_reopens(tmp_path):
    path = tmp_path / "deep" / "dir" / "library.db"
    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.model_id is None and s.dim is None
        s.bind_model("tiny-test", DIM)
        add(s, "/media/a.jpg")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "files", "vectors", "errors", "settings"} <= tables
    conn.close()
    with Store(path, create=False) as s:
        found = (s.model_id, s.dim, s.files.count(), s.vectors.counts())
        assert found == ("tiny-test", DIM, 1, {"vision": 1})


def test_a_missing_database_is_not_created_when_create_is_false(tmp_path):
    with pytest.raises(LibraryError, match="no library database"):
        Store(tmp_path / "nothing.db", create=False)
    assert not (tmp_path / "nothing.db").exists()


def test_a_database_from_a_newer_ibsearch_is_refused_with_advice(tmp_path):
    path = tmp_path / "library.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match=r"newer ibsearch \(schema version 99.*upgrade ibsearch"):
        Store(path)


def test_files_that_are_not_libraries_are_refused(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(LibraryError, match="not a usable library database"):
        Store(garbage)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (x)")
    conn.close()
    with pytest.raises(LibraryError, match="not an ibsearch library"):
        Store(other)


def test_a_library_built_with_one_model_refuses_another(store):
    add(store, "/media/a.jpg")
    store.bind_model("tiny-test", DIM)  # same model: fine
    with pytest.raises(LibraryError, match=r"built with model 'tiny-test' \(dim 8\).*--model tiny-test"):
        store.bind_model("imagebind_huge", 1024)
    with pytest.raises(LibraryError, match="built with model"):
        store.check_model("tiny-test", 16)
    assert store.model_id == "tiny-test"


def test_an_empty_library_may_switch_model_but_needs_one_before_storing(tmp_path):
    with Store(tmp_path / "library.db") as s:
        with pytest.raises(LibraryError, match="bind_model"):
            add(s, "/a.jpg")
        s.bind_model("first", DIM)
        s.bind_model("second", 4)
        assert (s.model_id, s.dim) == ("second", 4)


def test_upsert_returns_new_vector_ids_and_replacing_returns_the_removed_ones(store):
    first = add(store, "/media/a.jpg", n=2)
    assert first.created and first.removed_ids == [] and len(first.vector_ids) == 2
    other = add(store, "/media/b.jpg", n=1)
    again = add(store, "/media/a.jpg", n=3, mtime_ns=5)
    assert not again.created and again.file_id == first.file_id
    assert again.removed_ids == first.vector_ids
    assert len(again.vector_ids) == 3 and min(again.vector_ids) > max(other.vector_ids)
    assert [v.id for v in store.vectors.of_file("/media/a.jpg")] == again.vector_ids
    assert store.files.get("/media/a.jpg").mtime_ns == 5
    assert store.vectors.counts() == {"vision": 4}


def test_deleting_files_returns_their_vector_ids_and_ids_are_never_reused(store):
    a = add(store, "/media/a.jpg", n=2)
    b = add(store, "/media/b.wav", modality="audio")
    removed = store.delete_files(["/media/a.jpg", "/media/b.wav", "/media/never-stored.jpg"])
    assert sorted(removed) == sorted(a.vector_ids + b.vector_ids)
    assert store.files.count() == 0 and store.vectors.counts() == {}
    c = add(store, "/media/c.jpg")
    assert c.vector_ids[0] > max(removed)


def test_vectors_are_found_by_content_hash_for_renames_and_copies(store):
    original = add(store, "/media/a.jpg", n=2, content_hash="same", info={"width": 4})
    add(store, "/media/other.jpg", content_hash="different")
    found = store.find_by_hash("same")
    assert found is not None
    record, vectors = found
    assert record.path == "/media/a.jpg" and record.info == {"width": 4}
    assert [v.id for v in vectors] == original.vector_ids
    assert all(v.model_id == "tiny-test" and v.vector.shape == (DIM,) for v in vectors)
    np.testing.assert_array_equal(np.stack([v.vector for v in vectors]), unit(2, seed=len("/media/a.jpg")))
    assert store.find_by_hash("same", modality="audio") is None
    assert store.find_by_hash("unknown") is None


def test_non_utf8_file_names_round_trip_exactly(store, tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff\xfe.jpg"  # latin-1 bytes: not valid UTF-8
    with open(raw, "wb") as fh:
        fh.write(b"pixels")
    name = os.fsdecode(raw)
    add(store, name)
    add(store, raw + b".copy")  # bytes are accepted as well
    record = store.files.get(raw)
    assert record is not None and record.path == name and os.fsencode(record.path) == raw
    with open(record.path, "rb") as fh:  # the stored path opens the same file
        assert fh.read() == b"pixels"
    assert store.files.paths_under(tmp_path) == [name, os.fsdecode(raw + b".copy")]
    row = next(iter(store.vectors.rows(store.vectors.select_ids("vision", glob="*caf*.jpg")).values()))
    assert row.path == name
    assert store.delete_files([name]) and store.files.get(name) is None


def test_non_finite_or_misshapen_vectors_are_rejected_and_nothing_is_written(store):
    bad = unit(2)
    bad[1, 3] = np.nan
    for vectors in (bad, np.full((1, DIM), np.inf, np.float32), np.zeros((1, DIM + 1), np.float32)):
        with pytest.raises(VectorError) as err:
            store.upsert_file(
                FileEntry("/media/bad.wav", 1, 1, "h", "audio"), vector_entries(vectors, "audio")
            )
        assert isinstance(err.value, ValueError) and isinstance(err.value, IbsearchError)
        assert "/media/bad.wav" in str(err.value)
    assert store.files.count() == 0 and store.vectors.count() == 0


def test_paths_under_a_prefix_treat_it_as_a_directory(store):
    for p in ("/m/a/1.jpg", "/m/a/sub/2.jpg", "/m/ab/3.jpg", "/m/a", "/n/4.jpg"):
        add(store, p)
    assert store.files.paths_under("/m/a") == ["/m/a", "/m/a/1.jpg", "/m/a/sub/2.jpg"]
    assert store.files.paths_under("/m/a/") == ["/m/a/1.jpg", "/m/a/sub/2.jpg"]
    assert sorted(store.files.under("/m")) == ["/m/a", "/m/a/1.jpg", "/m/a/sub/2.jpg", "/m/ab/3.jpg"]
    assert store.files.under("/n")["/n/4.jpg"].content_hash == "hash-of-" + b"/n/4.jpg".hex()
    assert len(store.files.paths_under("")) == 5


def test_filters_select_vector_ids_by_directory_glob_and_media_info(store):
    short = add(store, "/m/a/short.wav", modality="audio", info={"duration": 2.0})
    long = add(store, "/m/b/long.wav", modality="audio", info={"duration": 30.0})
    nodur = add(store, "/m/a/unknown.wav", modality="audio")
    image = add(store, "/m/a/pic.jpg", info={"width": 640})

    def ids(*args, **kw):
        return store.vectors.select_ids(*args, **kw).tolist()

    assert ids("audio") == short.vector_ids + long.vector_ids + nodur.vector_ids
    assert ids("audio", under="/m/a") == short.vector_ids + nodur.vector_ids
    assert ids("audio", glob="*/long.*") == long.vector_ids
    assert ids("audio", ranges={"duration": (None, 10)}) == short.vector_ids
    assert ids("audio", ranges={"duration": (1, None)}, under="/m/b") == long.vector_ids
    assert ids("audio", ranges={"duration": (None, None)}) == short.vector_ids + long.vector_ids
    assert ids("vision", ranges={"width": (600, 700)}) == image.vector_ids
    with pytest.raises(UsageError, match="media info key"):
        store.vectors.select_ids("audio", ranges={"duration') OR 1=1 --": (0, 1)})


def test_rows_for_vectors_give_path_metadata_and_segments(store):
    up = store.upsert_file(
        FileEntry(
            "/m/talk.wav",
            size=99,
            mtime_ns=7,
            content_hash="h",
            modality="audio",
            info={"duration": 4.0, "sample_rate": 16000},
        ),
        vector_entries(unit(2), "audio", [(0.0, 2.0), (2.0, 4.0)], preprocess_version="audio-v1"),
    )
    rows = store.vectors.rows(up.vector_ids + [123456])
    assert sorted(rows) == up.vector_ids
    second = rows[up.vector_ids[1]]
    assert (second.path, second.modality, second.start, second.end) == ("/m/talk.wav", "audio", 2.0, 4.0)
    assert second.info == {"duration": 4.0, "sample_rate": 16000} and second.size == 99
    assert store.vectors.of_file("/m/talk.wav")[0].preprocess_version == "audio-v1"
    with pytest.raises(UsageError, match="segments"):
        add(store, "/m/x.wav", n=2, segments=[(0.0, 1.0)])


def test_iter_vectors_yields_every_vector_of_a_modality_in_chunks(store):
    expected = {}
    for i in range(7):
        up = add(store, f"/m/{i}.jpg", n=2)
        for vid, vec in zip(up.vector_ids, unit(2, seed=len(f"/m/{i}.jpg")), strict=True):
            expected[vid] = vec
    add(store, "/m/x.wav", modality="audio")
    chunks = list(store.vectors.chunks("vision", chunk_size=5))
    assert [len(ids) for ids, _ in chunks] == [5, 5, 4]
    ids = np.concatenate([c[0] for c in chunks])
    vecs = np.concatenate([c[1] for c in chunks])
    assert ids.dtype == np.int64 and vecs.dtype == np.float32 and vecs.shape == (14, DIM)
    np.testing.assert_array_equal(vecs, np.stack([expected[i] for i in ids.tolist()]))
    np.testing.assert_array_equal(ids, store.vectors.ids("vision"))


def test_id_summary_changes_with_the_id_set(store):
    assert store.vectors.id_summary("vision") == (0, -1, 0)
    a = add(store, "/m/a.jpg", n=2)
    before = store.vectors.id_summary("vision")
    assert before.size == 2 and before.max_id == max(a.vector_ids)
    add(store, "/m/a.jpg", n=2)  # same count, new ids
    assert store.vectors.id_summary("vision") != before


def test_errors_are_recorded_and_cleared_by_a_successful_upsert(store):
    store.errors.record("/m/broken.jpg", "cannot read: truncated", size=3, mtime_ns=9)
    store.errors.record("/m/empty.wav", "zero bytes")
    assert store.errors.count() == 2
    err = store.errors.get("/m/broken.jpg")
    assert (err.reason, err.size, err.mtime_ns) == ("cannot read: truncated", 3, 9)
    assert [e.path for e in store.errors.latest(limit=1)] == ["/m/empty.wav"]
    add(store, "/m/broken.jpg")
    assert store.errors.get("/m/broken.jpg") is None
    store.errors.clear(["/m/empty.wav"])
    assert store.errors.latest() == []


def test_a_failing_transaction_rolls_back_every_write_in_it(store):
    add(store, "/m/kept.jpg")
    with pytest.raises(RuntimeError):
        with store.transaction():
            add(store, "/m/a.jpg")
            store.delete_files(["/m/kept.jpg"])
            raise RuntimeError("crash in the middle of a batch")
    assert store.files.paths_under("/m") == ["/m/kept.jpg"]
    with store.transaction():
        add(store, "/m/a.jpg")
        with pytest.raises(VectorError):
            with store.transaction():  # nested: only the savepoint rolls back
                add(store, "/m/b.jpg")
                nan = np.full((1, DIM), np.nan, np.float32)
                store.upsert_file(FileEntry("/m/c.jpg", 1, 1, "h", "vision"), vector_entries(nan, "vision"))
    assert store.files.paths_under("/m") == ["/m/a.jpg", "/m/kept.jpg"]


def test_settings_round_trip_json_values(store):
    assert store.settings.get("folder:/m", {"hidden": False}) == {"hidden": False}
    store.settings.set("folder:/m", {"hidden": True, "exclude": ["*.tmp"]})
    assert store.settings.get("folder:/m") == {"hidden": True, "exclude": ["*.tmp"]}


def _read_while_locked(path: str, queue) -> None:
    started = time.monotonic()
    with Store(path, create=False) as s:
        queue.put(("read", s.files.count(), s.vectors.counts(), time.monotonic() - started))
        s.bind_model("tiny-test", DIM)  # a write: waits for the other process's commit
        up = add(s, "/m/from-child.jpg")
        queue.put(("write", len(up.vector_ids), s.files.count(), time.monotonic() - started))


def test_another_process_reads_during_a_write_transaction_and_its_write_waits(store):
    add(store, "/m/committed.jpg")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with store.transaction():
        add(store, "/m/uncommitted.jpg")
        child = ctx.Process(target=_read_while_locked, args=(store.path, queue))
        child.start()
        kind, files, counts, _ = queue.get(timeout=60)
        assert (kind, files, counts) == ("read", 1, {"vision": 1})  # the committed state, not blocked
        time.sleep(0.3)
        assert queue.empty()  # the child's write is waiting for this transaction
    kind, n_vectors, files, _ = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert (kind, n_vectors, files) == ("write", 1, 3)
    assert store.files.count() == 3


_WRITER = """
import sys, numpy as np
from ibsearch.store import FileEntry, Store, vector_entries
s = Store(sys.argv[1])
s.bind_model("tiny-test", 8)
batch = 0
while True:
    with s.transaction():
        for i in range(20):
            s.upsert_file(FileEntry(f"/m/{batch}/{i}.jpg", 1, 1, f"{batch}-{i}", "vision"),
                          vector_entries(np.ones((2, 8), np.float32), "vision"))
    print(batch, flush=True)
    batch += 1
"""


def test_a_writer_killed_at_any_point_leaves_a_database_that_opens_with_whole_batches(tmp_path):
    path = str(tmp_path / "library.db")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # three batches committed, then a kill somewhere inside the next one
            assert proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    with Store(path, create=False) as s:
        assert s.integrity_errors() == []
        files, vectors = s.files.count(), s.vectors.count()
        assert files >= 60 and files % 20 == 0  # only whole batches
        assert vectors == 2 * files
        assert s.vectors.id_summary("vision").size == vectors


def test_a_snapshot_reads_one_consistent_state_while_another_connection_commits(store):
    add(store, "/m/a.jpg")
    with Store(store.path) as other:
        with store.snapshot():
            add(other, "/m/b.jpg")
            assert store.files.count() == 1 and store.vectors.id_summary("vision").size == 1
        assert store.files.count() == 2


def test_update_stat_records_a_touch_without_touching_vectors(store):
    up = add(store, "/m/a.jpg", mtime_ns=1)
    assert store.files.update_stat("/m/a.jpg", size=10, mtime_ns=99)
    assert not store.files.update_stat("/m/missing.jpg", size=1, mtime_ns=1)
    assert store.files.get("/m/a.jpg").mtime_ns == 99
    assert [v.id for v in store.vectors.of_file("/m/a.jpg")] == up.vector_ids


def test_a_file_can_hold_vectors_of_several_modalities_and_vectors_come_back_by_id(store):
    up = store.upsert_file(
        FileEntry("/m/clip.mp4", size=1, mtime_ns=1, content_hash="video", modality="vision"),
        vector_entries(unit(2), ["vision", "audio"]),
    )
    assert store.vectors.counts() == {"audio": 1, "vision": 1}
    assert store.vectors.select_ids("audio").tolist() == [up.vector_ids[1]]
    found, vectors = store.vectors.by_id([up.vector_ids[1], 999999, up.vector_ids[0]])
    assert found.tolist() == sorted(up.vector_ids)
    np.testing.assert_array_equal(vectors, unit(2))
    with pytest.raises(UsageError, match="modalities given"):
        add(store, "/m/x.mp4", n=2, vector_modalities=["vision"])


_WITHOUT_SQLITE_UTILS = """
import sys, numpy as np
sys.modules["sqlite_utils"] = None  # any import of it fails from here on
from ibsearch.store import FileEntry, Store, vector_entries
with Store(sys.argv[1]) as s:
    s.bind_model("tiny-test", 8)
    put = lambda p: s.upsert_file(FileEntry(p, 1, 1, p, "vision"), vector_entries(np.ones(8), "vision"))
    with s.transaction():
        put("/m/a.jpg")
        try:
            with s.transaction():
                put("/m/b.jpg")
                raise RuntimeError("undo b only")
        except RuntimeError:
            pass
    print(s.files.paths_under("/m"))
"""


def test_the_store_and_its_nested_transactions_need_no_sqlite_utils(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SQLITE_UTILS, str(tmp_path / "library.db")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['/m/a.jpg']"
    pyproject = (Path(ibsearch.__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert "sqlite-utils" not in pyproject and "sqlite_utils" not in pyproject


SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|PRAGMA|BEGIN|COMMIT|SAVEPOINT|CREATE) ")


def test_only_the_store_speaks_sql():
    """Everything outside ``store/`` asks the store (the server included): no sqlite3, no SQL text."""
    package = Path(ibsearch.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{path.name}:{node.lineno} imports sqlite3" for n in names if n == "sqlite3"]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
                found.append(f"{path.name}:{node.lineno} {node.value[:40]!r}")
    assert found == []
