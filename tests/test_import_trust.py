"""What ``ibsearch import`` trusts in a shard and what it refuses, and what the server serves of imported
files: the real CLI, real Parquet, a real SQLite library and a real server on loopback."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import DATA, run_json
from test_server_helpers import opener
from test_transfer import DIM, MODEL, mixture, write_shard

from ibsearch.engine import Library
from ibsearch.files import hash_file
from ibsearch.ingest.commit import PREPROCESS_VERSION, IngestSummary
from ibsearch.search import Searcher
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server
from ibsearch.shards import ShardReader, shard_metadata

PHOTO = DATA / "images" / "photo_640x480.jpg"


def run(*args: object) -> tuple[int, str]:
    """The real CLI; a traceback fails the test (``catch_exceptions=False``)."""
    from ibsearch.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def unit(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1
    return vector


def shard_table(path: Path, columns: dict[str, object], vectors: np.ndarray | None = None) -> Path:
    """A shard of ``columns`` (one whole-file vision vector per row unless ``modality`` is given)."""
    n = len(next(iter(columns.values())))  # type: ignore[arg-type]
    vectors = mixture(n, seed=9) if vectors is None else vectors
    data = {"modality": ["vision"] * n, **columns,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)}  # fmt: skip
    table = pa.table(data).replace_schema_metadata(shard_metadata(MODEL, DIM, PREPROCESS_VERSION))
    pq.write_table(table, path)
    return path


def test_a_hash_that_no_local_bytes_confirmed_never_lets_ingest_skip_the_model(lib_args, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    real = folder / "real.jpg"
    shutil.copy(PHOTO, real)
    planted = unit(0)[None, :]
    shard = write_shard(tmp_path / "plant.parquet", ["/made/up/x.jpg"], planted, hash=[hash_file(real)])
    assert run_json("import", shard, *lib_args)["added"] == 1
    summary = run_json("ingest", folder, *lib_args)
    assert summary["added"] == 1 and summary["encoded"] >= 1  # the model ran: no planted vector taken
    copy = folder / "copy.jpg"
    shutil.copy(real, copy)
    again = run_json("ingest", folder, *lib_args)
    assert again["added"] == 1 and again["encoded"] == 0  # a copy of a file ingest read reuses its vectors
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        for name in (real, copy):
            (vector,) = lib.store.vectors.of_file(name)
            assert not np.allclose(vector.vector, planted[0])


def test_import_refuses_relative_unnormalized_empty_and_nul_paths(lib_args, tmp_path):
    shard = shard_table(tmp_path / "paths.parquet", {
        "path": ["x", "x", "x", "/a/../etc/passwd", "", "relative.jpg", "/a//b.jpg", "/bad\x00.jpg",
                 "/ok.jpg"],
        "path_bytes": [b"../../etc/passwd", b"/ok/../x.jpg", b"/nul\x00.jpg"] + [None] * 6,
    })  # fmt: skip
    summary = run_json("import", shard, *lib_args)
    assert summary["added"] == 1 and len(summary["failed"]) == 8
    reasons = " ".join(f["reason"] for f in summary["failed"])
    assert "absolute" in reasons and "row 4" in reasons and "row 7" in reasons
    assert run_json("info", *lib_args)["files"] == 1


def test_the_server_serves_no_imported_file_that_no_local_ingest_has_read(lib_args, tmp_path, tiny_card):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "photo.jpg"
    shutil.copy(PHOTO, photo)
    st = photo.stat()
    shard = write_shard(tmp_path / "s.parquet", ["/etc/passwd", str(photo)], mixture(2, seed=5),
                        size=[None, st.st_size], mtime_ns=[None, st.st_mtime_ns])  # fmt: skip
    assert run_json("import", shard, *lib_args)["added"] == 2
    library = Path(lib_args[1])

    def media_of(client: httpx.Client, path: Path) -> httpx.Response:
        ident = client.get("/api/items", params={"path": str(path)}).json()["id"]
        return client.get(f"/api/items/{ident}/media")

    with Server(opener(library, tiny_card), ServerConfig(port=0)) as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for path in (Path("/etc/passwd"), photo):
                answer = media_of(client, path)
                assert answer.status_code == 409 and b"root:" not in answer.content
                assert "ingest" in answer.json()["error"]
            run_json("ingest", folder, *lib_args)  # reads the photo: now it is served
            answer = media_of(client, photo)
            assert answer.status_code == 200 and answer.content == PHOTO.read_bytes()
            assert media_of(client, Path("/etc/passwd")).status_code == 409


def test_non_finite_metadata_is_refused_and_never_makes_the_database_look_damaged(lib_args, tmp_path):
    shard = shard_table(tmp_path / "nan.parquet", {
        "path": ["/v/nan.mp4", "/v/inf.mp4", "/v/ok.mp4"],
        "metadata": ['{"duration": NaN}', '{"duration": -Infinity, "a": 1}', '{"duration": 3.0}'],
    })  # fmt: skip
    summary = run_json("import", shard, *lib_args)
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert summary["added"] == 1 and set(failed) == {"/v/nan.mp4", "/v/inf.mp4"}
    assert "row 0" in failed["/v/nan.mp4"] and "finite" in failed["/v/nan.mp4"]
    assert run_json("info", *lib_args)["files"] == 1
    hits = run_json("query", "--text", "x", "--min-duration", 1, *lib_args)
    assert [h["path"] for h in hits] == ["/v/ok.mp4"]


def test_a_library_that_an_older_import_gave_nan_metadata_is_healed_not_called_damaged(lib_args, tmp_path):
    shard = shard_table(tmp_path / "ok.parquet", {
        "path": ["/v/a.mp4", "/v/b.mp4"], "metadata": ['{"duration": 3.0}', '{"duration": 5.0}'],
    })  # fmt: skip
    run_json("import", shard, *lib_args)
    with sqlite3.connect(Path(lib_args[1]) / "ibsearch.db") as conn:  # as schema 1 with an old import left it
        conn.execute("""UPDATE files SET info = '{"duration": NaN, "fps": 25}' WHERE path = '/v/a.mp4'""")
        conn.execute("ALTER TABLE files DROP COLUMN verified")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    assert run_json("info", *lib_args)["files"] == 2
    hits = run_json("query", "--text", "x", "--min-duration", 1, *lib_args)
    assert [h["path"] for h in hits] == ["/v/b.mp4"]
    code, out = run("query", "--text", "x", "--json", *lib_args)
    strict = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
    metadata = {h["path"]: h["metadata"] for h in strict}
    assert code == 0 and metadata["/v/a.mp4"] == {"duration": None, "fps": 25}
    assert run_json("check", *lib_args)["ok"] is True


def test_vectors_that_cannot_be_scaled_to_unit_length_are_refused_with_their_row(lib_args, tmp_path):
    vectors = mixture(4, seed=6)
    vectors[1] = 3e38
    vectors[2] = -3e38
    vectors[3] = 1.4e-45
    shard = shard_table(tmp_path / "big.parquet", {"path": ["/v/ok.jpg", "/v/a.jpg", "/v/b.jpg", "/v/c.jpg"]},
                        vectors)  # fmt: skip
    summary = run_json("import", shard, *lib_args)
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert summary["added"] == 1 and set(failed) == {"/v/a.jpg", "/v/b.jpg", "/v/c.jpg"}
    assert all(f"row {i}" in failed[f"/v/{name}.jpg"] for i, name in ((1, "a"), (2, "b"), (3, "c")))
    assert run_json("check", *lib_args)["ok"] is True


def test_a_file_of_more_rows_than_a_batch_is_read_and_stored_in_bounded_batches(lib_args, tmp_path):
    # /long.mp4: n sound segments, then its picture, its metadata on a row past the first batch;
    # /bad.wav: bad segments, one of them a zero vector.
    n, bad = 100, 20
    vectors = mixture(n + 4 + bad, seed=7)
    vectors[n + 4 + 17] = 0
    shard = shard_table(tmp_path / "long.parquet", {
        "path": ["/long.mp4"] * (n + 1) + ["/a.jpg", "/b.jpg", "/c.jpg"] + ["/bad.wav"] * bad,
        "modality": ["audio.segments"] * n + ["vision"] * 4 + ["audio.segments"] * bad,
        "start": [float(i) for i in range(n)] + [None] * 4 + [float(i) for i in range(bad)],
        "end": [float(i + 1) for i in range(n)] + [None] * 4 + [float(i + 1) for i in range(bad)],
        "metadata": [None] * 50 + ['{"duration": 100.0}'] + [None] * (n + 3 + bad - 50),
    }, vectors)  # fmt: skip
    reader = ShardReader(shard, batch_rows=16)
    sizes = []
    for group in reader.files(DIM):
        sizes += [len(rows) for rows, _ in group.parts()] if group.parts else [len(group.rows)]
    assert max(sizes) <= 16 and sum(sizes) == n + 4 + 16  # /bad.wav's rows end at its zero vector
    with Library.open(lib_args[1], model=lib_args[3], device="cpu", create=True) as lib:
        summary = lib.import_vectors([str(shard)], batch_rows=16)
        assert (summary.added, summary.vectors) == (4, n + 4)
        (failed,) = summary.failed
        assert failed["path"] == "/bad.wav" and f"row {n + 4 + 17}" in failed["reason"]
        assert lib.store.files.get("/bad.wav") is None
        stored = lib.store.vectors.of_file("/long.mp4")
        assert [(v.modality, v.start) for v in stored] == [("audio.segments", float(i)) for i in range(n)] + [
            ("vision", None)
        ]  # fmt: skip
        assert np.allclose(np.stack([v.vector for v in stored]), vectors[: n + 1], atol=1e-6)
        record = lib.store.files.get("/long.mp4")
        assert (record.modality, record.info) == ("vision", {"duration": 100.0})
        (hit,) = Searcher(lib).query(vector=vectors[40], target="audio", segments=True, k=1)
        assert (hit.path, hit.start) == ("/long.mp4", 40.0)
    assert run_json("check", *lib_args)["ok"] is True


def garbled(tmp_path: Path) -> Path:
    """A shard whose footer reads but whose data pages do not (a disk or a copy damaged it)."""
    shard = write_shard(tmp_path / "garbled.parquet", [f"/g/{i}.jpg" for i in range(50)], mixture(50, seed=8))
    data = bytearray(shard.read_bytes())
    data[4:2000] = b"\xff" * 1996
    shard.write_bytes(bytes(data))
    return shard


def unreadable_shards(tmp_path: Path) -> dict[str, Path]:
    """Shards that once made import fail with a traceback, by what is wrong with them."""
    deep = "[" * 200_000 + "]" * 200_000
    strings = pa.table({"path": ["/s/1.jpg"], "modality": ["vision"], "vector": [["a", "b"]]})
    pq.write_table(strings, tmp_path / "strings.parquet")
    dim = pa.table({"path": ["/d/1.jpg"], "modality": ["vision"], "vector": [[1.0] * DIM]})
    pq.write_table(dim.replace_schema_metadata({"ibsearch.dim": "abc"}), tmp_path / "dim.parquet")
    return {
        "deep": shard_table(
            tmp_path / "deep.parquet", {"path": ["/n/deep.jpg", "/n/ok.jpg"], "metadata": [deep, None]}
        ),  # fmt: skip
        "strings": tmp_path / "strings.parquet",
        "dim": tmp_path / "dim.parquet",
        "garbled": garbled(tmp_path),
    }


def test_unreadable_shards_are_errors_not_tracebacks_and_set_aside_by_a_cluster_merge(lib_args, tmp_path):
    shards = unreadable_shards(tmp_path)
    summary = run_json("import", shards["deep"], *lib_args)
    (failed,) = summary["failed"]
    assert summary["added"] == 1 and failed["path"] == "/n/deep.jpg" and "row 0" in failed["reason"]
    for what in ("strings", "dim", "garbled"):
        code, out = run("import", shards[what], *lib_args)
        assert code == 1 and out.startswith("Error: ") and shards[what].name in out, (what, out)
    from ibsearch.cluster.shard_files import merge_shards, shard_folder
    from ibsearch.transfer import ImportCommitter

    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        folder = shard_folder(lib)
        folder.mkdir()
        for number, what in enumerate(("strings", "dim", "garbled"), 1):
            shutil.copy(shards[what], folder / f"{number:06d}.parquet")
        with lib.writing():
            refused = merge_shards(lib, ImportCommitter(lib, IngestSummary()))
    assert sorted(r["path"] for r in refused) == [str(folder / f"{n:06d}.parquet") for n in (1, 2, 3)]
    assert all("damaged cluster shard" in r["reason"] for r in refused)
    assert sorted(p.name for p in (folder / "damaged").iterdir()) == [f"{n:06d}.parquet" for n in (1, 2, 3)]
