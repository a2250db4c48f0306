"""The first hour of a new user: install lines, trying it without the real weights, and CLI polish."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, run_json

from ibsearch.cli import cli
from ibsearch.engine import Library

ROOT = Path(__file__).parent.parent


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_1_the_readme_gives_a_cpu_only_and_a_gpu_install_and_the_constraints_say_what_they_do():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "https://download.pytorch.org/whl/cpu" in readme  # PyTorch's CPU wheel index
    assert "GPU" in readme and "bash scripts/test.sh" in readme
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert "torch==" in constraints and "does not choose" in constraints


def test_2_a_random_weight_model_lets_you_try_ibsearch_without_the_real_weights(tmp_path, media_dir):
    code, out = run("model", "random", "imagebind_tiny", tmp_path / "tiny.pth", "--seed", "3")
    assert code == 0 and "meaningless" in out, out
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["name"] == "imagebind_tiny-random-seed3" and "meaningless" in card["description"]
    lib = ["--library", tmp_path / "lib", "--model", tmp_path / "tiny.json", "--device", "cpu"]
    assert run_json("ingest", media_dir, *lib)["added"] == 9
    info = run_json("info", *lib)
    assert info["model"] == "imagebind_tiny-random-seed3" and "meaningless" in info["model_description"]
    assert "meaningless" in run("info", *lib)[1]


def test_2_the_offline_error_says_how_to_try_without_the_real_weights(tmp_path):
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.cards import ModelCard
    from ibsearch.encoder.weights.checkpoint import checkpoint_path
    from ibsearch.errors import DownloadError

    card = ModelCard("offline", get_config("imagebind_tiny"), "http://127.0.0.1:1/imagebind_huge.pth")
    with pytest.raises(DownloadError, match="ibsearch model random imagebind_small small.pth"):
        checkpoint_path(card)


def test_3_a_model_mismatch_names_the_card_the_library_was_built_with(lib_args, media_dir, tiny_card):
    run_json("ingest", media_dir, *lib_args)
    code, out = run("query", "--text", "x", "--library", lib_args[1], "--model", "imagebind_huge")
    assert code == 1 and f"use --model {tiny_card}" in " ".join(out.split()), out


def test_4_help_texts_match_behaviour_and_bad_numbers_are_refused(lib_args, media_dir):
    code, out = run("ingest", "--help")
    assert "automatic" in out and "CPU count" not in out
    for command in ("info", "remove", "reindex"):
        out = run(command, "--help")[1]
        assert "--device" not in out and "--precision" not in out and "--checkpoint" not in out, command
    for command in ("ingest", "query"):
        assert "--device" in run(command, "--help")[1]
    run_json("ingest", media_dir, *lib_args)
    code, out = run("query", *lib_args)
    assert code == 1 and all(opt in out for opt in ("--video", "--depth", "--thermal", "--imu")), out
    for bad in (["--workers", "-3"], ["--batch-size", "0"]):
        code, out = run("ingest", media_dir, *bad, *lib_args)
        assert code == 2 and bad[0] in out, out


def test_5_relative_path_prefix_and_path_glob_mean_the_same_folder(lib_args, media_dir, monkeypatch):
    run_json("ingest", media_dir, *lib_args)
    monkeypatch.chdir(media_dir)
    like = ["--like", media_dir / "sounds" / "mix_16000_mono_s16_5p3s.wav", "--include-like", "--k", "20"]
    by_prefix = run_json("query", *like, "--path-prefix", "photos", *lib_args)
    by_glob = run_json("query", *like, "--path-glob", "photos/*", *lib_args)
    assert sorted(h["path"] for h in by_prefix) == sorted(h["path"] for h in by_glob)
    assert len(by_glob) == 4 and all("/photos/" in h["path"] for h in by_glob)
    assert len(run_json("query", *like, "--path-glob", "*.png", *lib_args)) == 2  # no slash: anywhere


def test_6_more_like_this_leaves_out_the_file_itself_also_both_vectors_of_a_video(
    tmp_path, lib_args, media_dir
):
    shutil.copy(DATA / "video" / "landscape_320x240_29.97fps_4.5s_aac.mp4", media_dir / "clip.mp4")
    run_json("ingest", media_dir, *lib_args)
    for liked in (media_dir / "photos" / "photo_640x480.jpg", media_dir / "clip.mp4"):
        hits = run_json("query", "--like", liked, "--k", "20", *lib_args)
        assert hits and str(liked) not in [h["path"] for h in hits]
        again = run_json("query", "--like", liked, "--include-like", "--k", "20", *lib_args)
        assert str(liked) in [h["path"] for h in again]
    video_hits = run_json("query", "--like", media_dir / "clip.mp4", "--include-like", "--k", "20", *lib_args)
    assert [h["path"] for h in video_hits].count(str(media_dir / "clip.mp4")) == 2  # picture and sound
    assert len(run_json("query", "--like", media_dir / "clip.mp4", "--k", "3", *lib_args)) == 3


def test_7_output_polish_header_aligned_info_known_bad_and_progress_per_decoded_file(
    tmp_path, lib_args, media_dir
):
    shutil.copy(DATA / "bad" / "truncated.jpg", media_dir / "photos" / "bad.jpg")
    shutil.copy(DATA / "audio" / "tone_8000_mono_s16_30s.wav", media_dir / "sounds" / "long.wav")
    seen: list[tuple[int, int | None, int]] = []

    def progress(task: str, unit: str):
        def update(done: int, total: int | None, current: str | None = None) -> None:
            with Library.open(lib_args[1], model=lib_args[3], device="cpu") as other:
                seen.append((done, total, other.store.files.count(), current))

        return update

    with Library.open(lib_args[1], model=lib_args[3], device="cpu", create=True) as lib:
        lib.ingest([str(media_dir)], workers=0, progress=progress)
    # Counted in the model's inputs (the 30 s sound's windows too), ending where the total ends.
    assert seen[-1][0] == seen[-1][1] and seen[-1][1] > 11 and seen[-1][3] is None
    assert seen[0][2] == 0 and seen[0][3] is not None  # it moved and named a file before any commit
    code, out = run("query", "--text", "a dog", *lib_args)
    assert out.splitlines()[0].split() == ["rank", "score", "modality", "path", "[segment]", "media"]
    lines = [
        ln for ln in run("info", *lib_args)[1].splitlines() if ln.startswith("  ") and "vector" not in ln
    ]
    counts = [ln for ln in lines if ln.split()[0] in {"audio", "audio.segments", "text", "vision"}]
    assert len(counts) == 4 and len({len(ln) for ln in counts}) == 1  # the counts end in one column
    again = run_json("ingest", media_dir, *lib_args)
    assert again["failed"] == [] and again["known_bad"] == 1
    assert "1 known bad file(s) skipped" in run("ingest", media_dir, *lib_args)[1]


def test_8_a_garbled_index_gets_one_clear_sentence_and_check_says_what_it_repaired(lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)
    index = Path(lib_args[1]) / "vision.faiss"
    index.write_bytes(index.read_bytes()[:500])
    garbled = index.read_bytes()
    code, out = run("check", "--no-repair", *lib_args)
    assert code == 1 and "cannot read index file" in out and "reindex" in out
    assert index.read_bytes() == garbled  # --no-repair changed nothing
    text = " ".join(out.split())
    assert "Error in" not in text and "faiss::" not in text and text.count("rebuil") == 0, out
    code, out = run("check", *lib_args)
    assert code == 0 and "repaired: " in out and "rebuilt from the database" in out, out
    assert out.strip().endswith("ok") and "PROBLEM" not in out
    os.remove(index)
    report = run_json("check", *lib_args)
    assert report["ok"] and any("was missing" in r for r in report["repaired"])
