"""Month names and date display, shared by the letter reader, retrieval and answers."""

from __future__ import annotations

MONTHS = {
    "januari": 1, "februari": 2, "maart": 3, "april": 4, "mei": 5, "juni": 6, "juli": 7,
    "augustus": 8, "september": 9, "oktober": 10, "november": 11, "december": 12,
    "january": 1, "february": 2, "march": 3, "may": 5, "june": 6, "july": 7, "august": 8,
    "october": 10,
}
# Longest first, so a regex alternation never stops at a shorter name.
MONTH_ALTERNATION = "|".join(sorted(MONTHS, key=len, reverse=True))
_DUTCH_NAMES = [name for name, _number in sorted(list(MONTHS.items())[:12], key=lambda item: item[1])]


def dutch_date(iso: str) -> str:
    """2021-03-24 -> 24 maart 2021."""
    year, month, day = (int(part) for part in iso.split("-"))
    return f"{day} {_DUTCH_NAMES[month - 1]} {year}"


def shown_date(iso: str | None) -> str:
    """A letter's date as the chat and the answers show it."""
    return dutch_date(iso) if iso else "zonder datum"
