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

import functools
import re
import unicodedata
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
    "projectnaam": "project", "ons nummer": "kenmerk", "aan": "aan", "dat um": "datum", "afschrift aan": "afschrift",
    "kopie aan": "afschrift", "onze ref": "kenmerk", "uw ref": "uw kenmerk",
}
_LABEL = re.compile(
    r"^>?\s*(" + "|".join(re.escape(label) for label in sorted(_LABELS, key=len, reverse=True)) + r")\b[:.]?\s*(.*)$",
    re.IGNORECASE,
)
_SALUTATION = re.compile(r"^(?:Geachte|Hooggeachte|Zeer geachte|Mevrouw de [Vv]oorzitter|Mijnheer de [Vv]oorzitter)\b")
_ADDRESS = re.compile(
    r"^(?:>\s*)?(?:postbus\s*\d|(?-i:\d{4}\s?[A-Z]{2})\b|[TF]\s*[+\d(][\d ()-]{7,}$|(?:tel|fax)\.?\s*[+\d(]|www\.|https?://|"
    r"\S+@\S+\.\w+$|(?:den haag|'s-gravenhage|’s-gravenhage|the hague)$|"
    r"[A-Z][\w.’'-]+(?:straat|weg|plein|laan|kade|haven|hof|gracht|plantsoen|dijk|singel|park)\s+\d+\w?$)",
    re.IGNORECASE,
)
_ADDRESSEE = re.compile(
    r"^(?:aan\s+)?(?:de\s+)?(?:heer\s+)?(?:voorzitter|voorzitters|leden)\b.*(?:kamer|staten-generaal|generaal)\b|^der staten-generaal$|"
    r"^(?:tweede|eerste) kamer der staten-generaal$",
    re.IGNORECASE,
)
# A street and its number without a telling suffix ("Plein 4", "Korte Voorhout 7", "Turfmarkt 147"); not a heading
# that counts ("Vraag 3", "Artikel 5").
_STREET = re.compile(r"^(?!(?:vraag|vragen|antwoord|antwoorden|artikel|hoofdstuk|bijlage|paragraaf|stap|fase|nr|nummer|"
                     r"deel|sessie|pagina|tabel|figuur|onderdeel|punt)\b)[A-Z][\w.’'-]*(?:\s[A-Z][\w.’'-]*){0,2}\s\d{1,4}\s?[a-zA-Z]?$",
                     re.IGNORECASE)
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
_NOT_A_TO_Z = re.compile(r"[^a-z]+")
# The standard sentences of the Rijkshuisstijl letter head, which every ministry prints: a line that is a piece of
# one of them is letterhead wherever an extractor put it (inside the subject, between two halves of a sentence).
_BOILERPLATE = (
    "correspondentie uitsluitend richten aan het retouradres met vermelding van de datum en het kenmerk van deze brief",
    "bij beantwoording de datum en ons kenmerk vermelden",
    "bij beantwoording datum onze referentie en betreft vermelden",
    "bij beantwoording datum onze referentie en onderwerp vermelden",
    "wilt u slechts een zaak in uw brief behandelen",
    "aan de voorzitter van de tweede kamer der staten generaal",
    "de voorzitter van de eerste kamer der staten generaal",
    "afschrift aan", "kopie aan", "retouradres",
)
# A kenmerk standing alone: "BS2022007280", "2019-0000087786", "2019Z07430/2019D17244", "IENW/BSK-2019/12345".
_REFERENCE = re.compile(r"^(?=(?:\D*\d){6})[A-Z]{0,6}[/-]?[A-Z0-9]+(?:[/.-][A-Z0-9]+)*$")
_LONE_DATE = re.compile(rf"^(?:\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{4}}|\d{{1,2}}\s+(?:{MONTH_ALTERNATION})\s+\d{{4}})\.?$", re.IGNORECASE)
_PAGE = re.compile(r"^(?:pagina|page|blad)\s*\d+\s*(?:(?:van|of|/)\s*\d+)?$", re.IGNORECASE)
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

    def repeats(self, text: str, _previous: str = "") -> bool:
        """True for a line of the head printed again on a later page (the letterhead column)."""
        return _key(text) in _short_line_keys(tuple(self.lines))

    def is_letterhead(self, text: str, previous: str = "") -> bool:
        """True for a line of the letterhead column wherever it stands: a line of this head printed again, a label
        with its value, an address, a kenmerk, a date or page number alone, a piece of the standard head sentences
        (`previous`: the line before it, when that one was letterhead too)."""
        return self.repeats(text) or is_letterhead_line(text, previous)


def is_letterhead_line(text: str, previous: str = "") -> bool:
    """A line that is letterhead by its form alone, whatever letter it is in (`previous`: the letterhead line
    before it, whose standard sentence it may finish: "onze referentie en betreft" / "vermelden.")."""
    text = text.strip().strip(">").strip()
    if not text:
        return False
    label = _LABEL.match(text)
    if label and _LABELS[label.group(1).lower()] not in ("aan", "betreft"):
        value = label.group(2).strip(" :")
        if not value or len(value.split()) <= 4 and (_REFERENCE.match(value) or _DATE.search(value) or _LONE_DATE.match(value)
                                                     or _BARE_NUMBER.match(value)):
            return True
    if label and _LABELS[label.group(1).lower()] == "betreft" and not label.group(2).strip():
        return True
    if is_boilerplate(text, previous) or _REFERENCE.match(text) or _LONE_DATE.match(text) or _PAGE.match(text):
        return True
    # An address or addressee is a short line that ends no sentence ("leden van de Eerste Kamer." in a letter is prose).
    return (bool(_ADDRESS.match(text) or _ADDRESSEE.match(text)) and len(text.split()) <= 8
            and not re.search(r"[.!?;]$", text))


def is_boilerplate(text: str, previous: str = "") -> bool:
    """A piece (two words or more, or the last words of one begun on the line before) of one of the standard
    sentences of a government letter head."""
    words = _plain_words(text)
    if len(words.split()) >= 2 and any(words in phrase for phrase in _BOILERPLATE):
        return True
    joined = _plain_words(f"{previous} {text}")
    return bool(previous and words) and is_boilerplate(previous) and any(joined in phrase for phrase in _BOILERPLATE)


@functools.lru_cache(maxsize=4)
def _short_line_keys(lines: tuple[str, ...]) -> frozenset[str]:
    """The keys of a head's short lines, once per head rather than once per line of the letter."""
    return frozenset(_key(line) for line in lines if len(line.split()) <= 8)


def _plain_words(text: str) -> str:
    """Lower case letters and single spaces: "Bij beantwoording datum," -> "bij beantwoording datum"."""
    if text.isascii():  # most lines: no accents to fold, and a letter is a-z
        return " ".join(_NOT_A_TO_Z.sub(" ", text.lower()).split())
    folded = unicodedata.normalize("NFKD", text.lower())
    letters = "".join(c if c.isalpha() else " " for c in folded if not unicodedata.combining(c))
    return " ".join(letters.split())


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
    before_subject = ""  # the first part of a subject printed before its "Betreft" label
    while index < (salutation if salutation is not None else min(len(lines), HEAD_LINES)):
        text = lines[index].text.strip()
        label = _LABEL.match(text)
        lone_label = bool(label) and not label.group(2).strip(" :")  # "Ons kenmerk" alone is a label, not boilerplate
        if not lone_label and is_boilerplate(text, head.lines[-1] if head.lines else "") or _PAGE.match(text):
            head.lines.append(text)
            index += 1
            continue
        if label and _LABELS[label.group(1).lower()] != "aan":
            name, value = _LABELS[label.group(1).lower()], label.group(2).strip(" :")
            head.lines.append(text)
            index += 1
            if name == "betreft" and value:
                value, index = _subject(value, lines, index, head)
            elif name == "betreft" and head.lines[:-1] and _subject_like(head.lines[-2]) and "betreft" not in head.facts:
                before_subject = head.lines[-2]  # "Jaarverslag 2021 Kustwacht ... in" / "Betreft" / "het Caribisch gebied"
            if value:
                head.facts.setdefault(name, value)
            elif before_subject and name == "betreft" and not _continues_subject(lines, index):
                head.facts.setdefault("betreft", before_subject)
            else:
                pending.append(name)
            continue
        # A line after a gap that opens a sentence is the body's first, not a value a label waited for.
        fitting = None if lines[index].gap_before and _opens_prose(text) else next(
            (name for name in pending if _fits(name, text)), None)
        if fitting is not None and not _ADDRESS.match(text) and not _ORGANISATION.match(text) and not _STREET.match(text):
            pending.remove(fitting)
            name, value = fitting, text
            head.lines.append(text)
            index += 1
            if name == "betreft":
                value, index = _subject(" ".join(part for part in (before_subject, value) if part), lines, index, head)
            head.facts.setdefault(name, value)
            continue
        if _subject_before_label(lines, index):
            head.lines.append(text)  # the subject, printed before its label: taken when the label comes
            index += 1
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


_DATE = re.compile(rf"\b\d{{1,2}}\s*(?:{MONTH_ALTERNATION})\s+\d{{4}}\b|\b\d{{1,2}}-\d{{1,2}}-\d{{4}}\b", re.IGNORECASE)


def _fits(name: str, text: str) -> bool:
    """Whether a line can be the value of a label that stood alone: labels and values may come in separate runs."""
    dated = bool(_DATE.search(text))
    if name in ("datum", "uw brief"):
        return dated
    if dated:
        return False
    if name in ("kenmerk", "uw kenmerk"):
        return len(text.split()) <= 3 and bool(re.search(r"[\d/]", text))
    if name == "afschrift":  # to whom a copy goes: an addressee, never a piece of the subject
        return bool(_ADDRESSEE.match(text) or re.match(r"(?:de|het|aan)\b", text, re.IGNORECASE))
    if name == "bijlagen":
        return bool(re.match(r"^(?:\d+|geen|een|twee|drie)\b", text, re.IGNORECASE)) and len(text.split()) <= 4
    if name == "betreft":
        return bool(re.search(r"[^\W\d]{3}", text)) and not _LABEL.match(text)
    return len(text.split()) <= 8


def _subject(value: str, lines: list[Line], index: int, head: Head) -> tuple[str, int]:
    """A subject runs on for a line or two, until a gap, a label, the salutation or a sentence end; the letterhead
    column's lines printed between its parts (an address, a piece of the standard sentences) are passed over."""
    parts = [value]
    while (index < len(lines) and len(parts) < 3 and not lines[index].gap_before
           and not _LABEL.match(lines[index].text) and not _SALUTATION.match(lines[index].text)
           and not SENTENCE_END.search(parts[-1]) and len(lines[index].text.split()) <= 12
           and not _opens_prose(lines[index].text)):
        text = lines[index].text.strip()
        head.lines.append(text)
        index += 1
        if not is_letterhead_line(text, head.lines[-2]) and not _STREET.match(text) and len(text) > 2:
            parts.append(text)  # ("e", the raised ordinal of "110e", printed on a line of its own, is no part)
    return " ".join(parts), index


def _opens_prose(text: str) -> bool:
    """A long line opening with a capital: the body's first sentence, not the rest of a subject."""
    return len(text.split()) >= 8 and text.strip()[:1].isupper()


def _subject_like(text: str) -> bool:
    """A line that can be (part of) a subject: words, not an address, a label, a kenmerk or a piece of the head's
    standard sentences."""
    return (bool(re.search(r"[^\W\d_]{3}", text)) and not is_letterhead_line(text) and not _STREET.match(text)
            and not _ORGANISATION.match(text) and not _LABEL.match(text) and not _SALUTATION.match(text))


def _subject_before_label(lines: list[Line], index: int) -> bool:
    """A subject-like line directly before a "Betreft" label that stands alone (printed in that order)."""
    following = lines[index + 1].text.strip() if index + 1 < len(lines) else ""
    label = _LABEL.match(following)
    return (_subject_like(lines[index].text) and label is not None and _LABELS[label.group(1).lower()] == "betreft"
            and not label.group(2).strip() and len(lines[index].text.split()) <= 16)


def _continues_subject(lines: list[Line], index: int) -> bool:
    """Whether a subject-like line follows the label soon (after the letterhead column's lines between them)."""
    for line in lines[index:index + 3]:
        if line.gap_before:
            return False
        if _subject_like(line.text) and len(line.text.split()) <= 12:
            return True
    return False


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
    if _ADDRESS.match(text) or _ADDRESSEE.match(text) or _BARE_NUMBER.match(text) or _STREET.match(text) or short:
        head.lines.append(text)
        return 1
    return 0
