# One command per job; each creates the virtual environment and installs the project if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test test-browser bench lint

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# The tests start their own PostgreSQL: the system's binaries, else the pgserver wheel's.
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
		|| $(PY) -m pip install --quiet pgserver
	touch $@

install: $(VENV)/.installed

# The embedded demo: PostgreSQL in .demo, production and staging filled, one sync, then the UI on :3000.
demo: install
	$(PY) -m sync_assets.demo $(ARGS)

lint: install
	$(VENV)/bin/ruff check sync_assets sync_assets_tests benchmarks
	$(VENV)/bin/ruff format --check sync_assets sync_assets_tests benchmarks

test: lint
	$(PY) -m pytest

# Opt-in: the UI in headless Chromium (Debian's chromium package; Playwright drives it, no browser download).
test-browser: install
	$(PY) -m pip install --quiet -e '.[browser]'
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) -m pytest -m browser

# The benchmark (not part of the tests): sync_assets against a raw COPY pipe and pg_dump | pg_restore.
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py $(ARGS)
