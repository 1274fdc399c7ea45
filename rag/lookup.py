"""Citation lookup: a cited passage shown in place in its letter (`rag show`, the UI's letter view).

Needs only the stored letters, not the model: a citation is either a chunk id or
`DOC_ID:START-END` with offsets into the stored text.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.documents import Document
from rag.errors import InputError
from rag.index import IndexError_, current_generation, read_stored_documents, shown

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


def live_folder(index_dir: Path) -> Path:
    """The live generation, from one reading of the pointer."""
    folder = current_generation(Path(index_dir))
    if folder is None:
        raise IndexError_(f"{shown(index_dir)}: no index here; run `rag ingest --index {shown(index_dir)}`")
    return folder


def chunk_span(folder: Path, chunk_id: str) -> tuple[str, int, int] | None:
    with (folder / "chunks.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if f'"chunk_id": "{chunk_id}"' in line:
                row = json.loads(line)
                return row["doc_id"], row["start"], row["end"]
    return None


def look_up(index_dir: Path, citation: str, context_chars: int = 400) -> Passage:
    folder = live_folder(index_dir)
    try:
        documents = read_stored_documents(folder)
    except (OSError, ValueError) as error:  # pruned by two ingests in a row, or damaged
        raise IndexError_(f"{shown(index_dir)}: cannot read the stored letters ({type(error).__name__}); "
                          f"run `rag ingest --index {shown(index_dir)}` if this persists") from None
    citation = citation.strip()
    span = _SPAN.match(citation)
    if span:
        doc_id, start, end = span.group("doc"), int(span.group("start")), int(span.group("end"))
    elif "#" in citation:
        found = chunk_span(folder, citation)
        if found is None:
            raise InputError(f"no chunk {citation!r} in {shown(index_dir)}; it may come from an older index (try DOC_ID:START-END)")
        doc_id, start, end = found
    else:
        raise InputError(f"{citation!r} is no citation; give a chunk id (DOC#HASH) or DOC_ID:START-END")
    document = documents.get(doc_id)
    if document is None:
        raise InputError(f"no letter {doc_id!r} in {shown(index_dir)}; `rag chunks` lists the doc_ids")
    if not 0 <= start < end <= len(document.text):
        raise InputError(f"{start}-{end} lies outside letter {doc_id} (0-{len(document.text)})")
    text = document.text
    return Passage(doc_id, document.title, document.date, document.section_at(start).label, document.source, start, end,
                   text[max(0, start - context_chars):start], text[start:end], text[end:end + context_chars])
