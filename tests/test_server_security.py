"""The server's defences, against a real server over real HTTP: files only by id and only if they are
still what was ingested, size-limited uploads kept privately, tokens, Host checks, no CORS."""

from __future__ import annotations

import glob
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import DATA
from test_server_helpers import Served, raw_get, serve_library

from ibsearch.errors import UsageError
from ibsearch.server.config import ServerConfig

TOKEN = "correct-horse-battery-staple-42"
PHOTO = DATA / "images" / "photo_640x480.jpg"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_card: str):
    folder = tmp_path_factory.mktemp("security")
    (folder / "outside").mkdir()
    (folder / "outside" / "secret.txt").write_text("TOP SECRET: not in the library\n")
    config = ServerConfig(port=0, token=TOKEN, max_upload_mb=1)
    with serve_library(folder, tiny_card, config) as served:
        yield served


def item_id(served: Served, relative: str) -> int:
    return int(served.http.get("/api/items", params={"path": str(served.media / relative)}).json()["id"])


def assert_json_error(status: int, body: bytes, *codes: int) -> str:
    import json

    assert status in codes, (status, body[:200])
    message = json.loads(body)["error"]
    assert b"root:" not in body and b"TOP SECRET" not in body
    return message


@pytest.mark.parametrize(
    "attack",
    ["..", "%2e%2e", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/etc/passwd",
     "%2fetc%2fpasswd", "-1", "999999999", "1.5", "0x1", "1%00", "9223372036854775808"],
)  # fmt: skip
def test_no_path_parameter_reaches_the_filesystem(served: Served, attack: str):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for template in ("/api/items/{}", "/api/items/{}/thumbnail", "/api/items/{}/media"):
        status, body = raw_get(served.url, template.format(attack), auth)
        assert_json_error(status, body, 404, 422)
    for path in (
        "/static/../ibsearch/server/app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2f..%2fetc%2fpasswd",
    ):
        status, body = raw_get(served.url, path, auth)
        assert status == 404 and b"import" not in body and b"root:" not in body


def test_an_item_is_looked_up_by_path_in_the_database_only(served: Served):
    assert served.http.get("/api/items", params={"path": "/etc/passwd"}).status_code == 404
    relative = served.http.get("/api/items", params={"path": "../../etc/passwd"})
    assert relative.status_code == 400 and "absolute" in relative.json()["error"]


def test_a_path_of_a_long_non_ascii_name_is_answered_not_dropped(served: Served):
    """4,096 bytes of a non-ASCII name, and 200 KB of one (as a fuzzer sends), percent-encoded: past
    h11's 16 KB the connection was dropped mid-request; now the server answers: no such file, or a path
    longer than any file's."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for chars, code in ((1024, 404), (50_000, 422)):
        name = "/photos/" + "\U000209da" * chars  # 4 bytes each in UTF-8, 12 percent-encoded
        status, body = raw_get(served.url, "/api/items?path=" + quote(name), auth)
        message = assert_json_error(status, body, code)
        assert code == 404 or "at most 4096 characters" in message


def test_a_file_swapped_for_a_link_out_of_the_library_is_not_served(served: Served, tmp_path: Path):
    ident = item_id(served, "photos/gray_L_300x400.png")
    victim = served.media / "photos" / "gray_L_300x400.png"
    saved = tmp_path / "saved.png"
    victim.rename(saved)
    secret = served.library.parent / "outside" / "secret.txt"
    try:
        for target in (secret, Path("/etc/passwd")):
            victim.symlink_to(target)
            for what in ("media", "thumbnail"):
                answer = served.http.get(f"/api/items/{ident}/{what}")
                message = assert_json_error(answer.status_code, answer.content, 409)
                assert "changed on disk" in message
            victim.unlink()
        os.mkfifo(victim)  # a pipe in its place must not hang the server
        answer = served.http.get(f"/api/items/{ident}/media", timeout=10)
        assert_json_error(answer.status_code, answer.content, 409)
        victim.unlink()
    finally:
        saved.rename(victim)
    assert served.http.get(f"/api/items/{ident}/media").content == victim.read_bytes()


def test_an_upload_over_the_limit_is_refused_with_413(served: Served):
    big = b"\xff\xd8" + os.urandom(1_300_000)
    answer = served.http.post("/api/search", files={"image": ("big.jpg", big)})
    assert answer.status_code == 413 and "upload limit of 1 MB" in answer.json()["error"]

    def chunks():  # no Content-Length: the limit holds as the bytes arrive
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"x" * 65536

    streamed = served.http.post(
        "/api/search", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert streamed.status_code == 413 and "upload limit" in streamed.json()["error"]


@pytest.mark.parametrize(
    "field, name, data, words",
    [
        ("image", "cat.jpg", b"GIF89a this is not really a picture", "not a recognised image"),
        ("audio", "bark.wav", os.urandom(3000), "bark.wav"),
        ("video", "clip.mp4", os.urandom(3000), "clip.mp4"),
        ("image", "empty.png", b"", "empty"),
        ("imu", "walk.csv", b"a,b\n1,2\n", "walk.csv"),
    ],
)
def test_an_unreadable_upload_gets_a_4xx_that_names_the_problem(served: Served, field, name, data, words):
    answer = served.http.post("/api/search", files={field: (name, data)})
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]
    assert words in message and "uploaded as " + field in message and "/tmp" not in message


def test_uploads_are_kept_in_a_private_folder_and_deleted_after_the_query(served: Served):
    pattern = os.path.join(tempfile.gettempdir(), "ibsearch-upload-*")
    before = set(glob.glob(pattern))
    with open(PHOTO, "rb") as fh:
        assert served.http.post("/api/search", files={"image": ("p.jpg", fh)}).status_code == 200
    assert served.http.post("/api/search", files={"image": ("p.jpg", b"junk")}).status_code == 422
    assert set(glob.glob(pattern)) == before
    from ibsearch.server.query import Uploads

    with Uploads() as uploads:
        assert os.stat(uploads.folder).st_mode & 0o777 == 0o700
    assert not uploads.folder.exists()


def test_a_request_without_the_token_is_refused_with_401(served: Served):
    for method, path in [("GET", "/api/info"), ("POST", "/api/search"), ("GET", "/api/items/1/media")]:
        bare = httpx.request(method, served.url + path, json={"text": ["x"]})
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        wrong = httpx.request(method, served.url + path, headers={"Authorization": "Bearer nope" + TOKEN})
        assert wrong.status_code == 401
    assert httpx.get(served.url + "/healthz").json() == {"ok": True}
    assert httpx.get(served.url + "/").status_code == 200  # the page itself holds no data


def test_the_sign_in_link_gives_the_page_a_cookie(served: Served):
    with httpx.Client(base_url=served.url) as browser:
        assert browser.post("/-/sign-in", json={"token": "guess-" + TOKEN}).status_code == 401
        assert browser.get("/api/info").status_code == 401
        signed = browser.post("/-/sign-in", json={"token": TOKEN})
        assert signed.status_code == 204
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/api/info").status_code == 200
    assert served.server.sign_in_url == f"{served.url}/#token={TOKEN}"


def test_a_non_loopback_bind_needs_a_token():
    with pytest.raises(UsageError, match="without a token"):
        ServerConfig(host="0.0.0.0")
    with pytest.raises(UsageError, match="without a token"):
        ServerConfig(host="192.168.1.20", port=8000)
    made = ServerConfig.for_host("0.0.0.0", 0)
    assert made.token and len(made.token) >= 32 and made.allowed_hosts() is None
    assert ServerConfig.for_host("127.0.0.1").token is None and ServerConfig(host="::1").loopback
    with pytest.raises(UsageError, match="at least 16"):
        ServerConfig(token="short")


def test_a_loopback_server_checks_the_host_header_and_sends_no_cors_headers(served: Served):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, body = raw_get(served.url, "/api/info", {**auth, "Host": "attacker.example:80"})
    assert status == 400 and b"only requests for" in body
    status, _ = raw_get(served.url, "/api/info", {**auth, "Host": f"localhost:{served.server.port}"})
    assert status == 200
    foreign = {**auth, "Origin": "http://attacker.example"}
    answer = served.http.post("/api/search", json={"text": ["x"]}, headers=foreign)
    assert answer.status_code == 200 and not any(h.startswith("access-control") for h in answer.headers)
    preflight = served.http.options(
        "/api/search", headers={**foreign, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code >= 400 and "access-control-allow-origin" not in preflight.headers
    cross = served.http.get("/api/items/1/thumbnail", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    page = served.http.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_page_s_scripts_are_modules_served_as_javascript_under_its_policy(served: Served):
    page = served.http.get("/")
    modules = re.findall(r'<script type="module" src="(/static/[\w.]+\.js)"', page.text)
    assert modules == ["/static/app.js"] and "<script>" not in page.text  # no inline script: 'self' only
    assert "script-src 'self'" in page.headers["content-security-policy"]
    app = served.http.get("/static/app.js").text
    imported = sorted(set(re.findall(r'from "\./([\w]+\.js)"', app)))
    assert imported == ["api.js", "capture.js", "state.js", "view.js", "viewer.js"]
    for name in ["app.js", *imported]:
        script = served.http.get(f"/static/{name}")
        assert script.status_code == 200, name
        assert script.headers["content-type"].startswith("text/javascript"), name
        assert script.headers["x-content-type-options"] == "nosniff"


def test_files_are_never_served_as_something_a_browser_would_run(served: Served):
    note = served.http.get(f"/api/items/{item_id(served, 'notes/notes.md')}/media")
    assert note.headers["content-type"] == "text/plain; charset=utf-8"
    assert note.headers["content-security-policy"] == "sandbox"
    assert note.headers["content-disposition"].startswith("inline")


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"text": ["x"], "k": 0}, 422, "k"),
        ({"text": ["x"], "k": 10**9}, 422, "k"),
        ({"text": ["x"], "path_prefix": "photos"}, 400, "absolute"),
        ({"text": ["x"], "path_glob": "photos/*.jpg"}, 400, "relative"),
        ({"text": ["x"], "target": ["smell"]}, 400, "unknown modality"),
        ({"like": [123456789]}, 400, "no item 123456789"),
        ({"like": ["0.5=abc"]}, 400, "item id"),
        ({"text": ["0=x"]}, 400, "weight 0"),
        ({}, 400, "at least one input"),
        ({"text": ["x"], "colour": "red"}, 422, "colour"),
        ({"text": ["x", "-1=x"]}, 400, "cancel"),
    ],
)
def test_a_bad_query_gets_a_4xx_json_error_saying_what_was_wrong(served: Served, body, status, words):
    answer = served.http.post("/api/search", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_other_malformed_requests_get_4xx_json_errors(served: Served):
    bad_json = served.http.post(
        "/api/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422 and "invalid request" in bad_json.json()["error"]
    wrong_type = served.http.post("/api/search", content=b"text=x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and "multipart/form-data" in wrong_type.json()["error"]
    unknown = served.http.get("/api/nothing-here")
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not Found"}
    text_as_file = served.http.post("/api/search", data={"image": "not a file"}, files={"audio": ("a", b"")})
    assert text_as_file.status_code == 400 and "must be a file upload" in text_as_file.json()["error"]
