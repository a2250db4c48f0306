"""The ``ibsearch`` group: options every command shares, how commands are declared, errors shown.

Every ibsearch error becomes click's ``Error: ...`` with exit code 1 here, in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from ..errors import IbsearchError, out_of_space
from ..files import display_path
from .output import progress_bars

# Options of every command that opens a library, and of those that run the model, as
# (name, click.option keywords).
_LIBRARY_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--library", {"envvar": "IBSEARCH_LIBRARY", "type": click.Path(file_okay=False),
                   "help": "Library directory (default: the platform data directory)."}),
    ("--model", {"envvar": "IBSEARCH_MODEL", "default": None,
                 "help": "Registered model name (default imagebind_huge) or path to a JSON model card."}),
]  # fmt: skip
_MODEL_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--checkpoint", {"envvar": "IBSEARCH_CHECKPOINT", "default": None, "type": click.Path(dir_okay=False),
                      "help": "Use this local checkpoint file instead of downloading the model's weights."}),
    ("--device", {"type": click.Choice(["auto", "cpu", "cuda"]), "default": "auto", "show_default": True,
                  "help": "Where the model runs."}),
    ("--precision", {"type": click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]), "default": "auto",
                     "show_default": True,
                     "help": "Compute precision (auto: bf16 on GPUs and CPUs with bf16 units, else fp32; "
                             "int8: CPUs only, approximate, faster; a library ingested at int8 stays at int8 "
                             "under auto until an ingest at fp32/bf16/fp16 encodes it again)."}),
]  # fmt: skip


def command(json_help: str | None, *, paths: bool = False, model: bool = False) -> Any:
    """Declare a command that opens a library: its shared options, ``--json`` (``json_help``; None:
    a command that prints no result has none), with ``paths`` a required PATHS... argument, and with
    ``model`` the options of running the model."""

    def declare(fn: Any) -> Any:
        command = cli.command()(fn)
        shared: list[click.Parameter] = [click.Option([name], **kw) for name, kw in _LIBRARY_OPTIONS]
        # Commands that do not run the model still accept its options, so that one set of options
        # works for every command, but do not list them: they change nothing there.
        shared += [click.Option([name], **kw, hidden=not model) for name, kw in _MODEL_OPTIONS]
        if paths:
            shared.insert(0, click.Argument(["paths"], nargs=-1, required=True, type=click.Path()))
        command.params[:0] = shared
        if json_help is not None:
            command.params.append(click.Option(["--json", "as_json"], is_flag=True, help=json_help))
        return command

    return declare


def open_library(common: dict[str, Any], **kw: Any) -> Any:
    from ..engine import Library

    return Library.open(
        common["library"],
        model=common["model"],
        checkpoint=common["checkpoint"],
        device=common["device"],
        precision=common["precision"],
        progress=progress_bars(),
        **kw,
    )


def with_library(common: dict[str, Any], work: Callable[[Any], Any]) -> Any:
    """Open the library the options name, run ``work(library)`` and close it again."""
    with open_library(common) as lib:
        return work(lib)


class _Group(click.Group):
    """Turns every ibsearch error (and a full disk) into click's ``Error: ...`` with exit code 1, in
    this one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IbsearchError as exc:
            raise click.ClickException(display_path(str(exc))) from None
        except OSError as exc:
            # A full disk met outside the library's own writes (which say so themselves): an export's
            # output, a temporary file. The file is named when the error knows it.
            full = out_of_space(exc, os.path.dirname(os.path.abspath(exc.filename)) if exc.filename else None)
            if full is None:
                raise
            raise click.ClickException(display_path(str(full))) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ibsearch")
def cli() -> None:
    """Search photos, videos, recordings and notes by meaning, from any modality to any other.

    \b
    Example:
      ibsearch ingest ~/Pictures ~/Music
      ibsearch query --text "a dog barking" --target vision --k 10
    """
