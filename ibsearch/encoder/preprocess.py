"""Turn media into ImageBind input tensors: the public preprocessing API.

``text``, ``vision`` and ``audio`` build batches; ``load`` prepares one item (what a worker
process runs); ``load_parallel`` decodes many items in worker processes and yields each result,
or the :class:`MediaError` that explains why an item was skipped, as soon as it is ready.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from ..errors import MediaError, UsageError
from ..modality import AUDIO, TEXT, VISION, canonical
from . import audio_dsp
from .decode import decode_audio, source_name
from .images import ImageSource, image_tensor, load_image
from .tokenizer import CONTEXT_LENGTH, tokenize

log = logging.getLogger(__name__)

#: Modalities with a loader here.
LOADABLE = (TEXT, VISION, AUDIO)

Loader = Callable[[str, Any], torch.Tensor]


def text(texts: Sequence[str]) -> torch.Tensor:
    """Tokenize ``texts``: ``(N, 77)`` int64 token ids, identical to the reference tokenizer."""
    if isinstance(texts, str):
        raise UsageError("text() takes a list of strings; wrap a single string in a list")
    return tokenize(list(texts))


def load_vision(item: ImageSource) -> torch.Tensor:
    """One image (path, bytes, binary file or PIL image) -> ``(3, 224, 224)`` float32."""
    return image_tensor(load_image(item))


def load_audio(item: Any) -> torch.Tensor:
    """One audio file (or video with sound; path, bytes or binary file) -> ``(3, 1, 128, 204)``.

    Raises :class:`MediaError` if it cannot be decoded or lasts less than one 25 ms window.
    """
    name = source_name(item)
    samples, rate = decode_audio(item, name=name)
    needed = audio_dsp.resampled_length(samples.shape[1], rate, audio_dsp.SAMPLE_RATE)
    if needed < audio_dsp.MIN_SAMPLES:
        ms = math.floor(10_000 * samples.shape[1] / rate) / 10
        raise MediaError(name, f"too short: {ms:g} ms, need at least 25 ms of sound")
    features = audio_dsp.audio_features(torch.from_numpy(samples), rate)
    if not bool(torch.isfinite(features).all()):
        raise MediaError(name, "audio features are not finite (damaged samples?)")
    return features


def load(modality: str, item: Any) -> torch.Tensor:
    """Prepare ONE item of ``modality`` for the model (no batch dimension).

    text: a string -> ``(77,)`` int64; vision: an image -> ``(3, 224, 224)``;
    audio: a sound file -> ``(3, 1, 128, 204)``. Bad media raise :class:`MediaError`.
    """
    modality = canonical(modality)
    if modality == TEXT:
        if not isinstance(item, str):
            raise UsageError(f"text items must be strings, got {type(item).__name__}")
        return tokenize([item])[0]
    if modality == VISION:
        return load_vision(item)
    if modality == AUDIO:
        return load_audio(item)
    raise UsageError(f"no loader for modality {modality!r}; ibsearch can load {', '.join(LOADABLE)}")


def vision(items: Iterable[ImageSource]) -> torch.Tensor:
    """Batch of images -> ``(N, 3, 224, 224)`` float32; the first bad item raises MediaError."""
    tensors = [load_vision(item) for item in items]
    return torch.stack(tensors) if tensors else torch.empty(0, 3, 224, 224)


def audio(items: Iterable[Any]) -> torch.Tensor:
    """Batch of sound files -> ``(N, 3, 1, 128, 204)`` float32; the first bad item raises MediaError."""
    tensors = [load_audio(item) for item in items]
    return torch.stack(tensors) if tensors else torch.empty(0, 3, 1, 128, 204)


# ----------------------------------------------------------------------------- parallel loading


def _item_name(item: Any) -> str:
    if isinstance(item, str) and not os.path.exists(item) and len(item) > 60:
        return item[:57] + "..."
    try:
        return source_name(item)
    except Exception:
        return f"<{type(item).__name__}>"


def _work(loader: Loader, modality: str, item: Any) -> tuple[bool, Any]:
    """Run in a worker: ``(True, ndarray)`` or ``(False, (path, reason))``.

    Arrays and plain tuples cross the process boundary; tensors and exceptions are rebuilt in
    the parent (pickled tensors would travel through shared-memory handles).
    """
    try:
        return True, loader(modality, item).numpy()
    except MediaError as exc:
        return False, (exc.path, exc.reason)
    except Exception as exc:  # a bad file must never stop a run; keep the cause for the report
        log.exception("unexpected error while loading %s", _item_name(item))
        return False, (_item_name(item), f"unexpected {type(exc).__name__}: {exc}")


def _result(outcome: tuple[bool, Any]) -> torch.Tensor | MediaError:
    ok, payload = outcome
    return torch.from_numpy(payload) if ok else MediaError(*payload)


def _init_worker() -> None:
    # Workers run side by side; intra-op threads would only oversubscribe the cores.
    torch.set_num_threads(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    ctx: multiprocessing.context.BaseContext
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = server = multiprocessing.get_context("forkserver")
        # Forked from a server that already imported torch, PIL and PyAV: fast worker starts.
        server.set_forkserver_preload([__name__])
    else:
        ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)


def load_parallel(
    modality: str,
    items: Iterable[Any],
    workers: int = 0,
    *,
    max_in_flight: int | None = None,
    loader: Loader | None = None,
) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
    """Prepare ``items`` in ``workers`` processes; yield ``(index, tensor or MediaError)``.

    Results come in completion order, each exactly once; ``index`` is the item's position in
    ``items``. At most ``max_in_flight`` items (default ``2 * workers``) are queued or decoding
    at a time, so memory stays flat however long ``items`` is. ``workers=0`` runs in this
    process. A worker that dies (e.g. a decoder crash) costs only its own item: the items that
    were in flight are retried one at a time and the culprit yields a :class:`MediaError`.
    ``loader(modality, item)`` defaults to :func:`load`; a replacement must be a module-level
    function (it is pickled by name).
    """
    modality = canonical(modality)
    run = loader or load
    if workers <= 0:
        for index, item in enumerate(items):
            yield index, _result(_work(run, modality, item))
        return
    limit = max(1, max_in_flight or 2 * workers)
    source = enumerate(items)
    exhausted = False
    suspects: deque[tuple[int, Any]] = deque()
    pending: dict[Future[tuple[bool, Any]], tuple[int, Any, bool]] = {}
    pool = _pool(workers)
    try:
        while True:
            # While suspects remain, run them alone so that a crash identifies its item.
            while len(pending) < (1 if suspects or any(s for _, _, s in pending.values()) else limit):
                if suspects:
                    index, item = suspects.popleft()
                    alone = True
                elif not exhausted:
                    try:
                        index, item = next(source)
                    except StopIteration:
                        exhausted = True
                        continue
                    alone = False
                else:
                    break
                try:
                    future = pool.submit(_work, run, modality, item)
                except BrokenProcessPool:
                    suspects.appendleft((index, item))
                    pool = _replace_pool(pool, workers)
                    continue
                pending[future] = (index, item, alone)
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                index, item, alone = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken = True
                    if alone:
                        reason = "the decoder crashed (its worker process died); the file is probably damaged"
                        yield index, MediaError(_item_name(item), reason)
                    else:
                        suspects.append((index, item))
                    continue
                yield index, _result(outcome)
            if broken:
                # Every other in-flight item fails with the pool; settle them, then start afresh.
                wait(pending)
                for future, (index, item, _) in list(pending.items()):
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        suspects.append((index, item))
                        continue
                    yield index, _result(outcome)
                pending.clear()
                pool = _replace_pool(pool, workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _replace_pool(pool: ProcessPoolExecutor, workers: int) -> ProcessPoolExecutor:
    log.warning("a preprocessing worker died; restarting the worker pool")
    pool.shutdown(wait=True, cancel_futures=True)
    return _pool(workers)


__all__ = [
    "CONTEXT_LENGTH",
    "LOADABLE",
    "audio",
    "load",
    "load_audio",
    "load_parallel",
    "load_vision",
    "text",
    "vision",
]
