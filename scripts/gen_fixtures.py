"""Generate the numeric parity fixtures in tests/fixtures/ by running the REFERENCE ImageBind code.

This script is ours; it imports the reference package (facebookresearch/ImageBind) from a source
folder given by ``--imagebind-src`` or ``$IMAGEBIND_SRC`` and never copies any of it into the repo.
It cannot run in the project venv (the reference needs torchvision/torchaudio/pytorchvideo, which do
not import next to the CPU torch wheel), so it runs in a throwaway scratch venv OUTSIDE the repo.

Scratch environment (what the committed fixtures were made with; see tests/fixtures/README.md)::

    mkdir -p /work/scratch/ImageBind /work/scratch/pytorchvideo-6cdc929 && cd /work/scratch
    git -C <mirror of facebookresearch/ImageBind> archive 53680b02d7e37b19b124fa37bae4b6c98c38f5be \\
        | tar -x -C ImageBind
    git -C <mirror of facebookresearch/pytorchvideo> archive 6cdc929315aab1b5674b6dcf73b16ec99147735f \\
        | tar -x -C pytorchvideo-6cdc929
    python3.11 -m venv refenv
    refenv/bin/pip install torch==2.13.0 numpy pillow ftfy regex einops iopath "setuptools<82" safetensors av
    refenv/bin/pip install --no-deps torchvision==0.29.2 torchaudio==2.11.0 timm==0.9.16 \\
        ./pytorchvideo-6cdc929
    # Those torchvision/torchaudio wheels are CUDA builds whose compiled libraries cannot load next to
    # the CPU torch. Only their pure-Python parts are used (transforms, kaldi fbank, resample):
    SP=refenv/lib/python3.11/site-packages
    for f in $SP/torchvision/*.so $SP/torchaudio/lib/*.so; do mv "$f" "$f.disabled"; done

Run (from the repo root; media must exist first: ``.venv/bin/python scripts/make_test_media.py``)::

    IMAGEBIND_SRC=/work/scratch/ImageBind /work/scratch/refenv/bin/python scripts/gen_fixtures.py
    # or a subset of steps: --steps keys model text vision audio

Everything is seeded; reruns give identical files (up to zip timestamps inside the .npz).
Patches applied in THIS process only (the reference source stays untouched):
  * torchvision's fake-op registrations for its (absent) compiled ops are skipped;
  * ``torch.linspace`` is forced onto the CPU while imagebind_huge is built on the meta device
    (its drop-path schedule calls ``.item()``, which meta tensors cannot do);
  * ``torchaudio.load`` is replaced by a plain RIFF/WAVE reader with torchaudio's float scaling,
    because torchaudio >= 2.9 delegates file reading to torchcodec, which does not work here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SEED = 20240611
QK_GAIN = 2.5  # extra gain of the query/key projections in the random tiny model

# Texts for text_tokens.json; each one exercises a tokenizer rule (cleaning, regex, BPE, truncation).
LONG_TEXT = (
    "A long caption that keeps going: the quick brown fox jumps over the lazy dog while a photographer "
    "on the hill adjusts her tripod, checks the light meter, changes lenses twice, waits for the clouds "
    "to drift past the mountains, and finally takes a picture of the river valley at sunset with "
    "birds flying south, children playing near the old stone bridge and a dog chasing a red ball."
)
TEXT_CASES = [
    "a photo of a dog",
    "A Photo Of A DOG",
    "MiXeD CaSe TeXt wItH CAPS",
    "Crème brûlée at the café in Zürich",
    "naïve résumé façade — “curly quotes” and ‘apostrophes’",
    "e\u0301 combining accent versus é precomposed",
    "東京の夜景",
    "一只猫坐在垫子上",
    "한국어 텍스트",
    "Ελληνικά και русский текст",
    "مرحبا بالعالم",
    "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ １２３",
    "Fish &amp; chips",
    "double escaped &amp;amp; and &amp;lt;tag&amp;gt;",
    "&lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39; &quot;dq&quot; &nbsp;nbsp",
    "dog 🐶 and cat 🐱",
    "family 👩‍👩‍👧 flag 🇫🇷 thumbs 👍🏽",
    "",
    "   ",
    " \t\n\r  \u3000 ",
    "multiple     spaces\tand\nnew\r\nlines",
    LONG_TEXT,
    "a " * 74,
    "a " * 75,
    "a " * 76,
    "room 101, year 2024, pi is 3.14159 and 1,000,000",
    "٣ arabic-indic digit and ½ fraction and ² superscript",
    "it's don't we're they've I'm you'll he'd IT'S DON'T",
    "rock'n'roll o'clock ’curly’s",
    "a photo <|endoftext|> of a bird",
    "<|startoftext|>hello<|endoftext|>world",
    "foo<|endoftext|>bar",
    "<|ENDOFTEXT|> upper-case special token",
    "<|endoftext",
    "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "punctuation!!! ...?? (brackets) [x] {y} #hashtag @mention https://example.com/a?b=c",
    "tabs\tand\u00a0non-breaking\u2009spaces",
    "snake_case_word and kebab-case-word and CamelCaseWord",
]
# Text rows of the model_tiny_io "text.ids" case.
MODEL_TEXTS = ["a photo of a dog", LONG_TEXT, "a photo <|endoftext|> of a bird", "東京の夜景 🐶"]


def import_reference(src: Path) -> None:
    """Put the reference package and our config on sys.path (our package only for its config)."""
    if not (src / "imagebind" / "models" / "imagebind_model.py").is_file():
        sys.exit(f"no reference ImageBind source at {src} (pass --imagebind-src or set IMAGEBIND_SRC)")
    # With its compiled library disabled, torchvision would still try to attach fake kernels to its
    # ops at import time and fail because the ops were never registered.
    real_register_fake = torch.library.register_fake

    def register_fake(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::"):
            return lambda fn: fn
        return real_register_fake(op, *args, **kwargs)

    torch.library.register_fake = register_fake
    sys.path.insert(0, str(src))
    sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------------------------------
# WAV reading in place of torchaudio.load


def read_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Read a RIFF/WAVE file as torchaudio.load(path) returned it: float32 (channels, samples), rate.

    Scaling as torchaudio's normalize=True: uint8 (x-128)/128, int16 x/2**15, int24 x/2**23,
    int32 x/2**31, float32/64 unchanged (cast to float32).
    """
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the real tag starts the sub-format GUID
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            pcm = body
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    width = bits // 8
    pcm = pcm[: len(pcm) // (width * channels) * width * channels]
    if tag == 3 and bits in (32, 64):
        x = np.frombuffer(pcm, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    elif tag == 1 and bits == 8:
        x = (np.frombuffer(pcm, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == 1 and bits == 16:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    elif tag == 1 and bits == 24:
        b = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = (v.astype(np.float64) / float(1 << 23)).astype(np.float32)
    elif tag == 1 and bits == 32:
        x = (np.frombuffer(pcm, dtype="<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    else:
        raise ValueError(f"{path}: unsupported WAV format tag={tag} bits={bits}")
    return torch.from_numpy(x.reshape(-1, channels).T.copy()), rate


# ----------------------------------------------------------------------------------------------------
# Step 1: key layout of imagebind_huge, random tiny model and its forward outputs


def build_huge_on_meta():
    from imagebind.models import imagebind_model

    real_linspace = torch.linspace

    def cpu_linspace(*args, **kwargs):
        kwargs["device"] = "cpu"
        return real_linspace(*args, **kwargs)

    torch.linspace = cpu_linspace
    try:
        with torch.device("meta"):
            return imagebind_model.imagebind_huge(pretrained=False)
    finally:
        torch.linspace = real_linspace


def write_keys(out: Path) -> None:
    sd = build_huge_on_meta().state_dict()
    dtypes = {str(v.dtype) for v in sd.values()}
    assert dtypes == {"torch.float32"}, dtypes
    lines = [json.dumps([k, list(v.shape)]) for k, v in sd.items()]
    (out / "reference_keys_huge.json").write_text("[\n" + ",\n".join(lines) + "\n]\n")
    print(f"reference_keys_huge.json: {len(sd)} keys, {sum(v.numel() for v in sd.values()):,} elements")


@torch.no_grad()
def randomize_(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Overwrite every float parameter with seeded values that keep activations O(1).

    Buffers (text causal mask, fixed logit scales) keep the reference values.
    """
    ln_params = set()
    for mod in model.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            ln_params.update({id(mod.weight), id(mod.bias)})
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if name.endswith("log_logit_scale"):
            p.fill_(math.log(30.0))
        elif id(p) in ln_params:
            p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
        elif "token_embedding" in name or "pos_embed" in name:
            p.copy_(0.5 * noise)
        elif name.endswith(("cls_token", "bias_k", "bias_v")):
            p.copy_(noise)
        elif p.ndim == 1:  # linear / attention biases
            p.copy_(0.1 * noise)
        else:  # linear, conv and packed in-projection weights: unit gain w.r.t. fan-in
            p.copy_(noise / math.sqrt(p[0].numel()))
            if name.endswith("in_proj_weight"):
                # Peaked attention: with unit-gain q/k every token attends almost uniformly, so the
                # pooled token barely depends on the input (rows of a batch had cosine ~0.99).
                p[: 2 * p.shape[1]] *= QK_GAIN


def quantized_normal(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """N(0,1) values on a 1/32 grid within [-4, 4]: exact in float16 and compact in the npz."""
    x = torch.randn(shape, generator=gen).mul(32).round().clamp(-128, 128).div(32)
    return x


def write_tiny_model(out: Path) -> None:
    from imagebind import data
    from imagebind.models.imagebind_model import ImageBindModel
    from safetensors.torch import save_file

    from ibsearch.encoder.model.config import get_config

    gen = torch.Generator().manual_seed(SEED)
    model = ImageBindModel(**asdict(get_config("imagebind_tiny")))
    randomize_(model, gen)
    model.eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model_tiny_weights.safetensors"), metadata={"config": "imagebind_tiny"})
    print(f"model_tiny_weights.safetensors: {len(sd)} keys")

    cases = {
        "vision.image": ("vision", quantized_normal(gen, 2, 3, 224, 224)),
        "vision.clips": ("vision", quantized_normal(gen, 2, 2, 3, 224, 224)),
        "vision.video": ("vision", quantized_normal(gen, 2, 2, 3, 2, 224, 224)),
        "text.ids": ("text", data.load_and_transform_text(MODEL_TEXTS, "cpu")),
        "audio.clips": ("audio", quantized_normal(gen, 2, 3, 1, 128, 204)),
        "depth.image": ("depth", quantized_normal(gen, 2, 1, 224, 224)),
        "depth.clips": ("depth", quantized_normal(gen, 2, 2, 1, 224, 224)),
        "thermal.image": ("thermal", quantized_normal(gen, 2, 1, 224, 224)),
        "imu.series": ("imu", quantized_normal(gen, 2, 6, 2000)),
    }
    arrays = {}
    with torch.no_grad():
        for case, (modality, x) in cases.items():
            y = model({modality: x})[modality]
            assert torch.isfinite(y).all(), case
            stored = x.numpy() if x.dtype == torch.int64 else x.to(torch.float16).numpy()
            assert np.array_equal(stored.astype(x.numpy().dtype), x.numpy()), case
            arrays[f"{case}.input"] = stored
            arrays[f"{case}.output"] = y.numpy().astype(np.float32)
            norms = y.norm(dim=-1).numpy().round(4).tolist()
            print(f"  {case}: input {tuple(x.shape)} {stored.dtype} -> output {tuple(y.shape)} norms {norms}")
    np.savez_compressed(out / "model_tiny_io.npz", **arrays)


# ----------------------------------------------------------------------------------------------------
# Steps 2-4: tokenizer ids, image and audio preprocessing


def write_text_tokens(out: Path) -> None:
    from imagebind import data

    rows = []
    for text in TEXT_CASES:
        ids = data.load_and_transform_text([text], "cpu")[0]
        assert ids.shape == (77,) and ids.dtype == torch.int64
        rows.append(json.dumps({"text": text, "ids": ids.tolist()}, ensure_ascii=False))
    (out / "text_tokens.json").write_text("[\n" + ",\n".join(rows) + "\n]\n", encoding="utf-8")
    print(f"text_tokens.json: {len(rows)} texts")


def write_vision(out: Path, media: Path) -> None:
    from imagebind import data

    arrays = {}
    for path in sorted((media / "images").iterdir()):
        x = data.load_and_transform_vision_data([str(path)], "cpu")[0]
        assert x.shape == (3, 224, 224) and torch.isfinite(x).all(), path
        arrays[path.name] = x.numpy().astype(np.float32)
        print(f"  {path.name}: mean {x.mean():+.4f}")
    np.savez_compressed(out / "vision_preprocess.npz", **arrays)


def write_audio(out: Path, media: Path) -> None:
    import torchaudio
    from imagebind import data

    torchaudio.load = read_wav  # torchcodec-backed load does not work here; see module docstring
    arrays = {}
    for path in sorted((media / "audio").glob("*.wav")):
        x = data.load_and_transform_audio_data([str(path)], "cpu")[0]
        assert x.shape == (3, 1, 128, 204) and torch.isfinite(x).all(), path
        arrays[path.name] = x.numpy().astype(np.float32)
        print(f"  {path.name}: clip means {[round(float(c.mean()), 4) for c in x]}")
    np.savez_compressed(out / "audio_preprocess.npz", **arrays)


STEPS = ("keys", "model", "text", "vision", "audio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imagebind-src", type=Path, default=os.environ.get("IMAGEBIND_SRC"))
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    parser.add_argument("--media", type=Path, default=REPO / "tests" / "data")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    args = parser.parse_args()
    if args.imagebind_src is None:
        sys.exit("pass --imagebind-src or set IMAGEBIND_SRC to the reference ImageBind source folder")
    import_reference(args.imagebind_src.resolve())
    torch.manual_seed(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    if "keys" in args.steps:
        write_keys(args.out)
    if "model" in args.steps:
        write_tiny_model(args.out)
    if "text" in args.steps:
        write_text_tokens(args.out)
    if "vision" in args.steps:
        write_vision(args.out, args.media)
    if "audio" in args.steps:
        write_audio(args.out, args.media)
    for f in sorted(args.out.iterdir()):
        print(f"{f.stat().st_size / 1e6:8.3f} MB  {f.name}")


if __name__ == "__main__":
    main()
