"""Timestamped segments: long recordings are indexed as 6 s windows and found by their parts."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import run_json

from ibsearch.cli import cli
from ibsearch.encoder import preprocess
from ibsearch.encoder.media import audio_dsp
from ibsearch.encoder.media import audio_segments as segments
from ibsearch.encoder.media.decode import decode_audio

RATE = 16000


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def three_parts(seconds: float = 10.0) -> list[np.ndarray]:
    """Three clearly different sounds: a low hum, broadband noise bursts, a high warble."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(3)
    hum = 0.5 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * 220 * t)
    noise = 0.4 * rng.normal(size=t.shape) * (np.sin(2 * np.pi * 2 * t) > 0)
    warble = 0.5 * np.sin(2 * np.pi * (3000 + 800 * np.sin(2 * np.pi * 5 * t)) * t)
    return [hum, noise, warble]


def test_a_segment_is_the_reference_pipeline_applied_to_that_stretch(tmp_path):
    parts = three_parts()
    path = write_wav(tmp_path / "long.wav", np.concatenate(parts))
    segs = list(segments.stream_segments(str(path)))
    assert [(s.start, s.end) for s in segs] == [(float(t), float(t + 6)) for t in range(0, 25, 3)]
    samples, rate = decode_audio(str(path))
    for seg in segs[::3]:
        a, b = int(seg.start * rate), int(seg.end * rate)
        expected = audio_dsp.audio_features(torch.from_numpy(samples[:, a:b].copy()), rate)
        assert torch.equal(seg.features, expected)


def test_a_long_file_level_vector_from_clip_windows_matches_the_whole_file_pipeline(tmp_path):
    samples = np.concatenate(three_parts())
    path = write_wav(tmp_path / "long.wav", samples, rate=22050)  # resampled, with a 441-sample grid
    whole = preprocess.load("audio", str(path))
    windows = segments.long_file_features(str(path), len(samples) / 22050)
    assert (whole - windows).abs().max().item() < 1e-3


def test_the_middle_part_finds_the_segment_that_holds_it(tmp_path, tiny_card):
    hum, noise, warble = three_parts()
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "recording.wav", np.concatenate([hum, noise, warble]))
    query = write_wav(tmp_path / "middle.wav", noise)
    lib = ["--library", tmp_path / "lib", "--model", tiny_card, "--device", "cpu", "--precision", "fp32"]
    summary = run_json("ingest", media, *lib)
    assert summary["added"] == 1 and summary["encoded"] == 1 + 9
    info = run_json("info", *lib)
    assert info["vectors"] == {"audio": 1, "audio.segments": 9}
    hits = run_json("query", "--audio", query, "--target", "audio", "--segments", *lib)
    assert len(hits) == 1 and hits[0]["path"] == str(media / "recording.wav")
    assert hits[0]["start"] < 20 and hits[0]["end"] > 10  # overlaps the middle part
    assert 10 <= (hits[0]["start"] + hits[0]["end"]) / 2 <= 20
    plain = run_json("query", "--audio", query, "--target", "audio", *lib)
    assert "start" not in plain[0]
    table = CliRunner().invoke(cli, ["query", "--audio", str(query), "--segments", *map(str, lib)])
    assert table.exit_code == 0 and "[00:" in table.output


@pytest.mark.parametrize("seconds", [0.37, 5.3])
def test_short_media_get_one_whole_file_segment(tmp_path, tiny_card, seconds):
    t = np.arange(int(seconds * RATE)) / RATE
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "short.wav", 0.3 * np.sin(2 * np.pi * 440 * t))
    lib = ["--library", tmp_path / "lib", "--model", tiny_card, "--device", "cpu"]
    run_json("ingest", media, *lib)
    hits = run_json("query", "--audio", media / "short.wav", "--segments", *lib)
    assert hits[0]["start"] == 0.0 and hits[0]["end"] == pytest.approx(seconds, abs=0.01)
