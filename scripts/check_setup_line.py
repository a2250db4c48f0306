"""Check that the README's CPU-only set-up line installs where PyTorch's CPU index cannot be reached.

Behind a proxy that lets only PyPI through (or with an offline mirror of PyPI), an `--index-url` of
PyTorch's CPU index leaves pip nothing to install from (`No matching distribution found for
filelock`). This script reads the set-up line from README.md (so the two cannot drift apart), points
the CPU index at a loopback port where nothing listens, and runs each of its `pip install` steps
with `--dry-run --ignore-installed --report`: pip resolves everything (from PyPI) and downloads only
metadata. Exit status 0 when every step resolves and torch is among what they would install.

Usage (from the repository root, with any Python that has pip): python scripts/check_setup_line.py
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The sentence that introduces the CPU-only line in the README's quick start.
CPU_HEADING = "without an NVIDIA GPU"


def setup_line(readme: str) -> str:
    """The first shell block after the CPU-only sentence of the README's quick start."""
    at = readme.index(CPU_HEADING)
    start = readme.index("```bash\n", at) + len("```bash\n")
    return readme[start : readme.index("```", start)].strip()


def pip_steps(line: str) -> list[list[str]]:
    """The `pip install` commands of ``line`` (its `&&`-joined steps), as argument lists after `pip`."""
    steps = []
    for step in line.split("&&"):
        argv = shlex.split(step)
        if argv and Path(argv[0]).name == "pip" and argv[1:2] == ["install"]:
            steps.append(argv[1:])
    return steps


def unreachable(args: list[str], url: str) -> list[str]:
    """``args`` with PyTorch's CPU index replaced by ``url``."""
    return [url if arg == CPU_INDEX else arg for arg in args]


def pip_env() -> dict[str, str]:
    """The environment of a machine that knows only PyPI: no pip configuration, no local wheels."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file at all
    env["PIP_RETRIES"] = "0"  # a refused connection is final: do not wait through pip's back-off
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def resolve(args: list[str]) -> list[str]:
    """Run one step as a dry run; the names of what it would install (raises on failure)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", *args, "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report)]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, env=pip_env(), capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"FAILED: pip {shlex.join(args)}\n{done.stderr[-3000:]}")
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
        return [item["metadata"]["name"].lower() for item in installs]


def main() -> None:
    line = setup_line((ROOT / "README.md").read_text(encoding="utf-8"))
    steps = pip_steps(line)
    if not steps or not any(CPU_INDEX in step for step in steps):
        raise SystemExit(f"FAILED: the README's CPU-only line installs nothing from {CPU_INDEX}: {line}")
    # A port that is bound but never listens: every connection to it is refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/whl/cpu"
        names = [name for step in steps for name in resolve(unreachable(step, url))]
    if "torch" not in names:
        raise SystemExit(f"FAILED: torch is not among what the set-up line installs: {sorted(set(names))}")
    print(f"ok: the README's set-up line resolves with {CPU_INDEX} unreachable ({len(set(names))} packages)")


if __name__ == "__main__":
    main()
