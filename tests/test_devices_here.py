"""The model and exact search on every device this machine has: the CPU always, a CUDA GPU when torch
sees one. On a GPU machine ``scripts/gpu_check.sh`` runs these (see DEVELOPERS.md)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_index import assert_same_hits, unit

from ibsearch.encoder.model.config import get_config
from ibsearch.encoder.model.model import ImageBindModel
from ibsearch.encoder.runtime import Encoder
from ibsearch.index import FaissIndex, TorchExactIndex

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_the_encoder_at_auto_precision_on_each_device_stays_within_cosine_0_999_of_fp32_on_the_cpu(
    device: str,
) -> None:
    torch.manual_seed(0)
    model = ImageBindModel(get_config("imagebind_tiny"), ["vision", "audio"]).eval()
    exact = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32")
    here = Encoder.from_model(model, device=device, precision="auto")
    assert here.device.type == device and here.precision in ("fp32", "bf16", "fp16")
    g = torch.Generator().manual_seed(5)
    batches = {
        "vision": torch.randn(3, 3, 224, 224, generator=g),
        "audio": torch.randn(3, 3, 1, 128, 204, generator=g),
    }
    for modality, batch in batches.items():
        cosine = (exact.encode(modality, batch) * here.encode(modality, batch)).sum(axis=1)
        assert cosine.min() >= 0.999, (device, here.precision, modality, cosine)


@pytest.mark.parametrize("device", DEVICES)
def test_exact_search_on_each_device_finds_what_faiss_finds(device: str) -> None:
    vectors, queries = unit(5000, seed=3), unit(20, seed=4)
    ids = np.arange(5000, dtype=np.int64) * 3 + 1
    faiss_exact = FaissIndex(vectors.shape[1], model_id="tiny-test")
    faiss_exact.add(ids, vectors)
    here = TorchExactIndex.from_arrays(ids, vectors, device=device)
    for n_queries, allowed in ((1, None), (20, None), (1, ids[::4])):
        assert_same_hits(
            here.search(queries[:n_queries], 10, allowed),
            faiss_exact.search(queries[:n_queries], 10, allowed),
        )
