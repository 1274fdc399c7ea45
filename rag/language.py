"""The Dutch (and English) that every stage reads the same way: month names and dates, stop words and
question words, accents folded, the headings of an answer to Kamervragen, and whether a question is English."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from functools import lru_cache

MONTHS = {
    "januari": 1, "februari": 2, "maart": 3, "april": 4, "mei": 5, "juni": 6, "juli": 7,
    "augustus": 8, "september": 9, "oktober": 10, "november": 11, "december": 12,
    "january": 1, "february": 2, "march": 3, "may": 5, "june": 6, "july": 7, "august": 8,
    "october": 10,
}
# Longest first, so a regex alternation never stops at a shorter name.
MONTH_ALTERNATION = "|".join(sorted(MONTHS, key=len, reverse=True))
_DUTCH_NAMES = [name for name, _number in sorted(list(MONTHS.items())[:12], key=lambda item: item[1])]


def calendar_date(year: int, month: int, day: int) -> str | None:
    """The ISO date, or None when the calendar has no such day ("31 februari 2021") or the year is implausible."""
    try:
        return date(year, month, day).isoformat() if 1000 <= year <= 2999 else None
    except ValueError:
        return None


def iso_date(value: str) -> str | None:
    """A date a form states ("2021-03-24", "2021-03-24T10:00:00"), checked against the calendar; None if it is none."""
    try:
        found = date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None
    return calendar_date(found.year, found.month, found.day)


def dutch_date(iso: str) -> str:
    """2021-03-24 -> 24 maart 2021."""
    year, month, day = (int(part) for part in iso.split("-"))
    return f"{day} {_DUTCH_NAMES[month - 1]} {year}"


def shown_date(iso: str | None) -> str:
    """A letter's date as the chat and the answers show it."""
    return dutch_date(iso) if iso else "zonder datum"


# --- words -------------------------------------------------------------------------------

def fold(word: str) -> str:
    """Lower case without accents: "Oekraïne" and "oekraine" are one word."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


QUESTION_WORDS = frozenset({
    "wat", "wie", "wiens", "welke", "welk", "waar", "waarom", "wanneer", "hoe", "hoeveel", "waarover", "waarmee",
    "what", "who", "whom", "whose", "which", "where", "why", "when", "how",
})
# Verbs of saying and thinking carry no topic: "Wat zei Nederland over China?" is about Nederland and China.
REPORTING_VERBS = frozenset({"zei", "zegt", "zeggen", "gezegd", "vond", "vindt", "vinden", "staat", "stond", "gaat", "ging",
                             "did", "does", "says", "say", "said", "think", "thinks", "thought"})
# The Snowball stop words for Dutch and the common English ones (as bm25s lists them).
_DUTCH_STOPWORDS = (
    "aan al alles als altijd andere ben bij daar dan dat de der deze die dit doch doen door dus een eens en er ge geen geweest haar had heb hebben heeft hem het hier hij hoe hun iemand iets ik in is ja je kan kon kunnen maar me meer men met mij mijn moet na naar niet niets nog nu of om omdat onder ons ook op over reeds te tegen toch toen tot u uit uw van veel voor want waren was wat werd wezen wie wil worden wordt zal ze zelf zich zij zijn zo zonder zou"
).split()
_ENGLISH_STOPWORDS = (
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they this "
    "to was will with"
).split()
# Of the reporting verbs, those a search drops as well: the verbs of saying.
_SAYING = ("zei", "zegt", "gezegd", "did", "does", "say", "said")


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """What BM25 and the answer's key terms leave out: function words, question words, verbs of saying."""
    return frozenset(fold(w) for w in (*_DUTCH_STOPWORDS, *_ENGLISH_STOPWORDS, *QUESTION_WORDS, *_SAYING))


_PLAIN_WORD = re.compile(r"[a-z]+")
COMMON = 3.0  # Zipf frequency (per billion words, log10): a word this frequent is a common word of the language


@lru_cache(maxsize=100_000)  # a compound's parts are looked up once per cut and link: the same few words again
def frequency(word: str) -> float:
    """How common a word is in Dutch, or else in English, on the Zipf scale (0: unknown, 7: "de")."""
    from wordfreq import get_frequency_dict, zipf_frequency

    # A word of plain letters is its own token: one that neither word list holds is unknown, without wordfreq's
    # tokenizing (most words a compound is cut into are none).
    if _PLAIN_WORD.fullmatch(word) and word not in get_frequency_dict("nl") and word not in get_frequency_dict("en"):
        return 0.0
    return max(zipf_frequency(word, "nl"), zipf_frequency(word, "en"))


@lru_cache(maxsize=200_000)
def compound_parts(word: str) -> tuple[str, ...]:
    """The common words a Dutch compound is made of ("reclasseringsinterventies" -> reclassering, interventies;
    "dijkversterking" -> dijk, versterking), with the linking -s-/-e-/-en- between them; () when it is none.
    Two parts are preferred to more, and a long first part to a short one."""
    word = word.lower()
    for deeper in (False, True):
        for cut in range(len(word) - 4, 3, -1):
            left, right = word[:cut], word[cut:]
            for link in ("", "s", "en", "e"):
                base = left[: len(left) - len(link)] if left.endswith(link) else ""
                if len(base) < 4 or frequency(base) < COMMON:
                    continue
                if not deeper and frequency(right) >= COMMON:
                    return base, right
                rest = compound_parts(right) if deeper else ()
                if rest:
                    return (base, *rest)
    return ()


def is_word(word: str) -> bool:
    """A word of Dutch or English, or a Dutch compound of common words."""
    return frequency(word) > 0 or bool(compound_parts(word))


def is_english(question: str) -> bool:
    words = re.findall(r"[a-z]+", question.lower())
    english = sum(w in {"the", "what", "did", "does", "who", "which", "how", "about", "is", "are", "of", "and", "why", "was", "were", "will"} for w in words)
    dutch = sum(w in {"de", "het", "wat", "wie", "welke", "hoe", "over", "is", "zijn", "van", "en", "een", "waarom", "was", "werd"} for w in words)
    return english > dutch


# --- answers to Kamervragen ----------------------------------------------------------------

_LISTED_NUMBERS = r"\d+(?:\s*(?:,|en|t/m|-|\s)\s*\d+)*"
# "Vraag 1", "Antwoord 3, 4 en 5": the headings of an answer to Kamervragen, with the numbers they list.
QUESTION_HEADING = re.compile(rf"^(?:Vraag|Vragen)\s+({_LISTED_NUMBERS})$")
ANSWER_HEADING = re.compile(rf"^(?:Antwoord|Antwoorden)\s+({_LISTED_NUMBERS})$")
# Where an answer begins inside a passage or a letter's text.
ANSWER_HEADING_IN_TEXT = re.compile(r"^Antwoord(?:en)?\s+\d", re.MULTILINE)


def is_question_or_answer_heading(text: str) -> bool:
    return bool(QUESTION_HEADING.match(text) or ANSWER_HEADING.match(text))
