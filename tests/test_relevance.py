"""Calibrated relevance (issue 21) on libraries built through ``import``, with vectors whose score scales
differ per pair of modalities as ImageBind's do.

How the scales are modelled: every vector is a modality's **offset** (a direction all items of that
modality share, part of it common to all modalities) plus its **content** (a unit vector in a 64-d
subspace, drawn around one of 40 topics, the same for a picture and a note of one scene) plus a little
noise. The offsets make unrelated pairs score on different scales, as ImageBind's figures show:
text-to-text about 0.61, text-to-vision 0.17, audio-to-vision 0.11, imu-to-audio 0.06 (the means,
asserted below), while a true match adds the shared content on top. A query of a kind is a vector
made the same way (a text query: the text offset and its content).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_json

from ibsearch.engine import Library
from ibsearch.hits import assemble_hits
from ibsearch.ingest.commit import PREPROCESS_VERSION
from ibsearch.options import SearchOptions
from ibsearch.relevance import Calibration, RelevanceScale
from ibsearch.search import Searcher
from ibsearch.shards import ShardRow, ShardWriter

DIM = 1024  # the tiny test model's embedding width
MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")
#: Each modality's offset: its length, and the share of it along the direction common to all.
OFFSETS = {"vision": (0.8, 0.35), "text": (1.1, 0.3), "audio": (0.9, 0.15), "depth": (0.85, 0.4),
           "thermal": (0.75, 0.3), "imu": (0.7, 0.1)}  # fmt: skip
PER_MODALITY = 1500  # unrelated library items of each modality
HELD_OUT = 3000  # unrelated items of each modality that are not in the library
SUNSET = "/photos/sunset-over-the-sea.jpg"
#: The threshold's documented meaning, checked with these margins: at min_relevance r, the share of
#: held-out unrelated items of a modality that reach it is 1 - r, within this much either way.
MARGINS = {0.8: 0.04, 0.95: 0.02, 0.99: 0.008}


class Space:
    """An embedding space with ImageBind-like per-modality offsets (see the module's docstring)."""

    def __init__(self) -> None:
        rng = np.random.default_rng(21)
        # Row 0: the direction common to every offset; rows 1-6: each modality's own; 8-71: content.
        self.basis = np.linalg.qr(rng.standard_normal((DIM, 72)))[0].T.astype(np.float32)
        self.topics = rng.standard_normal((40, 64)).astype(np.float32)

    def offset(self, modality: str) -> np.ndarray:
        length, common = OFFSETS[modality]
        own = self.basis[1 + MODALITIES.index(modality)]
        return length * (np.sqrt(common) * self.basis[0] + np.sqrt(1 - common) * own)

    def contents(self, rng: np.random.Generator, n: int) -> np.ndarray:
        topics = self.topics[rng.integers(len(self.topics), size=n)]
        z = topics + rng.standard_normal((n, 64)).astype(np.float32)
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    def items(self, rng: np.random.Generator, modality: str, contents: np.ndarray) -> np.ndarray:
        """Unit vectors of ``modality`` items showing ``contents`` ``(n, 64)``."""
        noise = rng.standard_normal((len(contents), DIM)).astype(np.float32) * np.float32(0.55 / np.sqrt(DIM))
        x = self.offset(modality) + 0.7 * (contents @ self.basis[8:]) + noise
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


SPACE = Space()


@pytest.fixture(scope="module")
def scaled_library(tmp_path_factory: pytest.TempPathFactory, tiny_card: str) -> dict:
    """A library imported from one shard: PER_MODALITY unrelated items of every modality and one
    picture of the sunset that the ``query`` (a text query) describes; ``held_out``: more unrelated
    items of every modality, not in the library."""
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("scaled")
    sunset = SPACE.contents(rng, 1)
    rows, blocks = [], []
    for m in MODALITIES:
        blocks.append(SPACE.items(rng, m, SPACE.contents(rng, PER_MODALITY)))
        rows += [ShardRow(f"/{m}/{i:05d}.item", m) for i in range(PER_MODALITY)]
    blocks.append(SPACE.items(rng, "vision", sunset))
    rows.append(ShardRow(SUNSET, "vision"))
    with ShardWriter(folder / "all.parquet", model_id="tiny-test", dim=DIM,
                     preprocess_version=PREPROCESS_VERSION) as writer:  # fmt: skip
        writer.write(rows, np.concatenate(blocks))
    lib_args = ["--library", str(folder / "lib"), "--model", tiny_card, "--device", "cpu"]
    assert run_json("import", folder / "all.parquet", *lib_args)["vectors"] == len(rows)
    held_out = {m: SPACE.items(rng, m, SPACE.contents(rng, HELD_OUT)) for m in MODALITIES}
    query = SPACE.items(rng, "text", sunset)[0]
    return {"lib_args": lib_args, "held_out": held_out, "query": query}


def test_the_modelled_space_has_imagebind_like_scales_per_pair(scaled_library):
    held = scaled_library["held_out"]

    def mean(a: str, b: str) -> float:
        return float((held[a][:300] @ held[b][300:].T).mean())

    assert mean("text", "text") > 0.5 > mean("text", "vision") > mean("audio", "vision")
    assert mean("audio", "vision") > mean("imu", "audio")


def test_a_picture_that_truly_matches_comes_before_notes_that_merely_share_the_text_offset(scaled_library):
    lib_args, query = scaled_library["lib_args"], scaled_library["query"]
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        searcher = Searcher(lib)
        # By raw cosine the picture is not even among the first 24: every note shares the text offset.
        notes = searcher.query(vector=query, k=24, target="text", fold=False, keywords=False)
        picture = lib.store.vectors.of_file(SUNSET)[0].vector
        assert len(notes) == 24 and min(h.score for h in notes) > float(picture @ query)
        hits = searcher.query(vector=query, k=25, fold=False, keywords=False)
    assert hits[0].path == SUNSET and hits[0].relevance is not None and hits[0].relevance > 0.999
    relevances = [h.relevance for h in hits]
    assert all(r is not None for r in relevances) and relevances == sorted(relevances, reverse=True)
    assert len({h.modality for h in hits}) > 2  # the others interleave across modalities, not only notes


def test_an_exact_index_s_sampled_scores_come_from_its_search_and_give_the_same_relevance(scaled_library):
    """The search of an exact index hands calibration its scores at the sampled vectors (no second
    product over them): the same relevance as scoring the sample apart."""
    lib_args, query = scaled_library["lib_args"], scaled_library["query"]
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        searcher = Searcher(lib)
        calibration = Calibration(lib, sample_size=500)  # fewer than each index holds: a true sample
        opts = SearchOptions(k=40)
        keys = searcher.retrieval.keys(opts)
        sampled = calibration.asking(keys)
        found = searcher.retrieval.search(query, keys, opts, set(), searcher.tuning, sampled)
        for key in keys:
            given = sampled[key]
            assert lib.index(key).spec == "Flat" and given.scores is not None and len(given.ids) == 500
            _, vectors = lib.store.vectors.by_id(given.ids)
            np.testing.assert_allclose(np.sort(given.scores[0]), np.sort(vectors @ query), atol=1e-5)
        hits = assemble_hits(lib.store, found, None, per_file=0)
        from_search = calibration.apply(query, hits, opts, sampled)
        apart = calibration.apply(query, hits, opts)
    assert [h.path for h in from_search] == [h.path for h in apart] and len(apart) == 40 * len(keys)
    np.testing.assert_allclose([h.relevance for h in from_search], [h.relevance for h in apart], rtol=1e-5)


def _queries() -> list[tuple[str, np.ndarray]]:
    """Queries of every kind, and a weighted mix (0.7 text + 0.3 audio, as the query vector sums them)."""
    rng = np.random.default_rng(77)
    queries = [(m, q) for m in MODALITIES for q in SPACE.items(rng, m, SPACE.contents(rng, 4))]
    for _ in range(4):
        content = SPACE.contents(rng, 1)
        mix = 0.7 * SPACE.items(rng, "text", content)[0] + 0.3 * SPACE.items(rng, "audio", content)[0]
        queries.append(("text+audio", mix / np.linalg.norm(mix)))
    return queries


def test_min_relevance_lets_through_the_promised_share_of_held_out_unrelated_items_for_every_pair(
    scaled_library,
):
    lib_args, held_out = scaled_library["lib_args"], scaled_library["held_out"]
    shares: dict[tuple[str, str, float], list[float]] = {}
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        calibration = Searcher(lib).calibration
        for kind, query in _queries():
            for target in MODALITIES:
                relevance = calibration.scale(query, target).relevance(held_out[target] @ query)
                for r in MARGINS:
                    shares.setdefault((kind, target, r), []).append(float((relevance >= r).mean()))
    assert len(shares) == 7 * 6 * len(MARGINS)  # every (query kind, target) pair, the mix too
    wrong = {
        pair: round(float(np.mean(found)), 4)
        for pair, found in shares.items()
        if abs(np.mean(found) - (1 - pair[2])) > MARGINS[pair[2]]
    }
    assert not wrong, wrong


def test_min_relevance_cuts_hits_and_levels_are_reported_on_the_command_line(scaled_library):
    lib_args = scaled_library["lib_args"]
    like = "/text/00007.item"
    options = ["--like", like, "--target", "text", "--target", "audio", "--k", 60]
    options += ["--no-fold", "--no-keywords"]
    every = run_json("query", *options, *lib_args)
    high = run_json("query", *options, "--min-relevance", "high", *lib_args)
    assert every and all(h["relevance"] is not None for h in every)
    assert [h["relevance"] for h in every] == sorted((h["relevance"] for h in every), reverse=True)
    assert high == [h for h in every if h["relevance"] >= 0.99]
    assert 0 < len(high) < len(every) and {h["level"] for h in high} == {"high"}
    medium = [h for h in every if 0.95 <= h["relevance"] < 0.99]
    assert medium and {h["level"] for h in medium} == {"medium"}


def test_the_query_s_own_vector_is_the_most_relevant_hit_even_in_a_modality_of_a_few_items():
    # A few pictures, one of them the query itself (--like): the normal fitted to them spreads wide,
    # while a few notes crowd together, so that a note far above them would otherwise outrank it.
    pictures = RelevanceScale.of(np.array([0.2, 0.25, 0.3, 1.0]))
    notes = RelevanceScale.of(np.array([0.10, 0.11, 0.12, 0.13]))
    assert pictures.relevance(np.array([1.0]))[0] == 1.0
    assert notes.log_share_above(np.array([0.6]))[0] > pictures.log_share_above(np.array([1.0]))[0]
