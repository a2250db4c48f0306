#!/usr/bin/env python
"""Benchmark ibsearch's ImageBind encoder on a random-weight ``imagebind_huge``.

Per tower, on the same random weights and inputs (batch 8 by default):

* throughput of our encoder (fp32) against a straightforward reference-style forward written here
  (``nn.MultiheadAttention``, sequence-first layout with transposes, fp32), and their max output diff.
  Each tower runs in a fresh process, first with malloc as the process starts, then with freed memory
  retained as every CPU ``Encoder`` sets it (``ibsearch.encoder.malloc``); the headline ratio is ours
  as ibsearch runs it against the reference-style forward as the reference runs, and both
  like-for-like ratios are printed beside it;
* our bf16 path (autocast, matrix weights stored in bf16) against our fp32 path: throughput and the
  cosine between the two outputs. On CPUs without bf16 units (no avx512_bf16/amx_bf16) bf16 is
  emulated and slow, so it runs on a smaller batch there (``--bf16-batch``);
* peak RSS and time of loading only the text tower against loading all towers from a random huge
  checkpoint, each in a fresh subprocess (``resource.getrusage``).

Usage::

    python scripts/bench_encoder.py                         # everything (~15 min on 2 cores)
    python scripts/bench_encoder.py --towers text,imu --iters 3 --skip-load --skip-bf16
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
import statistics
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

from ibsearch.encoder.malloc import retain_freed_memory
from ibsearch.encoder.model.config import ImageBindConfig, get_config
from ibsearch.encoder.model.model import ImageBindModel
from ibsearch.encoder.model.towers import Tower, tower_specs
from ibsearch.encoder.runtime import Encoder, cpu_flags, cpu_has_fast_bf16
from ibsearch.modality import MODALITIES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference_style import ReferenceStyleTower  # noqa: E402  (the tests' oracle, shared)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@torch.no_grad()
def randomize(tower: Tower, seed: int, kind: str = "sharp") -> None:
    """Random weights of one of two kinds (PyTorch's default inits give near-constant outputs).

    ``sharp``: like the parity fixtures: N(0,1)/sqrt(fan_in) matrices, q and k rows x2.5 (peaked
    attention), outputs strongly input-dependent. ``small``: like ``weights.write_random_checkpoint``:
    N(0, 0.02) everywhere, LayerNorm gains ~1.
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in tower.named_parameters():
        if p.ndim == 0:
            continue
        if kind == "small":
            p.copy_(0.02 * torch.randn(p.shape, generator=g) + (p.ndim == 1 and name.endswith("weight")))
        elif "norm" in name and name.endswith("weight"):
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
                p[: 2 * p.shape[1]] *= 2.5


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


def timed(
    fns: dict[str, Callable[[], torch.Tensor]], iters: int
) -> dict[str, tuple[float, float, torch.Tensor]]:
    """Best and median seconds per call and the last result of each function, calls interleaved.

    Interleaving (a, b, a, b, ...) spreads the noise of a shared machine evenly over the contestants.
    """
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    last = {name: torch.empty(0) for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            last[name] = fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: (min(s), statistics.median(s), last[name]) for name, s in seconds.items()}


def build(config: ImageBindConfig, modality: str, seed: int, kind: str) -> ImageBindModel:
    model = ImageBindModel(config, [modality]).eval()
    randomize(cast(Tower, model.towers[modality]), seed, kind)
    return model


GEMM_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")


def gemm_share(fn: Callable[[], torch.Tensor]) -> float:
    """Fraction of one call's CPU time spent in fp32 matrix products (torch.profiler, self time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / total


def compare_fp32(model: ImageBindModel, modality: str, x: torch.Tensor, iters: int) -> dict[str, float]:
    """Our fp32 forward against the reference-style one on the same tensors: speed and max diff.

    Two phases in this (fresh) process, each interleaving ours and the reference-style forward:
    first with malloc as the process starts (how the reference runs), then after
    ``retain_freed_memory()``, which every CPU ``Encoder`` applies. The setting is process-wide and
    cannot be undone, so the reference-style forward runs in both phases and each phase also gives
    a like-for-like ratio.
    """
    tower = cast(Tower, model.towers[modality])
    ref = ReferenceStyleTower(tower).eval()
    result: dict[str, float] = {}
    with torch.inference_mode():
        tower(x[:1]), ref(x[:1])  # warm-up: kernel selection, first touch of the weights
        fns = {"ours": lambda: model({modality: x})[modality], "ref": lambda: ref(x)}
        for phase in ("default", "retained"):
            if phase == "retained":
                result["retained_applied"] = float(retain_freed_memory())
            runs = timed(fns, iters)
            for name, (best, median, _) in runs.items():
                result[f"{name}_{phase}_s"] = best
                result[f"{name}_{phase}_median_s"] = median
        result["ours_gemm_share"] = gemm_share(fns["ours"])
        result["ref_gemm_share"] = gemm_share(fns["ref"])
    ours, theirs = runs["ours"][2], runs["ref"][2]
    diff = (ours - theirs).abs().max().item()
    unit = F.normalize(ours, dim=-1)
    result.update(
        max_abs_diff=diff,
        max_rel_diff=diff / theirs.norm(dim=-1).max().item(),
        cross=(unit @ unit.T)[~torch.eye(len(x), dtype=torch.bool)].mean().item(),
    )
    return result


def time_bf16(
    model: ImageBindModel, modality: str, x: torch.Tensor, iters: int
) -> tuple[float, torch.Tensor]:
    """Seconds per batch of our bf16 encoder and the cosines to fp32; takes the model over."""
    with torch.inference_mode():
        exact = model.embed({modality: x})[modality]
    encoder = Encoder.from_model(model, device="cpu", precision="bf16", batch_size=len(x))
    encoder.encode(modality, x[:1])
    seconds, _, fast = timed({"bf16": lambda: torch.from_numpy(encoder.encode(modality, x))}, iters)["bf16"]
    return seconds, (exact * fast).sum(dim=-1)


def bench_tower(modality: str, args: argparse.Namespace) -> dict[str, float | int | str]:
    """One tower's figures; run in a fresh process (see :func:`compare_fp32`)."""
    config = get_config(args.config)
    started = time.perf_counter()
    model = build(config, modality, args.seed, "sharp")
    x = make_inputs(config, modality, args.batch, seed=args.seed + 1)
    say(f"[{modality}] built in {time.perf_counter() - started:.1f} s; timing fp32 (batch {args.batch})")
    fp32 = compare_fp32(model, modality, x, args.iters)
    say(
        f"[{modality}] ours {fp32['ours_retained_s']:.2f} s with retained memory "
        f"({fp32['ours_default_s']:.2f} s without), reference-style {fp32['ref_default_s']:.2f} s"
    )
    row: dict[str, float | int | str] = {
        "tower": modality,
        "batch": args.batch,
        "ours_fp32_items_s": args.batch / fp32["ours_retained_s"],
        "ref_fp32_items_s": args.batch / fp32["ref_default_s"],
        "speedup": fp32["ref_default_s"] / fp32["ours_retained_s"],
        "speedup_median": fp32["ref_default_median_s"] / fp32["ours_retained_median_s"],
        "speedup_default_malloc": fp32["ref_default_s"] / fp32["ours_default_s"],
        "speedup_retained_malloc": fp32["ref_retained_s"] / fp32["ours_retained_s"],
        "retained_applied": fp32["retained_applied"],
        "max_abs_diff": fp32["max_abs_diff"],
        "max_rel_diff": fp32["max_rel_diff"],
        "fp32_cross_item_cosine": fp32["cross"],
        "ref_gemm_share": fp32["ref_gemm_share"],
        "ours_gemm_share": fp32["ours_gemm_share"],
        # If ours spent no time at all outside the same matrix products, this is the best ratio.
        "gemm_ceiling": 1 / fp32["ref_gemm_share"],
    }
    if args.skip_bf16:
        return row
    bf16_batch = min(args.bf16_batch or args.batch, args.batch)
    bf16_s, cosine = time_bf16(model, modality, x[:bf16_batch], args.iters)
    del model
    say(f"[{modality}] bf16 {bf16_s:.2f} s; bf16 cosine with small random weights")
    _, cosine_small = time_bf16(build(config, modality, args.seed, "small"), modality, x[:bf16_batch], 1)
    row.update(
        bf16_batch=bf16_batch,
        ours_bf16_items_s=bf16_batch / bf16_s,
        bf16_vs_fp32_speed=(bf16_batch / bf16_s) / (args.batch / fp32["ours_retained_s"]),
        bf16_cosine_min=cosine.min().item(),
        bf16_cosine_min_small_init=cosine_small.min().item(),
    )
    return row


def run_tower_child(modality: str, args: argparse.Namespace) -> dict:
    """:func:`bench_tower` in a fresh process, so that each tower starts with malloc untouched."""
    cmd = [sys.executable, __file__, "--child-tower", modality, "--config", args.config]
    cmd += ["--iters", str(args.iters), "--batch", str(args.batch), "--seed", str(args.seed)]
    cmd += ["--bf16-batch", str(args.bf16_batch)] + (["--skip-bf16"] if args.skip_bf16 else [])
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # progress: our stderr
    if done.returncode != 0:
        raise SystemExit(f"tower benchmark child for {modality} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# Loading: each measurement in a fresh process, so peak RSS is that load's own.


def peak_rss_mb() -> float:
    """This process's peak RSS in MB.

    ``getrusage``'s ru_maxrss survives fork + exec on Linux (a child started by a big parent reports
    the parent's peak), so the kernel's per-address-space high-water mark (VmHWM) is read instead
    where it exists.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_load(args: argparse.Namespace) -> None:
    from ibsearch.encoder.weights.cards import ModelCard

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
    rss_load = peak_rss_mb()
    start = time.perf_counter()
    for m in modalities:
        encoder.encode(m, make_inputs(card.config, m, 1, seed=0))
    first_s = time.perf_counter() - start
    result = {
        "load_s": load_s,
        "first_encode_s": first_s,
        "rss_load_mb": rss_load,
        "rss_peak_mb": peak_rss_mb(),
    }
    print(json.dumps(result))


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
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

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
    ("ours fp32 items/s (retained malloc)", "ours_fp32_items_s", "{:.2f}"),
    ("ref-style fp32 items/s (default malloc)", "ref_fp32_items_s", "{:.2f}"),
    ("ours / ref-style, best", "speedup", "{:.2f}x"),
    ("same, medians", "speedup_median", "{:.2f}x"),
    ("both default malloc", "speedup_default_malloc", "{:.2f}x"),
    ("both retained malloc", "speedup_retained_malloc", "{:.2f}x"),
    ("max abs diff", "max_abs_diff", "{:.1e}"),
    ("max rel diff", "max_rel_diff", "{:.1e}"),
    ("ref-style time in GEMMs", "ref_gemm_share", "{:.0%}"),
    ("ours in GEMMs", "ours_gemm_share", "{:.0%}"),
    ("ceiling at equal GEMMs", "gemm_ceiling", "{:.2f}x"),
]
BF16_COLUMNS = [
    ("tower", "tower", "{}"),
    ("bf16 batch", "bf16_batch", "{}"),
    ("ours bf16 items/s", "ours_bf16_items_s", "{:.2f}"),
    ("bf16/fp32 speed", "bf16_vs_fp32_speed", "{:.2f}x"),
    ("bf16 vs fp32 cos min (sharp init)", "bf16_cosine_min", "{:.5f}"),
    ("same, small init", "bf16_cosine_min_small_init", "{:.5f}"),
    ("fp32 cross-item cos (sharp)", "fp32_cross_item_cosine", "{:.3f}"),
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
        with_bf16 = [row for row in towers if "bf16_batch" in row]
        if with_bf16:
            print(f"\n## bf16 against fp32 ({config})\n")
            print(table(with_bf16, BF16_COLUMNS))
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
    parser.add_argument("--skip-bf16", action="store_true", help="skip the bf16 speed and cosine runs")
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--child-tower", help=argparse.SUPPRESS)
    parser.add_argument("--child-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bf16_batch is None:
        args.bf16_batch = args.batch if cpu_has_fast_bf16() else 2
    if args.child_load:
        child_load(args)
        return
    if args.child_tower:
        print(json.dumps(bench_tower(args.child_tower, args)))
        return

    env = environment()
    say(f"environment: {env}")
    loads: list[dict] = []
    if not args.skip_load:
        with tempfile.TemporaryDirectory(prefix="ibsearch-bench-") as tmp:
            loads = bench_loading(args, Path(tmp))
    towers = [m.strip() for m in args.towers.split(",") if m.strip()]
    results = [run_tower_child(m, args) for m in towers]
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
