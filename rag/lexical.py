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


# The Snowball stop words for Dutch and the common English ones (as bm25s lists them), kept here so that a
# process answering questions does not import bm25s (and scipy) for a word list.
_DUTCH_STOPWORDS = (
    "aan al alles als altijd andere ben bij daar dan dat de der deze die dit doch doen door dus een eens en er ge geen geweest haar had heb hebben heeft hem het hier hij hoe hun iemand iets ik in is ja je kan kon kunnen maar me meer men met mij mijn moet na naar niet niets nog nu of om omdat onder ons ook op over reeds te tegen toch toen tot u uit uw van veel voor want waren was wat werd wezen wie wil worden wordt zal ze zelf zich zij zijn zo zonder zou"
).split()
_ENGLISH_STOPWORDS = (
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they this "
    "to was will with"
).split()


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    return frozenset(fold(w) for w in (*_DUTCH_STOPWORDS, *_ENGLISH_STOPWORDS, *_EXTRA_STOPWORDS))


def fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    words = [fold(w) for w in _TOKEN.findall(text)]
    kept = [w for w in words if w not in stopwords() and (len(w) > 1 or w.isdigit())]
    return _stemmer().stemWords(kept)


class LexicalIndex:
    """BM25 scores precomputed per passage and term (bm25s builds them, "lucene" variant).

    Built and saved with bm25s; read back with numpy alone, so a process that answers questions
    does not import bm25s and scipy (0.2 s of every cold start).
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, vocabulary: dict[str, int],
                 count: int, builder=None) -> None:
        self.data, self.indices, self.indptr = data, indices, indptr
        self.vocabulary = vocabulary
        self.count = count  # passages
        self._builder = builder  # the bm25s object a fresh build saves from

    @classmethod
    def build(cls, texts: Sequence[str]) -> "LexicalIndex":
        import bm25s

        retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
        retriever.index([tokenize(text) or ["<leeg>"] for text in texts], show_progress=False)
        scores = retriever.scores
        return cls(scores["data"], scores["indices"], scores["indptr"], retriever.vocab_dict, scores["num_docs"], retriever)

    def save(self, folder: Path) -> None:
        self._builder.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex":
        import json

        params = json.loads((folder / "params.index.json").read_text())
        vocabulary = json.loads((folder / "vocab.index.json").read_text())
        arrays = [np.load(folder / f"{name}.csc.index.npy", mmap_mode="r") for name in ("data", "indices", "indptr")]
        return cls(*arrays, vocabulary, int(params["num_docs"]))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for the query (zeros when no query term is known)."""
        ids = [self.vocabulary[token] for token in tokenize(query) if token in self.vocabulary]
        if not ids:
            return np.zeros(self.count, dtype=np.float32)
        spans = [(int(self.indptr[i]), int(self.indptr[i + 1])) for i in ids]
        rows = np.concatenate([self.indices[start:end] for start, end in spans])
        weights = np.concatenate([self.data[start:end] for start, end in spans])
        return np.bincount(rows, weights=weights, minlength=self.count).astype(np.float32)

    def idf(self, tokens: Sequence[str]) -> list[float]:
        """The inverse document frequency of each (stemmed) token; a token no passage holds gets the highest."""
        values = []
        for token in tokens:
            index = self.vocabulary.get(token)
            frequency = int(self.indptr[index + 1] - self.indptr[index]) if index is not None else 0
            values.append(float(np.log(1 + (self.count - frequency + 0.5) / (frequency + 0.5))))
        return values
