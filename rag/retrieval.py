"""Question -> Hits: filters first, then ranking, so k results still come back."""

from __future__ import annotations

from dataclasses import dataclass

from rag.chunking import Chunk
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

    @classmethod
    def from_chunk(cls, chunk: Chunk, rank: int, score: float) -> "Hit":
        return cls(rank, round(float(score), 4), chunk.chunk_id, chunk.doc_id, chunk.title, chunk.date,
                   chunk.section, chunk.text, chunk.start, chunk.end, chunk.source)

    def as_json(self) -> dict:
        return {
            "rank": self.rank, "score": self.score, "chunk_id": self.chunk_id, "doc_id": self.doc_id,
            "title": self.title, "date": self.date, "section": self.section, "text": self.text,
            "start": self.start, "end": self.end, "source": self.source,
        }


def allowed_rows(index: CorpusIndex, filters: Filters) -> list[int] | None:
    if not filters.active:
        return None
    unknown = [doc_id for doc_id in filters.doc_ids if doc_id not in index.documents]
    if unknown:
        raise InputError(f"unknown letter {unknown[0]!r}; `rag chunks` lists the doc_ids")
    return [row for row, chunk in enumerate(index.chunks) if filters.admits(chunk)]


def dense_hits(index: CorpusIndex, query_vector, k: int, filters: Filters = Filters()) -> list[Hit]:
    rows = allowed_rows(index, filters)
    if rows is not None and not rows:
        return []
    (ranked,) = index.dense_search(query_vector[None, :], k, rows)
    return [Hit.from_chunk(index.chunks[row], rank, score) for rank, (row, score) in enumerate(ranked, start=1)]
