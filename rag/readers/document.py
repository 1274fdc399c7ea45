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
from typing import Iterable

from rag.settings import display_path
from rag.language import MONTH_ALTERNATION, MONTHS
from rag.errors import InputError, LetterSkipped
from rag.files import file_sha256
from rag.readers.layout import Block, Layout, place_footnote_anchors, read_blocks
from rag.readers.letterhead import Head, read_head
from rag.readers import letter_paths, read
from rag.readers.reading import Facts, Reading
from rag.readers.text import reading_of_text
from rag.readers.references import cited_references, own_identifiers

# Bump with any change that can alter the stored text, the sections or the metadata of a letter:
# `rag ingest` then re-reads every letter, and queries on an index read by another version are refused.
READER_VERSION = 4
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
    """The letters at `paths`. A letter with nothing to index (empty, a scan without Tesseract) is skipped
    with its message in `skipped` when a list is given (the other letters still count), else it is an error."""
    documents = []
    for path in letter_paths(paths):
        try:
            documents.append(read_document(path))
        except LetterSkipped as reason:
            if skipped is None:
                raise
            skipped.append(str(reason))
    if skipped and not documents:
        raise InputError(skipped[0])  # nothing else to show: the reason is the error
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
        layout = read_blocks(lines, reading.footnotes, head.repeats)
        if not any(block.text for block in layout.blocks) and head.lines:
            # Nothing after the head (a one-line note, a bare table of contents): the head is the letter.
            layout = read_blocks(reading.lines or [], reading.footnotes, head.repeats)
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
    title = _title(facts, head, layout.blocks, text)
    date, sure, date_warning = _date(facts, head, layout.blocks, title, text)
    if date_warning:
        warnings.append(f"{source}: {date_warning}")
    return Document(
        doc_id=doc_id,
        source=source,
        title=title,
        date=date,
        date_sure=sure,
        kind=_kind(facts, head, title, text),
        ministry=_ministry(facts, head, signatories, text),
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


# --- metadata ----------------------------------------------------------------------------

# "23 en 24 maart 2021", "1 juni 2021", "23-24 maart 2021", "31 maart jl."
DATE_PATTERN = re.compile(
    rf"\b(?:(\d{{1,2}})\s*(?:en|-|–|tot)\s*)?(\d{{1,2}})\s+({MONTH_ALTERNATION})\b(?:\s+(\d{{4}}))?",
    re.IGNORECASE,
)
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")


_ENUMERATED_TITLE = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[a-z]\))\s")  # "1. Inleiding" is a section, not the title


def _title(facts: Facts, head: Head, blocks: list[Block], text: str) -> str:
    """What the letter says it is about: its subject line, else what its form states, else its first
    all-caps heading or the document it offers ("Hierbij bied ik u het verslag ... aan"); never
    letterhead text, so "" when none of these is there."""
    if head.facts.get("betreft"):
        return re.sub(r"^(?:Betreft|Onderwerp):?\s*", "", head.facts["betreft"]).strip().rstrip(".")
    if facts.title:
        return facts.title
    if head.facts.get("dossiertitel"):
        return head.facts["dossiertitel"]
    for block in blocks[:6]:
        if block.kind == "paragraph" and re.match(r"^Vragen van (?:het|de) (?:lid|leden)\b", block.text):
            return re.sub(r"\s*\(ingezonden[^)]*\)\.?$", "", block.text)
    if blocks and blocks[0].kind in ("heading", "group") and not _ENUMERATED_TITLE.match(blocks[0].text):
        return recase_heading(blocks[0].text, text) if blocks[0].caps else blocks[0].text  # a title set above the text
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
    return ""


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


_RECEIVED = re.compile(rf"\(ontvangen\s+(\d{{1,2}}\s+(?:{MONTH_ALTERNATION})\s+\d{{4}})\)", re.IGNORECASE)


def _date(facts: Facts, head: Head, blocks: list[Block], title: str, text: str) -> tuple[str | None, bool, str | None]:
    """The letter's date and whether it is sure: stated by the form or the Datum line (an answer to
    Kamervragen: the day it was received), else the date in its title; the first date in the text
    is only a guess, and a time filter does not drop a letter for a guess."""
    if facts.date:
        return facts.date, True, None
    for candidate in (head.facts.get("datum"), *(m.group(1) for m in _RECEIVED.finditer(text[:3000]))):
        if candidate:
            found, warning = _first_date(candidate, text)
            if found:
                return found, warning is None, warning
    for candidate in [title] + [b.text for b in blocks if b.caps]:
        found, warning = _first_date(candidate, text)
        if found:
            return found, warning is None, warning
    found, warning = _first_date(text, text)
    if found:
        return found, False, warning or f"no date stated; took {found}, the first date in the text"
    return None, False, "no date found in the letter"


def _first_date(candidate: str, text: str) -> tuple[str | None, str | None]:
    """The first date in `candidate`; a date without a year takes the latest year the letter names (a warning)."""
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
    ("antwoord op vragen", "antwoord op Kamervragen"),
    ("antwoorden op", "antwoord op Kamervragen"),
    ("beantwoording", "antwoord op Kamervragen"),
    ("verslag", "verslag"),
    ("kabinetsreactie", "kabinetsreactie"),
    ("fiche", "fiche"),
    ("voortgangsrapportage", "voortgangsrapportage"),
    ("motie", "motie"),
    ("nader rapport", "advies en nader rapport"),
    ("statement", "verklaring"),
)
_ANSWER_HEADING = re.compile(r"^Antwoord(?:en)?\s+\d+", re.MULTILINE)


def _kind(facts: Facts, head: Head, title: str, text: str) -> str:
    """brief, antwoord op Kamervragen, geannoteerde agenda, verslag, fiche, ...: from the form, else the title."""
    if facts.kind:
        return facts.kind
    if head.facts.get("stuk", "").startswith("BRIEF"):
        return "brief"
    if _ANSWER_HEADING.search(text) and re.search(r"\bVraag\s+\d+", text):
        return "antwoord op Kamervragen"
    lowered = (title + " " + head.facts.get("stuk", "")).lower()
    for needle, kind in _KINDS:
        if needle in lowered:
            return kind
    opening = text[:1500].lower()
    for needle, kind in _KINDS:
        if needle in opening:
            return kind
    return "brief"


# A ministry's name: capitalised words joined by spaces, ", " or "en": "Volksgezondheid, Welzijn en Sport".
_NAME = r"[A-ZÀ-Ý][\w’'-]+(?:(?:,\s+|\s+en\s+|\s+voor\s+|\s+)[A-ZÀ-Ý][\w’'-]+)*"
_MINISTER_OF = re.compile(rf"\b(?:[Mm]inisters?|MINISTERS?|[Ss]taatssecretaris(?:sen)?|STAATSSECRETARIS(?:SEN)?|[Mm]inisterie|"
                          rf"MINISTERIE)(?:-president)?\s+(?:van|voor|VAN|VOOR)\s+({_NAME})")


def _ministry(facts: Facts, head: Head, signatories: tuple[Signatory, ...], text: str) -> str | None:
    """The sending ministry, as "Infrastructuur en Waterstaat": publisher metadata, letterhead, head of a
    Kamerstuk, the signature, or the "Antwoord van Minister X (Ministry)" line."""
    candidates = [facts.ministry, facts.organisation, head.facts.get("organisatie"), head.facts.get("stuk")]
    candidates += [signatory.role for signatory in signatories]
    for candidate in candidates:
        if not candidate:
            continue
        found = _MINISTER_OF.search(_recased(candidate, text) if candidate.isupper() else candidate)
        if found:
            return _ministry_name(found.group(1))
        if candidate == facts.ministry:
            return _ministry_name(candidate)
    answered_by = re.search(r"Antwoord van (?:de )?(?:Minister|Staatssecretaris)[^(]{0,60}\(([^)]{3,120})\)", text[:3000])
    if answered_by:
        return _ministry_name(answered_by.group(1))
    return None


def _ministry_name(name: str) -> str:
    name = " ".join(name.split()).strip(" ,.").split(" – ")[0]
    return re.sub(r"^(?:Ministerie|Minister|Staatssecretaris)\s+(?:van|voor)\s+", "", name, flags=re.IGNORECASE)


def _recased(caps: str, text: str) -> str:
    """"BRIEF VAN DE MINISTER VAN SOCIALE ZAKEN EN WERKGELE-GENHEID" -> "Brief van de Minister van Sociale
    Zaken en Werkgelegenheid": small words lower case, a word broken at a line end joined as the letter spells it."""
    lowered = text.lower()
    words = []
    for word in caps.split():
        if "-" in word and word.replace("-", "").lower() in lowered:
            word = word.replace("-", "")
        words.append(word.lower() if word.lower() in _SMALL_WORDS else word.capitalize())
    return " ".join(words)


_SMALL_WORDS = {"van", "de", "der", "en", "voor", "het", "een"}


# --- storage -----------------------------------------------------------------------------

def document_to_json(document: Document) -> dict:
    return asdict(document)


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
