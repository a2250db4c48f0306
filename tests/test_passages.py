"""Long text as passages: windows the text tower reads whole, stored as text segments with their spans."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import run_json
from test_documents import pdf_bytes
from test_import_trust import shard_table

from ibsearch.cli import cli
from ibsearch.encoder.embed import embed_input
from ibsearch.encoder.media.passages import OVERLAP_TOKENS, WINDOW_TOKENS, cut_passages
from ibsearch.encoder.media.text import DocumentText, read_document
from ibsearch.encoder.media.tokenizer import default_tokenizer, tokenize
from ibsearch.encoder.runtime import Encoder
from ibsearch.encoder.weights.cards import resolve_model
from ibsearch.modality import TEXT, FileKind

WORDS = "alpha beta gamma delta river stone cloud maple orbit quiet lantern meadow copper hollow".split()
HERON = "The violet heron counts seventeen lanterns at midnight."


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 22))).capitalize() + rng.choice(".!?")


def paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(sentence(rng) for _ in range(rng.randint(1, 14))) for _ in range(count)]


def note_with(middle: str, size: int, seed: int = 5) -> str:
    """A note of about ``size`` characters of generated paragraphs with ``middle`` as a paragraph of its
    own halfway through."""
    rng = random.Random(seed)
    head: list[str] = []
    while sum(len(p) + 2 for p in head) < size // 2:
        head += paragraphs(rng, 1)
    tail: list[str] = []
    while sum(len(p) + 2 for p in head + tail) < size:
        tail += paragraphs(rng, 1)
    return "\n\n".join([*head, middle, *tail]) + "\n"


def tokens(text: str) -> int:
    return len(default_tokenizer().encode(text))


def test_every_window_fits_the_text_tower_and_is_its_span_of_the_text():
    rng = random.Random(1)
    long_sentence = " ".join(rng.choice(WORDS) for _ in range(120))  # no full stop: cut between words
    long_word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(400))
    text = "\n\n".join([*paragraphs(rng, 6), long_sentence, long_word, "Ünïcødé façade — 東京の夜景。 ✨🎉"])
    passages = cut_passages(DocumentText("  \n" + text + "\n\n  "))
    assert passages == cut_passages(DocumentText("  \n" + text + "\n\n  "))  # deterministic
    covered = set()
    for p in passages:
        assert p.text == ("  \n" + text)[p.start : p.end] and p.text == p.text.strip()
        assert 1 <= tokens(p.text) <= WINDOW_TOKENS
        assert tokenize(p.text)[0].count_nonzero() <= WINDOW_TOKENS + 2  # start, the text whole, end
        covered.update(range(p.start, p.end))
    assert all(i in covered for i, c in enumerate("  \n" + text) if not c.isspace())
    assert [p.start for p in passages] == sorted(p.start for p in passages)


def test_a_paragraph_that_fits_is_one_window_and_no_window_crosses_a_paragraph_break():
    rng = random.Random(2)
    paras = paragraphs(rng, 40)
    text = "\n\n".join(paras)
    passages = cut_passages(DocumentText(text))
    starts = [text.index(p) for p in paras]
    spans = [(s, s + len(p)) for s, p in zip(starts, paras, strict=True)]
    for p in passages:
        assert any(a <= p.start and p.end <= b for a, b in spans), p
    fitting = [p for p in paras if tokens(p) <= WINDOW_TOKENS]
    assert fitting and all(sum(q.text == p for q in passages) == 1 for p in fitting)


def test_the_windows_of_a_long_paragraph_are_whole_sentences_that_overlap():
    rng = random.Random(3)
    sentences = [sentence(rng) for _ in range(60)]
    text = " ".join(sentences)
    starts = {text.index(s) for s in sentences}
    ends = {text.index(s) + len(s) for s in sentences}
    passages = cut_passages(DocumentText(text))
    assert len(passages) > 5
    for before, after in zip(passages, passages[1:], strict=False):
        assert after.start in starts and before.end in ends
        assert before.start < after.start <= before.end + 1
        shared = text[after.start : before.end]
        last = text[max(s for s in starts if s < before.end) : before.end]
        if tokens(last) <= OVERLAP_TOKENS:  # the last sentence fits the overlap: the next window repeats it
            assert shared.endswith(last) and tokens(shared) <= OVERLAP_TOKENS


def test_a_passage_knows_its_page():
    pages = ["First page words. " * 3, "Second page. " * 40, "Third page here."]
    text = "\n\n".join(pages)
    starts = (0, len(pages[0]) + 2, len(pages[0]) + len(pages[1]) + 4)
    passages = cut_passages(DocumentText(text, starts))
    assert passages[0].page == 1 and passages[-1].page == 3 and passages[-1].text == "Third page here."
    assert {p.page for p in passages} == {1, 2, 3}


def test_a_sentence_in_the_middle_of_a_50_kb_note_is_found_as_its_passage_with_its_span(tmp_path, lib_args):
    notes = tmp_path / "notes"
    notes.mkdir()
    text = note_with(HERON, 50_000)
    (notes / "long.txt").write_text(text, encoding="utf-8")
    (notes / "short.txt").write_text("A dog barking in the park.", encoding="utf-8")
    summary = run_json("ingest", notes, *lib_args)
    assert summary["added"] == 2 and not summary["failed"]
    # The sentence is a paragraph of its own: exactly one window's text, so the query's 77 token ids are
    # that window's, and the same weights give it the same vector.
    hits = run_json("query", "--text", HERON, "--target", "text", "--segments", *lib_args)
    best = hits[0]
    start = text.index(HERON)
    assert best["path"] == str(notes / "long.txt") and best["score"] > 0.9999
    span = {"text": HERON, "char_start": start, "char_end": start + len(HERON), "page": None}
    assert best["passage"] == span
    # A note of one passage is its own file-level vector: found as a passage of the whole text too.
    short = [h for h in hits if h["path"].endswith("short.txt")]
    assert short and short[0]["passage"]["char_start"] == 0 and short[0]["passage"]["char_end"] == 26
    files = run_json("query", "--text", HERON, "--target", "text", *lib_args)
    assert all("passage" not in h for h in files)  # file-level hits are the head, as before
    shown = CliRunner().invoke(cli, ["query", "--text", HERON, "--target", "text", "--segments", *lib_args])
    lines = shown.output.splitlines()
    assert shown.exit_code == 0 and f"long.txt [characters {start}-{start + len(HERON)}]  " in lines[1]
    assert lines[2].strip() == HERON


def test_a_sentence_on_page_3_is_found_as_the_passage_of_that_page(tiny_card):
    # Paged text as a PDF reader gives it (media.text.DocumentText with page starts), embedded as ingest does.
    rng = random.Random(4)
    pages = ["\n\n".join(paragraphs(rng, 8)) for _ in range(2)]
    pages.append("\n\n".join([*paragraphs(rng, 3), HERON, *paragraphs(rng, 3)]))
    text = "\n\n".join(pages)
    starts = (0, len(pages[0]) + 2, len(pages[0]) + len(pages[1]) + 4)
    passages = cut_passages(DocumentText(text, starts))
    encoder = Encoder(resolve_model(tiny_card), device="cpu", precision="fp32")
    vectors = np.concatenate([encoder.encode(TEXT, tokenize([p.text for p in passages[i : i + 8]]))
                              for i in range(0, len(passages), 8)])  # fmt: skip
    query = embed_input(encoder, FileKind.TEXT, TEXT, HERON.encode())  # as a text query is read
    best = passages[int(np.argmax(vectors @ query))]
    assert (best.page, best.start, best.end) == (3, text.index(HERON), text.index(HERON) + len(HERON))
    assert float(np.max(vectors @ query)) > 0.9999


def test_a_sentence_on_page_3_of_a_generated_pdf_is_found_as_that_page_s_passage(tmp_path, lib_args):
    docs = tmp_path / "docs"
    docs.mkdir()
    pdf = docs / "manual.pdf"
    pages = ["Installing the pump and its filters.", "Cleaning the valves every spring.", HERON]
    pdf.write_bytes(pdf_bytes(pages))
    summary = run_json("ingest", docs, *lib_args)
    assert summary["added"] == 1 and not summary["failed"]
    # Each page is a paragraph of its own (pages become blank lines), so page 3 is one window's text.
    doc = read_document(pdf)
    start = doc.text.index(HERON)
    assert doc.page_of(start) == 3
    best = run_json("query", "--text", HERON, "--target", "text", "--segments", *lib_args)[0]
    assert best["path"] == str(pdf) and best["score"] > 0.9999
    assert best["passage"] == {"text": HERON, "char_start": start, "char_end": start + len(HERON), "page": 3}


def test_a_copy_of_a_note_reuses_its_passages_and_a_library_of_schema_2_gets_them_on_the_next_ingest(
    tmp_path, lib_args
):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.txt").write_text(note_with(HERON, 8_000), encoding="utf-8")
    first = run_json("ingest", notes, *lib_args)
    shutil.copy(notes / "long.txt", notes / "copy.txt")
    copied = run_json("ingest", notes, *lib_args)
    assert copied["added"] == 1 and copied["encoded"] == 0
    db = Path(lib_args[1]) / "ibsearch.db"
    with sqlite3.connect(db) as conn:
        per_file = conn.execute(
            "SELECT f.path, count(*), group_concat(p.char_start) FROM passages p JOIN vectors v"
            " ON v.id = p.vector_id JOIN files f ON f.id = v.file_id GROUP BY f.path ORDER BY f.path"
        ).fetchall()
        assert len(per_file) == 2 and per_file[0][1:] == per_file[1][1:] and per_file[0][1] > 3
        # As ibsearch left it before passages: schema 2, no passages table, no text segments.
        conn.execute("DROP TABLE passages")
        conn.execute("DELETE FROM vectors WHERE modality = 'text.segments'")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    (Path(lib_args[1]) / "text.segments.faiss").unlink(missing_ok=True)
    assert run_json("info", *lib_args)["files"] == 2  # upgraded on open, nothing lost
    again = run_json("ingest", notes, *lib_args)
    assert again["updated"] == 2 and again["encoded"] == 2 * first["encoded"]
    assert run_json("ingest", notes, *lib_args)["unchanged"] == 2  # and then nothing more to do
    hits = run_json("query", "--text", HERON, "--target", "text", "--segments", *lib_args)
    assert hits[0]["passage"]["text"] == HERON and hits[0]["score"] > 0.9999
    assert run_json("check", *lib_args)["ok"] is True


def test_a_note_unreadable_past_its_head_keeps_the_passages_of_its_head(tmp_path, lib_args):
    notes = tmp_path / "notes"
    notes.mkdir()
    head = note_with(HERON, 70_000).encode()
    (notes / "odd.txt").write_bytes(head + b"\n\nLatin-1 after all: caf\xe9 au lait, and more words.\n")
    summary = run_json("ingest", notes, *lib_args)
    assert summary["added"] == 1 and not summary["failed"]
    hits = run_json("query", "--text", HERON, "--target", "text", "--segments", *lib_args)
    best = hits[0]["passage"]
    assert best["text"] == HERON and best["char_start"] == head.decode().index(HERON)


def test_a_shard_row_of_passages_is_refused_saying_why(lib_args, tmp_path):
    shard = shard_table(tmp_path / "passages.parquet", {
        "path": ["/n/a.txt", "/n/b.txt", "/n/b.txt"], "modality": ["text", "text", "text.segments"],
    })  # fmt: skip
    summary = run_json("import", shard, *lib_args)
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert summary["added"] == 1 and set(failed) == {"/n/b.txt"}
    assert "shards carry no passages" in failed["/n/b.txt"] and "ibsearch ingest" in failed["/n/b.txt"]


def test_like_a_note_means_its_file_vector_not_its_passages(tmp_path, lib_args):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.txt").write_text(note_with(HERON, 8_000), encoding="utf-8")
    (notes / "short.txt").write_text("A dog barking in the park.", encoding="utf-8")
    run_json("ingest", notes, *lib_args)
    # The note's own file vector is the query: it comes back first at 1.0 among the files of the library.
    hits = run_json("query", "--like", notes / "long.txt", "--include-like", "--target", "text", *lib_args)
    assert hits[0]["path"] == str(notes / "long.txt") and hits[0]["score"] > 0.9999
