"""How fast ``ibsearch serve`` answers: warm text-to-vision latency, and the command line through it.

A library of N embedding-like unit vectors (``bench_search_kinds``'s ``mixture`` distribution: no model
needed to fill it; from 100,000 vectors on it gets the approximate index ``auto`` picks) is served by a
real ``ibsearch serve`` process with ImageBind-Huge's text tower (random weights, real sizes), and
queried over loopback HTTP with distinct texts (so no answer comes from the server's query cache), by 1
and by 8 concurrent clients. Each answer's ``Server-Timing`` header splits the server's time into encoding the
text and searching; the client measures end to end. A "more like this" query (a stored vector, no
encoding) and a repeated text (served from the cache) show the search alone. Then ``ibsearch query``
is timed as a process of its own: through the running server, and cold, without one.

    python scripts/bench_serve.py                       # 10k and 100k items, writes ~1.9 GB in --work
    python scripts/bench_serve.py --sizes 10000 --requests 20 --work /tmp/bench_serve
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from ibsearch.engine import Library
from ibsearch.store import FileEntry, VectorEntry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_kinds import Distribution  # noqa: E402  (the same distribution as the index bench)

WORDS = "dog cat beach mountain city night snow forest river car bike child market rain sunset".split()


def machine() -> str:
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?"
        )
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_card(work: Path) -> Path:
    """ImageBind-Huge sizes, random weights for the text tower only (1.4 GB instead of 4.8 GB)."""
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.cards import ModelCard, save_card
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    checkpoint, card = work / "huge_text.pth", work / "huge_text.json"
    if not checkpoint.exists():
        write_random_checkpoint(get_config("imagebind_huge"), checkpoint, modalities=["text"])
    save_card(
        ModelCard(
            "huge-text-random",
            get_config("imagebind_huge"),
            str(checkpoint),
            description="random weights: results mean nothing",
        ),
        card,
    )
    return card


def build(root: Path, n: int, card: Path) -> None:
    """A library of ``n`` one-vector pictures with embedding-like unit vectors, written as an ingest would
    (its index is built when the write ends, of the kind ``auto`` gives its size)."""
    if (root / "ibsearch.db").exists():
        return
    rng = np.random.default_rng(0)
    mixture = Distribution("mixture", 1024)
    with Library.open(root, model=str(card), device="cpu", create=True) as lib, lib.writing():
        lib.bind_model()
        for start in range(0, n, 2000):
            vecs = mixture.draw(rng, min(2000, n - start))
            ids = []
            with lib.store.transaction():
                for i, vec in enumerate(vecs):
                    up = lib.store.upsert_file(
                        FileEntry(
                            f"/bench/photos/{(start + i) // 1000:03d}/{start + i:07d}.jpg",
                            size=1,
                            mtime_ns=1,
                            content_hash=f"{start + i:064x}",
                            modality="vision",
                            info={"width": 640, "height": 480},
                        ),
                        [VectorEntry(vec, "vision")],
                    )
                    ids += up.vector_ids
            lib.indexes.add("vision", ids, vecs)


def serve(root: Path, card: Path, precision: str, threads: int | None) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    if threads:  # torch's and FAISS's intra-op threads (OpenMP)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ibsearch",
            "serve",
            "--library",
            str(root),
            "--model",
            str(card),
            "--port",
            "0",
            "--device",
            "cpu",
            "--precision",
            precision,
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise SystemExit("ibsearch serve did not start")
    return proc, json.loads(line)["url"]


def timing(header: str) -> dict[str, float]:
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([\d.]+)", header)}


def ask(client: httpx.Client, body: dict) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    answer = client.post("/api/search", json=body)
    took = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    assert len(answer.json()["results"]) == body.get("k", 10)
    return took, timing(answer.headers.get("server-timing", ""))


def run_clients(url: str, bodies: list[dict], clients: int) -> list[tuple[float, dict[str, float]]]:
    def worker(part: list[dict]) -> list[tuple[float, dict[str, float]]]:
        with httpx.Client(base_url=url, timeout=600) as client:
            return [ask(client, body) for body in part]

    parts = [bodies[i::clients] for i in range(clients)]
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return [r for done in pool.map(worker, parts) for r in done]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(label: str, results: list[tuple[float, dict[str, float]]]) -> str:
    total = [r[0] for r in results]
    encode = [r[1].get("encode", 0.0) for r in results]
    search = [r[1].get("search", 0.0) for r in results]
    cells = [label, str(len(results)), f"**{pct(total, 50):.0f}**", f"{pct(total, 95):.0f}"]
    cells += [
        f"{pct(encode, 50):.0f} / {pct(encode, 95):.0f}",
        f"{pct(search, 50):.1f} / {pct(search, 95):.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def texts(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        f"a photo of a {' and a '.join(rng.choice(WORDS, 2, replace=False))} number {seed}-{i}"
        for i in range(count)
    ]


def bench_size(root: Path, card: Path, n: int, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Latency rows for a library of ``n`` items and, for the largest, the command-line rows."""
    proc, url = serve(root, card, args.precision, args.threads)
    rows, cli = [], []
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            for text in texts(3, 999):  # warm: the text tower and the index are loaded once
                ask(client, {"text": [text], "target": ["vision"]})
            like = client.post("/api/search", json={"text": ["x"], "k": 1}).json()["results"][0]["id"]
            cached = [
                ask(client, {"text": ["a photo of a dog"], "target": ["vision"]})
                for _ in range(args.requests)
            ]
            liked = [ask(client, {"like": [like], "target": ["vision"]}) for _ in range(args.requests)]
        for clients in args.clients:
            count = args.requests if clients == 1 else args.requests * 2
            bodies = [{"text": [t], "target": ["vision"]} for t in texts(count, clients)]
            rows.append(
                report(
                    f"{n:,} items, {clients} client{'s' if clients > 1 else ''}, new texts",
                    run_clients(url, bodies, clients),
                )
            )
        rows.append(report(f"{n:,} items, 1 client, a repeated text (cached vector)", cached))
        rows.append(report(f"{n:,} items, 1 client, more like this (stored vector)", liked))
        if n == max(args.sizes):
            cli = bench_cli(root, card, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
    return rows, cli


def cli_seconds(root: Path, card: Path, text: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ibsearch",
            "query",
            "--text",
            text,
            "--target",
            "vision",
            "--k",
            "10",
            "--json",
            "--library",
            str(root),
            "--model",
            str(card),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    if done.returncode or len(json.loads(done.stdout)) != 10:
        raise SystemExit(f"ibsearch query failed: {done.stderr}")
    return took


def bench_cli(root: Path, card: Path, proc: subprocess.Popen) -> list[str]:
    warm = [cli_seconds(root, card, t) for t in texts(5, 7)]
    repeated = [cli_seconds(root, card, "a photo of a dog") for _ in range(5)]  # the server remembers it
    proc.terminate()
    proc.wait(timeout=60)
    cold = [cli_seconds(root, card, t) for t in texts(3, 8)]
    rows = [
        "| ibsearch query (a process of its own) | runs | median wall (s) | min | max |",
        "|---|---|---|---|---|",
    ]
    runs_of = [
        ("through the running server, new texts", warm),
        ("through the server, a text it remembers", repeated),
    ]
    for label, runs in runs_of + [("cold, no server", cold)]:
        median = statistics.median(runs)
        rows.append(f"| {label} | {len(runs)} | **{median:.2f}** | {min(runs):.2f} | {max(runs):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="library sizes (comma-separated)")
    parser.add_argument("--clients", default="1,8", help="concurrent clients (comma-separated)")
    parser.add_argument("--requests", type=int, default=40, help="queries per client count (8 clients: 4x)")
    parser.add_argument("--precision", default="auto", help="the server's --precision")
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS of the server (default: unset)"
    )
    parser.add_argument("--work", default=None, help="folder for the model and libraries (kept; reused)")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.clients = [int(c) for c in args.clients.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_serve_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; {load()}; precision {args.precision}, threads {args.threads or 'default'}")
    card = make_card(work)
    header = [
        "| query | requests | end to end p50 (ms) | p95 | server encode p50 / p95 | search p50 / p95 |",
        "|---|---|---|---|---|---|",
    ]
    rows, cli = [], []
    for n in args.sizes:
        started = time.perf_counter()
        build(work / f"lib_{n}", n, card)
        with Library.open(work / f"lib_{n}", model=str(card), device="cpu") as lib:
            kind = lib.info(0)["indexes"]["vision"]["text"]
        print(f"library of {n:,} vectors ready in {time.perf_counter() - started:.1f} s ({kind}); {load()}",
              flush=True)  # fmt: skip
        latency, command = bench_size(work / f"lib_{n}", card, n, args)
        rows += latency
        cli += command
        print(f"measured {n:,}; {load()}", flush=True)
    print("\n".join(header + rows))
    print()
    print("\n".join(cli))
    print(f"\nafter: {load()}")


if __name__ == "__main__":
    main()
