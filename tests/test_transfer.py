"""Vectors in and out of a library: ``ibsearch export`` and ``ibsearch import`` (real Parquet, real SQLite,
the real CLI), with the rules that make imported files count as ingested."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import run_json

from ibsearch.files import hash_file
from ibsearch.ingest.commit import PREPROCESS_VERSION
from ibsearch.shards import ShardRow, ShardWriter, shard_metadata

DIM = 1024  # the tiny test model's embedding width
MODEL = "tiny-test"  # the model id of conftest's tiny card


def mixture(n: int, seed: int, centres: int = 64) -> np.ndarray:
    """``n`` unit vectors from a mixture of clustered Gaussians (embedding-like; the same centres for
    every seed, so different seeds are samples of one distribution)."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(12345).standard_normal((centres, DIM)).astype(np.float32)
    x = middle[rng.integers(centres, size=n)] * 1.5 + rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_shard(path: Path, paths: list[str], vectors: np.ndarray, *, model: str = MODEL, **columns) -> Path:
    """A shard of one whole-file vision vector per path, as a job computing vectors elsewhere writes it."""
    rows = [ShardRow(p, "vision", **{k: v[i] for k, v in columns.items()}) for i, p in enumerate(paths)]
    with ShardWriter(path, model_id=model, dim=vectors.shape[1], preprocess_version=PREPROCESS_VERSION) as w:
        w.write(rows, vectors)
    return path


def run(*args: object) -> tuple[int, str]:
    from ibsearch.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def query_hits(lib_args: list[str], *terms: object) -> list[tuple]:
    hits = run_json("query", *terms, "--k", 5, *lib_args)
    return [(h["path"], round(h["score"], 5), h["modality"], h.get("start"), h.get("end")) for h in hits]


def test_export_then_import_into_a_new_library_gives_the_same_hits(media_dir, lib_args, tmp_path):
    run_json("ingest", media_dir, *lib_args)
    shard = tmp_path / "all.parquet"
    exported = run_json("export", "--output", shard, *lib_args)
    info = run_json("info", *lib_args)
    shared = {key: n for key, n in info["vectors"].items() if key != "text.segments"}  # no passages in shards
    assert exported["rows"] == sum(shared.values()) and exported["files"] == info["files"]
    meta = pq.read_schema(shard).metadata
    assert meta[b"ibsearch.model_id"] == MODEL.encode() and meta[b"ibsearch.dim"] == str(DIM).encode()
    other = ["--library", tmp_path / "other", *lib_args[2:]]
    imported = run_json("import", shard, *other)
    assert imported["added"] == info["files"] and imported["vectors"] == exported["rows"]
    assert imported["failed"] == []
    assert run_json("info", *other)["vectors"] == shared
    photo = media_dir / "photos" / "photo_640x480.jpg"
    sound = media_dir / "sounds" / "mix_16000_mono_s16_5p3s.wav"
    queries = [
        ["--text", "a dog barking"],
        ["--like", photo],
        ["--audio", sound, "--segments", "--target", "audio"],  # an imported note has no passages
        ["--text", "milk", "--target", "text", "--no-keywords"],  # nor the text its words are found by
        ["--like", sound, "--path-prefix", media_dir / "sounds"],
    ]
    for terms in queries:
        assert query_hits(other, *terms) == query_hits(lib_args, *terms), terms
    assert run_json("check", *other)["ok"]
    # The imported files count as ingested: an ingest of the same unchanged files encodes only the notes,
    # for their passages.
    again = run_json("ingest", media_dir, *other)
    notes = info["vectors"]["text"]
    assert again["added"] == 0 and again["updated"] == notes and again["unchanged"] == info["files"] - notes
    assert run_json("info", *other)["vectors"] == info["vectors"]
    words = ["--text", "milk", "--target", "text"]  # and the text of its words, with the passages
    assert query_hits(other, *words) == query_hits(lib_args, *words)


def test_an_npy_export_holds_every_vector_beside_its_rows(media_dir, lib_args, tmp_path):
    run_json("ingest", media_dir / "photos", *lib_args)
    out = tmp_path / "vectors.npy"
    summary = run_json("export", "--format", "npy", "--output", out, *lib_args)
    vectors = np.load(out)
    rows = [json.loads(line) for line in (tmp_path / "vectors.jsonl").read_text().splitlines()]
    manifest = json.loads((tmp_path / "vectors.json").read_text())
    assert (
        vectors.shape == (summary["rows"], DIM) == (len(rows), manifest["dim"])
        and manifest["model_id"] == MODEL
    )
    assert {r["path"] for r in rows} == {str(p) for p in (media_dir / "photos").iterdir()}
    first = run_json("query", "--like", rows[0]["path"], "--include-like", "--k", 1, *lib_args)[0]
    assert first["path"] == rows[0]["path"] and np.isclose(np.linalg.norm(vectors[0]), 1, atol=1e-5)


def test_a_minimal_shard_of_path_modality_and_vector_imports_and_is_searchable(lib_args, tmp_path):
    vectors = mixture(300, seed=1)
    paths = [f"/elsewhere/{i:04d}.jpg" for i in range(300)]
    table = pa.table(
        {"path": paths, "modality": ["vision"] * 300, "vector": [list(map(float, v)) for v in vectors]}
    )  # fmt: skip (a plain list<double>)
    pq.write_table(table, tmp_path / "plain.parquet")
    assert run_json("import", tmp_path / "plain.parquet", *lib_args)["added"] == 300
    from ibsearch.engine import Library
    from ibsearch.search import Searcher

    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        hits = Searcher(lib).query(vector=vectors[17], k=1)
        assert hits[0].path == paths[17] and hits[0].score == pytest.approx(1.0, abs=1e-5)
        stored = lib.store.vectors.of_file(paths[17])[0]
        assert stored.preprocess_version == "unknown"  # the shard named no preprocessing: never reused


def test_a_shard_of_another_model_or_dimension_is_refused_whole(lib_args, tmp_path):
    vectors = mixture(5, seed=2)
    paths = [f"/x/{i}.jpg" for i in range(5)]
    code, out = run(
        "import", write_shard(tmp_path / "m.parquet", paths, vectors, model="imagebind_huge"), *lib_args
    )
    assert code == 1 and "m.parquet" in out and "imagebind_huge" in out and "--model" in out
    small = vectors[:, :512] / np.linalg.norm(vectors[:, :512], axis=1, keepdims=True)
    code, out = run("import", write_shard(tmp_path / "d.parquet", paths, small), *lib_args)
    assert code == 1 and "d.parquet" in out and "dim 512" in out
    code, out = run("import", tmp_path / "d.parquet", tmp_path / "m.parquet", *lib_args)
    assert code == 1  # checked before anything is written
    table = pa.table({"path": paths, "vector": [list(map(float, v)) for v in vectors]})
    pq.write_table(table, tmp_path / "nomod.parquet")
    code, out = run("import", tmp_path / "nomod.parquet", *lib_args)
    assert code == 1 and "lacks the column(s) modality" in out
    assert run_json("info", *lib_args)["files"] == 0


def test_files_on_this_machine_must_be_what_the_shard_says(lib_args, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [folder / f"{i}.jpg" for i in range(4)]
    for i, name in enumerate(names):
        name.write_bytes(b"jpeg bytes %d" % i)
    st = [n.stat() for n in names]
    vectors = mixture(4, seed=3)
    columns = {
        "size": [s.st_size for s in st],
        "mtime_ns": [s.st_mtime_ns for s in st],
        "hash": [hash_file(n) for n in names[:2]] + ["0" * 64, None],
    }
    names[3].write_bytes(b"changed since the job saw it")  # size differs, no hash to compare with
    os.utime(names[2], ns=(1, 1))  # touched: its (wrong) hash is checked against the content
    shard = write_shard(tmp_path / "s.parquet", [str(n) for n in names], vectors, **columns)
    summary = run_json("import", shard, *lib_args)
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert summary["added"] == 2 and set(failed) == {str(names[2]), str(names[3])}
    assert "content hash differs" in failed[str(names[2])] and "changed since" in failed[str(names[3])]
    # The accepted files were stored with their real stat and hash: they count as ingested.
    from ibsearch.engine import Library

    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        rec = lib.store.files.get(names[0])
        assert (rec.size, rec.mtime_ns, rec.content_hash) == (
            st[0].st_size,
            st[0].st_mtime_ns,
            hash_file(names[0]),
        )


def test_segments_and_malformed_rows_are_read_as_documented(lib_args, tmp_path):
    vectors = mixture(7, seed=4)
    vectors[6] = 0
    table = pa.table({
        "path": ["/a.wav", "/a.wav", "/a.wav", "/b.wav", "/c.wav", "/c.wav", "/d.wav"],
        "modality": ["audio", "audio.segments", "audio.segments", "audio", "audio", "audio", "audio"],
        "start": [None, 3.0, 0.0, 1.0, None, None, None],
        "end": [None, 9.0, 6.0, 2.0, None, None, None],
        "metadata": ['{"duration": 9.0}', None, None, None, None, "[1]", None],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
    }).replace_schema_metadata(shard_metadata(MODEL, DIM, PREPROCESS_VERSION))  # fmt: skip
    pq.write_table(table, tmp_path / "seg.parquet")
    summary = run_json("import", tmp_path / "seg.parquet", *lib_args)
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert summary["added"] == 1 and set(failed) == {"/b.wav", "/c.wav", "/d.wav"}
    assert "use audio.segments" in failed["/b.wav"] and "not a JSON object" in failed["/c.wav"]
    assert "row 6: a zero or non-finite vector" in failed["/d.wav"]
    from ibsearch.engine import Library

    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        stored = lib.store.vectors.of_file("/a.wav")
        assert [(v.modality, v.start, v.end) for v in stored] == [
            ("audio", None, None), ("audio.segments", 0.0, 6.0), ("audio.segments", 3.0, 9.0)
        ]  # fmt: skip
        assert lib.store.files.get("/a.wav").info == {"duration": 9.0}
        assert stored[0].preprocess_version == PREPROCESS_VERSION
