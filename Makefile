# Pretext: `make run` opens the app on the demo project, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench screenshots clean

setup: $(STAMP)

# Re-install only when the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

run: setup
	$(PY) main.py

test: setup
	QT_QPA_PLATFORM=offscreen CUDA_VISIBLE_DEVICES= $(PY) -m pytest -q -ra $(PYTEST_ARGS)

bench: setup
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Needs Xvfb (Debian: xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0).
screenshots: setup
	xvfb-run -a -s "-screen 0 1366x768x24" $(PY) docs/make_screenshots.py --out docs/screenshots

clean:
	rm -rf $(VENV) .pytest_cache .cache
	find . -name __pycache__ -prune -exec rm -rf {} +
