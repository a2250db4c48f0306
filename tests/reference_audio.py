"""The reference's audio steps, written out plainly: the oracle ibsearch's audio features are held to.

ImageBind's ``load_and_transform_audio_data`` after loading a file: ``torchaudio.functional.resample``
with its defaults (windowed sinc, Hann window, 6 zero crossings, roll-off 0.99), three 2-second clips
of pytorchvideo's constant clip sampler, each clip's mean over all channels subtracted in place on
the shared waveform, ``torchaudio.compliance.kaldi.fbank`` with ImageBind's arguments (channel 0,
25 ms Hann frames every 10 ms, DC removal, pre-emphasis 0.97, 512-point power spectrum, 128 HTK-mel
bins over 20-8000 Hz, log floored at float32 eps), zero-padded to 204 frames, normalized.

torchaudio cannot be imported next to the CPU torch wheel, and fixtures computed from it on one
machine are not its bits on another (MKL and oneDNN pick FFT and convolution kernels by CPU). So the
tests compute the reference here, on the machine they run on, with the same torch calls in the same
order and precision as the reference makes them (one convolution over the whole file, frames as a
strided view, float32 throughout, the output length rounded through a float32 tensor), and without
ibsearch's own shortcuts (cached filters, filters applied in slices). Written from the formulas, not
copied; checked bit for bit against torchaudio 2.11's pure-Python parts on torch 2.13 (see
tests/fixtures/README.md). ``python tests/reference_audio.py`` prints, per test WAV, whether ibsearch
equals this oracle and how far it is from the committed fixture (JSON), for runs under other kernels.
"""

from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

RATE = 16000
ZERO_CROSSINGS = 6
ROLLOFF = 0.99
MEL_BINS = 128
FRAMES = 204
MEAN, STD = -4.268, 9.138


def sinc_resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """``torchaudio.functional.resample(waveform, orig_freq, new_freq)``: (C, T) -> (C, T')."""
    if orig_freq == new_freq:
        return waveform
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    cutoff = min(orig, new) * ROLLOFF
    width = math.ceil(ZERO_CROSSINGS * orig / cutoff)
    # Filter of output phase p, tap i: a sinc at time (i - width) / orig - p / new, in zero crossings.
    t = torch.arange(0, -new, -1, dtype=waveform.dtype)[:, None, None] / new
    t = (t + torch.arange(-width, width + orig, dtype=waveform.dtype)[None, None] / orig) * cutoff
    t = t.clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    hann = torch.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t) * (hann * (cutoff / orig))
    channels, length = waveform.shape
    padded = F.pad(waveform, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig).transpose(1, 2).reshape(channels, -1)
    # The reference rounds the output length through a float32 tensor, not a Python float.
    n_out = int(torch.ceil(torch.as_tensor(new * length / orig)).long())
    return out[..., :n_out]


def kaldi_fbank(signal: torch.Tensor) -> torch.Tensor:
    """``kaldi.fbank`` of channel 0 with ImageBind's arguments: (C, N) at 16 kHz -> (frames, 128)."""
    x = signal[0]
    size, shift, fft = 400, 160, 512
    frames = x.as_strided((1 + (x.shape[0] - size) // shift, size), (shift * x.stride(0), x.stride(0)))
    frames = frames - frames.mean(dim=1).unsqueeze(1)
    before = F.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
    frames = frames - 0.97 * before[:, :-1]
    frames = frames * torch.hann_window(size, periodic=False, dtype=frames.dtype)
    frames = F.pad(frames.unsqueeze(0), (0, fft - size), mode="constant", value=0).squeeze(0)
    power = torch.fft.rfft(frames).abs().pow(2.0)
    # Triangular filters, evenly spaced on the HTK mel scale 1127 ln(1 + f / 700) from 20 to 8000 Hz.
    lo, hi = 1127.0 * math.log(1.0 + 20 / 700.0), 1127.0 * math.log(1.0 + 8000 / 700.0)
    step = (hi - lo) / (MEL_BINS + 1)
    k = torch.arange(MEL_BINS).unsqueeze(1)
    left, centre, right = lo + k * step, lo + (k + 1.0) * step, lo + (k + 2.0) * step
    mel = (1127.0 * (1.0 + (RATE / fft) * torch.arange(fft // 2) / 700.0).log()).unsqueeze(0)
    up, down = (mel - left) / (centre - left), (right - mel) / (right - centre)
    banks = F.pad(torch.max(torch.zeros(1), torch.min(up, down)), (0, 1), value=0)
    energies = torch.mm(power, banks.T)
    return torch.max(energies, torch.tensor(torch.finfo(torch.float32).eps)).log()


def audio_input(waveform: torch.Tensor, rate: int) -> torch.Tensor:
    """The reference's audio input from a loaded (C, T) float32 waveform at ``rate``: (3, 1, 128, 204)."""
    waveform = sinc_resample(waveform, rate, RATE)
    step = Fraction(max(waveform.size(1) / RATE - 2, 0)) / 2
    clips = []
    for start in (0 * step, 1 * step, 2 * step):
        clip = waveform[:, int(start * RATE) : int((start + 2) * RATE)]
        clip -= clip.mean()  # in place, on the shared waveform: later overlapping clips see it
        mel = kaldi_fbank(clip).transpose(0, 1)
        n = mel.shape[1]
        mel = F.pad(mel, (0, FRAMES - n)) if n < FRAMES else mel[:, :FRAMES]
        mean, std = torch.tensor(MEAN), torch.tensor(STD)
        clips.append((mel.unsqueeze(0) - mean) / std)
    return torch.stack(clips)


def parity(data: Path, fixture: Path) -> dict[str, tuple[bool, float, float]]:
    """Per WAV of ``fixture``: whether ibsearch's features equal this oracle's bit for bit, and the
    largest |ibsearch - fixture| over all values and over bins at or above the AudioSet mean (>= 0)."""
    from ibsearch.encoder import preprocess
    from ibsearch.encoder.media.decode import decode_audio

    report = {}
    with np.load(fixture) as expected:
        for name in sorted(expected.files):
            samples, rate = decode_audio(data / name, name=name)
            ours = preprocess.load("audio", data / name)
            oracle = audio_input(torch.from_numpy(samples).to(torch.float32), rate)
            diff = np.abs(ours.numpy() - expected[name])
            loud = float(diff[expected[name] >= 0].max())
            report[name] = (torch.equal(ours, oracle), float(diff.max()), loud)
    return report


if __name__ == "__main__":
    tests = Path(__file__).parent
    json.dump(parity(tests / "data" / "audio", tests / "fixtures" / "audio_preprocess.npz"), sys.stdout)
