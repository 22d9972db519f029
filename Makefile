# Pretext: `make run` opens the app on the demo project, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench clean

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
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .cache
	find . -name __pycache__ -prune -exec rm -rf {} +
