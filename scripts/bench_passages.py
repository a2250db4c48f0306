#!/usr/bin/env python
"""What passages of long text cost: the huge text tower's passages/s, and the ingest of a 1 MB text.

1. A 1 MB note of generated paragraphs is cut into passages (``media.passages``): time and count.
2. The random-weight ``imagebind_huge`` text tower (built in memory, as ``bench_encoder.py`` does: no
   checkpoint needed) encodes the first ``--sample`` passages through ``Encoder.encode`` in ingest's
   batches: passages/s.
3. The note is ingested with the tiny random model (``--card``, or one written here): the wall time of
   everything but the tower's arithmetic, with its counts; the huge model's ingest time of the same note
   is that plus its passages at the measured rate.

Usage:  .venv/bin/python scripts/bench_passages.py [--size 1000000] [--sample 48] [--device cpu]
Runs in about 3 minutes on 2 cores. Results to stdout (``--json`` for machine-readable).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from ibsearch.encoder.media.passages import cut_passages
from ibsearch.encoder.media.text import DocumentText
from ibsearch.encoder.media.tokenizer import tokenize
from ibsearch.encoder.model.config import get_config
from ibsearch.encoder.runtime import Encoder
from ibsearch.engine import Library

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoder import build  # noqa: E402  (the huge towers with random weights, in memory)
from bench_sensor_memory import cpu_model  # noqa: E402  (the lscpu line every benchmark prints)

WORDS = "alpha beta gamma delta river stone cloud maple orbit quiet lantern meadow copper hollow".split()


def note(size: int, seed: int = 1) -> str:
    """About ``size`` characters of paragraphs of 1 to 14 sentences of 3 to 22 words."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < size:
        sentences = (
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 22))).capitalize() + "."
            for _ in range(rng.randint(1, 14))
        )
        paragraphs.append(" ".join(sentences))
        total += len(paragraphs[-1]) + 2
    return "\n\n".join(paragraphs) + "\n"


def tiny_card(folder: Path) -> str:
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    write_random_checkpoint(get_config("imagebind_tiny"), folder / "tiny.pth", seed=7)
    card = folder / "tiny.json"
    card.write_text(json.dumps({"name": "bench-tiny", "config": "imagebind_tiny", "checkpoint": "tiny.pth"}))
    return str(card)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="characters of the note (default 1 MB)")
    parser.add_argument("--sample", type=int, default=48, help="passages the huge text tower encodes")
    parser.add_argument("--batch", type=int, default=8, help="passages per model call (ingest's default)")
    parser.add_argument("--device", default="cpu", help="device of the huge text tower (cpu, cuda)")
    parser.add_argument("--card", default=None, help="model card of the small model to ingest with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, object] = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_start": os.getloadavg()[0]}

    text = note(args.size)
    start = time.perf_counter()
    passages = cut_passages(DocumentText(text))
    out.update(chars=len(text), passages=len(passages), cut_s=time.perf_counter() - start)

    encoder = Encoder.from_model(build(get_config("imagebind_huge"), "text", 0, "small"), device=args.device,
                                 precision="fp32", batch_size=args.batch)  # fmt: skip
    tokens = tokenize([p.text for p in passages[: args.sample]])
    encoder.encode("text", tokens[: args.batch])  # warm-up: kernel choice, first touch of the weights
    start = time.perf_counter()
    for at in range(0, len(tokens), args.batch):
        encoder.encode("text", tokens[at : at + args.batch])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    out["huge_passages_per_s"] = len(tokens) / (time.perf_counter() - start)
    out["huge_device"] = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu (fp32)"

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "notes").mkdir()
        (folder / "notes" / "long.txt").write_text(text, encoding="utf-8")
        card = args.card or tiny_card(folder)
        with Library.open(folder / "lib", model=card, device="cpu", create=True) as lib:
            lib.encoder().load(["text"])
            start = time.perf_counter()
            summary = lib.ingest([str(folder / "notes")], workers=0).to_dict()
            out["tiny_ingest_s"] = time.perf_counter() - start
            out["vectors"] = lib.store.vectors.counts()
    out["encoded"] = summary["encoded"]
    out["huge_ingest_estimate_s"] = out["tiny_ingest_s"] + len(passages) / out["huge_passages_per_s"]
    out["load_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))
        return
    print(f"machine: {out['cpu']}, {out['cores']} cores, load average {out['load_start']:.2f} at start, "
          f"{out['load_end']:.2f} at end")  # fmt: skip
    print(f"note: {len(text):,} characters -> {len(passages):,} passages, cut in {out['cut_s']:.2f} s")
    rate = out["huge_passages_per_s"]
    print(f"huge text tower ({out['huge_device']}, batch {args.batch}): {rate:.2f} passages/s")
    print(f"ingest with the tiny model: {out['tiny_ingest_s']:.1f} s, {out['encoded']} vectors encoded "
          f"({out['vectors']})")  # fmt: skip
    print(f"ingest with the huge model (estimate: the above + passages at that rate): "
          f"{out['huge_ingest_estimate_s'] / 60:.1f} min")  # fmt: skip


if __name__ == "__main__":
    main()
