"""``ibsearch serve``: the HTTP API and the search page over a library (see ``ibsearch.server``), and
``ibsearch mcp``: its tools for assistants (see ``ibsearch.assist``).

The server's modules (FastAPI, uvicorn, the ``mcp`` SDK, torch through the model) are imported only
when a command runs, so that ``import ibsearch.cli`` stays cheap.
"""

from __future__ import annotations

import os
from typing import Any

import click

from .app import command, open_library
from .output import echo_json, say


@command("Print the address, sign-in link and token as one JSON line once the server listens.", model=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but a loopback address requires a token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="TCP port (0: any free port).",
)
@click.option(
    "--token",
    envvar="IBSEARCH_TOKEN",
    default=None,
    help="Require this token on every API request (generated and printed for a non-loopback --host).",
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=100.0,
    show_default=True,
    help="Largest request (an uploaded query file) accepted, in megabytes.",
)
@click.option("--max-upload-files", type=click.IntRange(min=1), default=8, show_default=True,
              help="Most files one search may upload.")  # fmt: skip
@click.option("--max-upload-megapixels", type=click.FloatRange(min=0, min_open=True), default=100.0,
              show_default=True, help="Most image pixels (millions) one search may decode.")  # fmt: skip
def serve(
    host: str,
    port: int,
    token: str | None,
    max_upload_mb: float,
    max_upload_files: int,
    max_upload_megapixels: float,
    as_json: bool,
    **common: Any,
) -> None:
    """Serve the library: a web page to search it by text, image, sound or video, and its JSON API.

    Listens on 127.0.0.1 by default: only this machine can connect. While it runs, 'ibsearch query' on
    the same library sends its queries here (no model loading: well under a second). Towers load on
    first use and stay warm; files that another process ingests are seen by the next request.

    \b
    Example:
      ibsearch serve                      # then open http://127.0.0.1:8765/
      ibsearch serve --host 0.0.0.0 --port 8000   # prints a sign-in link with a token
    """
    # torch and FAISS each bring an OpenMP runtime; threads that spin after their work (the default)
    # take the few cores from the other and from the server's own threads: 2.4x slower text queries
    # on a busy 2-core machine (BENCHMARKS.md). Set before either is loaded.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..server.config import ServerConfig
    from ..server.runner import Server

    config = ServerConfig.for_host(host, port, token, max_upload_mb, max_upload_files, max_upload_megapixels)
    with Server(lambda: open_library(common), config) as server:

        def announce() -> None:
            if as_json:
                echo_json({"url": server.url, "sign_in": server.sign_in_url, "token": config.token,
                           "library": str(server.library), "pid": os.getpid()})  # fmt: skip
                return
            say(f"Serving library {server.library} at {server.url}/")
            if config.token:
                say(f"Sign in (open this link): {server.sign_in_url}")
                say(f"Scripts: send 'Authorization: Bearer {config.token}'")
            say("Press Ctrl-C to stop.")

        server.serve(announce)


@command(None, model=True)
def mcp(**common: Any) -> None:
    """Answer an assistant's Model Context Protocol requests on standard input and output.

    Tools: search (text, files or indexed files, with the query options), item (one file's details,
    segments and passages) and info (the library). Needs pip install 'ibsearch[mcp]'. An assistant
    starts it itself, e.g. with the command: ibsearch mcp --library ~/my-library

    \b
    Example (an MCP client's configuration):
      {"mcpServers": {"ibsearch": {"command": "ibsearch", "args": ["mcp"]}}}
    """
    try:
        from ..assist import serve_stdio
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "mcp":
            raise
        raise click.ClickException("ibsearch mcp needs the mcp SDK: pip install 'ibsearch[mcp]'") from None
    serve_stdio(lambda: open_library(common))
