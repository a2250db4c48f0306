"""Typed model configuration and the registry of named configs.

:class:`ImageBindConfig` carries exactly the keyword names and defaults of the reference
``ImageBindModel.__init__`` (facebookresearch/ImageBind), so any reference config can be written
down here unchanged. Named configs (``imagebind_huge`` and small test sizes) live in one registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ...errors import ModelError
from ...modality import MODALITIES
from ..inputs import AUDIO_FRAMES, AUDIO_MEL_BINS, CLIP_FRAMES


@dataclass(frozen=True)
class ImageBindConfig:
    """Sizes of the six ImageBind towers; the defaults are the reference constructor's defaults."""

    video_frames: int = CLIP_FRAMES  # frames per vision clip; images are repeated to this many
    kernel_size: tuple[int, int, int] = (2, 14, 14)  # vision Conv3d kernel = stride (t, h, w)
    audio_kernel_size: int = 16  # audio Conv2d kernel over the (mel, time) spectrogram
    audio_stride: int = 10  # audio Conv2d stride (overlapping patches)
    out_embed_dim: int = 768  # width of the shared embedding space
    vision_embed_dim: int = 1024  # vision trunk width
    vision_num_blocks: int = 24  # vision transformer blocks
    vision_num_heads: int = 16  # vision attention heads
    audio_embed_dim: int = 768  # audio trunk width
    audio_num_blocks: int = 12  # audio transformer blocks
    audio_num_heads: int = 12  # audio attention heads
    audio_num_mel_bins: int = AUDIO_MEL_BINS  # mel bins of the audio input
    audio_target_len: int = AUDIO_FRAMES  # spectrogram frames of the audio input
    audio_drop_path: float = 0.1  # max stochastic depth of the audio trunk (training only)
    text_embed_dim: int = 768  # text trunk width
    text_num_blocks: int = 12  # text transformer blocks
    text_num_heads: int = 12  # text attention heads
    depth_embed_dim: int = 384  # depth trunk width
    depth_kernel_size: int = 16  # depth Conv2d kernel = stride
    depth_num_blocks: int = 12  # depth transformer blocks
    depth_num_heads: int = 8  # depth attention heads
    depth_drop_path: float = 0.0  # max stochastic depth of the depth trunk (training only)
    thermal_embed_dim: int = 768  # thermal trunk width
    thermal_kernel_size: int = 16  # thermal Conv2d kernel = stride
    thermal_num_blocks: int = 12  # thermal transformer blocks
    thermal_num_heads: int = 12  # thermal attention heads
    thermal_drop_path: float = 0.0  # max stochastic depth of the thermal trunk (training only)
    imu_embed_dim: int = 512  # IMU trunk width
    imu_kernel_size: int = 8  # accepted for parity; the reference ignores it (8 is hard-coded)
    imu_num_blocks: int = 6  # IMU transformer blocks
    imu_num_heads: int = 8  # IMU attention heads
    imu_drop_path: float = 0.7  # max stochastic depth of the IMU trunk (training only)

    def __post_init__(self) -> None:
        # JSON model cards give lists; keep the field hashable and comparable.
        object.__setattr__(self, "kernel_size", tuple(int(k) for k in self.kernel_size))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("drop_path"):
                if not 0.0 <= value < 1.0:
                    raise ModelError(f"config field {f.name} must be in [0, 1), got {value!r}")
            elif any(v < 1 for v in (value if isinstance(value, tuple) else (value,))):
                raise ModelError(f"config field {f.name} must be a positive whole number, got {value!r}")
        for tower in MODALITIES:
            width, heads = getattr(self, f"{tower}_embed_dim"), getattr(self, f"{tower}_num_heads")
            if width % heads:
                raise ModelError(
                    f"config field {tower}_embed_dim ({width}) must be a multiple of "
                    f"{tower}_num_heads ({heads})"
                )

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        data = dataclasses.asdict(self)
        data["kernel_size"] = list(self.kernel_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageBindConfig:
        """Build a config from keyword values; an unknown key is a :class:`ModelError` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(
                f"unknown ImageBindConfig field(s) {', '.join(unknown)}; "
                f"valid fields are: {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"invalid ImageBindConfig values {data!r}: {exc}") from exc


_REGISTRY: dict[str, ImageBindConfig] = {}


def register_config(name: str, config: ImageBindConfig) -> None:
    """Add ``config`` to the registry under ``name`` (replacing any earlier entry)."""
    _REGISTRY[name] = config


def config_names() -> list[str]:
    """Names of all registered configs, sorted."""
    return sorted(_REGISTRY)


def get_config(name: str) -> ImageBindConfig:
    """The registered config ``name``; an unknown name is a :class:`ModelError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model config {name!r}; known configs: {', '.join(config_names())}"
        ) from None


# The released model (reference `imagebind_huge()`): everything else is the constructor default.
register_config(
    "imagebind_huge",
    ImageBindConfig(
        vision_embed_dim=1280,
        vision_num_blocks=32,
        vision_num_heads=16,
        text_embed_dim=1024,
        text_num_blocks=24,
        text_num_heads=16,
        out_embed_dim=1024,
        audio_drop_path=0.1,
        imu_drop_path=0.7,
    ),
)

# Test size: every tower is real (same input sizes, same quirks) but a few dozen channels wide,
# so a forward pass takes milliseconds. Widths differ per tower so that a mixed-up tower fails loudly.
register_config(
    "imagebind_tiny",
    ImageBindConfig(
        out_embed_dim=1024,
        vision_embed_dim=32,
        vision_num_blocks=2,
        vision_num_heads=2,
        text_embed_dim=16,
        text_num_blocks=2,
        text_num_heads=2,
        audio_embed_dim=24,
        audio_num_blocks=2,
        audio_num_heads=2,
        depth_embed_dim=16,
        depth_num_blocks=2,
        depth_num_heads=2,
        thermal_embed_dim=24,
        thermal_num_blocks=2,
        thermal_num_heads=2,
        imu_embed_dim=16,
        imu_num_blocks=2,
        imu_num_heads=2,
    ),
)

# A mid size for benchmarks and slower tests: still fast on a CPU, closer in shape to huge.
register_config(
    "imagebind_small",
    ImageBindConfig(
        out_embed_dim=1024,
        vision_embed_dim=192,
        vision_num_blocks=4,
        vision_num_heads=3,
        text_embed_dim=128,
        text_num_blocks=4,
        text_num_heads=2,
        audio_embed_dim=128,
        audio_num_blocks=4,
        audio_num_heads=2,
        depth_embed_dim=96,
        depth_num_blocks=2,
        depth_num_heads=2,
        thermal_embed_dim=96,
        thermal_num_blocks=2,
        thermal_num_heads=2,
        imu_embed_dim=64,
        imu_num_blocks=2,
        imu_num_heads=2,
    ),
)

__all__ = ["ImageBindConfig", "config_names", "get_config", "register_config"]
