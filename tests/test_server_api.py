"""The HTTP API against a real library (tiny random-weight model, real media) over real HTTP.

Random weights carry no meaning, so every search is checked against what ``Searcher`` returns for
the same query on the same library: the same files, in the same order, with the same scores.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA, run_json
from test_server_helpers import (
    MOMENT,
    Served,
    hits_of,
    ingest,
    moment_clip,
    opener,
    serve_library,
    served_fixture,
)

from ibsearch.cli import cli
from ibsearch.engine import Library
from ibsearch.modality import FileKind
from ibsearch.search import SearchOptions
from ibsearch.server.client import ServerBackend
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server
from ibsearch.terms import LIKE, Term

PHOTO = DATA / "images" / "photo_640x480.jpg"
SOUND = DATA / "audio" / "mix_16000_mono_s16_5p3s.wav"
VIDEO = DATA / "video" / "landscape_320x240_29.97fps_4.5s_aac.mp4"


served = served_fixture("api")


def item_id(served: Served, path: Path) -> int:
    answer = served.http.get("/api/items", params={"path": str(path)})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["id"])


def test_healthz_answers_ok_and_info_is_what_the_cli_prints(served: Served):
    health = served.http.get("/healthz")
    assert health.json() == {"ok": True} and health.headers["x-ibsearch-instance"] == served.server.instance
    info = served.http.get("/api/info").json()
    assert info == run_json("info", "--library", served.library, "--model", served.card)
    assert info["files"] == 12 and set(info["vectors"]) >= {"vision", "audio", "text", "audio.segments"}


def test_answers_on_a_kept_alive_connection_do_not_wait_for_delayed_acks(served: Served):
    assert served.server.socket.proto == socket.IPPROTO_TCP  # so that asyncio sets TCP_NODELAY
    url = httpx.URL(served.url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=30)
    took = []
    for _ in range(9):
        started = time.perf_counter()
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b'{"ok":true}'
        took.append(time.perf_counter() - started)
    connection.close()
    assert statistics.median(took) < 0.025  # Nagle + delayed ACK would make every answer ~40 ms


def test_a_text_search_returns_what_the_searcher_returns(served: Served):
    answer = served.http.post("/api/search", json={"text": ["a dog barking"], "k": 8})
    expected = served.searcher_hits([Term("text", "a dog barking")], SearchOptions(k=8))
    assert hits_of(answer) == expected and len(expected) == 8
    first = answer.json()["results"][0]
    assert set(first) >= {"id", "path", "score", "modality", "metadata", "start", "end", "thumbnail", "media"}
    assert first["thumbnail"] == f"/api/items/{first['id']}/thumbnail"
    assert first["media"] == f"/api/items/{first['id']}/media"
    assert (
        "encode;dur=" in answer.headers["server-timing"] and "search;dur=" in answer.headers["server-timing"]
    )


def test_the_api_says_which_hits_the_words_found_and_keywords_false_turns_them_off(served: Served):
    answer = served.http.post("/api/search", json={"text": ['"grocery list" -dog'], "k": 8})
    results = answer.json()["results"]
    assert results[0]["path"].endswith("notes.md") and results[0]["sources"] == ["meaning", "keywords"]
    assert all(r["sources"] == ["meaning"] for r in results[1:])
    assert not any(r["path"].endswith("dog.txt") for r in results)  # -dog: its note left out
    plain = served.http.post("/api/search", json={"text": ["grocery list"], "k": 8, "keywords": False})
    expected = served.searcher_hits([Term("text", "grocery list")], SearchOptions(k=8, keywords=False))
    assert hits_of(plain) == expected and {r["sources"][0] for r in plain.json()["results"]} == {"meaning"}


def test_an_uploaded_image_finds_itself_first(served: Served):
    with open(PHOTO, "rb") as fh:
        answer = served.http.post(
            "/api/search", files={"image": ("query.jpg", fh)}, data={"target": "vision"}
        )
    expected = served.searcher_hits([Term("vision", str(PHOTO))], SearchOptions(targets=["vision"]))
    assert hits_of(answer) == expected
    assert expected[0][0] == str(served.media / "photos" / PHOTO.name) and expected[0][1] > 0.999


def test_an_uploaded_sound_and_an_uploaded_video_search_like_the_searcher(served: Served):
    with open(SOUND, "rb") as fh:
        sound = served.http.post("/api/search", files={"audio": ("bark.wav", fh)}, data={"k": "5"})
    assert hits_of(sound) == served.searcher_hits([Term("audio", str(SOUND))], SearchOptions(k=5))
    assert hits_of(sound)[0][0] == str(served.media / "sounds" / SOUND.name)
    with open(VIDEO, "rb") as fh:
        video = served.http.post(
            "/api/search", files={"video": ("clip.mp4", fh)}, data={"target": ["vision"]}
        )
    expected = served.searcher_hits(
        [Term("vision", str(VIDEO), media=FileKind.VIDEO)], SearchOptions(targets=["vision"])
    )
    assert hits_of(video) == expected and expected[0][0] == str(served.media / "videos" / VIDEO.name)


def test_a_weighted_mix_of_an_image_a_sound_and_a_negative_text_term(served: Served):
    with open(PHOTO, "rb") as photo, open(SOUND, "rb") as sound:
        answer = served.http.post(
            "/api/search",
            files=[("image", ("park.jpg", photo)), ("audio", ("bark.wav", sound))],
            data={"audio_weight": "0.5", "text": ["-1=people", "0.25=a park"], "k": "6"},
        )
    terms = [
        Term("text", "people", -1.0),
        Term("text", "a park", 0.25),
        Term("vision", str(PHOTO)),
        Term("audio", str(SOUND), 0.5),
    ]
    assert hits_of(answer) == served.searcher_hits(terms, SearchOptions(k=6))


def test_like_an_item_id_reuses_its_vector_and_leaves_the_item_out(served: Served):
    photo = served.media / "photos" / PHOTO.name
    liked = item_id(served, photo)
    answer = served.http.post("/api/search", json={"like": [liked], "k": 5})
    assert hits_of(answer) == served.searcher_hits([Term(LIKE, str(photo))], SearchOptions(k=5))
    assert liked not in [r["id"] for r in answer.json()["results"]]
    weighted = served.http.post(
        "/api/search", json={"like": [f"0.5={liked}"], "text": ["-0.5=a cat"], "k": 5}
    )
    terms = [Term("text", "a cat", -0.5), Term(LIKE, str(photo), 0.5)]
    assert hits_of(weighted) == served.searcher_hits(terms, SearchOptions(k=5))
    kept = served.http.post("/api/search", json={"like": [liked], "include_like": True, "target": ["vision"]})
    assert kept.json()["results"][0]["id"] == liked


def test_segments_come_with_start_and_end_and_find_the_moment(served: Served, tmp_path: Path):
    clip = moment_clip(tmp_path)
    with open(clip, "rb") as fh:
        answer = served.http.post(
            "/api/search", files={"audio": ("moment.wav", fh)}, data={"segments": "true", "target": "audio"}
        )
    expected = served.searcher_hits(
        [Term("audio", str(clip))], SearchOptions(targets=["audio"], segments=True)
    )
    assert hits_of(answer) == expected
    best = answer.json()["results"][0]
    assert best["path"] == str(served.media / "sounds" / "moment.wav")
    assert (best["start"], best["end"]) == MOMENT and best["score"] > 0.99
    assert all(r["start"] is not None and r["end"] > r["start"] for r in answer.json()["results"])
    assert len({r["id"] for r in answer.json()["results"]}) == len(expected)  # the best segment per file


@pytest.mark.parametrize(
    "filters",
    [
        {"path_prefix": "photos"},
        {"path_glob": "*.wav"},
        {"min_duration": 2.0, "max_duration": 20.0},
        {"path_prefix": "videos", "min_duration": 2.0},
    ],
)
def test_filters_give_what_the_searcher_gives(served: Served, filters: dict):
    if "path_prefix" in filters:
        filters = {**filters, "path_prefix": str(served.media / filters["path_prefix"])}
    answer = served.http.post("/api/search", json={"text": ["something"], "k": 20, **filters})
    expected = served.searcher_hits([Term("text", "something")], SearchOptions(k=20, **filters))
    assert hits_of(answer) == expected and expected
    if "path_prefix" in filters:
        assert all(path.startswith(filters["path_prefix"] + os.sep) for path, *_ in expected)


def test_an_item_has_metadata_a_cached_thumbnail_and_its_file_with_range_support(served: Served):
    for path, kind in [
        (served.media / "photos" / PHOTO.name, "image"),
        (served.media / "videos" / VIDEO.name, "video"),
        (served.media / "sounds" / SOUND.name, "audio"),
        (served.media / "notes" / "dog.txt", "text"),
    ]:
        ident = item_id(served, path)
        item = served.http.get(f"/api/items/{ident}").json()
        assert item["path"] == str(path) and item["kind"] == kind and item["size"] == path.stat().st_size
        thumb = served.http.get(item["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.content[:3] == b"\xff\xd8\xff"
        cached = list((served.library / "thumbnails").glob(f"{ident}-*.jpg"))
        assert len(cached) == 1 and cached[0].read_bytes() == thumb.content
        assert served.http.get(item["thumbnail"]).content == thumb.content
        whole = served.http.get(item["media"])
        assert whole.status_code == 200 and whole.content == path.read_bytes()
        assert whole.headers["accept-ranges"] == "bytes"
        part = served.http.get(item["media"], headers={"Range": "bytes=2-9"})
        assert part.status_code == 206 and part.content == path.read_bytes()[2:10]
        assert part.headers["content-range"] == f"bytes 2-9/{path.stat().st_size}"
    types = {}
    for name in (
        "photos/photo_640x480.jpg",
        f"videos/{VIDEO.name}",
        f"sounds/{SOUND.name}",
        "notes/notes.md",
    ):
        answer = served.http.get(f"/api/items/{item_id(served, served.media / name)}/media")
        types[name.rsplit(".", 1)[1]] = answer.headers["content-type"]
    assert types == {
        "jpg": "image/jpeg",
        "mp4": "video/mp4",
        "wav": "audio/wav",
        "md": "text/plain; charset=utf-8",
    }


def test_pictures_of_items_removed_since_the_last_run_are_deleted_when_the_server_starts(
    tmp_path: Path, tiny_card: str
):
    media, library = tmp_path / "media", tmp_path / "lib"
    media.mkdir()
    for name in ("photo_640x480.jpg", "gray_L_300x400.png"):
        shutil.copy(DATA / "images" / name, media / name)
    ingest(library, tiny_card, media)
    folder = library / "thumbnails"
    with Server(opener(library, tiny_card), ServerConfig(port=0)) as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            hits = http.post("/api/search", json={"text": ["a photo"], "k": 2}).json()["results"]
            pictures = {hit["path"]: http.get(hit["thumbnail"]).content for hit in hits}
    assert len(pictures) == 2 and len(list(folder.glob("*.jpg"))) == 2
    (folder / "notes.txt").write_text("not a picture of ours")
    run_json("remove", str(media / "gray_L_300x400.png"), "--library", library, "--model", tiny_card)
    with Server(opener(library, tiny_card), ServerConfig(port=0)) as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/api/info").status_code == 200  # queued after the pruning
            kept = list(folder.glob("*.jpg"))
            assert [p.read_bytes() for p in kept] == [pictures[str(media / "photo_640x480.jpg")]]
            hit = http.post("/api/search", json={"text": ["a photo"], "k": 1}).json()["results"][0]
            assert http.get(hit["thumbnail"]).content == kept[0].read_bytes()
    assert (folder / "notes.txt").exists()


def test_texts_waiting_together_are_encoded_in_one_batch_and_find_the_same(served: Served):
    service = served.server.service
    gate = threading.Event()
    busy = service.submit(lambda lib: gate.wait(60))  # the library's thread is busy: work queues up
    texts = [f"a waiting query number {i}" for i in range(5)]
    before = service.cache.batches
    futures = [
        service.submit(
            lambda lib, text=text: service.search([Term("text", text)], SearchOptions(k=5)), [text]
        )
        for text in texts
    ]
    gate.set()
    assert busy.result(timeout=60)
    found = [future.result(timeout=300) for future in futures]
    assert service.cache.batches == before + 1
    for text, result in zip(texts, found, strict=True):
        expected = served.searcher_hits([Term("text", text)], SearchOptions(k=5))
        assert [hit.path for _, hit in result.hits] == [path for path, *_ in expected]
        assert [hit.score for _, hit in result.hits] == pytest.approx([e[1] for e in expected], abs=1e-5)


def test_the_openapi_document_describes_typed_requests_and_responses(served: Served):
    spec = served.http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {
        "SearchRequest",
        "SearchForm",
        "SearchResponse",
        "Result",
        "Item",
        "Info",
        "ErrorResponse",
    } <= set(schemas)
    assert set(schemas["Result"]["properties"]) >= {
        "id",
        "path",
        "score",
        "start",
        "end",
        "thumbnail",
        "media",
    }
    body = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert (
        schemas["SearchForm"]["properties"]["image"]["items"]["contentMediaType"]
        == "application/octet-stream"
    )
    assert "/api/items/{item_id}/media" in spec["paths"] and "/healthz" in spec["paths"]


def test_the_store_finds_a_file_by_its_id(served: Served):
    with Library.open(served.library, model=served.card, device="cpu") as lib:
        record = lib.store.files.get(served.media / "photos" / PHOTO.name)
        assert record is not None and lib.store.files.get_by_id(record.id) == record
        assert lib.store.files.get_by_id(10**9) is None


def test_the_command_line_sends_its_query_to_the_running_server(served: Served, tmp_path: Path):
    record = served.library / "server.json"
    assert record.exists() and record.stat().st_mode & 0o777 == 0o600
    args = ["query", "--text", "a dog", "--image", "0.5=" + str(PHOTO), "--k", "4"]
    args += ["--path-prefix", str(served.media), "--library", served.library, "--model", served.card]
    through_server = run_json(*args)
    expected = served.searcher_hits(
        [Term("text", "a dog"), Term("vision", str(PHOTO), 0.5)],
        SearchOptions(k=4, path_prefix=str(served.media)),
    )
    assert [(h["path"], h["score"], None, None) for h in through_server] == expected
    many = ["query", "--text", "x", "--k", "1500", "--library", served.library, "--model", served.card]
    beyond_the_api = run_json(*many)  # k over the API's limit: the command searches in-process
    wrong = CliRunner().invoke(
        cli, ["query", "--text", "x", "--target", "smell", "--library", str(served.library)]
    )
    assert wrong.exit_code == 1 and "unknown modality 'smell'" in wrong.output
    record.rename(tmp_path / "server.json")  # without the record: the same queries in-process
    try:
        assert run_json(*args) == through_server
        assert run_json(*many) == beyond_the_api and len(beyond_the_api) > 12
    finally:
        (tmp_path / "server.json").rename(record)


def test_the_command_line_s_server_backend_takes_terms_and_search_options(served: Served, tmp_path: Path):
    depth = tmp_path / "depth.npy"
    np.save(depth, np.linspace(0.5, 4.5, 240 * 320, dtype=np.float32).reshape(240, 320))
    terms = [Term("text", "a dog"), Term("vision", str(PHOTO), 0.5), Term("depth", str(depth))]
    options = SearchOptions(k=4, path_prefix=str(served.media), targets=["vision", "audio"])
    backend = ServerBackend.find({"library": str(served.library), "model": served.card})
    assert backend is not None
    remote = backend.search(terms, options)
    assert remote is not None
    assert [(h.path, h.score, h.start, h.end) for h in remote] == served.searcher_hits(terms, options)
    elsewhere = ServerBackend.find({"library": str(served.library), "model": "imagebind_huge"})
    assert elsewhere is None  # a server running another model is not asked


def test_a_segments_search_of_notes_returns_the_passage_with_its_span(served: Served):
    answer = served.http.post(
        "/api/search", json={"text": ["milk, eggs, bread"], "target": ["text"], "segments": True}
    )
    best = answer.json()["results"][0]
    assert best["path"] == str(served.media / "notes" / "notes.md") and best["score"] > 0.9999
    assert best["passage"] == {"text": "milk, eggs, bread", "char_start": 16, "char_end": 33, "page": None}
    files = served.http.post("/api/search", json={"text": ["milk, eggs, bread"], "target": ["text"]})
    assert files.status_code == 200 and all(r["passage"] is None for r in files.json()["results"])


def test_a_latin_1_note_is_sent_in_its_charset_and_a_pdf_s_card_shows_its_text(tmp_path: Path, tiny_card):
    from test_documents import pdf_bytes

    from ibsearch.server.thumbnails import card, make_picture

    docs = tmp_path / "media" / "docs"
    docs.mkdir(parents=True)
    note = "Crème brûlée à la française, déjà vu."
    (docs / "recette.txt").write_bytes(note.encode("latin-1"))
    pages = ["Installing the pump and its filters.", "Cleaning the valves every spring."]
    (docs / "manual.pdf").write_bytes(pdf_bytes(pages))
    with serve_library(tmp_path, tiny_card) as served:
        sent = served.http.get(f"/api/items/{item_id(served, docs / 'recette.txt')}/media")
        assert sent.status_code == 200 and sent.content == note.encode("latin-1")
        assert sent.headers["content-type"].startswith("text/plain; charset=") and sent.text == note
        pdf = served.http.get(f"/api/items/{item_id(served, docs / 'manual.pdf')}")
        assert pdf.json()["kind"] == "text"
        with Library.open(served.library, model=tiny_card, device="cpu") as lib:
            record = lib.store.files.get(str(docs / "manual.pdf"))
        assert record is not None
        drawn = make_picture(str(docs / "manual.pdf"), record, "text")
        assert np.array_equal(np.asarray(drawn), np.asarray(card("\n\n".join(pages))))
