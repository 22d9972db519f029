"""Pretext's desktop window (PySide6 + pyqtgraph).

Widgets only: everything that computes lives in ``engine/`` and runs in the
worker threads of :mod:`gui.workers`; the GUI thread never trains or maps.
"""
