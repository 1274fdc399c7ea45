"""Conversations: which questions are follow-ups, how they are read, and that the work per turn is bounded."""

from __future__ import annotations

import re

import pytest

from rag.settings import RetrievalSettings
from rag.search.conversation import Conversation, is_follow_up

CHINA = "Wat zei Nederland over China?"


@pytest.mark.parametrize("question, previous, resolved", [
    ("En over Rusland?", CHINA, "Wat zei Nederland over Rusland?"),
    ("Hoe zit het met Turkije?", CHINA, "Wat zei Nederland over Turkije?"),
    ("What about Russia?", "What did the ministers agree about Afghanistan?", "What did the ministers agree about Russia?"),
    ("En over China?", "Wat werd er in december 2020 over Afghanistan besproken?",
     "Wat werd er in december 2020 over China besproken?"),
    # No "over" in the previous question: the new topic is added to it.
    ("En over Afghanistan?", "Welke afspraken maakten de ministers in december 2020?",
     "Welke afspraken maakten de ministers in december 2020 over Afghanistan?"),
    # A question of its own that leans on the previous topic borrows its key terms, not its whole text.
    ("En wie zijn de voorzitters?", "Welke Nederlander zit in de reflectiegroep?",
     "En wie zijn de voorzitters? (Nederlander zit reflectiegroep)"),
    ("Wat vond hij daarvan?", CHINA, "Wat vond hij daarvan? (Nederland China)"),
    ("Wanneer gebeurde dat?", "Welke afspraken maakten de ministers over Irak?",
     "Wanneer gebeurde dat? (afspraken maakten ministers Irak)"),
    ("Wie?", CHINA, "Wie? (Nederland China)"),
])
def test_follow_ups_are_read_against_the_previous_turn(question, previous, resolved):
    conversation = Conversation.from_questions([previous])
    turn = conversation.resolve(question)
    assert turn.resolved == resolved and turn.is_follow_up


# Complete questions of the shapes people type after a first question: possessives, "Maar ...", "Ook ...",
# a pronoun whose person the question names itself, "dat" as a conjunction, "die" as a relative, "het" as an article.
STANDALONE = [
    "Wie is Stoltenberg?", "Wat zei Nederland over Rusland?", "Wanneer loopt het New START verdrag af?",
    "Welke landen steunden het voorstel?", "Hoeveel projecten zijn er?", "What did the ministers agree about Iraq?",
    "Wat vindt Nederland van dat verdrag over kernwapens?",
    "Welke landen verhoogden hun defensie-uitgaven?", "Wat schreef de minister over haar bezoek aan Brussel?",
    "Maar wat is het standpunt van het kabinet over Afghanistan?", "Ook gesprekken met Rusland over wapenbeheersing?",
    "Wat zei de minister toen zij in Brussel was?", "Is het waar dat Nederland meer uitgeeft aan defensie?",
    "Welke bondgenoten verhoogden hun bijdrage aan de NAVO?", "Wanneer is de NAVO-top in Madrid?",
    "Hoe staat Nederland tegenover de toetreding van Zweden?", "Welke landen die lid zijn van de EU steunen het plan?",
    "Maar welke rol speelt Turkije in de Zwarte Zee?", "Ook de staatssecretaris sprak over haar plannen voor de kinderopvang?",
    "Wat kost het nieuwe stelsel?", "What do the allies say about their defence spending?",
    "Welke maatregelen nam het kabinet tegen witwassen?", "Hoe groot is het tekort bij de kustwacht?",
    "Wat vond Duitsland van het voorstel?", "But what did the minister say about her visit to Kyiv?",
]
# Real leaning: an opening "En"/"Wat dan met", a pointing adverb, a pronoun or "dat"/"dit" with nothing to stand
# for in the question itself, an elliptic question.
FOLLOW_UPS = [
    "En over Rusland?", "Wat vond hij daarvan?", "Wanneer gebeurde dat?", "Wie?", "Waarom dan?", "Wat dan met Turkije?",
    "Hoe zit het met China?", "Wat betekent dit voor Nederland?", "Wat zeiden de andere bondgenoten daarover?",
    "En Duitsland?", "What about Russia?", "Wat vond zij ervan?", "Welke landen steunen dat?", "Hoeveel kost het?",
]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@pytest.mark.parametrize("question", FOLLOW_UPS)
def test_real_leaning_takes_the_previous_turn(question):
    turn = Conversation.from_questions([CHINA]).resolve(question)
    assert is_follow_up(question) and turn.is_follow_up
    # Read with the previous question: its subject or its topic, a word the follow-up itself does not have.
    carried = _words(turn.resolved) - _words(question)
    assert carried & {"nederland", "china"}, turn.resolved


@pytest.mark.parametrize("question", STANDALONE)
def test_complete_questions_stand_alone_however_short(question):
    assert not is_follow_up(question)
    turn = Conversation.from_questions([CHINA]).resolve(question)
    assert turn.resolved == question and not turn.is_follow_up


def test_first_question_is_never_a_follow_up():
    assert Conversation().resolve("En over Rusland?").resolved == "En over Rusland?"


def test_chained_follow_ups_read_one_link_at_a_time():
    conversation = Conversation.from_questions([CHINA, "En over Rusland?"])
    assert conversation.turns[-1].resolved == "Wat zei Nederland over Rusland?"
    assert conversation.resolve("En over Turkije?").resolved == "Wat zei Nederland over Turkije?"


def test_long_histories_cost_a_bounded_amount_of_work(monkeypatch):
    calls = []
    resolve = Conversation.resolve
    monkeypatch.setattr(Conversation, "resolve", lambda self, question: calls.append(question) or resolve(self, question))
    history = [CHINA] + ["En over Rusland?", "Wat vond hij daarvan?", "Wie?"] * 400
    conversation = Conversation.from_questions(history)
    assert len(calls) == RetrievalSettings.max_turns and len(conversation.turns) == RetrievalSettings.max_turns
    turn = conversation.resolve("En wat zei hij daarover?")
    assert len(turn.resolved) <= RetrievalSettings.max_question_chars and len(turn.resolved.split()) <= 20


def test_resolved_text_stays_under_the_question_limit():
    long_question = "Wat zei Nederland over " + " ".join(f"Land{n}" for n in range(300)) + "?"
    conversation = Conversation.from_questions([long_question, "Wat vond hij daarvan?"])
    assert all(len(turn.resolved) <= RetrievalSettings.max_question_chars for turn in conversation.turns)


def test_client_history_in_any_shape_is_read_as_text():
    from rag.search.conversation import asked_questions, message_text

    assert message_text("Wat zei Nederland over China?") == CHINA
    assert message_text([{"type": "text", "text": "Wat zei Nederland"}, {"type": "text", "text": "over China?"}]) == CHINA
    assert message_text({"text": CHINA, "files": []}) == CHINA
    assert message_text(None) == ""
    history = [{"role": "user", "content": [{"type": "text", "text": CHINA}]},
               {"role": "assistant", "content": [{"type": "text", "text": "Volgens de brieven: ..."}]}]
    assert asked_questions(history) == [CHINA]
