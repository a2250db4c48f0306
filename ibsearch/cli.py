"""The ``ibsearch`` command line: parse options, make one call into the engine, format the result.

This is the only module that imports click; it never touches SQL, FAISS or torch.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from .errors import IbsearchError

# Options shared by every command that opens a library, as (name, click.option keywords).
_COMMON_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--library", {"envvar": "IBSEARCH_LIBRARY", "type": click.Path(file_okay=False),
                   "help": "Library directory (default: the platform data directory)."}),
    ("--model", {"envvar": "IBSEARCH_MODEL", "default": None,
                 "help": "Registered model name (default imagebind_huge) or path to a JSON model card."}),
    ("--checkpoint", {"envvar": "IBSEARCH_CHECKPOINT", "default": None, "type": click.Path(dir_okay=False),
                      "help": "Use this local checkpoint file instead of downloading the model's weights."}),
    ("--device", {"type": click.Choice(["auto", "cpu", "cuda"]), "default": "auto", "show_default": True,
                  "help": "Where the model runs."}),
    ("--precision", {"type": click.Choice(["auto", "fp32", "bf16", "fp16"]), "default": "auto",
                     "show_default": True,
                     "help": "Compute precision (auto: bf16 on GPUs and CPUs with bf16 units, else fp32)."}),
]  # fmt: skip


def _command(json_help: str, *, paths: bool = False) -> Any:
    """Declare a command that opens a library: its shared options, ``--json`` (``json_help``) and,
    with ``paths``, a required PATHS... argument."""

    def declare(fn: Any) -> Any:
        command = cli.command()(fn)
        shared: list[click.Parameter] = [click.Option([name], **kw) for name, kw in _COMMON_OPTIONS]
        if paths:
            shared.insert(0, click.Argument(["paths"], nargs=-1, required=True, type=click.Path()))
        command.params[:0] = shared
        command.params.append(click.Option(["--json", "as_json"], is_flag=True, help=json_help))
        return command

    return declare


def _open(common: dict[str, Any], **kw: Any) -> Any:
    from .engine import Library

    return Library.open(
        common["library"],
        model=common["model"],
        checkpoint=common["checkpoint"],
        device=common["device"],
        precision=common["precision"],
        progress=_progress_bars(),
        **kw,
    )


def _progress_bars() -> Any:
    """A :data:`ibsearch.progress.Progress` that draws one tqdm bar per task on stderr (None off a TTY)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def start(task: str, unit: str) -> Any:
        in_bytes = unit == "B"
        bar = tqdm(desc=task, unit=unit, unit_scale=in_bytes, unit_divisor=1024 if in_bytes else 1000,
                   file=sys.stderr, dynamic_ncols=True, leave=True)  # fmt: skip

        def update(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)
            if total is not None and done >= total:
                bar.close()

        return update

    return start


def _with_library(common: dict[str, Any], work: Callable[[Any], Any]) -> Any:
    """Open the library the options name, run ``work(library)`` and close it again."""
    with _open(common) as lib:
        return work(lib)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=None))


def _emit(as_json: bool, data: Any, lines: Callable[[], Iterable[str]]) -> None:
    """Print ``data`` as JSON, or the human-readable ``lines()``."""
    if as_json:
        _echo_json(data)
        return
    for line in lines():
        click.echo(line)


class _Group(click.Group):
    """Turns every ibsearch error into click's ``Error: ...`` with exit code 1, in this one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IbsearchError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ibsearch")
def cli() -> None:
    """Search photos, videos, recordings and notes by meaning, from any modality to any other.

    \b
    Example:
      ibsearch ingest ~/Pictures ~/Music
      ibsearch query --text "a dog barking" --target vision --k 10
    """


@_command("Print the summary as one JSON object.", paths=True)
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
@click.option("--workers", type=int, default=None, help="Decoding worker processes (default: CPU count).")
@click.option(
    "--batch-size", type=int, default=None, help="Items per model call (default depends on device)."
)
def ingest(
    paths: Sequence[str],
    hidden: bool,
    exclude: Sequence[str],
    as_kind: str | None,
    workers: int | None,
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
    lib = _open(common, create=True)
    with lib:
        summary = lib.ingest(
            list(paths),
            hidden=hidden,
            exclude=list(exclude),
            workers=workers,
            batch_size=batch_size,
            progress=lib.progress,
            as_kind=as_kind,
        )
    data = summary.to_dict()
    if as_json:
        _echo_json(data)
        return
    click.echo(
        "added {added}, updated {updated}, unchanged {unchanged}, removed {removed}, "
        "failed {nfailed}, encoded {encoded}".format(nfailed=len(data["failed"]), **data)
    )
    for bad in data["failed"]:
        click.echo(f"  failed: {bad['path']}: {bad['reason']}", err=True)


def _format_meta(meta: dict[str, Any]) -> str:
    parts = []
    if meta.get("width") and meta.get("height"):
        parts.append(f"{meta['width']}x{meta['height']}")
    if meta.get("duration") is not None:
        parts.append(f"{float(meta['duration']):.1f}s")
    return " ".join(parts)


def _mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


@_command("Print the hits as a JSON list.")
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
    from .search import Searcher, SearchOptions
    from .terms import parse_term

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
    lib = _open(common)
    with lib:
        prefix = os.path.abspath(path_prefix) if path_prefix else None
        options = SearchOptions(
            list(targets) or None, k, path_glob, prefix, min_duration, max_duration, segments
        )
        hits = Searcher(lib).search(terms, options)
    if as_json:
        _echo_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no matches", err=True)
        return
    for rank, hit in enumerate(hits, 1):
        where = (
            f" [{_mmss(hit.start)}-{_mmss(hit.end)}]" if hit.start is not None and hit.end is not None else ""
        )
        meta = _format_meta(hit.metadata)
        click.echo(f"{rank:3d}  {hit.score:7.4f}  {hit.modality:<7}  {hit.path}{where}  {meta}".rstrip())


@_command("Print as one JSON object.")
def info(as_json: bool, **common: Any) -> None:
    """Show what the library holds: counts per modality, model, size on disk and recent errors.

    \b
    Example:
      ibsearch info --json
    """
    data = _with_library(common, lambda lib: lib.info())
    _emit(as_json, data, lambda: _info_lines(data))


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


@_command("Print the result as JSON.", paths=True)
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
    removed = _with_library(common, lambda lib: lib.remove([os.path.abspath(p) for p in paths]))
    _emit(as_json, {"removed": removed}, lambda: [f"removed {removed} file(s)"])


@_command("Print the result as JSON.")
def reindex(
    as_json: bool,
    **common: Any,
) -> None:
    """Rebuild every FAISS index from the vectors stored in the database.

    \b
    Example:
      ibsearch reindex
    """
    counts = _with_library(common, lambda lib: lib.reindex())
    _emit(as_json, counts, lambda: [", ".join(f"{m}: {n}" for m, n in counts.items()) or "empty library"])


@_command("Print the report as JSON.")
def check(as_json: bool, **common: Any) -> None:
    """Check that the database and the indexes agree; exit code 1 if they do not.

    \b
    Example:
      ibsearch check && echo consistent
    """
    report = _with_library(common, lambda lib: lib.check())
    _emit(as_json, report.to_dict(), report.lines)
    if not report.ok:
        sys.exit(1)


def main() -> None:
    """Console entry point."""
    cli(prog_name="ibsearch")


__all__ = ["cli", "main"]
