"""An ingest as a person sees it: the real command in a pseudo-terminal, its output replayed on a small
terminal emulator, and the screen read the way a person reads it, while it runs and once it is done."""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
import wave
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).parent / "data"
COLUMNS = 110
_CSI = re.compile(r"\x1b\[([?0-9;]*)([@-~])")
_ETA = re.compile(r"about (?:(\d+):)?(\d\d):(\d\d) left")


@dataclass
class Screen:
    """Enough of a VT100 for what progress displays write: carriage return, line feed, backspace,
    erase in line and display, cursor up, down and to a column; lines wrap at ``columns``. Rows are
    never scrolled away, so the screen is also the scrollback."""

    columns: int
    rows: list[list[str]] = field(default_factory=lambda: [[]])
    row: int = 0
    col: int = 0

    def feed(self, text: str) -> None:
        at = 0
        while at < len(text):
            control = _CSI.match(text, at)
            if control:
                self._csi(control.group(1), control.group(2))
                at = control.end()
                continue
            self._char(text[at])
            at += 1

    def _char(self, ch: str) -> None:
        if ch == "\r":
            self.col = 0
        elif ch == "\n":
            self._move(self.row + 1)
        elif ch == "\b":
            self.col = max(0, self.col - 1)
        elif ch >= " ":
            if self.col >= self.columns:
                self.col = 0
                self._move(self.row + 1)
            line = self.rows[self.row]
            line.extend(" " * (self.col + 1 - len(line)))
            line[self.col] = ch
            self.col += 1

    def _move(self, row: int) -> None:
        self.row = max(0, row)
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _csi(self, params: str, final: str) -> None:
        n = int(params) if params.isdigit() else None
        line = self.rows[self.row]
        if final == "A":
            self._move(self.row - (n or 1))
        elif final == "B":
            self._move(self.row + (n or 1))
        elif final == "G":
            self.col = (n or 1) - 1
        elif final == "K":
            if n == 2:
                line.clear()
            elif n == 1:
                line[: self.col + 1] = " " * min(len(line), self.col + 1)
            else:
                del line[self.col :]
        elif final == "J" and n in (None, 0):
            del line[self.col :]
            del self.rows[self.row + 1 :]

    def line(self, row: int | None = None) -> str:
        return "".join(self.rows[self.row if row is None else row]).rstrip()

    def text(self) -> list[str]:
        """The screen's lines, empty ones left out."""
        return [line for line in ("".join(r).rstrip() for r in self.rows) if line]


@dataclass
class Frame:
    at: float  # time.monotonic() when the screen looked like this
    status: str  # the line under the cursor: the progress display


def run_in_terminal(args: list[str], columns: int = COLUMNS) -> tuple[int, Screen, list[Frame]]:
    """Run ``args`` with a pseudo-terminal as its stdin, stdout and stderr; the final screen and the
    status line after each chunk of output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": str(columns)}
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen, frames = Screen(columns), []
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            screen.feed(decoder.decode(chunk))
            frames.append(Frame(time.monotonic(), screen.line()))
        return proc.wait(timeout=60), screen, frames
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def write_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    """A sweeping tone with a little noise: sound the audio tower has something to say about (written a
    minute at a time, so an hour of it takes little memory)."""
    rng = np.random.default_rng(0)
    total = int(seconds * rate)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        for start in range(0, total, 60 * rate):
            t = np.arange(start, min(total, start + 60 * rate)) / rate
            signal = 0.3 * np.sin(2 * np.pi * (220 + 200 * np.sin(t / 7)) * t) + 0.05 * rng.standard_normal(
                t.size
            )
            out.writeframes((signal * 32767).astype("<i2").tobytes())


def heavy_sound_card(folder: Path) -> str:
    """The tiny model with a wider, deeper audio tower: a window's encoding then costs far more than a
    file's opening and decoding, as with ImageBind-Huge (the tiny tower's windows cost less)."""
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    config = replace(get_config("imagebind_tiny"), audio_embed_dim=256, audio_num_blocks=6, audio_num_heads=4)
    write_random_checkpoint(config, folder / "heavy.pth", seed=7)
    card = folder / "heavy.json"
    card.write_text(
        json.dumps({"name": "heavy-sound", "config": config.to_dict(), "checkpoint": "heavy.pth"})
    )
    return str(card)


def ingest_long_enough(folder: Path, tmp_path: Path, card: str) -> tuple[int, Screen, list[Frame]]:
    """The ingest of ``folder`` with its recording ``long.wav``, made long enough to judge the time left
    on this machine: where the status line was up under 20 s (a fast CPU), the recording is lengthened
    in proportion and the folder ingested again into a new library; at most three runs, an hour of sound."""
    sound = 150.0
    for attempt in range(3):
        write_wav(folder / "long.wav", sound)
        # Model calls of 4 inputs: the display moves every few seconds, even on a busy machine.
        args = ingest_args(folder, tmp_path / f"lib{attempt}", card, "--batch-size", "4")
        code, screen, frames = run_in_terminal(args)
        shown = [f.at for f in frames if f.status.startswith("ingest")]
        up = max(shown) - min(shown) if shown else 0.0
        if code != 0 or up >= 20.0 or sound >= 3600.0:
            break
        sound = min(3600.0, sound * 40.0 / max(up, 1.0))
    return code, screen, frames


def write_palette_png(path: Path) -> None:
    """A palette picture with two partly transparent entries: Pillow warns ("Palette images with
    Transparency expressed in bytes should be converted to RGBA images") when it converts it to RGB."""
    img = Image.new("P", (64, 48), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.save(path, transparency=b"\x00\x80")


def ingest_args(folder: Path, library: Path, card: str, *more: str) -> list[str]:
    return [sys.executable, "-m", "ibsearch", "ingest", str(folder), "--library", str(library),
            "--model", card, "--device", "cpu", *more]  # fmt: skip


def seconds(match: re.Match[str]) -> int:
    hours, minutes, secs = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs)


def test_library_warnings_are_counted_once_per_kind_under_v(tmp_path, tiny_card):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(3):
        write_palette_png(folder / f"palette_{i}.png")
    quiet = subprocess.run(ingest_args(folder, tmp_path / "a", tiny_card), capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert "Warning" not in quiet.stderr and "Palette" not in quiet.stderr
    loud = subprocess.run(
        ingest_args(folder, tmp_path / "b", tiny_card, "-v"), capture_output=True, text=True
    )
    assert loud.returncode == 0, loud.stderr
    said = [line for line in loud.stderr.splitlines() if "Palette images with Transparency" in line]
    assert said == [
        "warning from PIL (3 times): UserWarning: Palette images with Transparency expressed in bytes "
        "should be converted to RGBA images"
    ]
    assert loud.stdout.splitlines()[0].startswith("added 3,")  # the summary comes after the warnings
    # Decoded in worker processes (a machine with cores to spare), the warnings are counted all the same.
    pooled = subprocess.run(
        ingest_args(folder, tmp_path / "c", tiny_card, "-v", "--workers", "2"), capture_output=True, text=True
    )
    assert pooled.returncode == 0, pooled.stderr
    assert [line for line in pooled.stderr.splitlines() if "Palette" in line] == said, pooled.stderr


def test_an_ingest_in_a_terminal_names_the_file_estimates_the_time_left_and_leaves_only_the_summary(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    card = heavy_sound_card(tmp_path)
    for i in range(10):
        shutil.copy(DATA / "audio" / "mix_16000_mono_s16_5p3s.wav", folder / f"short_{i:02d}.wav")
    write_palette_png(folder / "palette_0.png")
    write_palette_png(folder / "palette_1.png")
    (folder / "data.xyz").write_bytes(b"not media")
    shutil.copy(DATA / "bad" / "truncated.jpg", folder / "broken.jpg")
    # A first ingest elsewhere hashes the checkpoint (its line is gone once hashed, none is left stuck
    # at 0.00B): the next one finds its hash remembered.
    code, first, _ = run_in_terminal(ingest_args(folder / "short_00.wav", tmp_path / "other", card))
    assert code == 0 and first.text()[0].startswith("added 1,"), first.text()
    assert not [line for line in first.text() if re.search(r"sha256|\d%|B/s|left", line)], first.text()

    # A long recording (most of the work, one file of 13) among short ones.
    code, screen, frames = ingest_long_enough(folder, tmp_path, card)
    lines = screen.text()
    assert code == 0, "\n".join(lines)

    # Once done, only the summary is left: no warning lines, no progress line or stuck hashing bar.
    assert not [line for line in lines if "Warning" in line or "warnings.warn" in line], lines
    assert not [
        line for line in lines if re.search(r"sha256|split checkpoint|\d%|about .* left|^ingest", line)
    ], lines
    assert lines[0].startswith("added 13, updated 0, unchanged 0, removed 0, failed 1"), lines
    assert "broken.jpg" in "\n".join(lines)
    # The summary ends with what was skipped and what failed, by type.
    assert lines[-2:] == ["skipped 1: .xyz 1", "failed 1: .jpg 1"], lines

    # While it ran, the status line named the file under way and estimated the time left.
    shown = [f for f in frames if f.status.startswith("ingest")]
    assert any("short_" in f.status for f in shown) and any("long.wav" in f.status for f in shown), shown
    end = max(f.at for f in shown)  # the last moment the line was up: the work was done then
    estimates = [(seconds(m), end - f.at, f.status) for f in shown if (m := _ETA.search(f.status))]
    # Judged from once the long file is under way (a count of files said "<00:01" there, with most of
    # the work still to do), while at least 5 s remain (the last model call's length is noise then).
    # Other jobs on a shared machine swing its speed within a minute: a fifth may be off.
    judged = [(eta, real, line) for eta, real, line in estimates if real >= 5.0 and "long.wav" in line]
    assert len(judged) >= 5, (estimates, end - min(f.at for f in shown))
    off = [(eta, round(real, 1)) for eta, real, _ in judged if not real / 2 <= eta <= real * 2]
    assert len(off) <= len(judged) // 5, (off, [(eta, round(real, 1)) for eta, real, _ in judged])
