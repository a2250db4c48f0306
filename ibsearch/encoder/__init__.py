"""The encoder layer: media in, ImageBind vectors out (torch inside, numpy at the boundary).

``model/`` is the network, ``weights/`` where its weights come from, ``media/`` how files become
tower inputs (sized by ``inputs``); ``runtime.Encoder`` runs towers, and ``embed`` is the one call
from files to vectors.
"""

from ..lazy import lazy_getattr
from .model.config import ImageBindConfig, config_names, get_config, register_config

# Torch-heavy names load on first use, so importing the config registry stays cheap.
_LAZY = {
    "ImageBindModel": "model.model",
    "reference_key_shapes": "model.model",
    "Encoder": "runtime",
    "FileVectors": "embed",
    "embed_files": "embed",
    "embed_input": "embed",
    "ModelCard": "weights.cards",
    "resolve_model": "weights.cards",
    "cache_dir": "weights.cache",
    "download": "weights.download",
    "checkpoint_path": "weights.checkpoint",
    "load_tower_state": "weights.checkpoint",
    "write_random_checkpoint": "weights.random_weights",
    "tokenize": "media.tokenizer",
    "decode_audio": "media.decode",
    "load_image": "media.images",
    "load_parallel": "preprocess",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = ["ImageBindConfig", "config_names", "get_config", "register_config", *_LAZY]
