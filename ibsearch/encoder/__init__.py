"""The encoder layer: media in, ImageBind vectors out (torch inside, numpy at the boundary)."""

from .config import ImageBindConfig, config_names, get_config, register_config

__all__ = ["ImageBindConfig", "config_names", "get_config", "register_config"]
