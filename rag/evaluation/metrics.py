"""Retrieval and answer metrics as small pure functions over spans (doc_id, start, end); reports are built
from them, never the other way round.

A hit finds an evidence when it comes from the same letter, covers at least `coverage` of the evidence's span,
and is of citation size (at most `citation_limit` characters): a whole section is no citation, so a metric
cannot be improved by making passages longer, and the passage length is gated like the other metrics.
"""

from __future__ import annotations

import math
from statistics import mean
from typing import Iterable, Sequence

from rag.settings import EvaluationSettings

Span = tuple[str, int, int]  # doc_id, start, end
COVERAGE = EvaluationSettings.coverage
CITATION_LIMIT = EvaluationSettings.citation_limit
DEPTH = EvaluationSettings.depth
RETRIEVAL = ("hit@1", "hit@k", "recall@k", "mrr@10", "ndcg@10", "chars_per_passage")
ANSWERS = ("answer_quotes_gold", "first_sentence_gold", "evidence_recall", "quoted_chars", "false_abstention",
           "abstention_unanswerable", "abstention_without_its_letters")
TRUST = ("answered_right", "answered_wrong", "abstained_right", "abstained_wrong")
LOWER_IS_BETTER = {"false_abstention", "chars_per_passage", "quoted_chars", "answered_wrong", "abstained_wrong"}


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


def answer_metrics(quotes: Sequence[Span], gold: Sequence[Span], abstained: bool,
                   first: Span | None = None) -> dict[str, float]:
    """For an answerable question: did it abstain, does it quote a gold evidence, which share of them, and how many
    characters it quotes (an answer quoting more sentences, or longer ones, holds a gold one more often: the quoted
    length is gated as the passage length is, so that quoting more cannot buy a better score); and whether `first`,
    the sentence the answer ranks first (answered or not), is a gold evidence: how often the right sentence wins,
    whatever else is quoted beside it."""
    quoted = [any(quotes_evidence(quote, evidence) for quote in quotes) for evidence in gold]
    return {"abstained": float(abstained), "quotes_gold": float(any(quoted)),
            "first_sentence_gold": float(first is not None and any(quotes_evidence(first, evidence) for evidence in gold)),
            "evidence_recall": sum(quoted) / len(quoted) if quoted else 0.0,
            "quoted_chars": float(sum(end - start for _doc_id, start, end in quotes))}


def average(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    if not rows:
        return {}
    return {key: round(mean(row[key] for row in rows), 4) for key in rows[0]}
