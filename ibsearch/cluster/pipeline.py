"""The Ray Data pipeline of a cluster ingest: decode on CPU tasks, embed on actors, results back.

Its rows are the planned work of :mod:`ibsearch.encoder.work`, so a cluster computes exactly the
batches a local ingest computes (same files, same batches, same bits on CPU):

- a *batch* row (one planned batch: one tower, one input shape) is decoded by a CPU task, which loads
  each member with the media registry, then encoded by an embedding actor with
  :func:`ibsearch.encoder.embed.encode_batch`;
- a *segments* row (one long file's timestamped segments) is streamed by an actor with
  :func:`ibsearch.encoder.embed.encode_segments`, which decodes as it goes (memory stays at one window).

Every exception of a row is caught inside the function and comes back as that row's error: Ray's
defaults would fail the whole dataset on one bad file. Actors load the model once, from the model
card or the checkpoint each one reads itself; no weights travel through the object store. Ray Data
restarts an actor that dies and retries its rows.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..encoder.work import Batch, FileWork, Segments, Span
from ..errors import IbsearchError, MediaError
from ..modality import FileKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where and how the actors run the model (what ``Library.open`` would be given)."""

    model: str  # a registered model name or a model card's path, as the workers can read it
    checkpoint: str | None = None  # a local checkpoint the workers can read, instead of the card's
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 16
    # torch's CPU threads: a matrix product's bits depend on how many threads share it, so actors use
    # what a local ingest on the driver's machine uses (Ray would give an actor one per CPU it holds).
    threads: int | None = None


@dataclass
class RowResult:
    """What one pipeline row gave: vectors per work index, or errors per work index."""

    row: int
    vectors: dict[int, np.ndarray] = field(default_factory=dict)  # work index -> (dim,) (batch rows)
    errors: dict[int, tuple[str, bool]] = field(default_factory=dict)  # work index -> (reason, transient)
    segments: tuple[list[np.ndarray], list[Span]] | None = None  # (vectors, spans) of a segments row
    whole: np.ndarray | None = None  # the file-level vector a long file's streaming pass computed
    encoded: int = 0


def batch_row(row: int, batch: Batch, works: list[FileWork], remote: dict[int, str]) -> dict[str, Any]:
    """The pipeline row of a planned batch (``remote``: work index -> path as the workers see it)."""
    members = [(i, str(works[i].item.kind), remote[i]) for i in batch.members]
    return {"row": row, "task": pickle.dumps(("batch", batch.modality, members))}


def segments_row(row: int, work: FileWork, modality: str, remote: str) -> dict[str, Any]:
    """The pipeline row of one file's segments of ``modality``."""
    plan = {m: how.value for m, how in work.plan.items()}
    task = ("segments", modality, (work.index, str(work.item.kind), remote, work.result.info, plan))
    return {"row": row, "task": pickle.dumps(task)}


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """CPU task: load the members of a batch row (a segments row passes through to its actor)."""
    from ..encoder.media import registry

    kind, modality, payload = pickle.loads(row["task"])
    if kind != "batch":
        return {"row": row["row"], "task": row["task"], "inputs": b""}
    loaded: dict[int, np.ndarray] = {}
    errors: dict[int, tuple[str, bool]] = {}
    for index, file_kind, source in payload:
        try:
            loaded[index] = registry.load(file_kind, modality, source).numpy()
        except MediaError as exc:
            errors[index] = (exc.reason, exc.transient)
        except Exception as exc:  # a bad file must never fail the job; keep the cause for the report
            errors[index] = (f"unexpected {type(exc).__name__}: {exc}", isinstance(exc, OSError))
    return {"row": row["row"], "task": row["task"], "inputs": pickle.dumps((loaded, errors))}


class Embedder:
    """An embedding actor: one model, loaded on first use and kept for every row it gets.

    :func:`results` makes a subclass carrying the :class:`Placement`, so that Ray ships it with the
    class, not as a constructor argument in the object store (which an actor restart may not find).
    """

    placement: Placement

    def __init__(self) -> None:
        placement = self.placement
        from ..encoder.runtime import Encoder
        from ..encoder.weights.cards import resolve_model

        if placement.threads:
            import torch

            torch.set_num_threads(placement.threads)
        card = resolve_model(placement.model)
        self.encoder = Encoder(
            card,
            device=placement.device,
            precision=placement.precision,
            batch_size=placement.batch_size,
            checkpoint=placement.checkpoint,
        )

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        triples = zip(rows["row"], rows["task"], rows["inputs"], strict=True)
        done = [self._one(int(row), task, inputs) for row, task, inputs in triples]
        return {"row": [r.row for r in done], "result": [pickle.dumps(r) for r in done]}

    def _one(self, row: int, task: bytes, inputs: bytes) -> RowResult:
        kind, modality, payload = pickle.loads(task)
        if kind == "batch":
            return self._batch(row, modality, *pickle.loads(inputs))
        return self._segments(row, modality, payload)

    def _batch(self, row: int, modality: str, loaded: dict[int, np.ndarray], errors: dict) -> RowResult:
        from ..encoder.embed import encode_batch

        result = RowResult(row, errors=dict(errors))
        present = sorted(loaded)
        if present:
            try:
                vectors = encode_batch(self.encoder, modality, [loaded[i] for i in present])
            except IbsearchError as exc:  # the model itself refused the batch: each member fails
                result.errors.update({i: (str(exc), False) for i in present})
                return result
            result.vectors = dict(zip(present, vectors, strict=True))
        return result

    def _segments(self, row: int, modality: str, payload: tuple[Any, ...]) -> RowResult:
        from ..encoder.embed import segment_vectors
        from ..encoder.work import FileVectors, MediaItem

        index, file_kind, source, info, plan = payload
        item = MediaItem(source, FileKind(file_kind), info)
        work = FileWork(
            index, item, FileVectors((), dict(info)), {m: Segments(how) for m, how in plan.items()}
        )
        result = RowResult(row)
        try:
            vectors, spans = segment_vectors(self.encoder, work, modality)
        except MediaError as exc:
            result.errors[index] = (exc.reason, exc.transient)
        except Exception as exc:  # a bad file must never fail the job
            result.errors[index] = (f"unexpected {type(exc).__name__}: {exc}", isinstance(exc, OSError))
        else:
            result.segments = (vectors, spans)
            if modality in work.result.vectors:  # long audio: the pass gave the file-level vector too
                result.whole = work.result.vectors[modality][0]
        result.encoded = work.result.encoded
        return result


def results(
    rows: list[dict[str, Any]], placement: Placement, actors: int, gpus: float
) -> Iterator[RowResult]:
    """Run ``rows`` through the pipeline; yield each row's result as it arrives (any order)."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver reports progress itself (files, rate, errors)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    actor = type("PlacedEmbedder", (Embedder,), {"placement": placement})
    source = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    # Decoding asks for a whole CPU and the actors for a fraction: different resources keep Ray Data
    # from fusing the two stages, so files are decoded on CPU tasks, not inside the actors.
    ds = source.map(decode, num_cpus=1).map_batches(
        actor,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus,
        num_cpus=0 if gpus else 0.5,
    )
    for out in ds.iter_rows():
        yield pickle.loads(out["result"])


__all__ = [
    "Embedder",
    "Placement",
    "RowResult",
    "batch_row",
    "decode",
    "results",
    "segments_row",
]
