"""The ``ibsearch`` command line: parse options, make one call into the engine, format the result.

This package is the only place that imports click or draws progress bars; it never touches SQL,
FAISS or torch. ``app`` holds the group and what every command shares, ``commands`` the commands (``vectors``:
export and import, ``tidy``: duplicates, ``serve``),
``output`` how results are printed.
"""

from . import commands, serve, tidy, vectors  # noqa: F401 - registers the commands on the group
from .app import cli


def main() -> None:
    """Console entry point."""
    cli(prog_name="ibsearch")


__all__ = ["cli", "main"]
