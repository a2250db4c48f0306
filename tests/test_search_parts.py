"""``Searcher`` in parts: a term cache plugs into its query embedder (what the server's text cache
does), and the command line's two backends take the same ``(terms, SearchOptions)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import run_json

from ibsearch.engine import Library
from ibsearch.options import SearchOptions
from ibsearch.query_vector import Compute
from ibsearch.search import Searcher
from ibsearch.terms import Term


class Remembering:
    """A term cache that keeps every vector it computed and counts how many it did."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], np.ndarray] = {}
        self.computed = 0

    def vector(self, term: Term, compute: Compute) -> np.ndarray:
        key = (term.kind, str(term.value))
        if key not in self.vectors:
            self.vectors[key] = compute(term)
            self.computed += 1
        return self.vectors[key]


def test_a_term_cache_is_asked_for_each_term_and_changes_no_hit(media_dir: Path, lib_args: list[str]):
    run_json("ingest", media_dir, *lib_args)
    photo = media_dir / "photos" / "photo_640x480.jpg"
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        plain = Searcher(lib).query(text="a dog", image=str(photo), k=5)
        cache = Remembering()
        cached = Searcher(lib, cache=cache)
        assert cached.query(text="a dog", image=str(photo), k=5) == plain
        assert cached.query(text="a dog", image=str(photo), k=5) == plain
        assert cache.computed == 2  # the text and the image, once each
        options = SearchOptions(k=5, path_prefix=str(media_dir / "photos"))
        terms = [Term("text", "a dog")]
        assert cached.search(terms, options) == Searcher(lib).search(terms, options)
        assert cache.computed == 2
