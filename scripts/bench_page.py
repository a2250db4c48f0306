"""What the page's new pictures and pages cost on the server, side by side with the obvious way.

1. **A sound's span marked on its waveform**: the first picture of a long sound decodes it whole (its
   peaks, then kept); every other span of it is drawn from the kept peaks. Timed: decoding the peaks
   (what each span would cost without them) against drawing and encoding a marked picture from them.
2. **The next page of a search by a photo**: with ``uploads_of`` (the server's kept query vector)
   against sending the photo again (upload, decode, embed), through a real ``ibsearch serve`` on
   loopback, with the tiny random model (ImageBind-Huge's vision tower would add about a second per
   re-embedded photo on a CPU: see BENCHMARKS.md's encoder table).

    python scripts/bench_page.py                      # a 10-minute sound, 20 pages each way
    python scripts/bench_page.py --minutes 30 --pages 50 --work /tmp/bench_page
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import timeit
import wave
from pathlib import Path

import httpx
import numpy as np

from ibsearch.engine import Library
from ibsearch.server.config import ServerConfig
from ibsearch.server.runner import Server
from ibsearch.server.thumbnails import sound_peaks, waveform

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
RATE = 16000


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    return f"{model}, {os.cpu_count()} cores, load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_sound(path: Path, minutes: float) -> Path:
    samples = np.random.default_rng(0).normal(0, 0.1, int(minutes * 60 * RATE)).clip(-1, 1)
    with wave.open(str(path), "wb") as out:
        out.setparams((1, 2, RATE, 0, "NONE", "not compressed"))  # mono, 16-bit
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def best_of(run, times: int = 5) -> float:
    return min(timeit.repeat(run, number=1, repeat=times))


def bench_waveform(work: Path, minutes: float) -> None:
    sound = write_sound(work / "long.wav", minutes)
    info = {"duration": minutes * 60, "sample_rate": RATE}
    started = time.perf_counter()
    levels = sound_peaks(str(sound), sound.name, info)
    decode = time.perf_counter() - started

    def marked() -> None:
        waveform(levels, 61.0, 67.0, info["duration"]).save(io.BytesIO(), "JPEG", quality=82)

    draw = best_of(marked, 20)
    print(f"\n1. a span marked on the waveform of a {minutes:g}-minute sound (16 kHz mono WAV)")
    print(f"   decoding its peaks (each span, without kept peaks): {decode * 1000:9.1f} ms")
    print(f"   a marked picture from the kept peaks:               {draw * 1000:9.1f} ms")
    print(f"   ratio: {decode / draw:,.0f}x")


def tiny_card(work: Path) -> str:
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    write_random_checkpoint(get_config("imagebind_tiny"), work / "tiny.pth", seed=7)
    card = work / "tiny.json"
    card.write_text(json.dumps({"name": "tiny-bench", "config": "imagebind_tiny", "checkpoint": "tiny.pth"}))
    return str(card)


def bench_paging(work: Path, pages: int) -> None:
    media = work / "photos"
    media.mkdir()
    for picture in sorted((DATA / "images").iterdir()):
        shutil.copy(picture, media / picture.name)
    card, library = tiny_card(work), work / "lib"
    with Library.open(library, model=card, device="cpu", create=True) as lib:
        lib.ingest([str(media)], workers=0)
    photo = (DATA / "images" / "photo_640x480.jpg").read_bytes()
    opener = lambda: Library.open(library, model=card, device="cpu")  # noqa: E731
    with Server(opener, ServerConfig(port=0)) as server:
        server.start()
        with httpx.Client(base_url=server.url, timeout=120) as http:

            def resend() -> None:
                answer = http.post(
                    "/api/search", files={"image": ("photo.jpg", photo)}, data={"k": "2", "offset": "2"}
                )
                assert answer.status_code == 200, answer.text

            first = http.post("/api/search", files={"image": ("photo.jpg", photo)}, data={"k": "2"}).json()

            def kept() -> None:
                body = {"uploads_of": first["search_id"], "k": 2, "offset": 2}
                assert http.post("/api/search", json=body).status_code == 200

            resend()
            kept()  # both warm
            again = [best_of(resend, 1) for _ in range(pages)]
            reused = [best_of(kept, 1) for _ in range(pages)]
    print(f"\n2. the next page of a search by a 640x480 JPEG, tiny model, {pages} pages each (median)")
    print(f"   sending the photo again (upload, decode, embed): {statistics.median(again) * 1000:7.1f} ms")
    print(f"   uploads_of (the kept vector):                    {statistics.median(reused) * 1000:7.1f} ms")
    print(f"   ratio: {statistics.median(again) / statistics.median(reused):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long sound")
    parser.add_argument("--pages", type=int, default=20, help="next pages timed each way")
    parser.add_argument("--work", type=Path, default=None, help="a folder for the files (default: temporary)")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-page-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        bench_waveform(work, args.minutes)
        bench_paging(work, args.pages)
    print(machine())


if __name__ == "__main__":
    main()
