"""The server under load and at the edges of HTTP, against a real uvicorn on loopback: what one
request may make it decode, heavy uploads beside light searches, other loopback addresses, clients
that go away mid-upload, HEAD, Range headers, and errors always as JSON."""

from __future__ import annotations

import io
import json
import logging
import math
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
from conftest import DATA
from PIL import Image
from test_server_helpers import Served, opener, served_fixture

from ibsearch.encoder.preprocess import load
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server

PHOTO = DATA / "images" / "photo_640x480.jpg"
served = served_fixture("http")


def item_id(served: Served, relative: str) -> int:
    return int(served.http.get("/api/items", params={"path": str(served.media / relative)}).json()["id"])


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none of them (no image data):
    refusing it for its size can only have been decided from its header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_search_may_upload_only_so_many_files(served: Served):
    photo = PHOTO.read_bytes()
    limit = served.server.config.max_upload_files
    files = [("image", (f"p{i}.jpg", photo)) for i in range(limit + 1)]
    answer = served.http.post("/api/search", files=files)
    assert answer.status_code == 413, answer.text
    message = answer.json()["error"]
    assert f"at most {limit} files per search" in message and "--max-upload-files" in message
    assert served.http.post("/api/search", files=files[:limit]).status_code == 200


def test_the_pixels_a_search_may_decode_are_counted_from_the_headers_before_decoding(served: Served):
    budget = served.server.config.max_upload_megapixels * 1e6
    side = int((budget * 0.6) ** 0.5)  # one fits, two do not
    files = [
        ("image", ("first.png", png_header(side, side))),
        ("depth", ("huge.png", png_header(side, side))),
    ]
    answer = served.http.post("/api/search", files=files)
    assert answer.status_code == 413, answer.text
    message = answer.json()["error"]
    assert "huge.png (uploaded as depth)" in message and f"{side} x {side}" in message
    assert "--max-upload-megapixels" in message
    alone = served.http.post("/api/search", files=files[:1])  # within the budget: decoded, and damaged
    assert alone.status_code == 422 and "first.png" in alone.json()["error"]
    npy = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (12000, 9000)}
    np.lib.format.write_array_header_1_0(npy, header)
    depth = served.http.post("/api/search", files={"depth": ("far.npy", npy.getvalue())})
    assert depth.status_code == 413 and "far.npy (uploaded as depth) is 12000 x 9000 values" in depth.text
    bomb = served.http.post("/api/search", files={"thermal": ("bomb.png", png_header(20000, 20000))})
    assert bomb.status_code == 413 and "400,000,000 pixels" in bomb.json()["error"]


def heavy_search(url: str, picture: bytes, copies: int) -> tuple[httpx.Request, threading.Event]:
    """A search uploading ``copies`` of ``picture``, and an event set once its whole body is sent
    (from then on the server decodes)."""
    files = [("image", (f"big{i}.jpg", picture)) for i in range(copies)]
    request = httpx.Request("POST", url + "/api/search", files=files)
    body, sent = request.read(), threading.Event()

    def content():
        yield body
        sent.set()

    return httpx.Request("POST", request.url, content=content(), headers=request.headers), sent


def test_a_text_search_is_answered_while_a_heavy_upload_is_being_decoded(served: Served):
    buffer = io.BytesIO()
    Image.new("RGB", (5000, 5000), (120, 30, 200)).save(buffer, "JPEG", quality=50)
    picture = buffer.getvalue()
    started = time.perf_counter()
    load("vision", picture)
    # Enough copies for seconds of decoding on this machine, however fast it is (at most 32 a field).
    copies = min(32, max(2, math.ceil(3.0 / (time.perf_counter() - started))))
    limits = ServerConfig(port=0, max_upload_files=copies, max_upload_megapixels=25 * copies + 1)
    finished: dict[str, tuple[float, int]] = {}
    with Server(opener(served.library, served.card), limits) as server:
        server.start()
        request, sent = heavy_search(server.url, picture, copies)
        with httpx.Client(base_url=server.url, timeout=300) as client:
            assert client.post("/api/search", json={"text": ["warm"]}).status_code == 200

            def heavy() -> None:
                with httpx.Client(timeout=300) as other:
                    answer = other.send(request)
                    finished["heavy"] = (time.monotonic(), answer.status_code)

            worker = threading.Thread(target=heavy)
            worker.start()
            try:
                while not sent.wait(0.1):
                    assert worker.is_alive()
                time.sleep(0.3)
                light = client.post("/api/search", json={"text": ["a purple square"]})
                light_done = time.monotonic()
                assert light.status_code == 200, light.text
                # On a server that decoded on the library's thread, the text waited for all of it.
                assert worker.is_alive(), "the text search was answered only after the heavy upload"
            finally:
                worker.join(300)
    heavy_done, status = finished["heavy"]
    assert status == 200 and heavy_done - light_done > 0.5


def test_a_server_on_another_loopback_address_answers_at_its_own_url(served: Served):
    config = ServerConfig(host="127.0.0.2", port=0)
    with Server(opener(served.library, served.card), config) as server:
        server.start()
        assert server.url.startswith("http://127.0.0.2:") and config.token is None
        info = httpx.get(server.url + "/api/info", timeout=30)
        assert info.status_code == 200, info.text
        page = httpx.get(server.url + "/", timeout=30)
        assert page.status_code == 200
        elsewhere = httpx.get(server.url + "/api/info", headers={"Host": "attacker.example"}, timeout=30)
        assert elsewhere.status_code == 400
    assert "[0:0:0:0:0:0:0:1]" in (ServerConfig(host="0:0:0:0:0:0:0:1").allowed_hosts() or ())


class Lines(logging.Handler):
    """Every log record, as the lines a log file would get (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += self.format(record).splitlines()


def test_a_client_that_goes_away_mid_upload_costs_one_log_line(served: Served):
    lines = Lines()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "")]  # uvicorn's do not reach the root
    for logger in loggers:
        logger.addHandler(lines)
    clients = 3
    try:
        for _ in range(clients):
            with socket.create_connection(
                (served.server.config.host, served.server.port), timeout=10
            ) as sock:
                sock.sendall(
                    b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 900000\r\n\r\n"
                    b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
                    + b"x"
                    * 70000
                )
                time.sleep(0.2)  # the server is reading the upload when the client goes
        deadline = time.monotonic() + 10
        while len(lines.lines) < clients and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything more it had to say
    finally:
        for logger in loggers:
            logger.removeHandler(lines)
    assert len(lines.lines) == clients, "\n".join(lines.lines[:80])
    assert all("went away" in line and "Traceback" not in line for line in lines.lines), lines.lines
    assert served.http.get("/healthz").status_code == 200


def test_head_answers_like_get_without_a_body(served: Served):
    item = f"/api/items/{item_id(served, 'photos/photo_640x480.jpg')}"
    for path in ("/", f"{item}/media", f"{item}/thumbnail"):
        get, head = served.http.get(path), served.http.head(path)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
        for name in ("content-type", "content-length", "etag", "accept-ranges"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)


def test_range_headers_are_read_as_rfc_9110_says(served: Served):
    path = served.media / "photos" / "photo_640x480.jpg"
    media, data = f"/api/items/{item_id(served, 'photos/photo_640x480.jpg')}/media", path.read_bytes()
    for ignored in ("items=0-1", "bytes=5-2", "bytes=x-y", "bytes=", "bytes"):
        whole = served.http.get(media, headers={"Range": ignored})
        assert whole.status_code == 200 and whole.content == data, (ignored, whole.status_code)
    part = served.http.get(media, headers={"Range": "bytes=5-9"})
    assert part.status_code == 206 and part.content == data[5:10]
    beyond = served.http.get(media, headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    assert beyond.headers["content-type"] == "application/json" and "bytes" in beyond.json()["error"]


def test_every_error_the_server_makes_is_json(served: Served):
    media = f"/api/items/{item_id(served, 'photos/photo_640x480.jpg')}/media"
    static = "/static/" + next(
        p.name for p in (Path(__file__).parents[1] / "ibsearch/server/static").glob("*.js")
    )
    answers = [
        served.http.get("/nothing/here"),
        served.http.post(media),
        served.http.delete("/"),
        served.http.get("/static/none.js"),
        served.http.post(static),
        served.http.get(static, headers={"Range": "bytes=999999-"}),
        served.http.get(media, headers={"Range": "bytes=99999999-"}),
        served.http.post("/api/search", content=b"--x--", headers={"Content-Type": "multipart/form-data"}),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.request
        assert answer.headers["content-type"] == "application/json", (answer.request, answer.text)
        assert json.loads(answer.content)["error"], answer.request
