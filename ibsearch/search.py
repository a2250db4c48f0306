"""Any-to-any search: embed the query terms, combine them, search the target modalities' indexes.

Combination rule (documented in the README): each term's vector is L2-normalized, multiplied by its
weight, summed, and the sum is L2-normalized again. Filters become the set of allowed vector ids,
which FAISS applies inside the search (an ID selector), so ``k`` hits come back whenever ``k``
matching vectors exist. On an approximate index (a big library) the filter is first tried on the
best ``post_filter_factor`` x k hits of an unfiltered search: a broad filter keeps k of them, at the cost
of a look-up per candidate instead of listing every matching vector (a second at a million);
a narrow one falls back to the filtered search. How (``post_filter``...) is a
:class:`~ibsearch.index.tuning.SearchTuning`, given to :class:`Searcher`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .closing import Closing
from .errors import UsageError
from .files import path_fields
from .index.tuning import DEFAULT_TUNING, SearchTuning
from .library import Library
from .locations import anchored_glob, anchored_prefix
from .modality import (
    AUDIO,
    DEPTH,
    IMU,
    INDEX_KEYS,
    MODALITIES,
    QUERY_KINDS,
    TEXT,
    THERMAL,
    VISION,
    FileKind,
    canonical,
    modality_of_key,
    segments_key,
)
from .terms import LIKE, VECTOR, Term, terms_from_inputs


@dataclass(frozen=True)
class Hit:
    """One result: a file (or a stretch of it, with ``start``/``end`` in seconds) and its score."""

    path: str
    score: float
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **path_fields(self.path),
            "score": round(float(self.score), 6),
            "modality": self.modality,
            "metadata": self.metadata,
        }
        if self.start is not None:
            data["start"], data["end"] = self.start, self.end
        return data


@dataclass(frozen=True)
class SearchOptions:
    """Where to search and what comes back (the same for every way of asking: CLI, Python, HTTP)."""

    targets: list[str] | None = None  # modalities to search (aliases such as "image" accepted); None: all
    k: int = 10  # number of hits, best first across targets
    path_glob: str | None = None  # only files whose readable path matches this SQLite GLOB
    path_prefix: str | None = None  # only files equal to this path or under it as a folder
    min_duration: float | None = None  # only media at least this many seconds long
    max_duration: float | None = None  # only media at most this many seconds long
    segments: bool = False  # timestamped segments of long media (best per file) instead of files
    include_like: bool = False  # also return the files of ``like`` terms (left out: "more like this")

    def __post_init__(self) -> None:
        # Relative paths mean the same in both filters: relative to the current folder (see README).
        if self.path_prefix is not None:
            object.__setattr__(self, "path_prefix", anchored_prefix(self.path_prefix))
        if self.path_glob is not None:
            object.__setattr__(self, "path_glob", anchored_glob(self.path_glob))
        if not isinstance(self.k, int) or self.k < 1:
            raise UsageError(f"k must be a whole number of hits, at least 1, got {self.k!r}")
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or math.isnan(value)):
                option = "--" + name.replace("_", "-")
                raise UsageError(f"{option} must be a number of seconds, got {value!r}")

    def duration_range(self) -> dict[str, tuple[float | None, float | None]]:
        """The media-info ranges to filter on ({} when none is set)."""
        if self.min_duration is None and self.max_duration is None:
            return {}
        return {"duration": (self.min_duration, self.max_duration)}


class Searcher(Closing):
    """Query a library: ``Searcher().query(text="a dog barking", target="vision")``.

    ``library`` is an opened :class:`~ibsearch.library.Library` or a library directory (default: the
    default library); ``model``, ``checkpoint``, ``device`` and ``precision`` are as for
    :meth:`Library.open`. Only the towers that the query's inputs need are loaded.

    ``search_device`` says where exact searches run: None (default) follows the library's device, so
    with a CUDA GPU ("auto" or "cuda") big exact indexes are searched there by a torch matrix product
    (approximate ones with faiss-gpu when it is installed), and on "cpu" by FAISS; "cpu", "cuda" or
    "auto" given here take that torch path on that device. ``tuning`` says how its searches are run
    (benchmarks compare settings with it; the default is what was measured best).
    """

    def __init__(
        self,
        library: Library | str | os.PathLike[str] | None = None,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        search_device: str | None = None,
        tuning: SearchTuning = DEFAULT_TUNING,
    ) -> None:
        if isinstance(library, Library):
            self.library = library
            self._owned = False
        else:
            self.library = Library.open(
                library, model=model, checkpoint=checkpoint, device=device, precision=precision
            )
            self._owned = True
        follow = None if str(self.library.device).lower() == "cpu" else self.library.device
        self.library.indexes.search_device = follow if search_device is None else search_device
        self.tuning = tuning

    def close(self) -> None:
        if self._owned:
            self.library.close()

    # ------------------------------------------------------------------ the Python API

    def query(
        self,
        text: Any = None,
        image: Any = None,
        audio: Any = None,
        *,
        like: Any = None,
        vector: Any = None,
        vision: Any = None,
        video: Any = None,
        depth: Any = None,
        thermal: Any = None,
        imu: Any = None,
        target: str | list[str] | None = None,
        k: int = 10,
        path_glob: str | None = None,
        path_prefix: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        segments: bool = False,
        include_like: bool = False,
    ) -> list[Hit]:
        """Search with any mix of inputs; each keyword takes one input, a list, or ``weighted(x, w)``.

        Inputs: ``text`` strings; ``image``/``vision`` paths, bytes, PIL images or HxWx3 uint8
        arrays; ``audio`` paths or bytes; ``like`` paths of ingested files (their stored vectors);
        ``vector`` raw ``(dim,)`` arrays in the library's embedding space (weighted like the others).
        ``video`` paths (the picture of a video); ``depth``/``thermal``/``imu`` paths, bytes or arrays
        (see the README's conventions). ``target``: modality name(s) to search (``image`` is
        an alias of ``vision``; default all). The other keywords are those of :class:`SearchOptions`.
        """
        inputs = [
            (TEXT, text, None), (VISION, image, None), (VISION, vision, None), (AUDIO, audio, None),
            (DEPTH, depth, None), (THERMAL, thermal, None), (IMU, imu, None), (LIKE, like, None),
            (VISION, video, FileKind.VIDEO), (VECTOR, vector, None),
        ]  # fmt: skip
        terms = [term for kind, given, media in inputs for term in terms_from_inputs(kind, given, media)]
        targets = [target] if isinstance(target, str) else target
        options = SearchOptions(
            targets, k, path_glob, path_prefix, min_duration, max_duration, segments, include_like
        )
        return self.search(terms, options)

    def search(self, terms: list[Term], options: SearchOptions | None = None) -> list[Hit]:
        """Search with parsed :class:`Term` objects (what the CLI calls)."""
        opts = options or SearchOptions()
        if not terms:
            raise UsageError(
                "a query needs at least one input: --text, --image, --audio, --video, --depth, --thermal, "
                "--imu or --like"
            )
        lib = self.library
        # Which indexes hold vectors, by one index seek each: counting a million rows per query would
        # cost more than an approximate search.
        held = set(lib.store.vectors.keys_present(INDEX_KEYS))
        present = [m for m in MODALITIES if m in held]
        if not present:
            raise UsageError(f"library {str(lib.root)!r} is empty; run 'ibsearch ingest PATH' first")
        wanted = [canonical(t) for t in opts.targets] if opts.targets else present
        query = self.embed(terms)
        excluded: set[int] = set()  # vectors of the files of --like terms: "more like this" means others
        if not opts.include_like:
            for term in terms:
                if term.kind == LIKE:
                    excluded |= {v.id for v in lib.store.vectors.of_file(os.path.abspath(str(term.value)))}
        found: list[tuple[float, int]] = []
        for modality in dict.fromkeys(wanted):
            key = segments_key(modality) if opts.segments else modality
            if key in held:
                found += self._search_index(key, query, opts, excluded)
        found.sort(key=lambda item: -item[0])
        return self._hits(found, opts)

    def _search_index(
        self, key: str, query: np.ndarray, opts: SearchOptions, excluded: set[int]
    ) -> list[tuple[float, int]]:
        """``(score, vector id)`` of the best matches in one index, filters applied inside the search
        (or, on an approximate index, to the best candidates of a search without them, when k pass)."""
        ranges = opts.duration_range()
        if not (opts.path_glob or opts.path_prefix or ranges):
            return self._top(key, query, opts.k, None, per_file=opts.segments, excluded=excluded)
        filters: dict[str, Any] = {"under": opts.path_prefix, "glob": opts.path_glob, "ranges": ranges}
        if self.tuning.post_filter and self.library.index(key).approximate:
            found = self._post_filtered(key, query, opts, excluded, filters)
            if found is not None:
                return found
        allowed = self.library.store.vectors.select_ids(key, **filters)
        if not len(allowed):
            return []
        return self._top(key, query, opts.k, allowed, per_file=opts.segments, excluded=excluded)

    def _post_filtered(
        self, key: str, query: np.ndarray, opts: SearchOptions, excluded: set[int], filters: dict[str, Any]
    ) -> list[tuple[float, int]] | None:
        """The filter applied to the best hits of an unfiltered search, or None when fewer than ``k``
        (files, with ``segments``) pass and the search must be filtered inside the index instead. The
        best k that pass among the index's top candidates are the best k that pass."""
        tuning = self.tuning
        want = opts.k * tuning.post_filter_factor
        if want > tuning.post_filter_most:
            return None  # a long list of hits: one unfiltered search that deep would cost more
        nprobe = self.library.index(key).nprobe * tuning.post_filter_nprobe
        found = self._top(key, query, want, None, per_file=opts.segments, excluded=excluded, nprobe=nprobe)
        store = self.library.store
        passing = set(
            store.vectors.select_ids(key, among=np.array([i for _, i in found]), **filters).tolist()
        )
        kept = [(s, i) for s, i in found if i in passing]
        if opts.segments:
            enough = len({row.file_id for row in store.vectors.rows(list(passing)).values()}) >= opts.k
        else:
            enough = len(kept) >= opts.k
        return kept if enough else None

    def _hits(self, found: list[tuple[float, int]], opts: SearchOptions) -> list[Hit]:
        """The best ``k`` of ``found`` as hits (with ``segments``, the best segment of each file)."""
        rows = self.library.store.vectors.rows([i for _, i in found])
        hits: list[Hit] = []
        seen_files: set[int] = set()
        for score, vid in found:
            row = rows.get(vid)
            if row is None:
                continue  # deleted by a concurrent ingest since the index was read
            if opts.segments and row.file_id in seen_files:
                continue  # the best segment of each file only
            seen_files.add(row.file_id)
            hits.append(Hit(row.path, score, modality_of_key(row.modality), row.info, row.start, row.end))
            if len(hits) == opts.k:
                break
        return hits

    def _top(
        self,
        key: str,
        query: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        per_file: bool,
        excluded: set[int],
        nprobe: int | None = None,
    ) -> list[tuple[float, int]]:
        """Top hits of one index, ``excluded`` ids left out; with ``per_file``, enough hits to give
        ``k`` distinct files."""
        index = self.library.index(key)
        want = k + len(excluded)
        while True:
            scores, ids = index.search(
                query[None, :], want, allowed_ids=allowed, nprobe=nprobe, tuning=self.tuning
            )
            held = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            found = [(s, i) for s, i in held if i not in excluded]
            if not per_file or len(held) < want:
                return found
            files = {row.file_id for row in self.library.store.vectors.rows([i for _, i in found]).values()}
            if len(files) >= k:
                return found
            want *= 4

    def embed(self, terms: list[Term]) -> np.ndarray:
        """The combined, L2-normalized query vector ``(dim,)`` float32 of ``terms``."""
        total = np.zeros(self.library.dim, dtype=np.float64)
        for term in terms:
            vec = self._term_vector(term).astype(np.float64)
            norm = np.linalg.norm(vec)
            if not np.isfinite(norm) or norm == 0:
                raise UsageError(f"query term {term.describe()} gave an empty vector")
            total += term.weight * vec / norm
        norm = np.linalg.norm(total)
        if norm < 1e-6:
            raise UsageError("the query terms cancel each other out; change their weights")
        return (total / norm).astype(np.float32)

    def _term_vector(self, term: Term) -> np.ndarray:
        if term.kind == LIKE:
            return self._stored_vector(str(term.value))
        if term.kind == VECTOR:
            return self._raw_vector(term.value)
        from .encoder.embed import embed_input

        value = term.value
        if term.kind == TEXT:
            if not isinstance(value, str):
                raise UsageError(f"a text term must be a string, got {type(value).__name__}")
            value = value.encode("utf-8")  # read exactly like a text file
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and not os.path.exists(value):
            raise UsageError(f"{term.media or term.kind} query file {value!r} does not exist")
        kind = term.media or QUERY_KINDS[term.kind]
        return embed_input(self.library.encoder(), kind, term.kind, value)

    def _raw_vector(self, value: Any) -> np.ndarray:
        try:
            vec = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise UsageError(f"a vector term must be numbers, got {type(value).__name__}") from None
        dim = self.library.dim
        if vec.shape not in ((dim,), (1, dim)):
            raise UsageError(f"a vector term must have shape ({dim},) for this library, got {vec.shape}")
        if not np.isfinite(vec).all():
            raise UsageError("a vector term holds NaN or infinite values")
        return vec.reshape(dim)

    def _stored_vector(self, path: str) -> np.ndarray:
        stored = self.library.store.vectors.of_file(os.path.abspath(path))
        whole = [v.vector for v in stored if v.start is None]
        if not whole:
            raise UsageError(
                f"--like {path!r}: that file is not in the library; ingest it first or use --image/--audio"
            )
        # A video has a picture and a sound vector: --like means both, equally.
        return np.mean([v / np.linalg.norm(v) for v in whole], axis=0)
