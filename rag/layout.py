"""Recover paragraphs, headings, signatures and footnotes from text extracted from a PDF.

pdftotext-style input wraps every line, breaks words with hyphens, leaves page-break blank
lines, glues footnote markers to words (`genomen2.`) and puts footnote texts mid-letter.
This module reads such lines and gives back clean blocks; `documents` turns them into text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from rag.dates import MONTH_ALTERNATION

SENTENCE_END = re.compile(r"[.!?][”\"’'»)\]]*$")
_ROLE = re.compile(
    r"^(?:De |Het )?(?:[Mm]inister(?:-[Pp]resident)?|[Ss]taatssecretaris)\b[^.]{0,90},$"
)
_NAME_TOKEN = re.compile(r"^(?:[A-ZÀ-Ý][\w.’'-]*|van|de|der|den|ten|ter|von|le|la|du)$")
_PLACEHOLDER = re.compile(r"(?:\[[^\]]{1,60}\]\s*)+")
_PAGE_NUMBER = re.compile(r"(?:(?:[Pp]agina|[Pp]age)\s+\d+(?:\s+(?:van|of)\s+\d+)?|[-–]?\s*\d{1,3}\s*[-–]?)")
_BULLET = re.compile(r"^(?:[-–•*▪]|\(?[a-z0-9]\))\s+\S")  # "- item", "• item", "a) item"
_HEADER_LABEL = re.compile(
    r"^(Datum|Kenmerk|Ons kenmerk|Uw kenmerk|Uw brief|Onze referentie|Bijlage\(n\)|Bijlagen?|Retouradres|Contactpersoon)\b"
)
_EXPLICIT_GROUP = re.compile(
    r"^(?:sessie|session|deel|part|hoofdstuk|chapter|bijlage|annex)\s+(?:\d+|[IVXLC]+|[A-Za-z])\b",
    re.IGNORECASE,
)
_NUMBERED = re.compile(r"^(\d{1,2}(?:\.\d{1,2})*)\.?\s+[A-ZÀ-Ý]")
_DATE_IN_LINE = re.compile(
    rf"\b\d{{1,2}}(?:st|nd|rd|th|e)?\s*(?:[-–]\s*\d{{1,2}}(?:st|nd|rd|th|e)?\s+)?(?:{MONTH_ALTERNATION})\b",
    re.IGNORECASE,
)
_DANGLING = {
    "de", "het", "een", "van", "en", "of", "in", "op", "met", "voor", "aan", "te", "die", "dat",
    "door", "bij", "om", "naar", "als", "the", "and", "to", "a", "for", "with", "on",
}
_VOWEL_CLASH = {"aa", "ae", "ai", "au", "ee", "ei", "eu", "ie", "ii", "oe", "oi", "oo", "ou", "ui", "uu"}
FOOTNOTE_MARK = 0xE000  # private-use characters stand in for footnote markers until blocks are built


@dataclass
class Line:
    text: str
    indented: bool  # pdftotext starts a new text block or page with whitespace
    gap_before: bool  # blank line(s), a page break or removed noise before it
    separator_before: bool = False  # a long whitespace-only line: the rule above footnotes


@dataclass
class Block:
    text: str
    kind: str  # paragraph, heading, group, signature, betreft, header
    level: int = 2
    index: int = -1
    caps: bool = False


@dataclass
class RawFootnote:
    number: int
    text: str
    block_index: int = -1
    anchor_in_block: int = 0


@dataclass
class Layout:
    blocks: list[Block]
    footnotes: list[RawFootnote]
    signatories: list[tuple[str, str]] = field(default_factory=list)  # (name, role)


def read_blocks(raw: str) -> Layout:
    lines = _prepare_lines(raw)
    lines = _drop_noise(lines)
    vocabulary = Counter(re.findall(r"[\w-]+", raw.lower()))
    lines, footnotes = _extract_footnotes(lines)
    builder = _BlockBuilder(lines, vocabulary)
    blocks = builder.build()
    _assign_levels(blocks)
    _place_footnote_anchors(blocks, footnotes)
    return Layout(blocks, footnotes, builder.signatories)


# --- lines -------------------------------------------------------------------------------

def _prepare_lines(raw: str) -> list[Line]:
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    raw = re.sub("[\u00ad\u200b\u200c\u200d\ufeff]", "", raw)
    raw = raw.replace("\xa0", " ").replace("\t", " ")
    raw = raw.replace("\f", "\n\n")
    lines: list[Line] = []
    gap = separator = False
    for physical in raw.split("\n"):
        text = " ".join(physical.split())
        if not text:
            gap = True
            separator = separator or len(physical) >= 20
            continue
        lines.append(Line(text, physical[:1].isspace(), gap or not lines, separator))
        gap = separator = False
    return lines


def _drop_noise(lines: list[Line]) -> list[Line]:
    """Remove signature placeholders, page numbers and running headers, keeping the gaps they made."""
    furniture = Counter(re.sub(r"\d+", "#", line.text) for line in lines if len(line.text) >= 12)
    kept: list[Line] = []
    pending_gap = False
    for line in lines:
        key = re.sub(r"\d+", "#", line.text)
        noise = (
            _PLACEHOLDER.fullmatch(line.text)
            or _PAGE_NUMBER.fullmatch(line.text)
            or (len(line.text) >= 12 and furniture[key] >= 3)
        )
        if noise:
            pending_gap = True
            continue
        if pending_gap:
            line.gap_before = True
            pending_gap = False
        kept.append(line)
    return kept


def _extract_footnotes(lines: list[Line]) -> tuple[list[Line], list[RawFootnote]]:
    """Move footnote texts out of the running text and mark where their markers stood."""
    body: list[Line] = []
    footnotes: list[RawFootnote] = []
    expected = 1
    index = 0
    while index < len(lines):
        line = lines[index]
        start = re.match(rf"^{expected}\s+(\S.*)$", line.text)
        if start and (line.gap_before or line.separator_before or line.indented) and _mark_footnote(body, expected):
            parts = [start.group(1)]
            index += 1
            while index < len(lines):
                follow = lines[index]
                if follow.gap_before or follow.indented or re.match(rf"^{expected + 1}\s+\S", follow.text):
                    break
                parts.append(follow.text)
                index += 1
            footnotes.append(RawFootnote(expected, " ".join(parts)))
            expected += 1
            if index < len(lines):
                lines[index].gap_before = lines[index].gap_before or not lines[index].indented
            continue
        if footnotes and _repeats_footnote(line.text, footnotes):
            index += 1  # a PDF link annotation printed again under the footnote
            continue
        body.append(line)
        index += 1
    return body, footnotes


def _mark_footnote(body: list[Line], number: int) -> bool:
    """Replace the last marker `number` glued to a word with a placeholder character."""
    marker = re.compile(rf"(?<=[a-zà-ÿ.,;:)”’\"»]){number}(?=[\s.,;:)”’]|$)")
    for line in reversed(body[-80:]):
        matches = list(marker.finditer(line.text))
        if matches:
            last = matches[-1]
            line.text = line.text[: last.start()] + chr(FOOTNOTE_MARK + number) + line.text[last.end():]
            return True
    return False


def _repeats_footnote(text: str, footnotes: list[RawFootnote]) -> bool:
    return any(text == note.text or (text.startswith("http") and text in note.text) for note in footnotes)


# --- blocks ------------------------------------------------------------------------------

def _first_word(text: str) -> str:
    return text.split(" ", 1)[0]


def _ends_sentence(text: str) -> bool:
    return bool(SENTENCE_END.search(text))


def _is_caps_line(text: str) -> bool:
    words = [w for w in re.findall(r"[^\W\d_]{2,}", text)]
    letters = [c for c in text if c.isalpha()]
    return len(words) >= 3 and sum(c.isupper() for c in letters) / len(letters) > 0.7


def _is_name(text: str) -> bool:
    tokens = text.split()
    return (
        1 <= len(tokens) <= 6
        and all(_NAME_TOKEN.match(token) for token in tokens)
        and tokens[-1][0].isupper()
        and not text.endswith(",")
        and not _is_caps_line(text)
    )


class _BlockBuilder:
    def __init__(self, lines: list[Line], vocabulary: Counter[str]) -> None:
        self.lines = lines
        self.vocabulary = vocabulary
        self.blocks: list[Block] = []
        self.signatories: list[tuple[str, str]] = []
        self.paragraph: list[Line] = []
        self._saluted = False  # the letter head (address, Datum, Betreft) ends at "Geachte ..."
        self._widths = self._local_widths()

    def _local_widths(self) -> list[int]:
        """The usual full line width around each line: wrapping decisions are judged against it."""
        lengths = [len(line.text) for line in self.lines]
        widths = []
        for index in range(len(lengths)):
            window = [n for n in lengths[max(0, index - 12): index + 13] if n >= 30]
            widths.append(max(window) if window else 80)
        return widths

    def ended_early(self, index: int) -> bool:
        """True when the next line's first word would have fitted: the line was ended on purpose."""
        if index + 1 >= len(self.lines):
            return True
        following = self.lines[index + 1]
        if following.gap_before:
            return True
        room = len(self.lines[index].text) + 1 + len(_first_word(following.text))
        return room < self._widths[index] * 0.92

    def build(self) -> list[Block]:
        index = 0
        while index < len(self.lines):
            index = self._step(index)
        self._flush()
        for position, block in enumerate(self.blocks):
            block.index = position
        return self.blocks

    def _emit(self, text: str, kind: str, **extra) -> None:
        self._flush()
        self.blocks.append(Block(text, kind, **extra))

    def _step(self, index: int) -> int:
        line = self.lines[index]
        text = line.text
        in_letter_head = not self._saluted
        if text.startswith("Geachte"):
            self._saluted = True
        if re.match(r"^Betreft\b", text) and in_letter_head and not any(b.kind == "betreft" for b in self.blocks):
            return self._betreft(index)
        if _HEADER_LABEL.match(text.lstrip("> ")) and len(text) < 100 and (in_letter_head or not self.paragraph):
            self._emit(text, "header")
            return index + 1
        if _ROLE.match(text):
            return self._signature(index)
        if _is_caps_line(text) and self._opens_block(index):
            return self._caps_heading(index)
        if self._is_heading(index):
            kind = "group" if _EXPLICIT_GROUP.match(text) else "heading"
            self._emit(text, kind, level=0 if kind == "group" else 2)
            return index + 1
        if self.paragraph and self._starts_paragraph(index):
            self._flush()
        self.paragraph.append(line)
        return index + 1

    def _opens_block(self, index: int) -> bool:
        if index == 0 or not self.paragraph:
            return True
        line = self.lines[index]
        previous = self.lines[index - 1].text
        return line.gap_before or _ends_sentence(previous) or previous.endswith(":")

    def _is_heading(self, index: int) -> bool:
        line = self.lines[index]
        text = line.text
        words = text.split()
        if len(text) > 90 or len(words) > 10 or index + 1 >= len(self.lines):
            return False
        if re.search(r"[.,;:\-]$", text) or words[-1].lower() in _DANGLING:
            return False
        if not (text[0].isupper() or _NUMBERED.match(text)):
            return False
        if _DATE_IN_LINE.search(text):
            return False
        following = self.lines[index + 1]
        if not (following.text[0].isupper() or following.text[0].isdigit() or following.text[0] in "“\"‘'(«"):
            return False
        return self._opens_block(index) and self.ended_early(index)

    def _starts_paragraph(self, index: int) -> bool:
        line = self.lines[index]
        previous = self.paragraph[-1].text
        if previous.startswith("Geachte") and previous.endswith(","):
            return True
        if _BULLET.match(line.text):
            return True
        if line.gap_before:
            continues = not _ends_sentence(previous) and not previous.endswith(":") and (
                line.text[0].islower() or previous.endswith((",", "(", "-"))
                or _first_word(previous.split()[-1]).lower() in _DANGLING
            )
            return not continues
        if line.indented and (_ends_sentence(previous) or previous.endswith(":")):
            return True
        return _ends_sentence(previous) and self.ended_early(index - 1)

    def _flush(self) -> None:
        if not self.paragraph:
            return
        text = self.paragraph[0].text
        for line in self.paragraph[1:]:
            text = self._join(text, line.text)
        self.blocks.append(Block(text, "paragraph"))
        self.paragraph = []

    def _join(self, left: str, right: str) -> str:
        if not left.endswith("-") or left.endswith(" -") or not right[:1].isalpha():
            return f"{left} {right}"
        left_word = left.rsplit(" ", 1)[-1]
        right_word = re.match(r"[\w-]+", right)
        stem = left_word[:-1]
        head = right_word.group(0) if right_word else ""
        if right[0].isupper() or not stem or stem[-1].isupper() or stem[-1].isdigit():
            return left + right
        if head.lower() in {"en", "of", "tot", "and", "or", "noch"}:
            return f"{left} {right}"
        hyphenated = self.vocabulary[f"{stem}-{head}".lower()]
        joined = self.vocabulary[f"{stem}{head}".lower()]
        if hyphenated > joined:
            return left + right
        if joined:
            return left[:-1] + right
        if (stem[-1] + head[:1]).lower() in _VOWEL_CLASH:
            return left + right
        return left[:-1] + right

    def _betreft(self, index: int) -> int:
        parts = [self.lines[index].text]
        index += 1
        # The subject runs on for a line or two; extractors without blank lines (pypdf) need the
        # salutation, a header label or a sentence end to say where it stops.
        while (index < len(self.lines) and len(parts) < 3 and not self.lines[index].gap_before
               and not _HEADER_LABEL.match(self.lines[index].text)
               and not self.lines[index].text.startswith("Geachte")
               and not _ends_sentence(parts[-1])):
            parts.append(self.lines[index].text)
            index += 1
        text = parts[0]
        for part in parts[1:]:
            text = self._join(text, part)
        self._emit(text, "betreft")
        return index

    def _signature(self, index: int) -> int:
        role_line = self.lines[index].text
        following = index + 1
        if following < len(self.lines) and _is_name(self.lines[following].text):
            name = self.lines[following].text
            role = re.sub(r"^(?:De|Het) ", "", role_line.rstrip(",")).strip()
            role = role[0].lower() + role[1:]
            self.signatories.append((name, role))
            self._emit(f"{role_line}\n{name}", "signature")
            return following + 1
        self._emit(role_line, "signature")
        return following

    def _caps_heading(self, index: int) -> int:
        text = self.lines[index].text
        index += 1
        while index < len(self.lines):
            line = self.lines[index]
            first = _first_word(line.text)
            continues = (
                (not line.gap_before or len(text) < 20)
                and (first.isupper() or first.isdigit())
                and not _ends_sentence(line.text)
                and len(line.text.split()) <= 10
            )
            if not continues:
                break
            text = self._join(text, line.text)
            index += 1
        self._emit(text, "heading", level=0, caps=True)
        return index


def _assign_levels(blocks: list[Block]) -> None:
    """Give headings their place in the section path.

    A heading directly followed by another heading groups what follows it (`Het Zuiden` >
    `Irak`), as do explicit groups (`SESSIE 2` > `China`) and numbered headings by depth.
    """
    for position, block in enumerate(blocks):
        if block.kind != "heading" or block.caps:
            continue
        numbered = _NUMBERED.match(block.text)
        if numbered:
            block.kind = "group"
            block.level = numbered.group(1).count(".") + 1
            continue
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        if following is not None and following.kind == "heading" and not following.caps:
            block.kind = "group"
            block.level = 1


def _place_footnote_anchors(blocks: list[Block], footnotes: list[RawFootnote]) -> None:
    by_number = {note.number: note for note in footnotes}
    for block in blocks:
        marks = [m for m in re.finditer(r"[\ue000-\ue0ff]", block.text)]
        if not marks:
            continue
        clean_parts: list[str] = []
        cursor = 0
        removed = 0
        for mark in marks:
            clean_parts.append(block.text[cursor: mark.start()])
            note = by_number.get(ord(mark.group(0)) - FOOTNOTE_MARK)
            if note is not None:
                note.block_index = block.index
                note.anchor_in_block = mark.start() - removed
            removed += 1
            cursor = mark.end()
        clean_parts.append(block.text[cursor:])
        block.text = "".join(clean_parts)

