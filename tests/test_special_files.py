"""Paths named on the command line that are no regular files: each is reported, none is opened."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from conftest import DATA


def ingest(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess with a time limit: opening a FIFO would block it for good."""
    return subprocess.run(
        [sys.executable, "-m", "ibsearch", "ingest", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_a_fifo_a_device_or_a_socket_named_explicitly_is_failed_with_why_and_never_opened(
    tmp_path, lib_args, monkeypatch
):
    odd = tmp_path / "odd"
    odd.mkdir()
    os.mkfifo(odd / "fifo.wav")
    (odd / "zero.jpg").symlink_to("/dev/zero")
    (odd / "random.wav").symlink_to("/dev/urandom")
    monkeypatch.chdir(tmp_path)  # a socket's path must be short: bind it by a relative one
    listener = socket.socket(socket.AF_UNIX)
    listener.bind("odd/socket.png")
    photo = odd / "photo.jpg"
    shutil.copy(DATA / "images" / "photo_640x480.jpg", photo)
    special = {
        "fifo.wav": "not a regular file: a FIFO (named pipe)",
        "zero.jpg": "not a regular file: a character device (a link to '/dev/zero')",
        "random.wav": "not a regular file: a character device (a link to '/dev/urandom')",
        "socket.png": "not a regular file: a socket",
    }
    try:
        done = ingest(*(odd / name for name in special), photo, *lib_args, "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert {Path(f["path"]).name: f["reason"] for f in summary["failed"]} == special
        assert {f["path"] for f in summary["failed"]} == {str(odd / name) for name in special}
        assert summary["added"] == 1  # the photo beside them

        plain = ingest(odd / "fifo.wav", odd / "zero.jpg", *lib_args)
        assert plain.returncode == 0 and "failed 2" in plain.stdout, plain.stdout
        assert f"failed: {odd / 'fifo.wav'}: {special['fifo.wav']}" in plain.stderr, plain.stderr

        walked = ingest(odd, *lib_args, "--json")  # inside a folder they are passed over without a word
        assert json.loads(walked.stdout)["failed"] == []
    finally:
        listener.close()
