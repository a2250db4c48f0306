"""Shared fixtures: a tiny random-weight ImageBind behind a real model card, and real small media."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

DATA = Path(__file__).parent / "data"

# A handful of real files per kind: enough to rank, few enough to keep the suite fast.
IMAGES = ["photo_640x480.jpg", "rgba_alpha_320x240.png", "gray_L_300x400.png", "palette_256x192.gif"]
AUDIO = ["mix_16000_mono_s16_5p3s.wav", "mix_22050_stereo_s16_1p5s.wav", "chirp_11025_mono_u8_10s.wav"]
TEXTS = {
    "dog.txt": "A dog barking in the park.",
    "notes.md": "# Grocery list\n\nmilk, eggs, bread",
}


@pytest.fixture(scope="session")
def tiny_card(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a JSON model card for the ``imagebind_tiny`` config with random weights (a real .pth)."""
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    folder = tmp_path_factory.mktemp("model")
    write_random_checkpoint(get_config("imagebind_tiny"), folder / "tiny.pth", seed=7)
    card = folder / "tiny.json"
    card.write_text(json.dumps({"name": "tiny-test", "config": "imagebind_tiny", "checkpoint": "tiny.pth"}))
    return str(card)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's cache and default library, and from their env settings."""
    monkeypatch.setenv("IBSEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    for var in ("IBSEARCH_LIBRARY", "IBSEARCH_MODEL", "IBSEARCH_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """A folder of real small media: photos, sounds and text notes, one level of nesting."""
    root = tmp_path / "media"
    (root / "photos").mkdir(parents=True)
    (root / "sounds").mkdir()
    (root / "notes").mkdir()
    for name in IMAGES:
        shutil.copy(DATA / "images" / name, root / "photos" / name)
    for name in AUDIO:
        shutil.copy(DATA / "audio" / name, root / "sounds" / name)
    for name, text in TEXTS.items():
        (root / "notes" / name).write_text(text, encoding="utf-8")
    return root


def media_files(root: Path) -> list[str]:
    """Every regular file under ``root`` (absolute, sorted)."""
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns))


def run_json(*args: object) -> object:
    """Run the real CLI with ``--json`` appended; assert success and return the parsed output."""
    from ibsearch.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args] + ["--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def lib_args(tmp_path: Path, tiny_card: str) -> list[str]:
    """CLI options for a fresh library in ``tmp_path`` with the tiny test model, on the CPU."""
    return ["--library", str(tmp_path / "lib"), "--model", tiny_card, "--device", "cpu"]
