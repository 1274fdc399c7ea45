"""Letters -> Documents: clean the text a PDF extractor left, and recover its structure.

The stored `Document.text` is the cleaned letter; every offset in the project points into it.
Paragraphs are separated by a blank line, headings stand on their own line, footnotes are
moved out of the running text into a closing "Voetnoten" section.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from rag.errors import InputError, LetterSkipped
from rag.files import file_sha256
from rag.readers import letter_paths, read
from rag.readers.layout import Block, Layout, place_footnote_anchors, read_blocks
from rag.readers.letterhead import Head, read_head
from rag.readers.metadata import date_of, kind_of, ministry_of, title_of
from rag.readers.reading import Reading
from rag.readers.references import cited_references, own_identifiers
from rag.readers.text import reading_of_text
from rag.settings import display_path

# Bump with any change that can alter the stored text, the sections or the metadata of a letter:
# `rag ingest` then re-reads every letter, and queries on an index read by another version are refused.
READER_VERSION = 7  # 5: dates checked against the calendar; 6: the letterhead column recognised inside text extracts;
# 7: a label alone on its line read as a label, a line before a sentence opening after a blank line may be a heading
FOOTNOTES_HEADING = "Voetnoten"
LEAD_HEADING = "Inleiding"


@dataclass(frozen=True)
class Section:
    """A titled stretch of a letter. `start`/`end` cover the body below the heading."""

    path: tuple[str, ...]
    heading_start: int
    start: int
    end: int

    @property
    def heading(self) -> str:
        return self.path[-1]

    @property
    def label(self) -> str:
        return " > ".join(self.path)


@dataclass(frozen=True)
class Footnote:
    number: int
    anchor: int  # offset in the running text where the marker stood
    start: int
    end: int


@dataclass(frozen=True)
class Signatory:
    name: str
    role: str


@dataclass(frozen=True)
class Document:
    doc_id: str
    source: str
    title: str  # "" when the letter states none: a title made of letterhead text would be worse
    date: str | None
    kind: str
    signatories: tuple[Signatory, ...]
    sections: tuple[Section, ...]
    footnotes: tuple[Footnote, ...]
    text: str
    content_hash: str
    date_sure: bool = True  # stated as the letter's date; False for a guess (first date in the text)
    ministry: str | None = None
    identifiers: tuple[tuple[str, str], ...] = ()  # its own: ("dossier", "35538"), ("kenmerk", ...), ("id", "kst-...")
    references: tuple[str, ...] = ()  # Kamerstukken it cites, normalised: "28676-320"
    ocr: bool = False
    warnings: tuple[str, ...] = field(default=())

    @property
    def ministers(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.signatories)

    def section_at(self, offset: int) -> Section:
        for section in self.sections:
            if section.heading_start <= offset < section.end:
                return section
        return self.sections[-1]


# --- reading files -----------------------------------------------------------------------

def read_documents(paths: Iterable[str | Path], skipped: list[str] | None = None) -> list[Document]:
    """The letters at `paths`. A letter that cannot be read is skipped with its reason in `skipped` when a list
    is given (the other letters still count; none readable is an error), else it is an error at once."""
    documents = []
    files, duplicates = without_shared_ids(letter_paths(paths))
    if skipped is not None:
        skipped.extend(duplicates)
    elif duplicates:
        raise InputError(duplicates[0])
    for path in files:
        read = read_or_reason(path)
        if isinstance(read, Document):
            documents.append(read)
        elif skipped is None:
            raise InputError(read)
        else:
            skipped.append(read)
    if skipped and not documents:
        raise InputError(skipped[0])  # nothing else to show: the reason is the error
    return documents


def read_or_reason(path: Path) -> "Document | str":
    """A letter, or the one line that says why it cannot be read and what to do: one bad file among thousands is
    named and passed over, never a traceback that stops the batch."""
    try:
        return read_document(path)
    except InputError as reason:
        return str(reason)
    except Exception as error:  # a parser's own failure on a malformed file (pdfminer raises many kinds)
        return f"{path}: cannot read this letter ({type(error).__name__}); check the file or export it again"


def cannot_read(path: Path, error: OSError) -> InputError:
    return InputError(f"{path}: cannot read this file ({error.strerror or error}); check its permissions")


def read_document(path: str | Path) -> Document:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        reading = read(path)
        content_hash = file_sha256(path)
    except OSError as error:
        raise cannot_read(path, error) from None
    return build_document(reading, doc_id=doc_id_for(path), source=display_path(path), content_hash=content_hash)


def doc_id_for(path: Path) -> str:
    """A stable id from the file name: lower case, safe characters only."""
    stem = re.sub(r"[^0-9A-Za-z_.-]+", "-", path.stem).strip("-").lower()
    return stem or hashlib.sha1(path.name.encode()).hexdigest()[:12]


def without_shared_ids(files: list[Path]) -> tuple[list[Path], list[str]]:
    """The files whose doc_id no earlier file has, and a line for each one left out: doc_ids come from file names,
    so two files of one name in different folders would collide (the first one is indexed)."""
    seen: dict[str, Path] = {}
    kept, left_out = [], []
    for path in files:
        doc_id = doc_id_for(path)
        if doc_id in seen:
            left_out.append(f"{path}: the letter {seen[doc_id]} has the same id {doc_id!r}; rename one of them to index both")
            continue
        seen[doc_id] = path
        kept.append(path)
    return kept, left_out


# --- from a reading to a Document --------------------------------------------------------

def parse_letter(raw: str, doc_id: str, source: str, warnings: list[str] | None = None) -> Document:
    """A letter from its extracted text."""
    return build_document(reading_of_text(raw, warnings), doc_id, source, hashlib.sha256(raw.encode("utf-8")).hexdigest())


def build_document(reading: Reading, doc_id: str, source: str, content_hash: str) -> Document:
    warnings = list(reading.warnings)
    head = Head()
    if reading.blocks is not None:  # the form gave the structure (XML)
        layout = Layout(reading.blocks, reading.footnotes or [], reading.facts.signatories)
        for position, block in enumerate(layout.blocks):
            block.index = position
        place_footnote_anchors(layout.blocks, layout.footnotes)
    else:
        head, lines = read_head(reading.lines or [])
        # Text an extractor left interleaves the letterhead column with the body: recognised by its form there.
        layout = read_blocks(lines, reading.footnotes, head.is_letterhead if reading.extracted else head.repeats,
                             reading.extracted)
        if not any(block.text for block in layout.blocks) and head.lines:
            # Nothing after the head (a one-line note, a bare table of contents): the head is the letter.
            layout = read_blocks(reading.lines or [], reading.footnotes)
    if not any(block.text for block in layout.blocks):
        raise LetterSkipped(f"{source}: no readable text in this letter")

    parts: list[str] = []
    offsets: list[tuple[Block, int, int]] = []
    cursor = 0
    for block in layout.blocks:
        if parts:
            parts.append("\n\n")
            cursor += 2
        parts.append(block.text)
        offsets.append((block, cursor, cursor + len(block.text)))
        cursor += len(block.text)

    footnotes: list[Footnote] = []
    if layout.footnotes:
        parts.append("\n\n" + FOOTNOTES_HEADING)
        cursor += 2
        footnote_heading_start = cursor
        cursor += len(FOOTNOTES_HEADING)
        for footnote in layout.footnotes:
            line = f"[{footnote.number}] {footnote.text}"
            parts.append("\n\n" + line)
            cursor += 2
            footnotes.append(Footnote(footnote.number, _anchor_offset(offsets, footnote), cursor, cursor + len(line)))
            cursor += len(line)
        offsets.append((Block(FOOTNOTES_HEADING, "heading", level=0), footnote_heading_start,
                        footnote_heading_start + len(FOOTNOTES_HEADING)))
    text = "".join(parts)

    sections = _sections(offsets, len(text))
    if not any(block.kind in ("heading", "group") for block in layout.blocks):
        warnings.append(f"{source}: no headings recognised; the letter reads as one section")

    facts = reading.facts
    signatories = tuple(Signatory(name, role) for name, role in (layout.signatories or facts.signatories))
    title = title_of(facts, head, layout.blocks, text)
    date, sure, date_warning = date_of(facts, head, layout.blocks, title, text)
    if date_warning:
        warnings.append(f"{source}: {date_warning}")
    return Document(
        doc_id=doc_id,
        source=source,
        title=title,
        date=date,
        date_sure=sure,
        kind=kind_of(facts, head, title, text),
        ministry=ministry_of(facts, head, tuple(s.role for s in signatories), text),
        signatories=signatories,
        sections=tuple(sections),
        footnotes=tuple(footnotes),
        text=text,
        content_hash=content_hash,
        identifiers=own_identifiers(facts, head),
        references=cited_references(text),
        ocr=reading.ocr,
        warnings=tuple(warnings),
    )


def _anchor_offset(offsets: list[tuple[Block, int, int]], footnote) -> int:
    for block, start, _end in offsets:
        if block.index == footnote.block_index:
            return start + min(footnote.anchor_in_block, len(block.text))
    return 0


def _sections(offsets: list[tuple[Block, int, int]], text_length: int) -> list[Section]:
    """Turn heading blocks into sections; groups (SESSIE 2) become the first part of a path."""
    sections: list[Section] = []
    groups: list[tuple[int, str]] = []  # (level, heading) of the open groups
    current: tuple[tuple[str, ...], int, int] | None = None

    def close(end: int) -> None:
        if current is not None:
            path, heading_start, start = current
            sections.append(Section(path, heading_start, min(start, end), end))

    for block, start, end in offsets:
        if block.kind not in ("heading", "group"):
            if current is None:
                current = ((LEAD_HEADING,), start, start)
            continue
        close(start)
        groups = [(level, name) for level, name in groups if level < block.level]
        path = tuple(name for _level, name in groups) + (block.text,)
        if block.kind == "group":
            groups.append((block.level, block.text))
        current = (path, start, min(end + 2, text_length))
    close(text_length)
    return [s for s in sections if s.end >= s.start]


# --- storage -----------------------------------------------------------------------------

def document_from_json(data: dict) -> Document:
    return Document(
        **{
            **data,
            "signatories": tuple(Signatory(**s) for s in data["signatories"]),
            "identifiers": tuple(tuple(pair) for pair in data.get("identifiers", ())),
            "references": tuple(data.get("references", ())),
            "sections": tuple(Section(tuple(s["path"]), s["heading_start"], s["start"], s["end"]) for s in data["sections"]),
            "footnotes": tuple(Footnote(**f) for f in data["footnotes"]),
            "warnings": tuple(data["warnings"]),
        }
    )
