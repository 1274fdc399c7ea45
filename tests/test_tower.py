"""The question tower: what is committed, that serving runs the tuned encoder (on ONNX Runtime, the updates merged
into the package's weights), and that `rag train` fits one from questions and their answers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import seed_questions_with_evidence

from rag.embed.tower import read_updates, tower_id
from rag.settings import PROJECT_ROOT, TRAINING_DATA

pytestmark = pytest.mark.slow
TOWER = PROJECT_ROOT / "rag" / "embed" / "question_tower.npz"


def test_the_committed_tower_is_small_and_says_what_it_was_trained_on_and_how_it_did():
    from rag.evaluation.train import _training_data_hash

    assert TOWER.stat().st_size < 5 * 2**20  # the updates alone; the rest is rebuilt from the package weights
    updates, record = read_updates(TOWER)
    assert record["data_sha256"] == _training_data_hash(), "retrain the tower: `rag train --only tower`"
    assert record["examples"] >= 400 and record["dev_examples"] >= 150
    before, best = record["dev_before"], record["dev_best"]
    assert best["sentence_top1"] > before["sentence_top1"] and best["passage_hit5"] > before["passage_hit5"]
    assert best["answerable_auc"] > before["answerable_auc"]
    assert {name.rsplit(".", 1)[-1] for name in updates} == {"a", "b"} and len(updates) == 12 * 6 * 2


def test_questions_go_through_the_tower_and_passages_through_the_plain_model(embedder, settings):
    from rag.embed.model import load_embedder

    assert embedder.tower == tower_id(TOWER) and embedder.question_encoder.endswith(f"+tower-{embedder.tower}")
    plain = load_embedder(replace(settings.model, question_tower=False))
    assert plain.tower is None and plain.question_encoder == settings.model.name
    questions = ["Hoeveel scholen deden mee aan de proef met gratis schoolmaaltijden?",
                 "What did the minister say about Russia?"]
    tuned, base = embedder.encode_queries(questions), plain.encode_queries(questions)
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-4)
    cosine = (tuned * base).sum(axis=1)
    assert (cosine < 0.999).all() and (cosine > 0.8).all()  # moved, from where the plain model put them
    passage = ["De minister sprak over de Russische dreiging en de inzet van de NAVO aan de oostflank."]
    assert np.allclose(embedder.encode_passages(passage).vectors, plain.encode_passages(passage).vectors, atol=1e-5)


def test_rag_train_fits_a_tower_that_moves_questions_toward_their_answers(tmp_path, pipeline, settings):
    """A short fit on the seed letters: the record, and a question now nearer the sentence that answers it."""
    from rag.embed.model import load_embedder, resolve_model
    from rag.embed.tower import write_updates
    from rag.embed.tower_training import TowerData, train_tower
    from rag.evaluation.train import tower_data, with_unanswerable

    asked = seed_questions_with_evidence(pipeline)
    assert len(asked) == 2
    plain = replace(pipeline, embedder=replace(pipeline.embedder, question_engine=None, tower=None))
    data = tower_data(plain, with_unanswerable(asked, ["Hoeveel kost een nieuwe fregat voor de marine?"]), 20)
    examples = data.examples
    assert sum(example.answerable for example in examples) == 2 and len(examples) == 5
    quick = replace(settings.tower, epochs=2, learning_rate=1e-3, batch=5)
    updates, record = train_tower(resolve_model(settings.model), TowerData(data.passages, examples * 4), data, quick,
                                  pipeline.embedder.query_prompt,
                                  progress=lambda line: None)
    assert record["dev_best"]["sentence_top1"] >= record["dev_before"]["sentence_top1"]
    tower_file = tmp_path / "question_tower.npz"
    write_updates(tower_file, updates, {**record, "data_sha256": "test"})
    tuned = load_embedder(replace(settings.model, tower_file=tower_file))
    assert tuned.tower == tower_id(tower_file) != tower_id(TOWER)
    example = examples[0]
    sentences, gold = example.sentences.astype(np.float32), example.sentence_labels.astype(bool)

    def margin(vector) -> float:  # how far the answering sentence stands above the best of the others
        similarities = sentences @ vector
        return float(similarities[gold].max() - similarities[~gold].max())

    assert margin(tuned.encode_queries([example.question])[0]) > margin(plain.embedder.encode_queries([example.question])[0])
    assert json.loads(str(np.load(tower_file)["record"]))["rank"] == quick.rank


def test_training_data_is_where_the_tower_is_trained_from():
    assert (TRAINING_DATA / "letters.jsonl.gz").exists() and (TRAINING_DATA / "questions.jsonl").exists()
