"""The towers' inputs, defined once: the shape of one item for each modality.

The tower specs (:mod:`.model.towers`) build their stems from these numbers and every loader in
:mod:`.media` produces exactly these shapes, so a model and its loaders cannot disagree. They are
fixed by the released model, not by its config.
"""

from __future__ import annotations

from ..modality import AUDIO, DEPTH, IMU, TEXT, THERMAL, VISION

TEXT_CONTEXT = 77  # token ids per text: <|startoftext|>, up to 75 BPE tokens, <|endoftext|>, padding
TEXT_VOCAB = 49408  # BPE vocabulary incl. <|startoftext|> and <|endoftext|>
IMAGE_SIZE = 224  # vision, depth and thermal inputs are square images of this side
CLIP_FRAMES = 2  # frames per vision clip; a still image is repeated to this many
CLIP_SECONDS = 2  # length of one audio or video clip
AUDIO_CLIPS = 3  # 2 s clips per sound
AUDIO_MEL_BINS = 128  # log-mel bins of one audio clip
AUDIO_FRAMES = 204  # spectrogram frames of one audio clip (2 s at a 10 ms hop, padded)
VIDEO_CLIPS = 5  # 2 s clips per video
VIDEO_CROPS = 3  # spatial crops per video clip
IMU_CHANNELS = 6  # accelerometer x y z, gyroscope x y z
IMU_SAMPLES = 2000  # 10 s at 200 Hz

#: One item of each modality, as the loaders produce it (no batch axis). Items with several clips
#: (audio, video) put the clip axis first; the model averages over it.
ITEM_SHAPES: dict[str, tuple[int, ...]] = {
    VISION: (3, IMAGE_SIZE, IMAGE_SIZE),
    TEXT: (TEXT_CONTEXT,),
    AUDIO: (AUDIO_CLIPS, 1, AUDIO_MEL_BINS, AUDIO_FRAMES),
    DEPTH: (1, IMAGE_SIZE, IMAGE_SIZE),
    THERMAL: (1, IMAGE_SIZE, IMAGE_SIZE),
    IMU: (IMU_CHANNELS, IMU_SAMPLES),
}
#: One video's vision input: (clips x crops, channels, frames, height, width).
VIDEO_SHAPE: tuple[int, ...] = (VIDEO_CLIPS * VIDEO_CROPS, 3, CLIP_FRAMES, IMAGE_SIZE, IMAGE_SIZE)

__all__ = [
    "AUDIO_CLIPS",
    "AUDIO_FRAMES",
    "AUDIO_MEL_BINS",
    "CLIP_FRAMES",
    "CLIP_SECONDS",
    "IMAGE_SIZE",
    "IMU_CHANNELS",
    "IMU_SAMPLES",
    "ITEM_SHAPES",
    "TEXT_CONTEXT",
    "TEXT_VOCAB",
    "VIDEO_CLIPS",
    "VIDEO_CROPS",
    "VIDEO_SHAPE",
]
