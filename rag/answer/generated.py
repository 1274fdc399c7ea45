"""Optional generated answers through an OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp).

Set RAG_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1) and RAG_LLM_MODEL (RAG_LLM_API_KEY and
RAG_LLM_TIMEOUT optional; read by `rag.settings`). Numbered passages go in; `[n]` are required out. Every sentence's
`[n]` must name a passage it was given and be supported by it (most of its content words are
in that passage); other sentences are dropped and the answer says so. An endpoint that is
down (refused, unreachable, timed out, a server error) gives the extractive answer with a
visible note; one that answers wrongly (no text, broken JSON, a connection cut off mid-answer,
a refused key) is an error the user must fix, said in one line.
"""

from __future__ import annotations

import errno
import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

from rag.answer.extractive import Answer, Citation
from rag.index.chunking import split_sentences
from rag.errors import RagError
from rag.index.lexical import tokenize
from rag.search.retrieval import Hit
from rag.settings import EndpointSettings

SYSTEM_PROMPT = (
    "Je beantwoordt vragen over Nederlandse Kamerbrieven. Gebruik alleen de genummerde passages. "
    "Zet achter elke zin de nummers van de passages waarop hij steunt, zoals [1] of [2][3]. "
    "Staat het antwoord niet in de passages, antwoord dan precies: Daarover vind ik geen antwoord in de brieven. "
    "Antwoord in de taal van de vraag, kort en zakelijk."
)


class GenerationError(RagError):
    """The endpoint answered, but not with a usable answer: a setting to fix, not a moment to wait."""


class EndpointDown(Exception):
    """The endpoint could not be reached or failed on its side; the extractive answer stands in."""


_UNREACHABLE = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL)


def complete(endpoint: EndpointSettings, question: str, passages: str) -> str:
    """The model's answer text; EndpointDown when it cannot be reached, GenerationError when it answers wrongly."""
    with _opened(endpoint, question, passages, stream=False) as response:
        raw = _read(endpoint, response.read)
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GenerationError(f"{_where(endpoint)} did not answer in the OpenAI chat format (choices[0].message.content); "
                              f"check that RAG_LLM_BASE_URL ends in /v1") from None
    return _checked_text(endpoint, content)


def complete_stream(endpoint: EndpointSettings, question: str, passages: str) -> Iterator[str]:
    """The model's answer text as it arrives (OpenAI's server-sent chunks), each piece as soon as it is read."""
    received = []
    with _opened(endpoint, question, passages, stream=True) as response:
        while raw := _read(endpoint, response.readline):  # b"" only at the end of the body
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data:"):
                continue  # the blank line between events, a comment, an event name
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                piece = json.loads(data)["choices"][0].get("delta", {}).get("content") or ""
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise GenerationError(f"{_where(endpoint)} did not stream in the OpenAI chunk format; "
                                      f"check that RAG_LLM_BASE_URL ends in /v1") from None
            received.append(piece)
            if piece:
                yield piece
    _checked_text(endpoint, "".join(received))


def _where(endpoint: EndpointSettings) -> str:
    return f"the language model at {endpoint.base_url}"


def _checked_text(endpoint: EndpointSettings, content: object) -> str:
    if not isinstance(content, str) or not content.strip():
        raise GenerationError(f"{_where(endpoint)} answered without any text (content {json.dumps(content)}); "
                              f"check that RAG_LLM_MODEL names a chat model")
    return content


@contextmanager
def _opened(endpoint: EndpointSettings, question: str, passages: str, stream: bool):
    """The endpoint's response to the question and passages; its failures as EndpointDown or GenerationError."""
    body = json.dumps({
        "model": endpoint.model, "temperature": 0, "stream": stream,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": f"Passages:\n\n{passages}\n\nVraag: {question}"}],
    }).encode()
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    request = urllib.request.Request(f"{endpoint.base_url}/chat/completions", data=body, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=endpoint.timeout)
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise EndpointDown(f"HTTP {error.code}") from None
        raise GenerationError(f"{_where(endpoint)} refused the request (HTTP {error.code}); check RAG_LLM_BASE_URL, "
                              f"RAG_LLM_MODEL and RAG_LLM_API_KEY") from None
    except urllib.error.URLError as error:
        if _is_down(error.reason):
            raise EndpointDown(type(error.reason).__name__) from None
        raise GenerationError(f"{_where(endpoint)} broke off the connection ({_describe(error.reason)}); "
                              f"check that RAG_LLM_BASE_URL points at an OpenAI-compatible server") from None
    except (TimeoutError, socket.timeout):
        raise EndpointDown("timeout") from None
    except (http.client.HTTPException, OSError) as error:
        raise GenerationError(f"{_where(endpoint)} broke off its answer ({_describe(error)}); "
                              f"check the server's log, or unset RAG_LLM_BASE_URL for extractive answers") from None
    with response:
        yield response


def _read(endpoint: EndpointSettings, read) -> bytes:
    """One read of the response body; a cut connection or a timeout mid-answer as the errors above."""
    try:
        return read()
    except (TimeoutError, socket.timeout):
        raise EndpointDown("timeout") from None
    except (http.client.HTTPException, OSError) as error:
        raise GenerationError(f"{_where(endpoint)} broke off its answer ({_describe(error)}); "
                              f"check the server's log, or unset RAG_LLM_BASE_URL for extractive answers") from None


def _is_down(reason: object) -> bool:
    if isinstance(reason, (TimeoutError, socket.timeout, socket.gaierror)):
        return True
    return isinstance(reason, OSError) and reason.errno in _UNREACHABLE


def _describe(error: object) -> str:
    return type(error).__name__ if not str(error) else f"{type(error).__name__}: {str(error)[:80]}"


def numbered_passages(hits: list[Hit]) -> str:
    return "\n\n".join(f"[{n}] {h.title} ({h.date}), {h.section}:\n{h.text}" for n, h in enumerate(hits, start=1))


def _supported(sentence: str, passage: str, support: float) -> bool:
    words = set(tokenize(re.sub(r"\[\d+\]", " ", sentence)))
    return bool(words) and len(words & set(tokenize(passage))) / len(words) >= support


def _best_sentence(sentence: str, hit: Hit, text: str) -> tuple[int, int]:
    """The sentence of the passage closest to the generated one, so the page can mark it."""
    words = set(tokenize(sentence))
    spans = split_sentences(text[hit.start:hit.end], hit.start)
    return max(spans, key=lambda span: len(words & set(tokenize(text[span[0]:span[1]]))), default=(hit.start, hit.end))


class _Checker:
    """Sentence by sentence: a generated sentence is kept when each of its [n] names a passage it was given and
    that passage holds most of its content words; its citations point at the passage's closest sentence."""

    def __init__(self, endpoint: EndpointSettings, hits: list[Hit], texts: dict[str, str]) -> None:
        self.endpoint, self.hits, self.texts = endpoint, hits, texts
        self.kept: list[str] = []
        self.dropped = 0
        self.citations: dict[int, Citation] = {}

    def sentences(self, content: str, final: bool) -> tuple[list[str], str]:
        """The complete sentences of `content` that pass (all of them when `final`), and the rest still to come."""
        # "Zin. [1] Volgende zin." -> "Zin [1]. Volgende zin.": markers belong to the sentence before them.
        content = re.sub(r"([.!?])((?:\s*\[\d+\])+)", lambda m: m.group(2) + m.group(1), content.lstrip())
        spans = split_sentences(content)
        if not final:
            # The last sentence may still grow (or get its [n]): only sentences followed by the start of another count.
            spans = spans[:-1]
        passed = [sentence for start, end in spans if self.check(sentence := content[start:end].strip())]
        rest = content[spans[-1][1]:] if spans else content
        return passed, rest

    def check(self, sentence: str) -> bool:
        numbers = [int(n) for n in re.findall(r"\[(\d+)\]", sentence)]
        valid = [n for n in numbers if 1 <= n <= len(self.hits)]
        if not valid or len(valid) != len(numbers) or not all(
                _supported(sentence, self.hits[n - 1].text, self.endpoint.support) for n in valid):
            self.dropped += 1
            return False
        self.kept.append(sentence)
        for n in valid:
            if n not in self.citations:
                hit = self.hits[n - 1]
                start, end = _best_sentence(sentence, hit, self.texts[hit.doc_id])
                self.citations[n] = Citation(n, hit, start, end, self.texts[hit.doc_id][start:end])
        return True

    def answer(self, question: str, fallback: Answer) -> Answer:
        if not self.kept:
            note = "het antwoord van het taalmodel was niet met de brieven te onderbouwen; hieronder het letterlijke antwoord"
            return replace(fallback, notes=fallback.notes + (note,))
        dropped = (f"{self.dropped} zin(nen) zonder onderbouwing in de brieven weggelaten",) if self.dropped else ()
        ordered = tuple(self.citations[n] for n in sorted(self.citations))
        return Answer(question, " ".join(self.kept), False, ordered, mode="generated", notes=fallback.notes + dropped)


def _unreachable(fallback: Answer, down: EndpointDown) -> Answer:
    note = f"het taalmodel is niet bereikbaar ({down}); hieronder het letterlijke antwoord uit de brieven"
    return replace(fallback, notes=fallback.notes + (note,))


def generated_answer(endpoint: EndpointSettings, question: str, hits: list[Hit], texts: dict[str, str], fallback: Answer) -> Answer:
    """The endpoint's answer with every claim checked against the passages; the fallback on any failure."""
    if fallback.abstained:
        return fallback  # weak evidence: no model is asked to make something of it
    try:
        content = complete(endpoint, question, numbered_passages(hits))
    except EndpointDown as down:
        return _unreachable(fallback, down)
    checker = _Checker(endpoint, hits, texts)
    checker.sentences(content.strip(), final=True)
    return checker.answer(question, fallback)


def generated_answer_stream(endpoint: EndpointSettings, question: str, hits: list[Hit], texts: dict[str, str],
                            fallback: Answer) -> Iterator[str | Answer]:
    """As `generated_answer`, passing the endpoint's text on as it arrives: each sentence as soon as it is complete
    and checked (a sentence without support is never shown), then the whole Answer."""
    if fallback.abstained:
        yield fallback
        return
    checker = _Checker(endpoint, hits, texts)
    pending, shown = "", 0
    try:
        for piece in complete_stream(endpoint, question, numbered_passages(hits)):
            pending += piece
            passed, pending = checker.sentences(pending, final=False)
            for sentence in passed:
                yield ("" if not shown else " ") + sentence
                shown += 1
    except EndpointDown as down:
        yield _unreachable(fallback, down)
        return
    passed, _rest = checker.sentences(pending, final=True)
    for sentence in passed:
        yield ("" if not shown else " ") + sentence
        shown += 1
    yield checker.answer(question, fallback)
