"""ImageBind's audio front end in plain torch: resampling, Kaldi-style log-mel fbank, clip sampling.

Everything here reproduces, to float32 rounding, what the reference gets from
``torchaudio.functional.resample`` (windowed-sinc, Hann window, 6 zero crossings, roll-off 0.99),
``torchaudio.compliance.kaldi.fbank`` with ImageBind's arguments, and pytorchvideo's
``ConstantClipsPerVideoSampler``. Arithmetic is done in the same order and precision as there,
so the log-mel features are the reference's very bits when both run on the same machine (the tests
hold them to ``tests/reference_audio.py`` with ``torch.equal``). Across CPUs they are not: MKL and
oneDNN pick FFT and convolution kernels per CPU, which moves near-silent mel bins by up to ~1e-3.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from functools import lru_cache

import torch
import torch.nn.functional as F

from ...errors import MediaError
from ..inputs import AUDIO_CLIPS as CLIPS_PER_FILE
from ..inputs import AUDIO_FRAMES as TARGET_FRAMES
from ..inputs import AUDIO_MEL_BINS as MEL_BINS
from ..inputs import CLIP_SECONDS
from .decode import Source, decode_audio, source_name

log = logging.getLogger(__name__)

#: Sample rate the audio tower was trained on.
SAMPLE_RATE = 16000
# Clip length and clips per file, mel bins and frames per clip (2 s at a 10 ms shift gives 198
# frames, padded to 204): the audio tower's input, defined in ..inputs.
#: Normalization constants of the reference (AudioSet statistics).
FBANK_MEAN = -4.268
FBANK_STD = 9.138

_WINDOW = 400  # 25 ms at 16 kHz
_SHIFT = 160  # 10 ms
_FFT = 512  # window rounded up to a power of two
_PREEMPHASIS = 0.97
_LOW_HZ = 20.0
_HIGH_HZ = SAMPLE_RATE / 2
#: Fewest samples (at 16 kHz) that give one fbank frame.
MIN_SAMPLES = _WINDOW

_LOWPASS_WIDTH = 6
_ROLLOFF = 0.99


# --------------------------------------------------------------------------------------- resampling


# Filter banks above this many bytes are built and applied a slice of phases at a time, so that odd
# rates (16001 -> 16000 Hz needs 16,000 filters of 16,015 taps) do not need gigabytes.
_KERNEL_BYTES = 32 * 2**20


def _filter_width(orig: int, new: int) -> int:
    """Input samples of context on each side of an output sample (rates already gcd-reduced)."""
    return math.ceil(_LOWPASS_WIDTH * orig / (min(orig, new) * _ROLLOFF))


@lru_cache(maxsize=4)
def _sinc_kernel(orig: int, new: int, dtype: torch.dtype, first: int, last: int) -> torch.Tensor:
    """Windowed-sinc filters for output phases ``first..last-1`` of ``orig`` -> ``new`` (gcd-reduced).

    Returns ``(last - first, 1, 2 * width + orig)``: one FIR filter per output phase, tap ``i``
    weighting input sample ``block * orig - width + i``. Computed in ``dtype`` like the reference.
    """
    cutoff = min(orig, new) * _ROLLOFF
    width = _filter_width(orig, new)
    taps = torch.arange(-width, width + orig, dtype=dtype) / orig
    phase = torch.arange(0, -new, -1, dtype=dtype)[first:last] / new
    # Time of each tap relative to each output sample, in units of the filter's zero crossings.
    t = (phase[:, None, None] + taps[None, None, :]) * cutoff
    t = t.clamp(-_LOWPASS_WIDTH, _LOWPASS_WIDTH)
    hann = torch.cos(t * math.pi / _LOWPASS_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=dtype), t.sin() / t)
    return sinc * (hann * (cutoff / orig))


def resampled_length(n_samples: int, orig_freq: int, new_freq: int) -> int:
    """Number of samples that :func:`resample` returns for ``n_samples`` input samples."""
    if orig_freq == new_freq:
        return n_samples
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    # The reference takes the ceil of a float32 tensor made from the float quotient: from about 2^18
    # output samples (16 s) a quotient just above a whole number rounds down to it (722,562 samples
    # at 44.1 kHz keep 262,154, not 262,155), which moves the later clips by a sample. The length is
    # a slice of the filter's output, which has new * (n // orig + 1) samples.
    rounded = float(torch.tensor(new * n_samples / orig, dtype=torch.float32))
    return min(math.ceil(rounded), new * (n_samples // orig + 1))


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Band-limited resampling of ``waveform`` ``(..., T)`` from ``orig_freq`` to ``new_freq`` Hz.

    Same filter, output length and float32 arithmetic as ``torchaudio.functional.resample`` with
    its defaults. Returns ``(..., resampled_length(T, orig_freq, new_freq))`` in the input's dtype;
    like the reference, a multi-channel result is a (non-contiguous) view into a slightly longer
    buffer, which fixes the summation order of later reductions over it.
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_freq} and {new_freq}")
    if orig_freq == new_freq:
        return waveform
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    width = _filter_width(orig, new)
    n_in = waveform.shape[-1]
    flat = waveform.reshape(-1, n_in)
    # Output block b (samples b * new ... b * new + new - 1) reads inputs b * orig - width onwards.
    padded = F.pad(flat, (width, width + orig))[:, None, :]
    taps = 2 * width + orig
    rows = max(1, min(new, _KERNEL_BYTES // (taps * waveform.element_size())))
    if rows == new:
        out = F.conv1d(padded, _sinc_kernel(orig, new, waveform.dtype, 0, new), stride=orig)
    else:
        out = padded.new_empty(flat.shape[0], new, n_in // orig + 1)
        for p in range(0, new, rows):
            q = min(p + rows, new)
            out[:, p:q] = F.conv1d(
                padded, _sinc_kernel.__wrapped__(orig, new, waveform.dtype, p, q), stride=orig
            )
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    n_out = resampled_length(n_in, orig_freq, new_freq)
    return out[:, :n_out].reshape(*waveform.shape[:-1], n_out)


# ------------------------------------------------------------------------------------------ fbank


@lru_cache(maxsize=1)
def _mel_filters() -> torch.Tensor:
    """Triangular HTK-mel filters, ``(FFT // 2 + 1, MEL_BINS)`` float32 (last FFT bin unused)."""

    def to_mel(hz: float) -> float:
        return 1127.0 * math.log(1.0 + hz / 700.0)

    mel_lo, mel_hi = to_mel(_LOW_HZ), to_mel(_HIGH_HZ)
    step = (mel_hi - mel_lo) / (MEL_BINS + 1)
    index = torch.arange(MEL_BINS)[:, None]
    left = mel_lo + index * step
    centre = mel_lo + (index + 1.0) * step
    right = mel_lo + (index + 2.0) * step
    bin_hz = SAMPLE_RATE / _FFT * torch.arange(float(_FFT // 2))
    mel = (1127.0 * (1.0 + bin_hz / 700.0).log())[None, :]
    rising = (mel - left) / (centre - left)
    falling = (right - mel) / (right - centre)
    tri = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return F.pad(tri, (0, 1)).T


@lru_cache(maxsize=1)
def _hann() -> torch.Tensor:
    return torch.hann_window(_WINDOW, periodic=False, dtype=torch.float32)


def log_mel_fbank(samples: torch.Tensor) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbank of one 16 kHz channel ``(N,)``, ``N >= 400``.

    25 ms Hann windows every 10 ms (no partial frames), per-frame DC removal, pre-emphasis 0.97,
    512-point power spectrum, 128 HTK-mel bins over 20-8000 Hz, natural log floored at float32 eps.
    Returns ``(frames, 128)`` float32 with ``frames = 1 + (N - 400) // 160``.
    """
    if samples.ndim != 1 or samples.shape[0] < _WINDOW:
        raise ValueError(f"need a 1-d signal of at least {_WINDOW} samples, got shape {tuple(samples.shape)}")
    frames = samples.unfold(0, _WINDOW, _SHIFT)
    frames = frames - frames.mean(dim=1, keepdim=True)
    # Pre-emphasis repeats the first sample of each frame as its own predecessor.
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - _PREEMPHASIS * previous
    frames = frames * _hann()
    frames = F.pad(frames, (0, _FFT - _WINDOW))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    energies = torch.mm(power, _mel_filters())
    eps = torch.tensor(torch.finfo(torch.float32).eps, dtype=energies.dtype)
    return torch.maximum(energies, eps).log()


# ---------------------------------------------------------------------------------- clip sampling


def clip_times(duration: float, clip_seconds: int, clips: int) -> list[tuple[Fraction, Fraction]]:
    """Start and end (seconds, exact fractions) of the evenly spaced clips ImageBind takes from media.

    pytorchvideo's constant clip sampler, as the reference uses it for audio and video: clip ``k``
    starts at ``k * (duration - clip_seconds) / (clips - 1)`` (0 for media shorter than a clip), where
    ``duration - clip_seconds`` is computed in float and only then made an exact fraction.
    """
    step = Fraction(max(duration - clip_seconds, 0)) / max(clips - 1, 1)
    return [(step * k, step * k + clip_seconds) for k in range(clips)]


def clip_spans(
    n_samples: int,
    sample_rate: int = SAMPLE_RATE,
    clip_seconds: int = CLIP_SECONDS,
    clips: int = CLIPS_PER_FILE,
) -> list[tuple[int, int]]:
    """Sample ranges ``[start, stop)`` of the clips of :func:`clip_times`, truncated to samples.

    As in the reference, a 5.3 s file at 16 kHz gives ``(0, 32000), (26399, 58399), (52799, 84799)``.
    ``stop`` may exceed ``n_samples`` for files shorter than one clip.
    """
    times = clip_times(n_samples / sample_rate, clip_seconds, clips)
    return [(int(begin * sample_rate), int(end * sample_rate)) for begin, end in times]


# ------------------------------------------------------------------------------------ the pipeline


def clip_features(clip: torch.Tensor) -> torch.Tensor:
    """``(C, n)`` 16 kHz clip -> normalized ``(1, 128, 204)`` features; subtracts the mean IN PLACE."""
    # The reference subtracts the mean over all channels from a view of the shared waveform, so
    # later overlapping clips see the already-shifted samples; reproduce that on purpose.
    clip -= clip.mean()
    mel = log_mel_fbank(clip[0]).T
    frames = mel.shape[1]
    if abs(TARGET_FRAMES - frames) / frames > 0.2:
        log.debug("audio clip has %d fbank frames, padded/cropped to %d", frames, TARGET_FRAMES)
    if frames < TARGET_FRAMES:
        mel = F.pad(mel, (0, TARGET_FRAMES - frames))
    else:
        mel = mel[:, :TARGET_FRAMES]
    mean = torch.tensor(FBANK_MEAN, dtype=torch.float32)
    std = torch.tensor(FBANK_STD, dtype=torch.float32)
    return ((mel - mean) / std)[None]


def audio_features(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """ImageBind audio input from a decoded waveform.

    ``waveform`` is float32 ``(channels, samples)`` at ``sample_rate`` Hz; it must give at least
    :data:`MIN_SAMPLES` samples at 16 kHz (see :func:`resampled_length`). It may be modified in
    place. Returns ``(3, 1, 128, 204)`` float32: three 2-second clips of normalized log-mel features
    computed from channel 0 (after subtracting each clip's mean over all channels).
    """
    if waveform.ndim != 2:
        raise ValueError(f"waveform must be (channels, samples), got shape {tuple(waveform.shape)}")
    waveform = waveform.to(torch.float32)
    # The whole file is resampled, as in the reference: filtering only the clip windows is
    # cheaper, but oneDNN picks its convolution algorithm by input length, and the resulting
    # 1e-7 waveform differences grow to ~5e-4 in the near-empty mel bands of upsampled audio.
    waveform = resample(waveform, sample_rate, SAMPLE_RATE)
    n = waveform.shape[1]
    if n < MIN_SAMPLES:
        raise ValueError(f"waveform gives {n} samples at 16 kHz, need at least {MIN_SAMPLES}")
    return torch.stack([clip_features(waveform[:, a:b]) for a, b in clip_spans(n)])


def load_audio(src: Source, *, name: str | None = None) -> torch.Tensor:
    """One sound file (or a video with sound; path, bytes or binary file) -> ``(3, 1, 128, 204)``.

    Raises :class:`MediaError` if it cannot be decoded or lasts less than one 25 ms window.
    """
    name = name or source_name(src)
    samples, rate = decode_audio(src, name=name)
    needed = resampled_length(samples.shape[1], rate, SAMPLE_RATE)
    if needed < MIN_SAMPLES:
        ms = math.floor(10_000 * samples.shape[1] / rate) / 10
        raise MediaError(name, f"too short: {ms:g} ms, need at least 25 ms of sound")
    features = audio_features(torch.from_numpy(samples), rate)
    if not bool(torch.isfinite(features).all()):
        raise MediaError(name, "audio features are not finite (damaged samples?)")
    return features
