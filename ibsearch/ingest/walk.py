"""Finding the files an ingest looks at.

The walk is recursive, visits each directory once (so a symlink loop cannot trap it), never opens a
file (so a FIFO or a device cannot hang it) and yields only regular files, each with the
``os.stat_result`` it already took: for an unchanged file that stat is the whole cost of a re-ingest.
What it cannot enter or stat (an unreadable folder, a path longer than the system allows) is told to
``WalkOptions.on_error``, and what it passes over (hidden, excluded, a link not followed, a FIFO) to
``WalkOptions.on_skip``: nothing is dropped without a word.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import UsageError


@dataclass
class WalkOptions:
    """What the walk skips."""

    hidden: bool = False  # include names starting with "." (skipped by default)
    exclude: list[str] = field(default_factory=list)  # globs matched against the name and the full path
    follow_symlinks: bool = True  # follow links to files and folders (loops are still detected)
    on_error: Callable[[str, str], None] | None = None  # (path, reason) for what cannot be walked
    on_skip: Callable[[str, str], None] | None = None  # (path, reason) passed over; a folder's ends in /

    def skip(self, path: str, reason: str) -> None:
        if self.on_skip is not None:
            self.on_skip(path, reason)


@dataclass(frozen=True)
class FoundFile:
    """A regular file found by the walk: its absolute path and the stat taken while walking."""

    path: str
    st: os.stat_result


#: Why the walk passes over what it passes over (``WalkOptions.on_skip``).
HIDDEN = "hidden (--hidden takes it)"
HIDDEN_FOLDER = "a hidden folder, not entered (--hidden takes it)"
NOT_FOLLOWED = "a link, not followed (--no-follow-symlinks)"
BROKEN_LINK = "a link to nothing (broken link)"
SEEN_THROUGH_LINK = "a link to a file already found at another path"


def _excluded(path: str, name: str, patterns: list[str]) -> str | None:
    """The first pattern that excludes ``path``, or None."""
    return next((p for p in patterns if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p)), None)


def _shown(entry: os.DirEntry[str]) -> str:
    """The path a skipped entry is reported under: a folder's ends in the separator."""
    try:
        return entry.path + os.sep if entry.is_dir() else entry.path
    except OSError:
        return entry.path


def walk(roots: Iterable[str], options: WalkOptions | None = None) -> Iterator[FoundFile]:
    """Yield every regular file under ``roots`` (files or directories), each once, in sorted order.

    A root that does not exist is a :class:`UsageError`; a root that is a FIFO, a device or a socket
    is told to ``on_error`` (inside a folder, such entries are passed over). Non-UTF-8 names come
    through as ``str`` with surrogate escapes (``os.fsdecode``), so they survive the round trip to the
    file system.
    """
    opts = options or WalkOptions()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root in roots:
        root = os.path.abspath(os.fsdecode(root))
        try:
            st = os.stat(root)  # a root the user names is followed even when links are not (find -H)
        except OSError as exc:
            raise UsageError(f"cannot ingest {root!r}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(root, st, opts, seen_dirs, seen_files)
        elif stat.S_ISREG(st.st_mode):
            if (st.st_dev, st.st_ino) not in seen_files:
                seen_files.add((st.st_dev, st.st_ino))
                yield FoundFile(root, st)
        elif opts.on_error is not None:  # named by the user, so said why it is not taken, and not opened
            opts.on_error(root, _not_regular(root, st))


def _walk_dir(
    top: str,
    top_st: os.stat_result,
    opts: WalkOptions,
    seen_dirs: set[tuple[int, int]],
    seen_files: set[tuple[int, int]],
) -> Iterator[FoundFile]:
    stack = [(top, top_st)]
    while stack:
        directory, dst = stack.pop()
        key = (dst.st_dev, dst.st_ino)
        if key in seen_dirs:
            continue  # a symlink loop or a second link to a directory already walked
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            _report(opts, directory, "cannot read folder", exc)
            continue
        subdirs = []
        for entry in entries:
            found = _visit(entry, opts, seen_files)
            if isinstance(found, FoundFile):
                yield found
            elif found is not None:
                subdirs.append(found)
        stack.extend(reversed(subdirs))


def _visit(
    entry: os.DirEntry[str], opts: WalkOptions, seen_files: set[tuple[int, int]]
) -> FoundFile | tuple[str, os.stat_result] | None:
    """One folder entry: a file to yield, a folder to enter, or None (passed over, and said why)."""
    name = entry.name
    if not opts.hidden and name.startswith("."):
        shown = _shown(entry)
        opts.skip(shown, HIDDEN if shown == entry.path else HIDDEN_FOLDER)
        return None
    pattern = _excluded(entry.path, name, opts.exclude) if opts.exclude else None
    if pattern is not None:
        opts.skip(_shown(entry), f"excluded by --exclude {pattern!r}")
        return None
    try:
        if entry.is_symlink() and not opts.follow_symlinks:
            opts.skip(entry.path, NOT_FOLLOWED)
            return None
        st = entry.stat(follow_symlinks=True)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            _report(opts, entry.path, "cannot read", exc)
        elif entry.is_symlink():
            opts.skip(entry.path, BROKEN_LINK)
        return None  # else a file that vanished meanwhile
    if stat.S_ISDIR(st.st_mode):
        return entry.path, st
    if not stat.S_ISREG(st.st_mode):
        opts.skip(entry.path, _not_regular(entry.path, st))  # never opened
        return None
    if (st.st_dev, st.st_ino) in seen_files and entry.is_symlink():
        opts.skip(entry.path, SEEN_THROUGH_LINK)
        return None
    seen_files.add((st.st_dev, st.st_ino))
    return FoundFile(entry.path, st)


#: What a path that is neither a folder nor a regular file is, by the test of its ``st_mode``.
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: str, st: os.stat_result) -> str:
    what = next((name for test, name in _SPECIAL_KINDS if test(st.st_mode)), "neither a file nor a folder")
    if os.path.islink(path):
        what += f" (a link to {os.path.realpath(path)!r})"
    return f"not a regular file: {what}"


def _report(opts: WalkOptions, path: str, what: str, exc: OSError) -> None:
    if opts.on_error is None:
        return
    if exc.errno == errno.ENAMETOOLONG:
        reason = f"the path is longer than this system allows ({exc.strerror}); move or rename it"
    else:
        reason = f"{what}: {exc.strerror or exc}"
    opts.on_error(path, reason)
