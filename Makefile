# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast eval bench clean

install: $(STAMP)

# Torch first, pinned: that CPU build lies on this disk; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/rag ingest
	$(BIN)/rag serve

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m 'not slow'

eval: install
	$(BIN)/rag eval --compare

bench: install
	$(BIN)/rag bench

clean:
	rm -rf $(VENV) index/*.faiss index/*.json index/*.jsonl index/lexical eval/report
