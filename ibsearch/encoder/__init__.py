"""The encoder layer: media in, ImageBind vectors out (torch inside, numpy at the boundary)."""

from typing import Any

from .config import ImageBindConfig, config_names, get_config, register_config

# Torch-heavy names load on first use, so importing the config registry stays cheap.
_LAZY = {
    "ImageBindModel": "model",
    "reference_key_shapes": "model",
    "Encoder": "runtime",
    "ModelCard": "cards",
    "resolve_model": "cards",
    "cache_dir": "cache",
    "download": "download",
    "checkpoint_path": "weights",
    "load_tower_state": "weights",
    "write_random_checkpoint": "weights",
    "tokenize": "tokenizer",
    "decode_audio": "decode",
    "load_image": "images",
    "load_parallel": "preprocess",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ImageBindConfig", "config_names", "get_config", "register_config", *_LAZY]
