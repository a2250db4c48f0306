"""``ibsearch mcp``: a library as Model Context Protocol tools, for assistants (the ``mcp`` extra).

Three tools over the official ``mcp`` SDK: ``search`` (the query inputs a text-based caller can give,
the rows of :data:`ibsearch.terms.QUERY_INPUTS` offered on the command line, and every field of
:class:`~ibsearch.options.SearchOptions`), ``item`` (one file: its metadata, where it is, its
segments or passages) and ``info`` (:func:`ibsearch.maintenance.info`). The search tool's parameters
are derived from those two tables, so an input or an option added there is offered here unchanged.

Like the server, this is a top layer: the library lives on a thread of its own
(:class:`~ibsearch.server.service.LibraryService`, which also catches up with other processes'
commits before each call), and only public APIs are used.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from .. import maintenance
from ..errors import IbsearchError, UsageError
from ..files import path_fields
from ..library import LibraryResources
from ..options import SearchOptions
from ..server.service import LibraryService
from ..terms import Given, inputs_on, no_input_message, parse_term

#: The most segments or passages ``item`` lists (a long recording has thousands).
MAX_PARTS = 50

INSTRUCTIONS = (
    "Search a personal library of photos, videos, recordings and notes by meaning (ImageBind). "
    "Call search with text (or paths of files to search by, or like= an indexed file's path); each hit "
    "has a path and an id; call item with either for its metadata, segments and passages; info "
    "describes the library."
)


def search_parameters() -> list[inspect.Parameter]:
    """The search tool's parameters: one list of ``[WEIGHT=]VALUE`` strings per query input a
    text-based caller can give, then the fields of :class:`SearchOptions` with their types and
    defaults."""
    params = []
    for row in inputs_on("cli"):
        value = "TEXT" if row.given is Given.TEXT else "PATH"
        described = Field(description=f"{row.help} Each value is [WEIGHT=]{value} (weight default 1).")
        params.append(_keyword(row.name, Annotated[list[str] | None, described], None))
    hints = typing.get_type_hints(SearchOptions)
    for option in fields(SearchOptions):
        default = option.default if option.default_factory is MISSING else option.default_factory()
        params.append(_keyword(option.name, hints[option.name], default))
    return params


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def build_server(service: LibraryService) -> MCPServer:
    """An MCP server whose tools answer from ``service``'s library."""
    server = MCPServer("ibsearch", instructions=INSTRUCTIONS)

    async def search(**given: Any) -> dict[str, Any]:
        return await _answer(service, lambda lib: _search(service, given))

    search.__signature__ = inspect.Signature(search_parameters())  # type: ignore[attr-defined]
    server.add_tool(search, name="search", description=_search_description())

    async def item(
        path: Annotated[str | None, Field(description="The file's path, as a hit gives it.")] = None,
        id: Annotated[int | None, Field(description="The item id a hit gives.")] = None,
    ) -> dict[str, Any]:
        """One indexed file: its path, kind, size, dates, media facts (dimensions, duration and what
        else the library recorded), a file:// link, its segments (seconds) or passages (text)."""
        return await _answer(service, lambda lib: item_details(lib, path, id))

    async def info() -> dict[str, Any]:
        """The library: its folder, model, files and vectors by kind, indexes, recent errors and
        what the last ingest did."""
        return await _answer(service, lambda lib: maintenance.info(lib))

    server.add_tool(item, name="item")
    server.add_tool(info, name="info")
    return server


def _search_description() -> str:
    names = ", ".join(row.name for row in inputs_on("cli"))
    return (
        "Find the files nearest in meaning to a query: any mix of inputs (" + names + "), each "
        "embedded, weighted and summed. Options: targets (modalities to search: vision, audio, "
        "text...), k, path filters, durations, segments (the best timestamped stretch or passage of "
        "each file), min_relevance, after/before dates, sort, offset (the next page). Returns hits "
        "best first, each with its path, item id, score, relevance, modality, media facts and, for a "
        "segment, its start and end or its passage."
    )


async def _answer(service: LibraryService, work: Callable[[LibraryResources], Any]) -> Any:
    """``work(library)`` on the library's thread; an ibsearch error becomes the tool's error, with
    its message (what was wrong and what to do)."""
    try:
        return await service.run(work)
    except IbsearchError as exc:
        raise ToolError(str(exc)) from exc


def _search(service: LibraryService, given: dict[str, Any]) -> dict[str, Any]:
    terms = [parse_term(row.name, raw) for row in inputs_on("cli") for raw in given.get(row.name) or []]
    if not terms:
        raise UsageError(no_input_message().replace("--", ""))
    options = SearchOptions.given(given.get("targets"), given)
    found = service.search(terms, options)
    return {"hits": [{"id": record.id, **hit.to_dict()} for record, hit in found.hits]}


def item_details(lib: LibraryResources, path: str | None, item_id: int | None) -> dict[str, Any]:
    """What ``item`` answers: the file stored as ``path`` or with the id ``item_id``."""
    if (path is None) == (item_id is None):
        raise UsageError("item needs either a path or an id (as a search hit gives them)")
    store = lib.store
    record = store.files.get(path) if path is not None else store.files.get_by_id(int(item_id or 0))
    if record is None:
        what = f"stored as {path!r}" if path is not None else f"with id {item_id}"
        raise UsageError(f"there is no item {what} in the library (search gives the paths and ids)")
    stored = store.vectors.of_file(record.path)
    segments = [(v.start, v.end) for v in stored if v.start is not None]
    passages = [v.passage for v in stored if v.passage is not None]
    details: dict[str, Any] = {
        "id": record.id,
        **path_fields(record.path),
        "link": Path(record.path).as_uri() if Path(record.path).is_absolute() else None,
        "modality": record.modality,
        "size_bytes": record.size,
        "modified": _iso(record.mtime_ns / 1e9),
        "added": _iso(record.added),
        "metadata": record.info,
        "vectors": len(stored),
        "segments": [{"start": s, "end": e} for s, e in segments[:MAX_PARTS]],
        "passages": [
            {"text": p.text, "char_start": p.char_start, "char_end": p.char_end, "page": p.page}
            for p in passages[:MAX_PARTS]
        ],
    }
    if len(segments) > MAX_PARTS or len(passages) > MAX_PARTS:
        details["truncated"] = f"the first {MAX_PARTS} of {max(len(segments), len(passages))} are listed"
    return details


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def serve_stdio(opener: Callable[[], LibraryResources]) -> None:
    """Answer MCP requests on standard input and output until the client closes them."""
    with LibraryService(opener) as service:
        build_server(service).run("stdio")


__all__ = ["build_server", "item_details", "search_parameters", "serve_stdio"]
