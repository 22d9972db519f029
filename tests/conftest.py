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


@pytest.fixture
def clip_run(project):
    """CLIP trained for 2 epochs on 300 16×16 shapes (a few seconds on 2 cores); its run id."""
    from engine import workbench
    workbench.import_dataset(project, "shapes", "shapes", n=300, size=16, seed=0)
    run = workbench.create_run(project, "shapes", "clip",
                               {"epochs": "2", "batch_size": "64", "width": "4", "word_dim": "16",
                                "embed_dim": "16", "eval_every": "0", "timeline_items": "0",
                                "checkpoint_every": "1000"})
    events = list(workbench.run_training(project, run))
    assert type(events[-1]).__name__ == "Finished", events[-1]
    return run


@pytest.fixture
def lasso_cases():
    """3,000 points (the first five not drawn: NaN) and two lassos to test point-in-polygon
    with: a 7-pointed star and a self-crossing bow tie."""
    import numpy as np
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, size=(3000, 2))
    pts[:5] = np.nan
    star = np.array([[np.cos(a) * r, np.sin(a) * r] for a, r in
                     zip(np.linspace(0, 2 * np.pi, 14, endpoint=False), [0.9, 0.3] * 7)])
    bow = np.array([[-0.8, -0.8], [0.8, 0.8], [0.8, -0.8], [-0.8, 0.8]])
    return pts, star, bow
