"""Model weights: cards naming a model, the cache, verified downloads, per-tower checkpoint files."""
