# One-command set-up: `make demo` and `make test` create .venv and install what they need.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/biomedclip demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

test: $(STAMP) lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rs tests

clean:
	rm -rf $(VENV) demo_out .pytest_cache
