"""Retrieval quality on the eval set: metrics as small pure functions, reports built from them.

A hit finds a gold evidence when it comes from the same letter and its [start, end) covers
at least 80% of the evidence's own span in the stored text: offsets, not fuzzy matching.
Gold is stored as verbatim evidence (not chunk ids), so the set survives any re-chunking.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Callable, Iterable, Sequence

from rag.chunking import ChunkSettings
from rag.errors import InputError
from rag.retrieval import RetrievalSettings

Span = tuple[str, int, int]  # doc_id, start, end
COVERAGE = 0.8
DEPTH = 10  # MRR and nDCG look at the first 10 hits
HEADLINE = ("hit@1", "hit@k", "recall@k", "mrr@10", "ndcg@10")


# --- metrics -----------------------------------------------------------------------------

def overlap(a: Span, b: Span) -> int:
    """Characters two spans share (0 for different letters)."""
    return max(0, min(a[2], b[2]) - max(a[1], b[1])) if a[0] == b[0] else 0


def covers(hit: Span, evidence: Span, threshold: float = COVERAGE) -> bool:
    return hit[0] == evidence[0] and overlap(hit, evidence) >= threshold * (evidence[2] - evidence[1])


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


def load_questions(path: Path) -> list[EvalQuestion]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"{path}: cannot read the questions ({error.strerror})") from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(EvalQuestion(
                row["id"], row["question"], row.get("lang", "nl"), row.get("kind", "other"),
                tuple((g["doc_id"], g["evidence"]) for g in row["gold"]), tuple(row.get("context", ())),
            ))
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path}:{number}: not a question line ({type(error).__name__}: {error})") from None
    if not questions:
        raise InputError(f"{path}: no questions in this file")
    return questions


def evidence_spans(question: EvalQuestion, texts: dict[str, str]) -> list[Span]:
    spans = []
    for doc_id, evidence in question.gold:
        start = texts.get(doc_id, "").find(evidence)
        if start < 0:
            raise InputError(f"question {question.id}: evidence not found in {doc_id}: {evidence[:60]!r}; fix eval/questions.jsonl")
        spans.append((doc_id, start, start + len(evidence)))
    return spans


# --- running -----------------------------------------------------------------------------

def evaluate(pipeline, questions: Sequence[EvalQuestion], k: int = 5,
             answer: Callable | None = None) -> dict:
    """Metrics overall, per kind and per question for one pipeline configuration."""
    texts = {doc_id: document.text for doc_id, document in pipeline.index.documents.items()}
    per_question = []
    for question in questions:
        gold = evidence_spans(question, texts)
        query = pipeline.query(question.question, history=question.context)
        hits = pipeline.search_query(query, k=max(k, DEPTH))
        spans = [(hit.doc_id, hit.start, hit.end) for hit in hits]
        row = {"id": question.id, "kind": question.kind, "question": question.question, "answerable": bool(gold),
               "found": [(h.doc_id, h.section, h.text[:80]) for h in hits[:3]]}
        if gold:
            row["metrics"] = question_metrics(spans, gold, k)
            row["missed"] = [evidence for (doc_id, evidence), rank in zip(question.gold, first_ranks(spans, gold))
                             if rank is None or rank > k]
        if answer is not None:
            row.update(answer(question, query, gold))
        per_question.append(row)
    answerable = [row for row in per_question if row["answerable"]]
    kinds = sorted({row["kind"] for row in answerable})
    report = {
        "k": k,
        "questions": len(per_question),
        "metrics": average(row["metrics"] for row in answerable),
        "by_kind": {kind: average(row["metrics"] for row in answerable if row["kind"] == kind) for kind in kinds},
        "per_question": per_question,
    }
    if answer is not None:
        unanswerable = [row for row in per_question if not row["answerable"]]
        report["metrics"]["abstention_unanswerable"] = round(mean(row["abstained"] for row in unanswerable), 4) if unanswerable else 0.0
        report["metrics"]["false_abstention"] = round(mean(row["abstained"] for row in answerable), 4)
        report["metrics"]["answer_cites_gold"] = round(mean(row["cites_gold"] for row in answerable), 4)
    return report


def quotes_evidence(citation: Span, evidence: Span) -> bool:
    """A quoted sentence supports a gold evidence when they share most of the shorter span."""
    shorter = min(citation[2] - citation[1], evidence[2] - evidence[1])
    return citation[0] == evidence[0] and overlap(citation, evidence) >= 0.5 * shorter


def answer_judge(pipeline) -> Callable:
    """Scores `pipeline.ask` on a question: did it abstain, and does it quote a gold evidence?"""

    def judge(question: EvalQuestion, query, gold: Sequence[Span]) -> dict:
        answer = pipeline.answer_query(query)
        quoted = [(c.hit.doc_id, c.start, c.end) for c in answer.citations]
        return {
            "abstained": float(answer.abstained),
            "cites_gold": float(any(quotes_evidence(c, e) for c in quoted for e in gold)),
            "answer": answer.text,
            "citations": [c.as_json() for c in answer.citations],
        }

    return judge


def format_report(report: dict) -> str:
    metrics = report["metrics"]
    lines = [f"{report['questions']} questions, k={report['k']}"]
    lines += [f"  {name:<24}{value:.3f}" for name, value in metrics.items()]
    lines.append("\nby kind:")
    columns = ("hit@1", "hit@k", "recall@k", "mrr@10")
    lines.append(table(report["by_kind"], columns))
    misses = [row for row in report["per_question"] if row["answerable"] and row["metrics"]["hit@k"] == 0]
    if misses:
        lines.append(f"\nmisses (no gold evidence in the first {report['k']}):")
        for row in misses:
            lines.append(f"  {row['id']} {row['question']}")
            lines.append(f"     wanted: {row['missed'][0][:90]}")
            for doc_id, section, text in row["found"][:2]:
                lines.append(f"     found:  {doc_id} / {section}: {text[:70]}")
    wrong = [row for row in report["per_question"] if "abstained" in row and row["abstained"] != (not row["answerable"])]
    if wrong:
        lines.append("\nabstention mistakes:")
        lines += [f"  {row['id']} {'abstained' if row['abstained'] else 'answered'}: {row['question']}" for row in wrong]
    return "\n".join(lines)


# --- baseline gate -----------------------------------------------------------------------

def compare_to_baseline(metrics: dict[str, float], baseline: dict) -> list[str]:
    """The metrics that fell below the baseline by more than their tolerance, as sentences."""
    drops = []
    for name, reference in baseline["metrics"].items():
        tolerance = baseline["tolerance"].get(name, baseline["tolerance"].get("default", 0.02))
        value = metrics.get(name)
        if value is None:
            drops.append(f"{name}: missing from this run (baseline {reference:.3f})")
        elif name == "false_abstention":
            if value > reference + tolerance:
                drops.append(f"{name}: {value:.3f} rose above the baseline {reference:.3f} by more than {tolerance:.3f}")
        elif value < reference - tolerance:
            drops.append(f"{name}: {value:.3f} fell below the baseline {reference:.3f} by more than {tolerance:.3f}")
    return drops


def baseline_from(report: dict, tolerance: dict[str, float]) -> dict:
    kept = {name: value for name, value in report["metrics"].items() if name != "chars_per_passage"}
    return {"k": report["k"], "questions": report["questions"], "tolerance": tolerance, "metrics": kept}


DEFAULT_TOLERANCE = {"default": 0.03, "hit@1": 0.05, "mrr@10": 0.04}

# What `rag eval --compare` sets side by side: a LangChain-tutorial reference, then the
# project's choices one at a time, ending with the default.
CONFIGURATIONS: dict[str, tuple[ChunkSettings, RetrievalSettings]] = {
    "naive: fixed 1000/200, dense": (
        ChunkSettings(max_chars=1000, overlap_chars=200, strategy="fixed"),
        RetrievalSettings(mode="dense", merge_adjacent=False, understand_time=False),
    ),
    "sections, dense": (ChunkSettings(), RetrievalSettings(mode="dense", understand_time=False)),
    "sections, BM25": (ChunkSettings(), RetrievalSettings(mode="lexical", understand_time=False)),
    "hybrid, RRF": (ChunkSettings(), RetrievalSettings(fusion="rrf")),
    "hybrid, weighted (default)": (ChunkSettings(), RetrievalSettings()),
}


# --- reports -----------------------------------------------------------------------------

def table(rows: dict[str, dict[str, float]], columns: Sequence[str]) -> str:
    """A plain-text table of configurations (rows) by metrics (columns)."""
    width = max(len(name) for name in rows) + 2
    sizes = [max(10, len(column) + 2) for column in columns]
    lines = ["configuration".ljust(width) + "".join(column.rjust(size) for column, size in zip(columns, sizes))]
    for name, metrics in rows.items():
        cells = "".join((f"{metrics[c]:.3f}" if c in metrics else "-").rjust(size) for c, size in zip(columns, sizes))
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


def write_chart(rows: dict[str, dict[str, float]], columns: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / len(rows)
    for offset, (name, metrics) in enumerate(rows.items()):
        positions = [i + offset * width for i in range(len(columns))]
        axis.bar(positions, [metrics.get(c, 0.0) for c in columns], width, label=name)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(columns))], list(columns))
    axis.set_ylim(0, 1)
    axis.set_ylabel("score")
    axis.set_title("Retrieval quality on eval/questions.jsonl")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
