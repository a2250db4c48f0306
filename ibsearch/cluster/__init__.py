"""Cluster ingest on Ray Data: plan locally, compute on the cluster, commit locally.

The driver walks and compares with the database exactly as a local ingest does (unchanged files cost a
``stat``, renamed and copied files reuse their vectors) and sends only the files that need the model.
The files are planned into the very batches a local ingest would encode (:mod:`ibsearch.encoder.work`),
so vectors and segments are the same (bit for bit on CPU). Results come back to the driver, are
written as Parquet shards in the library (:mod:`.shard_files`) and merged by the single writer as
``ibsearch import`` merges a shard (:func:`ibsearch.transfer.import_shard`); a rerun
after a killed driver merges what was written and computes only the rest.

The driver (:mod:`.driver`) plans, runs the pipeline (:mod:`.pipeline`, gathered by :mod:`.collect`)
and merges the shards. Ray is an optional extra (``pip install 'ibsearch[ray]'``); nothing here
imports it until a cluster ingest starts.
"""

from __future__ import annotations

from .driver import Cluster, ingest_on_ray, parse_path_map, remote_path

__all__ = ["Cluster", "ingest_on_ray", "parse_path_map", "remote_path"]
