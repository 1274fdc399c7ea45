"""The head of a letter, recognised by its form: what it states becomes metadata, never body text.

Text that other tools extracted from a ministry letter opens with the address block, the
letterhead column (the ministry's name, its address, phone numbers, a web address) and the
labels of the letter (Datum, Betreft, Ons kenmerk, ...), often interleaved and with labels
and values in separate runs ("Datum", "Betreft", then "22 december 2022", "Emissies door de
luchtvaart"). A typeset Kamerstuk opens with its own head: the chamber, "Vergaderjaar
1991-1992", the dossier number and title, "Nr. 3", "BRIEF VAN DE MINISTER VAN DEFENSIE",
the addressee and "'s-Gravenhage, 5 november 1992". Both are read here from the lines before
the body starts; the lines of the head are dropped again wherever they repeat on later pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.language import MONTH_ALTERNATION
from rag.readers.lines import SENTENCE_END, Line

# The labels of a Dutch government letter head (the form itself, not any one ministry's wording).
_LABELS = {
    "datum": "datum", "betreft": "betreft", "onderwerp": "betreft", "ons kenmerk": "kenmerk",
    "onze referentie": "kenmerk", "kenmerk": "kenmerk", "referentie": "kenmerk", "uw kenmerk": "uw kenmerk",
    "uw referentie": "uw kenmerk", "uw brief": "uw brief", "uw brief van": "uw brief", "bijlage(n)": "bijlagen",
    "bijlagen": "bijlagen", "bijlage": "bijlagen", "contactpersoon": "contact", "inlichtingen": "contact",
    "doorkiesnummer": "contact", "telefoon": "contact", "e-mail": "contact", "retouradres": "retouradres",
    "projectnaam": "project", "ons nummer": "kenmerk", "aan": "aan",
}
_LABEL = re.compile(
    r"^>?\s*(" + "|".join(re.escape(label) for label in sorted(_LABELS, key=len, reverse=True)) + r")\b[:.]?\s*(.*)$",
    re.IGNORECASE,
)
_SALUTATION = re.compile(r"^(?:Geachte|Hooggeachte|Zeer geachte|Mevrouw de [Vv]oorzitter|Mijnheer de [Vv]oorzitter)\b")
_ADDRESS = re.compile(
    r"^(?:>\s*)?(?:postbus\s*\d|\d{4}\s?[A-Z]{2}\b|[TF]\s*[+\d(][\d ()-]{7,}$|(?:tel|fax)\.?\s*[+\d(]|www\.|https?://|"
    r"\S+@\S+\.\w+$|(?:den haag|'s-gravenhage|’s-gravenhage|the hague)$|"
    r"[A-Z][\w.’'-]+(?:straat|weg|plein|laan|kade|haven|hof|gracht|plantsoen|dijk|singel|park)\s+\d+\w?$)",
    re.IGNORECASE,
)
_ADDRESSEE = re.compile(
    r"^(?:aan\s+)?(?:de\s+)?(?:heer\s+)?(?:voorzitter|voorzitters|leden)\b.*(?:kamer|staten-generaal|generaal)\b|^der staten-generaal$|"
    r"^(?:tweede|eerste) kamer der staten-generaal$",
    re.IGNORECASE,
)
_ORGANISATION = re.compile(r"^(?:ministerie|directoraat|directie|dienst|inspectie|agentschap|programma)\b", re.IGNORECASE)
_VERGADERJAAR = re.compile(r"^(?:vergaderjaar|zitting)\s+(\d{4})\s*[-–]\s*(\d{2,4})(?:\s*[-–]\s*(\d{4,5}))?\b", re.IGNORECASE)
_DOSSIER = re.compile(r"^(\d{2}\s?\d{3})(?:\s*[-–]?\s*([A-Z]{1,4}|[IVXL]+\d*))?(?:\s*\(R\s*\d+\))?$")
_NUMBER = re.compile(r"^Nr\.\s*(\d{1,4})\b\.?$", re.IGNORECASE)
_STUK = re.compile(r"^(BRIEF|NOTA|MEMORIE|VERSLAG|MOTIE|AMENDEMENT|ADVIES|VOORSTEL|LIJST|RAPPORT|BIJLAGE)\b[A-ZÀ-Ý ,.’'-]+$")
_PLACE_DATE = re.compile(rf"^[’'\w][\w’' -]{{1,30}},\s*(\d{{1,2}})\s*({MONTH_ALTERNATION})\s+(\d{{4}})\.?$", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^[\d\s/.-]{1,12}$")
_PUBLICATION = re.compile(r"^(?:Aanhangsel van de Handelingen|Handelingen|Kamerstukken|(?:Tweede|Eerste) Kamer der Staten-Generaal)$",
                          re.IGNORECASE)
_QUESTIONS_MASTHEAD = re.compile(r"^Vragen gesteld door de leden der Kamer\b", re.IGNORECASE)
HEAD_LINES = 80  # the head is on the first page: look no further than this
HEAD_LINE_WORDS = 20  # a head's lines are shorter, but for a dossier's title, which states no sentence
_SENTENCE_END = re.compile(r"[.!?:;]$|[.!?]\s+[A-Z]")


def _is_prose(text: str) -> bool:
    """A paragraph of the body: long and made of sentences. Whatever it starts with, the head has ended."""
    return len(text.split()) > HEAD_LINE_WORDS and _SENTENCE_END.search(text.rstrip()) is not None


@dataclass
class Head:
    """The facts a letter's head states, by label, and the head's own lines."""

    facts: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def repeats(self, text: str) -> bool:
        """True for a line of the head printed again on a later page (the letterhead column)."""
        return _key(text) in {_key(line) for line in self.lines if len(line.split()) <= 8}


def _key(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", text.lower()))


def read_head(lines: list[Line]) -> tuple[Head, list[Line]]:
    """Split the letter head off the lines; return it and the lines from the first body line on.

    With a salutation ("Geachte voorzitter,") on the first page, everything before it is head.
    Without one, the head is the run of lines that read as head: labels and their values, an
    address, the sender's name, a Kamerstuk's head; before the subject, any short line (the
    letterhead column); after it, the first line that is none of these starts the body.
    """
    head = Head()
    salutation = next((i for i, line in enumerate(lines[:HEAD_LINES]) if _SALUTATION.match(line.text.strip())), None)
    pending: list[str] = []  # labels that stood alone, waiting for their values ("Datum", "Betreft")
    index = 0
    while index < (salutation if salutation is not None else min(len(lines), HEAD_LINES)):
        text = lines[index].text.strip()
        label = _LABEL.match(text)
        if label and _LABELS[label.group(1).lower()] != "aan":
            name, value = _LABELS[label.group(1).lower()], label.group(2).strip(" :")
            head.lines.append(text)
            index += 1
            if name == "betreft" and value:
                value, index = _subject(value, lines, index, head)
            if value:
                head.facts.setdefault(name, value)
            else:
                pending.append(name)
            continue
        fitting = next((name for name in pending if _fits(name, text)), None)
        if fitting is not None and not _ADDRESS.match(text) and not _ORGANISATION.match(text):
            pending.remove(fitting)
            name, value = fitting, text
            head.lines.append(text)
            index += 1
            if name == "betreft":
                value, index = _subject(value, lines, index, head)
            head.facts.setdefault(name, value)
            continue
        consumed = 0 if _is_prose(text) else _kamerstuk_head(lines, index, head) or _letterhead_line(lines, index, head)
        if not consumed and salutation is not None:
            head.lines.append(text)  # before the salutation it is head, whatever it is
            consumed = 1
        if not consumed:
            break
        index += consumed
    if not {"betreft", "datum", "stuk", "publicatie"} & set(head.facts):
        return Head(), lines  # no head of either form: the letter starts at once
    return head, lines[index:]


_DATE = re.compile(rf"\b\d{{1,2}}\s*(?:{MONTH_ALTERNATION})\s+\d{{4}}\b", re.IGNORECASE)


def _fits(name: str, text: str) -> bool:
    """Whether a line can be the value of a label that stood alone: labels and values may come in separate runs."""
    dated = bool(_DATE.search(text))
    if name in ("datum", "uw brief"):
        return dated
    if dated:
        return False
    if name in ("kenmerk", "uw kenmerk"):
        return len(text.split()) <= 3 and bool(re.search(r"[\d/]", text))
    if name == "bijlagen":
        return bool(re.match(r"^(?:\d+|geen|een|twee|drie)\b", text, re.IGNORECASE)) and len(text.split()) <= 4
    if name == "betreft":
        return bool(re.search(r"[^\W\d]{3}", text)) and not _LABEL.match(text)
    return len(text.split()) <= 8


def _subject(value: str, lines: list[Line], index: int, head: Head) -> tuple[str, int]:
    """A subject runs on for a line or two, until a gap, a label, the salutation or a sentence end."""
    parts = [value]
    while (index < len(lines) and len(parts) < 3 and not lines[index].gap_before
           and not _LABEL.match(lines[index].text) and not _SALUTATION.match(lines[index].text)
           and not SENTENCE_END.search(parts[-1]) and len(lines[index].text.split()) <= 12):
        parts.append(lines[index].text.strip())
        head.lines.append(parts[-1])
        index += 1
    return " ".join(parts), index


def _kamerstuk_head(lines: list[Line], index: int, head: Head) -> int:
    """One element of a typeset Kamerstuk's (or Aanhangsel's) head; the number of lines it took (0: none)."""
    text = lines[index].text.strip()
    facts = head.facts
    if _PUBLICATION.match(text):
        facts.setdefault("publicatie", text)
        head.lines.append(text)
        return 1
    if _QUESTIONS_MASTHEAD.match(text):  # "Vragen gesteld door de leden der Kamer, met de daarop ..." (two lines)
        taken = 2 if index + 1 < len(lines) and not SENTENCE_END.search(text) and len(lines[index + 1].text.split()) <= 6 else 1
        head.lines.extend(line.text for line in lines[index:index + taken])
        return taken
    if facts.get("publicatie", "").lower().startswith("aanhangsel") and re.fullmatch(r"\d{3,5}", text) and "aanhangsel" not in facts:
        facts["aanhangsel"] = text
        head.lines.append(text)
        return 1
    number = _NUMBER.match(text)
    if number:
        facts.setdefault("nummer", number.group(1))
        head.lines.append(text)
        return 1
    session = _VERGADERJAAR.match(text)
    dossier = _DOSSIER.match(text)
    if session:
        facts.setdefault("vergaderjaar", f"{session.group(1)}-{session.group(2)}")
    if session and session.group(3) and "dossier" not in facts:  # "Zitting 1967-1968-9364"
        facts["dossier"] = session.group(3)
    elif dossier and "dossier" not in facts:
        facts["dossier"] = dossier.group(1).replace(" ", "") + (f"-{dossier.group(2)}" if dossier.group(2) else "")
    elif session:
        head.lines.append(text)
        return 1
    if session or dossier:
        head.lines.append(text)
        taken = 1
        title = []
        # The dossier's title follows until "Nr. N" or the kind of document.
        while index + taken < len(lines) and len(title) < 4:
            following = lines[index + taken].text.strip()
            if (_NUMBER.match(following) or _STUK.match(following) or _SALUTATION.match(following)
                    or _is_prose(following)):
                break
            title.append(following)
            head.lines.append(following)
            taken += 1
        if title:
            facts["dossiertitel"] = " ".join(title)
        return taken
    if _STUK.match(text) and text.isupper():
        facts.setdefault("stuk", text)
        head.lines.append(text)
        return 1
    place_date = _PLACE_DATE.match(text)
    if place_date and "datum" not in facts:
        facts["datum"] = f"{place_date.group(1)} {place_date.group(2)} {place_date.group(3)}"
        head.lines.append(text)
        return 1
    return 0


def _letterhead_line(lines: list[Line], index: int, head: Head) -> int:
    """An address, an addressee, the sender's name, or a short line of the letterhead column."""
    text = lines[index].text.strip()
    if _ORGANISATION.match(text) and "organisatie" not in head.facts:
        # "Ministerie van" / "Infrastructuur en" / "Waterstaat": the name may be broken over lines.
        parts, taken = [text], 1
        while (index + taken < len(lines) and len(parts) < 4 and parts[-1].split()[-1].lower() in ("van", "en", "voor", "der")):
            parts.append(lines[index + taken].text.strip())
            taken += 1
        head.facts["organisatie"] = " ".join(parts)
        head.lines.extend(parts)
        return taken
    # Before the subject, a short line is the letterhead column's; after it, it may be the first heading.
    short = len(text.split()) <= 7 and not SENTENCE_END.search(text) and "betreft" not in head.facts
    if _ADDRESS.match(text) or _ADDRESSEE.match(text) or _BARE_NUMBER.match(text) or short:
        head.lines.append(text)
        return 1
    return 0
