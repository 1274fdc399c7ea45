"""Question -> Hits: understand the question, filter, rank (dense, lexical, fused), merge.

Filters are applied before ranking, so k results still come back. A question that names a
time ("in 2020", "in maart 2021", "in de laatste brief") is restricted to letters of that
time. Follow-ups arrive already resolved (`rag.conversation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
import numpy as np

from rag.chunking import Chunk
from rag.conversation import Turn
from rag.dates import MONTH_ALTERNATION, MONTHS
from rag.errors import InputError
from rag.index import CorpusIndex


@dataclass(frozen=True)
class Filters:
    doc_ids: tuple[str, ...] = ()
    since: str | None = None  # ISO dates, inclusive
    until: str | None = None

    def admits(self, chunk: Chunk) -> bool:
        if self.doc_ids and chunk.doc_id not in self.doc_ids:
            return False
        if self.since and (chunk.date is None or chunk.date < self.since):
            return False
        if self.until and (chunk.date is None or chunk.date > self.until):
            return False
        return True

    @property
    def active(self) -> bool:
        return bool(self.doc_ids or self.since or self.until)


@dataclass(frozen=True)
class RetrievalSettings:
    mode: str = "hybrid"  # hybrid, dense, lexical
    fusion: str = "weighted"  # weighted or rrf: `rag eval --compare` measured weighted better (README)
    candidates: int = 50
    rrf_k: int = 60
    dense_weight: float = 0.5
    merge_adjacent: bool = True
    understand_time: bool = True


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    chunk_id: str
    doc_id: str
    title: str
    date: str | None
    section: str
    text: str
    start: int
    end: int
    source: str

    def as_json(self) -> dict:
        return {
            "rank": self.rank, "score": self.score, "chunk_id": self.chunk_id, "doc_id": self.doc_id,
            "title": self.title, "date": self.date, "section": self.section, "text": self.text,
            "start": self.start, "end": self.end, "source": self.source,
        }


@dataclass(frozen=True)
class Query:
    """The question as retrieval reads it: resolved against the conversation, with the time it names."""

    turn: Turn
    filters: Filters
    notes: tuple[str, ...] = ()

    @property
    def question(self) -> str:
        return self.turn.question

    @property
    def text(self) -> str:
        return self.turn.resolved


# --- reading the question ----------------------------------------------------------------

_MONTH_YEAR = re.compile(rf"\b({MONTH_ALTERNATION})\s+((?:19|20)\d\d)\b", re.IGNORECASE)
_YEAR = re.compile(r"\b(?:in|uit|van|sinds|during|from|of)\s+(?:het jaar\s+)?((?:19|20)\d\d)\b", re.IGNORECASE)
_LATEST = re.compile(r"\b(laatste|meest recente|recentste|nieuwste|latest|most recent|last)\s+(brief|brieven|verslag|bijeenkomst|vergadering|agenda|letter|meeting|report)\b", re.IGNORECASE)
_EARLIEST = re.compile(r"\b(eerste|oudste|vroegste|first|earliest|oldest)\s+(brief|verslag|bijeenkomst|vergadering|letter|meeting|report)\b", re.IGNORECASE)
def time_filters(text: str, index: CorpusIndex) -> tuple[Filters, str | None]:
    """Filters for the time a question names, and a note saying what was understood."""
    month = _MONTH_YEAR.search(text)
    if month:
        year, number = int(month.group(2)), MONTHS[month.group(1).lower()]
        last_day = (date(year + number // 12, number % 12 + 1, 1) - date.resolution).day
        return Filters(since=f"{year}-{number:02d}-01", until=f"{year}-{number:02d}-{last_day:02d}"), f"{month.group(1)} {year}"
    year = _YEAR.search(text)
    if year:
        return Filters(since=f"{year.group(1)}-01-01", until=f"{year.group(1)}-12-31"), year.group(1)
    dated = sorted((d.date, d.doc_id) for d in index.documents.values() if d.date)
    if dated and _LATEST.search(text):
        return Filters(doc_ids=(dated[-1][1],)), f"de laatste brief ({dated[-1][0]})"
    if dated and _EARLIEST.search(text):
        return Filters(doc_ids=(dated[0][1],)), f"de eerste brief ({dated[0][0]})"
    return Filters(), None


def understand(turn: Turn, index: CorpusIndex, filters: Filters = Filters(),
               settings: RetrievalSettings = RetrievalSettings()) -> Query:
    notes = [f"gelezen als vervolgvraag: {turn.resolved}"] if turn.is_follow_up else []
    if settings.understand_time and not filters.active:  # filters the user set win over the question's
        named, description = time_filters(turn.resolved, index)
        if description:
            if any(named.admits(chunk) for chunk in index.chunks):
                return Query(turn, named, tuple(notes + [f"alleen brieven uit {description}"]))
            notes.append(f"geen brieven uit {description}; alle brieven doorzocht")
    return Query(turn, filters, tuple(notes))


# --- ranking -----------------------------------------------------------------------------

def allowed_rows(index: CorpusIndex, filters: Filters) -> list[int] | None:
    if not filters.active:
        return None
    unknown = [doc_id for doc_id in filters.doc_ids if doc_id not in index.documents]
    if unknown:
        raise InputError(f"onbekende brief {unknown[0]!r}; `rag chunks` toont de doc_ids")
    return [row for row, chunk in enumerate(index.chunks) if filters.admits(chunk)]


def rank(index: CorpusIndex, query: Query, query_vector: np.ndarray | None, k: int,
         settings: RetrievalSettings = RetrievalSettings()) -> list[Hit]:
    rows = allowed_rows(index, query.filters)
    if rows is not None and not rows:
        return []
    depth = max(settings.candidates, k * 3)
    dense: list[tuple[int, float]] = []
    lexical: list[tuple[int, float]] = []
    if settings.mode in ("hybrid", "dense"):
        (dense,) = index.dense_search(query_vector[None, :], depth, rows)
    if settings.mode in ("hybrid", "lexical"):
        lexical = _lexical_candidates(index, query.text, depth, rows)
    if settings.mode == "dense":
        fused = dense
    elif settings.mode == "lexical":
        fused = lexical
    elif settings.fusion == "rrf":
        fused = _reciprocal_rank_fusion([dense, lexical], settings.rrf_k)
    else:
        fused = _weighted_fusion(dense, lexical, settings.dense_weight)
    return _to_hits(index, fused, k, settings.merge_adjacent)


def _lexical_candidates(index: CorpusIndex, text: str, depth: int, rows: list[int] | None) -> list[tuple[int, float]]:
    scores = index.lexical.scores(text)
    if rows is not None:
        mask = np.zeros_like(scores, dtype=bool)
        mask[rows] = True
        scores = np.where(mask, scores, 0.0)
    top = np.argsort(-scores, kind="stable")[:depth]
    return [(int(row), float(scores[row])) for row in top if scores[row] > 0]


def _reciprocal_rank_fusion(rankings: list[list[tuple[int, float]]], constant: int) -> list[tuple[int, float]]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, (row, _score) in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (constant + position)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _weighted_fusion(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], weight: float) -> list[tuple[int, float]]:
    def normalised(ranking: list[tuple[int, float]]) -> dict[int, float]:
        if not ranking:
            return {}
        values = [score for _row, score in ranking]
        low, high = min(values), max(values)
        return {row: (score - low) / (high - low) if high > low else 1.0 for row, score in ranking}

    dense_scores, lexical_scores = normalised(dense), normalised(lexical)
    rows = set(dense_scores) | set(lexical_scores)
    fused = {row: weight * dense_scores.get(row, 0.0) + (1 - weight) * lexical_scores.get(row, 0.0) for row in rows}
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _to_hits(index: CorpusIndex, ranked: list[tuple[int, float]], k: int, merge: bool) -> list[Hit]:
    """The best k passages; overlapping or adjacent pieces of one section become one passage."""
    picked: list[dict] = []
    for row, score in ranked:
        chunk = index.chunks[row]
        touching = [p for p in picked if p["chunk"].doc_id == chunk.doc_id and p["chunk"].section == chunk.section
                    and chunk.start <= p["end"] + 2 and p["start"] <= chunk.end + 2] if merge else []
        if touching:
            # The best-ranked passage absorbs the piece and anything the piece now joins it to.
            keeper = touching[0]
            keeper["start"] = min([chunk.start] + [p["start"] for p in touching])
            keeper["end"] = max([chunk.end] + [p["end"] for p in touching])
            picked = [p for p in picked if p is keeper or p not in touching[1:]]
            continue
        if len(picked) == k:
            break
        picked.append({"chunk": chunk, "score": score, "start": chunk.start, "end": chunk.end})
    hits = []
    for position, entry in enumerate(picked, start=1):
        chunk, start, end = entry["chunk"], entry["start"], entry["end"]
        text = index.documents[chunk.doc_id].text[start:end]
        hits.append(Hit(position, round(float(entry["score"]), 4), chunk.chunk_id, chunk.doc_id, chunk.title,
                        chunk.date, chunk.section, text, start, end, chunk.source))
    return hits
