"""Letters -> Documents: clean the text a PDF extractor left, and recover its structure.

The stored `Document.text` is the cleaned letter; every offset in the project points into it.
Paragraphs are separated by a blank line, headings stand on their own line, footnotes are
moved out of the running text into a closing "Voetnoten" section.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from rag.config import display_path
from rag.dates import MONTH_ALTERNATION, MONTHS
from rag.errors import InputError
from rag.layout import Block, read_blocks

# Bump with any change that can alter the stored text, the sections or the metadata of a letter:
# `rag ingest` then re-reads every letter, and queries on an index read by another version are refused.
READER_VERSION = 2
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
    title: str
    date: str | None
    kind: str
    signatories: tuple[Signatory, ...]
    sections: tuple[Section, ...]
    footnotes: tuple[Footnote, ...]
    text: str
    content_hash: str
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

Reader = Callable[[Path], tuple[str, list[str]]]


def _read_text_file(path: Path) -> tuple[str, list[str]]:
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path}: the file is empty; remove it or export the letter again")
    if b"\x00" in data[:4096] or _control_ratio(data[:4096]) > 0.05:
        raise InputError(f"{path}: not a text file (binary content); give a .txt or .pdf letter")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        # Windows exports are usually cp1252; decoding keeps every character a user can see.
        text = data.decode("cp1252", errors="replace")
        return text, [f"{path}: not UTF-8, read as Windows-1252/Latin-1; save it as UTF-8 to be sure"]


def _control_ratio(data: bytes) -> float:
    controls = sum(1 for byte in data if byte < 9 or 13 < byte < 32)
    return controls / max(1, len(data))


def _read_pdf_file(path: Path) -> tuple[str, list[str]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read this PDF ({error}); check the file or export it as text") from None
    # A form feed marks each page break, as pdftotext writes it.
    text = "\f".join(pages)
    if not text.strip():
        raise InputError(f"{path}: the PDF holds no extractable text (a scan?); run OCR first")
    return text, []


READERS: dict[str, Reader] = {".txt": _read_text_file, ".pdf": _read_pdf_file}


def letter_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the sorted list of letter files they hold."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            letters = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in READERS)
            if not letters:
                raise InputError(f"{path}: no letters here (looked for {', '.join(sorted(READERS))} files)")
            found.extend(letters)
        elif path.suffix.lower() in READERS:
            found.append(path)
        else:
            raise InputError(f"{path}: unsupported file type; give {' or '.join(sorted(READERS))} files")
    return sorted(set(found), key=lambda p: (p.name, str(p)))


def read_documents(paths: Iterable[str | Path]) -> list[Document]:
    documents = [read_document(path) for path in letter_paths(paths)]
    refuse_duplicate_ids(documents)
    return documents


def refuse_duplicate_ids(documents: Iterable[Document]) -> None:
    """doc_ids come from file names; two files of one name in different folders would collide."""
    seen: dict[str, str] = {}
    for document in documents:
        if document.doc_id in seen:
            raise InputError(
                f"two letters share the id {document.doc_id!r}: {seen[document.doc_id]} and "
                f"{document.source}; rename one of them"
            )
        seen[document.doc_id] = document.source


def cannot_read(path: Path, error: OSError) -> InputError:
    return InputError(f"{path}: cannot read this file ({error.strerror or error}); check its permissions")


def read_document(path: str | Path) -> Document:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unsupported file type; give {' or '.join(sorted(READERS))} files")
    try:
        raw, warnings = reader(path)
    except OSError as error:
        raise cannot_read(path, error) from None
    return parse_letter(raw, doc_id=doc_id_for(path), source=display_path(path), warnings=warnings)


def doc_id_for(path: Path) -> str:
    """A stable id from the file name: lower case, safe characters only."""
    stem = re.sub(r"[^0-9A-Za-z_.-]+", "-", path.stem).strip("-").lower()
    return stem or hashlib.sha1(path.name.encode()).hexdigest()[:12]


# --- from raw text to a Document ---------------------------------------------------------

def parse_letter(raw: str, doc_id: str, source: str, warnings: list[str] | None = None) -> Document:
    warnings = list(warnings or [])
    layout = read_blocks(raw)
    if not any(block.text for block in layout.blocks):
        raise InputError(f"{source}: no readable text in this letter")

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

    title = _title(layout.blocks, text)
    date, date_warning = _date(layout.blocks, title, text)
    if date_warning:
        warnings.append(f"{source}: {date_warning}")
    return Document(
        doc_id=doc_id,
        source=source,
        title=title,
        date=date,
        kind=_kind(title, text),
        signatories=tuple(Signatory(name, role) for name, role in layout.signatories),
        sections=tuple(sections),
        footnotes=tuple(footnotes),
        text=text,
        content_hash=hashlib.sha256(raw.encode("utf-8")).hexdigest(),
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


# --- metadata ----------------------------------------------------------------------------

# "23 en 24 maart 2021", "1 juni 2021", "23-24 maart 2021", "31 maart jl."
DATE_PATTERN = re.compile(
    rf"\b(?:(\d{{1,2}})\s*(?:en|-|–|tot)\s*)?(\d{{1,2}})\s+({MONTH_ALTERNATION})\b(?:\s+(\d{{4}}))?",
    re.IGNORECASE,
)
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")


def _title(blocks: list[Block], text: str) -> str:
    for block in blocks:
        if block.kind == "betreft":
            return re.sub(r"^Betreft:?\s*", "", block.text).strip()
    for block in blocks:
        if block.caps:
            return recase_heading(block.text, text)
    for block in blocks:
        match = re.search(
            r"\bHierbij (?:bied|bieden|zend|zenden|stuur|sturen) (?:ik|wij) u[^.]*?\b(het|de) ([^.]+?)(?: aan)?\.",
            block.text,
        )
        if match:
            phrase = re.sub(r"\s+aan van\b", " van", match.group(2))
            # "... Zaken die 31 maart jl. bijeenkwam": the relative clause is no part of a title.
            phrase = re.sub(r"\s+(?:die|dat|welke)\s.*$", "", phrase)
            return phrase[0].upper() + phrase[1:]
    first = next((b.text for b in blocks if b.kind == "paragraph"), blocks[0].text)
    return first[:120].rstrip() + ("…" if len(first) > 120 else "")


def recase_heading(heading: str, text: str) -> str:
    """Write an ALL-CAPS heading as the letter itself spells its words elsewhere."""
    spellings: dict[str, Counter[str]] = {}
    for match in re.finditer(r"(?<![.!?]\s)(?<!^)\b[\w’'-]+\b", text, re.MULTILINE):
        word = match.group(0)
        if not word.isupper() or len(word) <= 5:
            spellings.setdefault(word.lower(), Counter())[word] += 1
    words = []
    for index, word in enumerate(heading.split()):
        if not word.isupper():
            words.append(word)
            continue
        known = spellings.get(word.lower())
        spelled = known.most_common(1)[0][0] if known else word.lower()
        words.append(spelled[0].upper() + spelled[1:] if index == 0 else spelled)
    return " ".join(words)


def _date(blocks: list[Block], title: str, text: str) -> tuple[str | None, str | None]:
    """The date the letter states: a Datum line, else the meeting date in its title, else the first date."""
    for block in blocks:
        if block.kind == "header" and block.text.lower().startswith("datum"):
            found = _first_date(block.text, text)
            if found[0]:
                return found
    for candidate in [title] + [b.text for b in blocks if b.caps] + [text]:
        found = _first_date(candidate, text)
        if found[0]:
            return found
    return None, "no date found in the letter"


def _first_date(candidate: str, text: str) -> tuple[str | None, str | None]:
    for match in DATE_PATTERN.finditer(candidate):
        day, month, year = int(match.group(2)), MONTHS[match.group(3).lower()], match.group(4)
        warning = None
        if year is None:
            years = [int(y) for y in _YEAR.findall(text)]
            if not years:
                continue
            year = str(max(years))
            warning = f"the date '{match.group(0)}' has no year; took {year}, the latest year the letter names"
        if 1 <= day <= 31:
            return f"{int(year):04d}-{month:02d}-{day:02d}", warning
    return None, None


_KINDS = (
    ("geannoteerde agenda", "geannoteerde agenda"),
    ("verslag", "verslag"),
    ("antwoorden op", "beantwoording"),
    ("beantwoording", "beantwoording"),
    ("kabinetsreactie", "kabinetsreactie"),
    ("fiche", "fiche"),
    ("voortgangsrapportage", "voortgangsrapportage"),
    ("statement", "verklaring"),
)


def _kind(title: str, text: str) -> str:
    lowered_title = title.lower()
    for needle, kind in _KINDS:
        if needle in lowered_title:
            return kind
    opening = text[:1500].lower()
    for needle, kind in _KINDS:
        if needle in opening:
            return kind
    return "brief"



# --- storage -----------------------------------------------------------------------------

def document_to_json(document: Document) -> dict:
    return asdict(document)


def document_from_json(data: dict) -> Document:
    return Document(
        **{
            **data,
            "signatories": tuple(Signatory(**s) for s in data["signatories"]),
            "sections": tuple(Section(tuple(s["path"]), s["heading_start"], s["start"], s["end"]) for s in data["sections"]),
            "footnotes": tuple(Footnote(**f) for f in data["footnotes"]),
            "warnings": tuple(data["warnings"]),
        }
    )
