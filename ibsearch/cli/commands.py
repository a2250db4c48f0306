"""The commands: each parses its options, makes one call into the engine and prints the result.

The command line never touches SQL, FAISS or torch itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from .app import command, open_library, with_library
from .output import echo_json, emit, format_meta, mmss, say


@command("Print the summary as one JSON object.", paths=True)
@click.option(
    "--hidden", is_flag=True, help="Also ingest hidden files and folders (names starting with '.')."
)
@click.option(
    "--exclude", multiple=True, metavar="GLOB", help="Skip files or folders matching GLOB (repeatable)."
)
@click.option(
    "--as",
    "as_kind",
    type=click.Choice(["thermal", "depth", "imu"]),
    default=None,
    help="Index PATHS as this modality (thermal cameras, depth maps saved as images); remembered.",
)
@click.option(
    "--follow-symlinks/--no-follow-symlinks",
    default=True,
    show_default=True,
    help="Follow links to files and folders inside PATHS (links named as PATHS are always followed).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Decoding worker processes; 0 decodes in this process (default: automatic, workers only with a "
    "GPU or from 4 CPU cores, and for 24 files or more).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up on a file after this long in a decoding worker (a hung decoder); it is retried next run.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Items per model call (default 16)."
)
def ingest(
    paths: Sequence[str],
    hidden: bool,
    exclude: Sequence[str],
    as_kind: str | None,
    follow_symlinks: bool,
    workers: int | None,
    timeout: float,
    batch_size: int | None,
    as_json: bool,
    **common: Any,
) -> None:
    """Add or update PATHS (files or folders, recursively) in the library.

    Unchanged files cost one stat; changed files are re-embedded; deleted files are dropped; renamed or
    copied files reuse their stored vectors. Bad files are reported and skipped.

    \b
    Example:
      ibsearch ingest ./media --exclude '*.tmp' --json
      ibsearch ingest ./flir --as thermal
    """
    lib = open_library(common, create=True)
    with lib:
        summary = lib.ingest(
            list(paths),
            hidden=hidden,
            exclude=list(exclude),
            follow_symlinks=follow_symlinks,
            workers=workers,
            timeout=timeout,
            batch_size=batch_size,
            progress=lib.progress,
            as_kind=as_kind,
        )
    data = summary.to_dict()
    if as_json:
        echo_json(data)
        return
    click.echo(
        "added {added}, updated {updated}, unchanged {unchanged}, removed {removed}, "
        "failed {nfailed}, encoded {encoded}".format(nfailed=len(data["failed"]), **data)
    )
    for bad in data["failed"]:
        say(f"  failed: {bad['path']}: {bad['reason']}", err=True)


@command("Print the hits as a JSON list.")
@click.option("--text", "texts", multiple=True, metavar="[W=]TEXT", help="A text query term (repeatable).")
@click.option("--image", "images", multiple=True, metavar="[W=]PATH", help="An image query term.")
@click.option("--audio", "audios", multiple=True, metavar="[W=]PATH", help="An audio query term.")
@click.option("--video", "videos", multiple=True, metavar="[W=]PATH", help="A video term (its picture).")
@click.option("--depth", "depths", multiple=True, metavar="[W=]PATH", help="A depth map (.png/.tif/.npy).")
@click.option("--thermal", "thermals", multiple=True, metavar="[W=]PATH", help="A thermal image term.")
@click.option("--imu", "imus", multiple=True, metavar="[W=]PATH", help="An IMU recording (.npy/.csv).")
@click.option(
    "--like", "likes", multiple=True, metavar="[W=]PATH", help="An ingested file: reuse its vector."
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Modality to search: vision/image, text, audio, depth, thermal, imu; repeatable (default: all).",
)
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Number of hits.")
@click.option("--path-glob", default=None, metavar="GLOB", help="Only files whose path matches GLOB.")
@click.option("--path-prefix", default=None, metavar="DIR", help="Only files under DIR.")
@click.option("--min-duration", type=float, default=None, help="Only media at least this many seconds long.")
@click.option("--max-duration", type=float, default=None, help="Only media at most this many seconds long.")
@click.option(
    "--segments", is_flag=True, help="Return timestamped segments of long media (best per file), not files."
)
def query(
    texts: Sequence[str],
    images: Sequence[str],
    audios: Sequence[str],
    videos: Sequence[str],
    depths: Sequence[str],
    thermals: Sequence[str],
    imus: Sequence[str],
    likes: Sequence[str],
    targets: Sequence[str],
    k: int,
    path_glob: str | None,
    path_prefix: str | None,
    min_duration: float | None,
    max_duration: float | None,
    segments: bool,
    as_json: bool,
    **common: Any,
) -> None:
    """Find the files nearest to a query made of any mix of text, images, audio and ingested files.

    Every term is embedded, L2-normalized, multiplied by its weight, summed and renormalized. Give a
    weight as a prefix WEIGHT= (negative weights subtract a concept).

    \b
    Examples:
      ibsearch query --text "a dog barking" --target vision --k 10
      ibsearch query --image park.jpg --audio 0.5=bark.wav --text "-1=people" --target image
      ibsearch query --like ~/Pictures/cat.jpg --path-prefix ~/Pictures/2024 --json
      ibsearch query --audio bark.wav --target audio --segments
    """
    from ..search import Searcher, SearchOptions
    from ..terms import parse_term

    terms = (
        [parse_term("text", t) for t in texts]
        + [parse_term("vision", t) for t in images]
        + [parse_term("audio", t) for t in audios]
        + [parse_term("video", t) for t in videos]
        + [parse_term("depth", t) for t in depths]
        + [parse_term("thermal", t) for t in thermals]
        + [parse_term("imu", t) for t in imus]
        + [parse_term("like", t) for t in likes]
    )
    lib = open_library(common)
    with lib:
        prefix = os.path.abspath(path_prefix) if path_prefix else None
        options = SearchOptions(
            list(targets) or None, k, path_glob, prefix, min_duration, max_duration, segments
        )
        hits = Searcher(lib).search(terms, options)
    if as_json:
        echo_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no matches", err=True)
        return
    for rank, hit in enumerate(hits, 1):
        where = (
            f" [{mmss(hit.start)}-{mmss(hit.end)}]" if hit.start is not None and hit.end is not None else ""
        )
        meta = format_meta(hit.metadata)
        say(f"{rank:3d}  {hit.score:7.4f}  {hit.modality:<7}  {hit.path}{where}  {meta}".rstrip())


@command("Print as one JSON object.")
def info(as_json: bool, **common: Any) -> None:
    """Show what the library holds: counts per modality, model, size on disk and recent errors.

    \b
    Example:
      ibsearch info --json
    """
    data = with_library(common, lambda lib: lib.info())
    emit(as_json, data, lambda: _info_lines(data))


def _info_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"library   {data['library']}",
        f"model     {data['model']}",
        f"files     {data['files']}",
        f"size      {data['size_bytes'] / 1e6:.1f} MB",
    ]
    lines += [f"  {modality:<8} {count}" for modality, count in data["vectors"].items()]
    lines += [f"note      {note}" for note in data.get("notes", [])]
    if data["recent_errors"]:
        lines.append("recent errors:")
        lines += [f"  {err['path']}: {err['reason']}" for err in data["recent_errors"]]
    return lines


@command("Print the result as JSON.", paths=True)
def remove(
    paths: Sequence[str],
    as_json: bool,
    **common: Any,
) -> None:
    """Remove PATHS (files, or folders with everything under them) from the library; the files stay on disk.

    \b
    Example:
      ibsearch remove ~/Pictures/old
    """
    removed = with_library(common, lambda lib: lib.remove([os.path.abspath(p) for p in paths]))
    emit(as_json, {"removed": removed}, lambda: [f"removed {removed} file(s)"])


@command("Print the result as JSON.")
def reindex(
    as_json: bool,
    **common: Any,
) -> None:
    """Rebuild every FAISS index from the vectors stored in the database.

    \b
    Example:
      ibsearch reindex
    """
    counts = with_library(common, lambda lib: lib.reindex())
    emit(as_json, counts, lambda: [", ".join(f"{m}: {n}" for m, n in counts.items()) or "empty library"])


@command("Print the report as JSON.")
def check(as_json: bool, **common: Any) -> None:
    """Check that the database and the indexes agree; exit code 1 if they do not.

    \b
    Example:
      ibsearch check && echo consistent
    """
    waiting = lambda: click.echo("another ibsearch process is writing the library; waiting for it", err=True)  # noqa: E731
    report = with_library(common, lambda lib: lib.check(waiting))
    emit(as_json, report.to_dict(), report.lines)
    if not report.ok:
        sys.exit(1)
