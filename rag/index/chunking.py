"""Documents -> Chunks: one chunk per section when it fits, split inside the section otherwise.

No chunk crosses a section boundary. Each chunk's `text` is exactly
`document.text[start:end]`; the embedded text adds the letter's title, date and section so
that a passage about "de Alliantie" still knows it is about China.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from rag.language import ANSWER_HEADING, QUESTION_HEADING, dutch_date
from rag.readers.document import FOOTNOTES_HEADING, Document, Section
from rag.settings import ChunkSettings

CHUNKER_VERSION = 3

# Sentence ends (not after a one-letter abbreviation such as "o.a." or "art."), then clause ends.
_SEPARATORS = [
    r"\n\n",
    r"\n",
    r"(?<=[a-zà-ÿ0-9)”’\"»]{2}[.!?])[”’\"»)]*\s+(?=[A-ZÀ-Ý0-9“‘\"(«])",
    r"(?<=[;:])\s+",
    r"(?<=,)\s+",
    r"\s+",
]


def chunking_manifest(settings: ChunkSettings) -> dict:
    """What an index records of how its passages were cut: a change re-chunks every letter."""
    return {"max_chars": settings.max_chars, "overlap_chars": settings.overlap_chars, "strategy": settings.strategy,
            "chunker_version": CHUNKER_VERSION}


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    title: str
    date: str | None
    section: str
    start: int
    end: int
    text: str
    source: str
    embed_text: str

    def as_json(self) -> dict:
        """The fields of a Hit without rank and score (the CLI contract)."""
        return {
            "chunk_id": self.chunk_id, "doc_id": self.doc_id, "title": self.title,
            "date": self.date, "section": self.section, "start": self.start, "end": self.end,
            "text": self.text, "source": self.source,
        }


def chunk_id_for(document: Document, start: int, end: int) -> str:
    digest = hashlib.sha1(f"{document.doc_id}:{document.content_hash}:{start}:{end}".encode()).hexdigest()
    return f"{document.doc_id}#{digest[:10]}"


def embed_text_for(document: Document, section_label: str, passage: str) -> str:
    """The passage as the model embeds it: with the letter's title, date and section, so a passage about
    "de Alliantie" still knows it is about China. Footnotes are references, not about the letter's topic:
    they carry only their own text, or every question matching the title would find them first."""
    if section_label == FOOTNOTES_HEADING:
        return f"{section_label}\n\n{passage}"
    header = " ".join(part for part in (document.title, f"({dutch_date(document.date)})" if document.date else "") if part)
    return f"{header}\n{section_label}\n\n{passage}" if header else f"{section_label}\n\n{passage}"


def chunk_documents(documents: Iterable[Document], settings: ChunkSettings = ChunkSettings()) -> list[Chunk]:
    return [chunk for document in documents for chunk in chunk_document(document, settings)]


def chunk_document(document: Document, settings: ChunkSettings = ChunkSettings()) -> list[Chunk]:
    if settings.strategy == "fixed":
        return _fixed_chunks(document, settings)
    chunks = []
    for label, start, end, question in _section_spans(document, settings.question_context):
        for piece_start, piece_end in _split_span(document.text, start, end, settings):
            passage = document.text[piece_start:piece_end]
            # A later piece of a long answer still says which question it answers.
            context = f"{label}: {question}\n\n" if question and piece_start > start else ""
            chunks.append(Chunk(
                chunk_id=chunk_id_for(document, piece_start, piece_end),
                doc_id=document.doc_id,
                title=document.title,
                date=document.date,
                section=label,
                start=piece_start,
                end=piece_end,
                text=passage,
                source=document.source,
                embed_text=embed_text_for(document, label, context + passage),
            ))
    return chunks


def _fixed_chunks(document: Document, settings: ChunkSettings) -> list[Chunk]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=settings.max_chars, chunk_overlap=settings.overlap_chars,
                                              add_start_index=True)
    chunks = []
    for piece in splitter.create_documents([document.text]):
        start = piece.metadata["start_index"]
        end = start + len(piece.page_content)
        chunks.append(Chunk(chunk_id_for(document, start, end), document.doc_id, document.title, document.date,
                            document.section_at(start).label, start, end, piece.page_content, document.source,
                            embed_text=piece.page_content))
    return chunks




def _section_spans(document: Document, question_context: int) -> Iterator[tuple[str, int, int, str]]:
    """Section bodies, with the question a span answers ("" for most letters).

    A heading-only section (`SESSIE 2`) lends its name to the next one. In an answer to
    Kamervragen, "Vraag N" and the "Antwoord N" after it form one span labelled "Vraag N": a
    citation shows the question with its answer.
    """
    pending: list[Section] = []
    sections = list(document.sections)
    index = 0
    while index < len(sections):
        section = sections[index]
        index += 1
        if not document.text[section.start:section.end].strip():
            pending.append(section)
            continue
        label = section.label
        for waiting in pending:
            if not label.startswith(waiting.label):
                label = f"{waiting.label} > {label}"
        pending = []
        question = QUESTION_HEADING.match(section.heading)
        following = sections[index] if index < len(sections) else None
        answer = ANSWER_HEADING.match(following.heading) if following is not None else None
        if question and answer and _numbers(question.group(1)) == _numbers(answer.group(1)):
            asked = " ".join(document.text[section.start:section.end].split())
            yield label, section.start, following.end, asked[:question_context]
            index += 1
            continue
        yield label, section.start, section.end, ""


def _numbers(listed: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\d+", listed))


def _split_span(text: str, start: int, end: int, settings: ChunkSettings) -> list[tuple[int, int]]:
    body = text[start:end]
    stripped_start = start + (len(body) - len(body.lstrip()))
    stripped_end = start + len(body.rstrip())
    if stripped_end <= stripped_start:
        return []
    if stripped_end - stripped_start <= settings.max_chars:
        return [(stripped_start, stripped_end)]
    pieces = _splitter(settings).split_text(text[stripped_start:stripped_end])
    spans: list[tuple[int, int]] = []
    for piece in pieces:
        # The splitter returns substrings in order; with overlap each begins inside the last.
        after = spans[-1][0] + 1 if spans else stripped_start
        found = text.find(piece, after, stripped_end)
        if found < 0:  # not where the splitter's order says: take the same length from there, lose nothing
            found = min(after, stripped_end - 1)
        spans.append((found, min(found + len(piece), stripped_end)))
    return spans


# --- sentences (stored per passage at ingest: answers quote them, retrieval scores them) ---------

_ABBREVIATIONS = {
    "o.a", "m.b.t", "art", "nr", "d.d", "jl", "a.s", "incl", "w.o", "o.m", "i.e", "e.g", "etc", "bijv",
    "ca", "resp", "v.w.b", "mr", "dhr", "mw", "jr", "vs", "z.g", "m.n", "t.a.v", "i.v.m", "n.a.v", "e.a",
}
_INITIALS = re.compile(r"(?:\w\.)*\w")  # S.A., o.a., m.b.t., a single initial
_BOUNDARY = re.compile(r"(?<=[.!?])[”\"’'»)]*\s+(?=[A-ZÀ-Ý0-9“\"‘'(«])|\n+")


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



def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The sentences of text[start:end], as absolute offsets."""
    return split_sentences(text[start:end], start)


_SPLITTERS: dict[ChunkSettings, object] = {}


def _splitter(settings: ChunkSettings):
    if settings not in _SPLITTERS:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        _SPLITTERS[settings] = RecursiveCharacterTextSplitter(
            separators=_SEPARATORS,
            is_separator_regex=True,
            keep_separator="end",
            chunk_size=settings.max_chars,
            chunk_overlap=settings.overlap_chars,
        )
    return _SPLITTERS[settings]
