"""Cluster ingest on a real local Ray runtime: the same vectors as a local ingest, and no lost work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, run_json
from test_ingest_robust import many_images

from ibsearch.cluster.pipeline import Embedder
from ibsearch.cluster.ray_runtime import LOCAL_ONLY
from ibsearch.engine import Library

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ[LOCAL_ONLY] = "0"  # every Ray process of these tests on loopback, as ibsearch's own runtime


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    """One local Ray runtime of 2 CPUs for the module (ingest --ray joins it)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def embedding_actors() -> list[int]:
    """Pids of the embedding actors of the Ray runtime this process started: its raylet is a child of
    this process, the actors are the raylet's children, and Ray titles each actor's process after its
    class (``ray::MapWorker(MapBatches(PlacedEmbedder))``), so a walk of /proc finds them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()  # "pid (comm) state ppid ...", comm may hold ")"
        except OSError:
            continue  # a process that ended meanwhile
        children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry.name))
    found, todo = [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::") and Embedder.__name__.encode() in title:
                found.append(pid)
    return found


def stored(library: Path, card: str) -> dict[tuple[str, str, float | None], np.ndarray]:
    with Library.open(library, model=card, device="cpu") as lib:
        return {
            (Path(path).name, v.modality, v.start): v.vector
            for path in lib.store.files.paths_under("")
            for v in lib.store.vectors.of_file(path)
        }


def hostile_media(root: Path) -> Path:
    root.mkdir()
    for name in ("photo_640x480.jpg", "palette_256x192.gif", "gray_L_300x400.png"):
        shutil.copy(DATA / "images" / name, root / name)
    shutil.copy(DATA / "audio" / "mix_16000_mono_s16_5p3s.wav", root / "short.wav")
    shutil.copy(DATA / "audio" / "tone_8000_mono_s16_30s.wav", root / "long.wav")  # segments
    shutil.copy(DATA / "video" / "landscape_320x240_29.97fps_4.5s_aac.mp4", root / "clip.mp4")
    (root / "note.txt").write_text("a dog barking in the park")
    for bad in ("truncated.jpg", "random_bytes.wav", "empty.jpg"):
        shutil.copy(DATA / "bad" / bad, root / bad)
    return root


def test_ray_ingest_gives_the_files_vectors_and_segments_of_a_local_ingest_bit_for_bit(tmp_path, tiny_card):
    media = hostile_media(tmp_path / "media")
    local = ["--library", tmp_path / "local", "--model", tiny_card, "--device", "cpu"]
    ray_lib = ["--library", tmp_path / "ray", "--model", tiny_card, "--device", "cpu"]
    here = run_json("ingest", media, *local, "--workers", "0")
    there = run_json("ingest", media, *ray_lib, "--ray")
    assert {k: v for k, v in there.items() if k != "failed"} == {
        k: v for k, v in here.items() if k != "failed"
    }
    assert sorted(f["path"] for f in there["failed"]) == sorted(f["path"] for f in here["failed"])
    assert {Path(f["path"]).name for f in there["failed"]} == {
        "truncated.jpg",
        "random_bytes.wav",
        "empty.jpg",
    }
    a, b = stored(tmp_path / "local", tiny_card), stored(tmp_path / "ray", tiny_card)
    assert ("note.txt", "text.segments", None) in a  # its passage: a cluster ingest writes none
    a = {key: vector for key, vector in a.items() if key[1] != "text.segments"}
    assert a.keys() == b.keys() and any(key[1] == "audio.segments" and key[2] for key in a)
    assert all(np.array_equal(a[key], b[key]) for key in a)  # bit for bit, segments included
    again = run_json("ingest", media, *ray_lib, "--ray")
    assert again["encoded"] == 0 and again["added"] == 0 and again["known_bad"] == 3  # the three bad files
    assert run_json("check", *ray_lib)["ok"] is True


def test_an_embedding_actor_killed_mid_run_is_replaced_and_every_file_lands_once(tmp_path, tiny_card):
    files = many_images(tmp_path / "many", 24)
    killed: list[int] = []

    def kill_an_actor(task: str, unit: str):
        def update(done: int, total: int | None) -> None:
            if task == "ingest on ray" and not killed and done >= 2:
                pid = max(embedding_actors())
                os.kill(pid, signal.SIGKILL)  # as a node that dies would
                killed.append(pid)

        return update

    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu", create=True) as lib:
        summary = lib.ingest_on_ray([str(tmp_path / "many")], batch_size=2, progress=kill_an_actor)
    assert killed and summary.failed == [] and summary.added == len(files)
    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu") as lib:
        assert sorted(lib.store.files.paths_under("")) == sorted(str(p) for p in files)
        assert lib.store.vectors.counts() == {"vision": len(files)} and lib.index("vision").ntotal == len(
            files
        )
    lib_args = ["--library", tmp_path / "lib", "--model", tiny_card]
    assert run_json("check", *lib_args)["ok"] is True


def test_a_driver_killed_mid_run_loses_nothing_and_the_rerun_computes_only_the_rest(tmp_path, tiny_card):
    files = many_images(tmp_path / "many", 40)
    library = tmp_path / "lib"
    cmd = [sys.executable, "-m", "ibsearch", "ingest", str(tmp_path / "many"), "--library", str(library),
           "--model", tiny_card, "--device", "cpu", "--batch-size", "2", "--ray", "--json"]  # fmt: skip
    env = {**os.environ, "IBSEARCH_RAY_SHARD_FILES": "4"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    merged = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and merged == 0:
            time.sleep(0.5)
            merged = _files_in(library)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert 0 < merged < len(files), f"{merged} files were merged before the kill"
    merged = _files_in(library)  # a shard written but not merged yet is merged by the next run
    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["failed"] == [] and summary["encoded"] <= len(files) - merged
    with Library.open(library, model=tiny_card, device="cpu") as lib:
        assert sorted(lib.store.files.paths_under("")) == sorted(str(p) for p in files)  # each file once
        assert lib.store.vectors.counts() == {"vision": len(files)}
    assert run_json("check", "--library", library, "--model", tiny_card)["ok"] is True


def _files_in(library: Path) -> int:
    db = library / "ibsearch.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_shards_left_by_a_killed_run_are_merged_as_an_import_and_a_damaged_one_is_set_aside(
    tmp_path, tiny_card
):
    files = many_images(tmp_path / "many", 6)
    source = ["--library", tmp_path / "source", "--model", tiny_card, "--device", "cpu"]
    run_json("ingest", tmp_path / "many", *source, "--workers", "0")
    shards = tmp_path / "lib" / "cluster-shards"
    shards.mkdir(parents=True)
    run_json("export", "--output", shards / "000001.parquet", *source)  # the public shard format
    (shards / "000002.parquet").write_bytes(b"PAR1" + os.urandom(300))  # a crash mid-write, say
    (shards / "000003.parquet.part").write_bytes(b"half a shard")
    with Library.open(tmp_path / "lib", model=tiny_card, device="cpu", create=True) as lib:
        summary = lib.ingest_on_ray([str(tmp_path / "many")])
        assert summary.added == len(files) and summary.encoded == 0  # merged, nothing computed again
        assert sorted(lib.store.files.paths_under("")) == sorted(str(p) for p in files)
    (damaged,) = summary.failed
    assert damaged["path"] == str(shards / "000002.parquet") and "damaged cluster shard" in damaged["reason"]
    assert sorted(p.name for p in shards.rglob("*")) == ["000002.parquet", "damaged"]
    assert (shards / "damaged" / "000002.parquet").exists()
    a, b = stored(tmp_path / "source", tiny_card), stored(tmp_path / "lib", tiny_card)
    assert a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)
    assert run_json("check", "--library", tmp_path / "lib", "--model", tiny_card)["ok"] is True
