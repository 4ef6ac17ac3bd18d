# The two entry points of the quick start: `make serve` and `make test`.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The example operator module (examples/mod_hello, its own package registered under the
# entry-point group suricate.modules) is installed too: the tests drive it like a plugin.
$(STAMP): pyproject.toml examples/mod_hello/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet -e examples/mod_hello
	touch $(STAMP)

# xmpp.js for the end-to-end tests in tests/mobile/test_xmppjs.py (skipped without node).
JS_STAMP := tests/js/node_modules/.installed

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/js --no-audit --no-fund && touch $(JS_STAMP); \
	else echo "npm not found: the xmpp.js tests will be skipped"; fi

# The web client served by mod_conversejs (Converse.js, pinned in webclient/package.json) and
# playwright-core for its browser test; fetched from npm, never committed.
WEB_STAMP := webclient/node_modules/.installed

$(WEB_STAMP): webclient/package.json webclient/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix webclient --no-audit --no-fund && touch $(WEB_STAMP); \
	else echo "npm not found: /chat (mod_conversejs) will say how to install the web client"; fi

# Prosody and ejabberd (Debian packages) for tests/interop; idempotent.
peers:
	bash .ci/install-peers

.PHONY: serve test lint install js peers webclient
install: $(STAMP) $(WEB_STAMP)
js: $(JS_STAMP)
webclient: $(WEB_STAMP)

serve: $(STAMP) $(WEB_STAMP)
	@# Byte-compile first: with PYTHONDONTWRITEBYTECODE set (as on our machines) every start
	@# would otherwise recompile the package from source (~60 ms of start-up).
	@$(BIN)/python -m compileall -q suricate
	$(BIN)/suricate serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check suricate tests examples
	$(BIN)/mypy suricate tests/typecheck
	$(BIN)/lint-imports

test: $(STAMP) $(JS_STAMP) $(WEB_STAMP) peers
	$(BIN)/ruff check suricate tests examples
	$(BIN)/mypy suricate tests/typecheck
	$(BIN)/lint-imports
	@# Two workers; tests sharing a fixed resource (ports 5222/5269, worker processes, a
	@# module-wide server) carry the same xdist_group and so run in one worker.
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadgroup tests
