"""Dates (issue 21): the date a photo or video was taken, read at ingest from its EXIF or its container
(else the file's modification time), filtered with ``--after/--before`` and sorted by with ``--sort date``,
through the real CLI, ``Searcher`` and the HTTP API, on real media written by the tests themselves.

The tests run in a fixed local time zone (nine hours east of UTC, a POSIX ``TZ`` that needs no time zone
database), so that "an EXIF date without an offset is local time" is checked against a zone that is not
UTC.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import DATA, run_json
from PIL import Image
from test_more_modalities import write_video
from test_scale import exact_top, open_lib
from test_server_helpers import opener
from test_transfer import mixture, run, write_shard

from ibsearch.dates import sort_hits
from ibsearch.hits import Hit
from ibsearch.index import SearchTuning
from ibsearch.options import RELEVANCE_LEVELS, SearchOptions
from ibsearch.search import Searcher
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server

ZONE = "JST-9"  # local time for these tests: UTC+9
EXIF_IFD, DATE_TAKEN, OFFSET_TAKEN, MAKE, MODEL = 0x8769, 36867, 36881, 271, 272
TEXT = ["--text", "a sunset over the sea", "--no-keywords", "--no-fold"]  # every file, by meaning alone


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def iso(text: str) -> str:
    """How the JSON writes a moment given in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).isoformat()


def write_photo(source: str, path: Path, exif_tags: dict[int, str], in_exif_ifd: dict[int, str]) -> Path:
    """A real photo re-saved with EXIF tags: ``exif_tags`` in the first IFD (as some tools write them),
    ``in_exif_ifd`` in the EXIF IFD (as cameras do)."""
    exif = Image.Exif()
    exif.update(exif_tags)
    exif.get_ifd(EXIF_IFD).update(in_exif_ifd)
    with Image.open(DATA / "images" / source) as img:
        img.convert("RGB").save(path, exif=exif)
    return path


def write_media(root: Path) -> dict[str, Path]:
    """Five files with five dates from four sources."""
    root.mkdir(parents=True)
    camera = {MAKE: "Canon", MODEL: "Canon EOS R5"}
    files = {
        # taken at noon in a zone two hours east of UTC: 10:00 UTC
        "exif_offset": write_photo("photo_640x480.jpg", root / "camera.jpg", camera,
                                   {DATE_TAKEN: "2019:05:04 12:00:00", OFFSET_TAKEN: "+02:00"}),
        # no offset: local time (UTC+9 here), so 01:11:12 UTC
        "exif_local": write_photo("gray_L_300x400.png", root / "phone.jpg",
                                  {DATE_TAKEN: "2021:08:09 10:11:12"}, {}),
        "video": write_video(root / "clip.mp4", 1, metadata={"creation_time": "2022-03-04T05:06:07Z"}),
        "plain": root / "plain.png",
        "note": root / "note.txt",
    }  # fmt: skip
    with Image.open(DATA / "images" / "palette_256x192.gif") as img:
        img.convert("RGB").save(files["plain"])  # no EXIF at all
    files["note"].write_text("Things to pack for the trip: a torch, maps.", encoding="utf-8")
    os.utime(files["plain"], (utc("2016-01-02T00:00:00"), utc("2016-01-02T00:00:00")))
    os.utime(files["note"], (utc("2023-06-01T00:00:00"), utc("2023-06-01T00:00:00")))
    return files


TAKEN = {  # what each file's date is, and where it came from
    "exif_offset": (iso("2019-05-04T10:00:00"), "exif"),
    "exif_local": (iso("2021-08-09T01:11:12"), "exif"),
    "video": (iso("2022-03-04T05:06:07"), "quicktime"),
    "plain": (iso("2016-01-02T00:00:00"), "file"),
    "note": (iso("2023-06-01T00:00:00"), "file"),
}


@pytest.fixture(scope="module")
def local_zone() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", ZONE)
        time.tzset()
        yield
    time.tzset()


@pytest.fixture(scope="module")
def dated(tiny_card, tmp_path_factory, local_zone) -> tuple[list[str], dict[str, Path]]:
    """A library of :func:`write_media`'s files, ingested through the real CLI (built once)."""
    folder = tmp_path_factory.mktemp("dates")
    lib_args = ["--library", str(folder / "lib"), "--model", tiny_card, "--device", "cpu"]
    files = write_media(folder / "media")
    summary = run_json("ingest", folder / "media", *lib_args)
    assert summary["added"] == 5 and summary["failed"] == [], summary
    return lib_args, files


def names(files: dict[str, Path], hits: list[dict]) -> list[str]:
    by_path = {str(p): name for name, p in files.items()}
    return [by_path[h["path"]] for h in hits]


def test_ingest_stores_when_each_file_was_taken_exif_container_or_mtime_and_the_camera(dated):
    lib_args, files = dated
    hits = run_json("query", *TEXT, "--k", 10, *lib_args)
    assert sorted(names(files, hits)) == sorted(files)
    for hit, name in zip(hits, names(files, hits), strict=True):
        assert (hit["taken"], hit["metadata"]["taken_from"]) == TAKEN[name], name
        assert hit["taken"] == datetime.fromtimestamp(hit["metadata"]["taken"], timezone.utc).isoformat()
    camera = {name: h["metadata"].get("camera") for name, h in zip(names(files, hits), hits, strict=True)}
    assert camera == {"exif_offset": "Canon EOS R5", "exif_local": None, "video": None, "plain": None,
                      "note": None}  # fmt: skip
    code, out = run("query", *TEXT, "--k", 10, *lib_args)
    lines = {line.split()[3]: line for line in out.splitlines()[1:]}
    assert code == 0 and "taken 2019-05-04 19:00" in lines[str(files["exif_offset"])]  # local time, UTC+9
    assert "taken 2021-08-09 10:11" in lines[str(files["exif_local"])]
    assert "modified 2016-01-02 09:00" in lines[str(files["plain"])]  # not a date taken: said so


def test_after_and_before_keep_the_files_taken_in_that_range(dated):
    lib_args, files = dated
    hits = run_json("query", *TEXT, "--after", "2019-01-01", "--before", "2022-12-31", *lib_args)
    assert sorted(names(files, hits)) == ["exif_local", "exif_offset", "video"]
    hits = run_json("query", *TEXT, "--after", "2021-08-09T10:11:12", *lib_args)  # inclusive, local time
    assert sorted(names(files, hits)) == ["exif_local", "note", "video"]
    hits = run_json("query", *TEXT, "--before", utc("2016-06-01T00:00:00"), *lib_args)  # Unix seconds
    assert names(files, hits) == ["plain"]
    hits = run_json("query", *TEXT, "--after", "2021-08-09", "--before", "2021-08-09", *lib_args)
    assert names(files, hits) == ["exif_local"]  # a day: --before keeps the files of that day


def test_sort_date_lists_the_newest_first_from_all_the_hits_above_the_threshold(dated):
    lib_args, files = dated
    hits = run_json("query", *TEXT, "--sort", "date", "--min-relevance", 0, *lib_args)
    assert names(files, hits) == ["note", "video", "exif_local", "exif_offset", "plain"]
    # The newest two of every hit, not the newest of the two best: the search reads deeper to sort.
    hits = run_json("query", *TEXT, "--sort", "date", "--min-relevance", 0, "--k", 2, *lib_args)
    assert names(files, hits) == ["note", "video"]
    hits = run_json(
        "query", *TEXT, "--sort", "date", "--min-relevance", 0, "--k", 2, "--offset", 2, *lib_args
    )
    assert names(files, hits) == ["exif_local", "exif_offset"]
    hits = run_json(
        "query", *TEXT, "--sort", "date", "--min-relevance", 0, "--before", "2021-12-31", *lib_args
    )
    assert names(files, hits) == ["exif_local", "exif_offset", "plain"]


def test_a_date_that_is_not_one_or_an_empty_range_is_an_error_that_says_so(dated):
    lib_args, _ = dated
    code, out = run("query", *TEXT, "--after", "last summer", *lib_args)
    assert code == 1 and "Error: --after must be a date such as 2024-06-01" in out and "Traceback" not in out
    code, out = run("query", *TEXT, "--after", "2024-01-01", "--before", "2023-01-01", *lib_args)
    assert code == 1 and "Error: --after (2024-01-01" in out and "is later than --before" in out


def test_the_api_filters_and_sorts_by_date_and_the_command_line_asks_a_running_server_the_same(dated):
    lib_args, files = dated
    settings = {"text": ["a sunset over the sea"], "keywords": False, "fold": False, "min_relevance": 0}
    with Server(opener(Path(lib_args[1]), lib_args[3]), ServerConfig(port=0)) as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.post("/api/search", json={**settings, "after": "2019-01-01", "sort": "date"})
            assert answer.status_code == 200, answer.text
            results = answer.json()["results"]
            assert names(files, results) == ["note", "video", "exif_local", "exif_offset"]
            assert [r["taken"] for r in results] == [TAKEN[n][0] for n in names(files, results)]
            answer = client.post("/api/search", json={**settings, "before": utc("2019-06-01T00:00:00")})
            assert sorted(names(files, answer.json()["results"])) == ["exif_offset", "plain"]
            bad = client.post("/api/search", json={**settings, "after": "soon"})
            assert bad.status_code == 400 and "after must be a date" in bad.json()["error"]
        # The command line's fast path: the same options, sent to the server, the same answer.
        hits = run_json("query", *TEXT, "--after", "2019-01-01", "--sort", "date", "--min-relevance", 0,
                        *lib_args)  # fmt: skip
        assert names(files, hits) == ["note", "video", "exif_local", "exif_offset"]
        assert [h["taken"] for h in hits] == [r["taken"] for r in results]


def strip_dates(library: str) -> None:
    """Make a library as one ingested before dates were read: its files' info without them."""
    with sqlite3.connect(Path(library) / "ibsearch.db") as db:
        db.execute("UPDATE files SET info = json_remove(info, '$.taken', '$.taken_from', '$.camera')")
    db.close()


def taken_of(lib_args: list[str], files: dict[str, Path]) -> dict[str, tuple[str | None, str | None]]:
    hits = run_json("query", *TEXT, "--k", 10, *lib_args)
    return {
        n: (h.get("taken"), h["metadata"].get("taken_from"))
        for n, h in zip(names(files, hits), hits, strict=True)
    }


def test_an_old_library_gets_its_dates_on_its_next_ingest_without_running_the_model(
    tmp_path, lib_args, local_zone
):
    files = write_media(tmp_path / "media")
    run_json("ingest", tmp_path / "media", *lib_args)
    strip_dates(lib_args[1])
    assert all(taken == (None, None) for taken in taken_of(lib_args, files).values())
    again = run_json("ingest", tmp_path / "media", *lib_args)
    assert again["encoded"] == 0 and again["unchanged"] == 5 and again["updated"] == 0, again
    assert taken_of(lib_args, files) == TAKEN
    assert run_json("ingest", tmp_path / "media", *lib_args)["unchanged"] == 5  # read once only
    # Touched, not changed: a date from the file follows its new mtime, a date taken does not move.
    for name in ("plain", "exif_offset"):
        os.utime(files[name], (utc("2024-02-03T00:00:00"), utc("2024-02-03T00:00:00")))
    # A copy reuses the vectors of its twin, with a date of its own.
    files["copy"] = tmp_path / "media" / "copy.png"
    files["copy"].write_bytes(files["plain"].read_bytes())
    os.utime(files["copy"], (utc("2025-01-01T00:00:00"), utc("2025-01-01T00:00:00")))
    touched = run_json("ingest", tmp_path / "media", *lib_args)
    assert touched["encoded"] == 0 and touched["added"] == 1, touched
    taken = taken_of(lib_args, files)
    assert (
        taken["plain"] == (iso("2024-02-03T00:00:00"), "file")
        and taken["exif_offset"] == TAKEN["exif_offset"]
    )
    assert taken["copy"] == (iso("2025-01-01T00:00:00"), "file")


def test_imported_vectors_are_dated_by_their_metadata_else_the_shard_s_mtime_else_not_at_all(
    lib_args, tmp_path
):
    """Through an approximate index, with the filter tried on the unfiltered search's best hits first
    (post-filtering) and inside the index: the same hits as exact search over the files in range."""
    n, day = 400, 86_400.0
    vectors = mixture(n + 1, seed=31)
    paths = [f"/elsewhere/{i:04d}.jpg" for i in range(n + 1)]
    start = utc("2020-01-01T00:00:00")
    when = start + day * np.arange(n + 1)
    metadata = [{"taken": when[i], "taken_from": "exif"} if i < n // 2 else None for i in range(n + 1)]
    mtime_ns = [int(when[i] * 1e9) if i < n else None for i in range(n + 1)]  # the last: no date at all
    shard = write_shard(tmp_path / "dated.parquet", paths, vectors, metadata=metadata, mtime_ns=mtime_ns)
    assert run_json("import", shard, *lib_args)["added"] == n + 1
    assert run("reindex", "--index", "IVF8,Flat", *lib_args)[0] == 0
    assert run_json("info", *lib_args)["indexes"]["vision"]["kind"] == "approximate"
    low, high = start + 100 * day, start + 299 * day  # half of the files: 100 from EXIF, 100 from mtimes
    allowed = (when >= low) & (when <= high)
    allowed[n] = False
    queries = mixture(8, seed=32)
    truth = exact_top(vectors, queries, 10, allowed)
    for post_filter in (True, False):
        with (
            open_lib(lib_args) as lib,
            Searcher(lib, tuning=SearchTuning(post_filter=post_filter)) as searcher,
        ):
            found = [searcher.query(vector=q, k=10, after=low, before=high, fold=False) for q in queries]
            undated = searcher.query(vector=vectors[n], k=n + 1, fold=False)
        assert all(len(hits) == 10 and all(low <= h.taken <= high for h in hits) for hits in found)
        recall = [
            len({h.path for h in hits} & {paths[i] for i in t}) / 10
            for hits, t in zip(found, truth, strict=True)
        ]
        assert np.mean(recall) >= 0.9, (post_filter, recall)
        froms = {h.path: h.metadata.get("taken_from") for h in undated}
        assert froms[paths[0]] == "exif" and froms[paths[n - 1]] == "file" and froms[paths[n]] is None
    wrong = write_shard(tmp_path / "wrong.parquet", ["/elsewhere/wrong.jpg"], vectors[:1],
                        metadata=[{"taken": "yesterday"}])  # fmt: skip
    refused = run_json("import", wrong, *lib_args)
    assert refused["added"] == 0 and "metadata 'taken' must be when it was taken in Unix seconds" in str(
        refused
    )


def test_sort_date_keeps_the_hits_above_the_low_level_when_no_threshold_is_given():
    low = RELEVANCE_LEVELS["low"]
    above, below = (1 + low) / 2, low / 2

    def hit(name: str, relevance: float | None, taken: float | None) -> Hit:
        return Hit(name, 0.5, "vision", {}, relevance=relevance, taken=taken)

    hits = [hit("old", above, 1.0), hit("faint", below, 3.0), hit("undated", above, None),
            hit("new", above, 2.0), hit("uncalibrated", None, 2.5)]  # fmt: skip
    by_date = [h.path for h in sort_hits(hits, SearchOptions(sort="date"))]
    assert by_date == ["uncalibrated", "new", "old", "undated"]  # undated last; relevance unknown: kept
    every = [h.path for h in sort_hits(hits, SearchOptions(sort="date", min_relevance=0))]
    assert every == ["faint", "uncalibrated", "new", "old", "undated"]
    assert sort_hits(hits, SearchOptions()) == hits  # by relevance: as ranked


def write_sound(path: Path, metadata: dict[str, str]) -> Path:
    """A second of AAC in an MP4 container (``.m4a``) with the container ``metadata`` given."""
    import av

    with av.open(str(path), "w") as out:
        out.metadata.update(metadata)
        stream = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


def test_heic_webp_and_sound_give_their_date_and_a_blank_or_impossible_one_is_no_date(tmp_path, local_zone):
    from ibsearch.encoder.media.pictures import register_plugins
    from ibsearch.encoder.media.probe import probe
    from ibsearch.modality import FileKind

    register_plugins()  # Pillow writes HEIC too, with the pictures extra (installed by scripts/test.sh)
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = "Apple", "iPhone 12"
    exif.get_ifd(EXIF_IFD).update({DATE_TAKEN: "2018:02:03 04:05:06", OFFSET_TAKEN: "-05:00"})
    picture = Image.new("RGB", (64, 48), (200, 30, 30))
    picture.save(tmp_path / "phone.heic", exif=exif.tobytes())
    picture.save(tmp_path / "phone.webp", exif=exif.tobytes())
    for name in ("phone.heic", "phone.webp"):
        info = probe(str(tmp_path / name), FileKind.IMAGE)
        assert (info["taken"], info["taken_from"], info["camera"]) == (utc("2018-02-03T09:05:06"), "exif",
                                                                       "Apple iPhone 12"), name  # fmt: skip
    sound = write_sound(tmp_path / "sound.m4a", {"creation_time": "2020-01-02T03:04:05Z"})
    assert probe(str(sound), FileKind.AUDIO)["taken"] == utc("2020-01-02T03:04:05")
    for blank in ("0000:00:00 00:00:00", "    :  :     :  :  ", "2019:13:45 10:00:00", "0001:01:01 00:00:00"):
        path = write_photo("photo_640x480.jpg", tmp_path / "blank.jpg", {}, {DATE_TAKEN: blank})
        os.utime(path, (utc("2017-07-07T00:00:00"), utc("2017-07-07T00:00:00")))
        info = probe(str(path), FileKind.IMAGE)
        assert (info["taken"], info["taken_from"]) == (utc("2017-07-07T00:00:00"), "file"), blank


def test_a_stored_date_that_is_not_one_is_no_date_in_the_table_and_the_json(lib_args, tmp_path):
    """Media info imported before shards' dates were checked may hold any ``taken``: shown as no date, never
    a traceback."""
    paths, dated = ["/elsewhere/a.jpg", "/elsewhere/b.jpg"], [{"taken": 0.0, "taken_from": "exif"}] * 2
    shard = write_shard(tmp_path / "old.parquet", paths, mixture(2, seed=33), metadata=dated)
    assert run_json("import", shard, *lib_args)["added"] == 2
    with sqlite3.connect(Path(lib_args[1]) / "ibsearch.db") as db:
        db.execute("UPDATE files SET info = json_set(info, '$.taken', 1e300) WHERE path LIKE '%a.jpg'")
        db.execute("UPDATE files SET info = json_set(info, '$.taken', 'yesterday') WHERE path LIKE '%b.jpg'")
    db.close()
    hits = run_json("query", *TEXT, *lib_args)
    assert len(hits) == 2 and [h.get("taken") for h in hits] == [None, None], hits
    code, out = run("query", *TEXT, *lib_args)
    assert code == 0 and "a.jpg" in out and "taken" not in out and "Traceback" not in out, out
