"""Shared by the server tests (no tests here): a real library of real media, served by the real server.

``serve_library`` ingests a folder of photos, sounds (one with a distinct stretch for segment
searches), notes and videos with the tiny random-weight model, and serves it with uvicorn on a free
loopback port, on a thread of the test process, so that tests can compare the API's answers with
what :class:`ibsearch.Searcher` returns for the same query on the same library.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import AUDIO, DATA, IMAGES, TEXTS
from test_segments import write_wav

from ibsearch.engine import Library
from ibsearch.search import Searcher, SearchOptions
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server
from ibsearch.terms import Term

VIDEOS = ["landscape_320x240_29.97fps_4.5s_aac.mp4", "short_320x240_25fps_1.2s_aac.mp4"]
RATE = 16000
MOMENT = (12.0, 18.0)  # the stretch of moment.wav that differs from the rest (a segment of its own)
CHROMIUM = "chromium"  # Debian's package (.ci/run installs it), found on PATH
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # The page's microphone and camera buttons get Chromium's test tone and pattern, without asking.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
TIMEOUT = 30_000  # ms for anything a page waits on


def chromium_executable() -> str:
    """Chromium's path. Without one a browser test is skipped, naming the command that installs it;
    under CI (``CI`` set, as .ci/run does), which installs it, a missing Chromium is a failure."""
    found = shutil.which(CHROMIUM)
    if found is None:
        reason = f"no {CHROMIUM} on PATH: install Debian's package with `apt-get install -y chromium`"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason} (CI installs it, so there it must be found)")
        pytest.skip(reason)
    return found


def chromium_fixture() -> Any:
    """A module-scoped fixture: headless Chromium (``chromium = chromium_fixture()`` in a module)."""

    @pytest.fixture(scope="module")
    def chromium() -> Iterator[Any]:
        from playwright.sync_api import sync_playwright

        executable = chromium_executable()  # skips, or fails under CI, where there is none
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
            yield browser
            browser.close()

    return chromium


@contextlib.contextmanager
def signed_in_page(chromium: Any, served: Served, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A page of ``served`` in a ``width`` x ``height`` window, signed in by the link the server
    prints, the target chips drawn; no script error may happen while it is open."""
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served.server.sign_in_url)
    expect(page.locator("#targets .chip")).not_to_have_count(0)
    yield page
    context.close()
    assert errors == []


def moment_samples() -> np.ndarray:
    """24 s of quiet noise with a loud rising chirp between 12 and 18 s."""
    rng = np.random.default_rng(3)
    samples = rng.normal(0, 0.05, 24 * RATE)
    t = np.arange(int((MOMENT[1] - MOMENT[0]) * RATE)) / RATE
    samples[int(MOMENT[0] * RATE) : int(MOMENT[1] * RATE)] = 0.6 * np.sin(2 * np.pi * (300 + 200 * t) * t)
    return samples


def build_media(root: Path) -> Path:
    """A folder of real small media: photos, sounds, notes and videos."""
    for sub in ("photos", "sounds", "notes", "videos"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        shutil.copy(DATA / "images" / name, root / "photos" / name)
    for name in AUDIO:
        shutil.copy(DATA / "audio" / name, root / "sounds" / name)
    write_wav(root / "sounds" / "moment.wav", moment_samples())
    for name, text in TEXTS.items():
        (root / "notes" / name).write_text(text, encoding="utf-8")
    for name in VIDEOS:
        shutil.copy(DATA / "video" / name, root / "videos" / name)
    return root


def moment_clip(folder: Path) -> Path:
    """The distinct stretch of moment.wav cut out as a file of its own (a query for its segment)."""
    start, end = (int(s * RATE) for s in MOMENT)
    return write_wav(folder / "clip.wav", moment_samples()[start:end])


def search_by_moment_clip(page: Any, served: Served, folder: Path) -> Any:
    """Searches the page's sounds for the moment's clip (a file written into ``folder``) by their
    segments and returns the first card, checked to be moment.wav's segment 0:12-0:18."""
    from playwright.sync_api import expect

    page.click("#filters summary")
    page.check("#segments")
    page.locator("#targets .chip[data-modality=vision]").click()
    page.locator("#targets .chip[data-modality=text]").click()
    page.set_input_files("#file", str(moment_clip(folder)))
    expect(page.locator("#status")).to_contain_text("results in")
    hit = page.locator("article.hit").first
    assert hit.get_attribute("data-path") == str(served.media / "sounds" / "moment.wav")
    expect(hit.locator(".span")).to_have_text("0:12–0:18")
    return hit


def ingest(library: Path, card: str, *paths: Path) -> dict:
    with Library.open(library, model=card, device="cpu", create=True) as lib:
        return lib.ingest([str(p) for p in paths], workers=0).to_dict()


@dataclass
class Served:
    """A library served over real HTTP, and what it was made of."""

    server: Server
    library: Path
    media: Path
    card: str
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def searcher_hits(
        self, terms: list[Term], options: SearchOptions
    ) -> list[tuple[str, float, object, object]]:
        """What :class:`Searcher` returns for the same query, as ``(path, score, start, end)``."""
        with Library.open(self.library, model=self.card, device="cpu") as lib:
            hits = Searcher(lib).search(terms, options)
        return [(h.path, round(h.score, 6), h.start, h.end) for h in hits]


def opener(library: Path, card: str):
    return lambda: Library.open(library, model=card, device="cpu")


@contextlib.contextmanager
def serve_library(folder: Path, card: str, config: ServerConfig | None = None) -> Iterator[Served]:
    """Ingest real media into a library under ``folder`` and serve it on a free loopback port."""
    media = build_media(folder / "media")
    library = folder / "lib"
    ingest(library, card, media)
    config = config or ServerConfig(port=0)
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    with Server(opener(library, card), config) as server:
        server.start()
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            yield Served(server, library, media, card, client)


def served_fixture(name: str, **config: Any) -> Any:
    """A module-scoped fixture serving a library of :func:`build_media` with ``ServerConfig(port=0,
    **config)`` (``served = served_fixture("api", token=...)`` in a test module)."""

    @pytest.fixture(scope="module")
    def served(tmp_path_factory: pytest.TempPathFactory, tiny_card: str) -> Iterator[Served]:
        with serve_library(tmp_path_factory.mktemp(name), tiny_card, ServerConfig(port=0, **config)) as s:
            yield s

    return served


def raw_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..`` or ``%2e``)."""
    parts = httpx.URL(url)
    connection = http.client.HTTPConnection(parts.host, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def hits_of(answer: httpx.Response) -> list[tuple[str, float, object, object]]:
    assert answer.status_code == 200, answer.text
    return [(r["path"], r["score"], r["start"], r["end"]) for r in answer.json()["results"]]


def ibsearch(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    """Run the real ``ibsearch`` command line in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "ibsearch", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kwargs,  # type: ignore[arg-type]
    )
