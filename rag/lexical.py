"""Lexical search: BM25 (bm25s) over Dutch-stemmed tokens without stop words.

Dense retrieval misses exact names, numbers and rare terms ("S400", "Klimkin", "74
projecten"); BM25 finds them. Tokens are lower-cased, accents folded, stop words dropped and
stemmed with the Dutch Snowball stemmer, so "bondgenoten" matches "bondgenoot".
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

TOKENIZER_VERSION = 1
_TOKEN = re.compile(r"\w+", re.UNICODE)
_EXTRA_STOPWORDS = {
    "wat", "welke", "welk", "wie", "waar", "wanneer", "hoe", "waarom", "zei", "zegt", "gezegd",
    "what", "which", "who", "when", "where", "why", "how", "did", "does", "say", "said",
}


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("dutch")


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_DUTCH, STOPWORDS_EN

    return frozenset(fold(w) for w in (*STOPWORDS_DUTCH, *STOPWORDS_EN, *_EXTRA_STOPWORDS))


def fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    words = [fold(w) for w in _TOKEN.findall(text)]
    kept = [w for w in words if w not in stopwords() and (len(w) > 1 or w.isdigit())]
    return _stemmer().stemWords(kept)


class LexicalIndex:
    def __init__(self, retriever) -> None:
        self.retriever = retriever

    @classmethod
    def build(cls, texts: Sequence[str]) -> "LexicalIndex":
        import bm25s

        retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
        retriever.index([tokenize(text) or ["<leeg>"] for text in texts], show_progress=False)
        return cls(retriever)

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex":
        import bm25s

        return cls(bm25s.BM25.load(str(folder)))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for the query (zeros when no query term is known)."""
        tokens = [t for t in tokenize(query) if t in self.retriever.vocab_dict]
        if not tokens:
            return np.zeros(self.retriever.scores["num_docs"], dtype=np.float32)
        return np.asarray(self.retriever.get_scores(tokens), dtype=np.float32)

    def idf(self, tokens: Sequence[str]) -> list[float]:
        """The inverse document frequency of each (stemmed) token; a token no passage holds gets the highest."""
        count = self.retriever.scores["num_docs"]
        indptr = self.retriever.scores["indptr"]
        values = []
        for token in tokens:
            index = self.retriever.vocab_dict.get(token)
            frequency = int(indptr[index + 1] - indptr[index]) if index is not None else 0
            values.append(float(np.log(1 + (count - frequency + 0.5) / (frequency + 0.5))))
        return values
