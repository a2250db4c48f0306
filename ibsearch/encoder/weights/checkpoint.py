"""From a model card to the weights of just the towers a command needs.

The released checkpoint is one 4.8 GB pickle holding all six towers, while a text query needs only
the 1.4 GB text tower. On first use the checkpoint is therefore split, once, into one safetensors
file per tower in the cache (see :mod:`.split`); later loads memory-map only the files of the towers
asked for. Keys everywhere are the OFFICIAL ones (``modality_trunks.text.blocks.0...``); translating
them to our module names is the model's business (:mod:`ibsearch.encoder.model.keymap`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ...errors import ModelError, UsageError
from ...modality import MODALITIES, resolve_modalities
from ...progress import BYTES, Progress, start
from ..model.keymap import SECTIONS, modality_of
from .cache import ENV_CHECKPOINT, cache_dir, known_sha256
from .cards import ModelCard, is_url
from .download import download
from .split import split_checkpoint, split_index, tower_file_ok

log = logging.getLogger(__name__)


def _modalities(modalities: Iterable[str] | str) -> list[str]:
    wanted = resolve_modalities(modalities)
    if not wanted:
        raise UsageError("no modality given: name at least one of " + ", ".join(MODALITIES))
    return wanted


# --------------------------------------------------------------------------------------------------
# Where the checkpoint is


def checkpoint_path(
    card: ModelCard, checkpoint: str | Path | None = None, progress: Progress | None = None
) -> Path:
    """The local checkpoint file for ``card``, downloading it into the cache if needed.

    ``checkpoint`` (the CLI's ``--checkpoint``), else ``$IBSEARCH_CHECKPOINT``, names a local file
    that replaces the card's checkpoint. A URL checkpoint is fetched into ``<cache>/checkpoints/``.
    When the card has a sha256 the file is checked against it (:class:`DownloadError` on mismatch).
    """
    return resolve_checkpoint(card, checkpoint, progress)[0]


def resolve_checkpoint(
    card: ModelCard, checkpoint: str | Path | None = None, progress: Progress | None = None
) -> tuple[Path, str]:
    """Like :func:`checkpoint_path`, also returning the file's sha256 (hashed once, then remembered)."""
    override, origin = _override(checkpoint)
    if override is None and is_url(card.checkpoint):
        name = Path(card.checkpoint.split("?", 1)[0]).name or f"{card.name}.pth"
        task = start(progress, f"download {name}", BYTES)
        dest = download(
            card.checkpoint, cache_dir() / "checkpoints" / name, sha256=card.sha256, progress=task
        )
        return dest, known_sha256(dest)
    if override is None:
        path, origin = Path(card.checkpoint), f"the checkpoint of model card {card.name!r}"
    else:
        path = override
    if not path.is_file():
        raise ModelError(
            f"checkpoint {path} ({origin}) does not exist or is not a file; "
            f"give an existing file with --checkpoint or {ENV_CHECKPOINT}"
        )
    digest = known_sha256(path, start(progress, f"sha256 {path.name}", BYTES))
    if card.sha256 is not None and digest != card.sha256:
        raise ModelError(
            f"checkpoint {path} ({origin}) has sha256 {digest}, but model card {card.name!r} expects "
            f"{card.sha256}: it holds other weights. Use the card's checkpoint, or a card (--model) "
            "that describes this file."
        )
    return path, digest


def _override(checkpoint: str | Path | None) -> tuple[Path | None, str]:
    if checkpoint is not None and str(checkpoint).strip():
        return Path(checkpoint).expanduser().absolute(), "given with --checkpoint"
    env = os.environ.get(ENV_CHECKPOINT, "").strip()
    if env:
        return Path(env).expanduser().absolute(), f"given by {ENV_CHECKPOINT}"
    return None, ""


# --------------------------------------------------------------------------------------------------
# Loading towers


def load_tower_state(
    card: ModelCard,
    modalities: Iterable[str] | str,
    checkpoint: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, torch.Tensor]:
    """The official-layout state of just the towers in ``modalities`` (keys under their four sections).

    Keys come in the reference state_dict's order (sections, then modalities, then the checkpoint's
    order within a tower; safetensors files list a tower's keys alphabetically).

    Tensors keep the checkpoint's dtype and are memory-mapped copy-on-write from the cache, so only
    the bytes of these towers are read, and only as they are used. A ``.safetensors`` checkpoint is
    read directly; a ``.pth`` is split once into per-tower files (see module docs). A tower missing
    from the checkpoint is a :class:`ModelError`.
    """
    wanted = _modalities(modalities)
    path, digest = resolve_checkpoint(card, checkpoint, progress)
    if _is_safetensors(path):
        return _read_safetensors(path, wanted)
    folder = cache_dir() / "towers" / digest
    index = split_index(folder)
    if index is None or not all(tower_file_ok(folder, index, m) for m in wanted):
        index = split_checkpoint(path, folder, progress)
    state: dict[str, torch.Tensor] = {}
    for m in wanted:
        entry = index["towers"].get(m)
        if entry is None:
            raise ModelError(f"checkpoint {path} holds no weights for the {m} tower ({_prefix_hint(m)})")
        with safe_open(folder / entry["file"], framework="pt", device="cpu") as f:
            for key in entry["keys"]:
                state[key] = f.get_tensor(key)
    return _in_reference_order(state)


def _in_reference_order(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Section-major, then modality, like the reference state_dict (stable: keeps each tower's order)."""

    def rank(key: str) -> tuple[int, int]:
        section, modality = key.split(".", 2)[:2]
        return SECTIONS.index(section), MODALITIES.index(modality)

    return {key: state[key] for key in sorted(state, key=rank)}


def _is_safetensors(path: Path) -> bool:
    """Sniff the format: safetensors starts with an 8-byte header length and a JSON object; .pth is a zip."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path, wanted: list[str]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            keys = list(f.keys())
            for m in wanted:
                mine = [k for k in keys if modality_of(k) == m]
                if not mine:
                    raise ModelError(
                        f"checkpoint {path} holds no weights for the {m} tower ({_prefix_hint(m)})"
                    )
                for key in mine:
                    state[key] = f.get_tensor(key)
    except SafetensorError as exc:
        raise ModelError(f"cannot read safetensors checkpoint {path}: {exc}") from None
    return _in_reference_order(state)


def _prefix_hint(modality: str) -> str:
    return f"no key starts with {SECTIONS[1]}.{modality}."


__all__ = ["checkpoint_path", "load_tower_state", "resolve_checkpoint"]
