# `make run` serves MCP over stdio, `make run-http` over HTTP; `make test` runs the tests.
# Each installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_DEPS := "pytest>=8,<10" "responses>=0.25,<1" "runwayml==5.24.0"
# Installing writes to stderr: under `make run`, stdout is the MCP channel.
INSTALLED := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run run-http test bench clean

$(INSTALLED): requirements.txt Makefile
	@$(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt $(TEST_DEPS) >&2
	@touch $@

run: $(INSTALLED)
	@exec $(PY) runway_mcp.py

run-http: $(INSTALLED)
	@exec $(PY) runway_mcp.py --transport http --host $(HOST) --port $(PORT)

test: $(INSTALLED)
	$(PY) -m pytest -q test_runway_mcp.py

bench: $(INSTALLED)
	$(PY) bench_runway_mcp.py

clean:
	rm -rf $(VENV) .pytest_cache __pycache__
