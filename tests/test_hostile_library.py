"""Trustworthy under change, damage and odd input: one test per defect a hostile test found.

Real files, a real SQLite file, real FAISS indexes and the real CLI. Where a defect needs an ordinary
user's limits (permission denied, a read-only library) and the suite runs as root, the command runs
without root's power to override file permissions (``setpriv`` drops those two capabilities).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import DATA, run_json
from PIL import Image
from test_ingest_robust import float_wav

from ibsearch.cli import cli
from ibsearch.engine import Library
from ibsearch.files import file_lock, hash_file

PHOTO = DATA / "images" / "photo_640x480.jpg"
OTHER = DATA / "images" / "palette_256x192.gif"


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def as_user(*args: object) -> subprocess.CompletedProcess[bytes]:
    """The CLI in a subprocess that file permissions apply to, even when the suite runs as root."""
    cmd = [sys.executable, "-m", "ibsearch", *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permissions when running as root"
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def stored_vectors(lib_args: list[str]) -> dict[str, np.ndarray]:
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        return {p: lib.store.vectors.of_file(p)[0].vector for p in lib.store.files.paths_under("")}


def encode_image(lib_args: list[str], path: Path) -> np.ndarray:
    from ibsearch.encoder import preprocess

    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        return lib.encoder().encode("vision", preprocess.load("vision", path)[None])[0]


# ------------------------------------------------------------------------------------ data correctness


def test_1_a_file_replaced_between_walk_and_decode_is_stored_with_the_hash_of_what_was_encoded(
    tmp_path, lib_args
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        shutil.copy(DATA / "images" / "tiny_7x5.png", folder / f"filler_{i}.png")
    target = folder / "changing.jpg"
    shutil.copy(PHOTO, target)
    original = target.read_bytes()

    def replace_once_walked(task: str, unit: str):
        # Called when encoding starts: every file has been walked and hashed, none decoded yet.
        target.write_bytes(OTHER.read_bytes())
        return lambda done, total, current=None: None

    with Library.open(lib_args[1], model=lib_args[3], device="cpu", create=True) as lib:
        summary = lib.ingest([str(folder)], workers=0, progress=replace_once_walked)
        assert summary.failed == []
        record = lib.store.files.get(str(target))
        assert record is not None and record.content_hash == hash_file(target)
    vectors = stored_vectors(lib_args)
    assert np.allclose(vectors[str(target)], encode_image(lib_args, target), atol=1e-6)
    # The original content under a new name must get the original's vector, not the replacement's.
    copy = folder / "copy_of_original.jpg"
    copy.write_bytes(original)
    run_json("ingest", folder, *lib_args)
    assert np.allclose(stored_vectors(lib_args)[str(copy)], encode_image(lib_args, copy), atol=1e-6)


def _overwrite_inside(path: Path, vector: bytes, junk: bytes) -> None:
    """Overwrite bytes inside where ``vector`` is stored in ``path`` (its head: a 4 KB blob spans pages)."""
    data = bytearray(path.read_bytes())
    at = data.find(vector[:64])
    assert at >= 0, f"the vector is not found in {path}"
    data[at + 16 : at + 16 + len(junk)] = junk
    path.write_bytes(bytes(data))


def test_2_check_finds_damaged_vectors_in_the_database_and_damaged_rows_in_an_index(tmp_path, lib_args):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTO, folder / "a.jpg")
    shutil.copy(OTHER, folder / "b.gif")
    run_json("ingest", folder, *lib_args)
    lib_dir = Path(lib_args[1])
    vectors = stored_vectors(lib_args)
    # Bytes of the index overwritten, ids intact: the id summary still matches.
    _overwrite_inside(lib_dir / "vision.faiss", vectors[str(folder / "a.jpg")].tobytes(), b"\x00" * 64)
    code, out = run("check", "--no-repair", *lib_args)
    assert code == 1 and "vision.faiss': it is damaged" in out, out
    code, out = run("check", *lib_args)  # a damaged index file is rebuilt from the database
    assert code == 0 and "repaired: " in out and "rebuilt from the database" in out, out
    assert run("check", "--no-repair", *lib_args)[0] == 0
    # A page of the database overwritten inside a vector: NaN values that SQLite's own check misses.
    _overwrite_inside(lib_dir / "ibsearch.db", vectors[str(folder / "b.gif")].tobytes(), b"\xff" * 64)
    code, out = run("check", *lib_args)
    assert code == 1 and "not finite unit vectors" in out and "b.gif" in out, out


def _damage_pages(db: Path) -> None:
    """Overwrite every page but the first (the header and the schema) with noise."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    noise = np.random.default_rng(0).integers(0, 256, len(data) - page, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data[:page]) + noise)


def test_3_a_damaged_or_emptied_database_gives_a_clear_error_from_every_command(
    tmp_path, lib_args, media_dir
):
    run_json("ingest", media_dir, *lib_args)
    db = Path(lib_args[1]) / "ibsearch.db"
    saved = db.read_bytes()
    _damage_pages(db)
    commands = [
        ["info"], ["query", "--text", "a dog"], ["check"], ["reindex"], ["ingest", media_dir],
    ]  # fmt: skip
    for command in commands:
        code, out = run(*command, *lib_args)
        assert code == 1 and "Error:" in out and "ibsearch.db" in out, (command, out)
        assert "damaged" in out or "not a usable library database" in out, (command, out)
    db.write_bytes(saved)
    sizes = {p.name: p.stat().st_size for p in Path(lib_args[1]).glob("*.faiss")}
    db.write_bytes(b"")  # truncated to 0 bytes: never a new, empty library while the indexes hold vectors
    for command in commands:
        code, out = run(*command, *lib_args)
        assert code == 1 and "empty (0 bytes)" in out and "index files" in out, (command, out)
    assert {p.name: p.stat().st_size for p in Path(lib_args[1]).glob("*.faiss")} == sizes


def test_4_temporary_index_files_left_by_a_kill_are_removed_by_the_next_write(tmp_path, lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)
    lib_dir = Path(lib_args[1])
    leftover = lib_dir / ".vision.faiss.k1ll3d.tmp"
    leftover.write_bytes(b"\x00" * 3_000_000)  # what a reindex killed while saving leaves
    before = run_json("info", *lib_args)["size_bytes"]
    leftover.unlink()
    assert run_json("info", *lib_args)["size_bytes"] == before  # not counted as the library's
    leftover.write_bytes(b"\x00" * 3_000_000)
    (lib_dir / ".audio.faiss.json.x7.tmp").write_text("{")
    run_json("reindex", *lib_args)
    assert not list(lib_dir.glob(".*.tmp"))


# ----------------------------------------------------------------------- files silently missed


def test_5_a_path_longer_than_the_system_allows_and_an_unreadable_folder_are_reported(tmp_path, lib_args):
    root = tmp_path / "deep"
    root.mkdir()
    shutil.copy(PHOTO, root / "fine.jpg")
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(18):  # 18 x 250 characters: past Linux's 4096-byte PATH_MAX
            os.mkdir("d" * 250, dir_fd=fd)
            inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("hidden.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as fh:
            fh.write(PHOTO.read_bytes())
    finally:
        os.close(fd)
    summary = run_json("ingest", root, *lib_args)
    assert summary["added"] == 1
    assert any("longer than this system allows" in f["reason"] for f in summary["failed"]), summary
    locked = tmp_path / "locked"
    (locked / "inside").mkdir(parents=True)
    shutil.copy(PHOTO, locked / "inside" / "x.jpg")
    (locked / "inside").chmod(0)
    try:
        done = as_user("ingest", locked, *lib_args, "--json")
    finally:
        (locked / "inside").chmod(0o755)
    assert done.returncode == 0, done.stderr.decode()
    failed = {f["path"]: f["reason"] for f in json.loads(done.stdout)["failed"]}
    assert "Permission denied" in failed.get(str(locked / "inside"), ""), failed


def test_6_a_file_that_failed_for_a_reason_outside_its_content_is_retried(tmp_path, lib_args):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "a.jpg"
    shutil.copy(PHOTO, photo)
    photo.chmod(0)
    done = as_user("ingest", folder, *lib_args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert "Permission denied" in json.loads(done.stdout)["failed"][0]["reason"]
    photo.chmod(0o644)  # size and mtime are unchanged: only the permission was wrong
    again = run_json("ingest", folder, *lib_args)
    assert again["added"] == 1 and again["failed"] == []


def test_7_the_error_of_a_bad_file_that_was_deleted_is_forgotten(tmp_path, lib_args):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTO, folder / "good.jpg")
    shutil.copy(DATA / "bad" / "truncated.jpg", folder / "bad.jpg")
    run_json("ingest", folder, *lib_args)
    assert run_json("info", *lib_args)["errors"] == 1
    (folder / "bad.jpg").unlink()
    run_json("ingest", folder, *lib_args)
    info = run_json("info", *lib_args)
    assert info["errors"] == 0 and info["recent_errors"] == []


# --------------------------------------------------------------------- what a file is


def audio_only_mp4(path: Path, seconds: float = 3.0) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        t = np.arange(int(16000 * seconds)) / 16000
        frame = av.AudioFrame.from_ndarray(
            (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono"
        )
        frame.rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def test_8_audio_only_mp4_files_are_sound_and_avif_files_are_pictures(tmp_path, lib_args):
    folder = tmp_path / "media"
    folder.mkdir()
    audio_only_mp4(folder / "voice_memo.mp4")
    shutil.copy(DATA / "encoded" / "mix_16000_mono_5p3s.m4a", folder / "song.m4a")
    Image.open(PHOTO).save(folder / "picture.avif")
    summary = run_json("ingest", folder, *lib_args)
    assert summary["failed"] == [] and summary["added"] == 3, summary
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        kinds = {
            Path(p).name: {v.modality for v in lib.store.vectors.of_file(p)}
            for p in lib.store.files.paths_under("")
        }
    assert kinds["voice_memo.mp4"] == {"audio", "audio.segments"}
    assert kinds["song.m4a"] == {"audio", "audio.segments"}
    assert kinds["picture.avif"] == {"vision"}


def test_9_text_notes_that_begin_like_a_magic_number_are_text(tmp_path, lib_args):
    folder = tmp_path / "notes"
    folder.mkdir()
    notes = {"initials.txt": "BM wrote this", "gif.md": "GIF89a was a format", "tags.txt": "ID3 tags rock",
             "p6.txt": "P6 is a netpbm header"}  # fmt: skip
    for name, text in notes.items():
        (folder / name).write_text(text, encoding="utf-8")
    summary = run_json("ingest", folder, *lib_args)
    assert summary["failed"] == [] and summary["added"] == 4
    assert run_json("info", *lib_args)["vectors"] == {"text": 4, "text.segments": 4}  # one passage each


def test_10_links_out_of_the_tree_are_followed_by_default_and_not_with_no_follow_symlinks(tmp_path, lib_args):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(OTHER, outside / "elsewhere.gif")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PHOTO, folder / "here.jpg")
    os.symlink(outside, folder / "link_out")
    assert run_json("ingest", folder, *lib_args, "--no-follow-symlinks")["added"] == 1
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        assert lib.store.files.paths_under("") == [str(folder / "here.jpg")]
    assert run_json("ingest", folder, *lib_args)["added"] == 1  # the default follows the link
    assert (folder / "link_out" / "elsewhere.gif").exists()


# -------------------------------------------------------------------------------- output and input


def test_12_json_output_is_valid_utf8_and_names_a_non_utf8_path_by_its_bytes(tmp_path, lib_args):
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = os.fsencode(str(folder)) + b"/caf\xff.jpg"
    shutil.copy(PHOTO, raw)
    (folder / "bad.png").write_text("not a picture")
    shutil.copy(DATA / "bad" / "truncated.jpg", os.fsencode(str(folder)) + b"/br\xfeken.jpg")
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    for args in (["ingest", folder], ["query", "--image", os.fsdecode(raw)], ["info"]):
        done = subprocess.run(
            [sys.executable, "-m", "ibsearch", *map(os.fsencode, map(str, args)), *lib_args, "--json"],
            capture_output=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout.decode("utf-8"))  # strict: raises on invalid UTF-8
        entries = data if isinstance(data, list) else data.get("failed", []) + data.get("recent_errors", [])
        odd = [e for e in entries if "path_bytes" in e]
        assert odd, (args, data)
        assert all(os.path.exists(base64.b64decode(e["path_bytes"])) for e in odd)
        assert all("\\xf" in e["path"] for e in odd)


def test_13_small_holes_are_closed(tmp_path, lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)
    code, out = run("query", "--text", "x", "--min-duration", "nan", *lib_args)
    assert code != 0 and "--min-duration must be a number" in out
    code, out = run("ingest", media_dir, "--batch-size", "0", *lib_args)
    assert code == 2 and "--batch-size" in out
    card = tmp_path / "bad_card.json"
    card.write_text(json.dumps({"name": "x", "config": {"vision_embed_dim": -5}, "checkpoint": "x.pth"}))
    code, out = run("ingest", media_dir, "--library", tmp_path / "other", "--model", card)
    assert code == 1 and "vision_embed_dim must be a positive whole number" in out
    # A long NaN recording fails once, with one line in the summary.
    folder = tmp_path / "nan"
    folder.mkdir()
    wave = np.sin(np.linspace(0, 3000, 16000 * 15))
    wave[5000:6000] = np.nan
    float_wav(folder / "long_nan.wav", wave)
    failed = run_json("ingest", folder, *lib_args)["failed"]
    assert [f["path"] for f in failed] == [str(folder / "long_nan.wav")]


def test_13_check_waits_for_a_writer_instead_of_calling_the_library_inconsistent(lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)
    release = threading.Event()
    held = threading.Event()

    def writer() -> None:
        with file_lock(Path(lib_args[1]) / "write.lock", wait=False):
            held.set()
            release.wait(timeout=120)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert held.wait(timeout=30)
    cmd = [sys.executable, "-m", "ibsearch", "check", *lib_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()  # blocks until check says it waits (or exits)
        assert "waiting" in line, line
        assert proc.poll() is None  # still waiting for the writer
    finally:
        release.set()
        out, err = proc.communicate(timeout=120)
        thread.join(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "inconsistent" not in out.decode() and out.decode().strip().endswith("ok")


def test_13_a_read_only_library_can_be_queried(tmp_path, lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)
    lib_dir = Path(lib_args[1])
    for path in [lib_dir, *lib_dir.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        photo = media_dir / "photos" / "photo_640x480.jpg"
        done = as_user("query", "--like", photo, "--include-like", *lib_args, "--json")
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout)[0]["path"] == str(photo)
        done = as_user("ingest", media_dir, *lib_args)
        assert done.returncode == 1 and b"read-only" in done.stderr and b"Traceback" not in done.stderr
        assert b"move it away" not in done.stderr
    finally:
        for path in [lib_dir, *lib_dir.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_read_only_library_of_an_older_schema_says_how_to_upgrade_it(tmp_path, lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)
    lib_dir = Path(lib_args[1])
    with sqlite3.connect(lib_dir / "ibsearch.db") as conn:  # as ibsearch before schema 2 left it
        conn.execute("ALTER TABLE files DROP COLUMN verified")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    for path in [lib_dir, *lib_dir.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        done = as_user("info", *lib_args)
        assert done.returncode == 1 and b"Traceback" not in done.stderr
        assert b"older ibsearch (schema version 1)" in done.stderr and b"cannot be upgraded" in done.stderr
    finally:
        for path in [lib_dir, *lib_dir.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert run_json("info", *lib_args)["files"] == len(list(media_dir.rglob("*.*")))


def test_a_hostile_folder_holds_every_new_kind_of_trouble_with_the_old_ones(tmp_path, lib_args):
    root = tmp_path / "hostile"
    root.mkdir()
    for src in sorted((DATA / "bad").iterdir()):
        shutil.copy(src, root / src.name)
    shutil.copy(PHOTO, root / "good.jpg")
    audio_only_mp4(root / "memo.mp4")
    Image.open(PHOTO).save(root / "still.avif")
    (root / "bm.txt").write_text("BM is my name")
    shutil.copy(PHOTO, os.fsencode(str(root)) + b"/\xff.jpg")
    wave = np.sin(np.linspace(0, 3000, 16000 * 15))
    wave[100:200] = np.nan
    float_wav(root / "long_nan.wav", wave)
    (root / "fast.csv").write_text("time_s,ax,ay,az,gx,gy,gz\n0,0,0,9.8,0,0,0\n5000,0,0,9.8,0,0,0\n")
    os.mkfifo(root / "pipe.wav")
    os.symlink(root, root / "loop")
    summary = run_json("ingest", root, *lib_args, "--workers", "2")
    failed = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(failed) == {p.name for p in (DATA / "bad").iterdir()} | {"long_nan.wav", "fast.csv"}, failed
    assert summary["added"] == 5  # good.jpg, memo.mp4, still.avif, bm.txt and the 0xff name
