"""A library on a disk that fills up: one sentence naming the full folder, and nothing stored damaged.

The disk is real: a small tmpfs mounted for the test (as root, or through ``sudo -n`` as another
user), so writes fail with ENOSPC exactly where SQLite, FAISS and the atomic file writes meet it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_json
from test_hostile_library import run


def _as_root(*cmd: str) -> subprocess.CompletedProcess[bytes]:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return subprocess.run([*prefix, *cmd], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of this user's own, unmounted again after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    options = f"size=2m,uid={os.geteuid()},gid={os.getegid()},mode=0755"
    mounted = _as_root("mount", "-t", "tmpfs", "-o", options, "ibsearch-test", str(disk))
    assert mounted.returncode == 0, f"mounting a small tmpfs needs root or sudo -n: {mounted.stderr!r}"
    try:
        yield disk
    finally:
        if _as_root("umount", str(disk)).returncode != 0:
            _as_root("umount", "-l", str(disk))


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with one file until ``leave`` bytes are left free; returns that file."""
    filler = disk / "filler"
    vfs = os.statvfs(disk)
    size = max(0, vfs.f_bavail * vfs.f_frsize - leave)
    with open(filler, "wb") as fh:
        fh.truncate(0)
        while size > 0:  # tmpfs allocates as it is written: a sparse file would not fill it
            size -= fh.write(b"\0" * min(size, 1 << 16))
    return filler


def refused_for_space(output: str, folder: Path) -> bool:
    """The output is one ``Error:`` line naming the full ``folder`` and saying to free space."""
    lines = output.strip().splitlines()
    return (
        len(lines) == 1
        and lines[0].startswith("Error: ")
        and repr(str(folder)) in lines[0]
        and "free some space" in lines[0]
    )


# Met where: opening the database (0), growing it (64), saving the index files check rebuilds (160).
@pytest.mark.parametrize(("leave_kib", "drop_indexes"), [(0, False), (64, False), (160, True)])
def test_a_full_disk_is_named_in_one_sentence_and_the_library_survives_it(
    tmp_path, tiny_card, media_dir, small_disk, leave_kib, drop_indexes
):
    """Ingest, check and import on a full disk fail with one sentence naming the folder; once space is
    freed, the library checks ok and the same commands complete."""
    library = small_disk / "lib"
    lib_args = ["--library", library, "--model", tiny_card, "--device", "cpu"]
    first = media_dir / "photos"
    assert run_json("ingest", first, *lib_args)["added"] == len(list(first.iterdir()))
    elsewhere = ["--library", tmp_path / "other", "--model", tiny_card, "--device", "cpu"]
    run_json("ingest", media_dir / "sounds", *elsewhere)
    shard = tmp_path / "sounds.parquet"
    run_json("export", "--output", shard, *elsewhere)
    for index in library.glob("*.faiss*") if drop_indexes else ():  # rebuilt by the next command
        index.unlink()

    filler = fill(small_disk, leave_kib * 1024)
    code, output = run("ingest", media_dir, *lib_args, "--workers", "0")
    assert code == 1 and refused_for_space(output, library), output
    for command in (["check"], ["import", shard]):
        code, output = run(*command, *lib_args)
        assert code == 0 or (code == 1 and refused_for_space(output, library)), output

    filler.unlink()
    assert run_json("check", *lib_args)["ok"]
    summary = run_json("ingest", media_dir, *lib_args, "--workers", "0")
    assert not summary["failed"]
    run_json("import", shard, *lib_args)
    assert run_json("check", *lib_args)["ok"]


def test_an_npy_export_to_a_full_disk_is_one_sentence_and_leaves_no_part_files(
    tmp_path, lib_args, media_dir, small_disk
):
    """The array is written through a memory map, where a full disk is a SIGBUS, not an error: its
    space is reserved first. Run in a subprocess, so that a crash shows as one."""
    run_json("ingest", media_dir, *lib_args)
    output = small_disk / "vectors.npy"
    filler = fill(small_disk, 8 * 1024)  # the header fits, the vectors (1024-d) do not
    command = [sys.executable, "-m", "ibsearch", "export", "--format", "npy", "--output", str(output)]
    done = subprocess.run([*command, *map(str, lib_args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and refused_for_space(done.stderr, small_disk), (done.returncode, done.stderr)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    filler.unlink()
    done = subprocess.run([*command, *map(str, lib_args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["vectors.json", "vectors.jsonl", "vectors.npy"]
