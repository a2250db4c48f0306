"""``ibsearch serve`` as people run it, in processes of its own: the URL it prints, a concurrent
``ibsearch ingest`` in another process, the command line's fast path, tokens off loopback, stopping."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import DATA
from test_server_helpers import build_media, ibsearch, ingest

from ibsearch.server.record import RECORD_NAME, ServerRecord

START_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_card: str) -> dict:
    folder = tmp_path_factory.mktemp("live")
    media = build_media(folder / "media")
    ingest(folder / "lib", tiny_card, media)
    args = ["--library", str(folder / "lib"), "--model", tiny_card, "--device", "cpu"]
    return {"folder": folder, "lib": folder / "lib", "media": media, "args": args}


def start_serve(*args: object) -> tuple[subprocess.Popen, dict]:
    """Start ``ibsearch serve ... --json`` and read the line it prints once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibsearch", "serve", "--port", "0", "--json", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    if not ready:
        stop(proc)
        raise AssertionError("ibsearch serve printed nothing")
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line, proc.stderr.read()  # type: ignore[union-attr]
    return proc, json.loads(line)


def stop(proc: subprocess.Popen) -> int:
    """Ctrl-C, as a person would; returns the exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise


def new_pictures(folder: Path, count: int) -> list[Path]:
    """``count`` different small pictures (real images with distinct trailing bytes: distinct hashes)."""
    folder.mkdir(parents=True)
    base = (DATA / "images" / "photo_640x480.jpg").read_bytes()
    paths = []
    for i in range(count):
        path = folder / f"new_{i:03d}.jpg"
        path.write_bytes(base + f"copy {i}".encode())
        paths.append(path)
    return paths


def under(url: str, folder: Path) -> set[str]:
    # Every file, one hit each: the new pictures share one picture's pixels, so they would fold into one.
    asked = {"text": ["x"], "path_prefix": str(folder), "k": 500, "fold": False}
    answer = httpx.post(url + "/api/search", json=asked, timeout=120)
    assert answer.status_code == 200, answer.text
    return {r["path"] for r in answer.json()["results"]}


def test_serve_prints_its_url_leaves_a_private_record_and_stops_cleanly(library):
    proc, info = start_serve(*library["args"])
    try:
        assert info["url"].startswith("http://127.0.0.1:") and info["token"] is None
        assert httpx.get(info["url"] + "/healthz").json() == {"ok": True}
        record = library["lib"] / RECORD_NAME
        assert record.stat().st_mode & 0o777 == 0o600
        saved = ServerRecord.read(library["lib"])
        assert saved is not None and saved.url == info["url"] and saved.pid == proc.pid
        taken = ibsearch("serve", "--port", info["url"].rsplit(":", 1)[1], *library["args"])
        assert taken.returncode == 1 and "cannot listen" in taken.stderr
    finally:
        assert stop(proc) == 0
    assert not (library["lib"] / RECORD_NAME).exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGINT])
def test_a_signal_sent_the_moment_the_address_is_printed_stops_the_server_cleanly(library, sig):
    proc, _ = start_serve(*library["args"])
    proc.send_signal(sig)  # no wait at all: the handlers are in place before the line is printed
    assert proc.wait(timeout=30) == 0
    assert not (library["lib"] / RECORD_NAME).exists()


def test_a_concurrent_ingest_is_seen_without_a_restart_and_searches_during_it_succeed(library):
    new = library["folder"] / "arrivals"
    pictures = new_pictures(new, 70)
    proc, info = start_serve(*library["args"])
    try:
        assert under(info["url"], new) == set()
        ingesting = subprocess.Popen(
            [sys.executable, "-m", "ibsearch", "ingest", str(new), "--batch-size", "4", *library["args"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: list[int] = []
        deadline = time.monotonic() + 300
        while ingesting.poll() is None and time.monotonic() < deadline:
            seen.append(len(under(info["url"], new)))  # every search during the ingest must succeed
        out, err = ingesting.communicate(timeout=300)
        assert ingesting.returncode == 0, err
        assert seen and seen == sorted(seen)  # files only ever arrive
        assert under(info["url"], new) == {str(p) for p in pictures}
        assert httpx.get(info["url"] + "/api/info").json()["files"] == 12 + 70
    finally:
        stop(proc)


def test_the_command_line_uses_a_running_server_without_loading_torch(library):
    args = ["query", "--text", "a dog", "--k", "5", "--json", *library["args"]]
    probe = (
        "import sys, time; from ibsearch.cli import main; start = time.perf_counter()\n"
        f"sys.argv = ['ibsearch', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'faiss': 'faiss' in sys.modules,"
        " 'seconds': time.perf_counter() - start}), file=sys.stderr)\n"
    )

    def run() -> tuple[list, dict]:
        done = subprocess.run([sys.executable, "-c", "import json\n" + probe], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])

    proc, info = start_serve(*library["args"])
    try:
        httpx.post(info["url"] + "/api/search", json={"text": ["warm up"]}, timeout=120)
        warm, how = run()
        assert how["torch"] is False and how["faiss"] is False
    finally:
        stop(proc)
    cold, cold_how = run()
    assert cold_how["torch"] is True
    assert warm == cold and len(warm) == 5
    assert how["seconds"] < cold_how["seconds"]


def test_a_stale_record_is_ignored_and_removed(library):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = ServerRecord("http://127.0.0.1:9", gone.pid, "stale", str(library["lib"].resolve()), "x")
    stale.write(library["lib"])
    done = ibsearch("query", "--text", "a dog", "--k", "2", "--json", *library["args"])
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 2
    assert not (library["lib"] / RECORD_NAME).exists()


def test_off_loopback_the_server_makes_up_a_token_and_refuses_requests_without_it(library):
    proc, info = start_serve("--host", "0.0.0.0", *library["args"])
    try:
        token = info["token"]
        assert token and len(token) >= 32 and info["sign_in"].endswith("/#token=" + token)
        port = info["url"].rsplit(":", 1)[1]
        local = f"http://127.0.0.1:{port}"
        assert httpx.get(local + "/api/info").status_code == 401
        assert httpx.get(local + "/api/info", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert not (library["lib"] / RECORD_NAME).exists()  # the fast path only talks to loopback servers
    finally:
        stop(proc)
    human = subprocess.Popen(
        [sys.executable, "-m", "ibsearch", "serve", "--host", "0.0.0.0", "--port", "0", *library["args"]],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    watchdog = threading.Timer(START_TIMEOUT, human.kill)  # readline below cannot wait for ever
    watchdog.start()
    try:
        lines = [human.stdout.readline() for _ in range(4)]  # type: ignore[union-attr]
        assert lines[0].startswith("Serving library ") and lines[3].startswith("Press Ctrl-C")
        assert lines[1].startswith("Sign in (open this link): http://127.0.0.1:") and "/#token=" in lines[1]
        assert lines[2].startswith("Scripts: send 'Authorization: Bearer ")
    finally:
        watchdog.cancel()
        stop(human)
