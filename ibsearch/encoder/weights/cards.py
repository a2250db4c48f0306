"""Model cards: which config a model uses and where its weights come from.

A card is data: a registered name (``imagebind_huge``) or a small JSON file such as::

    {"name": "my-imagebind", "config": "imagebind_huge",
     "checkpoint": "weights/imagebind_huge.pth", "sha256": "9f2c..."}

``config`` is a registered config name or a dict of :class:`ImageBindConfig` fields; ``checkpoint``
is a URL or a path (relative paths are taken from the card's folder); ``sha256`` is optional and,
when given, every use of the checkpoint is checked against it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...errors import ModelError
from ..model.config import ImageBindConfig, get_config

#: Where the released ImageBind weights are published (reference README and `imagebind_huge()`).
IMAGEBIND_HUGE_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CARD_FIELDS = ("name", "config", "checkpoint", "sha256", "description")


def is_url(location: str) -> bool:
    """True for an ``http(s)://`` checkpoint location, False for a local path."""
    return urlparse(location).scheme in ("http", "https")


@dataclass(frozen=True)
class ModelCard:
    """A named model: its tower sizes, its checkpoint location (path or URL) and optional checksum."""

    name: str  # shown to users and stored in the library
    config: ImageBindConfig  # tower sizes
    checkpoint: str  # absolute path, or an http(s) URL downloaded into the cache
    sha256: str | None = None  # expected lowercase hex digest of the checkpoint file, if published
    description: str | None = None  # a note for people (e.g. that the weights are random), shown by info

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ModelError(f"a model card needs a non-empty name, got {self.name!r}")
        if self.sha256 is not None:
            digest = self.sha256.strip().lower()
            if not _SHA256.fullmatch(digest):
                raise ModelError(
                    f"model card {self.name!r}: sha256 must be 64 hex digits, got {self.sha256!r}"
                )
            object.__setattr__(self, "sha256", digest)

    @property
    def model_id(self) -> str:
        """A stable id for the library database: the name, plus the checkpoint digest when the card has one.

        Two cards with the same name but different published weights get different ids, so a library
        built with one is not silently searched with the other.
        """
        return self.name if self.sha256 is None else f"{self.name}@sha256:{self.sha256[:16]}"

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-able values (the config written out in full)."""
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "checkpoint": self.checkpoint,
            "sha256": self.sha256,
            **({"description": self.description} if self.description else {}),
        }


_CARDS: dict[str, ModelCard] = {}


def register_card(card: ModelCard) -> None:
    """Make ``card`` resolvable by its name (replacing an earlier card of that name)."""
    _CARDS[card.name] = card


def card_names() -> list[str]:
    """Names of all registered model cards, sorted."""
    return sorted(_CARDS)


register_card(ModelCard("imagebind_huge", get_config("imagebind_huge"), IMAGEBIND_HUGE_URL))


def resolve_model(spec: str | Path | ModelCard) -> ModelCard:
    """Turn a model name, a JSON card path, or a card into a :class:`ModelCard`.

    A string that is a registered card name wins over a file of the same name. Anything else must be
    an existing JSON card; a missing or malformed card is a :class:`ModelError` naming the file and field.
    """
    if isinstance(spec, ModelCard):
        return spec
    text = str(spec)
    if isinstance(spec, str) and text in _CARDS:
        return _CARDS[text]
    path = Path(text).expanduser()
    if path.is_file():
        return load_card(path)
    hint = ""
    try:
        get_config(text)
        hint = (
            f" ({text!r} is a config without published weights: write a JSON model card with "
            f'"config": "{text}" and a "checkpoint")'
        )
    except ModelError:
        pass
    raise ModelError(
        f"unknown model {text!r}: not a registered model ({', '.join(card_names())}) "
        f"and not an existing JSON model card file{hint}"
    )


def load_card(path: str | Path) -> ModelCard:
    """Read a JSON model card; relative checkpoint paths are resolved against the card's folder."""
    path = Path(path).expanduser().absolute()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model card {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read model card {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"model card {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ModelError(f"model card {path} must hold a JSON object with fields {', '.join(_CARD_FIELDS)}")
    unknown = sorted(set(data) - set(_CARD_FIELDS))
    if unknown:
        raise ModelError(
            f"model card {path}: unknown field(s) {', '.join(unknown)}; "
            f"allowed fields are {', '.join(_CARD_FIELDS)}"
        )
    for field in ("name", "config", "checkpoint"):
        if field not in data:
            raise ModelError(f"model card {path}: missing required field {field!r}")

    name = _string(path, data, "name")
    config = _card_config(path, data["config"])
    checkpoint = _string(path, data, "checkpoint")
    if not is_url(checkpoint):
        if "://" in checkpoint:
            raise ModelError(
                f"model card {path}: field 'checkpoint' {checkpoint!r} uses an unsupported URL scheme; "
                "use http(s):// or a file path"
            )
        checkpoint = str((path.parent / Path(checkpoint).expanduser()).absolute())
    sha256 = data.get("sha256")
    if sha256 is not None and not isinstance(sha256, str):
        raise ModelError(f"model card {path}: field 'sha256' must be a string of 64 hex digits or null")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ModelError(f"model card {path}: field 'description' must be a string")
    try:
        return ModelCard(name, config, checkpoint, sha256, description)
    except ModelError as exc:
        raise ModelError(f"model card {path}: {exc}") from None


def save_card(card: ModelCard, path: str | Path) -> Path:
    """Write ``card`` as a JSON model card that :func:`load_card` reads back to an equal card."""
    path = Path(path)
    data = card.to_dict()
    if not is_url(card.checkpoint):
        # Relative to the card's folder when possible, so a folder of card + weights can be moved.
        try:
            data["checkpoint"] = str(Path(card.checkpoint).relative_to(path.parent.absolute()))
        except ValueError:
            pass
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _string(path: Path, data: dict[str, Any], field: str) -> str:
    value = data[field]
    if not isinstance(value, str) or not value.strip():
        raise ModelError(f"model card {path}: field {field!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _card_config(path: Path, value: Any) -> ImageBindConfig:
    if isinstance(value, str):
        try:
            return get_config(value)
        except ModelError as exc:
            raise ModelError(f"model card {path}: field 'config': {exc}") from None
    if isinstance(value, dict):
        defaults = ImageBindConfig()
        for key, given in value.items():
            if hasattr(defaults, key) and not _same_kind(getattr(defaults, key), given):
                raise ModelError(
                    f"model card {path}: field 'config.{key}' must be like {getattr(defaults, key)!r}, "
                    f"got {given!r}"
                )
        try:
            return ImageBindConfig.from_dict(value)
        except ModelError as exc:
            raise ModelError(f"model card {path}: field 'config': {exc}") from None
    raise ModelError(
        f"model card {path}: field 'config' must be a registered config name or an object of "
        f"ImageBindConfig fields, got {value!r}"
    )


def _same_kind(default: Any, given: Any) -> bool:
    """Whether a JSON value fits a config field whose default is ``default`` (bools are not numbers)."""
    if isinstance(given, bool):
        return isinstance(default, bool)
    if isinstance(default, tuple):
        return (
            isinstance(given, list)
            and len(given) == len(default)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in given)
        )
    if isinstance(default, float):
        return isinstance(given, (int, float))
    return isinstance(given, type(default))


__all__ = [
    "IMAGEBIND_HUGE_URL",
    "ModelCard",
    "card_names",
    "is_url",
    "load_card",
    "register_card",
    "resolve_model",
    "save_card",
]
