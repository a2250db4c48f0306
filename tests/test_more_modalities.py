"""Video (picture and sound), depth, thermal and IMU through the real CLI with the tiny model."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, run_json
from PIL import Image

from ibsearch.engine import Library


def test_a_video_is_found_by_its_picture_and_by_its_sound(tmp_path, lib_args):
    media = tmp_path / "media"
    media.mkdir()
    with_sound = media / "clip.mp4"
    silent = media / "silent.mp4"
    shutil.copy(DATA / "video" / "landscape_320x240_29.97fps_4.5s_aac.mp4", with_sound)
    shutil.copy(DATA / "video" / "portrait_240x320_24fps_3.2s.mp4", silent)
    shutil.copy(DATA / "images" / "photo_640x480.jpg", media / "photo.jpg")
    summary = run_json("ingest", media, *lib_args)
    assert summary["added"] == 3 and summary["failed"] == []
    by_picture = run_json("query", "--video", with_sound, "--target", "vision", *lib_args)
    assert by_picture[0]["path"] == str(with_sound) and by_picture[0]["score"] == pytest.approx(1, abs=2e-3)
    by_sound = run_json("query", "--audio", with_sound, "--target", "audio", *lib_args)
    assert by_sound[0]["path"] == str(with_sound) and by_sound[0]["score"] == pytest.approx(1, abs=2e-3)
    assert [h["path"] for h in by_sound] == [str(with_sound)]  # the silent video has no audio vector
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        assert {v.modality for v in lib.store.vectors.of_file(str(silent))} == {"vision", "vision.segments"}
        assert {v.modality for v in lib.store.vectors.of_file(str(with_sound))} == {
            "vision",
            "vision.segments",
            "audio",
            "audio.segments",
        }
    info = run_json("info", *lib_args)
    assert any("without sound" in note for note in info["notes"])


def write_video(
    path: Path,
    seconds: int,
    fps: int = 8,
    metadata: dict[str, str] | None = None,
    colour: Callable[[int], tuple[int, int, int]] | None = None,
) -> Path:
    """A small h264 video whose picture changes every 5 s (red, green, blue...), or has the colour
    ``colour`` gives for each frame's number, with a white square moving on it, and the container
    ``metadata`` given (``creation_time``: when it was taken)."""
    import av

    colours = [(220, 40, 40), (40, 200, 60), (40, 60, 220)]
    colour = colour or (lambda i: colours[(i // (5 * fps)) % 3])
    with av.open(str(path), "w") as out:
        out.metadata.update(metadata or {})
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(seconds * fps):
            img = np.zeros((64, 96, 3), np.uint8)
            img[:] = colour(i)
            img[(i % 40) : (i % 40) + 10, 10:30] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_a_long_video_gets_picture_segments(tmp_path, lib_args):
    media = tmp_path / "media"
    media.mkdir()
    clip = write_video(media / "long.mp4", 15)
    summary = run_json("ingest", media, *lib_args)
    assert summary["added"] == 1 and summary["failed"] == []
    info = run_json("info", *lib_args)
    assert info["vectors"] == {"vision": 1, "vision.segments": 4}  # 0-6, 3-9, 6-12, 9-15
    hits = run_json("query", "--video", clip, "--target", "vision", "--segments", *lib_args)
    assert hits[0]["path"] == str(clip) and hits[0]["end"] - hits[0]["start"] == pytest.approx(6, abs=0.2)


def write_sensor_files(root: Path) -> dict[str, list[Path]]:
    rng = np.random.default_rng(5)
    files: dict[str, list[Path]] = {"depth": [], "thermal": [], "imu": []}
    (root / "depth").mkdir(parents=True)
    (root / "flir").mkdir()
    (root / "motion").mkdir()
    yy, xx = np.mgrid[0:240, 0:320]
    patterns = [xx / 320, yy / 240, (np.sin(xx / 9) * np.cos(yy / 13) + 1) / 2]
    for i, pattern in enumerate(patterns):
        metres = 0.5 + 4 * pattern + 0.05 * rng.random((240, 320))
        npy = root / "depth" / f"scene{i}.npy"
        np.save(npy, metres.astype(np.float32))
        files["depth"].append(npy)
    png16 = root / "depth" / "kinect.png"
    Image.fromarray((1000 * (1 + yy / 240)).astype(np.uint16)).save(png16)
    files["depth"].append(png16)
    for i in range(3):
        heat = 128 + 100 * np.sin(xx / (10 + 15 * i)) * np.cos(yy / 30) + 10 * rng.random((240, 320))
        path = root / "flir" / f"thermal{i}.png"
        Image.fromarray(np.clip(heat, 0, 255).astype(np.uint8), mode="L").save(path)
        files["thermal"].append(path)
    t = np.arange(2400) / 200
    for i in range(2):
        series = np.stack([np.sin(t * (i + 1) + k) for k in range(6)], axis=1) * (1 + i)
        npy = root / "motion" / f"walk{i}.npy"
        np.save(npy, series.astype(np.float32))
        files["imu"].append(npy)
    csv = root / "motion" / "run.csv"
    rows = ["ax,ay,az,gx,gy,gz"] + [",".join(f"{np.cos(v * 3 + k):.5f}" for k in range(6)) for v in t[:1500]]
    csv.write_text("\n".join(rows) + "\n")
    files["imu"].append(csv)
    return files


def test_depth_thermal_and_imu_are_ingested_and_find_themselves(tmp_path, lib_args):
    root = tmp_path / "sensors"
    files = write_sensor_files(root)
    first = run_json("ingest", root / "depth", root / "motion", *lib_args)
    assert first["failed"] == []
    # A 16-bit PNG is a picture unless the folder is declared a depth folder.
    again = run_json("ingest", root / "depth", "--as", "depth", *lib_args)
    assert again["updated"] + again["added"] >= 1
    thermal = run_json("ingest", root / "flir", "--as", "thermal", *lib_args)
    assert thermal["added"] == 3 and thermal["failed"] == []
    info = run_json("info", *lib_args)
    assert info["vectors"]["depth"] == 4 and info["vectors"]["thermal"] == 3 and info["vectors"]["imu"] == 3
    assert "vision" not in info["vectors"]
    # --as is remembered: a new thermal image in that folder is thermal on the next plain ingest.
    shutil.copy(files["thermal"][0], root / "flir" / "later.png")
    Image.open(files["thermal"][1]).rotate(90).save(root / "flir" / "later.png")
    run_json("ingest", root / "flir", *lib_args)
    assert run_json("info", *lib_args)["vectors"]["thermal"] == 4
    for modality, paths in files.items():
        for path in paths:
            hits = run_json("query", f"--{modality}", path, "--target", modality, "--k", "10", *lib_args)
            own = next(h for h in hits if h["path"] == str(path))
            # Its own vector scores ~1 and nothing beats it (random tiny weights may tie look-alikes).
            assert own["score"] == pytest.approx(1, abs=2e-3) and hits[0]["score"] <= own["score"] + 1e-5


def test_arithmetic_across_depth_thermal_imu_and_text(tmp_path, lib_args):
    root = tmp_path / "sensors"
    files = write_sensor_files(root)
    run_json("ingest", root / "depth", root / "motion", *lib_args)
    run_json("ingest", root / "flir", "--as", "thermal", *lib_args)
    hits = run_json(
        "query", "--depth", files["depth"][0], "--thermal", f"0.5={files['thermal'][1]}",
        "--imu", f"-0.5={files['imu'][0]}", "--text", "0.2=a warm room",
        "--target", "depth", "--target", "thermal", "--target", "imu", "--k", "20", *lib_args,
    )  # fmt: skip
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        searcher = lib.searcher()
        from ibsearch.terms import Term

        query = searcher.embed(
            [
                Term("depth", str(files["depth"][0])),
                Term("thermal", str(files["thermal"][1]), 0.5),
                Term("imu", str(files["imu"][0]), -0.5),
                Term("text", "a warm room", 0.2),
            ]
        )
        expected = []
        for path in lib.store.files.paths_under(""):
            for v in lib.store.vectors.of_file(path):
                if v.start is None and v.modality in ("depth", "thermal", "imu"):
                    expected.append((path, float(v.vector @ query)))
        from ibsearch import weighted

        python_hits = searcher.query(
            depth=str(files["depth"][0]), thermal=weighted(str(files["thermal"][1]), 0.5),
            imu=weighted(str(files["imu"][0]), -0.5), text=weighted("a warm room", 0.2),
            target=["depth", "thermal", "imu"], k=20,
        )  # fmt: skip
    assert [h.to_dict() for h in python_hits] == hits
    # Each hit's raw score is the weighted sum's cosine with its vector; hits of the three targets
    # interleave by calibrated relevance (their raw scores live on different scales), best first.
    scored = dict(expected)
    assert sorted(h["path"] for h in hits) == sorted(scored)
    assert [h["score"] for h in hits] == pytest.approx([scored[h["path"]] for h in hits], abs=1e-4)
    relevances = [h["relevance"] for h in hits]
    assert relevances == sorted(relevances, reverse=True)
