# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages, installed when missing (as root directly, otherwise through sudo): Tesseract with its
# Dutch model reads scanned letters; Chromium drives the chat's browser tests (Playwright downloads none here).
OCR_DEBIAN_PACKAGES := tesseract-ocr tesseract-ocr-nld
TEST_DEBIAN_PACKAGES := chromium chromium-driver
APT := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: install ocr-deps test-deps run test test-fast eval bench clean

install: $(STAMP) ocr-deps

# Without Tesseract everything works but scans, which are skipped with a warning that says what to install.
ocr-deps:
	@if ! tesseract --list-langs 2>/dev/null | grep -qx nld; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's $(OCR_DEBIAN_PACKAGES) to read scanned letters"; \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(OCR_DEBIAN_PACKAGES) >/dev/null \
	      || echo "make: warning: could not install $(OCR_DEBIAN_PACKAGES); scanned letters will be skipped"; \
	  else echo "make: warning: install Tesseract with its Dutch model to read scanned letters"; fi; \
	fi

# Torch first, pinned: that CPU build lies on this disk; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	@# Bytecode for the project's own modules: a cold `rag search` should not compile them every time.
	$(BIN)/python -m compileall -q rag ui >/dev/null
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
