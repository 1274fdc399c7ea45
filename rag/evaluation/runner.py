"""Retrieval and answer quality on the eval set: metrics as small pure functions, reports built from them.

The set (eval/questions.jsonl) covers two corpora, the seed letters and real letters outside
them (eval/letters/), each split once into `dev` (for tuning anything) and `test` (reported
and gated, never tuned on). Gold is verbatim evidence, located in the stored text by its
letters and digits, so the set survives re-reading and re-chunking.

A hit finds an evidence when it comes from the same letter, covers at least 80% of the
evidence's span, and is of citation size (at most CITATION_LIMIT characters): a whole section
is no citation, so a metric cannot be improved by making passages longer, and the passage
length is gated like the other metrics.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Iterable, Sequence

import numpy as np

from rag.index.chunking import ChunkSettings
from rag.errors import InputError
from rag.search.retrieval import RetrievalSettings

Span = tuple[str, int, int]  # doc_id, start, end
COVERAGE = 0.8
CITATION_LIMIT = 1500  # characters: a passage longer than this does not count as a citation
DEPTH = 10  # MRR and nDCG look at the first 10 hits
RETRIEVAL = ("hit@1", "hit@k", "recall@k", "mrr@10", "ndcg@10", "chars_per_passage")
ANSWERS = ("answer_quotes_gold", "evidence_recall", "false_abstention", "abstention_unanswerable")
LOWER_IS_BETTER = {"false_abstention", "chars_per_passage"}
SPLITS = ("dev", "test")
MIN_KIND = 8  # a kind is reported and gated on its own from this many questions in a split


# --- metrics -----------------------------------------------------------------------------

def overlap(a: Span, b: Span) -> int:
    """Characters two spans share (0 for different letters)."""
    return max(0, min(a[2], b[2]) - max(a[1], b[1])) if a[0] == b[0] else 0


def covers(hit: Span, evidence: Span, threshold: float = COVERAGE, limit: int = CITATION_LIMIT) -> bool:
    """The hit holds the evidence and is short enough to be checked at a glance."""
    return (hit[0] == evidence[0] and hit[2] - hit[1] <= limit
            and overlap(hit, evidence) >= threshold * (evidence[2] - evidence[1]))


def first_ranks(hits: Sequence[Span], gold: Sequence[Span]) -> list[int | None]:
    """For each gold evidence, the 1-based rank of the first hit that covers it (None: not found)."""
    return [next((rank for rank, hit in enumerate(hits, start=1) if covers(hit, evidence)), None) for evidence in gold]


def hit_at(ranks: Sequence[int | None], k: int) -> float:
    return float(any(rank is not None and rank <= k for rank in ranks))


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    return sum(rank is not None and rank <= k for rank in ranks) / len(ranks) if ranks else 0.0


def reciprocal_rank(ranks: Sequence[int | None], depth: int = DEPTH) -> float:
    found = [rank for rank in ranks if rank is not None and rank <= depth]
    return 1.0 / min(found) if found else 0.0


def ndcg_at(hits: Sequence[Span], gold: Sequence[Span], k: int = DEPTH) -> float:
    """Binary gain: a hit counts once, for covering a gold evidence no higher hit covered."""
    if not gold:
        return 0.0
    credited: set[int] = set()
    dcg = 0.0
    for position, hit in enumerate(hits[:k], start=1):
        new = [i for i, evidence in enumerate(gold) if i not in credited and covers(hit, evidence)]
        if new:
            credited.update(new)
            dcg += 1.0 / math.log2(position + 1)
    ideal = sum(1.0 / math.log2(position + 1) for position in range(1, min(len(gold), k) + 1))
    return dcg / ideal


def question_metrics(hits: Sequence[Span], gold: Sequence[Span], k: int) -> dict[str, float]:
    ranks = first_ranks(hits, gold)
    cited = [hit[2] - hit[1] for hit in hits[:k]]
    return {
        "hit@1": hit_at(ranks, 1), "hit@k": hit_at(ranks, k), "recall@k": recall_at(ranks, k),
        "mrr@10": reciprocal_rank(ranks), "ndcg@10": ndcg_at(hits, gold),
        "chars_per_passage": mean(cited) if cited else 0.0,
    }


def quotes_evidence(quote: Span, evidence: Span) -> bool:
    """A quoted sentence supports a gold evidence when they share most of the shorter span."""
    shorter = min(quote[2] - quote[1], evidence[2] - evidence[1])
    return quote[0] == evidence[0] and overlap(quote, evidence) >= 0.5 * shorter


def answer_metrics(quotes: Sequence[Span], gold: Sequence[Span], abstained: bool) -> dict[str, float]:
    """For an answerable question: did it abstain, does it quote a gold evidence, which share of them."""
    quoted = [any(quotes_evidence(quote, evidence) for quote in quotes) for evidence in gold]
    return {"abstained": float(abstained), "quotes_gold": float(any(quoted)),
            "evidence_recall": sum(quoted) / len(quoted) if quoted else 0.0}


def average(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    if not rows:
        return {}
    return {key: round(mean(row[key] for row in rows), 4) for key in rows[0]}


# --- the eval set ------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    lang: str
    kind: str
    gold: tuple[tuple[str, str], ...]  # (doc_id, evidence)
    context: tuple[str, ...] = ()
    corpus: str = "seeds"
    split: str = "dev"


def load_questions(path: Path, split: str = "all") -> list[EvalQuestion]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the questions ({getattr(error, 'strerror', None) or error})") from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question = EvalQuestion(
                row["id"], row["question"], row.get("lang", "nl"), row.get("kind", "other"),
                tuple((g["doc_id"], g["evidence"]) for g in row["gold"]), tuple(row.get("context", ())),
                row.get("corpus", "seeds"), row.get("split", "dev"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(f"{path}:{number}: not a question line ({type(error).__name__}: {error})") from None
        if question.split not in SPLITS:
            raise InputError(f"{path}:{number}: split {question.split!r}; use dev or test")
        if split in ("all", question.split):
            questions.append(question)
    if not questions:
        raise InputError(f"{path}: no questions in this file" + (f" for the {split} split" if split != "all" else ""))
    return questions


def _letters_and_digits(text: str) -> tuple[str, list[int]]:
    """The text's letters and digits, lower-cased, with each one's offset in the text."""
    kept, offsets = [], []
    for offset, character in enumerate(text):
        if character.isalnum():
            kept.append(character.lower())
            offsets.append(offset)
    return "".join(kept), offsets


def locate(evidence: str, text: str) -> tuple[int, int] | None:
    """Where an evidence stands in a stored letter: verbatim, or else by its letters and digits (a
    reader that joins a hyphenated word or drops a footnote marker does not lose the gold)."""
    start = text.find(evidence)
    if start >= 0:
        return start, start + len(evidence)
    wanted, _ = _letters_and_digits(evidence)
    if not wanted:
        return None
    letters, offsets = _letters_and_digits(text)
    found = letters.find(wanted)
    if found < 0:
        return None
    return offsets[found], offsets[found + len(wanted) - 1] + 1


def evidence_spans(question: EvalQuestion, texts: dict[str, str]) -> list[Span]:
    spans = []
    for doc_id, evidence in question.gold:
        found = locate(evidence, texts.get(doc_id, ""))
        if found is None:
            raise InputError(f"question {question.id}: evidence not found in {doc_id}: {evidence[:60]!r}; fix the questions file")
        spans.append((doc_id, *found))
    return spans


# --- running -----------------------------------------------------------------------------

def evaluate(pipeline, questions: Sequence[EvalQuestion], k: int = 5, answers: bool = True) -> dict:
    """Metrics per corpus and split, per kind, and per question, for one pipeline configuration."""
    texts = {doc_id: document.text for doc_id, document in pipeline.index.documents.items()}
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
                row["answer_metrics"] = answer_metrics(quotes, gold, answer.abstained)
        per_question.append(row)
    return {"k": k, "questions": len(per_question), "groups": _groups(per_question, answers),
            "by_kind": _by_kind(per_question), "per_question": per_question}


def summarise(rows: list[dict], answers: bool) -> dict[str, float]:
    """Retrieval metrics over the answerable questions, answer metrics over the answered ones."""
    answerable = [row for row in rows if row["answerable"]]
    summary = average(row["metrics"] for row in answerable)
    if answers and rows:
        answered = [row["answer_metrics"] for row in answerable if not row["abstained"]]
        unanswerable = [row for row in rows if not row["answerable"]]
        summary["answer_quotes_gold"] = round(mean(m["quotes_gold"] for m in answered), 4) if answered else 0.0
        summary["evidence_recall"] = round(mean(m["evidence_recall"] for m in answered), 4) if answered else 0.0
        summary["false_abstention"] = round(mean(row["abstained"] for row in answerable), 4) if answerable else 0.0
        if unanswerable:
            summary["abstention_unanswerable"] = round(mean(row["abstained"] for row in unanswerable), 4)
    summary["questions"] = len(rows)
    return summary


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


def format_report(report: dict) -> str:
    lines = [f"{report['questions']} questions, k={report['k']}; a hit is a passage of at most {CITATION_LIMIT} "
             f"characters holding {COVERAGE:.0%} of an evidence\n"]
    columns = [c for c in RETRIEVAL + ANSWERS if any(c in m for m in report["groups"].values())]
    lines.append(table(report["groups"], columns + ["questions"], first="corpus/split"))
    lines.append("\nby kind (kinds with at least 8 questions in a split):")
    lines.append(table(report["by_kind"], columns + ["questions"], first="kind/split"))
    misses = [row for row in report["per_question"] if row["answerable"] and row["metrics"]["hit@k"] == 0]
    if misses:
        lines.append(f"\nmisses (no gold evidence in the first {report['k']}):")
        for row in misses:
            lines.append(f"  {row['id']} [{row['split']}] {row['question']}")
            lines.append(f"     wanted: {row['missed'][0][:90]}")
            for doc_id, section, text in row["found"][:2]:
                lines.append(f"     found:  {doc_id} / {section[:40]}: {text[:60]}")
    wrong = [row for row in report["per_question"] if "abstained" in row and row["abstained"] != (not row["answerable"])]
    if wrong:
        lines.append("\nabstention mistakes:")
        lines += [f"  {row['id']} [{row['split']}] {'abstained' if row['abstained'] else 'answered'}: {row['question']}"
                  for row in wrong]
    return "\n".join(lines)


# --- baseline gate -----------------------------------------------------------------------

def gated_metrics(report: dict) -> dict[str, dict[str, float]]:
    """What the gate holds: every corpus and split, and every kind large enough to measure on its own."""
    gated = {name: {k: v for k, v in metrics.items() if k != "questions"} for name, metrics in report["groups"].items()}
    gated.update({f"kind:{name}": {k: v for k, v in metrics.items() if k != "questions"}
                  for name, metrics in report["by_kind"].items()})
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


# Per-kind groups hold 8-18 questions, so one question moves them by 0.06-0.12.
DEFAULT_TOLERANCE = {"default": 0.04, "hit@1": 0.06, "mrr@10": 0.05, "chars_per_passage": 60.0}


def read_baseline(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read the baseline ({type(error).__name__}); write one with --write-baseline") from None


def write_baseline(report: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(baseline_from(report, DEFAULT_TOLERANCE), indent=2) + "\n")


def run(pipeline, questions: Sequence[EvalQuestion], k: int, compare: bool = False, trec_dir: Path | None = None,
        report_dir: Path | None = None) -> dict:
    """The default configuration's report; with `compare`, every configuration's groups side by side
    (tables and charts written to `report_dir`); with `trec_dir`, runs and qrels."""
    from rag.serve.pipeline import variant

    report = evaluate(pipeline, questions, k)
    result: dict = {"report": report}
    reports = {"default": report}
    if compare:
        for name, (chunk_settings, retrieval) in list(configurations().items())[1:]:
            candidate = variant(pipeline, chunk_settings, retrieval, report_dir or Path("."))
            reports[name] = evaluate(candidate, questions, k, answers=False)
        rows_by_group = {group: {name: r["groups"][group] for name, r in reports.items() if group in r["groups"]}
                         for group in report["groups"]}
        result["compare"] = rows_by_group
        result["compare_table"] = "\n\n".join(f"{group}\n" + table(rows, RETRIEVAL) for group, rows in rows_by_group.items())
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / "compare.md").write_text("```\n" + result["compare_table"] + "\n```\n")
            (report_dir / "compare.json").write_text(json.dumps(rows_by_group, indent=2))
            for group, rows in rows_by_group.items():
                write_chart(rows, RETRIEVAL[:-1], report_dir / f"compare-{group.replace('/', '-')}.png",
                            f"Retrieval on {group} (a hit is a passage of at most {CITATION_LIMIT} characters)")
    if trec_dir is not None:
        for name, configuration_report in reports.items():
            write_trec(configuration_report, name, trec_dir, pipeline.index.chunks)
    return result


# --- abstention, calibrated on the dev split --------------------------------------------------

def calibrate(pipeline, questions: Sequence[EvalQuestion], most_false_abstentions: float = 0.02):
    """The abstention thresholds that refuse the most unanswerable dev questions while wrongly refusing at
    most `most_false_abstentions` of the answerable ones; dev questions only, never the test split."""
    from rag.answer.extractive import Calibration, abstains, is_english, score_sentences, weigh_evidence

    if any(question.split != "dev" for question in questions):
        raise InputError("calibrate on the dev split only: the test split is reported, never tuned on")
    measured = []
    for question in questions:
        query = pipeline.query(question.question, history=question.context)
        vector = pipeline.embedder.encode_queries([query.text])[0]
        hits = pipeline.search_query(query, k=6)
        evidence = weigh_evidence(query.text, score_sentences(query.text, hits, pipeline.index, vector), pipeline.index)
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


# --- comparison: one choice per row against the default ------------------------------------

def configurations() -> dict[str, tuple[ChunkSettings, RetrievalSettings]]:
    """What `rag eval --compare` sets side by side: the default, each row changing one thing, and the
    references a LangChain tutorial would build (fixed 1,000/200 pieces of the raw text, dense and hybrid)."""
    default_chunks, default = ChunkSettings(), RetrievalSettings()
    naive_chunks = ChunkSettings(max_chars=1000, overlap_chars=200, strategy="fixed")
    return {
        "default": (default_chunks, default),
        "reference: fixed 1000/200, dense": (naive_chunks, RetrievalSettings(mode="dense", understand_time=False,
                                                                              sentence_weight=0.0)),
        "reference: fixed 1000/200, BM25 + dense, RRF": (naive_chunks, RetrievalSettings(
            fusion="rrf", understand_time=False, sentence_weight=0.0)),
        "dense only": (default_chunks, _replace(default, mode="dense")),
        "BM25 only": (default_chunks, _replace(default, mode="lexical")),
        "reciprocal rank fusion": (default_chunks, _replace(default, fusion="rrf")),
        "no best-sentence score": (default_chunks, _replace(default, sentence_weight=0.0)),
        "no time words": (default_chunks, _replace(default, understand_time=False)),
        "adjacent pieces merged (old)": (default_chunks, _replace(default, merge_adjacent=True)),
    }


def _replace(settings: RetrievalSettings, **changes) -> RetrievalSettings:
    from dataclasses import replace

    return replace(settings, **changes)


# --- reports -----------------------------------------------------------------------------

def table(rows: dict[str, dict[str, float]], columns: Sequence[str], first: str = "configuration") -> str:
    """A plain-text table of rows by metrics (columns)."""
    width = max([len(name) for name in rows] + [len(first)]) + 2
    sizes = [max(8, len(column) + 2) for column in columns]
    lines = [first.ljust(width) + "".join(column.rjust(size) for column, size in zip(columns, sizes))]
    for name, metrics in rows.items():
        cells = "".join(_cell(metrics.get(c)).rjust(size) for c, size in zip(columns, sizes))
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3f}"


def write_trec(report: dict, name: str, folder: Path, chunks: Sequence) -> None:
    """The run and its passage-level qrels, for trec_eval or ranx: a chunk is relevant when it covers
    an evidence (the citation rule above)."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^\w.-]+", "_", name)
    with (folder / f"{tag}.run").open("w") as run:
        for row in report["per_question"]:
            for rank, (chunk_id, score) in enumerate(row["run"], start=1):
                run.write(f"{row['id']} Q0 {chunk_id} {rank} {score:.4f} {tag}\n")
    with (folder / f"{tag}.qrels").open("w") as qrels:
        for row in report["per_question"]:
            for chunk in chunks:
                if any(covers((chunk.doc_id, chunk.start, chunk.end), tuple(g)) for g in row["gold_spans"]):
                    qrels.write(f"{row['id']} 0 {chunk.chunk_id} 1\n")


def write_chart(rows: dict[str, dict[str, float]], columns: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(rows)
    for offset, (name, metrics) in enumerate(rows.items()):
        positions = [i + offset * width for i in range(len(columns))]
        axis.bar(positions, [metrics.get(c, 0.0) for c in columns], width, label=name)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(columns))], list(columns))
    axis.set_ylim(0, 1)
    axis.set_ylabel("score")
    axis.set_title(title)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
