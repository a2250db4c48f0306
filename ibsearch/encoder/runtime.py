"""Run ImageBind towers for search: preprocessed batches in, float32 unit vectors out.

:class:`Encoder` loads a tower the first time its modality is encoded (only that tower's weights
are read), picks the device and the compute precision, and runs under ``torch.inference_mode``.
On CPUs with bf16 matrix units (AVX512-BF16 / AMX) and on GPUs it computes in bf16/fp16 through
autocast; ``precision="fp32"`` gives results equal to :meth:`ImageBindModel.embed`. ``"int8"`` (CPUs
only, never chosen by "auto") stores the linear layers' weights as int8 and quantizes their inputs on
the fly (torch's dynamic quantization): a quarter of the weight bytes to read, which is what one short
query costs on a CPU without bf16 units (the huge text tower, random weights, one 6-token text on 2
cores: 524 ms fp32, 83 ms int8 cut like fp32, 47 ms int8 packed; its vector at cosine 0.999 of fp32's).
Results are approximate, as with bf16.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import devices
from ..errors import UsageError
from ..modality import canonical, resolve_modalities
from ..progress import Progress
from .filters import WARNING_FILTERS
from .malloc import retain_freed_memory
from .model.kernels import cpu_flags
from .model.model import ImageBindModel
from .model.towers import Tower

if TYPE_CHECKING:
    from .model.config import ImageBindConfig
    from .weights.cards import ModelCard

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AVX512-BF16 or AMX), where bf16 pays off."""
    return any(flag in cpu_flags() for flag in _CPU_BF16_FLAGS)


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device`` by :func:`ibsearch.devices.resolve_device`'s rule."""
    return torch.device(devices.resolve_device(device))


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> bf16 on GPUs that support it (else fp16), bf16 on CPUs with AVX512-BF16/AMX, else fp32."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise UsageError("precision int8 runs on CPUs only; on a GPU use bf16 or fp16 (or auto)")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def _store_matmul_weights_in(model: nn.Module, dtype: torch.dtype) -> None:
    # Autocast would cast these weights on every call; casting them once gives the same bits and
    # halves their memory. Embeddings, norms and [CLS]/position tensors stay fp32, as autocast
    # leaves them.
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            module.to(dtype)


#: CPU flags of integer dot-product instructions (VNNI, AMX tiles): where oneDNN's int8 products are fast.
_CPU_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: Which of torch's quantized engines prepacks int8 layers: "auto" (:func:`int8_engine`), "fbgemm", "onednn".
ENV_INT8_ENGINE = "IBSEARCH_INT8_ENGINE"
INT8_ENGINES = ("auto", "fbgemm", "onednn")
_ENGINE_SWITCH = threading.Lock()


def int8_engine(modality: str, flags: Collection[str], choice: str = "auto") -> str:
    """The torch quantized engine that prepacks ``modality``'s int8 layers (``choice``, unless "auto").

    A picture or a sound is hundreds of rows per call; on CPUs with VNNI or AMX oneDNN's products are
    the faster ones there (huge towers on a 2-core Xeon with AVX-512 VNNI: vision 2.66x fp32 against
    FBGEMM's 2.03x; audio even, 2.03-2.27x against 1.92-2.37x). A text query is a few rows, where
    FBGEMM's are faster (160 against 190 us per layer).
    Without those instructions FBGEMM everywhere: its layers take 7-bit inputs, whose u8 x s8 pairs
    cannot overflow AVX2's 16-bit sums, where oneDNN's full 8 bits could.
    """
    if choice not in INT8_ENGINES:
        raise UsageError(f"{ENV_INT8_ENGINE}={choice!r} is not one of {', '.join(INT8_ENGINES)}")
    if choice != "auto":
        return choice
    if modality != "text" and any(flag in flags for flag in _CPU_INT8_DOT_FLAGS):
        return "onednn"
    return "fbgemm"


@contextlib.contextmanager
def _quantized_engine(engine: str) -> Iterator[None]:
    """Prepack with ``engine`` (process-wide in torch, so switched under a lock and put back); an
    engine this build of torch lacks (an ARM build has only qnnpack) leaves torch's own choice."""
    with _ENGINE_SWITCH:
        before = torch.backends.quantized.engine
        if engine in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = engine
        try:
            yield
        finally:
            torch.backends.quantized.engine = before


def _quantize_linear_layers(model: ImageBindModel) -> None:
    """Replace ``model``'s linear layers by dynamically quantized int8 ones, in place, each tower's
    prepacked by its :func:`int8_engine` (a layer keeps its engine's kernels whatever is set later).
    Text then takes the packed path (``Tower.exact`` off): the bits of the full 77-token run are
    gone with int8 weights anyway, and packing short texts took one from 72-77 to 47 ms (huge tower,
    2 cores)."""
    import warnings

    choice = os.environ.get(ENV_INT8_ENGINE, "auto").strip() or "auto"
    for modality, tower in model.towers.items():
        engine = _quantized_engine(int8_engine(modality, cpu_flags(), choice))
        with engine, WARNING_FILTERS, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks torch.ao.quantization as deprecated for torchao
            torch.ao.quantization.quantize_dynamic(tower, {nn.Linear}, dtype=torch.qint8, inplace=True)
        if isinstance(tower, Tower):
            tower.exact = False


class Encoder:
    """Encode preprocessed batches of one modality into float32 unit vectors (N, dim).

    ``card`` names the model (a :class:`~ibsearch.encoder.weights.cards.ModelCard`); towers are loaded on
    first use through ``ibsearch.encoder.weights.checkpoint.load_tower_state``. ``device`` is "auto", "cpu"
    or "cuda"; ``precision`` is "auto", "fp32", "bf16", "fp16" or "int8" (CPU). ``batch_size`` bounds how many
    clips go through a tower at once (an item of S clips counts S times). ``checkpoint`` (a local
    file) replaces the card's checkpoint; ``progress`` (see :mod:`ibsearch.progress`) hears about a
    download, a checksum or the one-time split of the checkpoint.
    """

    def __init__(
        self,
        card: ModelCard,
        device: str | torch.device = "auto",
        precision: str = "auto",
        batch_size: int = 16,
        checkpoint: str | Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._setup(card, card.config, card.model_id, checkpoint, progress)
        self._place(device, precision, batch_size)

    def _setup(
        self,
        card: ModelCard | None,
        config: ImageBindConfig,
        model_id: str,
        checkpoint: str | Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.card = card
        self._config = config
        self._model_id = model_id
        self._towers: dict[str, ImageBindModel] = {}
        self._checkpoint = checkpoint
        self._progress = progress

    def _place(
        self, device: str | torch.device = "auto", precision: str = "auto", batch_size: int = 16
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        if self.device.type == "cpu":
            retain_freed_memory()  # the forward's activations would otherwise page-fault afresh

    @classmethod
    def from_model(cls, model: ImageBindModel, *, model_id: str = "in-memory", **placement: Any) -> Encoder:
        """An Encoder over the towers of an already built ``model`` (tests, benchmarks).

        The Encoder takes the model over: it moves it to the device and, for bf16/fp16, stores its
        matrix weights in that precision. Pass a copy if the original must stay as it is. Only the
        model's towers can be encoded. ``placement``: ``device``, ``precision`` and ``batch_size``, as
        for the constructor.
        """
        self = cls.__new__(cls)
        self._setup(None, model.config, model_id)
        self._place(**placement)
        self._adopt(model)
        return self

    @property
    def dim(self) -> int:
        """Width of the vectors this encoder returns."""
        return self._config.out_embed_dim

    @property
    def model_id(self) -> str:
        """Identifier of the model (stored with a library so it is not searched with another one)."""
        return self._model_id

    @property
    def loaded_modalities(self) -> list[str]:
        """Modalities whose towers are in memory, in ImageBind's order."""
        return resolve_modalities(self._towers) if self._towers else []

    def _adopt(self, model: ImageBindModel) -> None:
        model.eval().requires_grad_(False).to(self.device)
        if self.precision in _DTYPES:
            _store_matmul_weights_in(model, _DTYPES[self.precision])
        elif self.precision == "int8":
            _quantize_linear_layers(model)
        for modality in model.modalities:
            self._towers[modality] = model

    def load(self, modalities: Iterable[str] | str) -> None:
        """Load the towers of ``modalities`` now (reading only their weights); loaded ones are skipped."""
        wanted = [m for m in resolve_modalities(modalities) if m not in self._towers]
        if not wanted:
            return
        if self.card is None:
            raise UsageError(
                f"this encoder was built from an in-memory model without the {', '.join(wanted)} tower(s)"
            )
        from .weights.checkpoint import load_tower_state  # imported late: download and split machinery

        started = time.perf_counter()
        state = load_tower_state(self.card, wanted, self._checkpoint, self._progress)
        model = ImageBindModel.from_reference(state, self.card.config, wanted)
        del state
        self._adopt(model)
        elapsed = time.perf_counter() - started
        log.info("loaded %s tower(s) of %s in %.1f s", ", ".join(wanted), self.model_id, elapsed)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision in _DTYPES:
            return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])
        return contextlib.nullcontext()

    def _chunks(self, batch: torch.Tensor) -> Iterator[torch.Tensor]:
        # A video item is 15 clips: count clips, not items, so memory stays bounded.
        clips_per_item = batch.shape[1] if batch.ndim >= 5 else 1
        step = max(1, self.batch_size // max(1, clips_per_item))
        for start in range(0, batch.shape[0], step):
            yield batch[start : start + step]

    def encode(self, modality: str, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """Encode one preprocessed batch (numpy or torch): (N, ...) as from ``preprocess`` -> (N, dim).

        Shapes per item: vision (3, 224, 224) or clips (S, 3, 2, 224, 224); text (77,) int64; audio
        (S, 1, 128, 204); depth and thermal (1, 224, 224); imu (6, 2000). Clip outputs are
        averaged and re-normalized.
        """
        modality = canonical(modality)
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        if not isinstance(batch, torch.Tensor):
            raise UsageError(
                f"encode() takes a numpy array or torch.Tensor batch, got {type(batch).__name__}"
            )
        if modality not in self._towers:
            self.load([modality])
        model = self._towers[modality]
        if batch.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with torch.inference_mode(), self._autocast():
            for chunk in self._chunks(batch):
                chunk = chunk.to(self.device, non_blocking=True)
                parts.append(model.embed({modality: chunk})[modality].float().cpu())
        return torch.cat(parts).numpy()


__all__ = ["Encoder", "cpu_flags", "cpu_has_fast_bf16", "resolve_device", "resolve_precision"]
