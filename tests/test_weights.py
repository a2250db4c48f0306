"""Model cards, checkpoint overrides, and per-tower loading from the one-time split (tiny config)."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
import torch

from ibsearch.encoder import get_config
from ibsearch.encoder.model.keymap import modality_of as tower_of
from ibsearch.encoder.model.model import reference_key_shapes
from ibsearch.encoder.weights.cache import ENV_CACHE, ENV_CHECKPOINT, known_sha256
from ibsearch.encoder.weights.cards import IMAGEBIND_HUGE_URL, ModelCard, load_card, resolve_model, save_card
from ibsearch.encoder.weights.checkpoint import checkpoint_path, load_tower_state
from ibsearch.encoder.weights.random_weights import write_random_checkpoint
from ibsearch.errors import ModelError

TINY = get_config("imagebind_tiny")


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(TINY, tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=3)


@pytest.fixture(scope="module")
def tiny_state(tiny_pth: Path) -> dict[str, torch.Tensor]:
    return torch.load(tiny_pth, weights_only=True)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    return tmp_path / "cache"


def _card(checkpoint: Path | str, sha256: str | None = None) -> ModelCard:
    return ModelCard("tiny-test", TINY, str(checkpoint), sha256)


def _write_card(folder: Path, data: object) -> Path:
    path = folder / "card.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# ------------------------------------------------------------------------------------------------ cards


def test_imagebind_huge_resolves_to_the_official_url_and_config():
    card = resolve_model("imagebind_huge")
    assert card.checkpoint == IMAGEBIND_HUGE_URL
    assert card.config == get_config("imagebind_huge")
    assert card.model_id == "imagebind_huge"


def test_a_json_card_with_a_config_name_finds_its_checkpoint_relative_to_the_card(tmp_path):
    (tmp_path / "cards").mkdir()
    path = _write_card(
        tmp_path / "cards", {"name": "mine", "config": "imagebind_tiny", "checkpoint": "w/t.pth"}
    )

    card = resolve_model(path)

    assert (card.name, card.config, card.sha256) == ("mine", TINY, None)
    assert card.checkpoint == str(tmp_path / "cards" / "w" / "t.pth")


def test_a_json_card_may_spell_out_the_config_and_keep_a_url_checkpoint(tmp_path):
    config = TINY.to_dict() | {"text_num_blocks": 3}
    sha = "AB" * 32
    path = _write_card(
        tmp_path, {"name": "x", "config": config, "checkpoint": "https://example.org/x.pth", "sha256": sha}
    )

    card = resolve_model(str(path))

    assert card.config.text_num_blocks == 3 and card.config.kernel_size == (2, 14, 14)
    assert card.checkpoint == "https://example.org/x.pth"
    assert card.sha256 == "ab" * 32
    assert card.model_id == "x@sha256:" + "ab" * 8


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ('{"name": "x", "config": "imagebind_tiny",', "line 1"),
        ("[1, 2]", "JSON object"),
        ({"name": "x", "config": "imagebind_tiny", "checkpoint": "a.pth", "url": "u"}, "url"),
        ({"name": "x", "config": "imagebind_tiny"}, "'checkpoint'"),
        ({"name": "x", "config": "imagebind_giant", "checkpoint": "a.pth"}, "imagebind_giant"),
        ({"name": "x", "config": {"vision_width": 3}, "checkpoint": "a.pth"}, "vision_width"),
        (
            {"name": "x", "config": {"text_num_blocks": "many"}, "checkpoint": "a.pth"},
            "config.text_num_blocks",
        ),
        ({"name": "x", "config": 7, "checkpoint": "a.pth"}, "'config'"),
        ({"name": "", "config": "imagebind_tiny", "checkpoint": "a.pth"}, "'name'"),
        ({"name": "x", "config": "imagebind_tiny", "checkpoint": "a.pth", "sha256": "abc"}, "sha256"),
        ({"name": "x", "config": "imagebind_tiny", "checkpoint": "s3://b/a.pth"}, "s3://"),
    ],
)
def test_a_bad_card_is_a_model_error_naming_the_file_and_the_field(tmp_path, content, named):
    path = _write_card(tmp_path, content)
    with pytest.raises(ModelError) as info:
        load_card(path)
    assert str(path) in str(info.value) and named in str(info.value)


def test_a_missing_card_or_unknown_name_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_card(tmp_path / "nope.json")
    with pytest.raises(ModelError, match="imagebind_huge"):
        resolve_model(str(tmp_path / "nope.json"))
    with pytest.raises(ModelError, match="config without published weights"):
        resolve_model("imagebind_tiny")


def test_a_saved_card_reads_back_equal_with_a_relative_checkpoint(tmp_path):
    card = _card(tmp_path / "weights" / "t.pth", "0f" * 32)
    path = save_card(card, tmp_path / "card.json")
    assert json.loads(path.read_text())["checkpoint"] == "weights/t.pth"
    assert load_card(path) == card


# ------------------------------------------------------------------------------------ random checkpoint


def test_a_random_checkpoint_has_the_reference_layout_and_sane_values(tiny_state):
    shapes = reference_key_shapes(TINY)
    assert list(tiny_state) == list(shapes)
    assert {k: tuple(v.shape) for k, v in tiny_state.items()} == shapes
    mask = tiny_state["modality_preprocessors.text.mask"]
    assert torch.equal(mask, torch.full((77, 77), float("-inf")).triu(1))
    scales = {
        m: tiny_state[f"modality_postprocessors.{m}.1.log_logit_scale"].item() for m in ("text", "audio")
    }
    assert scales == pytest.approx({"text": math.log(1 / 0.07), "audio": math.log(20)})
    gain = tiny_state["modality_trunks.vision.blocks.0.norm_1.weight"]
    assert abs(gain.mean().item() - 1) < 0.02
    assert tiny_state["modality_trunks.text.blocks.1.mlp.fc1.weight"].std().item() == pytest.approx(
        0.02, rel=0.1
    )


def test_random_values_depend_only_on_seed_and_key(tmp_path, tiny_state):
    text_only = torch.load(write_random_checkpoint(TINY, tmp_path / "t.pth", seed=3, modalities="text"))
    assert set(text_only) == {k for k in tiny_state if tower_of(k) == "text"}
    assert all(torch.equal(v, tiny_state[k]) for k, v in text_only.items())
    other = torch.load(write_random_checkpoint(TINY, tmp_path / "o.pth", seed=4, modalities="text"))
    assert not torch.equal(
        other["modality_preprocessors.text.pos_embed"], text_only["modality_preprocessors.text.pos_embed"]
    )


# --------------------------------------------------------------------------------------- tower loading


def _split_files(cache: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(cache.glob("towers/*/*"))}


def test_loading_towers_returns_exactly_their_keys_with_equal_tensors(tiny_pth, tiny_state, cache):
    state = load_tower_state(_card(tiny_pth), ["text", "audio"], progress=False)

    expected = [k for k in tiny_state if tower_of(k) in ("text", "audio")]
    assert list(state) == expected  # official order, all four sections of both towers
    assert {k.split(".")[0] for k in state} == {
        "modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors"
    }  # fmt: skip
    for key in expected:
        assert state[key].dtype == tiny_state[key].dtype and torch.equal(state[key], tiny_state[key])
    folder = cache / "towers" / known_sha256(tiny_pth)
    assert sorted(p.name for p in folder.glob("*.safetensors")) == sorted(f"{m}.safetensors" for m in
        ("vision", "text", "audio", "depth", "thermal", "imu"))  # fmt: skip


def test_a_second_load_reuses_the_split_files(tiny_pth, cache):
    load_tower_state(_card(tiny_pth), "vision", progress=False)
    before = _split_files(cache)
    load_tower_state(_card(tiny_pth), ["vision", "imu"], progress=False)
    assert _split_files(cache) == before and before


def test_a_text_only_load_does_not_touch_the_vision_file(tiny_pth, tiny_state, cache):
    card = _card(tiny_pth)
    load_tower_state(card, "depth", progress=False)
    vision_file = next(cache.glob("towers/*/vision.safetensors"))
    vision_file.unlink()

    state = load_tower_state(card, "text", progress=False)

    assert all(torch.equal(v, tiny_state[k]) for k, v in state.items())
    assert not vision_file.exists()  # neither read nor re-created
    vision = load_tower_state(card, "image", progress=False)  # a missing file is re-created when needed
    assert vision_file.exists() and set(vision) == {k for k in tiny_state if tower_of(k) == "vision"}


def test_a_safetensors_checkpoint_is_read_directly_without_a_split(tmp_path, tiny_state, cache):
    path = write_random_checkpoint(TINY, tmp_path / "tiny.safetensors", seed=3, fmt="safetensors")
    state = load_tower_state(_card(path), "thermal", progress=False)
    assert set(state) == {k for k in tiny_state if tower_of(k) == "thermal"}
    assert all(torch.equal(v, tiny_state[k]) for k, v in state.items())
    assert not (cache / "towers").exists()


def test_IBSEARCH_CHECKPOINT_and_the_checkpoint_argument_override_the_card(tiny_pth, tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    card = _card(f"http://127.0.0.1:{port}/never.pth")  # would fail if it were fetched
    monkeypatch.setenv(ENV_CHECKPOINT, str(tiny_pth))
    assert checkpoint_path(card) == tiny_pth
    assert load_tower_state(card, "imu", progress=False)

    monkeypatch.setenv(ENV_CHECKPOINT, str(tmp_path / "absent.pth"))
    with pytest.raises(ModelError, match=ENV_CHECKPOINT):
        checkpoint_path(card)
    assert checkpoint_path(card, checkpoint=tiny_pth) == tiny_pth  # the CLI's --checkpoint wins


def test_a_checkpoint_that_does_not_match_the_card_sha256_is_refused(tiny_pth):
    with pytest.raises(ModelError, match="expects " + "1" * 64):
        load_tower_state(_card(tiny_pth, "1" * 64), "text", progress=False)
    assert load_tower_state(_card(tiny_pth, known_sha256(tiny_pth)), "text", progress=False)


def test_a_missing_tower_or_a_file_that_is_not_a_checkpoint_is_a_model_error(tmp_path):
    text_only = write_random_checkpoint(TINY, tmp_path / "t.pth", modalities="text")
    with pytest.raises(ModelError, match="no weights for the vision tower"):
        load_tower_state(_card(text_only), "vision", progress=False)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_tower_state(_card(junk), "text", progress=False)
    with pytest.raises(ModelError, match="does not exist"):
        load_tower_state(_card(tmp_path / "gone.pth"), "text", progress=False)


def test_an_unwritable_cache_makes_the_split_a_model_error_saying_what_to_do(tiny_pth, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(ENV_CACHE, str(blocker / "cache"))
    with pytest.raises(ModelError, match=f"cannot split checkpoint .* set {ENV_CACHE}"):
        load_tower_state(_card(tiny_pth), "text", progress=False)
