"""``Searcher`` in parts: a term cache plugs into its query embedder (what the server's text cache
does), the command line's two backends take the same ``(terms, SearchOptions)``, and how a filter
reaches an exact index (its best hits first, or the filter's vectors listed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import run_json
from test_scale import exact_top
from test_transfer import mixture, write_shard

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


def test_an_exact_index_answers_a_broad_or_a_one_percent_date_range_from_its_best_hits_and_lists_a_narrow_one(
    lib_args, tmp_path, monkeypatch
):
    n, day, start = 3000, 86_400.0, 1.6e9
    vectors = mixture(n, seed=41)
    paths = [f"/dated/{i:05d}.jpg" for i in range(n)]
    when = start + day * np.arange(n)  # one a day, in no relation to the vectors
    metadata = [{"taken": float(w), "taken_from": "exif"} for w in when]
    assert run_json(
        "import", write_shard(tmp_path / "d.parquet", paths, vectors, metadata=metadata), *lib_args
    )
    queries = mixture(10, seed=42)
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib, Searcher(lib) as searcher:
        assert lib.index("vision").spec == "Flat"
        listed: list[bool] = []  # whether each select_ids call listed every vector in range
        select = lib.store.vectors.select_ids
        monkeypatch.setattr(
            lib.store.vectors,
            "select_ids",
            lambda *a, **kw: listed.append(kw.get("among") is None) or select(*a, **kw),
        )
        for share in (0.5, 0.01, 0.001):
            first = n // 3
            last = first + round(n * share) - 1
            allowed = (np.arange(n) >= first) & (np.arange(n) <= last)
            listed.clear()
            for q, best in zip(queries, exact_top(vectors, queries, 10, allowed), strict=True):
                hits = searcher.query(vector=q, k=10, after=when[first], before=when[last], fold=False)
                exact = [paths[i] for i in best if allowed[i]]  # the very hits, in order
                assert [h.path for h in hits] == exact, share
            # 50 %: 10 of the first 160 candidates pass; 1 %: of the 2,560 the product ranked; 0.1 %: listed
            assert sum(listed) == (len(queries) if share < 0.01 else 0), share
