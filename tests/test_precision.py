"""Precision int8 in a library: the towers it quantizes, how close they stay to fp32, and what a library
remembers of vectors computed at int8 (through the real CLI, the tiny random-weight model)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_json

from ibsearch.encoder.model.config import get_config
from ibsearch.encoder.model.kernels import cpu_flags
from ibsearch.encoder.model.model import ImageBindModel
from ibsearch.encoder.runtime import ENV_INT8_ENGINE, Encoder, int8_engine
from ibsearch.engine import Library
from ibsearch.errors import UsageError
from ibsearch.ingest.commit import PREPROCESS_VERSION

INT8_VERSION = PREPROCESS_VERSION + "+int8"


def test_int8_vision_and_audio_towers_stay_within_cosine_0_99_of_fp32() -> None:
    torch.manual_seed(0)
    model = ImageBindModel(get_config("imagebind_tiny"), ["vision", "audio"]).eval()
    fp32 = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32")
    int8 = Encoder.from_model(model, device="cpu", precision="int8")
    g = torch.Generator().manual_seed(3)
    batches = {
        "vision": torch.randn(4, 3, 224, 224, generator=g),
        "audio": torch.randn(4, 3, 1, 128, 204, generator=g),
    }
    for modality, batch in batches.items():
        tower = int8._towers[modality].towers[modality]
        fc1 = tower.blocks[0].mlp.fc1
        assert type(fc1).__module__.startswith("torch.ao.nn.quantized"), (modality, type(fc1))
        cosine = (fp32.encode(modality, batch) * int8.encode(modality, batch)).sum(axis=1)
        assert cosine.min() >= 0.99, (modality, cosine)


def test_the_int8_engine_follows_the_tower_and_the_cpu_s_integer_dot_products() -> None:
    vnni = {"avx2", "fma", "avx512f", "avx512_vnni"}
    assert int8_engine("vision", vnni) == int8_engine("audio", {"avx2", "amx_int8"}) == "onednn"
    assert int8_engine("thermal", {"avx2", "avx_vnni"}) == "onednn"
    assert int8_engine("text", vnni) == "fbgemm"  # a query is a few rows, where FBGEMM is the faster
    assert int8_engine("vision", {"avx2", "fma"}) == "fbgemm"  # no VNNI: 7-bit inputs, no 16-bit overflow
    assert int8_engine("vision", {"avx2"}, "onednn") == int8_engine("text", vnni, "onednn") == "onednn"
    with pytest.raises(UsageError, match="IBSEARCH_INT8_ENGINE='mkl' is not one of auto, fbgemm, onednn"):
        int8_engine("vision", vnni, "mkl")


def _token_ids(n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` texts of random tokens between a start and an end token, of different lengths."""
    ids = torch.randint(1, 49406, (n, 77), generator=g)
    ids[:, 0] = 49406
    ids[torch.arange(n), torch.arange(n) * 20 + 5] = 49407
    return ids


def test_each_int8_engine_stays_close_to_fp32_and_auto_prepacks_each_tower_with_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = ImageBindModel(get_config("imagebind_tiny"), ["vision", "text"]).eval()
    g = torch.Generator().manual_seed(5)
    inputs = {
        "vision": torch.randn(3, 3, 224, 224, generator=g),
        "text": _token_ids(3, g),
    }
    exact = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="fp32")
    engine_before = torch.backends.quantized.engine
    vectors = {}
    for choice in ("fbgemm", "onednn", "auto"):
        monkeypatch.setenv(ENV_INT8_ENGINE, choice)
        encoder = Encoder.from_model(copy.deepcopy(model), device="cpu", precision="int8")
        vectors[choice] = {m: encoder.encode(m, batch) for m, batch in inputs.items()}
    for choice in ("fbgemm", "onednn"):
        for modality, batch in inputs.items():
            cosine = (exact.encode(modality, batch) * vectors[choice][modality]).sum(axis=1)
            assert cosine.min() >= 0.99, (choice, modality, cosine)
    assert torch.backends.quantized.engine == engine_before  # switched for the prepacking only
    assert not np.array_equal(vectors["fbgemm"]["vision"], vectors["onednn"]["vision"])  # the variable took
    for modality in inputs:  # auto: each tower exactly as its chosen engine computes it
        chosen = int8_engine(modality, cpu_flags())
        assert np.array_equal(vectors["auto"][modality], vectors[chosen][modality]), (modality, chosen)
    monkeypatch.setenv(ENV_INT8_ENGINE, "mkl")
    with pytest.raises(UsageError, match="IBSEARCH_INT8_ENGINE"):
        Encoder.from_model(copy.deepcopy(model), device="cpu", precision="int8")


def _versions(lib_args: list[str]) -> dict[str, set[str]]:
    """Each stored file's vector versions, read from the database."""
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        return {
            path: {v.preprocess_version for v in lib.store.vectors.of_file(path)}
            for path in lib.store.files.paths_under("")
        }


def _photo_vector(lib_args: list[str], photo: Path) -> np.ndarray:
    with Library.open(lib_args[1], model=lib_args[3], device="cpu") as lib:
        return next(v.vector for v in lib.store.vectors.of_file(photo) if v.modality == "vision")


def test_an_int8_ingest_is_remembered_and_an_explicit_full_precision_ingest_replaces_its_vectors(
    media_dir: Path, lib_args: list[str]
) -> None:
    photo = media_dir / "photos" / "photo_640x480.jpg"
    first = run_json("ingest", media_dir, *lib_args, "--precision", "int8")
    assert first["added"] == len(_versions(lib_args)) > 0 and first["encoded"] > 0
    assert all(versions == {INT8_VERSION} for versions in _versions(lib_args).values())
    draft = _photo_vector(lib_args, photo)

    # A plain ingest (auto) of a library whose vectors are int8 keeps them: nothing is encoded again,
    # and a new file is encoded at int8 too, so the library stays of one precision.
    (media_dir / "notes" / "new.txt").write_text("a new note about a red bicycle", encoding="utf-8")
    again = run_json("ingest", media_dir, *lib_args)
    assert again["added"] == 1 and again["encoded"] == 1  # its vector (its one passage reuses it)
    assert _versions(lib_args)[str(media_dir / "notes" / "new.txt")] == {INT8_VERSION}

    # Asked for full precision, an ingest encodes every int8 file again.
    full = run_json("ingest", media_dir, *lib_args, "--precision", "fp32")
    assert full["updated"] == len(_versions(lib_args)) and full["added"] == 0
    assert all(versions == {PREPROCESS_VERSION} for versions in _versions(lib_args).values())
    exact = _photo_vector(lib_args, photo)
    assert float(exact @ draft) >= 0.99  # the int8 vector was close
    with Library.open(lib_args[1], model=lib_args[3], device="cpu", precision="fp32") as lib:
        from ibsearch.encoder import preprocess

        direct = lib.encoder().encode("vision", preprocess.load("vision", str(photo))[None])[0]
    np.testing.assert_allclose(exact, direct, atol=1e-6)  # batched with other photos: other roundings

    # From then on the library is full precision: nothing left to encode, at auto or at fp32.
    assert run_json("ingest", media_dir, *lib_args)["encoded"] == 0
    assert run_json("ingest", media_dir, *lib_args, "--precision", "fp32")["encoded"] == 0


def test_int8_vectors_imported_from_a_shard_keep_their_version_and_the_library_stays_int8(
    media_dir: Path, lib_args: list[str], tmp_path: Path
) -> None:
    notes = media_dir / "notes"
    run_json("ingest", notes, *lib_args, "--precision", "int8")
    shard = tmp_path / "int8.parquet"
    run_json("export", "--output", shard, *lib_args)
    other = ["--library", tmp_path / "other", *lib_args[2:]]
    assert run_json("import", shard, *other)["added"] == len(_versions(lib_args))
    assert all(versions == {INT8_VERSION} for versions in _versions(other).values())

    # The imported library knows its vectors are int8: a new note ingested at auto is computed at int8.
    (notes / "new.txt").write_text("a new note about a red bicycle", encoding="utf-8")
    assert run_json("ingest", notes, *other)["added"] == 1
    assert _versions(other)[str(notes / "new.txt")] == {INT8_VERSION}
