"""The ImageBind network: configs (data), one generic tower read from a per-modality spec, the model,
and the only map of the official checkpoint's parameter names."""
