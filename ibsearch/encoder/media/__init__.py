"""Media decoding: files in, tower input items out, one loader per (file kind, modality).

``registry`` is the table of loaders; ``detect`` decides a file's kind from its bytes; the decoders
are ``images``, ``decode`` + ``audio_dsp`` (sound), ``video`` + ``video_frames``, ``sensors`` (depth,
thermal, IMU) and ``text`` + ``tokenizer``; ``audio_segments`` cuts long sound into timestamped
windows; ``probe`` reads cheap facts from headers; ``pool`` decodes in worker processes. Submodules
load on import, so importing this package costs nothing.
"""

#: Seconds a decoding worker may spend on one file before it is given up on (``ingest --timeout``).
DECODE_TIMEOUT = 300.0
