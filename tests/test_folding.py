"""Near-duplicates: copies, re-encodes and bursts folded into the best hit, ``ibsearch duplicates``,
and several moments of one file (adjacent ones merged into one span)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA, run_json
from PIL import Image, ImageEnhance
from test_segments import RATE, write_wav
from test_server_helpers import ingest, opener
from test_transfer import DIM, write_shard

from ibsearch.cli import cli
from ibsearch.engine import Library
from ibsearch.hits import Hit, moments
from ibsearch.search import Searcher
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server

PHOTO = DATA / "images" / "photo_640x480.jpg"
OTHERS = ["rgba_alpha_320x240.png", "gray_L_300x400.png", "palette_256x192.gif", "cmyk_400x300.jpg"]


def near_duplicates(root: Path) -> Path:
    """A photo, a copy of it, a re-encode (smaller, PNG), a burst shot (framed a little tighter) and
    unrelated pictures."""
    root.mkdir(parents=True)
    shutil.copy(PHOTO, root / "photo.jpg")
    shutil.copy(PHOTO, root / "copy.jpg")
    picture = Image.open(PHOTO).convert("RGB")
    picture.resize((320, 240)).save(root / "reencoded.png")
    width, height = picture.size
    ImageEnhance.Brightness(picture.crop((8, 6, width, height)).resize((width, height))).enhance(1.04).save(
        root / "burst.jpg", quality=90
    )
    for name in OTHERS:
        shutil.copy(DATA / "images" / name, root / name)
    return root


@pytest.fixture
def dup_lib(tmp_path: Path, lib_args: list[str]) -> tuple[Path, list[str]]:
    media = near_duplicates(tmp_path / "media")
    run_json("ingest", media, *lib_args)
    return media, lib_args


def test_copies_a_re_encode_and_a_burst_fold_into_the_best_hit(dup_lib):
    media, lib = dup_lib
    hits = run_json("query", "--image", PHOTO, "--target", "vision", "--k", "20", *lib)
    paths = [h["path"] for h in hits]
    assert len(paths) == 1 + len(OTHERS)  # one hit for the photo and its near-duplicates, one per other
    top = hits[0]
    family = {str(media / n) for n in ("photo.jpg", "copy.jpg", "reencoded.png", "burst.jpg")}
    assert {top["path"], *(s["path"] for s in top["similar"])} == family
    assert all(s["score"] <= top["score"] for s in top["similar"])
    assert all("similar" not in h for h in hits[1:])  # unrelated pictures fold into nothing
    assert {str(media / n) for n in OTHERS} == set(paths[1:])
    table = CliRunner().invoke(cli, ["query", "--image", str(PHOTO), "--target", "vision", *map(str, lib)])
    assert table.exit_code == 0 and "(+3 similar)" in table.output


def test_no_fold_lists_every_near_duplicate(dup_lib):
    media, lib = dup_lib
    hits = run_json("query", "--image", PHOTO, "--target", "vision", "--k", "20", "--no-fold", *lib)
    assert len(hits) == 4 + len(OTHERS) and all("similar" not in h for h in hits)
    family = {str(media / n) for n in ("photo.jpg", "copy.jpg", "reencoded.png", "burst.jpg")}
    assert {h["path"] for h in hits[:4]} == family


def test_duplicates_lists_the_group_with_the_space_it_takes(dup_lib):
    media, lib = dup_lib
    groups = run_json("duplicates", *lib)
    assert len(groups) == 1
    group = groups[0]
    names = ("photo.jpg", "copy.jpg", "reencoded.png", "burst.jpg")
    sizes = {str(media / n): (media / n).stat().st_size for n in names}
    assert {f["path"] for f in group["files"]} == set(sizes)
    assert group["modality"] == "vision" and group["count"] == 4
    assert group["bytes"] == sum(sizes.values())
    assert group["reclaimable"] == sum(sizes.values()) - max(sizes.values())  # keep the largest
    assert group["files"][0]["size"] == max(sizes.values())  # the one to keep comes first
    table = CliRunner().invoke(cli, ["duplicates", *map(str, lib)])
    assert table.exit_code == 0 and str(media / "burst.jpg") in table.output
    assert "4 files" in table.output
    assert run_json("duplicates", "--target", "audio", *lib) == []


def test_groups_come_largest_first_and_a_threshold_of_one_keeps_the_same_vectors_together(tmp_path, lib_args):
    media = near_duplicates(tmp_path / "media")
    for name in ("a.png", "b.png"):
        shutil.copy(DATA / "images" / "rgba_alpha_320x240.png", media / name)  # a second, larger group
    run_json("ingest", media, *lib_args)
    groups = run_json("duplicates", *lib_args)
    assert sorted(g["count"] for g in groups) == [3, 4]
    assert [g["bytes"] for g in groups] == sorted((g["bytes"] for g in groups), reverse=True)
    exact = run_json("duplicates", "--threshold", "1", *lib_args)  # the same vectors (to float rounding)
    assert ["a.png", "b.png", "rgba_alpha_320x240.png"] in [sorted(Path(f["path"]).name for f in g["files"])
                                                           for g in exact]  # fmt: skip
    assert all(g["count"] < 5 for g in exact) and any(g["copies"] for g in exact)


def test_duplicates_refuses_a_threshold_out_of_range(lib_args, tmp_path):
    run_json("ingest", near_duplicates(tmp_path / "media"), *lib_args)
    out = CliRunner().invoke(cli, ["duplicates", "--threshold", "1.5", *lib_args])
    assert out.exit_code != 0 and "1.5" in out.output and "--threshold" in out.output


def test_the_api_carries_the_folded_hits(tmp_path, tiny_card):
    media = near_duplicates(tmp_path / "media")
    ingest(tmp_path / "lib", tiny_card, media)
    with Server(opener(tmp_path / "lib", tiny_card), ServerConfig(port=0)) as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            with PHOTO.open("rb") as fh:
                answer = http.post("/api/search", files={"image": ("q.jpg", fh)}, data={"target": "vision"})
            flat = http.post(
                "/api/search", json={"text": ["a photo"], "target": ["vision"], "fold": False, "k": 20}
            )
    assert answer.status_code == 200, answer.text
    top = answer.json()["results"][0]
    assert len(top["similar"]) == 3
    assert all(s["id"] > 0 and s["thumbnail"].endswith("/thumbnail") for s in top["similar"])
    assert flat.status_code == 200, flat.text
    assert len(flat.json()["results"]) == 4 + len(OTHERS)
    assert all(r["similar"] == [] for r in flat.json()["results"])


def span(start: float, end: float, score: float, file_id: int = 1) -> Hit:
    return Hit("/m/long.wav", score, "audio", start=start, end=end, file_id=file_id, vector_id=int(start))


def test_adjacent_and_overlapping_moments_merge_into_one_span_with_the_best_score():
    hits = [span(3, 9, 0.9), span(21, 27, 0.85), span(6, 12, 0.8), span(0, 6, 0.7), span(30, 36, 0.6),
            span(0, 6, 0.95, file_id=2)]  # fmt: skip
    got = [(h.file_id, h.start, h.end, h.score) for h in moments(hits, 3)]
    assert got == [(2, 0, 6, 0.95), (1, 3, 12, 0.9), (1, 21, 27, 0.85)]
    merged = [(h.start, h.end, h.score) for h in moments(hits, 4) if h.file_id == 1]
    assert merged == [(0, 12, 0.9), (21, 27, 0.85)]
    assert [(h.start, h.end) for h in moments(hits, 1)] == [(0, 6), (3, 9)]


def two_events(seconds: float = 36.0) -> tuple[np.ndarray, np.ndarray]:
    """Quiet noise with the same loud chirp at 3-9 s and at 24-30 s, and the chirp alone."""
    rng = np.random.default_rng(5)
    samples = rng.normal(0, 0.05, int(seconds * RATE))
    t = np.arange(6 * RATE) / RATE
    chirp = 0.6 * np.sin(2 * np.pi * (300 + 200 * t) * t)
    for at in (3, 24):
        samples[at * RATE : (at + 6) * RATE] = chirp
    return samples, chirp


def test_several_moments_of_one_long_file_come_back_as_separate_spans(tmp_path, lib_args):
    samples, chirp = two_events()
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "long.wav", samples)
    query = write_wav(tmp_path / "chirp.wav", chirp)
    run_json("ingest", media, *lib_args)
    base = ["query", "--audio", query, "--target", "audio", "--segments", *lib_args]
    one = run_json(*base)
    assert len(one) == 1
    two = run_json(*base, "--per-file", "2")
    assert sorted((h["start"], h["end"]) for h in two) == [(3.0, 9.0), (24.0, 30.0)]
    assert max(h["score"] for h in two) == one[0]["score"]
    many = run_json(*base, "--per-file", "6", "--k", "20")
    spans = sorted((h["start"], h["end"]) for h in many)
    assert 2 <= len(spans) < 6  # six windows, adjacent ones merged
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))  # merged: none touch
    assert any(end - start > 6 for start, end in spans)
    assert any(s <= 3 and e >= 9 for s, e in spans) and any(s <= 24 and e >= 30 for s, e in spans)


def test_per_file_needs_segments(lib_args, tmp_path):
    run_json("ingest", near_duplicates(tmp_path / "media"), *lib_args)
    out = CliRunner().invoke(cli, ["query", "--text", "a photo", "--per-file", "3", *lib_args])
    assert out.exit_code == 1 and "--segments" in out.output


def imagebind_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors with ImageBind's vision spread: about 0.4 mean cosine between unrelated ones
    (a shared direction), clusters of similar ones around it."""
    shared = np.random.default_rng(99).standard_normal(DIM).astype(np.float32)
    centres = rng.standard_normal((32, DIM)).astype(np.float32)
    x = shared * 1.3 + centres[rng.integers(32, size=n)] + rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def at_cosine(original: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    away = rng.standard_normal(original.shape).astype(np.float32)
    away -= (away @ original) * original
    return cosine * original + np.sqrt(1 - cosine**2) * away / np.linalg.norm(away)


def test_the_threshold_means_the_same_at_imagebinds_spread(lib_args, tmp_path):
    rng = np.random.default_rng(4)
    vectors = imagebind_like(300, rng)
    mean = vectors.mean(axis=0)
    assert 0.3 < float(mean @ mean) < 0.5  # ImageBind's vision spread, as the module docstring says
    original = vectors[0]
    planted = {"reencode.jpg": 0.99, "burst.jpg": 0.975, "same-scene-later.jpg": 0.92}
    extra = np.stack([at_cosine(original, c, rng) for c in planted.values()])
    paths = [f"/elsewhere/{i:04d}.jpg" for i in range(300)] + [f"/elsewhere/{n}" for n in planted]
    sizes = [1000 + i for i in range(len(paths))]
    write_shard(tmp_path / "s.parquet", paths, np.concatenate([vectors, extra]), size=sizes)
    run_json("import", tmp_path / "s.parquet", *lib_args)
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        hits = Searcher(lib).query(vector=original, k=5)
    assert hits[0].path == paths[0]
    assert sorted(h.path for h in hits[0].similar) == ["/elsewhere/burst.jpg", "/elsewhere/reencode.jpg"]
    assert "/elsewhere/same-scene-later.jpg" in [h.path for h in hits[1:]]
    groups = run_json("duplicates", *lib_args)
    assert [sorted(f["path"] for f in g["files"]) for g in groups] == [
        ["/elsewhere/0000.jpg", "/elsewhere/burst.jpg", "/elsewhere/reencode.jpg"]
    ]
    assert groups[0]["bytes"] == sizes[0] + sizes[300] + sizes[301] and not groups[0]["copies"]


def test_a_burst_larger_than_the_page_folds_into_one_hit_and_the_page_is_still_full(lib_args, tmp_path):
    """Folding takes up hits of the page: the search ranks more candidates until the page is full."""
    rng = np.random.default_rng(8)
    vectors = imagebind_like(300, rng)
    burst = np.stack([at_cosine(vectors[0], 0.99, rng) for _ in range(30)])
    paths = [f"/others/{i:04d}.jpg" for i in range(300)] + [f"/burst/{i:02d}.jpg" for i in range(30)]
    write_shard(tmp_path / "s.parquet", paths, np.concatenate([vectors, burst]))
    run_json("import", tmp_path / "s.parquet", *lib_args)
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        hits = Searcher(lib).query(vector=vectors[0], k=5)
        unfolded = Searcher(lib).query(vector=vectors[0], k=5, fold=False)
        later = Searcher(lib).query(vector=vectors[0], k=5, offset=5)
    assert len(hits) == 5 and hits[0].path == paths[0]
    assert sorted(h.path for h in hits[0].similar) == paths[300:]
    assert not any(h.path.startswith("/burst/") for h in hits[1:] + later)  # nor listed again on page 2
    assert not {h.path for h in hits} & {h.path for h in later}
    assert [h.path for h in unfolded][0] == paths[0] and all(
        h.path.startswith("/burst/") for h in unfolded[1:]
    )
