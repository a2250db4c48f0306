"""scripts/gpu_check.sh on a machine without an NVIDIA GPU: one line that says so, exit code 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"


def _run(path: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=path)
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_gpu_check_without_nvidia_smi_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    done = _run(str(tmp_path))  # a PATH without nvidia-smi
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nvidia-smi" in lines[0] and "no NVIDIA GPU" in lines[0], done.stderr


def test_gpu_check_with_a_failing_nvidia_smi_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"  # what a machine with the tool but no working driver or GPU answers
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate' >&2\nexit 9\n")
    smi.chmod(0o755)
    done = _run(f"{tmp_path}:/usr/bin:/bin")
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nvidia-smi failed" in lines[0] and "no NVIDIA GPU" in lines[0], done.stderr
