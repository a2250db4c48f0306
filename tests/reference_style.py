"""The reference's way of running a tower, written out plainly: the oracle our towers' bits are held to.

ImageBind's own code cannot be imported here (it needs torchvision and torchaudio builds that do not
load next to the CPU torch wheel), so this module computes what it computes, the way it computes it:
a sequence-first trunk through ``nn.MultiheadAttention``, every position through every block, an
additive float causal mask for text, LayerNorm over the whole sequence before pooling, clips
averaged after scaling. ``scripts/bench_encoder.py`` times our towers against it.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ibsearch.encoder.model.model import ImageBindModel
from ibsearch.encoder.model.towers import MAX_LOGIT_SCALE, Block, Tower


class ReferenceStyleTower(nn.Module):
    """The reference's way of running a tower, on our tower's tensors (shared, not copied).

    Sequence-first trunk with ``nn.MultiheadAttention`` (packed in-projection, ``add_bias_kv``), an
    additive float causal mask for text, LayerNorm over the whole sequence before pooling.
    """

    def __init__(self, tower: Tower) -> None:
        super().__init__()
        self.tower = tower
        spec = tower.spec
        self.blocks = [cast(Block, block) for block in tower.blocks]
        self.attns = nn.ModuleList()
        for block in self.blocks:
            with torch.device("meta"):  # placeholders only; the real tensors are assigned below
                mha = nn.MultiheadAttention(spec.width, spec.heads, bias=True, add_bias_kv=spec.bias_kv)
            mha.in_proj_weight = cast(nn.Parameter, block.attn.qkv.weight)
            mha.in_proj_bias = cast(nn.Parameter, block.attn.qkv.bias)
            mha.out_proj.weight = cast(nn.Parameter, block.attn.proj.weight)
            mha.out_proj.bias = cast(nn.Parameter, block.attn.proj.bias)
            if block.attn.bias_k is not None and block.attn.bias_v is not None:
                mha.bias_k, mha.bias_v = block.attn.bias_k, block.attn.bias_v
            self.attns.append(mha)
        n = spec.num_tokens
        mask = torch.full((n, n), float("-inf")).triu(1) if spec.causal else None
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tower, spec = self.tower, self.tower.spec
        h = tower.tokens(x)
        if tower.pre_norm is not None:
            h = tower.pre_norm(h)
        h = h.transpose(0, 1)  # (L, B, D), as nn.MultiheadAttention expects by default
        for block, mha in zip(self.blocks, self.attns, strict=True):
            y = block.norm1(h)
            h = h + mha(y, y, y, need_weights=False, attn_mask=self.mask)[0]
            h = h + block.mlp(block.norm2(h))
        h = tower.head_norm(h.transpose(0, 1))
        if spec.pooling == "eot":
            pooled = h[torch.arange(h.shape[0]), x.argmax(dim=-1)]
        else:
            pooled = h[:, 0]
        out = F.normalize(tower.head_proj(pooled), dim=-1)
        if tower.log_scale is not None:
            out = torch.clamp(tower.log_scale.exp(), max=MAX_LOGIT_SCALE) * out
        return out


def reference_style_forward(model: ImageBindModel, modality: str, x: torch.Tensor) -> torch.Tensor:
    """What the reference returns for one batch of ``modality`` (clips (B, S, ...) averaged)."""
    tower = cast(Tower, model.towers[modality])
    clips = x.ndim >= 5
    items = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]) if clips else x
    if items.is_floating_point():
        items = items.to(tower.pos_embed.dtype)
    out = ReferenceStyleTower(tower)(items)
    return out.view(x.shape[0], x.shape[1], -1).mean(dim=1) if clips else out
