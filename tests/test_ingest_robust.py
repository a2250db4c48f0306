"""Robustness: hostile files, SIGKILL mid-ingest, and queries from another process during an ingest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import DATA, run_json
from PIL import Image

from ibsearch.cli import cli
from ibsearch.engine import Library


def float_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    """A mono IEEE-float WAV (format 3), written by hand so NaNs survive."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    riff = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)


def test_hostile_folder_ingests_every_good_file_and_reports_every_bad_one(tmp_path, lib_args):
    root = tmp_path / "hostile"
    root.mkdir()
    good = []
    for name in ["photo_640x480.jpg", "tiny_7x5.png"]:
        shutil.copy(DATA / "images" / name, root / name)
        good.append(root / name)
    shutil.copy(DATA / "audio" / "mix_44100_mono_s24_0p37s.wav", root / "short_but_fine.wav")
    good.append(root / "short_but_fine.wav")
    (root / "dir.jpg").mkdir()  # a directory named like a file, with a good file inside
    shutil.copy(DATA / "images" / "photo_320x240.webp", root / "dir.jpg" / "inside.webp")
    good.append(root / "dir.jpg" / "inside.webp")
    odd = os.fsencode(str(root)) + b"/caf\xe9.png"  # a non-UTF-8 file name
    shutil.copy(DATA / "images" / "palette_256x192.gif", odd)
    good.append(Path(os.fsdecode(odd)))

    bad = {}
    for src in sorted((DATA / "bad").iterdir()):
        shutil.copy(src, root / src.name)
        bad[root / src.name] = None
    (root / "text.png").write_text("I am not a picture")
    bad[root / "text.png"] = "content is text"
    Image.new("1", (30000, 30000)).save(root / "bomb.png")  # 900 Mpx, a few hundred KB
    bad[root / "bomb.png"] = "pixels"
    float_wav(root / "one_sample.wav", np.zeros(1))
    bad[root / "one_sample.wav"] = "short"
    nan = np.sin(np.linspace(0, 100, 16000))
    nan[100:200] = np.nan
    float_wav(root / "nan.wav", nan)
    bad[root / "nan.wav"] = None
    os.mkfifo(root / "pipe.wav")  # must be skipped, never opened

    summary = run_json("ingest", root, *lib_args, "--workers", "2")  # through the worker pool
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert summary["added"] == len(good), summary
    assert set(failed) == {str(p) for p in bad}, failed
    for path, fragment in bad.items():
        assert failed[str(path)]
        if fragment:
            assert fragment in failed[str(path)], (path, failed[str(path)])
    lib = Library.open(lib_args[1], model=lib_args[3], device="cpu")
    try:
        stored = sorted(lib.store.files.paths_under(""))
        assert stored == sorted(str(p) for p in good)
        for path in stored:
            for vector in lib.store.vectors.of_file(path):
                assert np.isfinite(vector.vector).all()
        assert {e.path for e in lib.store.errors.latest()} == {str(p) for p in bad}
    finally:
        lib.close()
    # Bad files are remembered: an unchanged rerun neither retries nor forgets them.
    again = run_json("ingest", root, *lib_args)
    assert again["encoded"] == 0 and again["failed"] == [] and again["known_bad"] == len(bad)
    assert {e["path"] for e in run_json("info", "--errors", *lib_args)["recent_errors"]} == {
        str(p) for p in bad
    }


def many_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    base = np.asarray(Image.open(DATA / "images" / "photo_640x480.jpg").convert("RGB").resize((96, 72)))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        noisy = np.clip(base.astype(int) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(noisy).save(path)
        paths.append(path)
    return paths


def ingest_process(root: Path, lib_args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ibsearch", "ingest", str(root), *lib_args, "--workers", "0", "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def test_sigkill_at_any_point_leaves_a_library_that_opens_checks_and_resumes(tmp_path, lib_args):
    files = many_images(tmp_path / "many", 80)
    for delay in [0.5, 3.0, 4.5, 6.0, 8.0]:
        proc = ingest_process(tmp_path / "many", lib_args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (tmp_path / "lib" / "ibsearch.db").exists():
            result = CliRunner().invoke(cli, ["check", *lib_args])
            assert result.exit_code == 0, result.output
    proc = ingest_process(tmp_path / "many", lib_args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["failed"] == []
    lib = Library.open(lib_args[1], model=lib_args[3], device="cpu")
    try:
        assert sorted(lib.store.files.paths_under("")) == sorted(str(p) for p in files)
        assert lib.store.vectors.counts() == {"vision": len(files)}
        assert lib.index("vision").ntotal == len(files)
    finally:
        lib.close()
    assert run_json("check", *lib_args)["ok"] is True


def test_queries_from_another_process_succeed_during_an_ingest(tmp_path, lib_args, media_dir):
    run_json("ingest", media_dir, *lib_args)
    many_images(tmp_path / "more", 60)
    proc = ingest_process(tmp_path / "more", lib_args)
    like = media_dir / "sounds" / "mix_16000_mono_s16_5p3s.wav"
    answered = 0
    try:
        while proc.poll() is None and answered < 20:
            query = [sys.executable, "-m", "ibsearch", "query", "--like", str(like), "--include-like"]
            query += ["--target", "audio"]
            query += [*lib_args, "--json"]
            done = subprocess.run(query, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
            assert done.returncode == 0, done.stderr.decode()
            hits = json.loads(done.stdout)
            assert hits and hits[0]["path"] == str(like)
            answered += 1
    finally:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert answered >= 1
