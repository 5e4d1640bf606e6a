# fernd: `make run` serves with the bundled fernd.toml, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test browser-deps lint bench bench-quick bench-smoke bench-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fernd serve --config fernd.toml

test: $(STAMP) browser-deps
	$(BIN)/pytest

# The browser tests drive Debian's Chromium; install it when it is missing.
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

lint: $(STAMP)
	$(BIN)/ruff check fernd tests bench
	$(BIN)/ruff format --check fernd tests bench

# The benchmarks also need the bench extra (the eventsourcing library).
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick

bench-smoke: $(BENCH_STAMP)
	$(BIN)/python -m bench --smoke

# wrk drives the HTTP benchmark; without it, bench/httpload.py does.
# Debian and Ubuntu package it; run as root.
bench-deps:
	apt-get install -y wrk

clean:
	rm -rf $(VENV) build *.egg-info
