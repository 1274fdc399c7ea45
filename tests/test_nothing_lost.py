"""Nothing of a letter's body is lost, moved into the head or split, and no letterhead reaches a passage: over every
real letter the project has (tests/data/real, eval/letters, and text extracts as PDF-to-text tools leave them in
tests/data/extracts, where the letterhead column is interleaved with the body)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.index.chunking import chunk_document, split_sentences
from rag.readers import letter_paths
from rag.readers.document import read_document
from rag.settings import EVAL_LETTERS

DATA = Path(__file__).parent / "data"
EXTRACTS = sorted((DATA / "extracts").glob("*.txt"))
# PDFs take a second or two each to read: with the slow tests.
LETTERS = [pytest.param(path, marks=pytest.mark.slow) if path.suffix == ".pdf" else path
           for path in letter_paths([DATA / "real", EVAL_LETTERS, DATA / "extracts"])]
# What a passage must never hold: the letterhead column's addresses, labels with their values, kenmerken, page
# footers and the standard sentences of a government letter head.
LETTERHEAD = re.compile(
    r"\bPostbus \d+\b|\b\d{4} ?[A-Z]{2} (?:Den Haag|'s-Gravenhage)\b|\b(?:Onze referentie|Ons kenmerk|Uw kenmerk)\b|"
    r"\bPagina \d+ van \d+\b|\bBS\d{10}\b|\b20\d\d-00\d{8}\b|\bCorrespondentie uitsluitend\b|\bslechts één zaak\b|"
    r"\bBij beantwoording (?:de )?datum\b")
# A letter's head: its subject, addressee and labels are metadata, not body text.
HEAD_LINE = re.compile(r"^\s*(?:>|Betreft|Onderwerp|Aan de [Vv]oorzitter|De [Vv]oorzitter|Voorzitter van)\b")
# A kenmerk the letterhead column glued to the end of a body line (removed on purpose).
GLUED = re.compile(r"\s+(?:[A-Z]{2,5}\d{8,}|\d{4}-\d{8,})\s*$")


def _letters_and_digits(text: str) -> str:
    return "".join(character.lower() for character in text if character.isalnum())


def _overlaid(token: str) -> bool:
    """A "word" of a page whose text layer was printed over itself, by its shape alone (not by a word list, which is
    the reader's own rule): a part repeated inside it (BinnenBinnen), a capital or a stop inside it (vMinisterie,
    niet.tvera), or every letter doubled (PPaaggiinnaa)."""
    word = re.sub(r"[^\w().,;:]", "", token)
    doubled = len(word) >= 6 and all(word[i] == word[i + 1] for i in range(0, len(word) - 1, 2))
    return bool(re.search(r"([^\W\d_]{3,})\1", word) or re.search(r"[a-z][A-Z]", word)
                or re.search(r"[a-z][.,;:()][a-z]", word)) or doubled


def _head_end(lines: list[str]) -> int:
    """Where the letter head ends, by the source's own layout: after the subject, the lines from its label
    ("Betreft", "Onderwerp") to the next blank line; 0 for a source without that label near its top."""
    label = next((number for number, line in enumerate(lines[:80]) if re.match(r"\s*(?:Betreft|Onderwerp)\b", line)), None)
    if label is None:
        return 0
    end = label + 1
    while end < len(lines) and lines[end].strip():
        end += 1
    return end


def _body_lines(raw: str) -> list[str]:
    """Lines of the source after its head that read as prose: six words or more, hardly any of them of an
    overlaid text layer, no addressee or label of a letterhead printed again."""
    lines = raw.splitlines()
    body = []
    for line in lines[_head_end(lines):]:
        tokens = line.split()
        if len(tokens) < 6 or len(re.findall(r"[^\W\d_]{4,}", line)) < 4:
            continue
        overlaid, gaps = sum(map(_overlaid, tokens)), len(re.findall(r"\S {2,}\S", line.strip()))
        if overlaid + gaps >= 2:
            continue  # two text layers interleaved letter by letter (their words split by runs of spaces)
        if HEAD_LINE.match(line):
            continue
        body.append(GLUED.sub("", line.strip()))
    return body


@pytest.mark.parametrize("path", EXTRACTS, ids=[path.stem for path in EXTRACTS])
def test_every_body_line_of_an_extract_is_in_the_stored_text(path):
    document = read_document(path)
    stored = _letters_and_digits(document.text)
    lost = [line for line in _body_lines(path.read_text(encoding="utf-8"))
            if _letters_and_digits(line) not in stored]
    assert not lost, lost[:5]


@pytest.mark.parametrize("path", LETTERS)
def test_sentences_stay_whole_and_passages_hold_no_letterhead(path):
    document = read_document(path)
    chunks = chunk_document(document)
    spans = [(chunk.start, chunk.end) for chunk in chunks]
    split = [document.text[start:end][:80] for section in document.sections
             for start, end in split_sentences(document.text[section.start:section.end], section.start)
             if end - start < 900 and not any(low <= start and end <= high for low, high in spans)]
    assert not split, split[:3]
    letterhead = [match.group(0) for chunk in chunks for match in LETTERHEAD.finditer(chunk.text)]
    assert not letterhead, letterhead[:5]
