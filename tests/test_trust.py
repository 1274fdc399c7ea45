"""Answers users can trust: the learned scorer, its training on answers to Kamervragen, abstention when the letters
do not answer (off topic, near topic, a question's own letters left out), and the trust table of the eval."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rag.answer.extractive import ABSTAIN_EN, ABSTAIN_NL
from rag.answer.training import corpus_letters, qa_pairs
from rag.evaluation.runner import trust_table
from rag.readers.document import read_document

KAMERVRAGEN = Path(__file__).parent / "data" / "kamervragen-sample.jsonl.gz"  # 61 documents of the corpus


def _pairs(tmp_path) -> dict[str, list[tuple[str, str]]]:
    pairs = {}
    for path in corpus_letters(KAMERVRAGEN, tmp_path, None):
        document = read_document(path)
        pairs[document.text] = [(question, document.text[start:end]) for question, start, end in qa_pairs(document)]
    return pairs


def test_answers_to_kamervragen_become_question_answer_pairs(tmp_path):
    pairs = _pairs(tmp_path)
    found = [pair for found in pairs.values() for pair in found]
    assert len(pairs) == 60 and len(found) >= 60  # the document that holds questions but no answer is not a letter
    by_question = dict(found)
    # 1968, "ANTWOORD van de heer De Jong ... (Ingezonden 3 oktober 1968.)": the whole answer to the one question.
    biafra = next(answer for question, answer in found if "Biafraanse kinderen" in question)
    assert biafra.strip().startswith("Een via het Rode Kruis gedaan verzoek") and "medische indicatie" in biafra
    assert "ANTWOORD" not in biafra
    # 1920, numbered: the answer to question 1 is answer 1 alone (question 2 lost its "?" to OCR and is left out).
    boycot = [answer for question, answer in found if "boycot" in question]
    assert [answer.strip() for answer in boycot] == ["Het antwoord op deze vraag luidt ontkennend."]
    assert all(question.endswith("?") for question in by_question)  # a memorandum's prose is no question
    assert not any(question.startswith(("1.", "2.", "(Ingezonden")) for question in by_question)


def test_the_trust_table_counts_the_four_outcomes():
    rows = [
        {"answerable": True, "abstained": False, "answer_metrics": {"quotes_gold": 1.0}},
        {"answerable": True, "abstained": False, "answer_metrics": {"quotes_gold": 0.0}},
        {"answerable": False, "abstained": False},
        {"answerable": True, "abstained": True, "answer_metrics": {"quotes_gold": 0.0}},
        {"answerable": False, "abstained": True},
    ]
    assert trust_table(rows) == {"answered_right": 0.2, "answered_wrong": 0.4, "abstained_right": 0.2,
                                 "abstained_wrong": 0.2}


@pytest.mark.slow
def test_a_question_no_letter_answers_abstains_naming_the_missing_word(pipeline):
    answer = pipeline.ask("Wat is het standpunt van Nederland over de Arctische regio?")
    assert answer.abstained and answer.text == ABSTAIN_NL and not answer.citations
    assert "'Arctische' komt in geen enkele brief voor" in answer.notes
    assert answer.related and all(hit.section != "Voetnoten" for hit in answer.related)
    english = pipeline.ask("What is the Dutch position on the Arctic region?")
    assert english.abstained and english.text == ABSTAIN_EN
    for question in ("Hoe maak ik pannenkoeken?", "Who won the football world cup in 1974?"):
        assert pipeline.ask(question).abstained, question


@pytest.mark.slow
def test_a_verb_the_letters_hold_in_another_form_is_not_a_missing_word(pipeline):
    """The Dutch stemmer keeps "verhoogt" apart from "verhogen" and "verhoging" (verhog), which the seed letters hold:
    it is not named as a word no letter holds, nor counted against the letters; a word they lack still is."""
    evidence = pipeline.evidence(pipeline.query("Waarom verhoogt Nederland de defensie-uitgaven?"))
    assert evidence.absent == ()
    fishing = pipeline.evidence(pipeline.query("Hoeveel vissers kregen een sloopregeling in 2021?"))
    assert "sloopregeling" in fishing.absent


@pytest.mark.slow
def test_a_position_across_letters_still_answers_with_one_quote_per_letter(pipeline):
    answer = pipeline.ask("Wat zei Nederland over China?")
    assert not answer.abstained
    letters = [citation.hit.doc_id for citation in answer.citations]
    assert len(letters) >= 2 and len(set(letters)) == len(letters)
    assert all("China" in citation.hit.section or "China" in citation.quote for citation in answer.citations)


@pytest.mark.slow
def test_questions_abstain_once_their_own_letters_are_left_out(pipeline):
    """The seed questions about one letter: answered with it, refused without it, where they ask what the other
    letters do not say."""
    asked = {"Welke opdrachten kreeg SACEUR vanwege de COVID-19 uitbraak?": "003_2b3a2a813bb728d5",
             "Wie bezocht op 16 mei de Nederlandse militairen in Mazar-e-Sharif?": "002_0eaa6607556f058b",
             "Wat zei Nederland over het Open Skies verdrag?": "003_2b3a2a813bb728d5"}
    for question, letter in asked.items():
        query = pipeline.query(question)
        assert not query.filters.active  # no named time: leaving the letter out is what refuses it
        answered = pipeline.answer_query(query)
        assert not answered.abstained and {c.hit.doc_id for c in answered.citations} == {letter}, question
        without = pipeline.answer_query(replace(query, filters=replace(query.filters, without=(letter,))))
        assert without.abstained and not without.citations, question
        assert all(hit.doc_id != letter for hit in without.related)


@pytest.mark.slow
def test_the_eval_measures_trust_and_the_scorer_keeps_it(eval_report):
    """On the test split (the thresholds were chosen on dev): every off-topic question refused, most questions asked
    without their own letters refused, few answerable ones refused, and most answered with a quote of their evidence.
    The bounds are what was measured when the thresholds were last fitted, less a margin (README: Evaluation)."""
    groups = eval_report["groups"]
    assert groups["offtopic/test"]["abstention_unanswerable"] == 1.0
    assert groups["all/test"]["abstention_without_its_letters"] >= 0.45
    assert groups["all/test"]["false_abstention"] <= 0.15
    assert groups["all/test"]["answered_right"] >= 0.5
    # The per-question records add up to the group's figure: each answerable question was asked again without its
    # letters, and abstaining then was recorded for it.
    rows = [row for row in eval_report["per_question"] if row["answerable"]]
    share = sum(row["abstained_without_its_letters"] for row in rows) / len(rows)
    assert share == pytest.approx(groups["all/test"]["abstention_without_its_letters"], abs=1e-3)
    assert 0 < sum(row["abstained_without_its_letters"] for row in rows) < len(rows)


@pytest.mark.slow
def test_rag_train_writes_weights_with_their_data_and_held_out_quality(tmp_path, settings):
    """A quick run (twelve training letters, the corpus sample): weights, the data they came from, held-out quality."""
    from rag.answer.scorer import LearnedScorer
    from rag.embed.model import load_embedder
    from rag.evaluation.train import train_answer_scorer

    scorer_file = tmp_path / "scorer.json"
    committed = settings.answer.scorer_file.read_bytes()
    trained = replace(settings, answer=replace(settings.answer, scorer_file=scorer_file))
    record = train_answer_scorer(trained, tmp_path / "work", KAMERVRAGEN, letters_limit=12, progress=lambda line: None)
    key = load_embedder(settings.model).question_encoder
    stored = json.loads(scorer_file.read_text())[key]
    assert stored == json.loads(json.dumps(record))
    assert len(stored["data_sha256"]) == 64 and stored["trained_on"]["pairs"] >= 60
    assert stored["trained_on"]["training_letters"] == 12 and stored["trained_on"]["training_questions"] >= 50
    # On letters it never saw, the answerable model tells a question its letters answer from one they do not.
    assert stored["metrics_held_out"]["answerable_auc"] >= 0.75
    assert LearnedScorer.for_model(key, scorer_file) is not None
    assert settings.answer.scorer_file.read_bytes() == committed  # training wrote where it was told, nothing else
