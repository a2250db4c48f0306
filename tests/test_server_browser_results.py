"""What the page shows of the ranking, in real headless Chromium against the real server: the
near-duplicates folded into a hit ("and 1 similar", opened to their paths), several moments of one
long file in its card, and the options row (least relevance, order, dates taken) sent to the API,
kept in the URL and brought back by a reload."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import DATA
from playwright.sync_api import Page, expect
from test_folding import two_events
from test_more_modalities import write_video
from test_segments import write_wav
from test_server_browser_viewer import api_hits, cards
from test_server_helpers import Served, chromium_fixture, serve_library, signed_in_page

from ibsearch.server.config import ServerConfig

chromium = chromium_fixture()
TAKEN = "2022-03-04T05:06:07Z"
LEVELS = {"": {"high", "medium", "low", None}, "low": {"high", "medium", "low"}, "medium": {"high", "medium"}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_card: str):
    folder = tmp_path_factory.mktemp("results")
    for sub in ("sounds", "photos"):
        (folder / "media" / sub).mkdir(parents=True)
    write_wav(folder / "media" / "sounds" / "two.wav", two_events()[0])  # one chirp at 3-9 s, one at 24-30 s
    # A copy of a photo that build_media adds too: the same picture, so one folds into the other.
    shutil.copy(DATA / "images" / "photo_640x480.jpg", folder / "media" / "photos" / "twin.jpg")
    (folder / "media" / "videos").mkdir()
    write_video(folder / "media" / "videos" / "dated.mp4", 1, metadata={"creation_time": TAKEN})
    with serve_library(folder, tiny_card, ServerConfig(port=0, token="results-token-0123456789")) as s:
        yield s


@pytest.fixture(params=[1366, 390], ids=["1366px", "390px"])
def page(request: pytest.FixtureRequest, chromium, served: Served):
    with signed_in_page(chromium, served, width=request.param) as page:
        yield page


def shown(page: Page) -> None:
    """Waits for the answer (a threshold or dates may leave no hit of the tiny model's library)."""
    expect(page.locator("#status")).to_contain_text(re.compile(r"results? in|No results"))


def test_a_hit_with_folded_near_duplicates_says_so_and_opens_to_their_paths(page: Page, served: Served):
    photos = served.media / "photos"
    hits = api_hits(served, {"text": ["a photo"], "target": ["vision"], "path_prefix": str(photos), "k": 24})
    folded = [hit for hit in hits if hit.get("similar")]
    assert len(folded) == 1 and len(folded[0]["similar"]) == 1
    twins = {folded[0]["path"], folded[0]["similar"][0]["path"]}
    assert twins == {str(photos / "photo_640x480.jpg"), str(photos / "twin.jpg")}
    page.goto(f"{served.url}/?q=a+photo&target=vision&prefix={photos}")
    shown(page)
    card = page.locator(f"article.hit[data-path='{folded[0]['path']}']")
    similar = card.locator("details.similar")
    expect(similar.locator("summary")).to_have_text("and 1 similar")
    expect(similar.locator("a")).to_be_hidden()
    similar.locator("summary").click()
    link = similar.locator("a")
    expect(link).to_have_text(folded[0]["similar"][0]["path"].rsplit("/", 1)[1])
    expect(link).to_have_attribute("title", folded[0]["similar"][0]["path"])
    expect(link).to_have_attribute("href", folded[0]["similar"][0]["media"])
    assert page.locator("article.hit").count() == len(hits)
    card.locator(".open").click()
    expect(page.locator("#viewer .meta")).to_contain_text(folded[0]["similar"][0]["path"])  # its details too


def test_several_moments_of_one_file_show_in_its_card_and_open_in_the_viewer(
    page: Page, served: Served, tmp_path: Path
):
    sound = served.media / "sounds" / "two.wav"
    chirp = write_wav(tmp_path / "chirp.wav", two_events()[1])
    fields = {"segments": "true", "target": "audio", "path_prefix": str(sound), "per_file": "2"}
    answer = served.http.post("/api/search", files={"audio": (chirp.name, chirp.read_bytes())}, data=fields)
    assert answer.status_code == 200, answer.text
    hits = answer.json()["results"]
    assert sorted((hit["start"], hit["end"]) for hit in hits) == [(3.0, 9.0), (24.0, 30.0)]
    page.goto(f"{served.url}/?target=audio&segments=1&prefix={sound}&moments=2")
    page.set_input_files("#file", str(chirp))
    shown(page)
    expect(page.locator("article.hit")).to_have_count(1)
    card = page.locator("article.hit")
    expect(card.locator(".span")).to_have_text(span_text(hits[0]))
    other = card.locator(".moments button")
    expect(other).to_have_count(1)
    expect(other).to_have_text(span_text(hits[1]))
    expect(other.locator("img")).to_have_attribute("src", hits[1]["thumbnail"])
    other.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    key = f"{hits[1]['id']}@{hits[1]['start']:g}"
    page.wait_for_function("key => new URLSearchParams(location.search).get('view') === key", arg=key)
    expect(viewer.locator("audio")).to_have_attribute(
        "src", f"{hits[1]['media']}#t={hits[1]['start']:g},{hits[1]['end']:g}"
    )


def span_text(hit: dict) -> str:
    return f"0:{hit['start']:02.0f}–0:{hit['end']:02.0f}"


@pytest.mark.parametrize("least", ["", "medium"])
def test_the_options_row_sends_relevance_order_and_dates_and_the_url_keeps_them(
    page: Page, served: Served, least: str
):
    page.locator("#options summary").click()
    if least:
        page.select_option("#least", least)
    page.select_option("#order", "date")
    sent = search(page, "a photo")
    assert sent["sort"] == "date" and sent.get("min_relevance") == (least or None)
    levels = page.locator("article.hit").evaluate_all("cards => cards.map(c => c.dataset.level || null)")
    expected = api_hits(served, {k: v for k, v in sent.items() if v is not None})
    assert levels == [hit["level"] for hit in expected] and set(levels) <= LEVELS[least]
    assert levels or least  # the library has hits at all: what a threshold leaves out is seen
    # Dates taken (else modified: these files were written today): all of them in range, none later.
    page.fill("#after", "2020-01-31")
    page.fill("#before", "2031-12-31")
    sent = search(page, "a photo")
    assert sent["after"] == "2020-01-31" and sent["before"] == "2031-12-31T23:59:59"  # the whole last day
    assert cards(page) == [hit["path"] for hit in api_hits(served, sent)] and (cards(page) or least)
    page.fill("#after", "2031-01-01")
    assert search(page, "a photo")["after"] == "2031-01-01"
    expect(page.locator("#status")).to_contain_text("No results")
    page.fill("#after", "2020-01-31")
    search(page, "a photo")
    assert "sort=date" in page.url and "after=2020-01-31" in page.url
    page.reload()
    shown(page)
    expect(page.locator("#options")).to_have_attribute("open", "")
    expect(page.locator("#order")).to_have_value("date")
    expect(page.locator("#least")).to_have_value(least)
    expect(page.locator("#before")).to_have_value("2031-12-31")


def search(page: Page, text: str) -> dict:
    """Searches for ``text`` with Enter and returns the JSON the page sent, once the answer is shown."""
    page.fill("#q", text)
    with page.expect_request(lambda r: r.url.endswith("/api/search")) as request:
        page.press("#q", "Enter")
    shown(page)
    return request.value.post_data_json


def test_the_viewer_shows_when_a_video_was_taken(page: Page, served: Served):
    video = served.media / "videos" / "dated.mp4"
    hit = api_hits(served, {"text": ["a video"], "path_prefix": str(video)})[0]
    assert hit["taken"].startswith("2022-03-04")
    page.goto(f"{served.url}/?q=a+video&prefix={video}")
    shown(page)
    page.locator("article.hit .open").click()
    expect(page.locator("#viewer .meta")).to_contain_text(re.compile(r"Taken.*2022"))
