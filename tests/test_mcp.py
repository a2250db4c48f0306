"""``ibsearch mcp``: the official MCP client starts the real command over stdio on a tiny library,
lists its tools, searches and reads an item."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from conftest import run_json
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ibsearch.options import SearchOptions
from ibsearch.terms import inputs_on


def mcp_session(lib_args: list[str], steps: Any) -> Any:
    """Start ``python -m ibsearch mcp`` with ``lib_args`` and run ``await steps(client)``."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "ibsearch", "mcp", *lib_args],
        env={k: v for k, v in os.environ.items() if k.startswith(("IBSEARCH_", "PYTHON"))},
        cwd=str(Path.cwd()),
    )

    async def session() -> Any:
        with anyio.fail_after(120):
            async with Client(server, read_timeout_seconds=90) as client:
                return await steps(client)

    return anyio.run(session)


def payload(result: Any) -> Any:
    """A tool result's JSON (structured content when the tool gives it, else its one text block)."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def test_an_assistant_lists_the_tools_searches_and_reads_an_item(lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)

    async def steps(client: Any) -> dict[str, Any]:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        found = payload(await client.call_tool("search", {"text": ["a dog barking"], "k": 3}))
        notes = payload(
            await client.call_tool("search", {"text": ["dog"], "targets": ["text"], "segments": True})
        )
        item = payload(await client.call_tool("item", {"path": found["hits"][0]["path"]}))
        by_id = payload(await client.call_tool("item", {"id": notes["hits"][0]["id"]}))
        info = payload(await client.call_tool("info", {}))
        missing = await client.call_tool("item", {"path": str(media_dir / "nowhere.jpg")})
        empty = await client.call_tool("search", {"k": 3})
        return {"tools": tools, "found": found, "notes": notes, "item": item, "by_id": by_id,
                "info": info, "missing": missing, "empty": empty}  # fmt: skip

    got = mcp_session(lib_args, steps)
    assert set(got["tools"]) == {"search", "item", "info"}
    # The search tool offers every text-based query input and every search option, by name.
    offered = set(got["tools"]["search"].input_schema["properties"])
    expected = {row.name for row in inputs_on("cli")} | {f for f in SearchOptions.__dataclass_fields__}
    assert offered == expected
    hits = got["found"]["hits"]
    assert len(hits) == 3 and all(Path(h["path"]).is_relative_to(media_dir) for h in hits)
    assert got["item"]["path"] == hits[0]["path"] and got["item"]["link"].startswith("file://")
    assert got["item"]["size_bytes"] == Path(hits[0]["path"]).stat().st_size
    # A text's segment is its passage; the item lists its passages with their text.
    assert got["notes"]["hits"][0]["passage"]["text"]
    assert got["by_id"]["path"] == got["notes"]["hits"][0]["path"]
    assert any(p["text"] for p in got["by_id"]["passages"])
    assert got["info"]["files"] == len([p for p in media_dir.rglob("*") if p.is_file()])
    # Mistakes come back as the tool's error, saying what was wrong.
    assert got["missing"].is_error and "no item stored as" in got["missing"].content[0].text
    assert got["empty"].is_error and "needs at least one input" in got["empty"].content[0].text
