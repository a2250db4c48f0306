"""The page as a person uses it beyond one search, in real headless Chromium against the real server,
at a laptop's width (1366 px) and a phone's (390 px): the viewer (metadata, arrows, Esc, the URL),
the matched moment in the grid (a video segment's own frame, a sound's span marked on its
waveform), the phone layout, more results, and searching by microphone and camera (Chromium's fake
devices)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import TEXTS
from PIL import Image
from playwright.sync_api import Page, Request, expect
from test_more_modalities import write_video
from test_server_helpers import (
    MOMENT,
    Served,
    chromium_fixture,
    moment_clip,
    search_by_moment_clip,
    serve_library,
    signed_in_page,
)

from ibsearch.server.config import ServerConfig

WIDTHS = [1366, 390]
FPS = 8
BLOCK = 3  # seconds of each colour of the long video: every segment (0-6, 3-9, ...) starts on a new one
# Its first half second has a colour of its own, so that whichever segment matches, its first frame
# differs from the frame one second in (what a video's picture was before it showed the moment).
COLOURS = [(230, 230, 230), (220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40), (200, 40, 200)]
LONG_LINE = "=" * 240 + " https://example.org/" + "a-very-long-path/" * 12
# Where the screenshots for the README go: a temporary folder, or docs/ when this names it.
SCREENSHOTS_ENV = "IBSEARCH_SCREENSHOTS"
chromium = chromium_fixture()


def write_long_video(path: Path) -> Path:
    """15 s of video whose colour changes after half a second and then every :data:`BLOCK` seconds
    (a white square moving on it)."""
    first, block = FPS // 2, BLOCK * FPS
    return write_video(path, 15, FPS, colour=lambda i: COLOURS[1 + i // block] if i >= first else COLOURS[0])


def frame_at(path: Path, seconds: float) -> np.ndarray:
    """The frame shown at ``seconds`` into ``path``, decoded here (not by the server)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames[int(round(seconds * FPS))]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_card: str):
    folder = tmp_path_factory.mktemp("viewer")
    (folder / "media" / "videos").mkdir(parents=True)
    (folder / "media" / "notes").mkdir(parents=True)
    write_long_video(folder / "media" / "videos" / "long.mp4")
    (folder / "media" / "notes" / "wide.txt").write_text(f"A wide note.\n{LONG_LINE}\n", encoding="utf-8")
    with serve_library(folder, tiny_card, ServerConfig(port=0, token="viewer-token-0123456789")) as s:
        yield s


@pytest.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def page(request: pytest.FixtureRequest, chromium, served: Served):
    with signed_in_page(chromium, served, width=request.param) as page:
        yield page


def api_hits(served: Served, body: dict) -> list[dict]:
    answer = served.http.post("/api/search", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def cards(page: Page) -> list[str]:
    return page.locator("article.hit").evaluate_all("cards => cards.map(c => c.dataset.path)")


def search_for(page: Page, text: str) -> None:
    page.fill("#q", text)
    page.press("#q", "Enter")
    expect(page.locator("#status")).to_contain_text(re.compile(r"results? in"))


def picture(served: Served, url: str) -> np.ndarray:
    answer = served.http.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg", answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"), dtype=np.float64)


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot for the README (palette PNG, so that it stays small)."""
    path = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path) / name
    page.mouse.move(0, 0)
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_viewer_opens_shows_metadata_moves_with_arrows_closes_with_esc_and_survives_a_reload(
    page: Page, served: Served, tmp_path: Path
):
    search_for(page, "a photo of a dog")
    width = page.viewport_size["width"]
    page.wait_for_function(  # the pictures in view (the others load lazily, as they scroll into it)
        "() => [...document.querySelectorAll('article img')].every(i => i.complete || i.y > innerHeight)"
    )
    screenshot(page, tmp_path, f"page-{width}.png")
    order = cards(page)
    photo = page.locator("article.kind-image").first
    path = photo.get_attribute("data-path")
    position = order.index(path)
    photo.locator(".open").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer).to_have_attribute("data-path", path)
    item = served.http.get("/api/items", params={"path": path}).json()
    meta = viewer.locator(".meta")
    expect(meta).to_contain_text(f"{item['metadata']['width']} × {item['metadata']['height']}")
    expect(meta).to_contain_text(path)
    expect(meta).to_contain_text(re.compile(r"\d+(\.\d)? (KB|MB|bytes)"))
    expect(viewer.locator("a.file")).to_have_attribute("href", item["media"])
    expect(viewer.locator(".stage img")).to_have_attribute("src", item["media"])
    screenshot(page, tmp_path, f"viewer-{width}.png")
    page.keyboard.press("ArrowRight")
    expect(viewer).to_have_attribute("data-path", order[position + 1])
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(viewer).to_have_attribute("data-path", order[position - 1] if position else order[0])
    shown_path = viewer.get_attribute("data-path")
    assert "view=" in page.url
    page.reload()
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#viewer")).to_have_attribute("data-path", shown_path)
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()
    page.wait_for_function("() => !location.search.includes('view=')")
    page.locator("article.hit .open").first.focus()
    page.keyboard.press("Enter")  # a keyboard alone opens it too
    expect(page.locator("#viewer")).to_have_attribute("data-path", order[0])


def test_at_phone_width_the_search_box_is_wide_and_every_control_reachable(page: Page):
    width = page.viewport_size["width"]
    box = page.locator("#q").bounding_box()
    assert box is not None and box["width"] >= (0.6 if width < 600 else 0.4) * width
    for control in ("#go", "#add", "#pick", "#mic", "#camera"):
        edges = page.locator(control).bounding_box()
        assert edges is not None and edges["x"] >= 0 and edges["x"] + edges["width"] <= width, control
    search_for(page, "a dog")
    columns = page.locator("#results").evaluate(
        "g => getComputedStyle(g).gridTemplateColumns.split(' ').length"
    )
    assert columns <= (2 if width < 500 else 8)


def test_a_video_segment_hit_shows_the_frame_of_its_matched_moment(page: Page, served: Served):
    video = served.media / "videos" / "long.mp4"
    page.goto(f"{served.url}/?q=a+colour&segments=1&target=vision&prefix={video}&k=10")
    expect(page.locator("#status")).to_contain_text(re.compile(r"results? in"))
    hits = api_hits(
        served, {"text": ["a colour"], "segments": True, "target": ["vision"], "path_prefix": str(video)}
    )
    assert hits and all(hit["path"] == str(video) for hit in hits)
    thumbnails = page.locator("article.kind-video .visual img").evaluate_all("i => i.map(x => x.src)")
    assert len(thumbnails) == len(hits)
    for hit, url in zip(hits, thumbnails, strict=True):
        shown = picture(served, url)
        expected = np.asarray(Image.fromarray(frame_at(video, hit["start"])).resize(shown.shape[1::-1]))
        assert np.abs(shown - expected).mean() < 20, (hit["start"], url)
        one_second_in = np.asarray(Image.fromarray(frame_at(video, 1.0)).resize(shown.shape[1::-1]))
        assert np.abs(shown - one_second_in).mean() > 40


def test_a_sound_segment_hit_has_its_span_marked_on_its_waveform_and_its_duration(
    page: Page, served: Served, tmp_path: Path
):
    hit = search_by_moment_clip(page, served, tmp_path)
    expect(hit.locator(".facts")).to_contain_text("0:24")  # its length, before the player loads it
    wave = picture(served, hit.locator(".visual img").get_attribute("src"))
    accent = np.abs(wave - np.array([217, 96, 48])).sum(axis=2) < 60
    marked = accent.any(axis=0)
    columns = np.arange(wave.shape[1]) / wave.shape[1] * 24.0
    inside = (columns > MOMENT[0] + 0.3) & (columns < MOMENT[1] - 0.3)
    outside = (columns < MOMENT[0] - 0.3) | (columns > MOMENT[1] + 0.3)
    assert marked[inside].mean() > 0.9 and marked[outside].mean() < 0.05
    tenths = page.evaluate("async () => (await import('/static/view.js')).spanText(0.34, 0.81)")
    assert tenths == "0:00.3–0:00.8"


def test_more_results_brings_the_next_hits_without_repeating(page: Page, served: Served):
    page.goto(f"{served.url}/?q=a+dog&k=3")
    expect(page.locator("#status")).to_contain_text("3 results in")
    page.locator("#more").click()
    expect(page.locator("article.hit")).to_have_count(6)
    paths = [hit["path"] for hit in api_hits(served, {"text": ["a dog"], "k": 6})]
    assert cards(page) == paths and len(set(paths)) == 6
    page.goto(f"{served.url}/?q=a+dog&k=1")
    expect(page.locator("#status")).to_contain_text(re.compile(r"^1 result in"))
    top = api_hits(served, {"text": ["a dog"], "k": 1})[0]
    headline = page.locator("article.hit .score").first.inner_text()  # the calibrated relevance, read
    level = f"{top['level']} match · " if top["level"] else ""
    assert headline == f"{level}{round(top['relevance'] * 100)}%"


def test_microphone_and_camera_searches_return_hits_and_page_without_uploading_again(page: Page):
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/api/search") else None)
    page.click("#mic")
    expect(page.locator("#terms .term[data-kind=audio]")).to_contain_text("microphone")
    expect(page.locator("#status")).to_contain_text("results in")
    assert page.locator("article.hit").count() > 0
    page.locator("#terms .remove").click()
    page.click("#filters summary")
    page.fill("#k", "2")
    page.click("#camera")
    expect(page.locator("#terms .term[data-kind=image]")).to_contain_text("camera")
    expect(page.locator("#status")).to_contain_text("2 results in")
    page.locator("#more").click()
    expect(page.locator("article.hit")).to_have_count(4)
    last = sent[-1]
    assert last.headers["content-type"].startswith("application/json")
    assert last.post_data_json["uploads_of"] and last.post_data_json["offset"] == 2


def test_long_lines_of_a_note_wrap_and_relevance_reads_as_a_level(page: Page, served: Served):
    page.goto(f"{served.url}/?q=a+wide+note&target=text&k=24")
    expect(page.locator("#status")).to_contain_text("results in")
    note = page.locator(f"article.hit[data-path='{served.media / 'notes' / 'wide.txt'}'] .note")
    expect(note).to_contain_text("=====")
    assert note.evaluate("n => n.scrollWidth <= n.clientWidth + 1")
    assert len(TEXTS) + 1 == page.locator("article.kind-text").count()
    drawn = page.evaluate(
        """async () => {
            const view = await import('/static/view.js');
            const hit = { id: 1, path: '/a/b.jpg', kind: 'image', modality: 'vision', score: -0.036,
              metadata: {}, start: null, end: null, thumbnail: '', media: '', relevance: 0.82,
              level: 'high', similar: 2 };
            return view.card(hit, 0, {}).querySelector('.info').innerText;
        }"""
    )
    assert "high" in drawn and "and 2 similar" in drawn and "-0.036" not in drawn
    ranked = page.evaluate(  # without a relevance (a server before it): the rank alone
        """async () => (await import('/static/view.js'))
            .relevance({ score: -0.036, relevance: null }, 4).textContent"""
    )
    assert ranked == "#5"


def test_a_search_by_upload_pages_on_by_its_search_id_and_a_moment_is_asked_only_of_media(
    served: Served, tmp_path: Path
):
    clip = moment_clip(tmp_path)

    def upload(offset: int) -> dict:
        answer = served.http.post("/api/search", files={"audio": (clip.name, clip.read_bytes())},
                                  data={"k": "3", "offset": str(offset)})  # fmt: skip
        assert answer.status_code == 200, answer.text
        return answer.json()

    first = upload(0)
    assert first["search_id"]
    again = served.http.post("/api/search", json={"uploads_of": first["search_id"], "k": 3, "offset": 3})
    assert again.status_code == 200, again.text
    assert again.json()["results"] == upload(3)["results"]  # the same page, with nothing sent again
    gone = served.http.post("/api/search", json={"uploads_of": "no-such-search", "k": 3})
    assert gone.status_code == 400 and "search with the files again" in gone.json()["error"]
    photo = served.http.get("/api/items", params={"path": str(served.media / "photos" / "photo_640x480.jpg")})
    refused = served.http.get(f"{photo.json()['thumbnail']}?start=1&end=2")
    assert refused.status_code == 400 and "only for a sound or a video" in refused.json()["error"]
