"""The Train view, kept importable here: it lives in the package :mod:`gui.views.train`."""
from .train.estimate import ESTIMATE_DELAY_MS, ESTIMATE_IGNORES, ESTIMATING
from .train.plots import (COLLAPSE_ADVICE, COLLAPSE_EXPLAINED, COLLAPSE_TITLE, COLLAPSE_WHAT, KNN_COLOUR,
                          LINEAR_COLOUR, REDRAW_INTERVAL_MS, TEXT_METRICS, Series)
from .train.queue import QueuedRun
from .train.settings import available_devices
from .train.view import TrainView, resumable_statuses

__all__ = ["COLLAPSE_ADVICE", "COLLAPSE_EXPLAINED", "COLLAPSE_TITLE", "COLLAPSE_WHAT", "ESTIMATE_DELAY_MS",
           "ESTIMATE_IGNORES", "ESTIMATING", "KNN_COLOUR", "LINEAR_COLOUR", "QueuedRun", "REDRAW_INTERVAL_MS",
           "Series", "TEXT_METRICS", "TrainView", "available_devices", "resumable_statuses"]
