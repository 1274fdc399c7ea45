"""Conversations: which questions are follow-ups, how they are read, and that the work per turn is bounded."""

from __future__ import annotations

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


@pytest.mark.parametrize("question", [
    "Wie is Stoltenberg?", "Wat zei Nederland over Rusland?", "Wanneer loopt het New START verdrag af?",
    "Welke landen steunden het voorstel?", "Hoeveel projecten zijn er?", "What did the ministers agree about Iraq?",
    "Wat vindt Nederland van dat verdrag over kernwapens?",
])
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
