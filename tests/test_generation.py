"""Generated answers through an OpenAI-compatible endpoint, against a real local HTTP server."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.generation import Endpoint
from rag.pipeline import Pipeline

pytestmark = pytest.mark.slow


class ChatServer:
    """A tiny server speaking /v1/chat/completions; `reply(passages)` decides what it says."""

    def __init__(self, reply, status: int = 200) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply(body)}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()


def _first_sentence_of_passage(body: dict, number: int) -> str:
    prompt = body["messages"][-1]["content"]
    passage = prompt.split(f"[{number}] ", 1)[1].split("\n", 1)[1]
    return re.split(r"(?<=\.)\s", passage, maxsplit=1)[0]


def _with_endpoint(pipeline, url: str) -> Pipeline:
    return Pipeline(pipeline.embedder, pipeline.index, pipeline.index_dir, endpoint=Endpoint(url, "test-model", "sleutel", 10))


def test_supported_claims_are_kept_and_checked(pipeline):
    server = ChatServer(lambda body: (
        f"{_first_sentence_of_passage(body, 1)} [1] "
        "De maan is gemaakt van groene kaas volgens de ministers. [1] "
        f"{_first_sentence_of_passage(body, 2)} [9]"
    ))
    try:
        answer = _with_endpoint(pipeline, server.url).ask("Wat zei Nederland over China?")
    finally:
        server.close()
    assert answer.mode == "generated" and not answer.abstained
    assert "groene kaas" not in answer.text and "[9]" not in answer.text and "[1]" in answer.text
    assert any("2 zin(nen) zonder onderbouwing" in note for note in answer.notes)
    assert [c.n for c in answer.citations] == [1]
    citation = answer.citations[0]
    assert citation.quote == pipeline.index.documents[citation.hit.doc_id].text[citation.start:citation.end]
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sleutel"
    assert request["body"]["model"] == "test-model" and "[1]" in request["body"]["messages"][-1]["content"]


def test_failing_endpoint_falls_back_to_the_extractive_answer(pipeline):
    server = ChatServer(lambda body: "kapot", status=500)
    try:
        answer = _with_endpoint(pipeline, server.url).ask("Wat zei Nederland over China?")
    finally:
        server.close()
    assert answer.mode == "extractive" and answer.citations
    assert any("taalmodel gaf geen antwoord" in note for note in answer.notes)


def test_unreachable_endpoint_falls_back_too(pipeline):
    answer = _with_endpoint(pipeline, "http://127.0.0.1:9/v1").ask("Wat zei Nederland over China?")
    assert answer.mode == "extractive" and any("taalmodel" in note for note in answer.notes)


def test_weak_evidence_abstains_without_asking_the_model(pipeline):
    server = ChatServer(lambda body: "Iets verzonnens [1].")
    try:
        answer = _with_endpoint(pipeline, server.url).ask("Wat zei Nederland over de stikstofcrisis?")
    finally:
        server.close()
    assert answer.abstained and not server.requests
