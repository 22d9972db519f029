"""Pretext's engine: data, views, networks, methods, training, evaluation,
maps and the project file. Never imports Qt (the GPU machines have none)."""
__version__ = "0.1.0"
