"""How long the CLI commands that compute nothing take, each in a fresh process.

    .venv/bin/python bench/cli_startup.py [--repeats 5]

Each command runs ``--repeats`` times in a new interpreter (no warm imports) and
its median wall time is compared with a reference measured in the same run: a
bare ``python -c "import sqlalchemy"``, the least any command that opens a
project must pay. On a shared or slow machine the seconds move; the ratio to
the reference moves much less. Goal (issue 10): well under a second each, which
means no torch import (``tests/test_cli.py::test_light_commands_do_not_import_torch``).

``new`` (with the demo datasets) also generates digits (scikit-learn's copy)
and 2,000 procedural shapes to fingerprint them, so it costs more than the rest.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall_time(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def median_time(make_args, repeats: int, cwd: Path) -> float:
    """``make_args(i)`` gives the i-th command line (``new`` needs a fresh path each time)."""
    return statistics.median(wall_time(make_args(i), cwd) for i in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    cli = [py, str(ROOT / "main.py")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        project = tmp / "demo.pretext"
        subprocess.run([*cli, "new", str(project)], check=True, capture_output=True)
        commands = {
            "--help": lambda i: [*cli, "--help"],
            "new --empty": lambda i: [*cli, "new", str(tmp / f"empty{i}.pretext"), "--empty"],
            "new": lambda i: [*cli, "new", str(tmp / f"demo{i}.pretext")],
            "runs": lambda i: [*cli, "runs", "-p", str(project)],
            "runs --json": lambda i: [*cli, "runs", "-p", str(project), "--json"],
            "datasets": lambda i: [*cli, "datasets", "-p", str(project)],
            "datasets kinds": lambda i: [*cli, "datasets", "kinds"],
        }
        reference = median_time(lambda i: [py, "-c", "import sqlalchemy"], args.repeats, ROOT)
        print(f"reference  python -c 'import sqlalchemy': {reference:.3f} s (median of {args.repeats})")
        # What the store itself cannot do without (its ORM and numpy arrays): the floor
        # of any command that opens a project.
        floor = median_time(lambda i: [py, "-c", "import sqlalchemy.orm, numpy"], args.repeats, ROOT)
        print(f"floor      python -c 'import sqlalchemy.orm, numpy': {floor:.3f} s "
              f"= {floor / reference:4.1f}x the reference")
        for name, make in commands.items():
            seconds = median_time(make, args.repeats, ROOT)
            print(f"main.py {name:16s} {seconds:6.3f} s  = {seconds / reference:4.1f}x the reference"
                  f"  ({'under' if seconds < 1 else 'OVER'} 1 s)")


if __name__ == "__main__":
    main()
