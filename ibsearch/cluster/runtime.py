"""Reaching Ray: a cluster given by address (or ``RAY_ADDRESS``), else a local runtime on this machine."""

from __future__ import annotations

import logging
import os

from ..errors import UsageError

log = logging.getLogger(__name__)


def connect(address: str | None, local_cpus: int | None = None, env: dict[str, str] | None = None) -> float:
    """Join the Ray cluster at ``address`` (else ``RAY_ADDRESS``), or start a local runtime of
    ``local_cpus`` CPUs (default: all); ``env`` is the workers' extra environment. Returns the GPUs
    the cluster has (0 without). A runtime this process already joined is used as it is."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            "cluster ingest needs Ray: install the extra with pip install 'ibsearch[ray]'"
        ) from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        runtime_env = {"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", **(env or {})}}
        # A local runtime gets this machine's CPUs; a cluster brings its own.
        cpus = (local_cpus or os.cpu_count() or 1) if address is None else None
        try:
            ray.init(
                address=address,
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=runtime_env,
            )
        except ConnectionError as exc:
            raise UsageError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    log.info("ray: %s CPUs, %s GPUs", ray.cluster_resources().get("CPU"), gpus)
    return gpus


__all__ = ["connect"]
