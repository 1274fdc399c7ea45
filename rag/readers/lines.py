"""Lines of extracted text, cleaned before blocks are built from them.

pdftotext-style input wraps every line, breaks words with hyphens, leaves page-break blank
lines, glues footnote markers to words (`genomen2.`) and puts footnote texts mid-letter. Here
the lines get their gaps, letter-spaced words are rejoined, bullets normalised, page furniture
dropped and footnotes moved out of the running text; `layout` builds blocks from what remains.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from rag.language import is_word

SENTENCE_END = re.compile(r"[.!?][”\"’'»)\]\ue000-\ue0ff]*$")  # a footnote marker may follow the full stop
_PLACEHOLDER = re.compile(r"(?:\[[^\]]{1,60}\]\s*)+")
# The printer's line and footer of a typeset Kamerstuk: "ISSN 0921-7371", "Tweede Kamer, vergaderjaar 1992-1993, 22 818, nr. 3".
_PUBLICATION_FOOTER = re.compile(r"\bISSN\s?\d{4}\s?-\s?\d{3}[\dX]\b|^(?:Tweede|Eerste) Kamer, vergaderjaar \d{4}\s?[-–]\s?\d{4}, [^.]{0,40}(?:nr\.|Aanhangsel)")
_PAGE_NUMBER = re.compile(r"(?:(?:[Pp]\s?a\s?g\s?i\s?n\s?a|[Pp]age)\s*\d+(?:\s*(?:van|of)\s*\d+)?|[-–]?\s*\d{1,3}\s*[-–]?)")
# Bullet glyphs as PDF fonts encode them (Symbol and Wingdings private-use codes among them) become "- ".
_BULLET_CHARS = "\uf0b7\uf0a7\uf0d8\uf076\uf0fc\uf0a8\u2022\u25aa\u25e6\u25cf\u2023\u2043\u25a0"
_BULLET_GLYPH = re.compile(rf"^[{_BULLET_CHARS}]\s*(?=\S)")
FOOTNOTE_MARK = 0xE000  # private-use characters stand in for footnote markers until blocks are built


@dataclass
class Line:
    text: str
    indented: bool  # pdftotext starts a new text block or page with whitespace
    gap_before: bool  # blank line(s), a page break or removed noise before it
    separator_before: bool = False  # a long whitespace-only line: the rule above footnotes
    emphasis: bool = False  # the whole line set in bold or italic (known from a PDF's fonts): a heading


@dataclass
class RawFootnote:
    number: int
    text: str
    block_index: int = -1
    anchor_in_block: int = 0


def vocabulary_of(lines: list[Line]) -> Counter[str]:
    """How often the letter itself spells each word: the judge for hyphens and letter-spaced words."""
    return Counter(re.findall(r"[\w-]+", " ".join(line.text for line in lines).lower()))


COLUMN_SPACES = 6  # a run of this many spaces inside a line of `pdftotext -layout` separates two columns


def prepare_lines(raw: str) -> list[Line]:
    """Lines of extracted text, with the gaps between them; a side column printed on the same line
    (as `pdftotext -layout` does) becomes a line of its own after it; letter-spaced words are rejoined."""
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    # Soft hyphens, zero-width and direction marks, and control characters a text export can carry: no letters.
    raw = re.sub("[\u00ad\u200b\u200c\u200d\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\x00-\x08\x0b\x0e-\x1f\x7f]", "", raw)
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


def list_items(lines: list[Line]) -> list[Line]:
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


def drop_noise(lines: list[Line], repeated: Callable[[str, str], bool], extracted: bool = False) -> list[Line]:
    """Remove signature placeholders, page numbers, running headers and a letterhead printed again
    on later pages, keeping the gaps they made. In text an extractor left (`extracted`), also a page
    printed twice (a line of the letter again, word for word) and a copy garbled by an overlaid text
    layer (lines mostly of "words" that are no words: "Ministerie vMinisterie van an BinnenBinnenllaandse")."""
    furniture = Counter(re.sub(r"\d+", "#", line.text) for line in lines if len(line.text) >= 12)
    vocabulary = vocabulary_of(lines) if extracted else Counter()
    seen: set[str] = set()
    kept: list[Line] = []
    pending_gap = False
    dropped = ""  # the line just removed: a standard sentence of the letter head may end on this one
    for line in lines:
        if extracted:
            line.text = _GLUED_REFERENCE.sub("", line.text)
        key = re.sub(r"\d+", "#", line.text)
        # A sentence-long line printed again is a page printed twice (its first copy stays); a short one on three
        # pages or more is a running head or footer (every copy goes).
        long = len(line.text) >= REPEATED_LINE and len(line.text.split()) >= 5
        again = long and key in seen and (extracted or furniture[key] >= 3)
        noise = (
            _PLACEHOLDER.fullmatch(line.text)
            or _PAGE_NUMBER.fullmatch(line.text)
            or _PUBLICATION_FOOTER.search(line.text)
            or (not long and len(line.text) >= 12 and furniture[key] >= 3)
            or repeated(line.text, dropped)
            or again
            or (extracted and _garbled(line.text, vocabulary))
        )
        seen.add(key)
        dropped = line.text if noise else ""
        if noise:
            pending_gap = True
            continue
        if pending_gap:
            line.gap_before = True
            pending_gap = False
        kept.append(line)
    return kept


# A kenmerk of the letterhead column glued to the end of a body line: "... (FOL) BS2021027543".
_GLUED_REFERENCE = re.compile(r"(?<=\S)\s+(?:[A-Z]{2,5}\d{8,}|\d{4}-\d{8,}|\d{4}Z\d{5}(?:/\d{4}D\d{5})?)\s*$")
REPEATED_LINE = 30  # characters: a line this long printed again word for word is a page printed twice
GARBLED_SHARE = 0.5  # of a line's words (of four letters or more), no words of Dutch or English, nor of the letter


def _garbled(text: str, vocabulary: Counter[str]) -> bool:
    words = re.findall(r"[^\W\d_]{4,}", text)
    if len(words) < 3:
        return False
    unknown = [word for word in words if vocabulary[word.lower()] <= 1 and not is_word(word)]
    return len(unknown) >= GARBLED_SHARE * len(words)


def extract_footnotes(lines: list[Line]) -> tuple[list[Line], list[RawFootnote]]:
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
