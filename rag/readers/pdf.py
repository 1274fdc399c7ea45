"""PDF letters, read from the position of every character (pdfplumber).

pdfplumber is used because it gives each character with its font, size and position: a
letterhead column, a running footer, a footnote or a superscript marker is recognised by where
it stands and how it repeats across pages, never by a list of words. (pypdf's plain text
interleaves the letterhead column with the body and splits letter-spaced glyph runs.)

What comes out:
- body lines in reading order, with a footnote marker character where a superscript number
  stood, and a hint when a whole line is set in bold or italic (headings);
- the footnotes of every page, in order;
- the letterhead column as label/value facts (Ons kenmerk, ...) and the organisation's name;
- the labels in the margin of typeset Kamerstukken (dossier number, "Nr. 4").
Pages without a text layer are handed to OCR.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from rag.errors import InputError
from rag.readers.lines import FOOTNOTE_MARK, Line
from rag.readers.reading import Facts, RawFootnote, Reading

# Layout thresholds, relative to the font size where that makes them independent of the document.
SAME_ROW = 0.35  # characters whose baselines differ by less than this share of their size share a row
WORD_GAP = 0.28  # a gap wider than this share of the size separates words (when the PDF has no spaces)
COLUMN_GAP = 1.6  # a gap wider than this many times the size separates columns
SMALL = 0.85  # smaller than this share of the body size: a superscript, a footnote's number
FOOTNOTE_TYPE = 0.97  # footnotes are set smaller than the body, if only a little (8.2 against 9 points)
RAISED = 0.12  # a small character raised by this share of the row's size is a superscript
EDGE_ZONE = 0.12  # the top and bottom 12% of a page hold running heads and footers
SAME_PLACE = 6.0  # points: a repeated line at the same height on other pages is page furniture
MASTHEAD = 1.5  # type this many times the body size at the top of a page: a publication's masthead
PARAGRAPH_GAP = 1.45  # a vertical gap of this many line pitches starts a new paragraph
_PAGE_NUMBER = re.compile(r"^(?:(?:pagina|page|blad)\s*)?[-–]?\s*\d{1,3}\s*(?:(?:van|of|/)\s*\d{1,3})?\s*[-–]?$", re.I)
_BOLD = re.compile(r"bold|black|heavy|semibold|demi", re.I)
_ITALIC = re.compile(r"italic|oblique", re.I)


@dataclass
class Segment:
    """A run of characters on one row of a page, in one column."""

    page: int
    text: str
    x0: float
    x1: float
    top: float
    bottom: float
    size: float
    bold: bool
    italic: bool
    superscripts: list[tuple[int, str]] = field(default_factory=list)  # (position in text, digits)

    @property
    def key(self) -> str:
        """The text with its numbers blanked: how a running head repeats across pages."""
        return re.sub(r"\d+", "#", " ".join(self.text.lower().split()))


def read_pdf(path: Path) -> Reading:
    import pdfplumber

    try:
        with pdfplumber.open(path) as pdf:
            heights = [float(page.height) for page in pdf.pages]
            pages = [_segments(page, number) for number, page in enumerate(pdf.pages)]
    except Exception as error:  # pdfminer raises many kinds on a damaged or protected file; each is the same to a user
        cause = error.args[0] if error.args and isinstance(error.args[0], Exception) else error  # pdfplumber wraps pdfminer's
        if any(word in type(cause).__name__.lower() for word in ("password", "encrypt")):
            raise InputError(f"{path}: the PDF is protected with a password; export it without one") from None
        raise InputError(f"{path}: cannot read this PDF ({type(cause).__name__}); check the file or export it again") from None
    if not pages:
        raise InputError(f"{path}: the PDF has no pages; check the file or export it again")
    if not any(pages):
        from rag.readers.ocr import read_scan

        return read_scan(path)
    warnings = _read_scanned_pages(path, pages, heights)
    reading = _LayoutReader(pages, heights).reading()
    reading.warnings.extend(warnings)
    reading.ocr = reading.ocr or any("read by OCR" in warning for warning in warnings)
    return reading


def _read_scanned_pages(path: Path, pages: list[list["Segment"]], heights: list[float]) -> list[str]:
    """Pages without a text layer among pages with one (a signed page scanned in, an annex): read by OCR and
    set as body lines of their page, so no page is lost without a word."""
    from rag.errors import LetterSkipped
    from rag.readers.ocr import ocr_pages

    empty = [number for number, page in enumerate(pages) if not page]
    if not empty:
        return []
    listed = ", ".join(str(number + 1) for number in empty)
    try:
        texts = ocr_pages(path, empty)
    except LetterSkipped as missing:  # no Tesseract: said, not silently lost
        return [f"{missing}; pages {listed} have no text layer and were not read"]
    body = [segment for page in pages for segment in page]
    size = Counter(round(segment.size, 1) for segment in body).most_common(1)[0][0]
    left = Counter(round(segment.x0) for segment in body).most_common(1)[0][0]
    for number, text in zip(empty, texts):
        lines = [" ".join(line.split()) for line in text.splitlines()]
        top, step = 0.15 * heights[number], 0.7 * heights[number] / max(1, len(lines))
        pages[number] = [Segment(number, line, left, left + 5 * len(line), top + row * step, top + row * step + size,
                                 size, False, False) for row, line in enumerate(lines) if line]
    return [f"{path}: page{'s' if len(empty) > 1 else ''} {listed} had no text layer and {'were' if len(empty) > 1 else 'was'} read by OCR"]


def _segments(page, number: int) -> list[Segment]:
    chars = [c for c in page.dedupe_chars().chars if c.get("upright", True) and c["text"]]
    rows: list[list[dict]] = []
    for char in sorted(chars, key=lambda c: (-c["matrix"][5], c["x0"])):
        row = rows[-1] if rows else None
        if row and abs(_baseline(row) - char["matrix"][5]) <= SAME_ROW * max(_row_size(row), char["size"]):
            row.append(char)
        else:
            rows.append([char])
    segments = []
    for row in _attach_small_rows(rows):
        segments.extend(_split_row(sorted(row, key=lambda c: c["x0"]), number))
    return sorted(segments, key=lambda s: (s.top, s.x0))


def _attach_small_rows(rows: list[list[dict]]) -> list[list[dict]]:
    """A row of small characters only (a raised footnote marker, a footnote's number, a subscript) joins
    the row of text it is printed against: the nearest by baseline that it overlaps horizontally."""
    kept = [row for row in rows if not _only_small(row, rows)]
    for row in rows:
        if any(row is other for other in kept):
            continue
        baseline = _baseline(row)
        x0, x1 = min(c["x0"] for c in row), max(c["x1"] for c in row)
        near = [other for other in kept
                if abs(_baseline(other) - baseline) < 0.6 * _row_size(other)
                and x1 >= min(c["x0"] for c in other) - 2 * _row_size(other)
                and x0 <= max(c["x1"] for c in other) + 2 * _row_size(other)]
        if near:
            min(near, key=lambda other: abs(_baseline(other) - baseline)).extend(row)
        else:
            kept.append(row)
    return kept


def _only_small(row: list[dict], rows: list[list[dict]]) -> bool:
    size = _row_size(row)
    return any(_row_size(other) * SMALL > size and abs(_baseline(other) - _baseline(row)) < 0.6 * _row_size(other)
               for other in rows if other is not row)


def _row_size(row: list[dict]) -> float:
    return max(c["size"] for c in row)


def _baseline(row: list[dict]) -> float:
    """The baseline of the row's main text (superscripts and subscripts sit off it)."""
    size = _row_size(row)
    return median(c["matrix"][5] for c in row if c["size"] >= size * 0.9)


def _split_row(row: list[dict], page: int) -> list[Segment]:
    size = _row_size(row)
    explicit_spaces = any(c["text"] == " " for c in row)
    pieces: list[list[dict]] = [[]]
    previous = None  # the last visible character: spaces may stretch to the next column
    for char in row:
        if previous is not None and char["text"].strip():
            gap = char["x0"] - previous["x1"]
            changes_size = abs(char["size"] - previous["size"]) > 0.15 * size
            smaller = char if char["size"] < previous["size"] else previous
            marker = smaller["text"].isdigit()  # a superscript number is no change of column
            if gap > COLUMN_GAP * size or (changes_size and gap > 0.6 * size and not marker):
                pieces.append([])
        pieces[-1].append(char)
        if char["text"].strip():
            previous = char
    baseline = _baseline(row)
    return [_segment(piece, page, size, baseline, explicit_spaces) for piece in pieces if "".join(c["text"] for c in piece).strip()]


def _segment(chars: list[dict], page: int, row_size: float, baseline: float, explicit_spaces: bool) -> Segment:
    main_size = Counter(round(c["size"], 1) for c in chars if c["text"].strip()).most_common(1)[0][0]
    threshold = (0.5 if explicit_spaces else WORD_GAP) * main_size
    text, superscripts = "", []
    previous = None
    for char in chars:
        glyph = char["text"]
        small = char["size"] < SMALL * main_size
        raised = char["matrix"][5] - baseline > RAISED * row_size
        lowered = baseline - char["matrix"][5] > RAISED * row_size
        if previous is not None and glyph != " " and not text.endswith(" "):
            gap = char["x0"] - previous["x1"]
            if gap > threshold and not (small and lowered):  # a subscript belongs to its word: CO2
                text += " "
        if small and raised and glyph.isdigit():
            if superscripts and superscripts[-1][0] == len(text):
                superscripts[-1] = (len(text), superscripts[-1][1] + glyph)
            else:
                superscripts.append((len(text), glyph))
            previous = char
            continue
        text += glyph
        previous = char
    visible = [c for c in chars if c["text"].strip()]
    return Segment(
        page=page, text=" ".join(text.split()) if not superscripts else text.rstrip(),
        x0=min(c["x0"] for c in visible), x1=max(c["x1"] for c in visible),
        top=min(c["top"] for c in visible), bottom=max(c["bottom"] for c in visible), size=main_size,
        bold=sum(bool(_BOLD.search(c["fontname"])) for c in visible) >= 0.8 * len(visible),
        italic=sum(bool(_ITALIC.search(c["fontname"])) for c in visible) >= 0.8 * len(visible),
        superscripts=superscripts,
    )


class _LayoutReader:
    """Decisions over the whole document: the body column, page furniture, footnotes, the letterhead."""

    def __init__(self, pages: list[list[Segment]], heights: list[float]) -> None:
        self.pages = pages
        self.heights = heights
        everything = [s for page in pages for s in page]
        weights = Counter()
        for segment in everything:
            weights[segment.size] += len(segment.text)
        self.body_size = weights.most_common(1)[0][0]
        body = [s for s in everything if abs(s.size - self.body_size) <= 0.1 * self.body_size]
        lefts = Counter()
        for segment in body:
            lefts[round(segment.x0)] += len(segment.text)
        self.left = lefts.most_common(1)[0][0]
        rights = sorted(s.x1 for s in body if len(s.text) > 20) or sorted(s.x1 for s in body)
        self.right = rights[int(0.95 * (len(rights) - 1))]
        self.furniture = self._furniture()

    def in_margin(self, segment: Segment) -> bool:
        """Outside the body column: a letterhead column on the right, labels in a typeset left margin."""
        return segment.x0 < self.left - 12 or segment.x0 > self.right - 4

    def _furniture(self) -> set[int]:
        """Running heads, footers and page numbers: by place on the page and repetition across pages."""
        found: set[int] = set()
        places: dict[str, list[tuple[int, float]]] = {}
        for number, page in enumerate(self.pages):
            for segment in page:
                if self._in_edge_zone(segment):
                    places.setdefault(segment.key, []).append((number, segment.top))
        for number, page in enumerate(self.pages):
            for segment in page:
                if not self._in_edge_zone(segment):
                    continue
                if segment.superscripts and segment.superscripts[0][0] == 0:
                    continue  # opens with a raised number: a footnote, however alike the footnotes read
                elsewhere = {n for n, top in places.get(segment.key, []) if n != number and abs(top - segment.top) <= SAME_PLACE}
                repeated = len(elsewhere) >= max(1, (len(self.pages) - 1) // 2)  # a running head is on most pages
                masthead = segment.size >= MASTHEAD * self.body_size and segment.bottom < EDGE_ZONE * self.heights[number]
                if repeated or masthead or _PAGE_NUMBER.match(segment.text.strip()):
                    found.add(id(segment))
        return found

    def _in_edge_zone(self, segment: Segment) -> bool:
        height = self.heights[segment.page]
        return segment.bottom < EDGE_ZONE * height or segment.top > (1 - EDGE_ZONE) * height

    def reading(self) -> Reading:
        facts = Facts()
        lines: list[Line] = []
        footnotes: list[RawFootnote] = []
        margin: list[Segment] = []
        for number, page in enumerate(self.pages):
            body = []
            for segment in page:
                if id(segment) in self.furniture:
                    continue
                if self.in_margin(segment):
                    margin.append(segment)
                else:
                    body.append(segment)
            text_lines, notes = self._split_footnotes(body, footnotes)
            footnotes.extend(notes)
            lines.extend(self._lines(text_lines, footnotes, first_on_page=True))
        _letterhead_facts(margin, self.left, self.body_size, facts)
        return Reading(lines=lines, footnotes=footnotes, facts=facts)

    def _split_footnotes(self, body: list[Segment], earlier: list[RawFootnote]) -> tuple[list[Segment], list[RawFootnote]]:
        """The run of lines in a smaller type at the foot of the page, opening with the next footnote's number
        (or continuing the last footnote of the previous page)."""
        last_body = len(body) - 1
        while last_body >= 0 and body[last_body].size < FOOTNOTE_TYPE * self.body_size:
            last_body -= 1
        zone = body[last_body + 1:]
        if not zone or not re.match(r"^\d{1,3}\b", zone[0].text) and not zone[0].superscripts and not earlier:
            return body, []
        notes: list[RawFootnote] = []
        for segment in zone:
            lead = re.match(r"^(\d{1,3})\s+(\S.*)$", segment.text)
            if segment.superscripts and segment.superscripts[0][0] == 0:
                lead = re.match(r"^(\d{1,3})\s*(\S.*)$", segment.superscripts[0][1] + " " + segment.text)
            expected = (notes[-1].number if notes else earlier[-1].number if earlier else 0) + 1
            if lead and int(lead.group(1)) == expected:
                notes.append(RawFootnote(expected, lead.group(2).strip()))
            elif notes:
                notes[-1].text = _join_words(notes[-1].text, segment.text)
            elif earlier:  # a footnote continued from the previous page
                earlier[-1].text = _join_words(earlier[-1].text, segment.text)
            else:
                return body, []
        return body[: last_body + 1], notes

    def _lines(self, segments: list[Segment], footnotes: list[RawFootnote], first_on_page: bool) -> list[Line]:
        numbers = {note.number for note in footnotes}
        pitches = [b.top - a.top for a, b in zip(segments, segments[1:]) if 0 < b.top - a.top < 3 * self.body_size]
        pitch = median(pitches) if pitches else 1.2 * self.body_size
        lines = []
        previous = None
        for segment in segments:
            text = segment.text
            for position, digits in reversed(segment.superscripts):
                marker = chr(FOOTNOTE_MARK + int(digits)) if int(digits) in numbers else digits
                text = text[:position].rstrip() + marker + text[position:]
            gap = previous is None or segment.top - previous.bottom > (PARAGRAPH_GAP - 1) * pitch + 2
            if previous is not None and segment.top < previous.bottom - 1:  # the same row, another segment
                lines[-1].text = f"{lines[-1].text} {text}"
                previous = segment
                continue
            lines.append(Line(
                text=" ".join(text.split()), indented=segment.x0 > self.left + 3,
                gap_before=gap, emphasis=(segment.bold or segment.italic) and not _all_caps(text),
            ))
            previous = segment
        return lines


def _all_caps(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) > 0.8 * len(letters)


def _join_words(left: str, right: str) -> str:
    if left.endswith("-") and right[:1].islower():
        return left[:-1] + right
    return f"{left} {right}"


def _letterhead_facts(margin: list[Segment], left: float, body_size: float, facts: Facts) -> None:
    """What the first page's margins state: the letterhead column to the right of the body (the
    organisation's name in bold, then bold labels each followed by its value) and the labels in the
    left margin of typeset Kamerstukken (dossier number, "Nr. 4")."""
    first_page = sorted((s for s in margin if s.page == 0 and s.size < MASTHEAD * body_size), key=lambda s: s.top)
    organisation: list[str] = []
    label = None
    plain_seen = False
    for segment in first_page:
        text = segment.text.strip()
        if segment.x0 < left:
            number = re.match(r"^Nr\.\s*(\d+)$", text)
            dossier = re.match(r"^(\d{2}\s?\d{3})(?:\s*[-–]?\s*([A-Z]{1,4}|[IVXL]+))?$", text)
            if number:
                facts.number = number.group(1)
            elif dossier and not facts.dossier:
                facts.dossier = dossier.group(1).replace(" ", "") + (f"-{dossier.group(2)}" if dossier.group(2) else "")
        elif segment.bold and not plain_seen:
            organisation.append(text)
        elif segment.bold:
            label = text
        else:
            plain_seen = True
            if label is not None:
                facts.letterhead.setdefault(label, text)
                label = None
    if organisation:
        facts.organisation = " ".join(organisation)
