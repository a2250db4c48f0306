"""The commands: each parses its options, makes one call into the engine and prints the result.

The command line never touches SQL, FAISS or torch itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from textwrap import shorten
from typing import Any

import click

from ..encoder.model.config import config_names
from ..terms import inputs_on, parse_term
from .app import cli, command, open_library, with_library
from .output import echo_json, emit, format_meta, last_ingest_line, mmss, report_ingest, say
from .screen import warnings_counted


@command("Print the summary as one JSON object.", paths=True, model=True)
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
    help="Decoding worker processes; 0 decodes in this process on one thread (default: automatic, workers "
    "only with a GPU or from 4 CPU cores, and for 24 files or more; else pictures decode on every core "
    "between the model's calls).",
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
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help="Run the model on a Ray cluster: ADDRESS is its head's GCS HOST:PORT, or auto, and this machine "
    "a node of it (else RAY_ADDRESS, else a local Ray runtime); waits IBSEARCH_RAY_TIMEOUT seconds "
    "(default 30) for it; needs pip install 'ibsearch[ray]'.",
)
@click.option(
    "--path-map",
    "path_maps",
    multiple=True,
    metavar="LOCAL=REMOTE",
    help="With --ray: the workers see files under LOCAL at REMOTE (repeatable).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="List every skipped file with why (with --json: skipped_files), and the warnings of the libraries "
    "ibsearch uses, once per kind with a count (without -v they are not shown).",
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
    ray_address: str | None,
    path_maps: Sequence[str],
    verbose: bool,
    as_json: bool,
    **common: Any,
) -> None:
    """Add or update PATHS (files or folders, recursively) in the library.

    Unchanged files cost one stat; changed files are re-embedded; deleted files are dropped; renamed or
    copied files reuse their stored vectors. Bad files are reported and skipped; other files are
    counted by extension (-v lists them with why), and a file named in PATHS that is not indexed is
    always reported.

    \b
    Example:
      ibsearch ingest ./media --exclude '*.tmp' --json
      ibsearch ingest ./flir --as thermal
      ibsearch ingest /shared/photos --ray head:6379 --path-map /shared=/mnt/shared
    """
    lib = open_library(common, create=True)
    # Libraries' warnings (Pillow's, one per palette picture) would scroll past the progress line.
    with warnings_counted(shown=verbose), lib:
        if ray_address is not None:
            summary = lib.ingest_on_ray(
                list(paths), address=ray_address or None, path_map=path_maps, hidden=hidden,
                exclude=list(exclude), follow_symlinks=follow_symlinks, batch_size=batch_size,
                progress=lib.progress, as_kind=as_kind,
            )  # fmt: skip
        else:
            summary = lib.ingest(
                list(paths), hidden=hidden, exclude=list(exclude), follow_symlinks=follow_symlinks,
                workers=workers, timeout=timeout, batch_size=batch_size, progress=lib.progress,
                as_kind=as_kind,
            )  # fmt: skip
    report_ingest(summary.to_dict(verbose), as_json)


def input_options(fn: Any) -> Any:
    """The query's input options (``--text``, ``--image``, ...): the rows of the one table of query
    inputs offered to the command line, in its order, each repeatable and weighted ``[W=]VALUE``."""
    for row in reversed(inputs_on("cli")):
        fn = click.option(f"--{row.name}", row.name, multiple=True, metavar=row.metavar, help=row.help)(fn)
    return fn


def ranking_options(fn: Any) -> Any:
    """How hits are ranked and which come back: relevance, keywords, folding, moments, dates, paging."""
    options = [
        click.option("--min-relevance", default=None, metavar="LEVEL",
                     help="Leave out hits below this relevance: high (0.99: about 1 in 100 unrelated items "
                          "of each modality pass), medium (0.95), low (0.8) or a number from 0 to 1."),
        click.option("--no-keywords", "keywords", is_flag=True, flag_value=False, default=True,
                     help="Text finds by meaning only (not also by the words of names and texts)."),
        click.option("--no-fold", "fold", is_flag=True, flag_value=False, default=True,
                     help="List near-duplicates of a better hit too (folded into it by default)."),
        click.option("--per-file", type=click.IntRange(min=1), default=1, show_default=True,
                     help="With --segments: up to this many moments of one file."),
        click.option("--after", default=None, metavar="DATE",
                     help="Only files taken (else modified) on or after DATE: 2024-06-01, 2024-06-01T18:30."),
        click.option("--before", default=None, metavar="DATE",
                     help="Only files taken (else modified) on or before DATE."),
        click.option("--sort", type=click.Choice(["relevance", "date"]), default="relevance",
                     show_default=True, help="Order of the hits (date: newest first, above the threshold)."),
        click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many hits (paging)."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


@command("Print the hits as a JSON list.", model=True)
@input_options
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Modality to search: vision/image, text, audio, depth, thermal, imu; repeatable (default: all).",
)
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Number of hits.")
@click.option(
    "--path-glob",
    default=None,
    metavar="GLOB",
    help="Only files whose path matches GLOB ('*.png'; 'photos/*.jpg' is relative to this folder).",
)
@click.option(
    "--path-prefix", default=None, metavar="DIR", help="Only files under DIR (relative: to this folder)."
)
@click.option("--min-duration", type=float, default=None, help="Only media at least this many seconds long.")
@click.option("--max-duration", type=float, default=None, help="Only media at most this many seconds long.")
@click.option(
    "--segments",
    is_flag=True,
    help="Return segments, best per file: timed ones of long media, passages of texts.",
)
@click.option(
    "--include-like",
    is_flag=True,
    help="With --like: also return the --like files themselves (left out by default: more like this).",
)
@ranking_options
def query(targets: Sequence[str], as_json: bool, **params: Any) -> None:
    """Find the files nearest to a query made of any mix of text, images, audio and ingested files.

    Every term is embedded, L2-normalized, multiplied by its weight, summed and renormalized. Give a
    weight as a prefix WEIGHT= (negative weights subtract a concept).

    \b
    Examples:
      ibsearch query --text "a dog barking" --target vision --k 10
      ibsearch query --image park.jpg --audio 0.5=bark.wav --text "-1=people" --target image
      ibsearch query --like ~/Pictures/cat.jpg --path-prefix ~/Pictures/2024 --json
      ibsearch query --audio bark.wav --target audio --segments
      ibsearch query --text "a phrase from a long note" --target text --segments
    """
    from ..options import SearchOptions
    from ..server.client import ServerBackend

    terms = [parse_term(row.name, raw) for row in inputs_on("cli") for raw in params.pop(row.name)]
    options = SearchOptions.given(list(targets) or None, params)  # --k, --path-glob, ... by name
    server = ServerBackend.find(params)  # 'ibsearch serve' running on this library: the fast path
    hits: Sequence[Any] | None = server.search(terms, options) if server else None
    if hits is None:  # no server, or one that cannot answer this query: search here
        from ..search import Searcher

        with open_library(params) as lib:
            hits = Searcher(lib).search(terms, options)
    if as_json:
        echo_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no matches", err=True)
        return
    say(f"{'rank':>4}  {'score':>7}  {'modality':<8}  path [segment]  media")
    for rank, hit in enumerate(hits, 1):
        passage = hit.to_dict().get("passage")  # a text's segment: characters, not seconds
        where = (
            f" [{mmss(hit.start)}-{mmss(hit.end)}]" if hit.start is not None and hit.end is not None else ""
        )
        if passage is not None:
            page = f", page {passage['page']}" if passage["page"] is not None else ""
            where = f" [characters {passage['char_start']}-{passage['char_end']}{page}]"
        meta = format_meta(hit.metadata)
        similar = len(hit.to_dict().get("similar") or [])  # folded near-duplicates (a server's hit too)
        where += f" (+{similar} similar)" if similar else ""
        say(f"{rank:4d}  {hit.score:7.4f}  {hit.modality:<8}  {hit.path}{where}  {meta}".rstrip())
        if passage is not None:
            say(f"{'':23}{shorten(' '.join(passage['text'].split()), 100)}")


@command("Print as one JSON object.")
@click.option(
    "--errors", "all_errors", is_flag=True, help="List every recorded error, not only the 10 latest."
)
def info(all_errors: bool, as_json: bool, **common: Any) -> None:
    """Show what the library holds: counts per modality, model, size on disk and recent errors.

    \b
    Example:
      ibsearch info --json
    """
    data = with_library(common, lambda lib: lib.info(None if all_errors else 10))
    emit(as_json, data, lambda: _info_lines(data))


def _info_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"library   {data['library']}",
        f"model     {data['model']}"
        + (f" ({data['model_description']})" if "model_description" in data else ""),
        f"files     {data['files']}",
        f"size      {data['size_bytes'] / 1e6:.1f} MB",
    ]
    width = max((len(modality) for modality in data["vectors"]), default=0)
    lines += [f"  {modality:<{width}}  {count:>9}" for modality, count in data["vectors"].items()]
    lines += [f"index     {key:<{width}}  {facts['text']}" for key, facts in data.get("indexes", {}).items()]
    lines += [f"note      {note}" for note in data.get("notes", [])]
    if data.get("last_ingest"):
        lines.append(last_ingest_line(data["last_ingest"]))
    if data["recent_errors"]:
        shown = len(data["recent_errors"])
        lines.append(
            "errors:" if shown == data["errors"] else f"recent errors ({shown} of {data['errors']}):"
        )
        lines += [f"  {err['path']}: {err['reason']}" for err in data["recent_errors"]]
        if shown < data["errors"]:
            lines.append("  (ibsearch info --errors lists them all)")
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


@command("Print the vectors per index as JSON.")
@click.option(
    "--index",
    "kind",
    metavar="auto|exact|FACTORY",
    help="Index kind (remembered): auto (exact below --exact-below vectors, else tuned to --recall), "
    "exact, or a FAISS string: IVF4096,SQ8.",
)
@click.option(
    "--exact-below",
    type=click.IntRange(min=0),
    metavar="N",
    help="auto: vectors per modality from which the index is approximate (default 100000).",
)
@click.option(
    "--recall",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Recall@10 against exact search an approximate index is tuned to (default 0.95).",
)
def reindex(
    kind: str | None, exact_below: int | None, recall: float | None, as_json: bool, **common: Any
) -> None:
    """Rebuild every index from the vectors stored in the database (options change the index kind).

    \b
    Example:
      ibsearch reindex
      ibsearch reindex --index exact
    """
    work = lambda lib: (lib.reindex(index=kind, exact_below=exact_below, recall=recall), lib.info(0))  # noqa: E731
    counts, data = with_library(common, work)
    lines = [f"{key}: {n} vectors, {data['indexes'][key]['text']}" for key, n in counts.items()]
    emit(as_json, counts, lambda: lines or ["empty library"])
    for key in counts:
        if "warning" in data["indexes"][key]:
            say(f"Warning: {key}: {data['indexes'][key]['warning']}", err=True)


@command("Print the report as JSON.")
@click.option(
    "--no-repair", is_flag=True, help="Change nothing: an index file that needs repair is a problem (exit 1)."
)
def check(no_repair: bool, as_json: bool, **common: Any) -> None:
    """Check the whole library: the database file, every stored vector, every index row.

    An index file that is missing, damaged or behind the database (after a crash) is rebuilt or brought
    up to date, and listed as repaired. Exit code 0 when the library is consistent (after those
    repairs), 1 when a problem remains; with --no-repair nothing is changed and an index that needs
    repair is a problem.

    \b
    Example:
      ibsearch check && echo consistent
    """
    waiting = lambda: click.echo("another ibsearch process is writing the library; waiting for it", err=True)  # noqa: E731
    report = with_library(common, lambda lib: lib.check(waiting, repair=not no_repair))
    emit(as_json, report.to_dict(), report.lines)
    if not report.ok:
        sys.exit(1)


@cli.group()
def model() -> None:
    """Models: make one to try ibsearch without downloading the real weights.

    \b
    Example:
      ibsearch model random imagebind_small small.pth
    """


@model.command("random")
@click.argument("config", type=click.Choice(config_names()))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
def random_model(config: str, out: str, seed: int) -> None:
    """Write a random-weight checkpoint OUT of the model config CONFIG, and its model card beside it.

    The weights are random: search results mean nothing. This is for trying ibsearch (and testing a
    pipeline) without the 4.8 GB ImageBind-Huge file; imagebind_small or imagebind_tiny are small and
    fast. Use the card with --model (or IBSEARCH_MODEL).

    \b
    Example:
      ibsearch model random imagebind_small small.pth
      ibsearch ingest ./media --model small.json --library ./try-lib
    """
    from ..encoder.weights.random_weights import RANDOM_NOTE, write_random_model

    checkpoint, card = write_random_model(config, out, seed)
    click.echo(f"wrote {checkpoint} and its model card {card}")
    click.echo(f"  {RANDOM_NOTE}")
    click.echo(f"  try it: ibsearch ingest PATH --model {card} --library DIR")
