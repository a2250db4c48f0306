#!/usr/bin/env python
"""The precision table: int8 (and bf16 where the CPU has bf16 units) against fp32 on the huge towers.

Per tower (vision and audio by default), on the same random weights and inputs, in this process:
items/s of ``Encoder.encode`` at each precision (the same batch, the calls interleaved so that the
load of a shared machine weighs on all alike, best of ``--iters``), the speed against fp32, and the
lowest cosine between a precision's vectors and fp32's. Weights: ``small`` init (as
``write_random_checkpoint`` writes, what the target is stated on) and, with ``--sharp``, the
parity fixtures' peaked init too (cosine only), a harder case for int8's rounding.

The int8 model is built and quantized first, then the fp32 one (same seed, same weights), so that
peak memory stays near one fp32 tower (2.5 GB for the huge vision tower).

``--isa avx2`` runs it with torch, MKL, oneDNN and FBGEMM capped at AVX2 (``scripts/isa.py``): the AVX2 code
paths on an AVX-512 machine.

Usage:  python scripts/bench_precision.py [--towers vision,audio] [--batch 4] [--iters 2] [--sharp]
        [--isa avx2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isa import add_isa_option, limit_isa, print_environment  # noqa: E402  (shared; no torch)

limit_isa()  # with --isa avx2: starts this script again, capped at AVX2, before torch loads

import torch  # noqa: E402
from bench_encoder import build, environment, make_inputs, say, table, timed  # noqa: E402  (shared)

from ibsearch.encoder.model.config import get_config  # noqa: E402
from ibsearch.encoder.runtime import ENV_INT8_ENGINE, Encoder, cpu_has_fast_bf16  # noqa: E402


def encoder(config: str, modality: str, seed: int, kind: str, precision: str, batch: int) -> Encoder:
    """An Encoder over a freshly built random tower (the same weights for the same seed and kind).

    ``precision`` may name the int8 engine too, ``int8:fbgemm`` or ``int8:onednn`` (else the one
    ``int8_engine`` picks for this CPU)."""
    torch.manual_seed(seed)  # the parts ``build`` leaves at their default init (heads) too
    model = build(get_config(config), modality, seed, kind)
    precision, _, engine = precision.partition(":")
    os.environ[ENV_INT8_ENGINE] = engine or "auto"  # read when the layers are quantized, below
    try:
        return Encoder.from_model(model, device="cpu", precision=precision, batch_size=batch)
    finally:
        del os.environ[ENV_INT8_ENGINE]


def tower_rows(modality: str, args: argparse.Namespace) -> list[dict]:
    """One row per precision of ``modality``'s tower: items/s, speed against fp32, cosine to fp32."""
    x = make_inputs(get_config(args.config), modality, args.batch, seed=args.seed + 1)
    fast = [p for p in args.precisions if p != "fp32"]
    encoders = {p: encoder(args.config, modality, args.seed, "small", p, args.batch) for p in fast}
    encoders["fp32"] = encoder(args.config, modality, args.seed, "small", "fp32", args.batch)
    for enc in encoders.values():
        enc.encode(modality, x[:1])  # warm-up: kernel selection, first touch of the weights
    say(f"[{modality}] timing {', '.join(encoders)} on a batch of {args.batch}")
    fns = {p: (lambda e=e: torch.from_numpy(e.encode(modality, x))) for p, e in encoders.items()}
    runs = timed(fns, args.iters)
    del encoders, fns
    fp32_s, _, exact = runs["fp32"]
    rows = []
    for precision, (seconds, _, vectors) in runs.items():
        cosine = (exact * vectors).sum(-1).min().item()
        row = {"tower": modality, "precision": precision, "batch": args.batch}
        row.update(items_s=args.batch / seconds, vs_fp32=fp32_s / seconds, cos_small=cosine, cos_sharp="-")
        rows.append(row)
    if args.sharp:  # cosine only, one call each, on two items
        sharp = {
            p: encoder(args.config, modality, args.seed, "sharp", p, 2).encode(modality, x[:2]) for p in fast
        }
        exact2 = encoder(args.config, modality, args.seed, "sharp", "fp32", 2).encode(modality, x[:2])
        for row in rows:
            other = exact2 if row["precision"] == "fp32" else sharp[row["precision"]]
            row["cos_sharp"] = f"{(exact2 * other).sum(-1).min():.5f}"
    for row in rows:
        say(f"[{modality}] {row['precision']}: {row['items_s']:.3f} items/s, {row['vs_fp32']:.2f}x fp32, "
            f"cosine {row['cos_small']:.5f} (small init), {row['cos_sharp']} (sharp)")  # fmt: skip
    return rows


COLUMNS = [("tower", "tower", "{}"), ("precision", "precision", "{}"), ("batch", "batch", "{}"),
           ("items/s", "items_s", "{:.3f}"), ("speed vs fp32", "vs_fp32", "{:.2f}x"),
           ("cosine to fp32, lowest (small init)", "cos_small", "{:.5f}"),
           ("same, sharp init", "cos_sharp", "{}")]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--towers", default="vision,audio", help="comma-separated towers")
    ap.add_argument(
        "--precisions", default=None,
        help="default: int8, fp32 (bf16 too with bf16 units); int8:fbgemm or int8:onednn names the engine",
    )  # fmt: skip
    ap.add_argument("--batch", type=int, default=4, help="items per timed call")
    ap.add_argument("--iters", type=int, default=2, help="timed calls per precision (best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sharp", action="store_true", help="also the cosine with sharp random weights")
    ap.add_argument("--config", default="imagebind_huge", help="model config (imagebind_tiny: smoke run)")
    add_isa_option(ap)
    args = ap.parse_args()
    default = ["int8", "fp32"] + (["bf16"] if cpu_has_fast_bf16() else [])
    args.precisions = [p.strip() for p in (args.precisions or ",".join(default)).split(",") if p.strip()]
    if "fp32" not in args.precisions:
        args.precisions.append("fp32")
    env, load_before = environment(), os.getloadavg()[0]
    rows = [row for m in args.towers.split(",") if m.strip() for row in tower_rows(m.strip(), args)]
    print_environment(env, args.isa, torch.backends.cpu.get_cpu_capability(), load_before)
    print(f"\n## Precisions against fp32 ({args.config}, random weights, best of {args.iters})\n")
    print(table(rows, COLUMNS))


if __name__ == "__main__":
    main()
