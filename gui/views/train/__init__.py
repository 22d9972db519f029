"""The Train view, in parts that each hold one concern of one widget, :class:`TrainView`.

- ``view.py``: TrainView itself: the layout's frame, the project, Start / Pause / Stop / Resume,
  the training worker and its events.
- ``settings.py``: the data set and method pickers, the method's card and the generated forms.
- ``queue.py``: the queue of runs waiting to start.
- ``estimate.py``: the time and memory estimate under Start, from a dry run on a worker thread.
- ``plots.py``: the progress, the loss / evaluation / collapse plots, their throttled redraw and
  the collapse banner.

The parts are mixins of TrainView: each adds its widgets and state to the one view (so the
view's attributes, which the main window and the tests use, stay where they were), and
each says at its top what it reads from the others.
"""
from .view import TrainView

__all__ = ["TrainView"]
