"""Shared fixtures: the real seed letters, the real model and index, built once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag import settings as project

SEEDS = project.DEFAULT_SEEDS
# Settings a developer may have exported that would change what the tests test.
_FOREIGN_SETTINGS = ("RAG_MODEL", "RAG_MODEL_DIR", "RAG_API_KEY", "RAG_FAULT", "RAG_UI_USER", "RAG_UI_PASSWORD")
_SESSION_CACHE: Path | None = None


def pytest_configure(config) -> None:
    """Isolate the whole session (and every `rag` it starts) from the machine's settings and caches.

    The converted default model is built once per session in a temporary cache.
    """
    global _SESSION_CACHE
    for name in list(os.environ):
        if name.startswith("RAG_LLM_") or name in _FOREIGN_SETTINGS:
            del os.environ[name]
    _SESSION_CACHE = Path(tempfile.mkdtemp(prefix="rag-test-cache-"))
    os.environ["XDG_CACHE_HOME"] = str(_SESSION_CACHE)
    os.environ["HF_HOME"] = str(_SESSION_CACHE / "huggingface")


def pytest_unconfigure(config) -> None:
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def run_rag(*args: str, input: str | None = None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real `rag` command in a subprocess, as a user or script would."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        input=input, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=project.PROJECT_ROOT,
    )


@pytest.fixture(scope="session")
def documents():
    from rag.readers.document import read_documents

    return {document.doc_id: document for document in read_documents([SEEDS])}


@pytest.fixture(scope="session")
def chunks(documents):
    from rag.index.chunking import chunk_documents

    return chunk_documents(documents.values())


@pytest.fixture(scope="session")
def settings():
    """The settings of the isolated session environment (no endpoint, no keys, the session's model cache)."""
    return project.from_environment()


@pytest.fixture(scope="session")
def embedder(settings):
    from rag.embed.model import load_embedder

    return load_embedder(settings.model)


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, settings, embedder):
    """A real index of the seed letters, built once with the real default model."""
    from rag.serve.pipeline import run_ingest

    folder = tmp_path_factory.mktemp("index")
    run_ingest([SEEDS], folder, settings, embedder)
    return folder


def serving(index_dir, settings, embedder):
    """A pipeline over the index in `index_dir`, as `open_pipeline` would make it."""
    from rag.index.store import load_index
    from rag.serve.pipeline import Pipeline

    return Pipeline(embedder, load_index(index_dir, embedder.name, embedder.fingerprint), index_dir, settings)


@pytest.fixture(scope="session")
def pipeline(seed_index_dir, settings, embedder):
    return serving(seed_index_dir, settings, embedder)


def seed_questions_with_evidence(pipeline) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """Two questions in users' words about the seed letters, each with where its answer stands verbatim: what the short
    training runs of the tower and the reranker learn from."""
    asked = []
    for question, evidence in (("Hoeveel mensen zitten in de denkgroep die de NAVO adviseert?", "De reflectiegroep is samengesteld uit 10 personen"),
                               ("Wie sprak er namens ons land op de NAVO-top van maart 2021?", "De minister van Buitenlandse Zaken Stef Blok nam deel")):
        for letter in pipeline.generation.letters:
            text = pipeline.generation.document_at(letter.row).text
            if evidence in text:
                start = text.index(evidence)
                asked.append((question, [(letter.doc_id, start, start + len(evidence))]))
    return asked


@pytest.fixture(scope="session")
def eval_questions():
    from rag.evaluation.dataset import load_questions

    return load_questions(project.EVAL_QUESTIONS)


@pytest.fixture(scope="session")
def eval_pipeline(tmp_path_factory, settings, embedder):
    """What `rag eval` measures: the seeds, eval/letters/, eval/extracts/ and eval/paraphrased/ in one index."""
    from rag.serve.pipeline import run_ingest

    folder = tmp_path_factory.mktemp("eval-index")
    run_ingest(list(project.EVAL_FOLDERS), folder, settings, embedder)
    return serving(folder, settings, embedder)


@pytest.fixture(scope="session")
def eval_report(eval_pipeline, eval_questions):
    """The evaluation (retrieval and answers) of the default configuration on the test split: what the gate holds."""
    from rag.evaluation.runner import evaluate

    return evaluate(eval_pipeline, [question for question in eval_questions if question.split == "test"], 5)


class ChatServer:
    """A real local HTTP server speaking /v1/chat/completions, for the optional generated answers.

    `reply(request_body)` gives the message content (a string, or None for `content: null`); `status`
    answers every request with that HTTP status; `cut=True` sends half an answer and closes the connection.
    A request with `stream: true` gets the reply as server-sent chunks, one per item of `parts(request_body)`;
    with `hold`, the last part waits until that event is set (or 30 s), and `finished` is set once it is sent.
    """

    def __init__(self, reply=lambda body: "", status: int = 200, cut: bool = False, parts=None,
                 hold: threading.Event | None = None) -> None:
        self.requests: list[dict] = []
        self.finished = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if body.get("stream") and parts is not None:
                    self._stream(parts(body))
                    return
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply(body)}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2] if cut else payload)
                if cut:
                    self.close_connection = True

            def _stream(self, pieces: list[str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for number, piece in enumerate(pieces):
                    if number == len(pieces) - 1 and hold is not None:
                        hold.wait(30)  # the client has had the earlier parts by now, if it streams them on
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                outer.finished.set()
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
