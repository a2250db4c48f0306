"""Encoder: precision handling, exactness of the fp32 path, and towers built only on demand."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from ibsearch.encoder.model.config import get_config
from ibsearch.encoder.model.model import ImageBindModel
from ibsearch.encoder.runtime import Encoder, cpu_has_fast_bf16, resolve_device, resolve_precision
from ibsearch.encoder.weights.cache import ENV_CACHE
from ibsearch.encoder.weights.cards import ModelCard
from ibsearch.encoder.weights.random_weights import write_random_checkpoint
from ibsearch.errors import UsageError

TINY = get_config("imagebind_tiny")


def _inputs(n: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1, 49406, (n, 77), generator=g)
    ids[:, 0] = 49406
    ids[torch.arange(n), (torch.arange(n) * 20 + 5) % 77] = 49407
    return {
        "vision": torch.randn(n, 3, 224, 224, generator=g),
        "text": ids,
        "audio": torch.randn(n, 3, 1, 128, 204, generator=g),
        "depth": torch.randn(n, 1, 224, 224, generator=g),
        "thermal": torch.randn(n, 1, 224, 224, generator=g),
        "imu": torch.randn(n, 6, 2000, generator=g),
    }


@pytest.fixture(scope="module")
def model() -> ImageBindModel:
    torch.manual_seed(0)
    return ImageBindModel(TINY).eval()


def test_fp32_encoding_equals_model_embed_exactly(model: ImageBindModel) -> None:
    encoder = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32")
    inputs = _inputs()
    with torch.no_grad():
        expected = model.embed(inputs)
    for modality, batch in inputs.items():
        vectors = encoder.encode(modality, batch)
        assert vectors.dtype == np.float32 and vectors.shape == (3, TINY.out_embed_dim)
        np.testing.assert_array_equal(vectors, expected[modality].numpy())


def test_bf16_autocast_stays_within_cosine_0_999_of_fp32(model: ImageBindModel) -> None:
    fp32 = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32")
    bf16 = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="bf16")
    for modality, batch in _inputs().items():
        exact, fast = fp32.encode(modality, batch), bf16.encode(modality, batch)
        assert fast.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
        cosine = (exact * fast).sum(axis=1)
        assert cosine.min() >= 0.999, (modality, cosine)


def test_int8_quantizes_the_linear_layers_on_cpus_and_stays_close_to_fp32(model: ImageBindModel) -> None:
    fp32 = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32")
    int8 = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="int8")
    qkv = int8._towers["text"].towers["text"].blocks[0].attn.qkv
    assert type(qkv).__name__ == "Linear" and type(qkv).__module__.startswith("torch.ao.nn.quantized")
    assert int8._towers["text"].towers["text"].exact is False  # int8 text takes the packed path
    for modality, batch in _inputs().items():
        exact, fast = fp32.encode(modality, batch), int8.encode(modality, batch)
        assert fast.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
        cosine = (exact * fast).sum(axis=1)
        assert cosine.min() >= 0.98, (modality, cosine)  # approximate: a quarter of the weight bits
    with pytest.raises(UsageError, match="int8 runs on CPUs only"):
        resolve_precision("int8", torch.device("cuda"))
    assert resolve_precision("auto", torch.device("cpu")) != "int8"  # never chosen by itself


def test_bf16_stores_matrix_weights_in_bf16_and_keeps_norms_in_fp32(model: ImageBindModel) -> None:
    encoder = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="bf16")
    tower = encoder._towers["audio"].towers["audio"]
    assert tower.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert tower.stem.weight.dtype == torch.bfloat16
    assert tower.head_norm.weight.dtype == torch.float32
    assert tower.pos_embed.dtype == torch.float32


def test_clip_inputs_come_back_renormalized_to_unit_length(model: ImageBindModel) -> None:
    encoder = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32")
    clips = torch.randn(2, 3, 3, 2, 224, 224)
    vectors = encoder.encode("video", clips)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_batches_larger_than_batch_size_are_split_without_changing_results(model: ImageBindModel) -> None:
    whole = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32", batch_size=64)
    split = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32", batch_size=2)
    batch = _inputs(5)["imu"]
    np.testing.assert_allclose(split.encode("imu", batch), whole.encode("imu", batch), atol=1e-6)
    clips = _inputs(3)["audio"]  # 3 clips per item: batch_size 2 means one item per step
    np.testing.assert_allclose(split.encode("audio", clips), whole.encode("audio", clips), atol=1e-6)
    assert split.encode("imu", batch[:0]).shape == (0, TINY.out_embed_dim)


def test_only_the_requested_towers_are_built() -> None:
    model = ImageBindModel(TINY, ["text", "imu"])
    assert model.modalities == ["text", "imu"]
    assert {name.split(".")[1] for name in model.state_dict()} == {"text", "imu"}
    encoder = Encoder.from_model(model, device="cpu", precision="fp32")
    assert encoder.loaded_modalities == ["text", "imu"]
    assert encoder.dim == TINY.out_embed_dim
    with pytest.raises(UsageError, match="vision"):
        encoder.encode("image", torch.zeros(1, 3, 224, 224))


def test_auto_precision_follows_the_cpu_and_bad_values_are_refused() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(UsageError, match="precision 'int4'"):  # int8 became a precision (CPUs)
        resolve_precision("int4", cpu)
    with pytest.raises(UsageError, match="device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"


def test_towers_load_lazily_from_a_model_card_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    path = write_random_checkpoint(TINY, tmp_path / "tiny.pth", seed=3)
    encoder = Encoder(
        ModelCard("tiny-random", TINY, str(path)), device="cpu", precision="fp32", progress=False
    )
    assert encoder.loaded_modalities == [] and encoder.model_id == "tiny-random"
    ids = _inputs(2)["text"]
    vectors = encoder.encode("text", ids)
    assert encoder.loaded_modalities == ["text"]
    reference = ImageBindModel.from_reference(torch.load(path, weights_only=True), TINY, ["text"])
    with torch.no_grad():
        np.testing.assert_array_equal(vectors, reference.embed({"text": ids})["text"].numpy())
    encoder.load(["audio", "text"])
    assert encoder.loaded_modalities == ["text", "audio"]
