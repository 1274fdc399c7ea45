"""Generated answers through an OpenAI-compatible endpoint, against a real local HTTP server."""

from __future__ import annotations

import re

import pytest

from rag.settings import EndpointSettings, Settings
from rag.serve.pipeline import Pipeline

from conftest import ChatServer

pytestmark = pytest.mark.slow


def _first_sentence_of_passage(body: dict, number: int) -> str:
    prompt = body["messages"][-1]["content"]
    passage = prompt.split(f"[{number}] ", 1)[1].split("\n", 1)[1]
    return re.split(r"(?<=\.)\s", passage, maxsplit=1)[0]


def _with_endpoint(pipeline, url: str) -> Pipeline:
    return Pipeline(pipeline.embedder, pipeline.generation, pipeline.index_dir,
                    Settings(endpoint=EndpointSettings(url, "test-model", "sleutel", 10)))


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
    assert citation.quote == pipeline.generation.documents[citation.hit.doc_id].text[citation.start:citation.end]
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
    assert any("taalmodel is niet bereikbaar" in note for note in answer.notes)


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
