"""Optional generated answers through an OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp).

Set RAG_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1) and RAG_LLM_MODEL (RAG_LLM_API_KEY and
RAG_LLM_TIMEOUT optional). Numbered passages go in; `[n]` are required out. Every sentence's
`[n]` must name a passage it was given and be supported by it (most of its content words are
in that passage); other sentences are dropped and the answer says so. Any failure of the
endpoint falls back to the extractive answer with a visible note.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, replace

from rag.answer import Answer, Citation, split_sentences
from rag.lexical import tokenize
from rag.retrieval import Hit

SUPPORT = 0.5  # share of a sentence's content words that its cited passage must contain
SYSTEM_PROMPT = (
    "Je beantwoordt vragen over Nederlandse Kamerbrieven. Gebruik alleen de genummerde passages. "
    "Zet achter elke zin de nummers van de passages waarop hij steunt, zoals [1] of [2][3]. "
    "Staat het antwoord niet in de passages, antwoord dan precies: Daarover vind ik niets in de brieven. "
    "Antwoord in de taal van de vraag, kort en zakelijk."
)


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_environment(cls) -> "Endpoint | None":
        base_url, model = os.environ.get("RAG_LLM_BASE_URL"), os.environ.get("RAG_LLM_MODEL")
        if not base_url or not model:
            return None
        return cls(base_url.rstrip("/"), model, os.environ.get("RAG_LLM_API_KEY"),
                   float(os.environ.get("RAG_LLM_TIMEOUT", "60")))

    def complete(self, question: str, passages: str) -> str:
        body = json.dumps({
            "model": self.model, "temperature": 0,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": f"Passages:\n\n{passages}\n\nVraag: {question}"}],
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())["choices"][0]["message"]["content"]


def numbered_passages(hits: list[Hit]) -> str:
    return "\n\n".join(f"[{n}] {h.title} ({h.date}), {h.section}:\n{h.text}" for n, h in enumerate(hits, start=1))


def _supported(sentence: str, passage: str) -> bool:
    words = set(tokenize(re.sub(r"\[\d+\]", " ", sentence)))
    return bool(words) and len(words & set(tokenize(passage))) / len(words) >= SUPPORT


def _best_sentence(sentence: str, hit: Hit, text: str) -> tuple[int, int]:
    """The sentence of the passage closest to the generated one, so the page can mark it."""
    words = set(tokenize(sentence))
    spans = split_sentences(text[hit.start:hit.end], hit.start)
    return max(spans, key=lambda span: len(words & set(tokenize(text[span[0]:span[1]]))), default=(hit.start, hit.end))


def generated_answer(endpoint: Endpoint, question: str, hits: list[Hit], texts: dict[str, str], fallback: Answer) -> Answer:
    """The endpoint's answer with every claim checked against the passages; the fallback on any failure."""
    if fallback.abstained:
        return fallback  # weak evidence: no model is asked to make something of it
    try:
        content = endpoint.complete(question, numbered_passages(hits))
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as error:
        note = f"het taalmodel gaf geen antwoord ({type(error).__name__}); hieronder het letterlijke antwoord uit de brieven"
        return replace(fallback, notes=fallback.notes + (note,))
    kept, dropped = [], 0
    citations: dict[int, Citation] = {}
    # "Zin. [1] Volgende zin." -> "Zin [1]. Volgende zin.": markers belong to the sentence before them.
    content = re.sub(r"([.!?])((?:\s*\[\d+\])+)", lambda m: m.group(2) + m.group(1), content.strip())
    for start, end in split_sentences(content):
        sentence = content[start:end].strip()
        numbers = [int(n) for n in re.findall(r"\[(\d+)\]", sentence)]
        valid = [n for n in numbers if 1 <= n <= len(hits)]
        if not valid or len(valid) != len(numbers) or not all(_supported(sentence, hits[n - 1].text) for n in valid):
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
