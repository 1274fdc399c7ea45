"""The HTTP API of `rag serve`: a real server, the official `openai` client and httpx."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from rag.serve.server import free_port

from conftest import run_rag

pytestmark = pytest.mark.slow
CHINA = "Wat zei Nederland over China?"


def _serve(pipeline, data_dir):
    from rag.serve.server import launch
    from ui.app import mount_page

    return launch(pipeline, mount_page, "127.0.0.1", free_port("127.0.0.1", 0), data_dir, block=False)


@pytest.fixture(scope="module")
def server(pipeline, tmp_path_factory):
    served, url = _serve(pipeline, tmp_path_factory.mktemp("data"))
    yield url
    served.close()


@pytest.fixture()
def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key="niet nodig", max_retries=0)


def test_models_lists_the_one_model_with_its_embedder(openai_client, pipeline):
    models = openai_client.models.list()
    assert [m.id for m in models.data] == ["kamerbrief-rag"]
    assert models.data[0].model_extra["metadata"]["embedding_model"] == pipeline.embedder.name


def test_a_completion_cites_its_passages(openai_client):
    completion = openai_client.chat.completions.create(model="kamerbrief-rag", temperature=0.3,
                                                       messages=[{"role": "user", "content": CHINA}])
    content = completion.choices[0].message.content
    citations = completion.model_extra["citations"]
    assert "[1]" in content and "Bronnen:" in content and citations
    assert citations[0]["n"] == 1 and "China" in citations[0]["text"]
    assert f"{citations[0]['doc_id']}:{citations[0]['start']}-{citations[0]['end']}" in content  # the rag show id


def test_a_streamed_completion_joins_to_the_same_answer(openai_client):
    whole = openai_client.chat.completions.create(model="kamerbrief-rag", messages=[{"role": "user", "content": CHINA}])
    chunks = list(openai_client.chat.completions.create(model="kamerbrief-rag", stream=True,
                                                        messages=[{"role": "user", "content": CHINA}]))
    assert len(chunks) > 3 and chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == whole.choices[0].message.content
    assert chunks[-1].model_extra["citations"] == whole.model_extra["citations"]


def test_a_generated_answer_streams_as_the_endpoint_writes_it(pipeline, tmp_path):
    """The first sentence reaches the client while the endpoint is still writing the rest."""
    import threading
    from dataclasses import replace

    from rag.serve.pipeline import Pipeline
    from rag.settings import EndpointSettings

    from conftest import ChatServer

    def parts(body: dict) -> list[str]:
        """The first sentence of passage [1] in two pieces, then a second sentence held back until the client has
        the first."""
        passage = body["messages"][-1]["content"].split("[1] ", 1)[1].split("\n", 1)[1]
        first = re.split(r"(?<=\.)\s", passage, maxsplit=1)[0]
        return [first[:40], first[40:] + " [1] Verder", " geldt dit ook voor de bondgenoten. [1]"]

    hold = threading.Event()
    endpoint = ChatServer(parts=parts, hold=hold)
    settings = replace(pipeline.settings, endpoint=EndpointSettings(endpoint.url, "test-model", None, 30))
    served, url = _serve(Pipeline(pipeline.embedder, pipeline.generation, pipeline.index_dir, settings), tmp_path)
    try:
        content, arrived_before_the_end = [], None
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60, json={
                "model": "kamerbrief-rag", "stream": True, "messages": [{"role": "user", "content": CHINA}]}) as response:
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if delta and arrived_before_the_end is None:
                    arrived_before_the_end = not endpoint.finished.is_set()
                    hold.set()  # now the endpoint may finish
                content.append(delta or "")
        assert arrived_before_the_end, "the first sentence waited for the whole generated answer"
        text = "".join(content)
        assert "[1]" in text and "Bronnen:" in text
    finally:
        hold.set()
        served.close()
        endpoint.close()


def test_a_follow_up_in_the_history_is_answered_about_the_new_topic(openai_client):
    completion = openai_client.chat.completions.create(model="kamerbrief-rag", messages=[
        {"role": "user", "content": CHINA},
        {"role": "assistant", "content": "Volgens de brieven: ... [1]"},
        {"role": "user", "content": [{"type": "text", "text": "En over Rusland?"}]},
    ])
    citations = completion.model_extra["citations"]
    assert citations and all("Rusland" in c["text"] or "Russische" in c["text"] for c in citations), citations
    assert "gelezen als vervolgvraag: Wat zei Nederland over Rusland?" in completion.model_extra["notes"]


def test_an_empty_question_is_a_bad_request(openai_client):
    from openai import BadRequestError

    with pytest.raises(BadRequestError) as raised:
        openai_client.chat.completions.create(model="kamerbrief-rag", messages=[{"role": "user", "content": "  "}])
    assert raised.value.status_code == 400 and "leeg" in raised.value.body["message"]


def test_rest_search_and_ask_give_what_the_cli_gives(server, seed_index_dir):
    searched = httpx.get(f"{server}/api/search", params={"q": CHINA, "k": 3}, timeout=60).json()
    cli = run_rag("search", "--json", "-k", "3", "--index", str(seed_index_dir), CHINA)
    assert searched == json.loads(cli.stdout)
    asked = httpx.post(f"{server}/api/ask", json={"question": CHINA}, timeout=60).json()
    cli = run_rag("ask", "--json", "--index", str(seed_index_dir), CHINA)
    assert asked == json.loads(cli.stdout)
    citation = asked["citations"][0]
    shown = httpx.get(f"{server}/api/show/{citation['doc_id']}:{citation['start']}-{citation['end']}").json()
    assert shown["passage"] == citation["text"]


def test_rest_filters_and_their_errors(server):
    hits = httpx.get(f"{server}/api/search", params={"q": "Afghanistan", "since": "2021-01-01"}, timeout=60).json()["hits"]
    assert hits and all(hit["date"] >= "2021-01-01" for hit in hits)
    wrong = httpx.get(f"{server}/api/search", params={"q": "Afghanistan", "since": "gisteren"}, timeout=60)
    assert wrong.status_code == 400 and "is geen datum" in wrong.json()["error"]["message"]
    unknown = httpx.post(f"{server}/api/ask", json={"question": CHINA, "doc": ["onbekend"]}, timeout=60)
    assert unknown.status_code == 404 and "onbekende brief" in unknown.json()["error"]["message"]


def test_rest_letters(server, pipeline):
    response = httpx.get(f"{server}/api/letters")
    letters = response.json()
    assert {letter["doc_id"] for letter in letters} == {letter.doc_id for letter in pipeline.generation.letters}
    assert response.headers["X-Total-Count"] == str(len(letters))
    dates = [letter["date"] or "" for letter in letters]
    assert dates == sorted(dates, reverse=True)  # newest first
    page = httpx.get(f"{server}/api/letters", params={"offset": 1, "limit": 2}).json()
    assert [letter["doc_id"] for letter in page] == [letter["doc_id"] for letter in letters[1:3]]
    assert httpx.get(f"{server}/api/letters", params={"limit": 0}).status_code == 400
    first = letters[0]
    assert first["passages"] > 0 and first["sections"] and first["title"]
    one = httpx.get(f"{server}/api/letters/{first['doc_id']}").json()
    assert one["text"] == pipeline.generation.document(first["doc_id"]).text
    missing = httpx.get(f"{server}/api/letters/onbekend")
    assert missing.status_code == 404 and "onbekende brief" in missing.json()["error"]["message"]
    assert httpx.get(f"{server}/docs").status_code == 200 and "/api/search" in httpx.get(f"{server}/openapi.json").text


def test_an_api_key_guards_the_api_when_set(server, pipeline, tmp_path):
    from dataclasses import replace

    from rag.serve.pipeline import Pipeline

    settings = replace(pipeline.settings, serve=replace(pipeline.settings.serve, api_key="geheime-sleutel"))
    keyed, url = _serve(Pipeline(pipeline.embedder, pipeline.generation, pipeline.index_dir, settings), tmp_path)
    try:
        refused = httpx.get(f"{url}/api/letters")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/api/letters", headers={"Authorization": "Bearer verkeerd"}).status_code == 401
        allowed = httpx.get(f"{url}/api/letters", headers={"Authorization": "Bearer geheime-sleutel"})
        assert allowed.status_code == 200 and {letter["doc_id"] for letter in allowed.json()} == {
            letter.doc_id for letter in pipeline.generation.letters}
        assert httpx.get(f"{url}/v1/models").status_code == 401
    finally:
        keyed.close()
    assert httpx.get(f"{server}/api/letters").status_code == 200  # the server without a key


def test_a_full_queue_is_told_to_come_back(server, pipeline, monkeypatch):
    from rag.serve.slots import AnswerSlots

    monkeypatch.setattr(pipeline, "slots", AnswerSlots(slots=1, queue=0))
    with pipeline.slots:  # the only slot is taken and nothing may wait: the next answer is refused at once
        busy = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": CHINA}]})
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "rate_limit_exceeded"
