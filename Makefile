# Shekara: two set-up commands, `make demo` and `make test`. Each builds the venv it needs.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck bench faults clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,server]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shekara demo

test: $(STAMP) lint typecheck
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shekara schemas producers streams sinks harness

# make bench BENCH_AGAINST=<ref>: also the processor and the sink of commit <ref> and of the working tree, interleaved
bench: $(STAMP)
	$(VENV)/bin/shekara bench $(if $(BENCH_AGAINST),--against $(BENCH_AGAINST))

faults: $(STAMP)
	$(VENV)/bin/shekara faults

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
