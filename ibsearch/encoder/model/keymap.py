"""The only place that knows the official ImageBind checkpoint's parameter names.

The released ``imagebind_huge.pth`` is a plain state_dict whose names follow the reference code's
module tree, with its irregularities (the vision conv at ``rgbt_stem.proj.1``, depth's
``depth_stem`` next to thermal's and audio's ``rgbt_stem``, the IMU position embedding outside the
helper, the IMU head projection at index 3, the text head under ``proj``). Our towers use one
regular naming; :func:`tower_keymap` lists, in the checkpoint's own order, which reference key
feeds which of our tensors.
"""

from __future__ import annotations

from ...modality import AUDIO, DEPTH, IMU, MODALITIES, TEXT, THERMAL, VISION
from .towers import TowerSpec

#: Sections of the reference state_dict, in the order they appear there.
SECTIONS: tuple[str, ...] = (
    "modality_preprocessors",
    "modality_trunks",
    "modality_heads",
    "modality_postprocessors",
)

#: Reference key of the text tower's causal mask: a buffer in the checkpoint that we check and
#: then drop, because the attention applies the causal rule itself.
TEXT_MASK_KEY = "modality_preprocessors.text.mask"

_STEM = {
    VISION: "rgbt_stem.proj.1",  # index 0 of that Sequential is the image-to-video padding
    TEXT: "token_embedding",
    AUDIO: "rgbt_stem.proj",
    DEPTH: "depth_stem.proj",
    THERMAL: "rgbt_stem.proj",
    IMU: "imu_stem.proj",
}
_STEM_NORM = {
    AUDIO: "rgbt_stem.norm_layer",
    DEPTH: "depth_stem.norm_layer",
    THERMAL: "rgbt_stem.norm_layer",
    IMU: "imu_stem.norm_layer",
}
_POS_EMBED = {TEXT: "pos_embed", IMU: "pos_embed"}  # the others sit in a pos_embedding_helper
_HEAD = {TEXT: ("proj.0", "proj.1"), IMU: ("0", "3")}  # (LayerNorm, Linear); default ("0", "2")

_BLOCK = (
    ("attn.in_proj_weight", "attn.qkv.weight"),
    ("attn.in_proj_bias", "attn.qkv.bias"),
    ("attn.bias_k", "attn.bias_k"),
    ("attn.bias_v", "attn.bias_v"),
    ("attn.out_proj.weight", "attn.proj.weight"),
    ("attn.out_proj.bias", "attn.proj.bias"),
    ("norm_1.weight", "norm1.weight"),
    ("norm_1.bias", "norm1.bias"),
    ("mlp.fc1.weight", "mlp.fc1.weight"),
    ("mlp.fc1.bias", "mlp.fc1.bias"),
    ("mlp.fc2.weight", "mlp.fc2.weight"),
    ("mlp.fc2.bias", "mlp.fc2.bias"),
    ("norm_2.weight", "norm2.weight"),
    ("norm_2.bias", "norm2.bias"),
)


def _preprocessor(spec: TowerSpec) -> list[tuple[str, str | None]]:
    m = spec.modality
    pos = _POS_EMBED.get(m, "pos_embedding_helper.pos_embed")
    # A module's own parameters come first, then its buffers, then its submodules' tensors.
    own: list[tuple[str, str | None]] = []
    if "." not in pos:
        own.append((pos, "pos_embed"))
    if spec.cls_token:
        own.append(("cls_token", "cls_token"))
    if spec.causal:
        own.append(("mask", None))
    children: list[tuple[str, str | None]] = [(f"{_STEM[m]}.weight", "stem.weight")]
    if spec.stem_norm:
        children += [
            (f"{_STEM_NORM[m]}.weight", "stem_norm.weight"),
            (f"{_STEM_NORM[m]}.bias", "stem_norm.bias"),
        ]
    if "." in pos:
        children.append((pos, "pos_embed"))
    return own + children


def _trunk(spec: TowerSpec) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    if spec.pre_norm:
        pairs += [
            ("pre_transformer_layer.0.weight", "pre_norm.weight"),
            ("pre_transformer_layer.0.bias", "pre_norm.bias"),
        ]
    for i in range(spec.depth):
        for ref, ours in _BLOCK:
            if spec.bias_kv or "bias_" not in ref:
                pairs.append((f"blocks.{i}.{ref}", f"blocks.{i}.{ours}"))
    return pairs


def _head(spec: TowerSpec) -> list[tuple[str, str | None]]:
    norm, proj = _HEAD.get(spec.modality, ("0", "2"))
    return [
        (f"{norm}.weight", "head_norm.weight"),
        (f"{norm}.bias", "head_norm.bias"),
        (f"{proj}.weight", "head_proj.weight"),
    ]


def _postprocessor(spec: TowerSpec) -> list[tuple[str, str | None]]:
    return [] if spec.scale == "none" else [("1.log_logit_scale", "log_scale")]


def tower_keymap(spec: TowerSpec) -> list[tuple[int, str, str | None]]:
    """(section index, reference key, our key within the tower or None) for one tower.

    ``None`` marks a checkpoint entry that we validate but do not keep (the text causal mask).
    Within each section the entries are in the reference state_dict's order.
    """
    parts = (_preprocessor(spec), _trunk(spec), _head(spec), _postprocessor(spec))
    return [
        (section, f"{SECTIONS[section]}.{spec.modality}.{ref}", ours)
        for section, pairs in enumerate(parts)
        for ref, ours in pairs
    ]


def reference_keymap(specs: dict[str, TowerSpec], modalities: list[str]) -> dict[str, str | None]:
    """Reference key -> ``"<modality>.<our key>"`` (or None) for the given towers, in checkpoint order.

    The official checkpoint groups keys by section first (all preprocessors, then all trunks, ...)
    and by modality within a section, in ImageBind's modality order.
    """
    entries = []
    for rank, m in enumerate(MODALITIES):
        if m in modalities:
            entries += [
                (section, rank, n, ref, ours) for n, (section, ref, ours) in enumerate(tower_keymap(specs[m]))
            ]
    entries.sort(key=lambda e: e[:3])
    keymap: dict[str, str | None] = {}
    for _, rank, _, ref, ours in entries:
        keymap[ref] = None if ours is None else f"{MODALITIES[rank]}.{ours}"
    return keymap


def modality_of(reference_key: str) -> str | None:
    """The modality a reference key belongs to (``modality_trunks.audio.blocks.0...`` -> "audio")."""
    parts = reference_key.split(".")
    if len(parts) > 2 and parts[0] in SECTIONS and parts[1] in MODALITIES:
        return parts[1]
    return None
