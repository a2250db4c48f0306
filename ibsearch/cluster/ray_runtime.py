"""Reaching Ray: a cluster given by address (or ``RAY_ADDRESS``), else a local runtime on this machine.

An address is checked before Ray sees it, so that a wrong one fails soon, in one sentence: its form
(``HOST:PORT`` of the head's GCS, or ``auto``: the cluster this machine's ``ray start`` joined), then
that its host is known and accepts a connection on that port. Joining is bounded too, since Ray
itself retries a GCS that does not answer, or waits for a Ray node on this machine, for minutes.
``IBSEARCH_RAY_TIMEOUT`` (seconds, default 30) bounds each of the two. A Ray Client address
(``ray://``) is refused: Ray Data runs its pipeline from the driver, which must then be a node of
the cluster, and a Ray Client driver is not one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..errors import UsageError

log = logging.getLogger(__name__)

ENV_TIMEOUT = "IBSEARCH_RAY_TIMEOUT"
#: Ray's switch that, set to 0, binds the runtime it starts to loopback only (its name is Ray's).
LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
DEFAULT_TIMEOUT = 30.0
FORMS = (
    "give the head node's GCS address as HOST:PORT (port 6379 by default), or auto, on a machine that "
    "is a node of that cluster (ray start --address=HOST:PORT)"
)


def connect(address: str | None, local_cpus: int | None = None, env: dict[str, str] | None = None) -> float:
    """Join the Ray cluster at ``address`` (else ``RAY_ADDRESS``), or start a local runtime of
    ``local_cpus`` CPUs (default: all); ``env`` is the workers' extra environment. Returns the GPUs
    the cluster has (0 without). A runtime this process already joined is used as it is. An address
    that is malformed, or where no cluster answers within :func:`timeout`, is a :class:`UsageError`."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            "cluster ingest needs Ray: install the extra with pip install 'ibsearch[ray]'"
        ) from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        address = cluster_address(address)
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "runtime_env": {"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", **(env or {})}},
        }
        if address is None:  # a local runtime gets this machine's CPUs; a cluster brings its own
            # Ray binds a runtime it starts to this machine's network address, where others could
            # reach its unauthenticated services; Ray's local-only switch keeps it on loopback.
            os.environ.setdefault(LOCAL_ONLY, "0")
            ray.init(num_cpus=local_cpus or os.cpu_count() or 1, **options)
        else:
            wait = timeout()
            check_address(address, wait)
            _join(ray, address, options, wait)
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    log.info("ray: %s CPUs, %s GPUs", ray.cluster_resources().get("CPU"), gpus)
    return gpus


def cluster_address(address: str | None) -> str | None:
    """The cluster an ingest joins: ``address``, else ``RAY_ADDRESS``; None (or ``local``) starts one."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def preflight(address: str | None) -> None:
    """Check the address of the cluster a run will join (:func:`check_address`), before any work,
    unless this process has joined one already."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return
    address = cluster_address(address)
    if address is not None:
        check_address(address, timeout())


def timeout() -> float:
    """Seconds to wait for a cluster to answer, then to be joined (``IBSEARCH_RAY_TIMEOUT``)."""
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:  # a finite wait: a thread's join takes no infinity
        raise UsageError(f"{ENV_TIMEOUT}={text!r}: give the seconds to wait for a Ray cluster, e.g. 30")
    return value


def check_address(address: str, wait: float) -> None:
    """A :class:`UsageError` unless ``address`` has a form Ray takes and its host accepts a TCP
    connection on its port within ``wait`` seconds (``auto`` is the cluster this machine's
    ``ray start`` joined: Ray checks that itself)."""
    if address == "auto":
        return
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    if scheme == "ray":
        raise UsageError(
            f"{address!r} is a Ray Client address, and Ray Data cannot run a cluster ingest's pipeline "
            f"through Ray Client: {FORMS}"
        )
    if scheme:
        raise UsageError(f"{address!r} is not a Ray address: {FORMS}")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # an IPv6 address in brackets
    if not sep or not host:
        raise UsageError(f"{address!r} is not a Ray address (no port): {FORMS}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{address!r} is not a Ray address: the port {port!r} is not a number; {FORMS}")
    reason = _unreachable(host, int(port), wait)
    if reason == SILENT:
        raise UsageError(_no_answer(address, wait))
    if reason is not None:
        raise UsageError(
            f"cannot reach the Ray cluster at {address!r} ({reason}): check that the head node is up and "
            f"the address is right ({FORMS}); {ENV_TIMEOUT} sets how long to wait, now {wait:g} s"
        )


def _unreachable(host: str, port: int, wait: float) -> str | None:
    """Why nothing accepts a connection at ``host``:``port`` within ``wait`` seconds (None: it does)."""
    deadline = time.monotonic() + wait
    found: list[Any] = []

    def resolve() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    # getaddrinfo has no time limit of its own: a name server that does not answer must not hang us.
    resolver = threading.Thread(target=resolve, name="ray-address", daemon=True)
    resolver.start()
    resolver.join(wait)
    if not found:
        return f"the name {host!r} was not resolved within {wait:g} s"
    if isinstance(found[0], OSError):
        return f"the host {host!r} is not known: {found[0].strerror or found[0]}"
    problem = f"no answer within {wait:g} s"
    for family, kind, proto, _, where in found[0]:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(where)
                return None if _answers_http2(sock) else SILENT
        except TimeoutError:
            pass
        except OSError as exc:
            problem = f"{exc.strerror or exc} on port {port}"
    return problem


# A Ray head's GCS is a gRPC server: over HTTP/2 it answers a client's connection preface with its
# SETTINGS frame at once. A port that accepts and then says nothing (another service, a stuck process)
# is told apart here, before Ray's own join, which would wait in its core and cannot be interrupted.
SILENT = "silent"
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and empty SETTINGS


def _answers_http2(sock: socket.socket) -> bool:
    """Whether the peer of connected ``sock`` answers an HTTP/2 preface with a SETTINGS frame before
    the socket's time runs out."""
    try:
        sock.sendall(_PREFACE)
        head = b""
        while len(head) < 9:
            part = sock.recv(9 - len(head))
            if not part:
                return False
            head += part
    except OSError:
        return False
    return head[3] == 4  # the frame's type: SETTINGS


def _no_answer(address: str, wait: float) -> str:
    return (
        f"the Ray cluster at {address!r} did not answer within {wait:g} s: is that the head node's "
        "GCS address, and is this machine a node of that cluster (ray start --address=HOST:PORT)? "
        f"{ENV_TIMEOUT} sets how long to wait"
    )


def _join(ray: Any, address: str, options: dict[str, Any], wait: float) -> None:
    """``ray.init(address)``, given ``wait`` seconds: it runs in a thread of its own, since a call
    into Ray's core cannot be interrupted, and is left behind (a daemon) when it takes longer."""
    outcome: list[BaseException | None] = []

    def join() -> None:
        try:
            ray.init(address=address, **options)
            outcome.append(None)
        except BaseException as exc:  # handed to the waiting thread, which reports it
            outcome.append(exc)

    joiner = threading.Thread(target=join, name="ray-join", daemon=True)
    with _without_thread_warning():
        joiner.start()
        joiner.join(wait)
    if not outcome:
        raise UsageError(_no_answer(address, wait))
    error = outcome[0]
    if error is not None:
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise UsageError(f"cannot join the Ray cluster at {address!r}: {first.strip()}") from None


class _NotMainThread(logging.Filter):
    """Drops Ray's warning that a driver started outside the main thread sets no SIGTERM handler:
    without it, SIGTERM ends ibsearch at once, and what was merged stays (a rerun goes on from there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "not the main thread" not in record.getMessage()


@contextlib.contextmanager
def _without_thread_warning() -> Iterator[None]:
    ray_log = logging.getLogger("ray._private.worker")
    quiet = _NotMainThread()
    ray_log.addFilter(quiet)
    try:
        yield
    finally:
        ray_log.removeFilter(quiet)


__all__ = [
    "DEFAULT_TIMEOUT",
    "ENV_TIMEOUT",
    "check_address",
    "cluster_address",
    "connect",
    "preflight",
    "timeout",
]
