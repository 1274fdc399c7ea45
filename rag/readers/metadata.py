"""What a letter says about itself, beyond its text: its title, its date (and whether it is sure), its kind and
the ministry that sent it, from what its form states, its head, and its text.
"""

from __future__ import annotations

import re
from collections import Counter

from rag.language import ANSWER_HEADING_IN_TEXT, MONTH_ALTERNATION, MONTHS, calendar_date, iso_date
from rag.readers.layout import Block
from rag.readers.letterhead import Head
from rag.readers.reading import Facts


# "23 en 24 maart 2021", "1 juni 2021", "23-24 maart 2021", "31 maart jl."
DATE_PATTERN = re.compile(
    rf"\b(?:(\d{{1,2}})\s*(?:en|-|–|tot)\s*)?(\d{{1,2}})\s+({MONTH_ALTERNATION})\b(?:\s+(\d{{4}}))?",
    re.IGNORECASE,
)
_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})-(\d{1,2})-((?:19|20)\d\d)\b")  # "22-01-2019", as a letter head may print it


_ENUMERATED_TITLE = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[a-z]\))\s")  # "1. Inleiding" is a section, not the title


def title_of(facts: Facts, head: Head, blocks: list[Block], text: str) -> str:
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


def date_of(facts: Facts, head: Head, blocks: list[Block], title: str, text: str) -> tuple[str | None, bool, str | None]:
    """The letter's date and whether it is sure: stated by the form or the Datum line (an answer to
    Kamervragen: the day it was received), else the date in its title; the first date in the text
    is only a guess, and a time filter does not drop a letter for a guess."""
    if facts.date:
        if iso_date(facts.date):
            return iso_date(facts.date), True, None
        return None, False, f"the stated date {facts.date!r} is no date of the calendar; the letter is indexed without a date"
    for candidate in (head.facts.get("datum"), *(m.group(1) for m in _RECEIVED.finditer(text[:3000]))):
        if candidate:
            found, warning = _first_date(candidate, text)
            if found or warning:  # an impossible stated date is not replaced by a guess
                return found, found is not None and warning is None, warning
    for candidate in [title] + [b.text for b in blocks if b.caps]:
        found, warning = _first_date(candidate, text)
        if found:
            return found, warning is None, warning
    found, warning = _first_date(text, text)
    if found:
        return found, False, warning or f"no date stated; took {found}, the first date in the text"
    return None, False, "no date found in the letter"


def _first_date(candidate: str, text: str) -> tuple[str | None, str | None]:
    """The first date in `candidate`; a date without a year takes the latest year the letter names (a warning).
    A date the calendar does not have ("31 februari 2021") is passed over, with a warning when nothing follows."""
    impossible = None
    numeric = _NUMERIC_DATE.search(candidate)
    if numeric and (DATE_PATTERN.search(candidate) is None or numeric.start() < DATE_PATTERN.search(candidate).start()):
        found = calendar_date(int(numeric.group(3)), int(numeric.group(2)), int(numeric.group(1)))
        if found:
            return found, None
        impossible = numeric.group(0)
    for match in DATE_PATTERN.finditer(candidate):
        day, month, year = int(match.group(2)), MONTHS[match.group(3).lower()], match.group(4)
        warning = None
        if year is None:
            years = [int(y) for y in _YEAR.findall(text)]
            if not years:
                continue
            year = str(max(years))
            warning = f"the date '{match.group(0)}' has no year; took {year}, the latest year the letter names"
        found = calendar_date(int(year), month, day)
        if found:
            return found, warning
        impossible = impossible or match.group(0)
    if impossible:
        return None, f"the date '{impossible}' does not exist; the letter is indexed without a date"
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


def kind_of(facts: Facts, head: Head, title: str, text: str) -> str:
    """brief, antwoord op Kamervragen, geannoteerde agenda, verslag, fiche, ...: from the form, else the title."""
    if facts.kind:
        return facts.kind
    if head.facts.get("stuk", "").startswith("BRIEF"):
        return "brief"
    if ANSWER_HEADING_IN_TEXT.search(text) and re.search(r"\bVraag\s+\d+", text):
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


def ministry_of(facts: Facts, head: Head, roles: tuple[str, ...], text: str) -> str | None:
    """The sending ministry, as "Infrastructuur en Waterstaat": publisher metadata, letterhead, head of a
    Kamerstuk, the signature, or the "Antwoord van Minister X (Ministry)" line."""
    candidates = [facts.ministry, facts.organisation, head.facts.get("organisatie"), head.facts.get("stuk")]
    candidates += list(roles)
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
