"""Abstention, calibrated on the dev split: with a learned scorer, the decision model that sets its P(answerable)
beside the sentence quoted first, then the thresholds that refuse the most unanswerable questions while wrongly
refusing few answerable ones; stored per question encoder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.answer.extractive import Calibration, abstains, decision_row
from rag.answer.scorer import DECISION_FEATURES, LogisticModel, without_retired_towers
from rag.language import is_english
from rag.errors import InputError
from rag.evaluation.dataset import EvalQuestion


def calibrate(pipeline, questions: Sequence[EvalQuestion], most_false_abstentions: float = 0.02, decision_l2: float = 10.0):
    """The abstention thresholds that refuse the most unanswerable dev questions while wrongly refusing at
    most `most_false_abstentions` of the answerable ones; dev questions only, never the test split. With a learned
    scorer, a threshold on its P(answerable) for Dutch questions and one for English ones, the unanswerable being the dev split's unanswerable and off-topic
    questions and every answerable one asked again without its own letters. The thresholds are on the P of a decision
    model (`scorer.DECISION_FEATURES`, L2 `decision_l2`) fitted on the same questions, Dutch and English together."""
    if any(question.split != "dev" for question in questions):
        raise InputError("calibrate on the dev split only: the test split is reported, never tuned on")
    measured = []
    for question in questions:
        query = pipeline.query(question.question, history=question.context)
        measured.append((bool(question.gold), pipeline.evidence(query), is_english(query.text)))
        if question.gold and pipeline.scorer is not None:
            without = query.without_letters(doc_id for doc_id, _evidence in question.gold)
            measured.append((False, pipeline.evidence(without), is_english(query.text)))

    def refusals(calibration: Calibration) -> list[tuple[bool, bool]]:
        return [(gold, abstains(evidence, calibration, english)) for gold, evidence, english in measured]

    if pipeline.scorer is not None:
        rows = np.array([decision_row(evidence) for _g, evidence, _en in measured])
        decision = LogisticModel.fit(rows, np.array([gold for gold, _e, _en in measured]), DECISION_FEATURES, l2=decision_l2)
        decided = [(gold, float(p), english) for (gold, _e, english), p in zip(measured, decision.probability(rows))]
        # One threshold for Dutch questions and one for English ones, each fitted on its own questions.
        dutch = _learned_threshold([(g, p) for g, p, en in decided if not en], most_false_abstentions)
        english = _learned_threshold([(g, p) for g, p, en in decided if en], most_false_abstentions)
        calibration = Calibration(0.0, 0.0, answerable=dutch, answerable_english=english, decision=decision)
    else:
        grid = [Calibration(round(float(weak), 4), round(float(share), 2))
                for weak in np.arange(0.70, 0.92, 0.0025) for share in np.arange(0.0, 1.0001, 0.05)]
        calibration = _chosen(grid, refusals, most_false_abstentions)
    return calibration, _rates(refusals(calibration))


def _learned_threshold(measured: list[tuple[bool, float]], most_false_abstentions: float) -> float | None:
    """The P(answerable) threshold, just above one of the measured ones, that refuses the most unanswerable
    questions within the budget of wrongly refused answerable ones; None without questions to fit on."""
    if not any(gold for gold, _p in measured) or all(gold for gold, _p in measured):
        return None
    thresholds = sorted({round(p + 1e-4, 4) for _g, p in measured})
    return _chosen(thresholds, lambda threshold: [(gold, p < threshold) for gold, p in measured], most_false_abstentions)


def _chosen(candidates: list, refusals, most_false_abstentions: float):
    """The candidate whose refusals ((answerable, refused) per question) stay within the budget of wrongly refused
    answerable questions and refuse the most unanswerable ones beyond that; the first of equals."""
    def preference(candidate) -> tuple[bool, float, float]:
        rates = _rates(refusals(candidate))
        false = rates["false_abstention"]
        return false <= most_false_abstentions, rates["abstention_unanswerable"] - false, -false
    return max(candidates, key=preference)


def _rates(refused: list[tuple[bool, bool]]) -> dict[str, float]:
    answerable = sum(gold for gold, _r in refused) or 1
    unanswerable = sum(not gold for gold, _r in refused) or 1
    return {"false_abstention": round(sum(gold and r for gold, r in refused) / answerable, 4),
            "abstention_unanswerable": round(sum(not gold and r for gold, r in refused) / unanswerable, 4)}


def write_calibration(model_name: str, calibration, path: Path) -> None:
    stored = without_retired_towers(json.loads(path.read_text()) if path.exists() else {}, model_name)
    previous = stored.get(model_name, {})
    stored[model_name] = {**previous, "fitted_on": "eval/questions.jsonl, dev split", "date": time.strftime("%Y-%m-%d")}
    if calibration.answerable is not None:
        stored[model_name]["answerable"] = calibration.answerable
        stored[model_name]["answerable_english"] = calibration.answerable_english
        if calibration.decision is not None:
            stored[model_name]["decision"] = calibration.decision.as_json()
    else:
        stored[model_name].update(weak_evidence=calibration.weak_evidence, key_terms=calibration.key_terms)
    path.write_text(json.dumps(stored, indent=2) + "\n")
