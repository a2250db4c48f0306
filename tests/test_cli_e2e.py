"""End to end through the real CLI: a tiny random-weight ImageBind, real media, real SQLite and FAISS.

Random weights carry no meaning, so cross-modal tests check that what the CLI returns is exactly
the ranking computed directly from vectors (model outputs and stored vectors), not semantics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import media_files, run_json

from ibsearch.cli import cli
from ibsearch.engine import Library


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def ingested(media_dir: Path, lib_args: list[str]) -> dict:
    return run_json("ingest", media_dir, *lib_args)


def stored(lib_args: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Stored file-level vectors per modality, read straight from the database."""
    lib = Library.open(lib_args[1], model=lib_args[3], device="cpu")
    try:
        out: dict[str, dict[str, np.ndarray]] = {}
        for path in lib.store.files.paths_under(""):
            for v in lib.store.vectors.of_file(path):
                out.setdefault(v.modality, {})[path] = v.vector
        return out
    finally:
        lib.close()


def direct_query(lib_args: list[str], terms: list[tuple[str, object, float]]) -> np.ndarray:
    """The query vector computed by hand: each term encoded directly, normalized, weighted, summed."""
    from ibsearch.encoder import preprocess

    lib = Library.open(lib_args[1], model=lib_args[3], device="cpu")
    try:
        enc = lib.encoder()
        total = np.zeros(enc.dim)
        for modality, value, weight in terms:
            batch = preprocess.text([value]) if modality == "text" else preprocess.load(modality, value)[None]
            vec = enc.encode(modality, batch)[0].astype(np.float64)
            total += weight * vec / np.linalg.norm(vec)
        return total / np.linalg.norm(total)
    finally:
        lib.close()


def expected_ranking(vectors: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[tuple[str, float]]:
    scored = sorted(((p, float(v @ query)) for p, v in vectors.items()), key=lambda t: -t[1])
    return scored[:k]


def assert_same_hits(hits: list[dict], expected: list[tuple[str, float]]) -> None:
    assert [h["path"] for h in hits] == [p for p, _ in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit["score"] == pytest.approx(score, abs=2e-4)


def test_ingest_reports_every_file_and_stores_one_vector_per_modality(ingested, media_dir, lib_args):
    assert ingested["added"] == len(media_files(media_dir)) == 9
    assert ingested["failed"] == [] and ingested["removed"] == 0
    # notes.md's two paragraphs are two passages; dog.txt's one passage is its file-level vector.
    assert ingested["encoded"] == 11
    info = run_json("info", *lib_args)
    assert info["vectors"] == {"audio": 3, "audio.segments": 3, "text": 2, "text.segments": 3, "vision": 4}
    assert run("check", *lib_args).strip().endswith("ok")


@pytest.mark.parametrize(
    ("option", "folder", "target"),
    [("--image", "photos", "vision"), ("--audio", "sounds", "audio")],
)
def test_every_file_finds_itself_first(ingested, media_dir, lib_args, option, folder, target):
    for path in sorted((media_dir / folder).iterdir()):
        hits = run_json("query", option, path, "--target", target, "--k", "3", *lib_args)
        assert hits[0]["path"] == str(path)
        assert hits[0]["score"] == pytest.approx(1.0, abs=2e-3)
        assert hits[0]["modality"] == target


def test_a_text_file_is_found_by_its_own_text(ingested, media_dir, lib_args):
    hits = run_json("query", "--text", "A dog barking in the park.", "--target", "text", *lib_args)
    assert hits[0]["path"] == str(media_dir / "notes" / "dog.txt")
    assert hits[0]["score"] == pytest.approx(1.0, abs=2e-3)


def test_cross_modal_queries_rank_exactly_by_the_vectors(ingested, media_dir, lib_args):
    vectors = stored(lib_args)
    wav = str(media_dir / "sounds" / "mix_16000_mono_s16_5p3s.wav")
    jpg = str(media_dir / "photos" / "photo_640x480.jpg")
    cases = [
        (["--text", "a dog barking"], [("text", "a dog barking", 1.0)], "vision"),
        (["--audio", wav], [("audio", wav, 1.0)], "vision"),
        (["--image", jpg], [("vision", jpg, 1.0)], "audio"),
    ]
    for args, terms, target in cases:
        hits = run_json("query", *args, "--target", target, "--k", "3", *lib_args)
        assert_same_hits(hits, expected_ranking(vectors[target], direct_query(lib_args, terms), 3))


def test_weighted_arithmetic_with_a_negative_term_matches_the_hand_computed_query(
    ingested, media_dir, lib_args
):
    jpg = str(media_dir / "photos" / "gray_L_300x400.png")
    wav = str(media_dir / "sounds" / "chirp_11025_mono_u8_10s.wav")
    hits = run_json(
        "query", "--image", jpg, "--audio", f"0.5={wav}", "--text", "-0.7=a city street",
        "--target", "image", "--target", "audio", "--k", "5", *lib_args,
    )  # fmt: skip
    query = direct_query(
        lib_args, [("vision", jpg, 1.0), ("audio", wav, 0.5), ("text", "a city street", -0.7)]
    )
    vectors = stored(lib_args)
    # Each target's hits are its best by the hand-computed query's cosine, in that order; the two
    # targets interleave by calibrated relevance (their raw scores live on different scales).
    assert len(hits) == 5 and {h["modality"] for h in hits} == {"vision", "audio"}
    for target in ("vision", "audio"):
        own = [h for h in hits if h["modality"] == target]
        assert_same_hits(own, expected_ranking(vectors[target], query, len(own)))
    relevances = [h["relevance"] for h in hits]
    assert relevances == sorted(relevances, reverse=True)


def test_like_reuses_the_stored_vector(ingested, media_dir, lib_args):
    png = media_dir / "photos" / "rgba_alpha_320x240.png"
    hits = run_json("query", "--like", png, "--include-like", "--target", "vision", *lib_args)
    assert hits[0]["path"] == str(png) and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_a_query_by_a_stored_file_runs_without_loading_torch_and_finds_the_same_hits(
    ingested, media_dir, lib_args
):
    # No model is needed to search by stored vectors, and loading torch for the products would cost a
    # CLI process more than a second: a fresh process searches without it (FAISS's own exact search
    # over the mapped index, numpy's BLAS for the rest) and finds what a process with torch finds.
    jpg = media_dir / "photos" / "photo_640x480.jpg"
    args = ["query", "--like", str(jpg), "--k", "6", *map(str, lib_args), "--json"]
    expected = run_json(*args[:-1])
    script = (
        "import sys; from ibsearch.cli import cli\n"
        "try:\n    cli(sys.argv[1:])\nexcept SystemExit as end:\n    code = end.code\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("no torch"), done.stderr
    got = json.loads(done.stdout)
    assert [h["path"] for h in got] == [h["path"] for h in expected] and len(got) == 6
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
        assert mine["relevance"] == pytest.approx(theirs["relevance"], abs=1e-4)


def test_filters_restrict_results_inside_the_search(ingested, media_dir, lib_args):
    jpg = media_dir / "photos" / "photo_640x480.jpg"
    hits = run_json("query", "--like", jpg, "--path-glob", "*.png", "--k", "10", *lib_args)
    assert hits and all(h["path"].endswith(".png") for h in hits)
    hits = run_json("query", "--like", jpg, "--path-prefix", media_dir / "sounds", "--k", "10", *lib_args)
    assert sorted(h["path"] for h in hits) == sorted(str(p) for p in (media_dir / "sounds").iterdir())
    hits = run_json("query", "--like", jpg, "--min-duration", "5", "--max-duration", "6", *lib_args)
    assert [h["path"] for h in hits] == [str(media_dir / "sounds" / "mix_16000_mono_s16_5p3s.wav")]
    assert hits[0]["metadata"]["duration"] == pytest.approx(5.3, abs=0.01)


def test_searcher_gives_the_same_hits_as_the_cli(ingested, media_dir, lib_args):
    from ibsearch import Searcher, weighted

    jpg = str(media_dir / "photos" / "photo_640x480.jpg")
    wav = str(media_dir / "sounds" / "mix_16000_mono_s16_5p3s.wav")
    cli_hits = run_json(
        "query", "--image", jpg, "--audio", f"-0.3={wav}", "--target", "vision", "--k", "4", *lib_args
    )
    with Searcher(lib_args[1], model=lib_args[3], device="cpu") as searcher:
        hits = searcher.query(image=jpg, audio=weighted(wav, -0.3), target="image", k=4)
        assert [h.to_dict() for h in hits] == cli_hits
        assert hits[0].path == jpg and hits[0].modality == "vision"
        with open(jpg, "rb") as fh:
            by_bytes = searcher.query(image=fh.read(), target="vision", k=1)
        assert by_bytes[0].path == jpg


def test_user_mistakes_get_a_clear_error_not_a_traceback(ingested, media_dir, lib_args, tmp_path):
    cases = [
        (["query", "--image", tmp_path / "missing.jpg", *lib_args], "does not exist"),
        (["query", "--text", "x", "--target", "smell", *lib_args], "unknown modality"),
        (["query", *lib_args], "at least one input"),
        (["query", "--text", "x", "--library", tmp_path / "nolib"], "no library"),
        (["query", "--like", tmp_path / "x.jpg", *lib_args], "not in the library"),
        (["ingest", tmp_path / "nowhere", *lib_args], "cannot ingest"),
        (["query", "--text", "x", "--library", lib_args[1], "--model", "imagebind_huge"], "was built with"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code in (1, 2), (args, result.output)
        assert "Error:" in result.output and message in result.output, result.output
        assert "Traceback" not in result.output


def test_every_command_has_help_with_an_example():
    for command in ["ingest", "query", "info", "remove", "reindex", "check"]:
        out = run(command, "--help")
        assert "Example" in out and f"ibsearch {command}" in out


def test_a_text_query_loads_only_the_text_tower(ingested, lib_args):
    from ibsearch import Searcher

    with Searcher(lib_args[1], model=lib_args[3], device="cpu") as searcher:
        assert searcher.query(text="a dog barking", target="vision", k=2)
        assert searcher.library.encoder().loaded_modalities == ["text"]
