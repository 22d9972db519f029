"""Reading stored images while other processes write the same project file (issue 13)."""
import subprocess
import sys

import numpy as np

from engine import workbench
from engine.data.encoded import EncodedImages, MemoryItems, encode_array
from engine.store import Project

WRITER = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from engine.store import Project
with Project.open({path!r}) as p:
    ds = p.dataset("pics").id
    run = p.create_run(ds, "simclr", {{}}, seed=0)
    p.log_metrics(run, [(s, 0.0, "loss", 1.0 / (s + 1)) for s in range(2000)])
    for step in range(3):
        p.save_artifact(run, "blob", "bin", np.random.default_rng(step).bytes(3_000_000), step=step)
"""


def test_reading_items_across_closes_and_other_writers_keeps_the_file_sound(tmp_path):
    """Found in testing: a reader that kept its connection open while its project was closed
    and reopened, and other processes wrote, left "database disk image is malformed"."""
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    path = tmp_path / "p.pretext"
    images = np.random.default_rng(0).integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    with Project.create(path) as p:
        ds = p.add_dataset("pics", "image-folder", {}, 60, "fp", {"size": [16, 16], "channels": 3},
                           arrays={"split": np.zeros(60, np.uint8)}, strings={"item_names": [str(i) for i in range(60)]})
        workbench.store_images(p, ds, EncodedImages(MemoryItems([encode_array(a) for a in images]), 16, 3))
    data = None
    for attempt in range(3):
        with Project.open(path) as p:
            if data is None:
                data = workbench.load_dataset(p, "pics")      # kept, as the app's cache keeps it
            np.testing.assert_array_equal(data.images[[1, 5, 9]], images[[1, 5, 9]])
        out = subprocess.run([sys.executable, "-c", WRITER.format(root=root, path=str(path))],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        np.testing.assert_array_equal(data.images[[2, 7]], images[[2, 7]])   # read with no project open
    with Project.open(path) as p:
        assert len(p.runs()) == 3
        with p._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
