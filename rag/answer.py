"""Hits -> Answer: the sentences that answer the question, quoted verbatim, each with its [n].

No language model is needed: sentences of the best passages are scored against the question
with the same embeddings plus lexical overlap, and the best are quoted, grouped by letter.
Each citation narrows its offsets to the quoted sentences. When the evidence is weak the
answer abstains in Dutch and lists the nearest passages as "mogelijk relevant".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.dates import shown_date
from rag.lexical import tokenize
from rag.retrieval import Hit

ABSTAIN_NL = "Daarover vind ik niets in de brieven."
ABSTAIN_EN = "I find nothing about that in the letters."
# Calibrated on the eval set's unanswerable questions (`rag eval` reports the effect): e5
# similarities are compressed, so the best sentence's similarity alone decides only when it is
# clearly weak; in the grey zone the question's vocabulary must also be absent from the letters.
WEAK_EVIDENCE = 0.82
WEAK_WITHOUT_SHARED_TERMS = 0.85
WEAK_WITH_UNKNOWN_TERMS = 0.845
MAX_QUOTES = 5
QUOTE_MARGIN = 0.045  # quote sentences scoring within this of the best one
PASSAGES_READ = 5
_ABBREVIATIONS = {
    "o.a", "m.b.t", "art", "nr", "d.d", "jl", "a.s", "incl", "w.o", "o.m", "i.e", "e.g", "etc", "bijv",
    "ca", "resp", "v.w.b", "mr", "dhr", "mw", "jr", "vs", "z.g", "m.n", "t.a.v", "i.v.m", "n.a.v", "e.a",
}
_INITIALS = re.compile(r"(?:\w\.)*\w")  # S.A., o.a., m.b.t., a single initial
_BOUNDARY = re.compile(r"(?<=[.!?])[”\"’'»)]*\s+(?=[A-ZÀ-Ý0-9“\"‘'(«])|\n+")


@dataclass(frozen=True)
class Citation:
    n: int
    hit: Hit
    start: int
    end: int
    quote: str

    def as_json(self) -> dict:
        return {**self.hit.as_json(), "n": self.n, "text": self.quote, "start": self.start, "end": self.end,
                "passage_start": self.hit.start, "passage_end": self.hit.end}


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    abstained: bool
    citations: tuple[Citation, ...]
    related: tuple[Hit, ...] = ()
    mode: str = "extractive"
    notes: tuple[str, ...] = field(default=())

    def as_json(self) -> dict:
        return {
            "question": self.question, "answer": self.text, "abstained": self.abstained,
            "citations": [c.as_json() for c in self.citations], "mode": self.mode, "notes": list(self.notes),
            "related": [h.as_json() for h in self.related],
        }


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Sentence spans (absolute offsets), not split after abbreviations or initials."""
    spans, start = [], 0
    for match in _BOUNDARY.finditer(text):
        before = text[start:match.start()].rstrip("”\"’'»)")
        last_word = before.rsplit(" ", 1)[-1].strip("(“\"‘'«").rstrip(".!?").lower()
        if "\n" not in match.group(0) and (last_word in _ABBREVIATIONS or _INITIALS.fullmatch(last_word)):
            continue
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(offset + s, offset + e) for s, e in spans if text[s:e].strip()]


def is_english(question: str) -> bool:
    words = re.findall(r"[a-z]+", question.lower())
    english = sum(w in {"the", "what", "did", "does", "who", "which", "how", "about", "is", "are", "of", "and", "why", "was", "were", "will"} for w in words)
    dutch = sum(w in {"de", "het", "wat", "wie", "welke", "hoe", "over", "is", "zijn", "van", "en", "een", "waarom", "was", "werd"} for w in words)
    return english > dutch


@dataclass(frozen=True)
class ScoredSentence:
    hit: Hit
    start: int
    end: int
    dense: float
    score: float


@dataclass(frozen=True)
class LexicalSignal:
    known_terms: float  # share of the question's terms found anywhere in the letters
    best_bm25: float


def evidence_is_weak(best_dense: float, signal: LexicalSignal, english: bool) -> bool:
    if best_dense < WEAK_EVIDENCE:
        return True
    if signal.best_bm25 == 0.0 and best_dense < WEAK_WITHOUT_SHARED_TERMS:
        return True
    return not english and signal.known_terms <= 0.5 and best_dense < WEAK_WITH_UNKNOWN_TERMS


def score_sentences(question: str, hits: list[Hit], embedder, texts: dict[str, str]) -> list[ScoredSentence]:
    candidates: list[tuple[Hit, int, int]] = []
    for hit in hits[:PASSAGES_READ]:
        for start, end in split_sentences(texts[hit.doc_id][hit.start:hit.end], hit.start):
            if end - start >= 20:
                candidates.append((hit, start, end))
    if not candidates:
        return []
    sentences = [texts[hit.doc_id][start:end] for hit, start, end in candidates]
    vectors = embedder.encode_sentences(sentences)
    similarity = vectors @ embedder.encode_queries([question])[0]
    question_terms = set(tokenize(question))
    scored = []
    for (hit, start, end), sentence, dense in zip(candidates, sentences, similarity):
        overlap = len(question_terms & set(tokenize(sentence))) / len(question_terms) if question_terms else 0.0
        # Dense similarity carries meaning across wording and language; overlap rewards the exact
        # names and terms of the question; a passage ranked higher lends a little weight.
        score = float(dense) + 0.08 * overlap + 0.01 * (PASSAGES_READ - hit.rank)
        scored.append(ScoredSentence(hit, start, end, float(dense), score))
    return sorted(scored, key=lambda s: -s.score)


def extractive_answer(question: str, hits: list[Hit], embedder, texts: dict[str, str], signal: LexicalSignal,
                      notes: tuple[str, ...] = ()) -> Answer:
    english = is_english(question)
    scored = score_sentences(question, hits, embedder, texts)
    best_dense = max((s.dense for s in scored), default=0.0)
    if not scored or evidence_is_weak(best_dense, signal, english):
        return Answer(question, ABSTAIN_EN if english else ABSTAIN_NL, True, (), tuple(hits[:3]), notes=notes)
    best = scored[0].score
    chosen: list[ScoredSentence] = []
    per_letter: dict[str, int] = {}
    for sentence in scored:
        # Close runners-up from other letters are worth more than a fourth sentence from one letter.
        if sentence.score < best - QUOTE_MARGIN or sentence.dense < WEAK_EVIDENCE or per_letter.get(sentence.hit.doc_id, 0) >= 3:
            continue
        chosen.append(sentence)
        per_letter[sentence.hit.doc_id] = per_letter.get(sentence.hit.doc_id, 0) + 1
        if len(chosen) == MAX_QUOTES:
            break
    citations = _citations(chosen, texts)
    return Answer(question, _compose(citations, english), False, tuple(citations), notes=notes)


def _citations(chosen: list[ScoredSentence], texts: dict[str, str]) -> list[Citation]:
    """One citation per run of chosen sentences, ordered by letter date and position."""
    ordered = sorted(chosen, key=lambda s: (s.hit.date or "", s.hit.doc_id, s.start))
    runs: list[list[ScoredSentence]] = []
    for sentence in ordered:
        last = runs[-1][-1] if runs else None
        contiguous = last and last.hit.doc_id == sentence.hit.doc_id and 0 <= sentence.start - last.end <= 2
        if contiguous:
            runs[-1].append(sentence)
        else:
            runs.append([sentence])
    citations = []
    for n, run in enumerate(runs, start=1):
        start, end = run[0].start, run[-1].end
        citations.append(Citation(n, run[0].hit, start, end, texts[run[0].hit.doc_id][start:end]))
    return citations


def _compose(citations: list[Citation], english: bool) -> str:
    lines = ["According to the letters:" if english else "Volgens de brieven:"]
    current = None
    for citation in citations:
        hit = citation.hit
        group = (hit.doc_id, hit.section)
        if group != current:
            when = (hit.date or "undated") if english else shown_date(hit.date)
            lines.append(f"\n{hit.title} ({when}), {hit.section}:")
            current = group
        lines.append(f"“{' '.join(citation.quote.split())}” [{citation.n}]")
    return "\n".join(lines)

