"""PyAV decoding: every common format, native rate and layout, torchaudio.load's PCM scaling."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from ibsearch.encoder.media.decode import decode_audio
from ibsearch.errors import MediaError, UsageError

DATA = Path(__file__).parent / "data"
SOURCE_WAV = DATA / "audio" / "mix_16000_mono_s16_5p3s.wav"


def _pcm_wav(ints: np.ndarray, width: int, rate: int = 8000) -> bytes:
    """A PCM WAV holding ``ints`` (channels, n) as ``width``-byte samples, via the stdlib writer."""
    channels, n = ints.shape
    frames = ints.T.reshape(-1)
    if width == 1:
        raw = frames.astype(np.uint8).tobytes()
    elif width == 3:
        le = frames.astype("<i4").view(np.uint8).reshape(-1, 4)
        raw = le[:, :3].tobytes()
    else:
        raw = frames.astype(f"<i{width}").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("width", "values", "expected"),
    [
        (1, [0, 64, 128, 255], [-1.0, -0.5, 0.0, 127 / 128]),
        (2, [-32768, -16384, 0, 32767], [-1.0, -0.5, 0.0, 32767 / 32768]),
        (3, [-(2**23), 2**22, 1, 2**23 - 1], [-1.0, 0.5, 2.0**-23, (2**23 - 1) / 2**23]),
        (4, [-(2**31), 2**30, 0, 2**31 - 1], [-1.0, 0.5, 0.0, np.float32(2**31 - 1) / np.float32(2**31)]),
    ],
)
def test_integer_pcm_wav_is_scaled_like_torchaudio_load(
    width: int, values: list[int], expected: list[float]
) -> None:
    ints = np.array([values, values[::-1]], dtype=np.int64)
    samples, rate = decode_audio(_pcm_wav(ints, width))
    assert rate == 8000
    assert samples.dtype == np.float32 and samples.shape == (2, 4)
    assert samples.flags.c_contiguous
    np.testing.assert_array_equal(samples[0], np.array(expected, dtype=np.float32))
    np.testing.assert_array_equal(samples[1], np.array(expected[::-1], dtype=np.float32))


def test_float_wav_passes_samples_through_unchanged() -> None:
    samples, rate = decode_audio(DATA / "audio" / "mix_48000_stereo_f32_0p37s.wav")
    assert rate == 48000 and samples.shape == (2, 17760)
    raw = (DATA / "audio" / "mix_48000_stereo_f32_0p37s.wav").read_bytes()
    data_at = raw.index(b"data") + 8
    interleaved = np.frombuffer(raw[data_at : data_at + 17760 * 8], dtype="<f4").reshape(-1, 2).T
    np.testing.assert_array_equal(samples, interleaved)


def test_lossless_flac_decodes_to_the_exact_wav_samples() -> None:
    wav, rate = decode_audio(SOURCE_WAV)
    flac, flac_rate = decode_audio(DATA / "encoded" / "mix_16000_mono_5p3s.flac")
    assert flac_rate == rate == 16000
    np.testing.assert_array_equal(flac, wav)


@pytest.mark.parametrize(
    ("name", "rate"),
    [
        ("mix_16000_mono_5p3s.mp3", 16000),
        ("mix_16000_mono_5p3s.m4a", 16000),
        ("mix_16000_mono_5p3s.opus", 48000),
    ],
)
def test_lossy_formats_decode_at_their_native_rate_and_follow_the_source(name: str, rate: int) -> None:
    wav, _ = decode_audio(SOURCE_WAV)
    samples, got_rate = decode_audio(DATA / "encoded" / name)
    assert got_rate == rate and samples.shape[0] == 1
    # No resampling by FFmpeg: the sample count follows the native rate (codec padding aside).
    assert abs(samples.shape[1] / rate - 5.3) < 0.05
    step = rate // 16000
    aligned = samples[0, ::step][: wav.shape[1] - 100]
    assert np.corrcoef(wav[0, : aligned.shape[0]], aligned)[0, 1] > 0.95


def test_ogg_vorbis_keeps_both_channels_in_order() -> None:
    wav, _ = decode_audio(SOURCE_WAV)
    samples, rate = decode_audio(DATA / "encoded" / "mix_16000_stereo_5p3s.ogg")
    assert rate == 16000 and samples.shape == (2, wav.shape[1])
    assert np.corrcoef(wav[0], samples[0])[0, 1] > 0.95
    assert np.corrcoef(wav[0, ::-1], samples[1])[0, 1] > 0.9


def test_the_audio_track_of_a_video_is_decoded() -> None:
    samples, rate = decode_audio(DATA / "encoded" / "clip_160x120_3s_aac.mp4")
    assert rate == 22050 and samples.shape[0] == 1
    assert abs(samples.shape[1] / rate - 3.0) < 0.1
    assert 0.05 < np.abs(samples).max() <= 1.5


def test_bytes_and_open_files_decode_like_paths() -> None:
    by_path, _ = decode_audio(SOURCE_WAV)
    by_bytes, _ = decode_audio(SOURCE_WAV.read_bytes())
    with SOURCE_WAV.open("rb") as fh:
        by_file, _ = decode_audio(fh)
    np.testing.assert_array_equal(by_path, by_bytes)
    np.testing.assert_array_equal(by_path, by_file)


def test_generated_opus_in_a_temporary_file_decodes(tmp_path: Path) -> None:
    # Encode with PyAV directly, so the test does not depend on the committed media alone.
    path = tmp_path / "beep.opus"
    tone = (0.3 * np.sin(np.arange(24000) * 2 * np.pi * 440 / 48000)).astype(np.float32)[None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
        frame.sample_rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    samples, rate = decode_audio(path)
    assert rate == 48000 and samples.shape[0] == 1
    assert abs(samples.shape[1] - 24000) < 2000


def test_unreadable_inputs_raise_media_error_with_the_name() -> None:
    with pytest.raises(MediaError, match="empty input"):
        decode_audio(b"")
    with pytest.raises(MediaError, match="not a readable audio") as info:
        decode_audio(b"\x00" * 4096, name="upload.wav")
    assert info.value.path == "upload.wav"
    with pytest.raises(MediaError, match="not a regular file"):
        decode_audio(DATA)
    with pytest.raises(MediaError, match="no audio stream"):
        decode_audio(DATA / "encoded" / "video_only_160x120_2s.mp4")


def test_a_value_that_is_not_a_source_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="path, bytes or a binary file"):
        decode_audio(42)  # type: ignore[arg-type]
