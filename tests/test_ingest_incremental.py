"""Incremental ingest: unchanged files cost a stat, changes re-embed, deletions and renames follow."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import DATA, run_json
from PIL import Image


def paths_in_results(lib_args: list[str], like: Path) -> list[str]:
    return [h["path"] for h in run_json("query", "--like", like, "--include-like", "--k", "50", *lib_args)]


def test_an_unchanged_rerun_encodes_nothing(media_dir, lib_args):
    first = run_json("ingest", media_dir, *lib_args)
    again = run_json("ingest", media_dir, *lib_args)
    assert again == {
        "added": 0, "updated": 0, "unchanged": first["added"], "removed": 0, "failed": [], "encoded": 0,
        "skipped": 0, "known_bad": 0, "skipped_by_extension": {}, "failed_by_extension": {},
        "not_indexed": [],
    }  # fmt: skip


def test_a_modified_file_is_re_embedded(media_dir, lib_args):
    run_json("ingest", media_dir, *lib_args)
    photo = media_dir / "photos" / "photo_640x480.jpg"
    args = ["--like", photo, "--include-like", "--target", "vision", "--k", "1"]
    before = run_json("query", *args, *lib_args)[0]
    Image.open(DATA / "images" / "portrait_270x1000.jpg").save(photo, format="JPEG")
    summary = run_json("ingest", media_dir, *lib_args)
    assert (summary["updated"], summary["encoded"], summary["added"]) == (1, 1, 0)
    after = run_json("query", "--image", photo, "--target", "vision", "--k", "1", *lib_args)[0]
    assert after["path"] == str(photo) and after["score"] == pytest.approx(1.0, abs=2e-3)
    assert after["metadata"]["width"] == 270 and before["metadata"]["width"] == 640


def test_a_touched_but_identical_file_is_not_re_embedded(media_dir, lib_args):
    run_json("ingest", media_dir, *lib_args)
    wav = media_dir / "sounds" / "mix_16000_mono_s16_5p3s.wav"
    os.utime(wav, ns=(1_000_000_000, 1_000_000_000))
    summary = run_json("ingest", media_dir, *lib_args)
    assert summary["encoded"] == 0 and summary["updated"] == 0 and summary["unchanged"] == 9
    assert run_json("ingest", media_dir, *lib_args)["unchanged"] == 9


def test_a_deleted_file_disappears_from_results(media_dir, lib_args):
    run_json("ingest", media_dir, *lib_args)
    gone = media_dir / "photos" / "gray_L_300x400.png"
    keep = media_dir / "photos" / "photo_640x480.jpg"
    assert str(gone) in paths_in_results(lib_args, keep)
    gone.unlink()
    summary = run_json("ingest", media_dir, *lib_args)
    assert summary["removed"] == 1 and summary["encoded"] == 0
    assert str(gone) not in paths_in_results(lib_args, keep)
    assert run_json("info", *lib_args)["vectors"]["vision"] == 3


def test_a_renamed_file_is_found_under_its_new_name_without_encoding(media_dir, lib_args):
    run_json("ingest", media_dir, *lib_args)
    old = media_dir / "sounds" / "chirp_11025_mono_u8_10s.wav"
    new = media_dir / "sounds" / "renamed" / "chirp.wav"
    new.parent.mkdir()
    shutil.move(old, new)
    summary = run_json("ingest", media_dir, *lib_args)
    assert (summary["added"], summary["removed"], summary["encoded"]) == (1, 1, 0)
    hits = run_json("query", "--audio", new, "--target", "audio", "--k", "1", *lib_args)
    assert hits[0]["path"] == str(new) and hits[0]["score"] == pytest.approx(1.0, abs=2e-3)


def test_a_copy_reuses_the_stored_vector(media_dir, lib_args):
    run_json("ingest", media_dir, *lib_args)
    shutil.copy(media_dir / "photos" / "photo_640x480.jpg", media_dir / "photos" / "copy.jpg")
    summary = run_json("ingest", media_dir, *lib_args)
    assert (summary["added"], summary["encoded"]) == (1, 0)


def test_remove_reindex_and_check(media_dir, lib_args, tmp_path):
    run_json("ingest", media_dir, *lib_args)
    assert run_json("remove", media_dir / "notes", *lib_args) == {"removed": 2}
    assert run_json("info", *lib_args)["vectors"] == {"audio": 3, "audio.segments": 3, "vision": 4}
    counts = run_json("reindex", *lib_args)
    assert counts["vision"] == 4 and counts["audio"] == 3
    assert run_json("check", *lib_args)["ok"] is True
    # A stale index file (as after a crash) is brought up to date from the database on open.
    (tmp_path / "lib" / "vision.faiss").unlink()
    photo = media_dir / "photos" / "photo_640x480.jpg"
    hits = run_json("query", "--like", photo, "--include-like", "--target", "vision", *lib_args)
    assert len(hits) == 4
    report = run_json("check", *lib_args)
    assert report["ok"] is True and report["counts"]["vision"] == 4


def test_a_failure_recorded_by_older_readers_is_tried_again_once(tmp_path, lib_args):
    """A library whose failures were recorded before this generation of readers (a HEIC photo refused as a
    damaged header by an ibsearch without HEIC) retries them, unchanged, on its next ingest; failing again,
    they are known bad from then on."""
    from ibsearch.engine import Library
    from ibsearch.ingest.plan import READERS_SETTING, READERS_VERSION

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "liar.jpg").write_text("not a picture at all")
    first = run_json("ingest", folder, *lib_args)
    assert [f["path"] for f in first["failed"]] == [str(folder / "liar.jpg")]
    assert run_json("ingest", folder, *lib_args)["known_bad"] == 1
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        assert lib.store.settings.get(READERS_SETTING)["version"] == READERS_VERSION
        lib.store.settings.set(READERS_SETTING, {"version": READERS_VERSION - 1, "since": 0.0})
    retried = run_json("ingest", folder, *lib_args)  # the readers changed since it failed: tried again
    assert retried["known_bad"] == 0 and [f["path"] for f in retried["failed"]] == [str(folder / "liar.jpg")]
    assert run_json("ingest", folder, *lib_args)["known_bad"] == 1  # recorded anew: not retried again
