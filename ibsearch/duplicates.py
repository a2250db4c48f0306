"""``ibsearch duplicates``: the groups of near-identical files of a library (copies, burst shots,
re-encodes) and the space they take.

Two files are near-identical when their vectors of one modality are at a likeness of ``threshold`` or
more (a cosine rescaled to the library's spread: :mod:`ibsearch.folding`); a group is what such pairs
link (a burst whose first and last shots differ more than the threshold is still one group, through
the shots between them). The pairs are found by the index itself: each stored vector is searched for
its nearest ``neighbours`` in batches (IVF or exact, as the index is), so a million vectors cost a
million k-NN searches, never a million squared comparisons. A group with more members than
``neighbours`` is still found whole, as each member links to some of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .files import path_fields
from .folding import FOLD_THRESHOLD, Closeness
from .index.tuning import DEFAULT_TUNING
from .library import LibraryResources
from .modality import resolve_modalities
from .progress import Progress, start

NEIGHBOURS = 16  # nearest vectors looked at per vector
BATCH = 1024  # vectors searched at a time


@dataclass(frozen=True)
class DuplicateFile:
    """One file of a group."""

    path: str
    size: int
    content_hash: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Near-identical files (``files``: largest first, the one to keep if one is kept) found by their
    ``modality`` vectors."""

    modality: str
    files: tuple[DuplicateFile, ...]

    @property
    def bytes(self) -> int:
        """The space the group's files take."""
        return sum(f.size for f in self.files)

    @property
    def reclaimable(self) -> int:
        """What removing all but the largest file would free."""
        return self.bytes - self.files[0].size

    @property
    def copies(self) -> bool:
        """Whether the files are the same bytes, every one (an imported file of unknown content has no
        hash to compare)."""
        hashes = {f.content_hash for f in self.files}
        return len(hashes) == 1 and "" not in hashes

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "count": len(self.files),
            "bytes": self.bytes,
            "reclaimable": self.reclaimable,
            "copies": self.copies,
            "files": [{**path_fields(f.path), "size": f.size} for f in self.files],
        }


def find_duplicates(
    library: LibraryResources,
    threshold: float = FOLD_THRESHOLD,
    targets: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
) -> list[DuplicateGroup]:
    """The groups of near-identical files among the whole-file vectors of ``targets`` (modality names,
    aliases accepted; default all), largest (in bytes) first. A set of files grouped by a second
    modality as well (a copied video: its picture and its sound) is listed once."""
    closeness = Closeness(library, threshold)
    held = set(library.store.vectors.keys_present(resolve_modalities(targets)))
    groups: list[DuplicateGroup] = []
    listed: set[frozenset[int]] = set()
    for modality in (m for m in resolve_modalities(targets) if m in held):
        for members in _linked(library, modality, closeness.limit(modality), progress):
            rows = library.store.vectors.rows(members)
            files = {r.file_id: DuplicateFile(r.path, r.size, r.content_hash) for r in rows.values()}
            if len(files) > 1 and frozenset(files) not in listed:  # fewer: removed meanwhile
                listed.add(frozenset(files))
                groups.append(DuplicateGroup(modality, tuple(sorted(files.values(), key=_largest_first))))
    return sorted(groups, key=lambda g: (-g.bytes, g.files[0].path))


def _linked(
    library: LibraryResources, modality: str, limit: float, progress: Progress | None
) -> list[list[int]]:
    """The vector ids of ``modality`` linked by pairs at most ``limit`` apart (``1 - cosine``), as
    groups of two or more (a union-find over the pairs that each vector's k-NN search gives)."""
    index = library.index(modality)
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.get(i, i) != i:
            parent[i] = parent.get(parent[i], parent[i])  # halve the path as it is walked
            i = parent[i]
        return i

    total = index.ntotal
    done = 0
    report = start(progress, f"duplicates: {modality}", "vector")
    for ids, vectors in library.store.vectors.chunks(modality, chunk_size=BATCH):
        scores, found = index.search(vectors, min(NEIGHBOURS + 1, max(total, 1)), tuning=DEFAULT_TUNING)
        near = (found >= 0) & (found != ids[:, None]) & (1.0 - scores <= limit)
        pairs = zip(
            np.broadcast_to(ids[:, None], found.shape)[near].tolist(), found[near].tolist(), strict=True
        )
        for a, b in pairs:
            parent.setdefault(a, a)
            parent.setdefault(b, b)
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        done += len(ids)
        if report:
            report(done, total)
    members: dict[int, list[int]] = {}
    for i in list(parent):
        members.setdefault(root(i), []).append(i)
    return [sorted(m) for m in members.values() if len(m) > 1]


def _largest_first(file: DuplicateFile) -> tuple[int, str]:
    return -file.size, file.path


__all__ = ["BATCH", "NEIGHBOURS", "DuplicateFile", "DuplicateGroup", "find_duplicates"]
