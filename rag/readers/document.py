"""Letters -> Documents: clean the text a PDF extractor left, and recover its structure.

The stored `Document.text` is the cleaned letter; every offset in the project points into it.
Paragraphs are separated by a blank line, headings stand on their own line, footnotes are
moved out of the running text into a closing "Voetnoten" section.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from rag.errors import InputError, LetterSkipped
from rag.files import file_sha256
from rag.readers import letter_paths, read
from rag.readers.layout import Block, Layout, place_footnote_anchors, read_blocks
from rag.readers.letterhead import Head, read_head
from rag.readers.metadata import date_of, kind_of, ministry_of, title_of
from rag.readers.reading import Reading
from rag.readers.references import cited_references, own_identifiers
from rag.readers.text import reading_of_text
from rag.settings import display_path, display_paths

# Bump with any change that can alter the stored text, the sections or the metadata of a letter:
# `rag ingest` then re-reads every letter, and queries on an index read by another version are refused.
READER_VERSION = 8  # 5: dates checked against the calendar; 6: the letterhead column recognised inside text extracts;
# 7: a label alone on its line read as a label, a line before a sentence opening after a blank line may be a heading;
# 8: the body's first sentence after a gap is never a label's value, a copy's addressee never part of the subject
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

def read_documents(paths: Iterable[str | Path], skipped: list[str] | None = None,
                   notes: list[str] | None = None) -> list[Document]:
    """The letters at `paths`. A letter that cannot be read is skipped with its reason in `skipped` when a list
    is given (the other letters still count; none readable is an error), else it is an error at once. Of two files
    whose names give one id, the later is read under an id of its own (`unique_ids`), said in `notes`."""
    documents = []
    ids, renamed = unique_ids(letter_paths(paths))
    if notes is not None:
        notes.extend(renamed)
    for path, doc_id in ids.items():
        read = read_or_reason(path, doc_id)
        if isinstance(read, Document):
            documents.append(read)
        elif skipped is None:
            raise InputError(read)
        else:
            skipped.append(read)
    if skipped and not documents:
        raise InputError(skipped[0])  # nothing else to show: the reason is the error
    return documents


def read_or_reason(path: Path, doc_id: str | None = None) -> "Document | str":
    """A letter, or the one line that says why it cannot be read and what to do: one bad file among thousands is
    named and passed over, never a traceback that stops the batch."""
    try:
        return read_document(path, doc_id)
    except InputError as reason:
        return str(reason)
    except Exception as error:  # a parser's own failure on a malformed file (pdfminer raises many kinds)
        return f"{path}: cannot read this letter ({type(error).__name__}); check the file or export it again"


def cannot_read(path: Path, error: OSError) -> InputError:
    return InputError(f"{path}: cannot read this file ({error.strerror or error}); check its permissions")


def read_document(path: str | Path, doc_id: str | None = None) -> Document:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        reading = read(path)
        content_hash = file_sha256(path)
    except OSError as error:
        raise cannot_read(path, error) from None
    return build_document(reading, doc_id=doc_id or doc_id_for(path), source=display_path(path), content_hash=content_hash)


def doc_id_for(path: Path) -> str:
    """The id a file's name gives: accents folded, lower case, safe characters only (`Brief ü.txt` -> `brief-u`)."""
    folded = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^0-9A-Za-z_.-]+", "-", folded).strip("-.").lower()
    return stem or hashlib.sha1(path.name.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def unique_ids(files: Iterable[Path], held: Mapping[str, str] | None = None,
               shown: Mapping[Path, str] | None = None) -> tuple[dict[Path, str], list[str]]:
    """Each file's doc_id, unique among them, and a line for each file that could not have the id its name gives.

    A file keeps the id the index gave its path before (`held`: source -> doc_id, `shown`: each file's source when
    the caller has it); any other file takes the id its name gives, or, when a letter holds that one, the first free
    `<id>-2`, `<id>-3`... So a new file never takes over the id, the citations or the place of a letter indexed
    before."""
    files = list(files)
    held = held or {}
    assigned: dict[Path, str] = {}
    holders: dict[str, Path] = {}
    if held:  # only then is where a file lies asked
        shown = shown if shown is not None else display_paths(files)
        for path in files:
            doc_id = held.get(shown[path])
            if doc_id is not None and doc_id not in holders:
                assigned[path], holders[doc_id] = doc_id, path
    reserved = set(held.values())  # a letter indexed before whose file is elsewhere now keeps its id too
    notes = []
    for path in files:
        if path in assigned:
            continue
        doc_id = base = doc_id_for(path)
        number = 1
        while doc_id in holders or doc_id in reserved:
            number += 1
            doc_id = f"{base}-{number}"
        if doc_id != base:
            holder = holders.get(base)
            notes.append(f"{path}: {'the letter ' + str(holder) if holder else 'a letter in the index'} has the id "
                         f"{base!r} this name gives; indexed as {doc_id!r}")
        assigned[path], holders[doc_id] = doc_id, path
    return {path: assigned[path] for path in files}, notes


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
