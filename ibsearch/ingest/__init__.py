"""``ibsearch ingest``: walk, skip the unchanged, reuse the renamed, encode the rest, commit in batches.

Order of work for each run:

1. walk the given paths (:mod:`.walk`) and compare each file with the database (:mod:`.plan`): an
   unchanged file costs one stat, a renamed or copied one reuses its stored vectors;
2. hand the rest to the encoder's media-to-vectors call (:func:`ibsearch.encoder.embed.embed_files`);
3. commit finished files to SQLite in batches, each file with all its vectors atomically, then add
   them to the indexes, which are saved when the run ends (:mod:`.commit`).

:mod:`.run` holds the steps a local and a cluster ingest share (write lock, plan, the second hash);
:mod:`.local` is the ingest that runs the model in this process. This package re-exports their names.

This package never imports torch: the encoder is loaded only when some file needs the model.
"""

from __future__ import annotations

from .commit import IngestSummary
from .local import ingest
from .run import LAST_INGEST, Selection, changed_since_hashed, ingest_run, plan_run

__all__ = [
    "LAST_INGEST", "IngestSummary", "Selection", "changed_since_hashed", "ingest", "ingest_run", "plan_run"
]  # fmt: skip
