"""ImageBindModel: the official checkpoint layout, strict loading, and parity with the reference code.

The parity fixtures come from running the reference implementation (scripts/gen_fixtures.py):
random weights for the ``imagebind_tiny`` config in the official key layout, and the reference
forward outputs for inputs of every tower.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_style import ReferenceStyleTower, reference_style_forward
from safetensors.torch import load_file

from ibsearch.encoder.model import kernels, towers
from ibsearch.encoder.model.config import get_config
from ibsearch.encoder.model.keymap import modality_of
from ibsearch.encoder.model.model import ImageBindModel, reference_key_shapes
from ibsearch.errors import ModelError, UsageError

FIXTURES = Path(__file__).parent / "fixtures"
TINY = get_config("imagebind_tiny")


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "model_tiny_weights.safetensors")


@pytest.fixture(scope="module")
def tiny_model(tiny_state: dict[str, torch.Tensor]) -> ImageBindModel:
    return ImageBindModel.from_reference(tiny_state, TINY)


@pytest.fixture(scope="module")
def tiny_io() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "model_tiny_io.npz") as data:
        return {name: data[name] for name in data.files}


def _input(array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    return tensor.float() if tensor.is_floating_point() else tensor


def test_huge_layout_is_exactly_the_official_checkpoint_keys_and_shapes() -> None:
    reference = json.loads((FIXTURES / "reference_keys_huge.json").read_text())
    ours = reference_key_shapes(get_config("imagebind_huge"))
    assert [[key, list(shape)] for key, shape in ours.items()] == reference


def test_huge_layout_has_the_documented_key_and_element_counts() -> None:
    shapes = reference_key_shapes(get_config("imagebind_huge"))
    per_tower = Counter(modality_of(key) for key in shapes)
    assert per_tower == {"vision": 392, "text": 295, "audio": 177, "depth": 177, "thermal": 177, "imu": 93}
    assert sum(math.prod(shape) for shape in shapes.values()) == 1_200_786_990
    assert shapes["modality_preprocessors.imu.imu_stem.proj.weight"] == (512, 48)
    assert shapes["modality_postprocessors.text.1.log_logit_scale"] == ()


def test_huge_model_builds_on_the_meta_device_with_only_the_requested_towers() -> None:
    with torch.device("meta"):
        model = ImageBindModel(get_config("imagebind_huge"), ["text", "image"])
    assert model.modalities == ["vision", "text"]
    assert all(p.is_meta for p in model.parameters())
    assert set(reference_key_shapes(get_config("imagebind_huge"), ["imu"])) == {
        key for key in reference_key_shapes(get_config("imagebind_huge")) if modality_of(key) == "imu"
    }


def test_tiny_fixture_weights_have_the_layout_we_expect(tiny_state: dict[str, torch.Tensor]) -> None:
    expected = reference_key_shapes(TINY)
    assert {key: tuple(t.shape) for key, t in tiny_state.items()} == expected


def test_a_missing_key_is_named_in_the_error(tiny_state: dict[str, torch.Tensor]) -> None:
    state = dict(tiny_state)
    del state["modality_trunks.audio.blocks.1.attn.bias_v"]
    with pytest.raises(ModelError, match=r"missing keys: modality_trunks\.audio\.blocks\.1\.attn\.bias_v"):
        ImageBindModel.from_reference(state, TINY)


def test_an_unexpected_key_is_named_in_the_error(tiny_state: dict[str, torch.Tensor]) -> None:
    state = dict(tiny_state)
    state["modality_trunks.text.blocks.0.attn.bias_k"] = torch.zeros(1, 1, TINY.text_embed_dim)
    with pytest.raises(ModelError, match=r"unexpected keys: modality_trunks\.text\.blocks\.0\.attn\.bias_k"):
        ImageBindModel.from_reference(state, TINY)


def test_a_wrongly_shaped_tensor_is_named_with_both_shapes(tiny_state: dict[str, torch.Tensor]) -> None:
    state = dict(tiny_state)
    state["modality_heads.imu.3.weight"] = torch.zeros(1024, TINY.imu_embed_dim + 1)
    with pytest.raises(
        ModelError, match=r"modality_heads\.imu\.3\.weight \(1024, 17\) \(expected \(1024, 16\)\)"
    ):
        ImageBindModel.from_reference(state, TINY)


def test_a_checkpoint_for_another_config_is_refused(tiny_state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(ModelError, match="wrong shapes"):
        ImageBindModel.from_reference(tiny_state, get_config("imagebind_small"), ["depth"])


def test_a_text_mask_that_is_not_causal_is_refused(tiny_state: dict[str, torch.Tensor]) -> None:
    state = dict(tiny_state)
    state["modality_preprocessors.text.mask"] = torch.zeros(77, 77)
    with pytest.raises(ModelError, match="modality_preprocessors.text.mask"):
        ImageBindModel.from_reference(state, TINY, ["text"])


def test_loading_one_tower_skips_the_other_towers_keys(
    tiny_state: dict[str, torch.Tensor], tiny_model: ImageBindModel
) -> None:
    text_only = ImageBindModel.from_reference(tiny_state, TINY, ["text"])
    assert text_only.modalities == ["text"]
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0], ids[:, 1], ids[:, 2] = 49406, 320, 49407
    assert torch.equal(text_only({"text": ids})["text"], tiny_model({"text": ids})["text"])
    just_its_keys = {k: v for k, v in tiny_state.items() if modality_of(k) == "text"}
    assert ImageBindModel.from_reference(just_its_keys, TINY, "text").modalities == ["text"]


PARITY_CASES = [
    "vision.image",
    "vision.clips",
    "vision.video",
    "text.ids",
    "audio.clips",
    "depth.image",
    "depth.clips",
    "thermal.image",
    "imu.series",
]


@pytest.mark.parametrize("case", PARITY_CASES)
def test_forward_matches_the_reference_implementation(
    case: str, tiny_model: ImageBindModel, tiny_io: dict[str, np.ndarray]
) -> None:
    modality = case.split(".")[0]
    expected = torch.from_numpy(tiny_io[f"{case}.output"]).float()
    with torch.no_grad():
        ours = tiny_model({modality: _input(tiny_io[f"{case}.input"])})[modality]
    assert ours.dtype == torch.float32 and ours.shape == expected.shape
    tolerance = 1e-5 * expected.norm(dim=-1, keepdim=True)
    assert torch.all((ours - expected).abs() <= tolerance), f"max diff {(ours - expected).abs().max():.3g}"


def test_every_fixture_case_is_checked(tiny_io: dict[str, np.ndarray]) -> None:
    cases = {name.rsplit(".", 1)[0] for name in tiny_io}
    assert cases == set(PARITY_CASES)


def test_embed_returns_float32_unit_vectors(
    tiny_model: ImageBindModel, tiny_io: dict[str, np.ndarray]
) -> None:
    for case in ("vision.video", "text.ids", "audio.clips", "imu.series"):
        modality = case.split(".")[0]
        with torch.no_grad():
            vectors = tiny_model.embed({modality: _input(tiny_io[f"{case}.input"])})[modality]
        assert vectors.dtype == torch.float32
        assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(vectors)), atol=1e-6)


def test_outputs_are_scaled_per_modality_as_in_the_reference(tiny_model: ImageBindModel) -> None:
    inputs = {"depth": torch.randn(2, 1, 224, 224), "thermal": torch.randn(2, 1, 224, 224)}
    with torch.no_grad():
        outputs = tiny_model(inputs)
    assert torch.allclose(outputs["depth"].norm(dim=-1), torch.full((2,), 5.0))
    assert torch.allclose(outputs["thermal"].norm(dim=-1), torch.full((2,), 10.0))


def test_a_lone_video_clip_must_be_wrapped_as_a_clip_list(tiny_model: ImageBindModel) -> None:
    with pytest.raises(UsageError, match=r"\(B, 1, 3, T, H, W\)"):
        tiny_model({"vision": torch.zeros(1, 3, 2, 224, 224)})


def test_wrong_input_shapes_and_dtypes_are_usage_errors(tiny_model: ImageBindModel) -> None:
    with pytest.raises(UsageError, match=r"expected \(B, 6, 2000\)"):
        tiny_model({"imu": torch.zeros(1, 2000, 6)})
    with pytest.raises(UsageError, match="integer token ids"):
        tiny_model({"text": torch.zeros(1, 77)})


def test_a_tower_that_was_not_built_cannot_be_used() -> None:
    model = ImageBindModel(TINY, ["audio"])
    with pytest.raises(UsageError, match="the vision tower is not loaded"):
        model({"image": torch.zeros(1, 3, 224, 224)})


def test_packed_text_equals_the_padded_batch_and_each_text_alone(
    tiny_model: ImageBindModel, tiny_io: dict[str, np.ndarray]
) -> None:
    # The fixture's texts end at different positions (short, truncated, a literal <|endoftext|>),
    # so packing lays sequences of different lengths end to end.
    ids = _input(tiny_io["text.ids.input"])
    assert len(set(ids.argmax(dim=-1).tolist())) == len(ids)
    tower = tiny_model.towers["text"]
    tower.exact = False
    with torch.no_grad():
        tower.pack = True
        packed = tiny_model({"text": ids})["text"]
        tower.pack = False
        padded = tiny_model({"text": ids})["text"]
        tower.pack = None
        alone = torch.cat([tiny_model({"text": row[None]})["text"] for row in ids])
    tower.exact = True
    tolerance = 1e-6 * padded.norm(dim=-1, keepdim=True)
    assert torch.all((packed - padded).abs() <= tolerance)
    assert torch.all((alone - padded).abs() <= tolerance)


def test_exact_text_gives_the_bits_of_the_full_77_token_run(
    tiny_model: ImageBindModel, tiny_io: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _input(tiny_io["text.ids.input"])
    rows = [ids[i : i + 1] for i in range(len(ids))]
    with torch.no_grad():
        cut = [tiny_model({"text": x})["text"] for x in [ids, *rows]]
        monkeypatch.setattr(towers, "exact_text_length", lambda n, device: 77)
        full = [tiny_model({"text": x})["text"] for x in [ids, *rows]]
    assert all(torch.equal(a, b) for a, b in zip(cut, full, strict=True))


def test_exact_text_at_the_huge_width_gives_the_bits_of_the_reference_style_forward() -> None:
    # The huge text tower's matrix and attention shapes (1024 wide, 16 heads), two blocks: which kernel
    # a product takes depends on its shape and the CPU, not on the depth. Whatever the cut rule picks
    # on this CPU (a multiple of 16 tokens where it was checked, else all 77) must give the bits of
    # the reference's full run; on an AVX-512 Xeon the cut alone gave 1.6e-5 differences here.
    config = dataclasses.replace(get_config("imagebind_huge"), text_num_blocks=2)
    torch.manual_seed(5)
    tower = towers.Tower(towers.tower_specs(config)["text"]).eval()
    ids = torch.randint(1, 49406, (4, 77))
    ends = [3, 17, 40, 70]
    for row, end in zip(ids, ends, strict=True):
        row[0], row[end], row[end + 1 :] = 49406, 49407, 0
    reference = ReferenceStyleTower(tower)
    with torch.no_grad():
        for x in [ids, ids[:3], *(ids[i : i + 1] for i in range(4))]:
            assert torch.equal(tower(x), reference(x)), f"EOTs at {x.argmax(dim=-1).tolist()}"


def test_the_text_cut_is_taken_only_on_the_cpus_and_kernels_it_was_checked_on() -> None:
    epyc = {"fma", "avx", "avx2", "f16c"}
    xeon = epyc | {"avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile"}
    assert kernels.text_cut_checked(epyc, "AVX2", "2.13.0+cpu", {})
    assert not kernels.text_cut_checked(xeon, "AVX512", "2.13.0+cpu", {})
    assert not kernels.text_cut_checked(xeon, "AVX2", "2.13.0+cpu", {"ATEN_CPU_CAPABILITY": "avx2"})
    assert not kernels.text_cut_checked(epyc, "DEFAULT", "2.13.0+cpu", {"ATEN_CPU_CAPABILITY": "default"})
    assert not kernels.text_cut_checked(epyc, "AVX2", "2.13.0+cpu", {"MKL_CBWR": "COMPATIBLE"})
    assert not kernels.text_cut_checked(epyc, "AVX2", "2.13.0+cpu", {"ONEDNN_MAX_CPU_ISA": "SSE41"})
    assert not kernels.text_cut_checked(epyc, "AVX2", "2.14.0", {})
    assert not kernels.text_cut_checked({"sse4_2", "avx"}, "DEFAULT", "2.13.0+cpu", {})
    # The rule in use, with this CPU's flags: where it declines, a short text runs all 77 positions.
    cpu = torch.device("cpu")
    checked = kernels.text_cut_checked(
        kernels.cpu_flags(), torch.backends.cpu.get_cpu_capability(), torch.__version__, os.environ
    )
    assert kernels.exact_text_length(5, cpu) == (16 if checked else 77)
    assert kernels.exact_text_length(70, cpu) == 77


@pytest.mark.parametrize("case", PARITY_CASES)
def test_every_tower_gives_the_bits_of_the_reference_style_forward(
    case: str, tiny_model: ImageBindModel, tiny_io: dict[str, np.ndarray]
) -> None:
    # The reference's own computation (every position through every block, nn.MultiheadAttention,
    # sequence first) on the same torch: the very bits, not a tolerance. The shortcut of a last
    # block that computes only the pooled positions (``exact`` off) is within ~1e-6, not equal.
    modality = case.split(".")[0]
    x = _input(tiny_io[f"{case}.input"])
    tower = tiny_model.towers[modality]
    with torch.no_grad():
        reference = reference_style_forward(tiny_model, modality, x)
        ours = tiny_model({modality: x})[modality]
        tower.exact = False
        try:
            fast = tiny_model({modality: x})[modality]
        finally:
            tower.exact = True
    assert torch.equal(ours, reference), f"max diff {(ours - reference).abs().max():.3g}"
    assert torch.all((fast - reference).abs() <= 1e-6 * reference.norm(dim=-1, keepdim=True))


def test_an_empty_text_batch_gives_no_rows_like_the_other_towers(tiny_model: ImageBindModel) -> None:
    with torch.no_grad():
        out = tiny_model({"text": torch.zeros(0, 77, dtype=torch.long), "imu": torch.zeros(0, 6, 2000)})
    assert out["text"].shape == out["imu"].shape == (0, TINY.out_embed_dim)
