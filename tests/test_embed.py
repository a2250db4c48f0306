"""Media to vectors: the same files give the same bits however they are decoded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from conftest import DATA

from ibsearch.encoder.embed import embed_files
from ibsearch.encoder.runtime import Encoder
from ibsearch.encoder.weights.cards import resolve_model
from ibsearch.encoder.work import MediaItem, plan_batches, prepare
from ibsearch.modality import FileKind


def items(folder: Path) -> list[MediaItem]:
    images = sorted((DATA / "images").glob("*.jpg"))[:3] + sorted((DATA / "images").glob("*.png"))[:3]
    out = []
    for i, src in enumerate(images * 3):  # 18 pictures: two batches of 16 and 2 at batch size 16
        dst = folder / f"{i:02d}{src.suffix}"
        shutil.copy(src, dst)
        out.append(MediaItem(str(dst), FileKind.IMAGE))
    clip = folder / "clip.mp4"
    shutil.copy(DATA / "video" / "landscape_320x240_29.97fps_4.5s_aac.mp4", clip)
    out.insert(5, MediaItem(str(clip), FileKind.VIDEO))
    return out


def test_batches_are_planned_from_the_files_alone(tmp_path):
    works = prepare(items(tmp_path))
    batches = plan_batches(works, 16)
    vision = [b for b in batches if b.modality == "vision"]
    assert [len(b.members) for b in vision] == [16, 2, 1]  # pictures in order, then the video's shape
    assert vision[2].members == (5,) and [b.modality for b in batches] == ["vision"] * 3 + ["audio"]
    assert plan_batches(prepare(items(tmp_path)), 16) == batches


def test_the_same_files_give_the_same_bits_in_process_and_in_worker_processes(tmp_path, tiny_card):
    encoder = Encoder(resolve_model(tiny_card), device="cpu", precision="fp32")
    files = items(tmp_path)
    alone = dict(embed_files(encoder, files, workers=0))
    pooled = dict(embed_files(encoder, files, workers=2))
    assert sorted(alone) == sorted(pooled) == list(range(len(files)))
    for index, result in alone.items():
        other = pooled[index]
        assert not isinstance(result, Exception) and not isinstance(other, Exception)
        assert result.vectors.keys() == other.vectors.keys()
        for key, vectors in result.vectors.items():
            assert np.array_equal(vectors, other.vectors[key]), (index, key)
