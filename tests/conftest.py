"""Shared test set-up: headless Qt, CPU only, and the optional real data."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "numba"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The read-only real data beside the checkout; skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a clone outside the workplace)")
    return SHARED_DATA


@pytest.fixture
def project(tmp_path):
    """A new project file holding the built-in digits (1,797 8×8 images)."""
    from engine.store import Project
    from engine.workbench import import_dataset
    p = Project.create(tmp_path / "t.pretext")
    import_dataset(p, "digits", "digits")
    yield p
    p.close()
