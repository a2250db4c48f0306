"""The command line's fast path: send ``ibsearch query`` to a server already running on the library.

A server that runs on a loopback address leaves a :class:`~.record.ServerRecord` in its library.
When that record is there, its process is alive, the server answers ``/healthz`` as the recorded
instance within a moment, and it runs the model the command asks for, the query goes there: no
torch, no model loading, no index reading in the command's process. Otherwise (no server, a stale
record, a file too large for the server, any failure to talk to it) :class:`ServerBackend` is not
found or its search returns None, and the command searches in-process as before. Both backends take
the same ``(terms, SearchOptions)``; the terms travel in the fields of the one table of query inputs
(:data:`ibsearch.terms.QUERY_INPUTS`).

This module imports nothing heavy (no numpy, SQLite or FAISS): that is the whole point of it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import path_fields
from ..locations import library_dir
from ..options import SearchOptions
from ..terms import Given, Term, input_for
from .record import INSTANCE_HEADER, ServerRecord, remove_record

HEALTH_TIMEOUT = 1.0  # seconds to wait for /healthz: a server that is slower is not used
QUERY_TIMEOUT = 600.0  # the first query of a server may load a tower
#: The fields of a hit as ``Hit.to_dict`` writes them, in its order.
HIT_FIELDS = ("path", "path_bytes", "score", "relevance", "level", "sources", "modality", "metadata", "taken",
              "similar", "start", "end", "passage")  # fmt: skip
#: Answers that mean "ask the library yourself" rather than "your query is wrong": no access, an upload
#: too large, or outside the API's limits or unreadable (the in-process search says why, naming the file).
FALL_BACK = {401, 403, 404, 413, 422}


@dataclass(frozen=True)
class RemoteHit:
    """A hit as the server sent it, with the attributes and ``to_dict`` of :class:`~ibsearch.search.Hit`."""

    fields: dict[str, Any]

    @property
    def path(self) -> str:
        raw = self.fields.get("path_bytes")
        return os.fsdecode(base64.b64decode(raw)) if raw else str(self.fields["path"])

    def __getattr__(self, name: str) -> Any:
        if name in HIT_FIELDS:
            return self.fields.get(name)
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.fields)


class ServerBackend:
    """The server running on a library, as a search backend: :meth:`search` takes what
    :meth:`ibsearch.search.Searcher.search` takes, and answers None where the command must search
    in-process instead."""

    def __init__(self, record: ServerRecord) -> None:
        self.record = record

    @classmethod
    def find(cls, settings: Mapping[str, Any]) -> ServerBackend | None:
        """The server serving the library that ``settings`` names (the command's shared options:
        ``library``, ``model``, ``checkpoint``, ``device``, ``precision``) as they ask, or None."""
        root = library_dir(settings.get("library"))
        record = ServerRecord.read(root)
        if record is None:
            return None
        if not record.process_alive():
            remove_record(root, record.instance)  # stale: its server is gone
            return None
        return cls(record) if _suits(record, root, settings) else None

    def search(self, terms: Sequence[Term], options: SearchOptions) -> list[RemoteHit] | None:
        """The hits of ``terms`` from the server, or None (see the module docs). Raises
        :class:`UsageError` with the server's message when the server finds the query wrong."""
        try:
            connection = _connection(self.record)
            if connection is None:
                return None
            with contextlib.closing(connection):
                return _search(connection, self.record, terms, options)
        except (OSError, http.client.HTTPException, ValueError):
            return None


def _suits(record: ServerRecord, root: Path, common: Mapping[str, Any]) -> bool:
    """Whether the server serves this library with the model settings the command asks for."""
    if os.path.realpath(root) != record.library:
        return False
    model = common.get("model")
    if model and (os.path.abspath(model) if os.path.isfile(model) else model) != record.model_spec:
        return False
    if common.get("checkpoint") and os.path.abspath(common["checkpoint"]) != os.path.abspath(
        record.checkpoint or ""
    ):
        return False
    return all(
        common.get(name, "auto") in ("auto", getattr(record, name)) for name in ("device", "precision")
    )


def _connection(record: ServerRecord) -> http.client.HTTPConnection | None:
    """A connection to the recorded server if it answers ``/healthz`` as the recorded instance."""
    url = urllib.parse.urlsplit(record.url)
    if url.scheme != "http" or not url.hostname:
        return None
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=HEALTH_TIMEOUT)
    connection.request("GET", "/healthz")
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200 or answer.getheader(INSTANCE_HEADER) != record.instance:
        connection.close()
        return None
    connection.timeout = QUERY_TIMEOUT
    if connection.sock is not None:
        connection.sock.settimeout(QUERY_TIMEOUT)
    return connection


def _ask(
    connection: http.client.HTTPConnection,
    record: ServerRecord,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str = "application/json",
) -> Any:
    """The JSON answer of one request; None for answers that mean falling back; raises
    :class:`UsageError` with the server's message for a query it finds wrong."""
    headers = {"Content-Type": content_type} if body else {}
    if record.token:
        headers["Authorization"] = f"Bearer {record.token}"
    connection.request(method, path, body=body or None, headers=headers)
    answer = connection.getresponse()
    data = json.loads(answer.read() or b"null")
    if answer.status == 200:
        return data
    if answer.status in FALL_BACK or answer.status >= 500:
        return None
    raise UsageError(str(data.get("error") if isinstance(data, dict) else data))


def _search(
    connection: http.client.HTTPConnection,
    record: ServerRecord,
    terms: Sequence[Term],
    options: SearchOptions,
) -> list[RemoteHit] | None:
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, str, bytes]] = []
    for term in terms:
        weighted = f"{float(term.weight)!r}="
        field = input_for(term, "api")
        if field and field.given is Given.TEXT and isinstance(term.value, str):
            fields.append((field.name, weighted + term.value))
        elif field and field.given is Given.STORED:
            quoted = urllib.parse.quote(os.path.abspath(str(term.value)), safe="/")
            item = _ask(connection, record, "GET", f"/api/items?path={quoted}")
            if item is None:
                return None  # not in the library: the in-process search says so in its own words
            fields.append((field.name, weighted + str(item["id"])))
        elif (upload := input_for(term, "upload")) and os.path.isfile(str(term.value)):
            fields.append((upload.name + "_weight", repr(float(term.weight))))
            with open(str(term.value), "rb") as fh:
                files.append((upload.name, os.path.basename(str(term.value)), fh.read()))
        else:
            return None  # an input that only the in-process search can read (or report)
    fields += _option_fields(options)
    body, content_type = _multipart(fields, files)
    found = _ask(connection, record, "POST", "/api/search", body, content_type)
    if found is None:
        return None
    return [RemoteHit(_hit_fields(result)) for result in found["results"]]


def _option_fields(options: SearchOptions) -> list[tuple[str, str]]:
    """The search options as form fields (path filters already anchored here, as in-process)."""
    fields = [("target", target) for target in options.targets or ()]
    for name in ("path_prefix", "path_glob"):
        if getattr(options, name) is not None:
            fields.append((name, getattr(options, name)))
    for name in (
        "k",
        "min_duration",
        "max_duration",
        "min_relevance",
        "per_file",
        "after",
        "before",
        "offset",
    ):
        if getattr(options, name) is not None:
            fields.append((name, repr(getattr(options, name))))
    fields.append(("sort", options.sort))
    for name in ("segments", "include_like", "keywords", "fold"):
        fields.append((name, "true" if getattr(options, name) else "false"))
    return fields


def _multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "ibsearch-" + os.urandom(12).hex()
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in fields
    ]
    for name, filename, data in files:
        safe = "".join(c for c in path_fields(filename)["path"] if c not in '"\r\n\\') or "upload"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{safe}"\r\n'
        parts.append((head + "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


#: The fields ``Hit.to_dict`` always writes (the others only when set).
ALWAYS = frozenset({"path", "score", "relevance", "level", "sources", "modality", "metadata"})
#: The fields of a folded hit as ``Hit.folded_dict`` writes them.
FOLDED_FIELDS = ("path", "path_bytes", "score", "relevance", "start", "end")


def _hit_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result's fields as ``Hit.to_dict`` gives them: ``path_bytes``, ``start``, ``end``, ``passage``,
    ``taken`` and ``similar`` only when set."""
    fields = {
        name: result.get(name) for name in HIT_FIELDS if name in ALWAYS or result.get(name) not in (None, [])
    }
    if "similar" in fields:  # the API adds each folded hit's id and URLs, which Hit.to_dict does not write
        fields["similar"] = [{n: s[n] for n in FOLDED_FIELDS if n in s} for s in result["similar"]]
    return fields


__all__ = ["RemoteHit", "ServerBackend"]
