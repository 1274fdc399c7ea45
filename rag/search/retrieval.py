"""Question -> Hits: read the time a question names, filter, rank (dense, lexical, fused).

Filters are applied before ranking, so k results still come back; they are resolved with
arrays built at load (a day number and a letter per passage), so their cost does not grow in
Python with the corpus. A question that names the letter by its time ("in de brief van maart
2021", "wat schreef de minister in 2020") is restricted to letters of that time, but a letter
whose date the reader is not sure of is never dropped by it; a time the question asks about
("per 1 juli 2020", "tussen april en augustus 2020") filters nothing; "in de laatste brief over X" takes the latest of the letters that speak
about X. A hit is one passage of citation size: its offsets and score are those of the
passage that matched. Follow-ups arrive already resolved (`rag.search.conversation`).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date

import numpy as np

from rag.search.conversation import Turn
from rag.language import MONTH_ALTERNATION, MONTHS
from rag.errors import InputError
from rag.readers.references import normalise_dossier
from rag.index.store import NO_DATE, Generation, day_number
from rag.settings import RetrievalSettings


@dataclass(frozen=True)
class Filters:
    doc_ids: tuple[str, ...] = ()
    since: str | None = None  # ISO dates, inclusive
    until: str | None = None
    dossier: str | None = None  # the letter's own dossier or one it cites: "28676", "21501-02"
    ministry: str | None = None  # part of the ministry's name, any case: "buitenlandse zaken"
    kind: str | None = None  # brief, antwoord op Kamervragen, verslag, ...
    keep_unsure_dates: bool = False  # a time the question names does not drop a letter with a guessed date
    without: tuple[str, ...] = ()  # letters left out (asking as if they were not indexed: the leave-letters-out eval)

    @property
    def active(self) -> bool:
        return bool(self.doc_ids or self.since or self.until or self.dossier or self.ministry or self.kind or self.without)


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
    row: int = -1  # the passage's row in the index it came from
    kind: str = ""
    ministry: str | None = None
    references: tuple[str, ...] = ()

    def as_json(self) -> dict:
        return {
            "rank": self.rank, "score": self.score, "chunk_id": self.chunk_id, "doc_id": self.doc_id,
            "title": self.title, "date": self.date, "section": self.section, "text": self.text,
            "start": self.start, "end": self.end, "source": self.source,
            "kind": self.kind, "ministry": self.ministry, "references": list(self.references),
        }


@dataclass(frozen=True)
class Query:
    """The question as retrieval reads it: resolved against the conversation, with the time it names."""

    turn: Turn
    filters: Filters
    notes: tuple[str, ...] = ()
    pick: str | None = None  # "latest" or "earliest": of the letters about the topic, only that one

    @property
    def question(self) -> str:
        return self.turn.question

    @property
    def text(self) -> str:
        return self.turn.resolved

    def without_letters(self, doc_ids) -> "Query":
        """The same question with these letters left out of the search: one they cannot answer any more."""
        return replace(self, filters=replace(self.filters, without=tuple(sorted(set(doc_ids)))))


# --- reading the question ----------------------------------------------------------------

_TIME = rf"(?:(?:\d{{1,2}}\s+)?({MONTH_ALTERNATION})\s+)?((?:19|20)\d\d)"
# A time that names the letter itself, not something the letter is about: "in de brief van maart 2021", "het verslag
# uit 2020", "wat schreef de minister in 2020", "wat zei Nederland in maart 2021", "the letter of March 2021".
_LETTER_TIME = re.compile(
    rf"\b(?:brief|brieven|kamerbrief|\w+brief|verslag|antwoorden|beantwoording|nota|letter|letters|report)\s+"
    rf"(?:van|uit|of|from|dated|d\.d\.)\s+{_TIME}\b"
    rf"|\b(?:schreef|schreven|schrijft|meldde|meldden|stuurde|stuurden|zei|zeiden|liet weten|wrote|said|reported)\b"
    rf"(?:\s+[\w’'-]+){{0,4}}?\s+(?:in|op|during|on)\s+{_TIME}\b",
    re.IGNORECASE)
_LATEST = re.compile(r"\b(laatste|meest recente|recentste|nieuwste|latest|most recent|last)\s+(brief|brieven|verslag|bijeenkomst|vergadering|agenda|letter|meeting|report)\b", re.IGNORECASE)
_EARLIEST = re.compile(r"\b(eerste|oudste|vroegste|first|earliest|oldest)\s+(brief|verslag|bijeenkomst|vergadering|letter|meeting|report)\b", re.IGNORECASE)


def named_time(text: str) -> tuple[Filters, str | None, str | None]:
    """The time a question names the letter by: a date filter (for sure dates only), or which letter of the topic
    to take. A time the question asks about ("welke regel gaat per 1 juli 2020 in?", "hoeveel hulp tussen april en
    augustus 2020?") names what happened, often before the letter was written: it filters nothing."""
    named = _LETTER_TIME.search(text)
    if named:
        groups = [group for group in named.groups()]
        month_name, year = (groups[0], groups[1]) if groups[1] else (groups[2], groups[3])
        year = int(year)
        if month_name:
            number = MONTHS[month_name.lower()]
            last_day = (date(year + number // 12, number % 12 + 1, 1) - date.resolution).day
            return (Filters(since=f"{year}-{number:02d}-01", until=f"{year}-{number:02d}-{last_day:02d}",
                            keep_unsure_dates=True), f"{month_name} {year}", None)
        return Filters(since=f"{year}-01-01", until=f"{year}-12-31", keep_unsure_dates=True), str(year), None
    if _LATEST.search(text):
        return Filters(), None, "latest"
    if _EARLIEST.search(text):
        return Filters(), None, "earliest"
    return Filters(), None, None


def understand(turn: Turn, index: Generation, filters: Filters = Filters(),
               settings: RetrievalSettings = RetrievalSettings()) -> Query:
    notes = [f"gelezen als vervolgvraag: {turn.resolved}"] if turn.is_follow_up else []
    if settings.understand_time and not (filters.doc_ids or filters.since or filters.until):
        named, description, pick = named_time(turn.resolved)  # dates the user set win over the question's
        if pick:
            return Query(turn, filters, tuple(notes), pick=pick)
        if description:
            combined = replace(filters, since=named.since, until=named.until, keep_unsure_dates=True)
            if allowed_rows(index, combined).any():
                return Query(turn, combined, tuple(notes + [f"alleen brieven uit {description}"]))
            notes.append(f"geen brieven uit {description}; alle brieven doorzocht")
    return Query(turn, filters, tuple(notes))


# --- filters -----------------------------------------------------------------------------

def letter_mask(index: Generation, filters: Filters) -> np.ndarray:
    """Which letters the filters admit (one boolean per letter)."""
    letters = index.letters
    mask = np.ones(len(letters), dtype=bool)
    if filters.doc_ids:
        unknown = [doc_id for doc_id in filters.doc_ids if index.letter(doc_id) is None]
        if unknown:
            raise InputError(f"onbekende brief {unknown[0]!r}; `rag chunks` toont de doc_ids")
        chosen = np.zeros(len(letters), dtype=bool)
        chosen[[index.letter(doc_id).row for doc_id in filters.doc_ids]] = True
        mask &= chosen
    if filters.without:
        mask[[index.letter(doc_id).row for doc_id in filters.without if index.letter(doc_id) is not None]] = False
    if filters.since or filters.until:
        days = index.letter_day
        dated = days != NO_DATE
        inside = dated & (days >= day_number(filters.since or "0001-01-01")) & (days <= day_number(filters.until or "9999-12-31"))
        mask &= inside | (~index.letter_sure if filters.keep_unsure_dates else False)
    if filters.dossier:
        about = np.zeros(len(letters), dtype=bool)
        about[index.letters_of_dossier.get(normalise_dossier(filters.dossier), [])] = True
        mask &= about
    if filters.ministry:
        wanted = [code for code, name in enumerate(index.ministries) if filters.ministry.lower() in name]
        mask &= np.isin(index.letter_ministry, wanted)
    if filters.kind:
        wanted = [code for code, name in enumerate(index.kinds) if name == filters.kind.lower()]
        mask &= np.isin(index.letter_kind, wanted)
    return mask


def allowed_rows(index: Generation, filters: Filters) -> np.ndarray:
    """The passages the filters admit, as a boolean mask over the rows."""
    return letter_mask(index, filters)[index.chunk_letter]


# --- ranking -----------------------------------------------------------------------------

def rank(index: Generation, query: Query, query_vector: np.ndarray | None, k: int,
         settings: RetrievalSettings = RetrievalSettings()) -> list[Hit]:
    """The best k passages."""
    mask = allowed_rows(index, query.filters) if query.filters.active else None
    if mask is not None and not mask.any():
        return []
    fused = _fused(index, query, query_vector, k, settings, mask)
    if query.pick and fused:
        letter = _picked_letter(index, fused, query.pick)
        mask = index.chunk_letter == letter if mask is None else mask & (index.chunk_letter == letter)
        fused = _fused(index, query, query_vector, k, settings, mask)
    return _to_hits(index, fused, k, settings.merge_adjacent)


# The dense half of a hybrid search runs beside the BM25 half: FAISS lets go of the interpreter while it searches,
# so on a large index (at a million passages about 11 and 9 ms) the two take the time of the longer one. Threads
# enough for every question a server answers at once.
_DENSE_SIDE = ThreadPoolExecutor(max_workers=4 * (os.cpu_count() or 2), thread_name_prefix="dense-search")


def _fused(index: Generation, query: Query, query_vector: np.ndarray | None, k: int, settings: RetrievalSettings,
           mask: np.ndarray | None) -> list[tuple[int, float]]:
    depth = max(settings.candidates, k * 3)
    dense: list[tuple[int, float]] = []
    lexical: list[tuple[int, float]] = []
    if settings.mode == "hybrid":
        pending = _DENSE_SIDE.submit(index.dense_search, query_vector, depth, mask)
        lexical = index.lexical.top(query.text, depth, mask)
        dense = pending.result()
    elif settings.mode == "dense":
        dense = index.dense_search(query_vector, depth, mask)
    else:
        lexical = index.lexical.top(query.text, depth, mask)
    if settings.mode == "dense":
        fused = dense
    elif settings.mode == "lexical":
        fused = lexical
    elif settings.fusion == "rrf":
        fused = _reciprocal_rank_fusion([dense, lexical], settings.rrf_k)
    else:
        fused = _weighted_fusion(dense, lexical, settings.dense_weight)
    if settings.sentence_weight and query_vector is not None and fused:
        fused = _with_best_sentence(index, fused, query_vector, settings.sentence_weight)
    return fused


def _picked_letter(index: Generation, fused: list[tuple[int, float]], pick: str) -> int:
    """Of the letters among the best passages, the latest (or earliest) with a date."""
    letters = list(dict.fromkeys(int(index.chunk_letter[row]) for row, _score in fused[:20]))
    dated = [letter for letter in letters if index.letter_day[letter] != NO_DATE] or letters
    days = [int(index.letter_day[letter]) for letter in dated]
    return dated[days.index(max(days) if pick == "latest" else min(days))]


def _reciprocal_rank_fusion(rankings: list[list[tuple[int, float]]], constant: int) -> list[tuple[int, float]]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, (row, _score) in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (constant + position)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _normalised(ranking: list[tuple[int, float]]) -> dict[int, float]:
    if not ranking:
        return {}
    values = [score for _row, score in ranking]
    low, high = min(values), max(values)
    return {row: (score - low) / (high - low) if high > low else 1.0 for row, score in ranking}


def _weighted_fusion(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], weight: float) -> list[tuple[int, float]]:
    dense_scores, lexical_scores = _normalised(dense), _normalised(lexical)
    rows = set(dense_scores) | set(lexical_scores)
    fused = {row: weight * dense_scores.get(row, 0.0) + (1 - weight) * lexical_scores.get(row, 0.0) for row in rows}
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _with_best_sentence(index: Generation, fused: list[tuple[int, float]], query_vector: np.ndarray,
                        weight: float) -> list[tuple[int, float]]:
    """Add the similarity of each candidate's best sentence: a passage with one sentence that answers
    beats one that is vaguely about the topic throughout."""
    best = []
    for row, _score in fused:
        _starts, _ends, vectors = index.sentences_of(row)
        best.append((row, float((np.asarray(vectors, dtype=np.float32) @ query_vector).max()) if len(vectors) else 0.0))
    sentence_scores, passage_scores = _normalised(best), _normalised(fused)
    combined = {row: (1 - weight) * passage_scores[row] + weight * sentence_scores[row] for row, _ in fused}
    return sorted(combined.items(), key=lambda item: (-item[1], item[0]))


def _to_hits(index: Generation, ranked: list[tuple[int, float]], k: int, merge: bool) -> list[Hit]:
    """The best k passages, each as it matched (with `merge`, the old behaviour: touching pieces of one
    section glued into one passage, however long)."""
    picked: list[dict] = []
    for row, score in ranked:
        letter, section = int(index.chunk_letter[row]), int(index.chunk_section[row])
        start, end = int(index.chunk_start[row]), int(index.chunk_end[row])
        touching = [p for p in picked if p["letter"] == letter and p["section"] == section
                    and start <= p["end"] + 2 and p["start"] <= end + 2] if merge else []
        if touching:
            keeper = touching[0]
            keeper["start"] = min([start] + [p["start"] for p in touching])
            keeper["end"] = max([end] + [p["end"] for p in touching])
            picked = [p for p in picked if p is keeper or p not in touching[1:]]
            continue
        if len(picked) == k:
            break
        picked.append({"row": row, "letter": letter, "section": section, "score": score, "start": start, "end": end})
    hits = []
    for position, entry in enumerate(picked, start=1):
        letter = index.letters[entry["letter"]]
        text = index.document_at(letter.row).text[entry["start"]:entry["end"]]
        hits.append(Hit(position, round(float(entry["score"]), 4), index.chunk_id(entry["row"]), letter.doc_id,
                        letter.title, letter.date, index.sections[entry["section"]], text, entry["start"], entry["end"],
                        letter.source, entry["row"], letter.kind, letter.ministry, letter.references))
    return hits
