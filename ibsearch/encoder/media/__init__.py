"""Media decoding: files in, tower input items out, one loader per (file kind, modality).

``registry`` is the table of loaders; ``detect`` decides a file's kind from its bytes. The decoders are
``images``, ``decode`` + ``audio_dsp`` (sound), ``video`` + ``video_frames``, ``sensors`` (depth,
thermal, IMU) + ``imu`` (reading and resampling only the IMU window the tower uses), and ``text`` +
``tokenizer``; ``audio_segments`` cuts long sound into timestamped windows; ``probe`` reads cheap
facts from headers; ``pool`` decodes in worker processes. Submodules load on import, so importing
this package costs nothing.
"""

#: Seconds a decoding worker may spend on one file before it is given up on (``ingest --timeout``).
DECODE_TIMEOUT = 300.0
