"""The candidate sentences read again: today's ranking (similarity plus small bonuses) with its best sentences
reordered by the sentence reranker's logit for each (question, sentence) pair (`rag.embed.reranker`), added to today's
score times the weight training learned, so that the reranker starts from today's order."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from rag.answer.extractive import ScoredSentence


class PairScorer(Protocol):
    candidates: int  # the best sentences of today's ranking that are read again
    score_weight: float  # today's score's weight beside the logit

    def logits(self, question: str, sections: Sequence[str], sentences: Sequence[str]) -> np.ndarray: ...


def reread(question: str, scored: list["ScoredSentence"], reranker: PairScorer) -> list["ScoredSentence"]:
    """`scored` (best first) with its best candidates in the reranker's order. Their scores become today's score plus
    the logit over its weight (less the best logit), so that the quote margin keeps its meaning; the sentences after
    them keep their order, placed as if they had the lowest logit read."""
    head = scored[:reranker.candidates]
    if len(head) < 2:
        return scored
    logits = reranker.logits(question, [s.hit.section for s in head],
                             [s.hit.text[s.start - s.hit.start:s.end - s.hit.start] for s in head])
    logits = logits - logits.max()
    read = [replace(s, score=s.score + float(logit) / reranker.score_weight) for s, logit in zip(head, logits)]
    rest = [replace(s, score=s.score + float(logits.min()) / reranker.score_weight) for s in scored[reranker.candidates:]]
    return sorted(read, key=lambda s: -s.score) + rest
