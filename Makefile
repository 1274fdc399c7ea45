# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests drive: Chromium for the chat's browser tests (Playwright downloads no browser
# here). Installed when missing, as root directly, otherwise through sudo.
TEST_DEBIAN_PACKAGES := chromium chromium-driver
APT := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: install test-deps run test test-fast eval bench clean

install: $(STAMP)

# Torch first, pinned: that CPU build lies on this disk; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  command -v apt-get >/dev/null 2>&1 || { echo "make: the browser tests need Chromium; install it with your package manager"; exit 1; }; \
	  echo "make: installing Debian's $(TEST_DEBIAN_PACKAGES) for the browser tests"; \
	  $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(TEST_DEBIAN_PACKAGES) >/dev/null; \
	fi

run: install
	$(BIN)/rag ingest
	$(BIN)/rag serve

test: install test-deps
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m 'not slow'

eval: install
	$(BIN)/rag eval --compare

bench: install
	$(BIN)/rag bench

clean:
	rm -rf $(VENV) index/gen-* index/CURRENT index/.lock eval/report
