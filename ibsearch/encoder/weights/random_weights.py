"""Random-weight checkpoints in the official layout, for tests, benchmarks and trying the plumbing."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ...errors import UsageError
from ..model.config import ImageBindConfig
from ..model.keymap import TEXT_MASK_KEY, modality_of
from .checkpoint import _modalities

_STAGE_BYTES = 256 << 20  # write_random_checkpoint keeps at most about this much in memory at once

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
    from ..model.model import reference_key_shapes  # the model's layout; imported late (heavy module)

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
    modality = modality_of(key)
    if key == TEXT_MASK_KEY:
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


RANDOM_NOTE = "random weights: search results are meaningless; for trying the plumbing (tests, CI, demos)"


def write_random_model(config_name: str, path: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """A random-weight checkpoint of the registered config ``config_name`` at ``path`` and a model
    card beside it (``path`` with ``.json``); returns ``(checkpoint, card)``.

    The card is named ``<config>-random`` (``-seed<N>`` for other seeds) and says in its
    description that its results mean nothing: it is for trying ibsearch without the real weights.
    """
    from ..model.config import get_config
    from .cards import ModelCard, save_card

    config = get_config(config_name)
    checkpoint = Path(path).absolute()
    fmt = "safetensors" if checkpoint.suffix == ".safetensors" else "pth"
    write_random_checkpoint(config, checkpoint, seed=seed, fmt=fmt)
    name = f"{config_name}-random" + (f"-seed{seed}" if seed else "")
    card = save_card(
        ModelCard(name, config, str(checkpoint), description=RANDOM_NOTE), checkpoint.with_suffix(".json")
    )
    return checkpoint, card


__all__ = ["RANDOM_NOTE", "write_random_checkpoint", "write_random_model"]
