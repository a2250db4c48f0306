"""``ibsearch export`` and ``ibsearch import``: a library's vectors out to a file, shards of them in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from .app import command, open_library, with_library
from .output import echo_json, emit, say


def _named(name: str) -> Callable[[Any], Any]:
    """Give the command a name that is a Python keyword (``import``)."""

    def rename(fn: Any) -> Any:
        fn.__name__ = name
        return fn

    return rename


@command("Print the summary as one JSON object.")
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "npy"]), default="parquet", show_default=True,
    help="parquet: one shard that 'ibsearch import' reads; npy: a (n, dim) float32 array, plus FILE's stem "
    ".jsonl (one row per vector) and .json (model, dimension).",
)  # fmt: skip
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the vectors.")  # fmt: skip
def export(fmt: str, output: str, as_json: bool, **common: Any) -> None:
    """Write every vector of the library with its file to FILE.

    Columns: path, modality (vision/text/audio/..., or audio.segments/vision.segments for timestamped
    segments with start/end seconds), start, end, metadata (media info as JSON), vector, and the
    file's size, mtime_ns and hash; the model, dimension and preprocessing are in the file's metadata.
    The passages of texts (text.segments) are left out: an ingest of the notes computes them again.

    \b
    Example:
      ibsearch export --output vectors.parquet
      ibsearch import vectors.parquet --library other-lib
    """
    data = with_library(common, lambda lib: lib.export_vectors(output, format=fmt, progress=lib.progress))
    summary = data.to_dict()
    emit(as_json, summary, lambda: [f"exported {summary['rows']} vectors of {summary['files']} file(s) to "
                                    + ", ".join(summary["outputs"])])  # fmt: skip


@command("Print the summary as one JSON object.")
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_named("import")
def import_shards(shards: Sequence[str], as_json: bool, **common: Any) -> None:
    """Add the vectors in Parquet SHARDS (computed elsewhere: another library, a cluster job) to the library.

    Needed columns: path, modality, vector (a list or fixed-size list of float32 of the library's
    dimension); optional: start, end (segments, with modality audio.segments or vision.segments),
    metadata (JSON), size, mtime_ns, hash (no text.segments: shards hold no passages). A shard whose
    metadata names another model or dimension is refused. Paths must be absolute and normalized. Files
    on this machine must still be what the shard says (size and mtime, or hash); they then count as
    ingested, so 'ibsearch ingest' of them encodes nothing but the passages of notes (and the server
    sends a file only once an ingest has read it). Crash-safe like ingest.

    \b
    Example:
      ibsearch import part-000.parquet part-001.parquet --model imagebind_huge
    """
    with open_library(common, create=True) as lib:
        summary = lib.import_vectors(list(shards), progress=lib.progress).to_dict()
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"imported {summary['vectors']} vectors from {summary['shards']} shard(s): added {summary['added']}, "
        f"updated {summary['updated']}, failed {len(summary['failed'])}"
    )
    for bad in summary["failed"]:
        say(f"  failed: {bad['path']}: {bad['reason']}", err=True)
