"""load_parallel: worker processes, results as they complete, bounded work, crash isolation."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ibsearch.encoder import preprocess
from ibsearch.errors import MediaError

DATA = Path(__file__).parent / "data"
CRASH = "<crash the worker>"


def crash_on_marker(modality: str, item: Any) -> torch.Tensor:
    """A loader that kills its own process on one marker item, as a segfaulting decoder would."""
    if item == CRASH:
        os.kill(os.getpid(), signal.SIGSEGV)
    return preprocess.load(modality, item)


def test_in_process_loading_yields_every_index_with_errors_in_place() -> None:
    items = [
        DATA / "images" / "tiny_7x5.png",
        DATA / "bad" / "truncated.jpg",
        DATA / "images" / "odd_229x224.png",
    ]
    results = dict(preprocess.load_parallel("vision", items, workers=0))
    assert sorted(results) == [0, 1, 2]
    assert isinstance(results[1], MediaError) and results[1].path == str(items[1])
    assert torch.equal(results[0], preprocess.load("vision", items[0]))


def test_worker_processes_give_the_same_tensors_as_in_process_loading() -> None:
    items = [
        DATA / "images" / "photo_640x480.jpg",
        DATA / "bad" / "random_bytes.jpg",
        DATA / "images" / "palette_256x192.gif",
        DATA / "images" / "gray_L_300x400.png",
    ]
    results = dict(preprocess.load_parallel("vision", items, workers=2))
    assert sorted(results) == [0, 1, 2, 3]
    assert isinstance(results[1], MediaError) and "not a recognised image" in results[1].reason
    for i in (0, 2, 3):
        assert torch.equal(results[i], preprocess.load("vision", items[i]))
    audio = dict(
        preprocess.load_parallel("audio", [DATA / "audio" / "mix_48000_mono_s16_1p5s.wav"], workers=1)
    )
    assert torch.equal(audio[0], preprocess.load("audio", DATA / "audio" / "mix_48000_mono_s16_1p5s.wav"))


def test_a_crashing_worker_costs_only_its_own_item() -> None:
    texts = ["a dog", "a cat", CRASH, "a bird", "a fish", "a horse"]
    results = dict(preprocess.load_parallel("text", texts, workers=2, loader=crash_on_marker))
    assert sorted(results) == list(range(len(texts)))
    assert isinstance(results[2], MediaError) and "crashed" in results[2].reason
    for i, text in enumerate(texts):
        if i != 2:
            assert torch.equal(results[i], preprocess.load("text", text)), text


def test_items_are_pulled_lazily_with_bounded_work_in_flight() -> None:
    pulled = 0

    def items() -> Iterator[str]:
        nonlocal pulled
        for i in range(12):
            pulled += 1
            yield f"caption number {i}"

    seen = []
    for done, (index, result) in enumerate(
        preprocess.load_parallel("text", items(), workers=1, max_in_flight=2)
    ):
        assert isinstance(result, torch.Tensor)
        # At most max_in_flight items are outstanding (plus the one being handed out).
        assert pulled - done <= 3
        seen.append(index)
    assert sorted(seen) == list(range(12))
