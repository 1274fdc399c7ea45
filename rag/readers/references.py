"""Official references: a letter's own identifiers and the Kamerstukken it cites, normalised.

"Kamerstuk 28 676, nr. 320", "Kamerstukken II 2019/20, 21 501-02, nr. 2134" and "kst-28676-320"
all become `28676-320` (`21501-02-2134`), so a question or a filter that names a Kamerstuk
finds the letters that cite it, however each letter wrote it.
"""

from __future__ import annotations

import re

from rag.readers.letterhead import Head
from rag.readers.reading import Facts

_DOSSIER = r"(\d{2}\s?\d{3})(?:\s?[-–]\s?([A-Z]{1,4}|[IVXL]+|\d{2})|\s([A-Z]{1,4}|[IVXL]+)(?=,))?"
_KAMERSTUK = re.compile(
    rf"\bKamerstuk(?:ken)?(?:\s+I{{1,2}})?(?:\s+\d{{4}}\s?[/–-]\s?\d{{2,4}})?,?\s+{_DOSSIER},?\s+(?:nrs?|nummers?)\.?\s*"
    r"(\d{1,4}(?:\s*(?:,|en|t/m|-)\s*\d{1,4})*)",
    re.IGNORECASE,
)
_PUBLICATION_ID = re.compile(r"\bkst-(\d{5})(?:-([A-Z]{1,4}|[IVXL]+|\d{2}))?-(\d{1,4})\b", re.IGNORECASE)
_AANHANGSEL = re.compile(r"\bAanhangsel(?: van de)? Handelingen\s+(I{1,2})\s+(\d{4})\s?/\s?(\d{2}),?\s+nr\.?\s*(\d{1,5})", re.IGNORECASE)


def normalise_dossier(dossier: str, suffix: str | None = None) -> str:
    """"28 676" -> "28676"; "21 501-02" -> "21501-02"; "36 200 XII" -> "36200-XII"."""
    base = re.sub(r"\s+", "", dossier)
    return f"{base}-{suffix.upper()}" if suffix else base


def cited_references(text: str) -> tuple[str, ...]:
    """Every Kamerstuk and Aanhangsel the text cites, normalised, in order of first mention."""
    found: list[str] = []
    for match in _KAMERSTUK.finditer(text):
        dossier = normalise_dossier(match.group(1), match.group(2) or match.group(3))
        numbers = re.findall(r"\d{1,4}", match.group(4))
        found.extend(f"{dossier}-{number}" for number in numbers)
    for match in _PUBLICATION_ID.finditer(text):
        found.append(f"{normalise_dossier(match.group(1), match.group(2))}-{match.group(3)}")
    for match in _AANHANGSEL.finditer(text):
        chamber = "tk" if match.group(1).upper() == "II" else "ek"
        start = int(match.group(2))
        found.append(f"ah-{chamber}-{start}{start + 1}-{match.group(4)}")
    return tuple(dict.fromkeys(found))


def own_identifiers(facts: Facts, head: Head) -> tuple[tuple[str, str], ...]:
    """The document's own references, as (kind, value): dossier, Kamerstuk number, publication id,
    Aanhangsel number, vergaderjaar, the ministry's kenmerk."""
    identifiers: list[tuple[str, str]] = []
    dossier = facts.dossier or head.facts.get("dossier")
    number = facts.number or head.facts.get("nummer")
    if dossier:
        identifiers.append(("dossier", normalise_dossier(dossier)))
        if number:
            identifiers.append(("kamerstuk", f"{normalise_dossier(dossier)}-{number}"))
    if facts.identifier:
        identifiers.append(("id", facts.identifier))
    if facts.aanhangsel:
        identifiers.append(("aanhangsel", facts.aanhangsel))
    vergaderjaar = facts.vergaderjaar or head.facts.get("vergaderjaar")
    if vergaderjaar:
        identifiers.append(("vergaderjaar", vergaderjaar))
    kenmerk = head.facts.get("kenmerk") or next(
        (value for label, value in facts.letterhead.items() if re.search(r"kenmerk|referentie", label, re.IGNORECASE)), None)
    if kenmerk:
        identifiers.append(("kenmerk", re.sub(r"\s+", "", kenmerk) if re.fullmatch(r"[\w/ .-]+", kenmerk) else kenmerk))
    return tuple(identifiers)
