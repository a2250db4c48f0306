"""The CLIP BPE tokenizer gives exactly the reference ImageBind token ids."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest
import torch

from ibsearch.encoder import preprocess
from ibsearch.encoder.media.tokenizer import (
    CONTEXT_LENGTH,
    EOT_ID,
    SOT_ID,
    VOCAB_FILE,
    VOCAB_SHA256,
    VOCAB_SIZE,
    Tokenizer,
    default_tokenizer,
    tokenize,
)
from ibsearch.errors import UsageError

FIXTURE = Path(__file__).parent / "fixtures" / "text_tokens.json"


def _fixture_rows() -> list[dict]:
    text = FIXTURE.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_shipped_vocabulary_is_the_clip_merges_file() -> None:
    raw = resources.files("ibsearch.encoder.media").joinpath(VOCAB_FILE).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == VOCAB_SHA256
    assert len(default_tokenizer().vocab) == VOCAB_SIZE


def test_token_ids_equal_the_reference_for_every_fixture_string() -> None:
    rows = _fixture_rows()
    assert len(rows) >= 30
    ids = tokenize([row["text"] for row in rows])
    for row, got in zip(rows, ids, strict=True):
        assert got.tolist() == row["ids"], row["text"]


def test_long_text_keeps_75_tokens_and_ends_with_eot_at_the_last_slot() -> None:
    ids = tokenize(["word " * 200])[0]
    assert ids[0] == SOT_ID
    assert ids[-1] == EOT_ID
    assert (ids[1:-1] != 0).all()
    assert (ids[1:-1] != EOT_ID).all()


def test_a_literal_end_of_text_marker_becomes_the_special_id() -> None:
    ids = tokenize(["a photo <|endoftext|> of a bird"])[0]
    assert int(ids.argmax()) == 3
    assert ids[3] == EOT_ID


def test_text_batch_is_int64_with_one_row_per_string() -> None:
    batch = preprocess.text(["a dog", "", "a cat playing piano"])
    assert batch.shape == (3, CONTEXT_LENGTH)
    assert batch.dtype == torch.int64
    assert batch[1, :3].tolist() == [SOT_ID, EOT_ID, 0]


def test_text_rejects_a_bare_string() -> None:
    with pytest.raises(UsageError, match="list of strings"):
        preprocess.text("a dog")  # type: ignore[arg-type]


def test_load_of_one_text_has_no_batch_dimension() -> None:
    assert preprocess.load("text", "a dog").shape == (CONTEXT_LENGTH,)


def test_the_vocabulary_is_loaded_once_per_process() -> None:
    assert default_tokenizer() is default_tokenizer()


def test_a_tokenizer_can_be_built_from_an_explicit_merges_file() -> None:
    path = resources.files("ibsearch.encoder.media").joinpath(VOCAB_FILE)
    tok = Tokenizer.from_file(str(path))
    assert torch.equal(tok(["Hello, World!"]), tokenize(["Hello, World!"]))


def test_decode_reverses_encode_up_to_cleaning() -> None:
    tok = default_tokenizer()
    ids = tok(["A Photo of  two dogs &amp; a café"])[0].tolist()
    assert tok.decode(ids) == "a photo of two dogs & a café"
