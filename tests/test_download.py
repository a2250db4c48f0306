"""Checkpoint downloads against a real HTTP server on 127.0.0.1 (see tests/local_http.py)."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
from pathlib import Path

import pytest
from local_http import FileServer, start

from ibsearch.encoder import get_config
from ibsearch.encoder.weights.cache import ENV_CACHE, ENV_CHECKPOINT, cache_dir
from ibsearch.encoder.weights.cards import ModelCard
from ibsearch.encoder.weights.checkpoint import checkpoint_path
from ibsearch.encoder.weights.download import download, recorded_sha256, sidecar_path
from ibsearch.errors import DownloadError

DATA = random.Random(0).randbytes(2_500_000)
DATA_SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def server():
    state = FileServer(files={"weights.pth": DATA})
    httpd = start(state)
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_a_complete_download_lands_in_the_cache_with_its_sha256_recorded(server, cache):
    dest = cache_dir() / "checkpoints" / "weights.pth"

    got = download(server.url("weights.pth"), dest, progress=False)

    assert got == dest and dest.read_bytes() == DATA
    assert recorded_sha256(dest) == DATA_SHA
    assert sidecar_path(dest).read_text() == f"{DATA_SHA}  weights.pth\n"  # sha256sum -c format
    assert not dest.with_name("weights.pth.part").exists()
    assert [(r.range, r.status) for r in server.log] == [(None, 200)]


def test_a_second_download_call_reuses_the_verified_file_without_a_request(server, cache):
    dest = cache / "w.pth"
    download(server.url("weights.pth"), dest, progress=False)
    download(server.url("weights.pth"), dest, sha256=DATA_SHA, progress=False)
    assert len(server.log) == 1


def test_an_interrupted_download_resumes_with_a_range_request_for_only_the_rest(server, cache):
    dest = cache / "w.pth"
    server.cut_after["weights.pth"] = 1_000_000

    with pytest.raises(DownloadError, match="run the command again to resume") as info:
        download(server.url("weights.pth"), dest, progress=False, retries=0)
    part = cache / "w.pth.part"
    assert str(part) in str(info.value)
    assert part.stat().st_size == 1_000_000 and not dest.exists()

    download(server.url("weights.pth"), dest, sha256=DATA_SHA, progress=False)

    assert dest.read_bytes() == DATA and not part.exists()
    first, second = server.log
    assert (first.range, first.body_bytes) == (None, 1_000_000)
    assert (second.range, second.status, second.body_bytes) == ("bytes=1000000-", 206, len(DATA) - 1_000_000)
    assert recorded_sha256(dest) == DATA_SHA  # the digest covers the resumed prefix too


def test_an_interruption_is_resumed_within_the_same_call(server, cache):
    server.cut_after["weights.pth"] = 700_000
    dest = download(server.url("weights.pth"), cache / "w.pth", sha256=DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert [r.range for r in server.log] == [None, "bytes=700000-"]


def test_a_server_that_ignores_range_makes_the_download_restart_cleanly(server, cache):
    cache.mkdir()
    (cache / "w.pth.part").write_bytes(b"stale bytes from another file" * 1000)
    server.ignore_range = True

    dest = download(server.url("weights.pth"), cache / "w.pth", progress=False)

    assert dest.read_bytes() == DATA and recorded_sha256(dest) == DATA_SHA
    assert [(r.range is not None, r.status) for r in server.log] == [(True, 200)]


def test_a_part_file_that_is_already_whole_is_finished_after_a_416_reply(server, cache):
    cache.mkdir()
    (cache / "w.pth.part").write_bytes(DATA)
    dest = download(server.url("weights.pth"), cache / "w.pth", sha256=DATA_SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert [r.status for r in server.log] == [416]


def test_a_part_file_longer_than_the_remote_file_is_discarded_after_a_416_reply(server, cache):
    cache.mkdir()
    (cache / "w.pth.part").write_bytes(DATA + b"extra")
    dest = download(server.url("weights.pth"), cache / "w.pth", progress=False)
    assert dest.read_bytes() == DATA
    assert [r.status for r in server.log] == [416, 200]


def test_a_checksum_mismatch_raises_and_no_file_is_taken_as_complete(server, cache):
    dest = cache / "w.pth"
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        download(server.url("weights.pth"), dest, sha256="0" * 64, progress=False)
    message = str(info.value)
    assert DATA_SHA in message and "0" * 64 in message and "run the command again" in message
    assert not dest.exists() and not (cache / "w.pth.part").exists()
    assert (cache / "w.pth.corrupt").read_bytes() == DATA
    assert recorded_sha256(dest) is None


def test_a_file_changed_after_download_is_caught_on_later_use(server, cache):
    dest = download(server.url("weights.pth"), cache / "w.pth", progress=False)
    damaged = bytearray(DATA)
    damaged[1234] ^= 0xFF
    dest.write_bytes(bytes(damaged))

    with pytest.raises(DownloadError, match="changed since it was downloaded"):
        download(server.url("weights.pth"), dest, progress=False)
    assert not dest.exists() and (cache / "w.pth.corrupt").exists()

    download(server.url("weights.pth"), dest, progress=False)  # the next run fetches it afresh
    assert dest.read_bytes() == DATA


def test_offline_gives_one_clear_error_naming_where_to_put_the_file(cache):
    with socket.socket() as sock:  # a port that was just free: connecting to it is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/imagebind_huge.pth"
    dest = cache / "checkpoints" / "imagebind_huge.pth"

    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, dest, progress=False, timeout=5)

    message = str(info.value)
    assert time.monotonic() - started < 3  # no retry loop on a connection that never started
    assert url in message and "connection refused" in message
    assert str(dest) in message and ENV_CHECKPOINT in message and "--checkpoint" in message
    assert not dest.exists()


def test_an_http_error_names_the_status_and_the_url(server, cache):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(server.url("missing.pth"), cache / "missing.pth", progress=False)
    assert server.url("missing.pth") in str(info.value)


def test_a_progress_callback_sees_the_bytes_arrive(server, cache):
    seen: list[tuple[int, int | None]] = []
    download(server.url("weights.pth"), cache / "w.pth", progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, len(DATA)) and seen[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_no_progress_bar_is_drawn_when_stderr_is_not_a_terminal(server, cache, capsys):
    download(server.url("weights.pth"), cache / "w.pth", progress=True)
    assert capsys.readouterr().err == ""


def test_a_cache_folder_that_cannot_be_written_is_a_download_error_saying_what_to_do(server, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DownloadError, match=f"cannot write .* set {ENV_CACHE}"):
        download(server.url("weights.pth"), blocker / "cache" / "w.pth", progress=False)


def test_the_cache_folder_follows_IBSEARCH_CACHE_and_defaults_to_the_user_cache(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(ENV_CACHE)
    assert cache_dir() == Path(platformdirs.user_cache_dir("ibsearch")).absolute()


def test_fetching_a_card_checkpoint_writes_only_into_the_cache_never_the_working_directory(
    server, cache, tmp_path, monkeypatch
):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    card = ModelCard("served", get_config("imagebind_tiny"), server.url("weights.pth"), DATA_SHA)

    path = checkpoint_path(card, progress=False)

    assert path == cache / "checkpoints" / "weights.pth" and path.read_bytes() == DATA
    assert os.listdir(workdir) == []
