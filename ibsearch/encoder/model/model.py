"""ImageBind as a set of independent towers, loadable from the official checkpoint layout.

:class:`ImageBindModel` holds only the towers it is asked for. Its ``forward`` reproduces the
reference model's outputs (normalized and scaled per modality, clips averaged), ``embed`` gives what
a search index stores (float32 unit vectors). Checkpoints are read in the official key layout
(see :mod:`ibsearch.encoder.model.keymap`) and checked strictly: a wrong file fails loudly, naming keys.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError, UsageError
from ...modality import canonical, resolve_modalities
from .config import ImageBindConfig
from .keymap import TEXT_MASK_KEY, modality_of, reference_keymap
from .towers import TEXT_CONTEXT, Tower, TowerSpec, tower_specs

_SHOW = 8  # keys named in an error message before "... and N more"


def _causal_mask() -> torch.Tensor:
    return torch.full((TEXT_CONTEXT, TEXT_CONTEXT), float("-inf")).triu(1)


def reference_key_shapes(
    config: ImageBindConfig, modalities: Iterable[str] | str | None = None
) -> dict[str, tuple[int, ...]]:
    """The official checkpoint layout for ``config``: reference key -> shape, in state_dict order.

    For ``imagebind_huge`` and all modalities these are the 1311 keys of ``imagebind_huge.pth``.
    With ``modalities`` only those towers' keys are listed. Nothing is allocated (meta device).
    """
    wanted = set(resolve_modalities(modalities))
    return {key: shape for key, shape in _official_layout(config) if modality_of(key) in wanted}


@functools.lru_cache(maxsize=8)
def _official_layout(config: ImageBindConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        model = ImageBindModel(config)
    ours = {name: tuple(t.shape) for name, t in model.towers.state_dict().items()}
    return tuple(
        (ref, (TEXT_CONTEXT, TEXT_CONTEXT) if key is None else ours[key])
        for ref, key in reference_keymap(model.specs, model.modalities).items()
    )


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else "")


class ImageBindModel(nn.Module):
    """The ImageBind towers named in ``modalities`` (default: all six), randomly initialised.

    Use :meth:`from_reference` to load trained weights. Towers live in ``self.towers[modality]``.
    """

    def __init__(self, config: ImageBindConfig, modalities: Iterable[str] | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.specs: dict[str, TowerSpec] = tower_specs(config)
        self.towers = nn.ModuleDict({m: Tower(self.specs[m]) for m in resolve_modalities(modalities)})

    @property
    def modalities(self) -> list[str]:
        """The modalities whose towers this model holds, in ImageBind's order."""
        return list(self.towers.keys())

    @property
    def out_dim(self) -> int:
        """Width of the shared embedding space."""
        return self.config.out_embed_dim

    @classmethod
    def from_reference(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        config: ImageBindConfig,
        modalities: Iterable[str] | str | None = None,
    ) -> ImageBindModel:
        """Build the towers in ``modalities`` from a state_dict in the official ImageBind layout.

        ``state_dict`` may be the full checkpoint (keys of other towers are skipped) or just the
        requested towers' keys. Any missing key, any key outside the official layout and any tensor
        of the wrong shape raises :class:`ModelError` naming the keys. Tensors are used in place
        (cast to float32 when stored in another dtype); the model is returned in eval mode.
        """
        wanted = resolve_modalities(modalities)
        with torch.device("meta"):
            model = cls(config, wanted)
        official = reference_key_shapes(config)
        expected = {key: shape for key, shape in official.items() if modality_of(key) in wanted}

        not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
        if not_tensors:
            raise ModelError(
                f"checkpoint entries {_listing(sorted(not_tensors))} are not tensors; expected a plain "
                "ImageBind state_dict (unwrap it if it is nested under a key such as 'model')"
            )
        missing = [k for k in expected if k not in state_dict]
        # Keys of towers we were not asked for are fine; anything outside the official layout is not.
        unexpected = [k for k in state_dict if k not in expected and k not in official]
        shape_errors = [
            f"{k} {tuple(state_dict[k].shape)} (expected {shape})"
            for k, shape in expected.items()
            if k in state_dict and tuple(state_dict[k].shape) != shape
        ]
        problems = []
        if missing:
            problems.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_listing(unexpected)}")
        if shape_errors:
            problems.append(f"wrong shapes: {_listing(shape_errors)}")
        if problems:
            towers = ", ".join(wanted)
            raise ModelError(
                f"checkpoint does not match the ImageBind layout for towers [{towers}] of this config: "
                + "; ".join(problems)
                + ". Check that the checkpoint and the model config belong together."
            )

        if TEXT_MASK_KEY in expected:
            mask = state_dict[TEXT_MASK_KEY]
            if not mask.is_meta and not torch.equal(mask.float().cpu(), _causal_mask()):
                raise ModelError(
                    f"{TEXT_MASK_KEY} is not the causal mask (-inf above the diagonal, 0 elsewhere) that "
                    "ImageBind's text tower uses; this checkpoint is not supported"
                )

        ours: dict[str, torch.Tensor] = {}
        for ref, key in reference_keymap(model.specs, wanted).items():
            if key is not None:
                tensor = state_dict[ref]
                ours[key] = tensor if tensor.dtype == torch.float32 else tensor.float()
        # assign=True adopts the given tensors instead of copying into meta placeholders.
        model.towers.load_state_dict(ours, strict=True, assign=True)
        return model.eval()

    def _tower(self, modality: str) -> Tower:
        if modality not in self.towers:
            held = ", ".join(self.modalities) or "none"
            raise UsageError(
                f"the {modality} tower is not loaded (this model holds: {held}); "
                f"build or load the model with modalities including {modality!r}"
            )
        tower = self.towers[modality]
        assert isinstance(tower, Tower)
        return tower

    def _check_items(self, spec: TowerSpec, items: torch.Tensor, given: tuple[int, ...]) -> None:
        clip = tuple(items.shape[1:])
        accepted = [spec.clip_shape]
        if spec.stem == "video_conv":
            c, h, w = spec.clip_shape
            accepted += [(c, 1, h, w), (c, self.config.video_frames, h, w)]
        if clip in accepted:
            if spec.stem == "token_embedding" and items.dtype.is_floating_point:
                raise UsageError(f"text input must hold integer token ids, got dtype {items.dtype}")
            return
        want = " or ".join(f"(B, {', '.join(map(str, s))})" for s in accepted)
        hint = ""
        if spec.stem == "video_conv":
            hint = (
                "; 5-d and 6-d inputs are read as (B, S, ...) clips, "
                "so pass a single video clip as (B, 1, 3, T, H, W)"
            )
        raise UsageError(
            f"{spec.modality} input has shape {given}; expected {want}, or (B, S, ...) of such clips{hint}"
        )

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The reference model's outputs: {modality: (B, out_dim)} float32.

        Each input is one batch for one modality: vision (B, 3, 224, 224) images or (B, 3, 2, 224, 224)
        clips; text (B, 77) int64 ids; audio (B, 1, 128, 204); depth/thermal (B, 1, 224, 224); imu
        (B, 6, 2000). An input with 5 or more dims is (B, S, ...) clips per item, encoded separately
        and averaged after normalization and scaling (not re-normalized, as in the reference).
        Vision outputs are unit-norm, the others are scaled (text min(exp(s), 100), audio 20, depth 5,
        thermal 10, imu 5).
        """
        outputs: dict[str, torch.Tensor] = {}
        for name, x in inputs.items():
            modality = canonical(name)
            tower = self._tower(modality)
            given = tuple(x.shape)
            clips = x.ndim >= 5
            if clips:
                x = x.reshape(given[0] * given[1], *given[2:])
            self._check_items(tower.spec, x, given)
            if x.is_floating_point():
                x = x.to(tower.pos_embed.dtype)
            out = tower(x)
            if clips:
                out = out.view(given[0], given[1], out.shape[-1]).mean(dim=1)
            outputs[modality] = out
        return outputs

    def embed(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Like :meth:`forward`, but every row is float32 and L2-normalized: {modality: (B, out_dim)}."""
        return {m: F.normalize(v.float(), dim=-1) for m, v in self.forward(inputs).items()}


__all__ = ["ImageBindModel", "reference_key_shapes", "resolve_modalities"]
