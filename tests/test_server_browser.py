"""The search page in a real headless Chromium (Debian's package, driven by Python playwright) against
the real server: typing, uploading, "more like this", weighted terms, targets, playing a segment,
the query in the URL, and the messages people see."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from conftest import DATA
from playwright.sync_api import Page, expect
from test_server_helpers import (
    MOMENT,
    TIMEOUT,
    Served,
    chromium_fixture,
    opener,
    search_by_moment_clip,
    served_fixture,
    signed_in_page,
)

from ibsearch.engine import Library
from ibsearch.modality import MODALITIES, TEXT
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server
from ibsearch.terms import inputs_on

TOKEN = "browser-token-0123456789"
PHOTO = DATA / "images" / "photo_640x480.jpg"
# Where the results page's screenshot goes: a temporary folder, or the path in $IBSEARCH_SCREENSHOT (the
# README's screenshots come from test_server_browser_viewer.py, with $IBSEARCH_SCREENSHOTS=docs).
SCREENSHOT_ENV = "IBSEARCH_SCREENSHOT"


served = served_fixture("browser", token=TOKEN, max_upload_mb=1)
chromium = chromium_fixture()


@pytest.fixture
def page(chromium, served: Served):
    with signed_in_page(chromium, served) as page:
        yield page


def api_paths(served: Served, body: dict) -> list[str]:
    answer = served.http.post("/api/search", json=body)
    assert answer.status_code == 200, answer.text
    return [r["path"] for r in answer.json()["results"]]


def shown(page: Page) -> list[str]:
    return page.locator("article.hit").evaluate_all("cards => cards.map(c => c.dataset.path)")


def images(page: Page) -> list[str]:
    """The image hits shown, best first (modalities interleave by calibrated relevance: with a few
    notes and sounds, the best of another modality may come before an image's own copy)."""
    return page.locator("article.kind-image").evaluate_all("cards => cards.map(c => c.dataset.path)")


def search_for(page: Page, text: str) -> None:
    page.fill("#q", text)
    page.press("#q", "Enter")
    expect(page.locator("#status")).to_contain_text("results in")


def test_typing_a_query_shows_its_results_with_thumbnails(page: Page, served: Served, tmp_path: Path):
    assert page.evaluate("document.activeElement.id") == "q"
    search_for(page, "a dog barking")
    assert shown(page) == api_paths(served, {"text": ["a dog barking"], "k": 24})
    assert "q=a+dog+barking" in page.url
    pictures = page.locator("article.kind-image .visual img, article.kind-video .visual img")
    expect(pictures.first).to_be_visible()
    loaded = (
        "() => [...document.querySelectorAll('article .visual img')].every(i => i.complete && i.naturalWidth)"
    )
    page.wait_for_function(loaded)
    assert pictures.count() >= 4
    expect(page.locator("article.kind-text .note").first).to_contain_text("A dog barking in the park.")
    expect(page.locator("article.kind-audio audio").first).to_be_attached()
    page.mouse.move(0, 0)
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "results.png")
    page.screenshot(path=str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_uploaded_image_shows_itself_first(page: Page, served: Served):
    page.set_input_files("#file", str(PHOTO))
    expect(page.locator("#status")).to_contain_text("results in")
    assert images(page)[0] == str(served.media / "photos" / PHOTO.name)
    expect(page.locator("#terms .term[data-kind=image]")).to_contain_text(PHOTO.name)


def test_a_dropped_image_shows_itself_first(page: Page, served: Served):
    picture = DATA / "images" / "palette_256x192.gif"
    dropped = page.evaluate_handle(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/gif" }));
            return transfer;
        }""",
        [base64.b64encode(picture.read_bytes()).decode(), picture.name],
    )
    page.dispatch_event("body", "dragenter", {"dataTransfer": dropped})
    expect(page.locator("#drop")).to_be_visible()
    page.dispatch_event("body", "drop", {"dataTransfer": dropped})
    expect(page.locator("#drop")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("results in")
    assert images(page)[0] == str(served.media / "photos" / picture.name)


def test_more_like_this_searches_with_the_hit_and_leaves_it_out(page: Page, served: Served):
    search_for(page, "a dog barking")
    first = page.locator("article.hit").first
    liked_id, liked_path = first.get_attribute("data-id"), first.get_attribute("data-path")
    first.get_by_role("button", name="More like this").click()
    expect(page.locator("#terms .term[data-kind=like]")).to_contain_text(os.path.basename(liked_path))
    page.wait_for_function(f"() => location.search.includes('like=1%3D{liked_id}')")
    expect(page.locator("#status")).to_contain_text("results in")
    assert shown(page) == api_paths(served, {"like": [int(liked_id)], "k": 24})
    assert liked_path not in shown(page)


def test_weighted_terms_and_target_chips_shape_the_query(page: Page, served: Served):
    page.fill("#q", "a park")
    page.click("#add")
    slider = page.locator("#terms .term[data-kind=text] input[type=range]")
    slider.focus()
    for _ in range(8):  # 1.0 down to -1.0 in steps of 0.25
        page.keyboard.press("ArrowLeft")
    expect(page.locator("#terms .term output")).to_have_text("-1.00")
    search_for(page, "a dog")
    assert shown(page) == api_paths(served, {"text": ["a dog", "-1=a park"], "k": 24})
    page.locator("#targets .chip[data-modality=audio]").click()
    page.wait_for_function("() => location.search.includes('target=')")
    expect(page.locator("#status")).to_contain_text("results in")
    assert not page.locator("article.kind-audio").count()
    targets = page.locator("#targets .chip[aria-pressed=true]").evaluate_all(
        "c => c.map(x => x.dataset.modality)"
    )
    assert shown(page) == api_paths(served, {"text": ["a dog", "-1=a park"], "target": targets, "k": 24})


def test_the_page_offers_an_upload_for_every_modality_the_api_takes(
    page: Page, served: Served, tmp_path: Path
):
    uploads = [row.name for row in inputs_on("upload")]
    offered = page.locator("#as option").evaluate_all("options => options.map(o => o.value).filter(Boolean)")
    assert (
        offered
        == uploads
        == [i["name"] for i in served.http.get("/api/inputs").json() if i["given"] == "file"]
    )
    assert {row.kind for row in inputs_on("upload")} | {TEXT} == set(MODALITIES)
    from test_more_modalities import write_sensor_files

    sensors = write_sensor_files(tmp_path / "sensors")
    for name in ("depth", "thermal", "imu"):
        query = sensors[name][0]
        page.select_option("#as", name)
        page.set_input_files("#file", str(query))
        expect(page.locator(f"#terms .term[data-kind={name}]")).to_contain_text(query.name)
        expect(page.locator("#status")).to_contain_text("results in")
        answer = served.http.post(
            "/api/search", files={name: (query.name, query.read_bytes())}, data={"k": "24"}
        )
        assert answer.status_code == 200, answer.text
        assert shown(page) == [r["path"] for r in answer.json()["results"]] and shown(page)
        page.locator("#terms .remove").click()
        expect(page.locator("#terms .term")).to_have_count(0)


def test_an_audio_hit_with_a_segment_plays_from_its_start(page: Page, served: Served, tmp_path: Path):
    hit = search_by_moment_clip(page, served, tmp_path)
    audio = hit.locator("audio")
    audio.scroll_into_view_if_needed()
    page.wait_for_function("a => a.readyState >= 1", arg=audio.element_handle())
    assert audio.evaluate("a => a.currentTime") == pytest.approx(MOMENT[0], abs=0.05)
    box = audio.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 20, box["y"] + box["height"] / 2)  # the player's own play button
    page.wait_for_function("a => !a.paused && a.currentTime > 12.2", arg=audio.element_handle())
    assert MOMENT[0] < audio.evaluate("a => a.currentTime") < MOMENT[1]


def test_a_passage_of_a_note_is_shown_highlighted_with_its_span(page: Page, served: Served):
    page.click("#filters summary")
    page.check("#segments")
    search_for(page, "milk, eggs, bread")
    hit = page.locator("article.hit").first
    assert hit.get_attribute("data-path") == str(served.media / "notes" / "notes.md")
    expect(hit.locator(".passage mark")).to_have_text("milk, eggs, bread")
    expect(hit.locator(".passage .where")).to_have_text("characters 16–33")


def test_the_query_lives_in_the_url_for_reload_and_back(page: Page, served: Served):
    search_for(page, "first query")
    first = shown(page)
    search_for(page, "second query")
    page.reload()
    expect(page.locator("#q")).to_have_value("second query")
    expect(page.locator("#status")).to_contain_text("results in")
    assert shown(page) == api_paths(served, {"text": ["second query"], "k": 24})
    page.go_back()
    expect(page.locator("#q")).to_have_value("first query")
    page.wait_for_function("() => document.querySelectorAll('article.hit').length > 0")
    expect(page.locator("#status")).to_contain_text("results in")
    assert shown(page) == first
    page.locator("body").click(position={"x": 5, "y": 880})
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"


def test_the_page_says_clearly_what_went_wrong(page: Page, tmp_path: Path):
    page.click("#filters summary")
    page.fill("#prefix", "/nowhere/at/all")
    search_for_nothing = page.locator("#status")
    page.fill("#q", "anything")
    page.press("#q", "Enter")
    expect(search_for_nothing).to_contain_text("No results")
    page.fill("#prefix", "")
    big = tmp_path / "big.jpg"
    big.write_bytes(PHOTO.read_bytes() + os.urandom(1_200_000))
    page.set_input_files("#file", str(big))
    expect(page.locator("#status.error")).to_contain_text("too large for this server")
    expect(page.locator("#status.error")).to_contain_text("1 MB")
    page.locator("#terms .remove").click()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a picture")
    page.set_input_files("#file", str(broken))
    expect(page.locator("#status.error")).to_contain_text("broken.jpg (uploaded as image)")


def test_an_empty_library_says_so(chromium, tmp_path: Path, tiny_card: str):
    Library.open(tmp_path / "empty", model=tiny_card, device="cpu", create=True).close()
    with Server(opener(tmp_path / "empty", tiny_card), ServerConfig(port=0)).start() as server:
        page = chromium.new_page()
        page.goto(server.url + "/")
        expect(page.locator("#status")).to_contain_text("This library is empty", timeout=TIMEOUT)
        page.close()
