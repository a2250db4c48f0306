"""One generic ImageBind tower, configured by a per-modality spec table.

ImageBind's six encoders share one shape: a stem turns the input into tokens, an optional
[CLS] token and a learned position embedding are added, a stack of pre-norm transformer blocks
runs over the tokens, one token is pooled, projected into the shared space, L2-normalized and
scaled. They differ only in the numbers and switches collected in :class:`TowerSpec`;
:func:`tower_specs` derives the six specs from an :class:`ImageBindConfig`.

Everything is batch-first; attention goes through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...modality import AUDIO, DEPTH, IMU, MODALITIES, TEXT, THERMAL, VISION
from ..inputs import CLIP_FRAMES, IMAGE_SIZE, IMU_CHANNELS, IMU_SAMPLES, TEXT_CONTEXT, TEXT_VOCAB
from .config import ImageBindConfig
from .kernels import exact_text_length

# Fixed by the released model, not by its config (the input sizes are in ..inputs).
IMU_PATCH = 8  # time steps per IMU token; the reference ignores imu_kernel_size and uses 8
MAX_LOGIT_SCALE = 100.0  # upper clip of every output scale

STEM_LN_EPS = 1e-5  # LayerNorm after the stem (PyTorch default in the reference)
TRUNK_LN_EPS = 1e-6  # block, pre-trunk and head LayerNorms


@dataclass(frozen=True)
class TowerSpec:
    """Everything that distinguishes one modality's encoder from another's."""

    modality: str  # one of ibsearch.modality.MODALITIES
    stem: str  # "video_conv" | "image_conv" | "token_embedding" | "series_linear"
    in_channels: int  # input channels of the stem (vocabulary size for token_embedding)
    kernel: tuple[int, ...]  # stem kernel (conv) or values per token (series_linear)
    stride: tuple[int, ...]  # stem stride (conv only; equal to kernel except audio)
    clip_shape: tuple[int, ...]  # shape of one input item (one clip), without the batch axis
    num_patches: int  # tokens produced by the stem
    width: int  # trunk width D
    depth: int  # number of transformer blocks
    heads: int  # attention heads
    out_dim: int  # width of the shared embedding space
    stem_norm: bool  # LayerNorm (eps 1e-5) right after the stem
    cls_token: bool  # prepend one learned [CLS] token
    pre_norm: bool  # LayerNorm (eps 1e-6) before the first block
    bias_kv: bool  # one learned extra key/value position shared by all queries
    causal: bool  # causal self-attention (text)
    pooling: str  # "first" (token 0) | "eot" (the position of the largest token id)
    scale: str  # "none" | "learnable" | "fixed": how the normalized output is scaled
    scale_init: float  # initial scale before the log (ignored for "none")
    head_dropout: float = 0.0  # dropout between pooling and projection (inactive in eval mode)
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * width

    @property
    def num_tokens(self) -> int:
        """Tokens entering the trunk (patches plus the optional [CLS])."""
        return self.num_patches + int(self.cls_token)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def tower_specs(config: ImageBindConfig) -> dict[str, TowerSpec]:
    """The six tower specs of ``config``, keyed by modality name, in ImageBind's order."""
    kt, kh, kw = config.kernel_size
    vision_patches = (
        _conv_out(config.video_frames, kt, kt) * _conv_out(IMAGE_SIZE, kh, kh) * _conv_out(IMAGE_SIZE, kw, kw)
    )
    ak, ast = config.audio_kernel_size, config.audio_stride
    mel, frames = config.audio_num_mel_bins, config.audio_target_len
    audio_patches = _conv_out(mel, ak, ast) * _conv_out(frames, ak, ast)
    out = config.out_embed_dim

    def image_like(modality: str, kernel: int, width: int, depth: int, heads: int, scale: float) -> TowerSpec:
        side = _conv_out(IMAGE_SIZE, kernel, kernel)
        return TowerSpec(
            modality=modality, stem="image_conv", in_channels=1, kernel=(kernel, kernel),
            stride=(kernel, kernel), clip_shape=(1, IMAGE_SIZE, IMAGE_SIZE), num_patches=side * side,
            width=width, depth=depth, heads=heads, stem_norm=True, cls_token=True, pre_norm=False,
            bias_kv=True, causal=False, pooling="first", scale="fixed", scale_init=scale, out_dim=out,
        )  # fmt: skip

    specs = [
        TowerSpec(
            modality=VISION, stem="video_conv", in_channels=3, kernel=(kt, kh, kw), stride=(kt, kh, kw),
            clip_shape=(3, IMAGE_SIZE, IMAGE_SIZE), num_patches=vision_patches,
            width=config.vision_embed_dim, depth=config.vision_num_blocks, heads=config.vision_num_heads,
            stem_norm=False, cls_token=True, pre_norm=True, bias_kv=False, causal=False,
            pooling="first", scale="none", scale_init=1.0, out_dim=out,
        ),
        TowerSpec(
            modality=TEXT, stem="token_embedding", in_channels=TEXT_VOCAB, kernel=(), stride=(),
            clip_shape=(TEXT_CONTEXT,), num_patches=TEXT_CONTEXT,
            width=config.text_embed_dim, depth=config.text_num_blocks, heads=config.text_num_heads,
            stem_norm=False, cls_token=False, pre_norm=False, bias_kv=False, causal=True,
            pooling="eot", scale="learnable", scale_init=1 / 0.07, out_dim=out,
        ),
        TowerSpec(
            modality=AUDIO, stem="image_conv", in_channels=1, kernel=(ak, ak), stride=(ast, ast),
            clip_shape=(1, mel, frames), num_patches=audio_patches,
            width=config.audio_embed_dim, depth=config.audio_num_blocks, heads=config.audio_num_heads,
            stem_norm=True, cls_token=True, pre_norm=False, bias_kv=True, causal=False,
            pooling="first", scale="fixed", scale_init=20.0, out_dim=out,
        ),
        image_like(DEPTH, config.depth_kernel_size, config.depth_embed_dim, config.depth_num_blocks,
                   config.depth_num_heads, 5.0),
        image_like(THERMAL, config.thermal_kernel_size, config.thermal_embed_dim, config.thermal_num_blocks,
                   config.thermal_num_heads, 10.0),
        TowerSpec(
            modality=IMU, stem="series_linear", in_channels=IMU_CHANNELS, kernel=(IMU_PATCH,),
            stride=(IMU_PATCH,), clip_shape=(IMU_CHANNELS, IMU_SAMPLES), num_patches=IMU_SAMPLES // IMU_PATCH,
            width=config.imu_embed_dim, depth=config.imu_num_blocks, heads=config.imu_num_heads,
            stem_norm=True, cls_token=True, pre_norm=False, bias_kv=True, causal=False,
            pooling="first", scale="fixed", scale_init=5.0, out_dim=out, head_dropout=0.5,
        ),
    ]  # fmt: skip
    table = {spec.modality: spec for spec in specs}
    return {m: table[m] for m in MODALITIES}


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, batch-first.

    With ``bias_kv`` one learned key and one learned value are appended as an extra position that
    every query can attend to (the reference's ``add_bias_kv``); queries stay at L.
    """

    def __init__(self, width: int, heads: int, bias_kv: bool, causal: bool) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        if bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, width))
            self.bias_v = nn.Parameter(torch.empty(1, 1, width))
        else:
            self.register_parameter("bias_k", None)
            self.register_parameter("bias_v", None)

    def forward(
        self, x: torch.Tensor, pooled: torch.Tensor | None = None, packed: list[int] | None = None
    ) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D), or (B, P, D) for the P positions indexed by ``pooled``.

        ``packed`` (packed text): x holds B = 1 row of several sequences laid end to end, of these
        lengths; each attends causally within itself only. With ``packed``, ``pooled`` indexes
        the last position of each sequence.
        """
        b, n, d = x.shape
        h = self.heads
        if pooled is None or not isinstance(self.qkv.weight, torch.Tensor):  # int8 layers: no slices
            q, k, v = self.qkv(x).view(b, n, 3, h, d // h).unbind(2)  # each (B, L, H, hd)
            q = q if pooled is None else q[:, pooled]
        else:
            # Keys and values of every position, queries of the pooled ones only.
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, pooled], w[:d], bias[:d]).view(b, len(pooled), h, d // h)
            k, v = F.linear(x, w[d:], bias[d:]).view(b, n, 2, h, d // h).unbind(2)
        # A pooled query needs no mask: for causal text it is the last position of its sequence.
        causal = self.causal and pooled is None
        if packed is None:
            out = self._attend(q, k, v, causal)
        else:
            parts, start = [], 0
            for i, length in enumerate(packed):
                span = slice(start, start + length)
                queries = q[:, i : i + 1] if pooled is not None else q[:, span]
                parts.append(self._attend(queries, k[:, span], v[:, span], causal))
                start += length
            out = torch.cat(parts, dim=1)
        return self.proj(out.reshape(b, q.shape[1], d))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        """Softmax attention on (B, Lq, H, hd) queries and (B, Lk, H, hd) keys/values -> (B, Lq, H, hd)."""
        if self.bias_k is not None and self.bias_v is not None:
            b, _, h, hd = k.shape
            k = torch.cat([k, self.bias_k.to(k.dtype).view(1, 1, h, hd).expand(b, 1, h, hd)], dim=1)
            v = torch.cat([v, self.bias_v.to(v.dtype).view(1, 1, h, hd).expand(b, 1, h, hd)], dim=1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
        )
        return out.transpose(1, 2)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        d = spec.width
        self.norm1 = nn.LayerNorm(d, eps=TRUNK_LN_EPS)
        self.attn = SelfAttention(d, spec.heads, spec.bias_kv, spec.causal)
        self.norm2 = nn.LayerNorm(d, eps=TRUNK_LN_EPS)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(d, spec.mlp_ratio * d))
        self.mlp.add_module("act", nn.GELU())  # exact erf GELU, as trained
        self.mlp.add_module("fc2", nn.Linear(spec.mlp_ratio * d, d))

    def forward(
        self, x: torch.Tensor, pooled: torch.Tensor | None = None, packed: list[int] | None = None
    ) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D), or only the positions indexed by ``pooled`` (B, P, D).

        ``packed``: x is packed text, see :meth:`SelfAttention.forward`.
        """
        out = self.attn(self.norm1(x), pooled, packed)
        x = (x if pooled is None else x[:, pooled]) + out
        return x + self.mlp(self.norm2(x))


def _make_stem(spec: TowerSpec) -> nn.Module:
    d = spec.width
    k, s = spec.kernel, spec.stride
    if spec.stem == "video_conv":
        return nn.Conv3d(spec.in_channels, d, (k[0], k[1], k[2]), stride=(s[0], s[1], s[2]), bias=False)
    if spec.stem == "image_conv":
        return nn.Conv2d(spec.in_channels, d, (k[0], k[1]), stride=(s[0], s[1]), bias=False)
    if spec.stem == "token_embedding":
        # Given storage, Embedding skips its own normal_ init, which on the meta device would import
        # torch._dynamo (seconds); Tower.reset_parameters fills it on real devices.
        return nn.Embedding(spec.in_channels, d, _weight=torch.empty(spec.in_channels, d))
    if spec.stem == "series_linear":
        return nn.Linear(spec.in_channels * spec.kernel[0], d, bias=False)
    raise ValueError(f"unknown stem kind {spec.stem!r}")


class Tower(nn.Module):
    """One modality's encoder: input items -> (B, out_dim) normalized and scaled embeddings."""

    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.width
        self.stem = _make_stem(spec)
        self.stem_norm = nn.LayerNorm(d, eps=STEM_LN_EPS) if spec.stem_norm else None
        self.cls_token = nn.Parameter(torch.empty(1, 1, d)) if spec.cls_token else None
        self.pos_embed = nn.Parameter(torch.empty(1, spec.num_tokens, d))
        self.pre_norm = nn.LayerNorm(d, eps=TRUNK_LN_EPS) if spec.pre_norm else None
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))
        self.head_norm = nn.LayerNorm(d, eps=TRUNK_LN_EPS)
        self.head_proj = nn.Linear(d, spec.out_dim, bias=False)
        # The scale is stored as a log so checkpoints carry it the reference's way; built with
        # torch.full (not a Python float from a tensor) so that the meta device works.
        log_scale = torch.full((), math.log(spec.scale_init), dtype=torch.float32)
        if spec.scale == "learnable":
            self.log_scale = nn.Parameter(log_scale)
        elif spec.scale == "fixed":
            self.register_buffer("log_scale", log_scale)
        else:
            self.register_parameter("log_scale", None)
        # Packing of texts (see _drop_after_eot): None chooses by device; True/False force it.
        self.pack: bool | None = None
        # True gives the bits of the reference's full computation: every position through every
        # block, the last included, and text cut only to exact_text_length. False allows the faster
        # paths: text packed, and a last block that computes only the pooled positions.
        self.exact: bool = True
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random initialisation for tests and benchmarks (real use loads a checkpoint)."""
        if self.pos_embed.is_meta:
            return  # nothing to fill, and normal_ on meta tensors would import torch._dynamo (~3 s)
        scale = self.spec.width**-0.5
        if isinstance(self.stem, nn.Embedding):
            nn.init.normal_(self.stem.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=scale)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=scale)
        for block in self.blocks:
            assert isinstance(block, Block)
            nn.init.xavier_uniform_(block.attn.qkv.weight)
            nn.init.zeros_(block.attn.qkv.bias)
            if block.attn.bias_k is not None and block.attn.bias_v is not None:
                nn.init.normal_(block.attn.bias_k, std=scale)
                nn.init.normal_(block.attn.bias_v, std=scale)

    def _drop_after_eot(self, h: torch.Tensor, eot: torch.Tensor) -> tuple[torch.Tensor, list[int] | None]:
        """Text tokens (B, 77, D) cut after each row's EOT; returns the tokens and, if packed, the lengths.

        Exact (``exact``, the default): the batch is cut to :func:`exact_text_length` of its last EOT,
        which gives the bits of the full 77-token run (the reference's): on the CPUs where a cut was
        checked to keep them, at 2.3-2.6x its speed for a short text on 2 cores; elsewhere all 77.
        With ``exact`` off, faster by another 20-30 % and within ~1e-7 of those bits: packed
        (``pack``; by default on CPUs, and always for a single text): the rows' kept tokens laid end
        to end as one row (1, sum of lengths, D), so the matrix products do no work on padding.
        Otherwise the batch is cut after its last EOT (B, max length, D): GPUs prefer that to one
        attention call per text.
        """
        lengths = (eot + 1).tolist()
        if self.exact:
            return h[:, : exact_text_length(max(lengths, default=h.shape[1]), h.device)], None
        pack = self.pack if self.pack is not None else h.device.type == "cpu"
        if not lengths or (not pack and len(lengths) > 1):
            return h[:, : max(lengths, default=h.shape[1])], None
        return torch.cat([row[:n] for row, n in zip(h, lengths, strict=True)])[None], lengths

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Stem + [CLS] + position embedding: one batch of items -> (B, num_tokens, D)."""
        spec = self.spec
        if spec.stem == "video_conv":
            if x.ndim == 4:
                x = x.unsqueeze(2)
            if x.shape[2] == 1:
                # Repeat-then-convolve, as the reference does: summing the two kernel slices of
                # a 2-d conv would be the same math but not the same bits.
                x = x.repeat(1, 1, CLIP_FRAMES, 1, 1)
        elif spec.stem == "series_linear":
            # (B, C, T) -> (B, T/p, C*p), channel-major inside each token.
            p = spec.kernel[0]
            x = x.unfold(-1, p, p).permute(0, 2, 1, 3).flatten(2)
        tokens = self.stem(x)
        if spec.stem in ("video_conv", "image_conv"):
            tokens = tokens.flatten(2).transpose(1, 2)  # (B, D, *grid) -> (B, N, D), row-major grid
        if self.stem_norm is not None:
            tokens = self.stem_norm(tokens)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], 1)
        if tokens.shape[1] != spec.num_tokens:
            raise ValueError(
                f"{spec.modality} stem gave {tokens.shape[1]} tokens, expected {spec.num_tokens}"
            )
        return tokens + self.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, *clip_shape) -> (B, out_dim), L2-normalized then multiplied by the tower's scale."""
        h = self.tokens(x)
        packed: list[int] | None = None
        if self.spec.pooling == "eot":
            # <|endoftext|> has the largest id, so argmax finds it (its first occurrence).
            eot = x.argmax(dim=-1)
            if self.spec.causal:
                # Under the causal mask no position after a text's EOT can reach that EOT, so those
                # positions are dropped: the same math, and a short text costs a fraction of 77.
                h, packed = self._drop_after_eot(h, eot)
        if self.pre_norm is not None:
            h = self.pre_norm(h)
        # Only the pooled positions' outputs are used, so, when the bits may change (``exact`` off),
        # the last block computes those alone: fewer rows take other kernels, off by up to ~1e-6.
        if packed is not None:
            last_pooled = torch.tensor(packed, device=h.device).cumsum(0) - 1
        elif self.spec.pooling == "first" and not self.exact:
            last_pooled = torch.zeros(1, dtype=torch.long, device=h.device)
        else:
            last_pooled = None  # every position (padded text: each row pools another one)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            h = block(h, last_pooled if i == last else None, packed)
        if packed is not None:
            pooled = h[0] if self.blocks else h[0, last_pooled]  # (1, B, D) -> (B, D)
        elif self.spec.pooling == "eot":
            pooled = h[torch.arange(h.shape[0], device=h.device), eot]
        else:
            pooled = h[:, 0]
        pooled = self.head_norm(pooled)
        if self.spec.head_dropout:
            pooled = F.dropout(pooled, self.spec.head_dropout, self.training)
        out = F.normalize(self.head_proj(pooled).float(), dim=-1)
        if self.log_scale is not None:
            out = torch.clamp(self.log_scale.exp(), max=MAX_LOGIT_SCALE) * out
        return out
