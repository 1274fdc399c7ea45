"""Blocks from the cleaned lines of a letter: paragraphs, headings, signatures, with footnotes anchored.

`lines` cleans what an extractor left; this module decides where a paragraph starts, which
line is a heading (and its level) and who signed; `document` turns the blocks into text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from rag.language import MONTH_ALTERNATION, is_question_or_answer_heading, stopwords
from rag.readers.lines import (FOOTNOTE_MARK, SENTENCE_END, Line, RawFootnote, drop_noise, extract_footnotes, list_items,
                               vocabulary_of)

_ROLE = re.compile(
    r"^(?:De |Het )?(?:minister(?:-president)?|staatssecretaris)\b[^.]{0,90},$", re.IGNORECASE
)
_NAME_TOKEN = re.compile(r"^(?:[A-ZÀ-Ý][\w.’'-]*|van|de|der|den|ten|ter|von|le|la|du)$")
_BULLET = re.compile(r"^(?:[-–•*▪]|\(?[a-z0-9]\))\s+\S")  # "- item", "• item", "a) item"
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
WRAPPED = 0.85  # a line this close to the usual width was wrapped by the printer, not ended by the writer
_VOWEL_CLASH = {"aa", "ae", "ai", "au", "ee", "ei", "eu", "ie", "ii", "oe", "oi", "oo", "ou", "ui", "uu"}


@dataclass
class Block:
    text: str
    kind: str  # paragraph, heading, group, signature
    level: int = 2
    index: int = -1
    caps: bool = False


@dataclass
class Layout:
    blocks: list[Block]
    footnotes: list[RawFootnote]
    signatories: list[tuple[str, str]] = field(default_factory=list)  # (name, role)


def read_blocks(lines: list[Line], footnotes: list[RawFootnote] | None = None,
                repeated: Callable[[str, str], bool] = lambda text, previous: False, extracted: bool = False) -> Layout:
    """Blocks from the body's lines. `footnotes` is None when they still stand in the running text;
    `repeated` says which lines are a letterhead printed again on later pages."""
    vocabulary = vocabulary_of(lines)
    lines = list_items(lines)
    lines = drop_noise(lines, repeated, extracted)
    if footnotes is None:
        lines, footnotes = extract_footnotes(lines)
    builder = _BlockBuilder(lines, vocabulary)
    blocks = builder.build()
    _assign_levels(blocks)
    place_footnote_anchors(blocks, footnotes)
    return Layout(blocks, footnotes, builder.signatories)


# --- blocks ------------------------------------------------------------------------------

def _first_word(text: str) -> str:
    return text.split(" ", 1)[0]


def _opens_sentence(text: str) -> bool:
    """A line that starts with a capitalised function word ("Het was ..."): a new sentence, so the line before it
    ended on purpose however long it was; no sentence goes on with "Het" across a blank line."""
    word = _first_word(text)
    return len(word) > 1 and word[0].isupper() and word[1:].islower() and word.lower() in stopwords()


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
            return not self.wrapped(index) or _opens_sentence(following.text)
        room = len(self.lines[index].text) + 1 + len(_first_word(following.text))
        return room < self._widths[index] * 0.92

    def wrapped(self, index: int) -> bool:
        """True for a line that runs to the usual width without ending its sentence: the sentence goes on in the
        next line, whatever an extractor put between them (a page break, the letterhead column, a blank line)."""
        text = self.lines[index].text
        return len(text) >= WRAPPED * self._widths[index] and not _ends_sentence(text) and not text.endswith(":")

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
        if is_question_or_answer_heading(text):
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
        if is_question_or_answer_heading(following.text):
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
                or _first_word(previous.split()[-1]).lower() in _DANGLING or self.wrapped(index - 1)
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
        if block.kind != "heading" or block.caps or is_question_or_answer_heading(block.text):
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
                and not is_question_or_answer_heading(following.text)):
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
