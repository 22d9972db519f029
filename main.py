"""Pretext: ``python main.py`` opens the app on the demo project;
``python main.py --project FILE`` opens FILE (created if missing);
``python main.py <command> ...`` is the command line (``python main.py --help``).
"""
from __future__ import annotations

import sys

USAGE = """usage: main.py [--project FILE]      open the desktop app (default: the demo project)
       main.py <command> [...]        run a command line tool (main.py --help lists them)"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    project = None
    if argv and (argv[0] in ("--project", "-p") or argv[0].startswith("--project=")):
        if "=" in argv[0]:
            project = argv[0].split("=", 1)[1]
        elif len(argv) >= 2:
            project = argv[1]
        else:
            print(USAGE, file=sys.stderr)
            return 2
    elif argv:
        # Everything else is the CLI; imported lazily so the app never pays for it.
        from engine.cli import main as cli_main
        return cli_main(argv)
    from gui.app import run  # PySide6 only: torch and the engine load after the window shows
    return run(project)


if __name__ == "__main__":
    sys.exit(main())
