"""Which device computes: one rule for the model and for GPU search.

torch is imported only when a device has to be resolved, never when this module is imported.
"""

from __future__ import annotations

from .errors import UsageError


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: object = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is available, else ``"cpu"``; other names are checked.

    Accepts ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or a ``torch.device``). An unknown name, or CUDA on
    a machine without a GPU, is a :class:`UsageError` that says what to use instead.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise UsageError(f"unknown device {str(device)!r}; use auto, cpu or cuda")
    if kind == "cuda" and not cuda_available():
        raise UsageError(
            f"device {str(device)!r} was asked for but no CUDA GPU is available; use --device cpu"
        )
    return name


__all__ = ["cuda_available", "resolve_device"]
