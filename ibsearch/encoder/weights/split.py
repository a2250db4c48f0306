"""Splitting a ``.pth`` checkpoint once into one safetensors file per tower, in the cache.

``<cache>/towers/<sha256>/<modality>.safetensors`` plus ``towers.json`` (written last: its presence
means the split is complete). Later loads memory-map only the files of the towers they need.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ...errors import ModelError
from ...files import atomic_write_text, file_lock
from ...modality import MODALITIES
from ...progress import BYTES, Progress, start
from ..model.keymap import SECTIONS, modality_of
from .cache import ENV_CACHE

log = logging.getLogger(__name__)

_SPLIT_FORMAT = 1  # bump when the layout of the split folder changes
_MARKER = "towers.json"  # written last: its presence means the split is complete


def split_checkpoint(path: Path, folder: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Write ``folder/<modality>.safetensors`` for every tower in the ``.pth`` at ``path``; return the index.

    The ``.pth`` is memory-mapped and re-opened per tower, so at most one tower's pages are resident
    at a time. Files are written to temporaries and renamed; the index file ``towers.json`` comes
    last and marks the split as complete.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with file_lock(
            folder / "split.lock", on_wait=lambda: log.info("waiting for another split of %s", path)
        ):
            index = split_index(folder)
            if index is not None and all(tower_file_ok(folder, index, m) for m in index["towers"]):
                return index  # another process finished it while we waited
            return _split_locked(path, folder, progress)
    except (OSError, SafetensorError) as exc:
        for leftover in folder.glob(f".*.{os.getpid()}.tmp"):
            leftover.unlink(missing_ok=True)
        raise ModelError(
            f"cannot split checkpoint {path} into per-tower files in {folder}: {exc}. The split needs "
            f"as much free space as the checkpoint ({path.stat().st_size} bytes); free some space or set "
            f"{ENV_CACHE} to another folder."
        ) from None


def _split_locked(path: Path, folder: Path, progress: Progress | None) -> dict[str, Any]:
    log.info("splitting %s into per-tower files in %s (once per checkpoint)", path, folder)
    state = _load_pth(path)
    groups: dict[str, list[str]] = {}
    ignored = []
    for key in state:
        modality = modality_of(key)
        if modality is None:
            ignored.append(key)
        else:
            groups.setdefault(modality, []).append(key)
    total = sum(t.numel() * t.element_size() for t in state.values())
    del state
    if not groups:
        raise ModelError(f"checkpoint {path} holds no ImageBind tower weights (no key under {SECTIONS[1]}.*)")
    if ignored:
        log.warning(
            "checkpoint %s: ignoring %d keys outside the towers, e.g. %s", path, len(ignored), ignored[0]
        )
    towers: dict[str, Any] = {}
    done = 0
    report = start(progress, "split checkpoint", BYTES) or (lambda done, total: None)
    report(0, total)
    for modality in (m for m in MODALITIES if m in groups):
        state = _load_pth(path)
        tensors = {key: _standalone(state[key]) for key in groups[modality]}
        final = folder / f"{modality}.safetensors"
        tmp = folder / f".{modality}.{os.getpid()}.tmp"
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.replace(tmp, final)
        done += sum(t.numel() * t.element_size() for t in tensors.values())
        del tensors, state  # drops the mapping, so the next tower starts from zero resident pages
        report(done, total)
        towers[modality] = {"file": final.name, "keys": groups[modality], "bytes": final.stat().st_size}
    index = {"format": _SPLIT_FORMAT, "source": str(path), "towers": towers, "ignored": ignored}
    atomic_write_text(folder / _MARKER, json.dumps(index))
    return index


def split_index(folder: Path) -> dict[str, Any] | None:
    """The index of a complete split in ``folder`` (its ``towers.json``), or None."""
    try:
        index = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and index.get("format") == _SPLIT_FORMAT else None


def tower_file_ok(folder: Path, index: dict[str, Any], modality: str) -> bool:
    """Whether the split file of ``modality`` is there with the size the index recorded."""
    entry = index["towers"].get(modality)
    if entry is None:
        return True  # the checkpoint has no such tower; reported by the caller
    try:
        return (folder / entry["file"]).stat().st_size == entry["bytes"]
    except OSError:
        return False


def _load_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as exc:
            if "zipfile" not in str(exc).lower():
                raise
            # Pre-1.6 pickles cannot be memory-mapped; they are rare and only cost RAM once, at the split.
            log.warning("%s uses the legacy torch.save format; loading it whole to split it", path)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (RuntimeError, UnpicklingError...)
        raise ModelError(
            f"cannot read checkpoint {path}: {exc}. "
            "Expected a PyTorch state_dict (.pth) or a .safetensors file."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        hint = ""
        if isinstance(state, dict) and any(k in state for k in ("model", "state_dict")):
            hint = " (it looks like a training checkpoint: save its 'model'/'state_dict' entry on its own)"
        raise ModelError(f"checkpoint {path} is not a flat state_dict of tensors{hint}")
    return state


def _standalone(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor owning exactly its bytes, as safetensors requires (views into a bigger storage are copied)."""
    if tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size():
        return tensor
    return tensor.contiguous().clone()


__all__ = ["split_checkpoint", "split_index", "tower_file_ok"]
