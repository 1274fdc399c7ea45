"""Recover paragraphs, headings, signatures and footnotes from text extracted from a PDF.

pdftotext-style input wraps every line, breaks words with hyphens, leaves page-break blank
lines, glues footnote markers to words (`genomen2.`) and puts footnote texts mid-letter.
This module reads such lines and gives back clean blocks; `documents` turns them into text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from rag.language import MONTH_ALTERNATION

SENTENCE_END = re.compile(r"[.!?][”\"’'»)\]\ue000-\ue0ff]*$")  # a footnote marker may follow the full stop
_ROLE = re.compile(
    r"^(?:De |Het )?(?:minister(?:-president)?|staatssecretaris)\b[^.]{0,90},$", re.IGNORECASE
)
_NAME_TOKEN = re.compile(r"^(?:[A-ZÀ-Ý][\w.’'-]*|van|de|der|den|ten|ter|von|le|la|du)$")
_PLACEHOLDER = re.compile(r"(?:\[[^\]]{1,60}\]\s*)+")
# The printer's line and footer of a typeset Kamerstuk: "ISSN 0921-7371", "Tweede Kamer, vergaderjaar 1992-1993, 22 818, nr. 3".
_PUBLICATION_FOOTER = re.compile(r"\bISSN\s?\d{4}\s?-\s?\d{3}[\dX]\b|^(?:Tweede|Eerste) Kamer, vergaderjaar \d{4}\s?[-–]\s?\d{4}, [^.]{0,40}(?:nr\.|Aanhangsel)")
_PAGE_NUMBER = re.compile(r"(?:(?:[Pp]\s?a\s?g\s?i\s?n\s?a|[Pp]age)\s*\d+(?:\s*(?:van|of)\s*\d+)?|[-–]?\s*\d{1,3}\s*[-–]?)")
_BULLET = re.compile(r"^(?:[-–•*▪]|\(?[a-z0-9]\))\s+\S")  # "- item", "• item", "a) item"
# "Vraag 1", "Antwoord 3, 4 en 5": the headings of an answer to Kamervragen.
_QUESTION_OR_ANSWER = re.compile(r"^(?:Vraag|Vragen|Antwoord|Antwoorden)\s+\d+(?:\s*(?:,|en|t/m|-|\s)\s*\d+)*$")
# Bullet glyphs as PDF fonts encode them (Symbol and Wingdings private-use codes among them) become "- ".
_BULLET_CHARS = "\uf0b7\uf0a7\uf0d8\uf076\uf0fc\uf0a8\u2022\u25aa\u25e6\u25cf\u2023\u2043\u25a0"
_BULLET_GLYPH = re.compile(rf"^[{_BULLET_CHARS}]\s*(?=\S)")
_MARKERS = re.compile(r"[\ue000-\ue0ff]")  # footnote markers, until blocks are built
_ENUMERATED = re.compile(r"^(?:[a-z]|[ivx]{1,4})\)\s+\S")  # "a) Titel voorstel": a lettered sub-heading or item
_SALUTATION_LINE = re.compile(r"^(?:Geachte|Hooggeachte|Zeer geachte|Mevrouw de|Mijnheer de)\b")
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
    emphasis: bool = False  # the whole line set in bold or italic (known from a PDF's fonts): a heading


@dataclass
class Block:
    text: str
    kind: str  # paragraph, heading, group, signature
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


def vocabulary_of(lines: list[Line]) -> Counter[str]:
    """How often the letter itself spells each word: the judge for hyphens and letter-spaced words."""
    return Counter(re.findall(r"[\w-]+", " ".join(line.text for line in lines).lower()))


def read_blocks(lines: list[Line], footnotes: list[RawFootnote] | None = None,
                repeated: Callable[[str], bool] = lambda text: False) -> Layout:
    """Blocks from the body's lines. `footnotes` is None when they still stand in the running text;
    `repeated` says which lines are a letterhead printed again on later pages."""
    vocabulary = vocabulary_of(lines)
    lines = _list_items(lines)
    lines = _drop_noise(lines, repeated)
    if footnotes is None:
        lines, footnotes = _extract_footnotes(lines)
    builder = _BlockBuilder(lines, vocabulary)
    blocks = builder.build()
    _assign_levels(blocks)
    place_footnote_anchors(blocks, footnotes)
    return Layout(blocks, footnotes, builder.signatories)


# --- lines -------------------------------------------------------------------------------

COLUMN_SPACES = 6  # a run of this many spaces inside a line of `pdftotext -layout` separates two columns


def prepare_lines(raw: str) -> list[Line]:
    """Lines of extracted text, with the gaps between them; a side column printed on the same line
    (as `pdftotext -layout` does) becomes a line of its own after it; letter-spaced words are rejoined."""
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    raw = re.sub("[\u00ad\u200b\u200c\u200d\ufeff]", "", raw)
    raw = raw.replace("\xa0", " ").replace("\t", "    ")
    raw = raw.replace("\f", "\n\n")
    lines: list[Line] = []
    gap = separator = False
    for physical in raw.split("\n"):
        text = " ".join(physical.split())
        if not text:
            gap = True
            separator = separator or len(physical) >= 20
            continue
        columns = [part for part in re.split(rf"(?<=\S) {{{COLUMN_SPACES},}}(?=\S)", physical.strip()) if part.strip()]
        for number, column in enumerate(columns):
            lines.append(Line(" ".join(column.split()), physical[:1].isspace() if number == 0 else True,
                              (gap or not lines) if number == 0 else False, separator if number == 0 else False))
        gap = separator = False
    _rejoin_spaced_letters(lines)
    return lines


_SPLIT_WORD = re.compile(r"\b([^\W\d_]{1,5}) ([^\W\d_]{1,12})\b")


def _rejoin_spaced_letters(lines: list[Line]) -> None:
    """"Inf rastructuur", "Aa n de", "voere n": a word an extractor split at a wide glyph gap is joined
    again when the joined word occurs in the letter unbroken and one of the two parts is no word of it."""
    vocabulary = vocabulary_of(lines)
    pairs = Counter(match.group(0).lower() for line in lines for match in _SPLIT_WORD.finditer(line.text))

    def join(match: re.Match) -> str:
        left, right = match.group(1), match.group(2)
        joined = (left + right).lower()
        split_here = pairs[match.group(0).lower()]  # "inf rastructuur" on every page is no use of "inf"
        parts_known = vocabulary[left.lower()] > split_here and vocabulary[right.lower()] > split_here
        if vocabulary[joined] >= 1 and not parts_known and (right[0].islower() or left.isupper()):
            return left + right
        return match.group(0)

    for line in lines:
        line.text = _SPLIT_WORD.sub(join, line.text)


def _list_items(lines: list[Line]) -> list[Line]:
    """Bullet glyphs become "- "; a glyph an extractor put on a line of its own joins the item after it."""
    kept: list[Line] = []
    glyph_alone = False
    for line in lines:
        if len(line.text.strip()) == 1 and line.text.strip() in _BULLET_CHARS:
            glyph_alone = True
            continue
        line.text = _BULLET_GLYPH.sub("- ", line.text)
        if glyph_alone:
            line.text = f"- {line.text}"
            glyph_alone = False
        kept.append(line)
    return kept


def _drop_noise(lines: list[Line], repeated: Callable[[str], bool]) -> list[Line]:
    """Remove signature placeholders, page numbers, running headers and a letterhead printed again
    on later pages, keeping the gaps they made."""
    furniture = Counter(re.sub(r"\d+", "#", line.text) for line in lines if len(line.text) >= 12)
    kept: list[Line] = []
    pending_gap = False
    for line in lines:
        key = re.sub(r"\d+", "#", line.text)
        noise = (
            _PLACEHOLDER.fullmatch(line.text)
            or _PAGE_NUMBER.fullmatch(line.text)
            or _PUBLICATION_FOOTER.search(line.text)
            or (len(line.text) >= 12 and furniture[key] >= 3)
            or repeated(line.text)
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


# Words that a number follows as a count or a name, not as a footnote marker: "artikel 1", "nr. 2".
_COUNTED = {"artikel", "art", "nr", "nummer", "lid", "fase", "bijlage", "hoofdstuk", "stap", "paragraaf", "vraag",
            "antwoord", "onderdeel", "punt", "pagina", "blz", "week", "dag", "jaar", "versie", "niveau", "categorie",
            "groep", "sessie", "deel", "tabel", "figuur", "van", "tot", "en", "of", "op", "om", "per", "ruim", "circa"}


def _mark_footnote(body: list[Line], number: int) -> bool:
    """Replace the last marker `number` after a word (glued, "genomen2.", or set apart by an extractor,
    "aangeboden 1.") with a placeholder character."""
    glued = re.compile(rf"(?<=[a-zà-ÿ.,;:)”’\"»]){number}(?=[\s.,;:)”’]|$)")
    spaced = re.compile(rf"(?<=[a-zà-ÿ)”’\"»]) {number}(?=[.,;:)”’]|$| [a-zà-ÿ])")
    for pattern in (glued, spaced):
        for line in reversed(body[-80:]):
            matches = [m for m in pattern.finditer(line.text)
                       if pattern is glued or line.text[: m.start()].rsplit(" ", 1)[-1].strip(".,").lower() not in _COUNTED]
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
        if _ROLE.match(text):
            return self._signature(index)
        if _is_caps_line(text) and self._opens_block(index):
            return self._caps_heading(index)
        if _QUESTION_OR_ANSWER.match(text):
            self._emit(text, "heading")
            return index + 1
        if line.emphasis and self._opens_block(index):
            heading = self._emphasised_heading(index)
            if heading:
                return heading
        if self._is_heading(index):
            kind = "group" if _EXPLICIT_GROUP.match(text) else "heading"
            self._emit(text, kind, level=0 if kind == "group" else 2)
            return index + 1
        if self.paragraph and self._starts_paragraph(index):
            self._flush()
        self.paragraph.append(line)
        return index + 1

    def _emphasised_heading(self, index: int) -> int:
        """A heading the PDF sets in bold or italic, on one line or two; 0 when the emphasised run is a
        paragraph instead (a whole answer in italics), or ends like a sentence."""
        text = self.lines[index].text
        end = index + 1
        while (end < len(self.lines) and self.lines[end].emphasis and not self.lines[end].gap_before
               and not _NUMBERED.match(self.lines[end].text) and not _ENUMERATED.match(self.lines[end].text)):
            text = self._join(text, self.lines[end].text)
            end += 1
        ends_like_a_sentence = re.search(r"[.,;:][\ue000-\ue0ff]*$", text) or (text.endswith("?") and len(text.split()) > 6)
        if len(text) > 120 or ends_like_a_sentence:
            return 0
        kind = "group" if _EXPLICIT_GROUP.match(text) else "heading"
        self._emit(text, kind, level=0 if kind == "group" else 2)
        return end

    def _opens_block(self, index: int) -> bool:
        if index == 0 or not self.paragraph:
            return True
        line = self.lines[index]
        previous = self.lines[index - 1].text
        return line.gap_before or _ends_sentence(previous) or previous.endswith(":")

    def _is_heading(self, index: int) -> bool:
        line = self.lines[index]
        text = _MARKERS.sub("", line.text)
        words = text.split()
        if len(text) > 90 or len(words) > 10 or index + 1 >= len(self.lines):
            return False
        if re.search(r"[.,;:?\-]$", text) or words[-1].lower() in _DANGLING:
            return False
        if not (text[0].isupper() or _NUMBERED.match(text)):
            return False
        if _DATE_IN_LINE.search(text):
            return False
        following = self.lines[index + 1]
        if _QUESTION_OR_ANSWER.match(following.text):
            return False  # the last words of an answer ("Ja"), not a heading over nothing
        if not (following.text[0].isupper() or following.text[0].isdigit() or following.text[0] in "“\"‘'(«"):
            return False
        return self._opens_block(index) and self.ended_early(index)

    def _starts_paragraph(self, index: int) -> bool:
        line = self.lines[index]
        previous = self.paragraph[-1].text
        if previous.endswith(",") and _SALUTATION_LINE.match(previous):
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
        if block.kind != "heading" or block.caps or _QUESTION_OR_ANSWER.match(block.text):
            continue
        if _ENUMERATED.match(block.text):
            block.level = 9  # under the numbered heading it belongs to
            continue
        numbered = _NUMBERED.match(block.text)
        if numbered:
            block.kind = "group"
            block.level = numbered.group(1).count(".") + 1
            continue
        following = blocks[position + 1] if position + 1 < len(blocks) else None
        if (following is not None and following.kind == "heading" and not following.caps
                and not _QUESTION_OR_ANSWER.match(following.text)):
            block.kind = "group"
            block.level = 1


def place_footnote_anchors(blocks: list[Block], footnotes: list[RawFootnote]) -> None:
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

