"""Video pictures: parity with the reference pipeline, frame numbering, seeking, and bad input."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from ibsearch.encoder.media import audio_dsp, video
from ibsearch.errors import MediaError

DATA = Path(__file__).parent / "data"
VIDEOS = DATA / "video"
FIXTURE = np.load(Path(__file__).parent / "fixtures" / "video_preprocess.npz")
NAMES = sorted(name for name in FIXTURE.files if name.endswith((".mp4", ".webm")))
STRIDE = 7  # the fixture keeps every 7th row and column (see tests/fixtures/README.md)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    return {name: video.load_video(VIDEOS / name) for name in NAMES}


def test_the_fixtures_cover_landscape_portrait_rotated_short_and_sound() -> None:
    infos = {name: video.probe_video(VIDEOS / name) for name in NAMES}
    assert any(i.width > i.height for i in infos.values())
    assert any(i.height > i.width and i.rotation == 0 for i in infos.values())
    assert any(i.rotation == 1 for i in infos.values())
    assert any(i.duration < video.CLIP_SECONDS for i in infos.values())
    assert {i.has_audio for i in infos.values()} == {True, False}


@pytest.mark.parametrize("name", NAMES)
def test_video_matches_the_reference_pipeline(name: str, outputs: dict[str, torch.Tensor]) -> None:
    out = outputs[name]
    assert out.shape == video.VIDEO_SHAPE and out.dtype == torch.float32
    full = out.numpy()
    sampled = np.abs(full[..., ::STRIDE, ::STRIDE] - FIXTURE[name]).max()
    k, c, t = FIXTURE[f"{name}.plane_index"]
    plane = np.abs(full[k, c, t] - FIXTURE[f"{name}.plane"]).max()
    means = np.abs(full.astype(np.float64).mean(axis=(-2, -1)) - FIXTURE[f"{name}.means"]).max()
    assert sampled <= TOLERANCE, f"{name}: max |diff| {sampled:.3g} on the subsample"
    assert plane <= TOLERANCE, f"{name}: max |diff| {plane:.3g} on plane {(k, c, t)}"
    assert means <= 1e-6, f"{name}: plane means differ by {means:.3g}"


def test_a_rotated_video_is_turned_upright_like_decord_does() -> None:
    info = video.probe_video(VIDEOS / "rotated90_320x240_30fps_2.5s.mp4")
    assert (info.width, info.height, info.rotation) == (240, 320, 1)


def test_video_batch_stacks_paths_bytes_and_files_alike(outputs: dict[str, torch.Tensor]) -> None:
    name = "short_320x240_25fps_1.2s_aac.mp4"
    data = (VIDEOS / name).read_bytes()
    batch = video.video([str(VIDEOS / name), data, io.BytesIO(data)])
    assert batch.shape == (3, *video.VIDEO_SHAPE)
    for row in batch:
        assert torch.equal(row, outputs[name])
    assert video.video([]).shape == (0, *video.VIDEO_SHAPE)


def test_clip_times_agree_with_the_audio_clip_sampler() -> None:
    for n_samples in (84800, 32000, 20000, 480000, 123457):
        starts = [int(start * 16000) for start, _ in video.clip_times(n_samples / 16000, 2, 3)]
        assert starts == [begin for begin, _ in audio_dsp.clip_spans(n_samples, 16000, 2, 3)]


def test_clip_frame_ranges_round_clip_times_up_to_frames() -> None:
    assert video.clip_frame_ranges(30, 25.0) == [(0, 30)] * 5  # shorter than a clip: the whole video
    assert video.clip_frame_ranges(90, 15.0) == [(0, 30), (15, 45), (30, 60), (45, 75), (60, 90)]
    # What pytorchvideo's decord reader asks decord for (printed from the reference for the test videos).
    ntsc = 30000 / 1001
    assert video.clip_frame_ranges(135, ntsc) == [(0, 60), (19, 79), (38, 98), (57, 117), (76, 135)]
    assert video.clip_frame_ranges(77, 24.0) == [(0, 48), (8, 56), (15, 63), (22, 70), (30, 77)]
    assert video.clip_frame_ranges(75, 30.0) == [(0, 60), (4, 64), (8, 68), (12, 72), (15, 75)]
    assert video.clip_times(135 / ntsc)[1][0] == Fraction(135 / ntsc - 2) / 4
    assert video.kept_frames(19, 79) == [19, 78] and video.kept_frames(5, 6) == [5, 5]


def test_crops_are_left_centre_right_or_top_centre_bottom_with_ceil_offsets() -> None:
    assert video.short_side_size(240, 320) == (224, 298)  # 298.67 floored
    assert video.short_side_size(144, 256) == (224, 398)
    assert video.crop_offsets(224, 298) == [(0, 0), (0, 37), (0, 74)]
    assert video.crop_offsets(299, 224) == [(0, 0), (38, 0), (75, 0)]  # 37.5 rounds up
    assert video.crop_offsets(224, 224) == [(0, 0)] * 3


def write_video(path: Path, frames: int, rate: int = 10, keyint: int = 10, size=(64, 48)) -> None:
    """A small h264 video whose frames are easy to tell apart (each frame's number in its colours)."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=rate, options={"preset": "ultrafast", "x264-params": f"keyint={keyint}:bframes=2"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        for i in range(frames):
            level = np.full((height, width, 3), (i * 37) % 256, np.float32)
            picture = np.clip(level + 0.3 * ramp, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_a_long_video_is_not_decoded_whole_and_seeking_finds_the_right_frames(tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    write_video(path, frames=300)  # 30 s at 10 fps, a keyframe every second
    stats = video.DecodeStats()
    out = video.load_video(path, stats=stats)
    assert stats.packets_scanned == 300 and stats.frames_kept == 10
    assert stats.frames_decoded <= 100, stats  # ~5 clips x 2 frames x (up to) 10 frames per GOP
    # The same frames taken by decoding every frame in order give the same tensor.
    with av.open(str(path)) as container:
        every = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    ranges = video.clip_frame_ranges(len(every), 10.0)
    expected = torch.cat(
        [video.clip_tensor(np.stack([every[i] for i in video.kept_frames(*r)])) for r in ranges]
    )
    assert torch.equal(out, expected)


def test_decoding_stats_show_a_short_video_needs_two_frames() -> None:
    stats = video.DecodeStats()
    video.load_video(VIDEOS / "short_320x240_25fps_1.2s_aac.mp4", stats=stats)
    assert stats.frames_kept == 2 and stats.packets_scanned == 30


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (DATA / "missing.mp4", "no such file"),
        (DATA / "bad" / "empty.wav", "empty"),
        (b"", "empty"),
        (DATA / "bad" / "random_bytes.wav", "not a readable"),
        (DATA / "audio" / "mix_16000_mono_s16_5p3s.wav", "no video stream"),
        (DATA / "encoded" / "mix_16000_mono_5p3s.mp3", "no video stream"),
        (DATA / "bad" / "random_bytes.jpg", "corrupt"),
    ],
)
def test_bad_input_raises_media_error_naming_the_file(source: object, reason: str) -> None:
    with pytest.raises(MediaError) as caught:
        video.load_video(source)  # type: ignore[arg-type]
    assert reason in caught.value.reason
    assert caught.value.path == ("<bytes>" if isinstance(source, bytes) else str(source))


def test_a_truncated_video_raises_media_error(tmp_path: Path) -> None:
    data = (VIDEOS / "landscape_320x240_29.97fps_4.5s_aac.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: nothing to play
    with pytest.raises(MediaError, match="cut.mp4"):
        video.load_video(cut)
    with pytest.raises(MediaError, match="clip.mp4"):
        video.load_video(data[: len(data) // 2], name="clip.mp4")


def test_a_video_stream_without_frames_raises_media_error(tmp_path: Path) -> None:
    path = tmp_path / "no_frames.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(MediaError, match="no_frames.mp4"):
        video.load_video(path)


def test_segments_of_a_long_video_are_each_the_reference_pipeline_on_their_stretch(tmp_path: Path) -> None:
    path = tmp_path / "thirteen.mp4"
    write_video(path, frames=130)  # 13 s at 10 fps
    assert video.segment_spans(13.0) == [(0, 6), (3, 9), (6, 12), (9, 13)]  # the last one shorter
    assert video.segment_spans(12.3) == [(0, 6), (3, 9), (6, 12)]  # a 0.3 s tail is not worth one
    assert video.segment_spans(5.9) == []
    stats = video.DecodeStats()
    segments = list(video.video_segments(path, stats=stats))
    assert [(s.start, s.end) for s in segments] == video.segment_spans(13.0)
    assert stats.packets_scanned == 130 and stats.frames_decoded <= 130  # front to back, never twice
    with av.open(str(path)) as container:
        every = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    for segment in segments:
        first, stop = int(segment.start * 10), int(segment.end * 10)
        stretch = every[first:stop]
        ranges = video.clip_frame_ranges(len(stretch), 10.0)
        expected = torch.cat(
            [video.clip_tensor(np.stack([stretch[i] for i in video.kept_frames(*r)])) for r in ranges]
        )
        assert segment.pictures.shape == video.VIDEO_SHAPE
        assert torch.equal(segment.pictures, expected), (segment.start, segment.end)
