"""Looking after a library: ``remove``, ``reindex``, ``check`` and ``info``.

Each takes an opened :class:`~ibsearch.library.LibraryResources`; the writers hold its write lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import LibraryError
from .files import is_temporary, path_fields
from .index import FaissIndex, IndexPolicy
from .index.policy import AUTO, EXACT_KIND
from .ingest import LAST_INGEST
from .integrity import scan, verify_file
from .library import LibraryResources


@dataclass
class CheckReport:
    """Outcome of :func:`check`."""

    ok: bool = True
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    troubled: set[str] = field(default_factory=set)  # index keys with a problem

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "repaired": self.repaired, "counts": self.counts}

    def lines(self) -> list[str]:
        out = [
            f"{m}: {n} vectors" + ("" if m in self.troubled else ", index consistent")
            for m, n in self.counts.items()
        ]
        out += [f"repaired: {r}" for r in self.repaired]
        out += [f"PROBLEM: {p}" for p in self.problems]
        out.append("ok" if self.ok else "inconsistent")
        return out


def remove(lib: LibraryResources, paths: list[str]) -> int:
    """Drop files (or everything under folders) from the library; returns the number of files removed."""
    with lib.writing():
        victims: list[str] = []
        for p in paths:
            victims += lib.store.files.paths_under(os.path.abspath(p))
        if not victims:
            raise LibraryError(
                f"nothing in the library under {', '.join(map(repr, paths))}; see 'ibsearch info'"
            )
        lib.indexes.remove(lib.store.delete_files(victims))
        return len(set(victims))


def reindex(
    lib: LibraryResources,
    *,
    index: str | None = None,
    exact_below: int | None = None,
    recall: float | None = None,
    full_scan_below: int | None = None,
) -> dict[str, int]:
    """Rebuild every index from the database, of the kind the library's index policy gives its size;
    returns vectors per index key.

    ``index`` (``auto``, ``exact`` or a FAISS factory string such as ``IVF1024,Flat``), ``exact_below``
    (auto: vectors per index from which it is approximate), ``recall`` (the recall@10 an approximate
    index is tuned to) and ``full_scan_below`` (filters allowing at most this many vectors are searched
    exactly) change the policy first; the library remembers it for later builds.
    """
    with lib.writing():
        policy = lib.indexes.policy.with_changes(
            kind=index, exact_below=exact_below, recall=recall, full_scan_below=full_scan_below
        )
        if policy.kind not in (AUTO, EXACT_KIND):
            FaissIndex(lib.dim, policy.kind)  # a spec FAISS cannot build, or that cannot delete, is refused
        if policy != lib.indexes.policy:
            lib.indexes.set_policy(policy)
        return {key: lib.indexes.rebuild(key).ntotal for key in lib.indexes.known()}


def index_facts(lib: LibraryResources) -> dict[str, dict[str, Any]]:
    """Per index key: its kind, spec, measured recall and when it was built (from the sidecars)."""
    return {key: lib.indexes.describe(key) for key in lib.indexes.known()}


def check(
    lib: LibraryResources, on_wait: Callable[[], None] | None = None, *, repair: bool = True
) -> CheckReport:
    """Check the database, bring stale index files up to date (they are derived), then verify that
    every stored vector is a finite unit vector and every index file holds exactly the database's
    vectors, row for row.

    A library that another process is writing is waited for (``on_wait`` is called first): its
    files are only comparable once the write has ended. Index files that are missing, damaged (their
    checksum, or rows that differ from the stored vectors) or behind (after a crash, say) are rebuilt
    or brought up to date and listed in ``repaired`` (with ``repair=False`` nothing is changed, and
    they are problems); anything that still disagrees afterwards, or a damaged database, is a problem
    (``ok`` is False).
    """
    report = CheckReport()
    for problem in lib.store.integrity_errors():
        report.problems.append(f"database: {problem}")
    keys = lib.indexes.known()
    writable = repair and _as_writer(lib, report, on_wait, lambda: [lib.indexes.get(key) for key in keys])
    if writable:
        report.repaired = [lib.indexes.repairs[key] for key in sorted(lib.indexes.repairs)]
    found = {key: _examine(lib, key) for key in keys}
    damaged = {key: what for key, (what, _) in found.items() if what}
    rebuild = lambda: [lib.indexes.repair(key, what) for key, what in damaged.items()]  # noqa: E731
    if writable and damaged and _as_writer(lib, report, on_wait, rebuild):
        report.repaired += list(damaged.values())
        found.update({key: _examine(lib, key) for key in damaged})
    for key in keys:
        report.counts[key] = lib.store.vectors.id_summary(key).size
        if found[key][1]:
            report.troubled.add(key)
            report.problems += found[key][1]
    _check_words(lib, report, on_wait, repair)
    report.ok = not report.problems
    return report


def _check_words(
    lib: LibraryResources, report: CheckReport, on_wait: Callable[[], None] | None, repair: bool
) -> None:
    """The words table (keyword search) against the files: a file without words, or words of no file,
    is written again from the files and their passages (a problem with ``repair=False``)."""
    missing, stray = lib.store.words.unmatched()
    if not missing and not stray:
        return
    what = f"words: {missing} file(s) without words and {stray} row(s) of no file"
    if not repair:
        report.problems.append(f"{what}; run 'ibsearch check' to write them again")
    elif _as_writer(lib, report, on_wait, lib.store.words.refill):
        report.repaired.append(f"{what}: written again from the files and their passages")


def _as_writer(
    lib: LibraryResources, report: CheckReport, on_wait: Callable[[], None] | None, work: Callable[[], Any]
) -> bool:
    """Run ``work`` as the library's writer (changed indexes are saved when it ends); False, with the
    reason in ``report``, when that was not possible."""
    try:
        with lib.writing(wait=True, on_wait=on_wait):
            work()
    except LibraryError as exc:
        report.problems.append(f"not repaired: {exc}")
        return False
    return True


def _examine(lib: LibraryResources, key: str) -> tuple[str, list[str]]:
    """What a rebuild of the index file of ``key`` would mend, in words (empty: nothing), and every
    problem found with ``key`` (its file against the database, and each row against its vector)."""
    on_file, scanned = verify_file(lib.store, lib.indexes, key), scan(lib.store, lib.indexes, key)
    wrong_rows = set(scanned.differing) - set(scanned.damaged)  # not explained by damaged stored vectors
    if on_file:
        what = on_file[0].split("; run ")[0]  # what to do is what is done
    elif wrong_rows:
        what = f"{key}: {len(wrong_rows)} index row(s) differed from the database"
    else:
        return "", scanned.problems
    return f"{what}: rebuilt from the database", on_file + scanned.problems


def info(lib: LibraryResources, errors: int | None = 10) -> dict[str, Any]:
    """Counts per modality, model, size on disk, the ``errors`` most recent errors (None: all), and
    ``last_ingest``: what the last ingest did, skipped and failed (by extension), and when (or None)."""
    store = lib.store
    # Temporary files of a save under way (or of one that was killed) are not part of the library.
    size = sum(p.stat().st_size for p in lib.root.iterdir() if p.is_file() and not is_temporary(p.name))
    notes = []
    silent = store.files.count_with_info("has_audio", False)
    if silent:
        notes.append(f"{silent} video(s) without sound: indexed by their picture only (no audio vector)")
    return {
        "library": str(lib.root),
        "model": store.model_id or lib.model_id,
        **({"model_description": lib.card.description} if lib.card.description else {}),
        "dim": lib.dim,
        "files": store.files.count(),
        "files_by_kind": store.files.counts(),
        "vectors": store.vectors.counts(),
        "indexes": index_facts(lib),
        "index_policy": lib.indexes.policy.to_dict(),
        "size_bytes": size,
        "errors": store.errors.count(),
        "recent_errors": [
            {**path_fields(e.path), "reason": e.reason, "time": e.time}
            for e in store.errors.latest(limit=errors)
        ],
        "notes": notes,
        "last_ingest": store.settings.get(LAST_INGEST),
    }


__all__ = ["CheckReport", "IndexPolicy", "check", "index_facts", "info", "reindex", "remove"]
