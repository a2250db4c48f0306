"""From a model card to the weights of just the towers a command needs.

The released checkpoint is one 4.8 GB pickle holding all six towers, while a text query needs only
the 1.4 GB text tower. On first use the checkpoint is therefore split, once, into one safetensors
file per tower in the cache (``<cache>/towers/<sha256>/``); later loads memory-map only the files
of the towers asked for. Keys everywhere are the OFFICIAL ones (``modality_trunks.text.blocks.0...``);
translating them to our module names is the model's business (``keymap.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ModelError, UsageError
from ..modality import MODALITIES, canonical
from .cache import (
    ENV_CACHE,
    ENV_CHECKPOINT,
    Progress,
    atomic_write_text,
    cache_dir,
    file_lock,
    known_sha256,
    progress_bar,
)
from .cards import ModelCard, is_url
from .config import ImageBindConfig
from .download import download
from .keymap import SECTIONS, modality_of

log = logging.getLogger(__name__)

#: The four top-level sections of the reference model; every checkpoint key starts with one of them.
# The official layout's sections and the key -> tower rule live in keymap (one place for the mapping).
tower_of = modality_of

_SPLIT_FORMAT = 1  # bump when the layout of the split folder changes
_MARKER = "towers.json"  # written last: its presence means the split is complete
_STAGE_BYTES = 256 << 20  # write_random_checkpoint keeps at most about this much in memory at once


def _modalities(modalities: Iterable[str] | str) -> list[str]:
    wanted = {canonical(m) for m in ([modalities] if isinstance(modalities, str) else modalities)}
    if not wanted:
        raise UsageError("no modality given: name at least one of " + ", ".join(MODALITIES))
    return [m for m in MODALITIES if m in wanted]


# --------------------------------------------------------------------------------------------------
# Where the checkpoint is


def checkpoint_path(card: ModelCard, checkpoint: str | Path | None = None, progress: Progress = True) -> Path:
    """The local checkpoint file for ``card``, downloading it into the cache if needed.

    ``checkpoint`` (the CLI's ``--checkpoint``), else ``$IBSEARCH_CHECKPOINT``, names a local file
    that replaces the card's checkpoint. A URL checkpoint is fetched into ``<cache>/checkpoints/``.
    When the card has a sha256 the file is checked against it (:class:`DownloadError` on mismatch).
    """
    return resolve_checkpoint(card, checkpoint, progress)[0]


def resolve_checkpoint(
    card: ModelCard, checkpoint: str | Path | None = None, progress: Progress = True
) -> tuple[Path, str]:
    """Like :func:`checkpoint_path`, also returning the file's sha256 (hashed once, then remembered)."""
    override, origin = _override(checkpoint)
    if override is None and is_url(card.checkpoint):
        name = Path(card.checkpoint.split("?", 1)[0]).name or f"{card.name}.pth"
        dest = download(
            card.checkpoint, cache_dir() / "checkpoints" / name, sha256=card.sha256, progress=progress
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
    digest = known_sha256(path, progress)
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
    progress: Progress = True,
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
    index = _split_index(folder)
    if index is None or not all(_tower_file_ok(folder, index, m) for m in wanted):
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


def split_checkpoint(path: Path, folder: Path, progress: Progress = True) -> dict[str, Any]:
    """Write ``folder/<modality>.safetensors`` for every tower in the ``.pth`` at ``path``; return the index.

    The ``.pth`` is memory-mapped and re-opened per tower, so at most one tower's pages are resident
    at a time. Files are written to temporaries and renamed; the index file ``towers.json`` comes
    last and marks the split as complete.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with file_lock(folder / "split"):
            index = _split_index(folder)
            if index is not None and all(_tower_file_ok(folder, index, m) for m in index["towers"]):
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


def _split_locked(path: Path, folder: Path, progress: Progress) -> dict[str, Any]:
    log.info("splitting %s into per-tower files in %s (once per checkpoint)", path, folder)
    state = _load_pth(path)
    groups: dict[str, list[str]] = {}
    ignored = []
    for key in state:
        modality = tower_of(key)
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
    with progress_bar(progress, total, "splitting checkpoint") as report:
        for modality in (m for m in MODALITIES if m in groups):
            state = _load_pth(path)
            tensors = {key: _standalone(state[key]) for key in groups[modality]}
            final = folder / f"{modality}.safetensors"
            tmp = folder / f".{modality}.{os.getpid()}.tmp"
            save_file(tensors, tmp, metadata={"format": "pt"})
            os.replace(tmp, final)
            done += sum(t.numel() * t.element_size() for t in tensors.values())
            del tensors, state  # drops the mapping, so the next tower starts from zero resident pages
            report(done)
            towers[modality] = {
                "file": final.name,
                "keys": groups[modality],
                "bytes": final.stat().st_size,
            }
    index = {"format": _SPLIT_FORMAT, "source": str(path), "towers": towers, "ignored": ignored}
    atomic_write_text(folder / _MARKER, json.dumps(index))
    return index


def _split_index(folder: Path) -> dict[str, Any] | None:
    try:
        index = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and index.get("format") == _SPLIT_FORMAT else None


def _tower_file_ok(folder: Path, index: dict[str, Any], modality: str) -> bool:
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
                mine = [k for k in keys if tower_of(k) == m]
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


# --------------------------------------------------------------------------------------------------
# Random checkpoints for tests and benchmarks

# The reference's fixed scales: ln(1/0.07) is the text init (learnable there), the others are buffers.
_LOG_SCALES = {"text": math.log(1 / 0.07), "audio": math.log(20.0), "depth": math.log(5.0),
               "thermal": math.log(10.0), "imu": math.log(5.0)}  # fmt: skip


def write_random_checkpoint(
    config: ImageBindConfig,
    path: str | Path,
    seed: int = 0,
    fmt: str = "pth",
    modalities: Iterable[str] | str | None = None,
) -> Path:
    """Write a random-weight checkpoint in the official key layout (all six towers unless ``modalities``).

    ``fmt`` is ``"pth"`` (a plain state_dict, like the released file) or ``"safetensors"``. Values keep
    activations sane: 1-d ``weight``s (LayerNorm gains) are ~1, everything else ~N(0, 0.02); the text
    causal mask and the logit scales hold their reference meaning. Each key's values depend only on
    ``seed`` and the key, so subsets agree with the full checkpoint. Tensors are generated in chunks
    of ~256 MB and staged on disk, so even ``imagebind_huge`` (4.8 GB) never needs twice its size in RAM.
    """
    from .model import reference_key_shapes  # the MODEL helper's layout; imported late (heavy module)

    if fmt not in ("pth", "safetensors"):
        raise UsageError(f"unknown checkpoint format {fmt!r}; use 'pth' or 'safetensors'")
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = reference_key_shapes(config, None if modalities is None else _modalities(modalities))
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        chunk_files: list[tuple[Path, list[str]]] = []
        chunk: dict[str, torch.Tensor] = {}
        size = 0
        for i, (key, shape) in enumerate(shapes.items()):
            chunk[key] = _random_value(key, shape, seed)
            size += chunk[key].numel() * 4
            if size >= _STAGE_BYTES or i == len(shapes) - 1:
                stage = staging / f"{len(chunk_files)}.safetensors"
                save_file(chunk, stage)
                chunk_files.append((stage, list(chunk)))
                chunk, size = {}, 0
        # Memory-mapped views of the staged chunks: writing them out pages data through, not into RAM.
        merged: dict[str, torch.Tensor] = {}
        for stage, keys in chunk_files:
            with safe_open(stage, framework="pt", device="cpu") as f:
                merged.update((key, f.get_tensor(key)) for key in keys)
        if fmt == "pth":
            torch.save(merged, tmp)
        else:
            save_file(merged, tmp, metadata={"format": "pt"})
        del merged
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _random_value(key: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    modality = tower_of(key)
    if key == "modality_preprocessors.text.mask":
        return torch.full(shape, float("-inf")).triu(1)
    if key.endswith(".log_logit_scale") and modality in _LOG_SCALES:
        return torch.full(shape, _LOG_SCALES[modality])
    # torch's CPU generator keeps only 32 bits of a seed, so seed and key are hashed into 32 bits together.
    mixed = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=4).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(mixed, "little"))
    value = torch.randn(shape, generator=generator) * 0.02
    if len(shape) == 1 and key.endswith(".weight"):
        value += 1.0
    return value


__all__ = [
    "SECTIONS",
    "cache_dir",
    "download",
    "checkpoint_path",
    "load_tower_state",
    "resolve_checkpoint",
    "split_checkpoint",
    "tower_of",
    "write_random_checkpoint",
]
