"""Tools for assistants: ``mcp`` serves a library's search, items and info as Model Context Protocol
tools (``ibsearch mcp``). A top layer like ``server``: it takes a library and uses public APIs only,
and the command line imports it only when the command runs."""

from .mcp import build_server, item_details, search_parameters, serve_stdio

__all__ = ["build_server", "item_details", "search_parameters", "serve_stdio"]
