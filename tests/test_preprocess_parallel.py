"""load_parallel: worker processes, results as they complete, bounded work, crash isolation."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ibsearch.encoder import preprocess
from ibsearch.encoder.media import pool
from ibsearch.errors import MediaError, UsageError

DATA = Path(__file__).parent / "data"
CRASH = "<crash the worker>"
HANG = "<hang the worker>"
SLOW = "<take a second>"
DENIED = "<permission denied>"


def crash_on_marker(modality: str, item: Any) -> torch.Tensor:
    """A loader that kills its own process on one marker item, as a segfaulting decoder would."""
    if item == CRASH:
        os.kill(os.getpid(), signal.SIGSEGV)
    return preprocess.load(modality, item)


def misbehave_on_markers(modality: str, item: Any) -> torch.Tensor:
    """A loader that crashes, hangs, dawdles or cannot open a file on the marker items."""
    if item == HANG:
        time.sleep(3600)  # a decoder stuck for good: only killing its process ends it
    elif item == SLOW:
        time.sleep(1.0)
    elif item == DENIED:
        raise PermissionError(13, "Permission denied", item)
    return crash_on_marker(modality, item)


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


#: Pictures of three formats and one file that is no picture (index 1), for the parallel ways to agree on.
MIXED = [
    DATA / "images" / "photo_640x480.jpg",
    DATA / "bad" / "random_bytes.jpg",
    DATA / "images" / "palette_256x192.gif",
    DATA / "images" / "gray_L_300x400.png",
]


def test_worker_processes_give_the_same_tensors_as_in_process_loading() -> None:
    items = MIXED
    results = dict(preprocess.load_parallel("vision", items, workers=2))
    assert sorted(results) == [0, 1, 2, 3]
    assert isinstance(results[1], MediaError) and "not a recognised image" in results[1].reason
    for i in (0, 2, 3):
        assert torch.equal(results[i], preprocess.load("vision", items[i]))
    audio = dict(
        preprocess.load_parallel("audio", [DATA / "audio" / "mix_48000_mono_s16_1p5s.wav"], workers=1)
    )
    assert torch.equal(audio[0], preprocess.load("audio", DATA / "audio" / "mix_48000_mono_s16_1p5s.wav"))


def test_threads_decode_a_round_at_a_time_never_beside_the_caller_and_give_the_same_tensors() -> None:
    items = [*MIXED, DATA / "images" / "exif_orient6_320x240.jpg"]
    decoding: list[tuple[float, float, int]] = []

    def timed_load(modality: str, item: Any) -> torch.Tensor:
        start = time.monotonic()
        try:
            return preprocess.load(modality, item)
        finally:
            decoding.append((start, time.monotonic(), threading.get_ident()))

    results, caller = {}, []
    for index, tensor in pool.load_parallel("vision", items, 0, loader=timed_load, threads=2):
        start = time.monotonic()
        time.sleep(0.05)  # the caller's own work between results (the model, in an ingest)
        results[index] = tensor
        caller.append((start, time.monotonic()))
    assert sorted(results) == [0, 1, 2, 3, 4] and len(decoding) == 5
    assert isinstance(results[1], MediaError) and "not a recognised image" in results[1].reason
    for i in (0, 2, 3, 4):
        assert torch.equal(results[i], preprocess.load("vision", items[i]))
    assert threading.get_ident() not in {thread for *_, thread in decoding}
    assert len({thread for *_, thread in decoding}) == 2
    for start, end, _ in decoding:  # no item decoded while the caller held a result
        assert all(end <= began or start >= ended for began, ended in caller), (start, end, caller)


def test_pictures_refused_as_bombs_on_threads_are_refused_alike_and_leave_the_warning_filters_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)  # 640 x 480: within 2x, Pillow only warns
    before = list(warnings.filters)
    photo = DATA / "images" / "photo_640x480.jpg"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        results = dict(pool.load_parallel("vision", [photo] * 6, 0, loader=preprocess.load, threads=3))
    assert all(isinstance(r, MediaError) and "307,200 pixels" in r.reason for r in results.values())
    assert len(results) == 6 and not [w for w in said if w.category is Image.DecompressionBombWarning]
    assert warnings.filters == before


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


def test_a_hung_decoder_times_out_alone_and_the_other_items_still_load() -> None:
    texts = ["a dog", "a cat", HANG, "a bird", "a fish", "a horse"]
    began = time.monotonic()
    results = dict(pool.load_parallel("text", texts, 2, loader=misbehave_on_markers, timeout=2))
    assert time.monotonic() - began < 30
    assert sorted(results) == list(range(len(texts)))
    hung = results[2]
    assert isinstance(hung, MediaError) and hung.transient
    assert "timed out after 2 s" in hung.reason and "--timeout" in hung.reason
    for i, text in enumerate(texts):
        if i != 2:
            assert torch.equal(results[i], preprocess.load("text", text)), text


def test_a_crash_and_a_hang_in_one_run_each_cost_only_their_own_item() -> None:
    # The crash makes both markers suspects; the hung one then times out while it runs alone.
    texts = ["a dog", CRASH, HANG, "a bird", HANG, "a fish"]
    began = time.monotonic()
    results = dict(pool.load_parallel("text", texts, 2, loader=misbehave_on_markers, timeout=1))
    assert time.monotonic() - began < 30
    assert sorted(results) == list(range(len(texts)))
    crashed = results[1]
    assert isinstance(crashed, MediaError) and "crashed" in crashed.reason and crashed.transient
    for i in (2, 4):
        hung = results[i]
        assert isinstance(hung, MediaError) and "timed out after 1 s" in hung.reason and hung.transient
    for i in (0, 3, 5):
        assert torch.equal(results[i], preprocess.load("text", texts[i])), texts[i]


def test_an_item_queued_behind_slow_ones_is_not_timed_out_for_their_slowness() -> None:
    # One worker, three items in flight: the last waits about 2 s in the queue, past the limit,
    # but runs for only 1 s itself.
    texts = [SLOW, SLOW, SLOW]
    results = dict(
        pool.load_parallel("text", texts, 1, max_in_flight=3, loader=misbehave_on_markers, timeout=2)
    )
    assert sorted(results) == [0, 1, 2]
    assert all(isinstance(result, torch.Tensor) for result in results.values()), results


def test_an_os_error_in_a_loader_is_transient_and_a_bad_file_is_not() -> None:
    items = [DENIED, str(DATA / "bad" / "truncated.jpg")]
    for workers in (0, 1):
        results = dict(pool.load_parallel("vision", items, workers, loader=misbehave_on_markers, timeout=5))
        denied, bad = results[0], results[1]
        assert isinstance(denied, MediaError) and "PermissionError" in denied.reason and denied.transient
        assert isinstance(bad, MediaError) and not bad.transient


def test_a_time_limit_must_be_a_positive_number_of_seconds() -> None:
    for bad in (0, -1.5, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="positive number of seconds"):
            list(pool.load_parallel("text", ["a dog"], 1, loader=misbehave_on_markers, timeout=bad))


def test_media_errors_keep_whether_they_are_transient_through_pickling() -> None:
    for transient in (False, True):
        copy = pickle.loads(pickle.dumps(MediaError("clip.mp3", "no audio stream", transient=transient)))
        assert (copy.path, copy.reason, copy.transient) == ("clip.mp3", "no audio stream", transient)
        assert str(copy) == "cannot read 'clip.mp3': no audio stream"
    assert MediaError("a.png", "truncated").transient is False
