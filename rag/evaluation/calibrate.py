"""Abstention, calibrated on the dev split: the thresholds that refuse the most unanswerable questions while
wrongly refusing few answerable ones, stored per model."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.answer.extractive import Calibration, abstains, score_sentences, weigh_evidence
from rag.language import is_english
from rag.errors import InputError
from rag.evaluation.dataset import EvalQuestion
from rag.search.retrieval import allowed_rows


def calibrate(pipeline, questions: Sequence[EvalQuestion], most_false_abstentions: float = 0.02):
    """The abstention thresholds that refuse the most unanswerable dev questions while wrongly refusing at
    most `most_false_abstentions` of the answerable ones; dev questions only, never the test split. With a learned
    scorer, a threshold on its P(answerable) for Dutch questions and one for English ones, the unanswerable being the dev split's unanswerable and off-topic
    questions and every answerable one asked again without its own letters."""
    if any(question.split != "dev" for question in questions):
        raise InputError("calibrate on the dev split only: the test split is reported, never tuned on")
    measured = []
    for question in questions:
        query = pipeline.query(question.question, history=question.context)
        measured.append((bool(question.gold), _evidence(pipeline, query), is_english(query.text)))
        if question.gold and pipeline.scorer is not None:
            without = replace(query, filters=replace(query.filters, without=tuple({d for d, _e in question.gold})))
            measured.append((False, _evidence(pipeline, without), is_english(query.text)))
    if pipeline.scorer is not None:
        # One threshold for Dutch questions and one for English ones, each fitted on its own questions.
        dutch = _learned_threshold([(g, e) for g, e, en in measured if not en], most_false_abstentions)
        english = _learned_threshold([(g, e) for g, e, en in measured if en], most_false_abstentions)
        calibration = Calibration(0.0, 0.0, answerable=dutch, answerable_english=english)
        refused = [(gold, abstains(evidence, calibration, en)) for gold, evidence, en in measured]
        return calibration, _rates(refused)
    best = None
    for weak in np.arange(0.70, 0.92, 0.0025):
        for share in np.arange(0.0, 1.0001, 0.05):
            calibration = Calibration(round(float(weak), 4), round(float(share), 2))
            refused = [(gold, abstains(evidence, calibration, english)) for gold, evidence, english in measured]
            rates = _rates(refused)
            key = (rates["false_abstention"] <= most_false_abstentions,
                   rates["abstention_unanswerable"] - rates["false_abstention"], -rates["false_abstention"])
            if best is None or key > best[0]:
                best = (key, calibration, rates)
    return best[1], best[2]


def _learned_threshold(measured: list[tuple[bool, object]], most_false_abstentions: float) -> float | None:
    """The P(answerable) threshold, just above one of the measured ones, that refuses the most unanswerable
    questions within the budget of wrongly refused answerable ones; None without questions to fit on."""
    if not any(gold for gold, _e in measured) or all(gold for gold, _e in measured):
        return None
    best = None
    for threshold in sorted({round(float(evidence.answerable) + 1e-4, 4) for _g, evidence in measured}):
        rates = _rates([(gold, evidence.answerable < threshold) for gold, evidence in measured])
        false, caught = rates["false_abstention"], rates["abstention_unanswerable"]
        key = (false <= most_false_abstentions, caught - false, -false)
        if best is None or key > best[0]:
            best = (key, threshold)
    return best[1]


def _rates(refused: list[tuple[bool, bool]]) -> dict[str, float]:
    answerable = sum(gold for gold, _r in refused) or 1
    unanswerable = sum(not gold for gold, _r in refused) or 1
    return {"false_abstention": round(sum(gold and r for gold, r in refused) / answerable, 4),
            "abstention_unanswerable": round(sum(not gold and r for gold, r in refused) / unanswerable, 4)}


def _evidence(pipeline, query):
    vector = pipeline.embedder.encode_queries([query.text])[0]
    hits = pipeline.search_query(query, k=6)
    allowed = allowed_rows(pipeline.generation, query.filters) if query.filters.active else None
    scored = score_sentences(query.text, hits, pipeline.generation, vector, pipeline.settings.answer, pipeline.scorer)
    return weigh_evidence(query.text, scored, pipeline.generation, vector, pipeline.scorer, allowed)


def write_calibration(model_name: str, calibration, path: Path) -> None:
    stored = json.loads(path.read_text()) if path.exists() else {}
    previous = stored.get(model_name, {})
    stored[model_name] = {**previous, "fitted_on": "eval/questions.jsonl, dev split", "date": time.strftime("%Y-%m-%d")}
    if calibration.answerable is not None:
        stored[model_name]["answerable"] = calibration.answerable
        stored[model_name]["answerable_english"] = calibration.answerable_english
    else:
        stored[model_name].update(weak_evidence=calibration.weak_evidence, key_terms=calibration.key_terms)
    path.write_text(json.dumps(stored, indent=2) + "\n")
