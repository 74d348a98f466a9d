# Two entry points: `make demo` (install + run the main job) and `make test` (install + run the tests).
# `make test-quick` (install + the tests not marked slow, distributed or hub: under 3 minutes on a 2-core CPU machine)
# is the inner-loop check; `make test` stays the full suite that CI runs. The markers are declared in pyproject.toml.
# Both create or reuse .venv. torch is pinned to the CPU build when absent (an unpinned torch pulls CUDA wheels).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hf-dlm-installed

.PHONY: demo test test-quick install clean app screenshots

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/hf-dlm demo

# the Gradio demo on http://127.0.0.1:7860 with the models `make demo` wrote (APP_ARGS="--port 8000 ..." for more)
app: $(STAMP)
	$(PY) -c "import gradio" 2>/dev/null || $(PY) -m pip install --quiet -e ".[app]"
	HF_HUB_OFFLINE=1 $(VENV)/bin/hf-dlm app $(APP_ARGS)

# docs/images/*.png: app screenshots (Debian's chromium through Playwright) and the labelled digits grid
screenshots: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) integrations/space/screenshot.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

test-quick: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not distributed and not hub" tests

clean:
	rm -rf $(VENV) outputs
