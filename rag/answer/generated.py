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
from dataclasses import replace

from rag.answer.extractive import Answer, Citation
from rag.index.chunking import split_sentences
from rag.errors import RagError
from rag.index.lexical import tokenize
from rag.search.retrieval import Hit
from rag.settings import EndpointSettings

SYSTEM_PROMPT = (
    "Je beantwoordt vragen over Nederlandse Kamerbrieven. Gebruik alleen de genummerde passages. "
    "Zet achter elke zin de nummers van de passages waarop hij steunt, zoals [1] of [2][3]. "
    "Staat het antwoord niet in de passages, antwoord dan precies: Daarover vind ik niets in de brieven. "
    "Antwoord in de taal van de vraag, kort en zakelijk."
)


class GenerationError(RagError):
    """The endpoint answered, but not with a usable answer: a setting to fix, not a moment to wait."""


class EndpointDown(Exception):
    """The endpoint could not be reached or failed on its side; the extractive answer stands in."""


_UNREACHABLE = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL)


def complete(endpoint: EndpointSettings, question: str, passages: str) -> str:
    """The model's answer text; EndpointDown when it cannot be reached, GenerationError when it answers wrongly."""
    body = json.dumps({
        "model": endpoint.model, "temperature": 0,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": f"Passages:\n\n{passages}\n\nVraag: {question}"}],
    }).encode()
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    request = urllib.request.Request(f"{endpoint.base_url}/chat/completions", data=body, headers=headers)
    where = f"the language model at {endpoint.base_url}"
    try:
        with urllib.request.urlopen(request, timeout=endpoint.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise EndpointDown(f"HTTP {error.code}") from None
        raise GenerationError(f"{where} refused the request (HTTP {error.code}); check RAG_LLM_BASE_URL, "
                              f"RAG_LLM_MODEL and RAG_LLM_API_KEY") from None
    except urllib.error.URLError as error:
        if _is_down(error.reason):
            raise EndpointDown(type(error.reason).__name__) from None
        raise GenerationError(f"{where} broke off the connection ({_describe(error.reason)}); "
                              f"check that RAG_LLM_BASE_URL points at an OpenAI-compatible server") from None
    except (TimeoutError, socket.timeout):
        raise EndpointDown("timeout") from None
    except (http.client.HTTPException, OSError) as error:
        raise GenerationError(f"{where} broke off its answer ({_describe(error)}); "
                              f"check the server's log, or unset RAG_LLM_BASE_URL for extractive answers") from None
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GenerationError(f"{where} did not answer in the OpenAI chat format (choices[0].message.content); "
                              f"check that RAG_LLM_BASE_URL ends in /v1") from None
    if not isinstance(content, str) or not content.strip():
        raise GenerationError(f"{where} answered without any text (content {json.dumps(content)}); "
                              f"check that RAG_LLM_MODEL names a chat model")
    return content



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


def generated_answer(endpoint: EndpointSettings, question: str, hits: list[Hit], texts: dict[str, str], fallback: Answer) -> Answer:
    """The endpoint's answer with every claim checked against the passages; the fallback on any failure."""
    if fallback.abstained:
        return fallback  # weak evidence: no model is asked to make something of it
    try:
        content = complete(endpoint, question, numbered_passages(hits))
    except EndpointDown as down:
        note = f"het taalmodel is niet bereikbaar ({down}); hieronder het letterlijke antwoord uit de brieven"
        return replace(fallback, notes=fallback.notes + (note,))
    kept, dropped = [], 0
    citations: dict[int, Citation] = {}
    # "Zin. [1] Volgende zin." -> "Zin [1]. Volgende zin.": markers belong to the sentence before them.
    content = re.sub(r"([.!?])((?:\s*\[\d+\])+)", lambda m: m.group(2) + m.group(1), content.strip())
    for start, end in split_sentences(content):
        sentence = content[start:end].strip()
        numbers = [int(n) for n in re.findall(r"\[(\d+)\]", sentence)]
        valid = [n for n in numbers if 1 <= n <= len(hits)]
        if not valid or len(valid) != len(numbers) or not all(_supported(sentence, hits[n - 1].text, endpoint.support) for n in valid):
            dropped += 1
            continue
        kept.append(sentence)
        for n in valid:
            if n not in citations:
                hit = hits[n - 1]
                cited_start, cited_end = _best_sentence(sentence, hit, texts[hit.doc_id])
                citations[n] = Citation(n, hit, cited_start, cited_end, texts[hit.doc_id][cited_start:cited_end])
    if not kept:
        note = "het antwoord van het taalmodel was niet met de brieven te onderbouwen; hieronder het letterlijke antwoord"
        return replace(fallback, notes=fallback.notes + (note,))
    notes = fallback.notes + ((f"{dropped} zin(nen) zonder onderbouwing in de brieven weggelaten",) if dropped else ())
    ordered = tuple(citations[n] for n in sorted(citations))
    return Answer(question, " ".join(kept), False, ordered, mode="generated", notes=notes)
