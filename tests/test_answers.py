"""Hybrid retrieval details and extractive answers on the real index and model."""

from __future__ import annotations

import json

import pytest

from rag.answer.extractive import ABSTAIN_NL
from rag.index.chunking import split_sentences
from rag.search.retrieval import Filters

from conftest import run_rag

pytestmark = pytest.mark.slow


def test_every_citation_of_the_eval_answers_is_verbatim(eval_pipeline, eval_report):
    for row in eval_report["per_question"]:
        for citation in row["citations"]:
            letter = eval_pipeline.generation.documents[citation["doc_id"]].text
            assert citation["text"] == letter[citation["start"]:citation["end"]]
            assert citation["passage_start"] <= citation["start"] < citation["end"] <= citation["passage_end"]
            assert f"[{citation['n']}]" in row["answer"]
        assert [c["n"] for c in row["citations"]] == list(range(1, len(row["citations"]) + 1))


def test_abstention_is_dutch_and_offers_nearest_passages(pipeline):
    answer = pipeline.ask("Wat zei Nederland over de stikstofcrisis?")
    assert answer.abstained and answer.text == ABSTAIN_NL and not answer.citations
    assert answer.related


def test_china_answer_quotes_the_netherlands_position(pipeline):
    answer = pipeline.ask("Wat zei Nederland over China?")
    assert not answer.abstained
    assert any("Nederland aan China als uitdaging te zien" in c.quote for c in answer.citations)
    assert answer.text.startswith("Volgens de brieven:")


def test_english_question_gets_english_connecting_words(pipeline):
    answer = pipeline.ask("What did the ministers agree about Afghanistan?")
    assert answer.text.startswith("According to the letters:")
    assert sum("Afghanistan" in c.hit.section for c in answer.citations) >= 2


def test_filters_apply_before_ranking(pipeline):
    hits = pipeline.search("Wat zei Nederland over China?", k=5, filters=Filters(doc_ids=("000_cee59b6ea59e1ee0",)))
    assert len(hits) == 5 and {h.doc_id for h in hits} == {"000_cee59b6ea59e1ee0"}
    dated = pipeline.search("Afghanistan", k=3, filters=Filters(since="2021-01-01", until="2021-12-31"))
    assert dated and all(h.date.startswith("2021") for h in dated)


def test_named_time_restricts_the_letters(pipeline):
    query = pipeline.query("Wat zei Nederland in maart 2021 over Rusland?")
    assert query.filters.since == "2021-03-01" and query.filters.until == "2021-03-31"
    hits = pipeline.search_query(query)
    assert hits[0].doc_id == "000_cee59b6ea59e1ee0"
    # Besides the letter of March 2021, only letters whose date is a guess (a day without a year) may stand in.
    assert all(h.doc_id == "000_cee59b6ea59e1ee0" or not pipeline.generation.letter(h.doc_id).date_sure for h in hits)
    latest = pipeline.query("Wat staat er in de laatste brief over Afghanistan?")
    assert latest.pick == "latest"
    assert {h.doc_id for h in pipeline.search_query(latest)} == {"002_0eaa6607556f058b"}  # the latest about Afghanistan


def test_follow_up_is_answered_about_its_own_topic(pipeline):
    answer = pipeline.ask("En over Rusland?", history=["Wat zei Nederland over China?"])
    assert answer.question == "En over Rusland?" and "gelezen als vervolgvraag: Wat zei Nederland over Rusland?" in answer.notes
    assert answer.citations and all("Rusland" in c.hit.text for c in answer.citations)
    assert not any("China" in c.quote for c in answer.citations)
    standalone = pipeline.ask("Wat zei Nederland over China?", history=["Wat zei Nederland over Rusland?"])
    assert not any(note.startswith("gelezen als") for note in standalone.notes)


def test_hits_are_passages_of_citation_size(pipeline):
    from rag.index.chunking import ChunkSettings

    for question in ("Wat zei Nederland over China?", "Wat is de Nederlandse inzet in Afghanistan?"):
        hits = pipeline.search(question, k=5)
        assert all(len(hit.text) <= ChunkSettings().max_chars for hit in hits)
        assert all(hit.text == pipeline.generation.documents[hit.doc_id].text[hit.start:hit.end] for hit in hits)


def test_a_quote_leaning_on_the_sentence_before_brings_it_along(pipeline):
    # The answering sentence opens "Nederland wees daarbij ...": it is quoted with the sentence it leans on.
    answer = pipeline.ask("Op welke activiteiten van China wees Nederland?")
    leaning = [c.quote for c in answer.citations if "Nederland wees daarbij" in c.quote]
    assert leaning, [c.quote for c in answer.citations]
    assert leaning[0].startswith("Net als veel andere Bondgenoten gaf Nederland aan China als uitdaging te zien.")


def test_a_position_across_letters_reads_as_a_timeline(pipeline):
    answer = pipeline.ask("Wat zei Nederland over Rusland?")
    letters = [c.hit.doc_id for c in answer.citations]
    assert len(set(letters)) >= 2
    dates = [c.hit.date for c in answer.citations]
    assert dates == sorted(dates)


def test_sentences_are_not_split_after_abbreviations():
    text = "Een groot aantal bondgenoten (o.a. NL) pleitte hiervoor. De Minister, S.A. Blok, tekende. Klaar."
    sentences = [text[s:e] for s, e in split_sentences(text)]
    assert sentences == ["Een groot aantal bondgenoten (o.a. NL) pleitte hiervoor.", "De Minister, S.A. Blok, tekende.", "Klaar."]


def test_ask_and_show_on_the_command_line(seed_index_dir):
    result = run_rag("ask", "--json", "--index", str(seed_index_dir), input="Wat zei Nederland over China?\nWat vond de minister van Justitie van de politiehervorming?\n")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert set(first) >= {"question", "answer", "abstained", "citations"}
    assert not first["abstained"] and first["citations"][0]["n"] == 1
    assert {"rank", "score", "chunk_id", "doc_id", "title", "date", "section", "text", "start", "end", "source"} <= set(first["citations"][0])
    assert second["abstained"] and "geen antwoord in de brieven" in second["answer"]
    citation = first["citations"][0]
    shown = run_rag("show", "--json", "--index", str(seed_index_dir), f"{citation['doc_id']}:{citation['start']}-{citation['end']}")
    assert shown.returncode == 0 and json.loads(shown.stdout)["passage"] == citation["text"]
    by_chunk = run_rag("show", "--index", str(seed_index_dir), citation["chunk_id"])
    assert by_chunk.returncode == 0 and citation["title"] in by_chunk.stdout
    outside = run_rag("show", "--index", str(seed_index_dir), f"{citation['doc_id']}:0-99999999")
    assert outside.returncode == 2 and "outside" in outside.stderr


def test_a_question_after_a_reason_quotes_the_sentence_that_gives_it(eval_pipeline, eval_questions):
    """"Waarom ...?" is answered by the sentence that gives a reason ("omdat", "vanwege", "wijt ... aan"), in other
    words than the question's, not by the sentence that repeats its topic (dev questions): it is the sentence the
    answer ranks first, and the answer quotes it. Citations are numbered in the letter's order, so [1] may be a
    sentence before it."""
    from rag.answer.extractive import score_sentences
    from rag.evaluation.dataset import evidence_spans
    from rag.evaluation.metrics import quotes_evidence

    texts = {doc_id: document.text for doc_id, document in eval_pipeline.generation.documents.items()}
    asked = {question.id: question for question in eval_questions}
    for question_id in ("x095", "p042", "p152", "p217", "p268", "p436"):
        question = asked[question_id]
        gold = evidence_spans(question, texts)
        answer = eval_pipeline.ask(question.question)
        assert not answer.abstained and any(quotes_evidence((c.hit.doc_id, c.start, c.end), span)
                                            for c in answer.citations for span in gold), question.question
        query = eval_pipeline.query(question.question)
        ranked = score_sentences(query.text, eval_pipeline.search_query(query, k=6), eval_pipeline.generation,
                                 eval_pipeline.embedder.encode_queries([query.text])[0], eval_pipeline.settings.answer,
                                 eval_pipeline.scorer)
        best = ranked[0]
        assert any(quotes_evidence((best.hit.doc_id, best.start, best.end), span) for span in gold), \
            (question.question, texts[best.hit.doc_id][best.start:best.end])
