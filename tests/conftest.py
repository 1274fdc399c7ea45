"""Shared fixtures: the real seed letters, the real model and index, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rag import config

SEEDS = config.DEFAULT_SEEDS


def run_rag(*args: str, input: str | None = None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real `rag` command in a subprocess, as a user or script would."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        input=input, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=config.PROJECT_ROOT,
    )


@pytest.fixture(scope="session")
def documents():
    from rag.documents import read_documents

    return {document.doc_id: document for document in read_documents([SEEDS])}


@pytest.fixture(scope="session")
def chunks(documents):
    from rag.chunking import chunk_documents

    return chunk_documents(documents.values())


@pytest.fixture(scope="session")
def embedder():
    from rag.embedding import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, embedder):
    """A real index of the seed letters, built once with the real default model."""
    from rag.pipeline import run_ingest

    folder = tmp_path_factory.mktemp("index")
    run_ingest([SEEDS], folder, embedder=embedder)
    return folder


@pytest.fixture(scope="session")
def pipeline(seed_index_dir, embedder):
    from rag.index import load_index
    from rag.pipeline import Pipeline

    return Pipeline(embedder, load_index(seed_index_dir, embedder.name, embedder.fingerprint), seed_index_dir)


@pytest.fixture(scope="session")
def eval_questions():
    from rag.evaluation import load_questions

    return load_questions(config.EVAL_QUESTIONS)


@pytest.fixture(scope="session")
def eval_report(pipeline, eval_questions):
    """One full evaluation (retrieval and answers) of the default configuration."""
    from rag.evaluation import answer_judge, evaluate

    return evaluate(pipeline, eval_questions, 5, answer=answer_judge(pipeline))
