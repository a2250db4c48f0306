"""The ``ibsearch`` command line: parse options, make one call into the engine, format the result.

This package is the only place that imports click or draws progress bars; it never touches SQL,
FAISS or torch. ``app`` holds the group and what every command shares, ``commands`` the commands,
``output`` how results are printed.
"""

from . import commands, serve, vectors  # noqa: F401 - registers the commands on the group
from .app import cli


def main() -> None:
    """Console entry point."""
    cli(prog_name="ibsearch")


__all__ = ["cli", "main"]
