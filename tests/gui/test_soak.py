"""A long GUI session in a child process (tests/gui/soak_session.py): the main window
trains SimCLR, MAE and CLIP back to back from the queue with the Train view's live
curves, shows each finished run on the Map, and must still be alive at the end with
the singletons' reference counts intact. In a child process so that an abort in a
C extension fails this test instead of killing the test run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("soak_session.py")
#: The session ends once EVENTS training events reached the window and a whole round
#: finished (about 2 minutes on two quiet cores), or after SECONDS on a slow machine.
EVENTS = 2000
SECONDS = 360


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)
def test_long_training_session_keeps_the_app_alive(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CUDA_VISIBLE_DEVICES": "",
           "PRETEXT_SETTINGS": str(tmp_path / "settings.ini")}
    proc = subprocess.run([sys.executable, "-X", "faulthandler", str(SCRIPT), "--seconds", str(SECONDS),
                           "--min-events", str(EVENTS), "--project", str(tmp_path / "soak.pretext")],
                          env=env, capture_output=True, text=True, timeout=SECONDS + 280)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"the app died (exit {proc.returncode}):\n{tail}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("soak:", json.dumps(result))     # shown with -s / in the CI log on failure

    assert result["runs_failed"] == [], result["runs_failed"]
    # At least one whole round (SimCLR, MAE, CLIP) trained to the end, with its maps shown.
    assert result["runs_finished"] >= 3 and result["maps_shown"] >= 3, result
    assert result["events"] >= EVENTS, (f"only {result['events']} training events reached the window "
                                        f"in {result['seconds']} s")
    if sys.version_info < (3, 12):     # immortal on 3.12+: the counts say nothing there
        for name, before in result["refcounts_before"].items():
            assert result["refcounts_after"][name] >= before - 50, (
                f"{name}'s reference count fell from {before} to {result['refcounts_after'][name]}")
