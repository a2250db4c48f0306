"""Keywords with meaning: file names, folders and texts found by their words (SQLite FTS5) and fused
with the vector results; phrases, exclusions, --no-keywords, and libraries of schema 3 upgraded. The
real CLI on real notes and pictures, a real SQLite library, the tiny random-weight model.

Random weights carry no meaning, so what the words add is checked against a search without them
(``--no-keywords``), and a file only the words find is made so by importing vectors far from the query.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, run_json
from test_transfer import DIM, write_shard

from ibsearch.engine import Library
from ibsearch.hits import Hit
from ibsearch.keywords import fuse_rankings, read_text
from ibsearch.search import Searcher
from ibsearch.store.word_rows import document_text
from ibsearch.terms import Term, parse_term

PHOTOS = ["photo_640x480.jpg", "rgba_alpha_320x240.png", "gray_L_300x400.png", "palette_256x192.gif"]
NOTES = {
    "boat.txt": "The boat sailed over the sea at dawn, slowly.",
    "shore.txt": "The sea was calm; the boat stayed over by the shore all day.",
    "heron.txt": "A heron stood by the water at sunset, over the sea wall.",
    "list.md": "# Grocery list\n\nmilk, eggs, bread",
}
RARE = "zanzibarite"  # a word no other file holds


def filler(sentences: int) -> str:
    """Plain prose, many passages long (each sentence differs, so no two passages are alike)."""
    return "\n\n".join(
        f"Paragraph {i} talks about the weather and the garden in spring." for i in range(sentences)
    )


def build(root: Path) -> Path:
    """Pictures (one named after a heron, in a folder named for a trip), notes, and a long document
    whose rare word lies far past its first passages."""
    (root / "photos" / "lagoon trip").mkdir(parents=True)
    (root / "notes").mkdir()
    for name in PHOTOS[1:]:
        shutil.copy(DATA / "images" / name, root / "photos" / name)
    shutil.copy(DATA / "images" / PHOTOS[0], root / "photos" / "lagoon trip" / "grey_heron.jpg")
    for name, text in NOTES.items():
        (root / "notes" / name).write_text(text, encoding="utf-8")
    long = filler(60) + f"\n\nAt the very end the {RARE} crystals glowed.\n"
    (root / "notes" / "long.txt").write_text(long, encoding="utf-8")
    return root


@pytest.fixture
def library(tmp_path: Path, lib_args: list[str]) -> Path:
    media = build(tmp_path / "media")
    summary = run_json("ingest", media, *lib_args)
    assert not summary["failed"] and summary["added"] == 9
    return media


def query(lib_args: list[str], *args: object) -> list[dict]:
    return run_json("query", *args, *lib_args)  # type: ignore[return-value]


def names(hits: list[dict]) -> list[str]:
    return [Path(h["path"]).name for h in hits]


def test_a_word_deep_in_a_document_or_in_a_file_name_or_folder_finds_it_first(library, lib_args):
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        stored = lib.store.vectors.of_file(library / "notes" / "long.txt")
    passages = [v.passage.text for v in stored if v.passage is not None]
    assert len(passages) > 20 and RARE in passages[-1] and all(RARE not in p for p in passages[:20])
    deep = query(lib_args, "--text", RARE)
    assert names(deep)[0] == "long.txt" and deep[0]["sources"] == ["meaning", "keywords"]
    assert all(h["sources"] == ["meaning"] for h in deep[1:])  # no other file holds the word
    by_name = query(lib_args, "--text", "heron", "--target", "vision")
    assert names(by_name)[0] == "grey_heron.jpg" and "keywords" in by_name[0]["sources"]
    by_folder = query(lib_args, "--text", "lagoon", "--target", "image")
    assert names(by_folder)[0] == "grey_heron.jpg" and by_folder[0]["sources"] == ["meaning", "keywords"]
    # The words found it: by meaning alone (random weights) it is where its vector puts it.
    plain = query(lib_args, "--text", RARE, "--no-keywords")
    assert all(h["sources"] == ["meaning"] for h in plain)
    assert [h["relevance"] for h in plain] == sorted((h["relevance"] for h in plain), reverse=True)


def test_a_file_both_find_ranks_first_and_each_hit_says_what_found_it(library, lib_args):
    text = NOTES["boat.txt"]
    hits = query(lib_args, "--text", text, "--target", "text")
    # Its own text: nearest by meaning (the same token ids) and the best match of its words.
    assert names(hits)[0] == "boat.txt" and hits[0]["sources"] == ["meaning", "keywords"]
    assert hits[0]["score"] > 0.9999
    found = {Path(h["path"]).name: h["sources"] for h in hits}
    assert found["list.md"] == ["meaning"]  # shares no word with the query


def test_a_quoted_phrase_must_stand_in_order_and_a_minus_word_leaves_its_files_out(library, lib_args):
    hits = query(lib_args, "--text", '"over the sea" -heron', "--target", "text")
    sources = {Path(h["path"]).name: h["sources"] for h in hits}
    assert "heron.txt" not in sources  # its text holds "heron": left out, though meaning found it
    assert names(hits)[0] == "boat.txt" and sources["boat.txt"] == ["meaning", "keywords"]
    assert sources["shore.txt"] == ["meaning"]  # the words, not the phrase
    # The tower embeds the text without quotes and exclusions: the same scores as that text alone.
    bare = {
        h["path"]: h["score"]
        for h in query(lib_args, "--text", "over the sea", "--target", "text", "--no-keywords")
    }
    assert all(h["score"] == pytest.approx(bare[h["path"]], abs=1e-6) for h in hits)
    # A weight still reads as one, not as an exclusion; a negative term's words find nothing.
    weighted = query(lib_args, "--text", "sea", "--text", "-0.5=heron", "--target", "text")
    assert "heron.txt" in names(weighted)
    by_words = {Path(h["path"]).name for h in weighted if "keywords" in h["sources"]}
    assert by_words == {"boat.txt", "shore.txt", "heron.txt"}


def test_reading_a_text_term_for_phrases_and_exclusions():
    asked, meaning = read_text('sunset "over the sea" -clouds -0.5 well-known')
    assert asked.phrases == ("over the sea",) and asked.excluded == ("clouds",)
    assert (
        asked.words == ("sunset", "-0.5", "well-known") and meaning == "sunset over the sea -0.5 well-known"
    )
    assert read_text("a dog barking") == (read_text("a dog barking")[0], "a dog barking")
    assert parse_term("text", "-0.5=people") == Term("text", "people", -0.5)
    with pytest.raises(Exception, match="only leaves words out"):
        read_text("-clouds")


def test_no_keywords_embeds_the_text_as_typed_and_an_exclusion_alone_is_refused(library, lib_args):
    from click.testing import CliRunner

    from ibsearch.cli import cli

    result = CliRunner().invoke(cli, ["query", "--text", "-heron", *lib_args])
    assert (
        result.exit_code == 1
        and "only leaves words out" in result.output
        and "Traceback" not in result.output
    )
    as_typed = query(lib_args, "--text", "-heron", "--no-keywords", "--target", "text")
    assert "heron.txt" in names(as_typed)


def test_a_file_found_by_its_words_alone_gets_the_cosine_of_its_stored_vector(tmp_path, lib_args):
    """Imported vectors (a shard names and folders only): one file's vector points away from the query,
    so only its name finds it; its score is its vector's cosine with the query."""
    card = lib_args[3]
    run_json("ingest", build(tmp_path / "media") / "notes" / "list.md", *lib_args)  # binds the model
    with Library.open(lib_args[1], model=card, device="cpu") as lib:
        q = Searcher(lib).embed([Term("text", "kingfisher")])
    rng = np.random.default_rng(4)
    others = rng.standard_normal((30, DIM)).astype(np.float32) + 3 * q
    vectors = np.concatenate([others, -q[None, :]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paths = [f"/imported/pics/img_{i:03d}.jpg" for i in range(30)] + ["/imported/birds/kingfisher.jpg"]
    assert run_json("import", write_shard(tmp_path / "s.parquet", paths, vectors), *lib_args)["added"] == 31
    hits = query(lib_args, "--text", "kingfisher", "--target", "image", "--k", 3)
    alone = [h for h in hits if h["sources"] == ["keywords"]]
    assert len(alone) == 1 and alone[0]["path"] == "/imported/birds/kingfisher.jpg"
    assert alone[0]["score"] == pytest.approx(-1.0, abs=1e-4) and alone[0]["modality"] == "vision"
    # Calibrated: the opposite of the query is as unrelated as can be; its name, the best (only) word
    # match, adds 1, which no relevance by meaning alone reaches.
    assert alone[0]["relevance"] == pytest.approx(0.0, abs=1e-6) and names(hits)[0] == "kingfisher.jpg"
    assert all(0 < h["relevance"] < 1 for h in hits[1:])
    # Filters hold for it too: outside the path asked for, it is not found.
    under = query(lib_args, "--text", "kingfisher", "--target", "image", "--path-prefix", "/imported/pics")
    assert "kingfisher.jpg" not in names(under)


def test_words_go_with_their_file_and_a_schema_3_library_gets_them_on_upgrade(library, lib_args):
    db = Path(lib_args[1]) / "ibsearch.db"
    (library / "notes" / "heron.txt").unlink()
    assert run_json("ingest", library, *lib_args)["removed"] == 1
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM words").fetchone()
            == conn.execute("SELECT count(*) FROM files").fetchone()
        )
        assert (
            conn.execute("SELECT count(*) FROM words WHERE words MATCH 'heron'").fetchone()[0] == 1
        )  # the picture
        # As ibsearch 3 left it: no words table.
        conn.execute("DROP TABLE words")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    assert run_json("info", *lib_args)["files"] == 8  # upgraded on open, nothing lost
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "4"
    deep = query(lib_args, "--text", RARE)
    assert names(deep)[0] == "long.txt" and deep[0]["sources"] == ["meaning", "keywords"]
    assert names(query(lib_args, "--text", "lagoon", "--target", "image"))[0] == "grey_heron.jpg"
    checked = run_json("check", *lib_args)
    assert checked["ok"] is True and checked["repaired"] == []
    # A words table out of step with the files is noticed by check, and written again.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM words WHERE rowid = (SELECT id FROM files WHERE path LIKE '%long.txt')")
    from click.testing import CliRunner

    from ibsearch.cli import cli

    untouched = CliRunner().invoke(cli, ["check", "--no-repair", *lib_args])
    assert untouched.exit_code == 1 and "words: 1 file(s) without words" in untouched.output
    mended = run_json("check", *lib_args)
    assert mended["ok"] is True and mended["repaired"] == [
        "words: 1 file(s) without words and 0 row(s) of no file: written again from the files and their"
        " passages"
    ]
    assert names(query(lib_args, "--text", RARE))[0] == "long.txt"


def test_a_document_s_text_is_each_character_of_its_passages_once():
    from ibsearch.store import PassageSpan

    text = "One. Two. Three.\n\nFour."
    spans = [PassageSpan(0, 9, text[0:9]), PassageSpan(5, 16, text[5:16]), PassageSpan(18, 23, text[18:23])]
    assert document_text(spans) == "One. Two. Three.\n\nFour."
    assert document_text([]) == ""


def test_fusion_adds_the_words_strength_to_a_relevance_and_falls_back_to_ranks_without_one():
    meaning = [
        Hit("a", 0.9, "vision", file_id=1),
        Hit("b", 0.8, "vision", file_id=2),
        Hit("c", 0.7, "vision", file_id=3),
    ]
    alone = [Hit("d", 0.1, "vision", file_id=4, sources=("keywords",))]
    ranked = [(3, 4.0), (4, 2.0)]  # c holds the words best, d half as well
    by_ranks = fuse_rankings(meaning, alone, ranked)  # no relevance: reciprocal rank fusion
    assert [h.path for h in by_ranks] == ["c", "a", "b", "d"]
    assert [h.sources for h in by_ranks] == [
        ("meaning", "keywords"),
        ("meaning",),
        ("meaning",),
        ("keywords",),
    ]
    relevant = [replace(h, relevance=r) for h, r in zip(meaning + alone, (0.9, 0.3, 0.7, 0.2), strict=True)]
    by_relevance = fuse_rankings(relevant[:3], relevant[3:], ranked)  # 0.7 + 1, 0.9, 0.2 + 0.5, 0.3
    assert [h.path for h in by_relevance] == ["c", "a", "d", "b"]


def test_a_word_held_by_too_many_files_to_rank_finds_and_raises_nothing(library, lib_args):
    """Ranking every holder of a common word (bm25 over all of them) would cost a query seconds in a
    big library: a word or phrase held by more than ``ranked_at_most`` files is left to meaning."""
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib, Searcher(lib) as searcher:
        both = {Path(h.path).name: h.sources for h in searcher.query(text="heron lagoon", k=20)}
        assert "keywords" in both["heron.txt"] and "keywords" in both["grey_heron.jpg"]
        searcher.keywords.ranked_at_most = 1  # "heron" is held by two files, "lagoon" by one
        rare = {Path(h.path).name: h.sources for h in searcher.query(text="heron lagoon", k=20)}
        assert rare["heron.txt"] == ("meaning",) and "keywords" in rare["grey_heron.jpg"]
        assert all(h.sources == ("meaning",) for h in searcher.query(text="heron", k=20))
        # An exclusion holds however many files hold the word.
        assert "heron.txt" not in [Path(h.path).name for h in searcher.query(text="sea -heron", k=20)]
