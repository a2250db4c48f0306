"""The entry points users and external checks rely on import and behave as documented."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from conftest import DATA, run_json


def test_the_package_exports_the_searcher_the_library_and_weighted():
    import ibsearch
    from ibsearch import Hit, IngestSummary, Library, Searcher, Term, engine, library, weighted

    assert ibsearch.__version__
    assert Library is engine.Library and issubclass(engine.Library, library.LibraryResources)
    for method in ("open", "ingest", "searcher", "remove", "reindex", "check", "info"):
        assert callable(getattr(Library, method)), method
    assert weighted("a.jpg", 0.5) == ("a.jpg", 0.5)
    assert Term("image", "a.jpg").kind == "vision"
    assert {"path", "score", "modality", "metadata"} <= set(Hit("p", 0.5, "vision").to_dict())
    assert IngestSummary().to_dict()["failed"] == [] and callable(Searcher.query)


def test_the_wheel_ships_py_typed_and_the_page(tmp_path):
    root = Path(__file__).parent.parent
    source = tmp_path / "source"
    shutil.copytree(root / "ibsearch", source / "ibsearch", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*build, "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("ibsearch-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert "ibsearch/py.typed" in shipped  # PEP 561: mypy and pyright use ibsearch's annotations
    assert {"ibsearch/server/static/index.html", "ibsearch/server/static/app.js"} <= shipped


def test_the_encoder_exports_configs_and_the_model():
    from ibsearch.encoder import ImageBindConfig, ImageBindModel, get_config

    huge = get_config("imagebind_huge")
    assert isinstance(huge, ImageBindConfig) and huge.vision_embed_dim == 1280 and huge.out_embed_dim == 1024
    assert callable(ImageBindModel.from_reference)
    model = ImageBindModel(get_config("imagebind_tiny"), ["text"])
    assert model.modalities == ["text"]


def test_the_preprocess_module_builds_batches_for_text_images_sound_and_video():
    from ibsearch.encoder import preprocess
    from ibsearch.encoder.media.video import load_video

    assert preprocess.text(["a dog", "a cat"]).shape == (2, 77)
    assert preprocess.vision([DATA / "images" / "photo_640x480.jpg"]).shape == (1, 3, 224, 224)
    assert preprocess.audio([DATA / "audio" / "mix_16000_mono_s16_5p3s.wav"]).shape == (1, 3, 1, 128, 204)
    clip = DATA / "video" / "landscape_320x240_29.97fps_4.5s_aac.mp4"
    batch = preprocess.video([clip])
    assert batch.shape == (1, 15, 3, 2, 224, 224)
    assert torch.equal(batch[0], load_video(clip))
    assert preprocess.video([]).shape == (0, 15, 3, 2, 224, 224)


def test_the_environment_names_the_default_library_and_model(tmp_path: Path, tiny_card: str, monkeypatch):
    from ibsearch import Searcher

    library = tmp_path / "from-env"
    monkeypatch.setenv("IBSEARCH_LIBRARY", str(library))
    monkeypatch.setenv("IBSEARCH_MODEL", tiny_card)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes((DATA / "images" / "photo_640x480.jpg").read_bytes())
    summary = run_json("ingest", photos, "--device", "cpu")
    assert set(summary) == {
        "added",
        "updated",
        "unchanged",
        "removed",
        "failed",
        "encoded",
        "skipped",
        "known_bad",
        "skipped_by_extension",
        "failed_by_extension",
        "not_indexed",
    }
    assert summary["added"] == 1 and (library / "ibsearch.db").is_file()
    hits = run_json("query", "--image", photos / "a.jpg", "--device", "cpu")
    shown = {"path", "score", "relevance", "level", "sources", "modality", "metadata"}
    assert set(hits[0]) == shown and hits[0]["path"] == str(photos / "a.jpg")
    info = run_json("info")
    assert info["library"] == str(library) and info["files"] == 1
    assert set(run_json("check")) == {"ok", "problems", "repaired", "counts"}
    with Searcher(device="cpu") as searcher:  # the same library and model, from the environment
        found = searcher.query(image=str(photos / "a.jpg"), k=1)
        assert found[0].path == str(photos / "a.jpg") and np.isclose(found[0].score, 1.0, atol=2e-3)
