"""The sentence reranker: what is committed, that serving reads each pair as training read it (on ONNX Runtime, the
updates merged into the package's first layers), that it puts the answering sentence first more often than today's
ranking, and that `rag train` fits one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import seed_questions_with_evidence

from rag.embed.reranker import PAIR_TOKENS, SentenceReranker, pair_ids, second_text
from rag.embed.tower import read_updates, tower_id
from rag.settings import RERANKER_FILE, RERANKER_ROUNDS

pytestmark = pytest.mark.slow


def test_the_committed_reranker_is_small_and_says_what_it_was_trained_on_and_how_it_did():
    from rag.evaluation.train import _training_data_hash

    assert RERANKER_FILE.stat().st_size < 2**20  # updates and head alone; the layers are rebuilt from the package weights
    arrays, record = read_updates(RERANKER_FILE)
    assert record["data_sha256"] == _training_data_hash(RERANKER_ROUNDS), "retrain: `rag train --only reranker`"
    assert record["examples"] >= 3000 and record["dev_examples"] >= 150
    assert record["dev_best"]["gold_first"] > record["dev_before"]["gold_first"]
    assert len([name for name in arrays if name.startswith("layer.")]) == record["layers"] * 6 * 2
    assert arrays["head.weight"].size == 384 and record["score_weight"] > 0


def test_serving_reads_a_pair_as_training_did(embedder):
    """The project's tokenizer, pairing question and sentence by hand, gives the ids the training's tokenizer gives."""
    from transformers import AutoTokenizer

    from rag.embed.model import resolve_model

    reference = AutoTokenizer.from_pretrained(str(resolve_model(embedder.settings)))
    tokenizer = embedder.engine.tokenizer
    question = "Hoe lang duurt de overgangstermijn voor de nieuwe regels?"
    for section, sentence in (("Inleiding", "De overgangstermijn duurt achttien maanden."),
                              ("", "Kort."),
                              ("Verslag van de bijeenkomst van de NAVO-ministers van Buitenlandse Zaken in Brussel op 23 maart",
                               "Een lange zin " * 60)):
        ours = pair_ids(tokenizer.encode(embedder.query_prompt + question)[0],
                        tokenizer.encode(second_text(section, sentence))[0], tokenizer.eos)
        theirs = reference(embedder.query_prompt + question, second_text(section, sentence), truncation="only_second",
                           max_length=PAIR_TOKENS)["input_ids"]
        assert ours == theirs and len(ours) <= PAIR_TOKENS


def test_reranking_reorders_the_best_candidates_and_loses_no_sentence(pipeline):
    from rag.answer.extractive import score_sentences
    from rag.answer.rerank import reread
    from rag.search.retrieval import Filters

    assert pipeline.reranker is not None
    query = pipeline.query("Hoeveel mensen zitten in de groep die de NAVO adviseert over haar toekomst?", Filters())
    index, vector, hits, _allowed = pipeline._retrieved(query, 6)
    today = score_sentences(query.text, hits, index, vector, pipeline.settings.answer)
    read = reread(query.text, today, pipeline.reranker)
    where = lambda sentences: [(s.hit.doc_id, s.start, s.end) for s in sentences]  # noqa: E731
    count = pipeline.reranker.candidates
    assert sorted(where(read)) == sorted(where(today))  # nothing lost, nothing added
    assert sorted(where(read[:count])) == sorted(where(today[:count])) and where(read[count:]) == where(today[count:])
    assert where(read[:count]) != where(today[:count])  # read again: another order
    assert [s.score for s in read[:count]] == sorted((s.score for s in read[:count]), reverse=True)


def test_the_reranker_quotes_the_answering_sentence_first_more_often(eval_pipeline, eval_questions):
    """On the dev questions of the eval (letters it never trained on): the sentence quoted first is the gold one more
    often with the reranker than with today's ranking alone."""
    from rag.answer.extractive import score_sentences
    from rag.answer.rerank import reread
    from rag.evaluation.dataset import locate

    texts = eval_pipeline.generation.documents
    first = {"today": 0, "read": 0}
    asked = 0
    for question in [q for q in eval_questions if q.split == "dev" and q.gold and not q.context][:200]:
        spans = [(doc_id, *found) for doc_id, evidence in question.gold
                 if doc_id in texts and (found := locate(evidence, texts[doc_id].text))]
        query = eval_pipeline.query(question.question)
        index, vector, hits, _allowed = eval_pipeline._retrieved(query, 6)
        today = score_sentences(query.text, hits, index, vector, eval_pipeline.settings.answer)
        if not spans or not today:
            continue
        read = reread(query.text, today, eval_pipeline.reranker)
        asked += 1
        for name, ranked in (("today", today), ("read", read)):
            s = ranked[0]
            first[name] += any(d == s.hit.doc_id and min(e, s.end) - max(a, s.start) >= 0.5 * min(e - a, s.end - s.start)
                               for d, a, e in spans)
    assert asked >= 150
    assert first["read"] >= first["today"] + 0.03 * asked, first


def test_rag_train_fits_a_reranker_that_puts_the_answer_first(tmp_path, pipeline, settings):
    """A short fit on two seed questions: the record, and the graph serving builds from the stored file ranks their
    answering sentence higher against the others than today's score alone does."""
    from rag.embed.model import resolve_model
    from rag.embed.reranker_training import train_reranker
    from rag.embed.tower import write_updates
    from rag.evaluation.train import reranker_examples

    asked = seed_questions_with_evidence(pipeline)
    examples = reranker_examples(pipeline, asked, 8)
    assert len(examples) == 2 and all(example.labels.any() and not example.labels.all() for example in examples)
    quick = replace(settings.reranker, layers=2, epochs=3, learning_rate=2e-3, head_learning_rate=1e-2)
    arrays, record = train_reranker(resolve_model(settings.model), examples * 3, examples, quick,
                                    pipeline.embedder.query_prompt, progress=lambda line: None)
    assert record["layers"] == 2 and record["examples"] == 6 and record["dev_best"]["epoch"] >= 1
    reranker_file = tmp_path / "sentence_reranker.npz"
    write_updates(reranker_file, arrays, {**record, "data_sha256": "test"})
    answer = replace(settings.answer, reranker_file=reranker_file)
    trained = SentenceReranker.for_embedder(pipeline.embedder, answer)
    assert tower_id(reranker_file) != tower_id(RERANKER_FILE)
    for example in examples:
        logits = trained.logits(example.question, example.sections, example.sentences)
        today = example.scores * trained.score_weight
        read = today + logits
        margin = lambda scores: scores[example.labels].max() - scores[~example.labels].max()  # noqa: E731
        assert margin(read) > margin(today)
    assert SentenceReranker.for_embedder(pipeline.embedder, replace(answer, rerank=False)) is None
