"""Running the eval: a pipeline configuration over the questions, metrics per corpus, split and kind, and the
baseline gate that fails a change when a metric moves the wrong way."""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path
from statistics import mean
from typing import Sequence

from rag.embed.model import load_embedder
from rag.errors import InputError
from rag.evaluation.compare import configurations
from rag.evaluation.dataset import SPLITS, EvalQuestion, evidence_spans
from rag.evaluation.metrics import (ANSWERS, CITATION_LIMIT, DEPTH, LOWER_IS_BETTER, RETRIEVAL, answer_metrics, average,
                                    first_ranks, question_metrics)
from rag.evaluation.reports import table, write_chart, write_trec
from rag.index.ingest import UPLOADS
from rag.index.store import load_index
from rag.readers.corpus import corpus_letters
from rag.serve.pipeline import Pipeline, run_ingest
from rag.settings import EVAL_FOLDERS, EVAL_INDEX, EvaluationSettings, Settings

log = logging.getLogger("rag.evaluation")
MIN_KIND = EvaluationSettings.min_kind  # a kind is reported and gated on its own from this many questions in a split


def open_eval_pipeline(settings: Settings, index_dir: Path = EVAL_INDEX, distractors: Path | None = None,
                       distractor_limit: int = 1000) -> Pipeline:
    """The pipeline `rag eval` measures: the seeds, the real letters of eval/letters/, the text extracts of
    eval/extracts/ and eval/paraphrased/ in one index, brought up to date first (nothing is embedded again when
    nothing changed). With `distractors` (a corpus dump), its first `distractor_limit` documents stand beside them
    as unrelated letters, in an index of its own beside `index_dir` that starts as a copy of it, so that only the
    distractors are embedded."""
    settings = replace(settings, endpoint=None)  # the eval measures the extractive answer
    embedder = load_embedder(settings.model)
    crowd = []
    if distractors is not None:
        if distractor_limit < 1:
            raise InputError(f"--distractor-limit {distractor_limit}: give 1 or more documents")
        crowd = corpus_letters(distractors, index_dir.with_name(f"{index_dir.name}-distractor-letters"), distractor_limit)
        crowded = index_dir.with_name(f"{index_dir.name}-distractors")
        if not crowded.exists() and index_dir.exists():
            shutil.copytree(index_dir, crowded, ignore=shutil.ignore_patterns(".lock", UPLOADS))
        index_dir = crowded
    summary = run_ingest(list(EVAL_FOLDERS) + crowd, index_dir, settings, embedder)
    for warning in summary.warnings:
        log.info("eval letters: %s", warning)
    generation = load_index(index_dir, settings.model.name, embedder.fingerprint, settings.chunking, settings.index,
                            settings.lexical)
    return Pipeline(embedder, generation, Path(index_dir), settings)


def variant(pipeline: Pipeline, settings: Settings, name: str, work_dir: Path) -> Pipeline:
    """The same letters and model under other settings (for `rag eval --compare`). Other chunking or tokenizing
    needs an index of its own: a copy of this one brought in line, so only passages whose text changed are
    embedded again."""
    embedder = pipeline.embedder
    if not settings.model.question_tower and embedder.tower:  # questions through the plain model, passages as stored
        embedder = replace(embedder, question_engine=None, tower=None)
    if (settings.chunking, settings.lexical) == (pipeline.settings.chunking, pipeline.settings.lexical):
        return Pipeline(embedder, pipeline.generation, pipeline.index_dir, settings)
    index_dir = work_dir / f"index-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
    if not index_dir.exists():
        shutil.copytree(pipeline.index_dir, index_dir, ignore=shutil.ignore_patterns(".lock", UPLOADS))
    run_ingest(pipeline.generation.letter_files, index_dir, settings, embedder)
    generation = load_index(index_dir, embedder.name, embedder.fingerprint, settings.chunking, settings.index,
                            settings.lexical)
    return Pipeline(embedder, generation, index_dir, settings)


def evaluate(pipeline, questions: Sequence[EvalQuestion], k: int = 5, answers: bool = True) -> dict:
    """Metrics per corpus and split, per kind, and per question, for one pipeline configuration."""
    texts = {doc_id: document.text for doc_id, document in pipeline.generation.documents.items()}
    per_question = []
    for question in questions:
        gold = evidence_spans(question, texts)
        query = pipeline.query(question.question, history=question.context)
        hits = pipeline.search_query(query, k=max(k, DEPTH))
        spans = [(hit.doc_id, hit.start, hit.end) for hit in hits]
        row = {"id": question.id, "kind": question.kind, "corpus": question.corpus, "split": question.split,
               "question": question.question, "answerable": bool(gold),
               "found": [(h.doc_id, h.section, h.text[:80]) for h in hits[:3]],
               "run": [(h.chunk_id, h.score) for h in hits], "gold_spans": gold}
        if gold:
            row["metrics"] = question_metrics(spans, gold, k)
            row["missed"] = [evidence for (doc_id, evidence), rank in zip(question.gold, first_ranks(spans, gold))
                             if rank is None or rank > k]
        if answers:
            answer = pipeline.answer_query(query)
            quotes = [(c.hit.doc_id, c.start, c.end) for c in answer.citations]
            row.update(answer=answer.text, abstained=answer.abstained, citations=[c.as_json() for c in answer.citations])
            if gold:
                row["answer_metrics"] = answer_metrics(quotes, gold, answer.abstained, pipeline.evidence(query).first)
                # Asked again with its own letters left out, the question is one these letters cannot answer.
                without = query.without_letters(doc_id for doc_id, *_ in gold)
                row["abstained_without_its_letters"] = pipeline.answer_query(without).abstained
        per_question.append(row)
    return {"k": k, "questions": len(per_question), "groups": _groups(per_question, answers),
            "by_kind": _by_kind(per_question), "per_question": per_question}


def summarise(rows: list[dict], answers: bool) -> dict[str, float]:
    """Retrieval metrics and the sentence ranked first over the answerable questions, answer metrics over the answered
    ones."""
    answerable = [row for row in rows if row["answerable"]]
    summary = average(row["metrics"] for row in answerable)
    if answers and rows:
        answered = [row["answer_metrics"] for row in answerable if not row["abstained"]]
        unanswerable = [row for row in rows if not row["answerable"]]
        summary["answer_quotes_gold"] = round(mean(m["quotes_gold"] for m in answered), 4) if answered else 0.0
        summary["first_sentence_gold"] = round(mean(row["answer_metrics"]["first_sentence_gold"] for row in answerable), 4) \
            if answerable else 0.0
        summary["evidence_recall"] = round(mean(m["evidence_recall"] for m in answered), 4) if answered else 0.0
        summary["quoted_chars"] = round(mean(m["quoted_chars"] for m in answered), 1) if answered else 0.0
        summary["false_abstention"] = round(mean(row["abstained"] for row in answerable), 4) if answerable else 0.0
        if unanswerable:
            summary["abstention_unanswerable"] = round(mean(row["abstained"] for row in unanswerable), 4)
        if answerable:
            summary["abstention_without_its_letters"] = round(mean(row["abstained_without_its_letters"] for row in answerable), 4)
        summary.update(trust_table(rows))
    summary["questions"] = len(rows)
    return summary


def trust_table(rows: list[dict]) -> dict[str, float]:
    """SQuAD 2.0's four outcomes, as shares of the questions: answered quoting a gold evidence (right), answered
    without one or answering what the letters cannot (wrong), abstained where they cannot (right) or can (wrong)."""
    outcomes = {"answered_right": 0, "answered_wrong": 0, "abstained_right": 0, "abstained_wrong": 0}
    for row in rows:
        if row["abstained"]:
            outcomes["abstained_wrong" if row["answerable"] else "abstained_right"] += 1
        elif row["answerable"] and row["answer_metrics"]["quotes_gold"]:
            outcomes["answered_right"] += 1
        else:
            outcomes["answered_wrong"] += 1
    return {name: round(count / len(rows), 4) for name, count in outcomes.items()}


def _groups(rows: list[dict], answers: bool) -> dict[str, dict[str, float]]:
    groups = {}
    for corpus in sorted({row["corpus"] for row in rows}) + ["all"]:
        for split in SPLITS:
            chosen = [row for row in rows if row["split"] == split and corpus in (row["corpus"], "all")]
            if chosen:
                groups[f"{corpus}/{split}"] = summarise(chosen, answers)
    return groups


def _by_kind(rows: list[dict]) -> dict[str, dict[str, float]]:
    kinds = {}
    for split in SPLITS:
        for kind in sorted({row["kind"] for row in rows}):
            chosen = [row for row in rows if row["split"] == split and row["kind"] == kind]
            if len(chosen) >= MIN_KIND or (kind == "unanswerable" and chosen):
                kinds[f"{kind}/{split}"] = summarise(chosen, answers="abstained" in chosen[0])
    return kinds


def gated_metrics(report: dict) -> dict[str, dict[str, float]]:
    """What the gate holds: the test split of every corpus, and every kind large enough to measure on its own in it
    (dev is where things are tuned; it is reported, not gated)."""
    gated = {name: {k: v for k, v in metrics.items() if k != "questions"} for name, metrics in report["groups"].items()
             if name.endswith("/test")}
    gated.update({f"kind:{name}": {k: v for k, v in metrics.items() if k != "questions"}
                  for name, metrics in report["by_kind"].items() if name.endswith("/test")})
    return gated


def compare_to_baseline(report: dict, baseline: dict) -> list[str]:
    """The metrics that moved the wrong way beyond their tolerance, as sentences."""
    current = gated_metrics(report)
    drops = []
    for group, metrics in baseline["metrics"].items():
        for name, reference in metrics.items():
            tolerance = baseline["tolerance"].get(name, baseline["tolerance"].get("default", 0.03))
            value = current.get(group, {}).get(name)
            if value is None:
                drops.append(f"{group} {name}: missing from this run (baseline {reference:.3f})")
            elif name in LOWER_IS_BETTER and value > reference + tolerance:
                drops.append(f"{group} {name}: {value:.3f} rose above the baseline {reference:.3f} by more than {tolerance}")
            elif name not in LOWER_IS_BETTER and value < reference - tolerance:
                drops.append(f"{group} {name}: {value:.3f} fell below the baseline {reference:.3f} by more than {tolerance}")
    return drops


def baseline_from(report: dict, tolerance: dict[str, float]) -> dict:
    return {"k": report["k"], "questions": report["questions"], "citation_limit": CITATION_LIMIT,
            "tolerance": tolerance, "metrics": gated_metrics(report)}


def read_baseline(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read the baseline ({type(error).__name__}); write one with --write-baseline") from None


def write_baseline(report: dict, path: Path, settings: EvaluationSettings) -> None:
    Path(path).write_text(json.dumps(baseline_from(report, dict(settings.tolerance)), indent=2) + "\n")


def run(pipeline, questions: Sequence[EvalQuestion], k: int, compare: bool = False, trec_dir: Path | None = None,
        report_dir: Path | None = None) -> dict:
    """The default configuration's report; with `compare`, every configuration's groups side by side
    (tables and charts written to `report_dir`); with `trec_dir`, runs and qrels."""
    report = evaluate(pipeline, questions, k)
    result: dict = {"report": report}
    reports = {"default": report}
    if compare:
        for name, settings in list(configurations(pipeline.settings).items())[1:]:
            candidate = variant(pipeline, settings, name, report_dir or Path("."))
            reports[name] = evaluate(candidate, questions, k)
        rows_by_group = {group: {name: r["groups"][group] for name, r in reports.items() if group in r["groups"]}
                         for group in report["groups"]}
        result["compare"] = rows_by_group
        # every answer metric but the share of a question's evidences quoted, which "answers quote gold" already tells
        columns = RETRIEVAL + tuple(name for name in ANSWERS if name != "evidence_recall")
        result["compare_table"] = "\n\n".join(f"{group}\n" + table(rows, columns) for group, rows in rows_by_group.items())
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / "compare.md").write_text("```\n" + result["compare_table"] + "\n```\n")
            (report_dir / "compare.json").write_text(json.dumps(rows_by_group, indent=2))
            for group, rows in rows_by_group.items():
                write_chart(rows, RETRIEVAL[:-1], report_dir / f"compare-{group.replace('/', '-')}.png",
                            f"Retrieval on {group} (a hit is a passage of at most {CITATION_LIMIT} characters)")
    if trec_dir is not None:
        for name, configuration_report in reports.items():
            write_trec(configuration_report, name, trec_dir, pipeline.generation.chunks)
    return result


