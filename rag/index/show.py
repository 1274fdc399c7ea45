"""Citation lookup: a cited passage shown in place in its letter (`rag show`, `/api/show`, the chat's letter view).

A citation is either a chunk id or `DOC_ID:START-END` with offsets into the stored text. The command
line reads the live generation's store without loading the model; a server shows the passage from the
generation it serves, so a lookup always shows the text its citations were taken from.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.errors import InputError
from rag.index.folder import Stores, UnusableIndex, generation_arrays, live_build, shown
from rag.index.store import Generation
from rag.readers.document import Document, document_from_json

_SPAN = re.compile(r"^(?P<doc>[^:#\s]+):(?P<start>\d+)-(?P<end>\d+)$")


@dataclass(frozen=True)
class Passage:
    doc_id: str
    title: str
    date: str | None
    section: str
    source: str
    start: int
    end: int
    before: str
    passage: str
    after: str

    def as_json(self) -> dict:
        return asdict(self)


def show_citation(index_dir: Path, citation: str, context_chars: int = 400) -> Passage:
    """The cited passage with the text around it, read from the live generation's store (no model, no FAISS)."""
    build = live_build(Path(index_dir))
    if build is None:
        raise UnusableIndex(f"{shown(index_dir)}: no index here; run `rag ingest --index {shown(index_dir)}`")
    span = _parse(citation)
    try:
        stores = Stores(*build)
    except sqlite3.Error:
        raise UnusableIndex(f"{shown(index_dir)}: the store is unreadable; run `rag ingest --index {shown(index_dir)}`") from None
    try:
        if isinstance(span, str):
            found = stores.one("SELECT row FROM chunks WHERE chunk_id = ?", (span,))
            if found is None:
                raise InputError(_no_chunk(span, shown(index_dir)))
            letter, start, end = _passage_span(*build, found[0])
            (doc_id,) = stores.one("SELECT doc_id FROM letters WHERE row = ?", (letter,))
        else:
            doc_id, start, end = span
        row = stores.one("SELECT meta, text FROM letters WHERE doc_id = ?", (doc_id,))
    except (sqlite3.Error, OSError, KeyError, ValueError) as error:  # pruned by two ingests in a row, or damaged
        raise UnusableIndex(f"{shown(index_dir)}: cannot read the stored letters ({type(error).__name__}); "
                            f"run `rag ingest --index {shown(index_dir)}` if this persists") from None
    finally:
        stores.close()
    if row is None:
        raise InputError(_no_letter(doc_id, shown(index_dir)))
    return _passage(document_from_json({**json.loads(row[0]), "text": row[1]}), start, end, context_chars)


def show_served(generation: Generation, citation: str, context_chars: int = 400) -> Passage:
    """The cited passage from the generation a server serves, the one its citations were taken from."""
    span = _parse(citation)
    if isinstance(span, str):
        row = generation.row_of_chunk(span)
        if row is None:
            raise InputError(_no_chunk(span, "the index"))
        letter = generation.letters[int(generation.chunk_letter[row])]
        doc_id, start, end = letter.doc_id, int(generation.chunk_start[row]), int(generation.chunk_end[row])
    else:
        doc_id, start, end = span
    document = generation.document(doc_id)
    if document is None:
        raise InputError(_no_letter(doc_id, "the index"))
    return _passage(document, start, end, context_chars)


def _parse(citation: str) -> tuple[str, int, int] | str:
    """(doc_id, start, end) for DOC_ID:START-END, the chunk id itself for DOC#HASH."""
    citation = citation.strip()
    span = _SPAN.match(citation)
    if span:
        return span.group("doc"), int(span.group("start")), int(span.group("end"))
    if "#" in citation:
        return citation
    raise InputError(f"{citation!r} is no citation; give a chunk id (DOC#HASH) or DOC_ID:START-END")


def _passage(document: Document, start: int, end: int, context_chars: int) -> Passage:
    if not 0 <= start < end <= len(document.text):
        raise InputError(f"{start}-{end} lies outside letter {document.doc_id} (0-{len(document.text)})")
    text = document.text
    return Passage(document.doc_id, document.title, document.date, document.section_at(start).label, document.source,
                   start, end, text[max(0, start - context_chars):start], text[start:end], text[end:end + context_chars])


def _no_chunk(chunk_id: str, where: str) -> str:
    return f"no chunk {chunk_id!r} in {where}; it may come from an older index (try DOC_ID:START-END)"


def _no_letter(doc_id: str, where: str) -> str:
    return f"no letter {doc_id!r} in {where}; `rag chunks` lists the doc_ids"


def _passage_span(folder: Path, manifest: dict, row: int) -> tuple[int, int, int]:
    """A passage's letter row and offsets, from the generation's per-passage arrays."""
    arrays = generation_arrays(folder, manifest, ["chunk_letter", "chunk_start", "chunk_end"])
    return int(arrays["chunk_letter"][row]), int(arrays["chunk_start"][row]), int(arrays["chunk_end"][row])
