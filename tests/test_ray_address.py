"""``ingest --ray ADDRESS``: a bad address fails soon with one sentence; a good one is joined.

Every address here is on this machine: closed or silent loopback ports, and a Ray head started by
the test. Each command runs in a subprocess of its own, so a Ray runtime it joins is its own too.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA
from test_special_files import ingest as ingest_within

from ibsearch.cluster.ray_runtime import LOCAL_ONLY

# A Ray head of two CPUs on this machine, which makes it a node of that cluster (as `ray start` would):
# it prints its GCS address, then waits for the end of its input.
HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A file that needs the model, so that ingest goes as far as joining the cluster."""
    path = tmp_path / "photo.jpg"
    shutil.copy(DATA / "images" / "photo_640x480.jpg", path)
    return path


@pytest.fixture
def ray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv(LOCAL_ONLY, "0")  # the head, and the drivers that join it, on loopback only
    # Ray 2.60 gives a new cluster a token, kept where later drivers find it (a runtime of an earlier
    # test leaves one): the test's head and the drivers that join it both go without.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def ingest(*args: object) -> subprocess.CompletedProcess[str]:
    """``ibsearch ingest`` in a subprocess, given two minutes at most: a hang fails the test."""
    return ingest_within(*args, timeout=120)


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one ``Error:`` line a refused command printed (exit code 1, no traceback)."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert done.returncode == 1 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    return errors[0]


def closed_port() -> int:
    """A loopback port nobody listens on (it was bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("notahost:xx", "the port 'xx' is not a number"),
        ("head-node", "no port"),
        ("http://127.0.0.1:8265", "is not a Ray address"),
        ("ray://127.0.0.1:10001", "Ray Data cannot run a cluster ingest's pipeline through Ray Client"),
    ],
)
def test_a_malformed_ray_address_is_one_sentence_naming_the_forms(lib_args, photo, ray_env, address, says):
    error = one_error(ingest(photo, *lib_args, "--ray", address))
    assert repr(address) in error and says in error and "HOST:PORT" in error and "ray start" in error


def test_a_ray_address_nobody_answers_at_fails_at_once_with_one_sentence(lib_args, photo, ray_env):
    address = f"127.0.0.1:{closed_port()}"
    error = one_error(ingest(photo, *lib_args, "--ray", address))
    assert f"cannot reach the Ray cluster at {address!r}" in error and "refused" in error


def test_a_port_that_answers_but_is_no_ray_cluster_fails_within_the_time_limit(
    lib_args, photo, ray_env, monkeypatch
):
    monkeypatch.setenv("IBSEARCH_RAY_TIMEOUT", "3")
    with socket.socket() as silent:  # accepts connections and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        error = one_error(ingest(photo, *lib_args, "--ray", address))
    assert f"{address!r} did not answer within 3 s" in error and "IBSEARCH_RAY_TIMEOUT" in error


@pytest.fixture
def ray_head(ray_env) -> Iterator[str]:
    """The GCS address of a Ray head running in a process of its own, ended after the test."""
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        address = head.stdout.readline().strip()  # type: ignore[union-attr]
        assert address, "the Ray head did not start"
        yield address
    finally:
        head.communicate(timeout=120)  # its end of input: it shuts Ray down and exits


def test_a_ray_head_given_by_host_and_port_is_joined_and_does_the_work(lib_args, photo, ray_head):
    host, port = ray_head.rsplit(":", 1)
    assert host == "127.0.0.1"
    done = ingest(photo, *lib_args, "--ray", f"127.0.0.1:{port}", "--json")
    assert done.returncode == 0, done.stderr
    assert '"added": 1' in done.stdout and '"failed": []' in done.stdout
