"""A chat's turns, each resolved once when it is asked: follow-ups are read against the previous turn.

"En over Rusland?" after "Wat zei Nederland over China?" is read as "Wat zei Nederland over
Rusland?"; "Wat vond hij daarvan?" borrows the key terms of the previous turn. A question with a
subject and content of its own stands alone, however short ("Wie is Stoltenberg?") and whatever
it opens with ("Maar ...", "Ook ...") or holds ("hun defensie-uitgaven", "haar bezoek"). Each turn is resolved against
the previous *resolved* turn only, so a conversation costs one resolution per question and
the resolved text stays bounded, whatever history a client sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from rag.language import QUESTION_WORDS, REPORTING_VERBS, fold, stopwords
from rag.settings import RetrievalSettings

# A question that opens like this leans on the previous one: "En over Rusland?", "Wat dan met Turkije?".
_FOLLOW_UP_START = re.compile(
    r"^(?:en|and|wat dan met|hoe zit het met|hoe zat het met|hoe staat het met|what about|how about|idem)\b",
    re.IGNORECASE,
)
# An opening that connects without leaning: "Maar wat is het standpunt van het kabinet over Afghanistan?" stands alone.
_CONNECTIVE_START = re.compile(r"^(?:maar|ook|but|also)\s+", re.IGNORECASE)
# "En over Rusland?", "Hoe zit het met Turkije?", "What about Russia?": the same question, another topic.
_TOPIC_SWAP = re.compile(
    r"^(?:en|maar|ook|and|but|also|wat dan met|hoe zit het met|hoe zat het met|hoe staat het met|what about|how about)"
    r"\s+(?:(?:over|about|met|van|voor|with|for|regarding)\s+)?(?P<topic>[^?.!]+?)[?.!\s]*$",
    re.IGNORECASE,
)
# Adverbs that point back at a topic said before ("Wat vond hij daarvan?"): they always lean.
_POINTING_ADVERBS = {
    "daarover", "daarvan", "daarin", "daarbij", "daarmee", "daarop", "daartoe", "daarna", "daarvoor", "daartegen",
    "hierover", "hiervan", "hierin", "hierbij", "hiermee", "hierop", "erover", "ervan", "erin", "erbij", "ermee",
    "dezelfde", "hetzelfde",
}
# Personal pronouns lean unless the question names what they stand for before them ("de minister ... zij").
_PRONOUNS = {"hij", "zij", "ze", "hem", "hen", "he", "she", "they", "him", "them"}
# "haar", "hun", "his", "her", "their", "its" before a noun are possessives ("hun defensie-uitgaven"): no leaning.
_POSSESSIVES = {"haar", "hun", "his", "her", "their", "its"}
# A demonstrative standing for a thing ("Wanneer gebeurde dat?", "Wat betekent dit voor Nederland?"), not a
# determiner ("deze brief"), a conjunction ("dat Nederland ...") or a relative ("landen die ...").
_DEMONSTRATIVES = {"dat", "dit", "die", "deze", "that", "this", "those", "these", "it", "het"}
_PREPOSITIONS = {"voor", "over", "van", "met", "in", "op", "aan", "bij", "naar", "tegen", "for", "about", "of", "with", "on",
                 "to", "in"}
_ARTICLES = {"de", "het", "een", "the", "a", "an"}
_STOPWORDS = stopwords() | REPORTING_VERBS
_WORD = re.compile(r"[\w’'-]+", re.UNICODE)


@dataclass(frozen=True)
class Turn:
    question: str  # as the user typed it
    resolved: str  # as retrieval reads it

    @property
    def is_follow_up(self) -> bool:
        return self.resolved != self.question


@dataclass(frozen=True)
class Conversation:
    """The resolved turns of one chat, the last `settings.max_turns` of them."""

    turns: tuple[Turn, ...] = ()
    settings: RetrievalSettings = field(default_factory=RetrievalSettings, repr=False)

    @classmethod
    def from_questions(cls, questions: Sequence[str], settings: RetrievalSettings = RetrievalSettings()) -> "Conversation":
        """A conversation from earlier questions as a client sends them: each resolved once, the last few kept."""
        conversation = cls(settings=settings)
        recent = [" ".join(str(q).split())[: settings.max_question_chars] for q in questions][-settings.max_turns:]
        for question in recent:
            if question:
                conversation = conversation.then(conversation.resolve(question))
        return conversation

    @property
    def previous(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def resolve(self, question: str) -> Turn:
        previous = self.previous
        if previous is None or not is_follow_up(question):
            return Turn(question, question)
        resolved = _read_against(question, previous.resolved, self.settings.context_terms)
        return Turn(question, _bounded(resolved, self.settings.max_question_chars))

    def then(self, turn: Turn) -> "Conversation":
        return Conversation((self.turns + (turn,))[-self.settings.max_turns:], self.settings)


def message_text(content: object) -> str:
    """The text of a chat message in any shape a client hands it: a string, a list of parts (OpenAI's content
    parts, Gradio's), a dict."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, dict):
        return message_text(content.get("text", content.get("content", "")))
    if isinstance(content, (list, tuple)):
        return " ".join(part for part in map(message_text, content) if part)
    return ""


def asked_questions(history: list[dict]) -> list[str]:
    """The user's questions in a chat history of role/content messages."""
    return [message_text(message.get("content")) for message in history or [] if message.get("role") == "user"]


def is_follow_up(question: str) -> bool:
    """True for a question that leans on the previous one instead of standing alone: it opens like a
    follow-up ("En ...", "Wat dan met ..."), points back ("daarover", a pronoun or "dat" with nothing in the
    question it could stand for), or has nothing of its own to ask about ("Wie?", "Waarom dan?")."""
    if _FOLLOW_UP_START.match(question):
        return True
    question = _CONNECTIVE_START.sub("", question)
    if not _content_words(question):
        return True
    words = _WORD.findall(question)
    folded = [fold(word) for word in words]
    for position, word in enumerate(folded):
        following = folded[position + 1] if position + 1 < len(folded) else None
        if word in _POINTING_ADVERBS:
            return True
        if _names_something_before(words, position):
            continue
        if word in _PRONOUNS:
            return True
        if word in _POSSESSIVES and (following is None or following in _STOPWORDS):
            return True  # "Wat vond hij van haar?": an object pronoun, not a possessive
        if word in _DEMONSTRATIVES and (following is None or (following in _PREPOSITIONS and word != "het")):
            return True
    return False


def _names_something_before(words: list[str], position: int) -> bool:
    """Whether the question names a thing or person before `position` that a pronoun there could stand for:
    a capitalised word after the first, or a noun after an article ("de minister")."""
    before = words[1:position]
    return any(word[:1].isupper() for word in before) or any(
        fold(word) in _ARTICLES for word in words[:max(0, position - 1)])


def _read_against(question: str, previous: str, context_terms: int) -> str:
    swap = _TOPIC_SWAP.match(question)
    if swap:
        topic = swap.group("topic").strip()
        first = fold(topic.split()[0])
        pointing = set(map(fold, _WORD.findall(topic))) & (_POINTING_ADVERBS | _PRONOUNS)
        if len(topic.split()) <= 5 and first not in QUESTION_WORDS and not pointing:
            return _swap_topic(previous, topic)
    terms = [word for word in _content_words(previous) if fold(word) not in {fold(w) for w in _WORD.findall(question)}]
    if not terms:
        return question
    return f"{question} ({' '.join(terms[:context_terms])})"


def _swap_topic(previous: str, topic: str) -> str:
    """Put the new topic where the previous question had its own: after "over"/"about", else at the end."""
    previous = re.sub(r"\s*\([^()]*\)\s*$", "", previous)  # the context terms of an earlier follow-up
    for pattern in (
        # A name after "over": "over Afghanistan besproken" keeps "besproken".
        r"\b(over|about)\s+(?:(?:de|het|the)\s+)?[A-ZÀ-Ý][\w-]*(?:\s+[A-ZÀ-Ý][\w-]*)*()",
        # Otherwise the rest of the clause after "over".
        r"\b(over|about)\s+(?!\d)[^?.!,]+?([?.!]*)$",
    ):
        replaced, count = re.subn(pattern, lambda m: f"{m.group(1)} {topic}{m.group(2)}", previous, count=1)
        if count:
            return replaced
    stem = previous.rstrip("?.! ")
    mark = previous[len(stem):].strip() or "?"
    return f"{stem} over {topic}{mark}"


def _content_words(text: str) -> list[str]:
    """The words that carry a question's topic, in order, once each."""
    seen: set[str] = set()
    words = []
    for word in _WORD.findall(text):
        folded = fold(word).strip("’'-")
        if len(folded) < 2 or folded in seen or folded in _STOPWORDS or folded in QUESTION_WORDS or folded in _POINTING_ADVERBS or folded in _PRONOUNS:
            continue
        seen.add(folded)
        words.append(word.strip("’'-"))
    return words


def _bounded(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most].rsplit(" ", 1)[0]
