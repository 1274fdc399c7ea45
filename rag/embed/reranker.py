"""The sentence reranker's model: a question and a candidate sentence read together, as one text (the question, then
the sentence after its section title), through the first layers of the default model with low-rank updates and a
linear head on the mean state, trained by `rag train` on the training questions (`rag.embed.reranker_training`).

Today's ranking of sentences (`rag.answer.extractive`) sees the question and a sentence apart, each embedded alone, so
the sentence that repeats the question's words wins over the one that answers in others. The answer stage adds this
model's logit to today's score times a learned weight (`rag.answer.rerank`), so it starts from today's order.

What is committed is the updates, the head and the weight (`rag/embed/sentence_reranker.npz`, under 1 MB, written and
read as the question tower's file is). The graph is built from the package weights plus those into the model's cache
folder (`onnx/reranker-<id>.onnx`, `tower.updated_encoder`) and run on ONNX Runtime: no process that answers imports
torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rag.embed.tower import read_updates, updated_encoder
from rag.settings import AnswerSettings

if TYPE_CHECKING:
    from rag.embed.model import Embedder

SECTION_WORDS = 12  # of a section title put before its sentence: the title says what the sentence is about
PAIR_TOKENS = 72  # question and sentence together; a longer sentence is cut (its start says what it is)


def pair_ids(question: list[int], sentence: list[int], eos: int) -> list[int]:
    """One input as XLM-R pairs two texts, `<s> question </s></s> sentence </s>`, cut to `PAIR_TOKENS`."""
    ids = question + [eos] + sentence[1:]
    return ids if len(ids) <= PAIR_TOKENS else ids[:PAIR_TOKENS - 1] + [eos]


def second_text(section: str, sentence: str) -> str:
    """The sentence as the reranker reads it: after the first words of its section title."""
    words = section.split()[:SECTION_WORDS]
    return "passage: " + (" ".join(words) + ": " if words else "") + sentence


class SentenceReranker:
    """The trained model on ONNX Runtime: `logits` of (question, sentence) pairs; `score_weight` and `candidates` say how
    the answer stage sets them beside today's score."""

    def __init__(self, engine, head_weight: np.ndarray, head_bias: float, score_weight: float, candidates: int,
                 query_prompt: str) -> None:
        self.engine = engine  # an OnnxEngine over the reranker's graph, sharing the embedder's tokenizer and words
        self.head_weight = head_weight
        self.head_bias = head_bias
        self.score_weight = score_weight
        self.candidates = candidates
        self.query_prompt = query_prompt

    @classmethod
    def for_embedder(cls, embedder: "Embedder", settings: AnswerSettings) -> "SentenceReranker | None":
        """The trained reranker of the default model, on ONNX Runtime on the CPU also where the model embeds on a GPU
        (12 sentences take tens of milliseconds, and every deployment then quotes the same sentences); None for another
        model or without one."""
        from rag.embed.model import OnnxEngine, is_default, resolve_model

        if not settings.rerank or not is_default(embedder.name):
            return None
        folder = Path(resolve_model(embedder.settings))
        graph = updated_encoder(folder, settings.reranker_file, "reranker")
        if graph is None:
            return None
        arrays, record = read_updates(settings.reranker_file)
        sharing = embedder.engine if isinstance(embedder.engine, OnnxEngine) else None  # its tokenizer and words
        return cls(OnnxEngine(folder, embedder.settings.query_threads, PAIR_TOKENS, graph=graph, sharing=sharing),
                   arrays["head.weight"].reshape(-1), float(arrays["head.bias"].reshape(-1)[0]),
                   float(record["score_weight"]), settings.rerank_candidates, embedder.query_prompt)

    def logits(self, question: str, sections: Sequence[str], sentences: Sequence[str]) -> np.ndarray:
        """The head's logit for each (question, sentence) pair."""
        tokenizer = self.engine.tokenizer
        asked, _spans = tokenizer.encode(self.query_prompt + question)
        rows = [pair_ids(asked, tokenizer.encode(second_text(section, sentence))[0], tokenizer.eos)
                for section, sentence in zip(sections, sentences)]
        length = max(len(row) for row in rows)
        ids = np.full((len(rows), length), tokenizer.eos, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for number, row in enumerate(rows):
            ids[number, :len(row)] = row
            mask[number, :len(row)] = 1
        (hidden,) = self.engine.session.run(None, {"inputs_embeds": self.engine.words.take(ids).astype(np.float32),
                                                   "attention_mask": mask})
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled @ self.head_weight + self.head_bias
