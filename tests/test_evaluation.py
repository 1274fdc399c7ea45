"""The eval set, the metric functions, and the baseline gate that stops regressions in CI."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from rag import config
from rag.evaluation import (
    compare_to_baseline, covers, evaluate, first_ranks, hit_at, ndcg_at, recall_at, reciprocal_rank,
)
from rag.retrieval import RetrievalSettings

BASELINE = config.EVAL_BASELINE


def test_every_evidence_is_found_in_its_letter(eval_questions, documents):
    for question in eval_questions:
        for doc_id, evidence in question.gold:
            assert documents[doc_id].text.count(evidence) == 1, (question.id, evidence[:60])


def test_the_set_has_the_spread_a_user_would_produce(eval_questions):
    kinds = Counter(q.kind for q in eval_questions)
    assert len(eval_questions) >= 60
    assert kinds["unanswerable"] >= 6 and all(not q.gold for q in eval_questions if q.kind == "unanswerable")
    for kind in ("fact", "stance", "paraphrase", "crosslingual", "statement", "date", "temporal", "followup"):
        assert kinds[kind] >= 3, kind
    assert sum(q.lang == "en" for q in eval_questions) >= 6
    assert any(len({d for d, _ in q.gold}) >= 3 for q in eval_questions if q.kind == "stance")
    assert len({q.id for q in eval_questions}) == len(eval_questions)


# --- metrics on hand-made cases with known values ---------------------------------------------

GOLD = [("a", 100, 200), ("b", 0, 50)]


def test_coverage_needs_the_same_letter_and_80_percent():
    assert covers(("a", 90, 190), ("a", 100, 200))  # 90 of 100 characters
    assert not covers(("a", 130, 400), ("a", 100, 200))  # 70 of 100
    assert not covers(("b", 100, 200), ("a", 100, 200))


def test_rank_based_metrics():
    hits = [("c", 0, 10), ("b", 0, 60), ("a", 50, 250)]
    ranks = first_ranks(hits, GOLD)
    assert ranks == [3, 2]
    assert hit_at(ranks, 1) == 0.0 and hit_at(ranks, 2) == 1.0
    assert recall_at(ranks, 2) == 0.5 and recall_at(ranks, 3) == 1.0
    assert reciprocal_rank(ranks) == 0.5
    assert reciprocal_rank([None, None]) == 0.0


def test_ndcg_credits_each_evidence_once():
    perfect = [("a", 100, 200), ("b", 0, 50)]
    assert ndcg_at(perfect, GOLD) == pytest.approx(1.0)
    duplicate = [("a", 100, 200), ("a", 100, 200), ("b", 0, 50)]
    ideal = 1 + 1 / 1.5849625
    assert ndcg_at(duplicate, GOLD) == pytest.approx((1 + 0.5) / ideal)
    assert ndcg_at([("z", 0, 1)], GOLD) == 0.0


def test_baseline_comparison_reports_drops_beyond_tolerance():
    baseline = {"metrics": {"hit@1": 0.7, "false_abstention": 0.05}, "tolerance": {"default": 0.03}}
    assert compare_to_baseline({"hit@1": 0.68, "false_abstention": 0.07}, baseline) == []
    drops = compare_to_baseline({"hit@1": 0.6, "false_abstention": 0.2}, baseline)
    assert len(drops) == 2 and drops[0].startswith("hit@1: 0.600 fell below")


# --- the gate on the real pipeline -------------------------------------------------------

@pytest.mark.slow
def test_default_configuration_holds_the_baseline(eval_report):
    baseline = json.loads(BASELINE.read_text())
    assert compare_to_baseline(eval_report["metrics"], baseline) == []


@pytest.mark.slow
def test_gate_fails_on_a_worse_configuration(pipeline, eval_questions):
    from rag.pipeline import Pipeline

    worse = Pipeline(pipeline.embedder, pipeline.index, pipeline.index_dir,
                     retrieval=RetrievalSettings(mode="lexical", understand_time=False))
    metrics = evaluate(worse, eval_questions, 5)["metrics"]
    drops = compare_to_baseline(metrics, json.loads(BASELINE.read_text()))
    assert any(drop.startswith(("hit@1", "mrr@10", "recall@k", "hit@k")) for drop in drops)


@pytest.mark.slow
def test_hybrid_beats_dense_only_and_lexical_only(pipeline, eval_questions, eval_report):
    from rag.pipeline import Pipeline

    for mode in ("dense", "lexical"):
        single = Pipeline(pipeline.embedder, pipeline.index, pipeline.index_dir,
                          retrieval=RetrievalSettings(mode=mode, understand_time=False))
        metrics = evaluate(single, eval_questions, 5)["metrics"]
        assert eval_report["metrics"]["mrr@10"] > metrics["mrr@10"], mode
        assert eval_report["metrics"]["recall@k"] > metrics["recall@k"], mode
