"""What a reader hands the document builder: the letter's lines (or blocks) and what its form states."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.readers.layout import Block
from rag.readers.lines import Line, RawFootnote


@dataclass
class Facts:
    """What a letter's form states beside its text: letterhead, margin labels, publication metadata."""

    title: str | None = None
    date: str | None = None  # ISO
    kind: str | None = None
    ministry: str | None = None
    organisation: str | None = None  # the letterhead's name of the sender ("Ministerie van ...")
    dossier: str | None = None  # "35538", "22300-XII"
    number: str | None = None  # the Kamerstuk's number in its dossier ("4")
    aanhangsel: str | None = None  # the number of an answer to Kamervragen in the Aanhangsel
    vergaderjaar: str | None = None
    identifier: str | None = None  # the publication's own id: "kst-35538-4", "ah-tk-20202021-3235"
    signatories: list[tuple[str, str]] = field(default_factory=list)  # (name, role)
    letterhead: dict[str, str] = field(default_factory=dict)  # label -> value ("Ons kenmerk" -> "IENW/...")


@dataclass
class Reading:
    """A letter as its reader found it: `lines` for the layout to structure (text, PDF, OCR), or
    `blocks` whose structure the form already gives (XML). `footnotes` is None when they still
    stand in the running text."""

    facts: Facts = field(default_factory=Facts)
    lines: list[Line] | None = None
    blocks: list[Block] | None = None
    footnotes: list[RawFootnote] | None = None
    ocr: bool = False
    warnings: list[str] = field(default_factory=list)
    extracted: bool = False  # text a PDF-to-text tool (or OCR) left: the letterhead column interleaved with the body
