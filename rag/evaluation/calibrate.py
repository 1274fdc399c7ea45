"""Abstention, calibrated on the dev split: the thresholds that refuse the most unanswerable questions while
wrongly refusing few answerable ones, stored per model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.answer.extractive import Calibration, abstains, score_sentences, weigh_evidence
from rag.language import is_english
from rag.errors import InputError
from rag.evaluation.dataset import EvalQuestion


def calibrate(pipeline, questions: Sequence[EvalQuestion], most_false_abstentions: float = 0.02):
    """The abstention thresholds that refuse the most unanswerable dev questions while wrongly refusing at
    most `most_false_abstentions` of the answerable ones; dev questions only, never the test split."""
    if any(question.split != "dev" for question in questions):
        raise InputError("calibrate on the dev split only: the test split is reported, never tuned on")
    measured = []
    for question in questions:
        query = pipeline.query(question.question, history=question.context)
        vector = pipeline.embedder.encode_queries([query.text])[0]
        hits = pipeline.search_query(query, k=6)
        scored = score_sentences(query.text, hits, pipeline.generation, vector, pipeline.settings.answer)
        evidence = weigh_evidence(query.text, scored, pipeline.generation)
        measured.append((bool(question.gold), evidence, is_english(query.text)))
    answerable = sum(gold for gold, _e, _en in measured) or 1
    unanswerable = sum(not gold for gold, _e, _en in measured) or 1
    best = None
    for weak in np.arange(0.70, 0.92, 0.0025):
        for share in np.arange(0.0, 1.0001, 0.05):
            calibration = Calibration(round(float(weak), 4), round(float(share), 2))
            refused = [(gold, abstains(evidence, calibration, english)) for gold, evidence, english in measured]
            false = sum(gold and refused_ for gold, refused_ in refused) / answerable
            caught = sum(not gold and refused_ for gold, refused_ in refused) / unanswerable
            key = (false <= most_false_abstentions, caught - false, -false)
            if best is None or key > best[0]:
                best = (key, calibration, false, caught)
    _key, calibration, false, caught = best
    return calibration, {"false_abstention": round(false, 4), "abstention_unanswerable": round(caught, 4)}


def write_calibration(model_name: str, calibration, path: Path) -> None:
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored[model_name] = {"weak_evidence": calibration.weak_evidence, "key_terms": calibration.key_terms,
                          "fitted_on": "eval/questions.jsonl, dev split", "date": time.strftime("%Y-%m-%d")}
    path.write_text(json.dumps(stored, indent=2) + "\n")
