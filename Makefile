# `make run` serves MCP over stdio, `make run-http` over HTTP; `make test` runs every test, `make test-fast`
# all but the slow integration tests (several processes, packaging, the browser). Each installs into .venv on
# first use, and the tests' Node.js tools into .tools.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_DEPS := "pytest>=8,<10" "pytest-xdist>=3.8,<4" "responses>=0.25,<1" "runwayml==5.24.0" "uv>=0.9,<1"
# The tests that are not slow run in parallel (each worker its own process, fake API and folders); the slow ones,
# which build packages and drive other programs, one at a time.
PARALLEL := -n auto --maxprocesses 4
# Installing writes to stderr: under `make run`, stdout is the MCP channel.
INSTALLED := $(VENV)/.installed
NODE_TOOLS := .tools
# The official MCP bundle CLI; Claude Code, which checks that a printed config connects; and a host for the viewer
# in headless Chromium: the official ext-apps AppBridge, esbuild to bundle it, puppeteer-core to drive Chromium.
# The MCP Inspector's CLI speaks the 2026-07-28 tasks extension: one of the two clients the tasks tests use.
# oidc-provider (OpenID-certified) is the identity provider the OAuth tests sign people in with.
NPM_PACKAGES := @anthropic-ai/mcpb@2.1.2 @anthropic-ai/claude-code@2.1.332 @modelcontextprotocol/ext-apps@2.0.4 \
	esbuild@0.28.2 puppeteer-core@24.43.1 @modelcontextprotocol/inspector@2.12.0 oidc-provider@9.13.3
NODE_INSTALLED := $(NODE_TOOLS)/.installed
MCPB := $(NODE_TOOLS)/node_modules/.bin/mcpb
BUNDLE_FILES := manifest.json pyproject.toml runway_mcp.py README.md

# The other: fastmcp with fastmcp-tasks, pinned together (newer fastmcp does not resolve with fastmcp-tasks 4.1.4),
# in an environment of its own, since it brings much the server does not use.
CLIENTS := .clients
CLIENTS_INSTALLED := $(CLIENTS)/.installed

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run run-http test test-fast bench bundle manifest clean

$(INSTALLED): requirements.txt Makefile
	@$(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt $(TEST_DEPS) >&2
	@touch $@

$(CLIENTS_INSTALLED): Makefile
	@$(PYTHON) -m venv $(CLIENTS) >&2
	@if $(CLIENTS)/bin/python -m pip install --quiet --disable-pip-version-check "fastmcp==4.1.4" \
		"fastmcp-tasks==4.1.4" >&2; then touch $@; else echo "fastmcp did not install: its tests are skipped" >&2; fi

# Without npm (or if it fails) the tests that need these tools are skipped, saying why; the rest still runs.
$(NODE_INSTALLED): Makefile
	@if ! command -v npm >/dev/null; then echo "npm not found: tests that need Node.js tools are skipped" >&2; \
	elif npm install --prefix $(NODE_TOOLS) --no-audit --no-fund --silent $(NPM_PACKAGES) >&2; then touch $@; \
	else echo "npm install failed: tests that need Node.js tools are skipped" >&2; fi

run: $(INSTALLED)
	@exec $(PY) runway_mcp.py

run-http: $(INSTALLED)
	@exec $(PY) runway_mcp.py --transport http --host $(HOST) --port $(PORT)

test: $(INSTALLED) $(NODE_INSTALLED) $(CLIENTS_INSTALLED)
	$(PY) -m pytest -q $(PARALLEL) -m "not slow" test_runway_mcp.py
	$(PY) -m pytest -q -m slow test_runway_mcp.py

test-fast: $(INSTALLED)
	$(PY) -m pytest -q $(PARALLEL) -m "not slow" test_runway_mcp.py

bench: $(INSTALLED)
	$(PY) bench_runway_mcp.py

# The Claude Desktop extension: the manifest, the file and its pyproject, with a uv.lock; the official CLI
# validates and packs it.
bundle: dist/runway-mcp.mcpb

dist/runway-mcp.mcpb: $(BUNDLE_FILES) $(INSTALLED) $(NODE_INSTALLED)
	@rm -rf build/bundle && mkdir -p build/bundle dist
	@cp $(BUNDLE_FILES) build/bundle/
	@cd build/bundle && ../../$(VENV)/bin/uv lock --quiet
	$(MCPB) validate build/bundle/manifest.json
	$(MCPB) pack build/bundle $@

# manifest.json lists the tools as tools/list does; this rewrites that list (a test checks it is current).
manifest: $(INSTALLED)
	$(PY) test_runway_mcp.py --update-manifest

clean:
	rm -rf $(VENV) $(NODE_TOOLS) $(CLIENTS) build dist .pytest_cache __pycache__
