#!/usr/bin/env python
"""Benchmark ibsearch's ImageBind encoder on a random-weight ``imagebind_huge``.

Per tower, on the same random weights and inputs (batch 8 by default):

* throughput of our encoder (fp32) against a straightforward reference-style forward written here
  (``nn.MultiheadAttention``, sequence-first layout with transposes, fp32), and their max output diff;
* our bf16 path (autocast, matrix weights stored in bf16) against our fp32 path: throughput and the
  cosine between the two outputs. On CPUs without bf16 units (no avx512_bf16/amx_bf16) bf16 is
  emulated and slow, so it runs on a smaller batch there (``--bf16-batch``);
* peak RSS and time of loading only the text tower against loading all towers from a random huge
  checkpoint, each in a fresh subprocess (``resource.getrusage``).

Usage::

    python scripts/bench_encoder.py                         # everything (~15 min on 2 cores)
    python scripts/bench_encoder.py --towers text,imu --iters 3 --skip-load
    python scripts/bench_encoder.py --checkpoint /path/random_huge.pth   # reuse a checkpoint

Results go to stdout (``--json`` for machine-readable), progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ibsearch.encoder.config import ImageBindConfig, get_config
from ibsearch.encoder.model import ImageBindModel
from ibsearch.encoder.runtime import Encoder, cpu_flags, cpu_has_fast_bf16
from ibsearch.encoder.towers import MAX_LOGIT_SCALE, Block, Tower, tower_specs
from ibsearch.modality import MODALITIES


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


@torch.no_grad()
def randomize(tower: Tower, seed: int) -> None:
    """Weights that make outputs depend strongly on the input (default inits give near-constant outputs)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in tower.named_parameters():
        if p.ndim == 0:
            continue
        if "norm" in name and name.endswith("weight"):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
        elif p.ndim == 1:
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        elif name == "pos_embed" or (name == "stem.weight" and isinstance(tower.stem, nn.Embedding)):
            p.copy_(0.5 * torch.randn(p.shape, generator=g))  # position and token embeddings
        elif name.endswith(("cls_token", "bias_k", "bias_v")):
            p.copy_(torch.randn(p.shape, generator=g))
        else:
            fan_in = math.prod(p.shape[1:])
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            if name.endswith("qkv.weight"):
                p[: 2 * p.shape[1]] *= 2.5  # sharper attention, as in the parity fixtures


def make_inputs(config: ImageBindConfig, modality: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if modality == "text":
        ids = torch.randint(1, 49406, (n, 77), generator=g)
        ends = torch.randint(5, 77, (n,), generator=g)
        ids[:, 0] = 49406
        for row, end in enumerate(ends.tolist()):
            ids[row, end], ids[row, end + 1 :] = 49407, 0
        return ids
    return torch.randn((n, *tower_specs(config)[modality].clip_shape), generator=g)


def timed(fn: Callable[[], torch.Tensor], iters: int) -> tuple[float, torch.Tensor]:
    """Seconds per call (best of ``iters``) and the last result."""
    best, out = math.inf, torch.empty(0)
    for _ in range(iters):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def time_reference_style(tower: Tower, x: torch.Tensor, iters: int) -> tuple[float, torch.Tensor]:
    ref = ReferenceStyleTower(tower).eval()
    ref(x[:1])
    return timed(lambda: ref(x), iters)


def bench_tower(modality: str, args: argparse.Namespace) -> dict[str, float | int | str]:
    config = get_config(args.config)
    started = time.perf_counter()
    model = ImageBindModel(config, [modality]).eval()
    tower = cast(Tower, model.towers[modality])
    randomize(tower, seed=args.seed)
    x = make_inputs(config, modality, args.batch, seed=args.seed + 1)
    say(f"[{modality}] built in {time.perf_counter() - started:.1f} s; timing fp32 (batch {args.batch})")

    with torch.inference_mode():
        tower(x[:1])  # warm-up: kernel selection, first touch of the weights
        ours_s, ours = timed(lambda: model({modality: x})[modality], args.iters)
        say(f"[{modality}] ours fp32 {ours_s:.2f} s/batch; reference-style next")
        ref_s, theirs = time_reference_style(tower, x, args.iters)
    diff = (ours - theirs).abs().max().item()
    rel = diff / theirs.norm(dim=-1).max().item()
    spread = F.normalize(ours, dim=-1)
    cross = (spread @ spread.T)[~torch.eye(len(x), dtype=torch.bool)].mean().item()

    bf16_batch = min(args.bf16_batch or args.batch, args.batch)
    say(f"[{modality}] reference-style {ref_s:.2f} s/batch; bf16 on batch {bf16_batch}")
    encoder = Encoder.from_model(model, device="cpu", precision="bf16", batch_size=bf16_batch)
    xb = x[:bf16_batch]
    encoder.encode(modality, xb[:1])
    bf16_s, fast = timed(lambda: torch.from_numpy(encoder.encode(modality, xb)), args.iters)
    cosine = (F.normalize(ours[:bf16_batch], dim=-1) * fast).sum(dim=-1)
    return {
        "tower": modality,
        "batch": args.batch,
        "ours_fp32_items_s": args.batch / ours_s,
        "ref_fp32_items_s": args.batch / ref_s,
        "speedup": ref_s / ours_s,
        "max_abs_diff": diff,
        "max_rel_diff": rel,
        "fp32_cross_item_cosine": cross,
        "bf16_batch": bf16_batch,
        "ours_bf16_items_s": bf16_batch / bf16_s,
        "bf16_vs_fp32_speed": (bf16_batch / bf16_s) / (args.batch / ours_s),
        "bf16_cosine_min": cosine.min().item(),
        "bf16_cosine_mean": cosine.mean().item(),
    }


# ------------------------------------------------------------------------------------------------
# Loading: each measurement in a fresh process, so peak RSS is that load's own.


def child_load(args: argparse.Namespace) -> None:
    from ibsearch.encoder.cards import ModelCard

    modalities = args.child_load.split(",")
    card = ModelCard("bench-random-huge", get_config(args.config), str(Path(args.checkpoint).absolute()))
    start = time.perf_counter()
    if args.child_baseline:
        state = torch.load(args.checkpoint, weights_only=True)  # the reference's way: the whole file in RAM
        model = ImageBindModel.from_reference(state, card.config, modalities)
        encoder = Encoder.from_model(model, device="cpu", precision="fp32", batch_size=1)
    else:
        encoder = Encoder(card, device="cpu", precision="fp32", batch_size=1, progress=False)
        encoder.load(modalities)
    load_s = time.perf_counter() - start
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for m in modalities:
        encoder.encode(m, make_inputs(card.config, m, 1, seed=0))
    first_s = time.perf_counter() - start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"load_s": load_s, "first_encode_s": first_s, "rss_load_mb": rss_load / 1024}
    print(json.dumps({**result, "rss_peak_mb": rss_peak / 1024}))


def run_child(args: argparse.Namespace, cache: Path, modalities: str, baseline: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child-load", modalities, "--checkpoint", str(args.checkpoint)]
    cmd += ["--config", args.config]
    if baseline:
        cmd.append("--child-baseline")
    env = dict(os.environ, IBSEARCH_CACHE=str(cache))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"load benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_loading(args: argparse.Namespace, workdir: Path) -> list[dict]:
    from ibsearch.encoder.weights import write_random_checkpoint

    if args.checkpoint is None:
        args.checkpoint = workdir / "random_huge.pth"
        say(f"writing a random {args.config} checkpoint to {args.checkpoint}")
        start = time.perf_counter()
        write_random_checkpoint(get_config(args.config), args.checkpoint, seed=args.seed)
        say(f"  written in {time.perf_counter() - start:.0f} s")
    cache = workdir / "cache"
    rows = []
    plan = [
        ("first use: split .pth into towers, then text", "text", False),
        ("text tower only (split cached)", "text", False),
        ("all six towers (split cached)", ",".join(MODALITIES), False),
        ("all six via torch.load of the whole .pth", ",".join(MODALITIES), True),
    ]
    for label, modalities, baseline in plan:
        say(f"load: {label}")
        result = run_child(args, cache, modalities, baseline)
        rows.append({"load": label, **result})
    return rows


# ------------------------------------------------------------------------------------------------


def environment() -> dict[str, str | int | bool]:
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    simd = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "fma")))
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu_flags (simd)": " ".join(simd),
        "bf16 units (avx512_bf16/amx_bf16)": cpu_has_fast_bf16(),
        "load average at start": " ".join(f"{v:.1f}" for v in os.getloadavg()),
    }


TOWER_COLUMNS = [
    ("tower", "tower", "{}"),
    ("batch", "batch", "{}"),
    ("ours fp32 items/s", "ours_fp32_items_s", "{:.2f}"),
    ("ref-style fp32 items/s", "ref_fp32_items_s", "{:.2f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("max abs diff", "max_abs_diff", "{:.1e}"),
    ("max rel diff", "max_rel_diff", "{:.1e}"),
    ("bf16 batch", "bf16_batch", "{}"),
    ("ours bf16 items/s", "ours_bf16_items_s", "{:.2f}"),
    ("bf16/fp32 speed", "bf16_vs_fp32_speed", "{:.2f}x"),
    ("bf16 vs fp32 cos min", "bf16_cosine_min", "{:.5f}"),
    ("fp32 cross-item cos", "fp32_cross_item_cosine", "{:.3f}"),
]
LOAD_COLUMNS = [
    ("load", "load", "{}"),
    ("load s", "load_s", "{:.1f}"),
    ("RSS after load MB", "rss_load_mb", "{:.0f}"),
    ("first encode (1 item per tower) s", "first_encode_s", "{:.1f}"),
    ("peak RSS MB", "rss_peak_mb", "{:.0f}"),
]


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for _, key, fmt in columns) + " |")
    return "\n".join(lines)


def print_tables(config: str, env: dict, towers: list[dict], loads: list[dict]) -> None:
    print("## Environment")
    for key, value in env.items():
        print(f"- {key}: {value}")
    if towers:
        print(f"\n## Towers ({config}, random weights; best of the timed iterations)\n")
        print(table(towers, TOWER_COLUMNS))
    if loads:
        print(f"\n## Loading a random {config} checkpoint (a fresh process each; fp32; page cache warm)\n")
        print(table(loads, LOAD_COLUMNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--towers", default=",".join(MODALITIES), help="comma-separated towers to time")
    parser.add_argument(
        "--iters", type=int, default=1, help="timed iterations per measurement (best is kept)"
    )
    parser.add_argument("--batch", type=int, default=8, help="items per batch for the fp32 comparison")
    parser.add_argument(
        "--bf16-batch",
        type=int,
        default=None,
        help="items per bf16 batch (default: --batch with bf16 units, else 2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-load", action="store_true", help="skip the checkpoint loading benchmark")
    parser.add_argument("--checkpoint", type=Path, default=None, help="reuse this random checkpoint (.pth)")
    parser.add_argument("--config", default="imagebind_huge", help="model config (imagebind_tiny: smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--child-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load:
        child_load(args)
        return
    if args.bf16_batch is None:
        args.bf16_batch = args.batch if cpu_has_fast_bf16() else 2

    env = environment()
    say(f"environment: {env}")
    towers = [m.strip() for m in args.towers.split(",") if m.strip()]
    results = [bench_tower(m, args) for m in towers]
    loads: list[dict] = []
    if not args.skip_load:
        with tempfile.TemporaryDirectory(prefix="ibsearch-bench-") as tmp:
            loads = bench_loading(args, Path(tmp))
    if args.json:
        print(
            json.dumps(
                {"config": args.config, "environment": env, "towers": results, "loading": loads}, indent=2
            )
        )
    else:
        print_tables(args.config, env, results, loads)


if __name__ == "__main__":
    main()
