"""Lexical search: BM25 over Dutch-stemmed tokens without stop words.

Dense retrieval misses exact names, numbers and rare terms ("S400", "Klimkin", "74
projecten"); BM25 finds them. Tokens are lower-cased, accents folded, stop words dropped and
stemmed with the Dutch Snowball stemmer, so "bondgenoten" matches "bondgenoot".

Each passage is tokenized once, at ingest, into its bag of words (distinct term ids and their
counts). The postings (per term: the passages holding it and how often) are computed from the
bags with numpy, per segment of a generation (`rag.index.segments`): a segment appended later
brings its own postings and the words first seen in it, and the collection's statistics
(passage count, average length, document frequencies) are taken over all segments when a
question is asked, so appending ten letters never recomputes a million passages' postings.
A full write recomputes them from the stored bags, never from the texts. The scores are those of bm25s's "lucene"
variant (k1 1.2, b 0.75; a test holds them equal to bm25s's own), computed and read back with
numpy alone (from the stored bags, without a tokenized copy of the corpus in Python lists),
so a serving process imports neither bm25s nor scipy.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.language import COMMON, compound_parts, fold, frequency, stopwords
from rag.settings import LexicalSettings

# 2: the stop words of `rag.language`; 3: the stemmer and compound parts chosen by the settings.
TOKENIZER_VERSION = 3
K1, B = 1.2, 0.75
COMPOUND = 10  # letters: a rarer word this long may be a compound whose parts are indexed too
_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenizer_id(settings: LexicalSettings) -> str:
    """What an index records of how its terms were cut: another one needs the bags of words again."""
    return f"{TOKENIZER_VERSION}:{settings.stemmer}" + (":compounds" if settings.compounds else "")


@lru_cache(maxsize=4)
def _stemmer(name: str):
    import Stemmer

    return Stemmer.Stemmer(name)


def tokenize(text: str, settings: LexicalSettings = LexicalSettings()) -> list[str]:
    words = [fold(w) for w in _TOKEN.findall(text)]
    kept = [w for w in words if w not in stopwords() and (len(w) > 1 or w.isdigit())]
    if settings.compounds:
        kept += [part for word in kept if len(word) >= COMPOUND and not word.isdigit() and frequency(word) < COMMON
                 for part in compound_parts(word)]
    return _stemmer(settings.stemmer).stemWords(kept)


@dataclass(frozen=True)
class Bags:
    """Every passage's bag of words: its distinct term ids with their counts, and its length in tokens.

    Passage i's terms are terms[first[i]:first[i + 1]]: the same layout as the sentences, so bags of
    unchanged letters are carried into the next generation by slicing, like everything else.
    """

    first: np.ndarray  # int64, passages + 1
    terms: np.ndarray  # int32
    counts: np.ndarray  # int32
    lengths: np.ndarray  # int32, tokens per passage

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def of_texts(cls, texts: Sequence[str], vocabulary: dict[str, int], settings: LexicalSettings) -> "Bags":
        """Tokenize the texts; terms new to `vocabulary` are appended to it."""
        terms, counts, sizes, lengths = [], [], [], []
        for text in texts:
            tokens = tokenize(text, settings)
            ids = np.fromiter((vocabulary.setdefault(token, len(vocabulary)) for token in tokens), np.int32, len(tokens))
            distinct, repeats = np.unique(ids, return_counts=True)
            terms.append(distinct)
            counts.append(repeats)
            sizes.append(len(distinct))
            lengths.append(len(tokens))
        return cls(np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64),
                   np.concatenate(terms).astype(np.int32) if terms else np.zeros(0, np.int32),
                   np.concatenate(counts).astype(np.int32) if counts else np.zeros(0, np.int32),
                   np.array(lengths, dtype=np.int32))

    def take(self, rows: np.ndarray) -> "Bags":
        """The bags of these passages, in this order."""
        positions, first = ranges(self.first, rows)
        return Bags(first, self.terms[positions], self.counts[positions], self.lengths[rows])

    @staticmethod
    def joined(parts: Sequence["Bags"]) -> "Bags":
        sizes = np.concatenate([np.diff(part.first) for part in parts])
        return Bags(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.concatenate([p.terms for p in parts]),
                    np.concatenate([p.counts for p in parts]), np.concatenate([p.lengths for p in parts]))

    def save(self, folder: Path) -> None:
        for name in ("first", "terms", "counts", "lengths"):
            np.save(folder / f"bags_{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: Path) -> "Bags":
        return cls(*(np.load(folder / f"bags_{name}.npy", mmap_mode="r") for name in ("first", "terms", "counts", "lengths")))


def ranges(first: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For items laid out as first[i]:first[i+1]: the positions of the items of `rows`, in order, and the
    offsets of the rows in that selection (vectorised: no Python loop over a million passages)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(first[rows], dtype=np.int64)
    sizes = np.asarray(first[rows + 1], dtype=np.int64) - starts
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    positions = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1], dtype=np.int64)
    return positions, offsets


@dataclass(frozen=True)
class Postings:
    """One segment's postings: for each term number below len(first) - 1, the passages holding it (rows of the
    whole generation) and how often. Term counts, not scores: a segment appended later changes the collection's
    statistics, so BM25 is computed when a question is asked, from counts that never change."""

    first: np.ndarray  # int64, terms + 1
    passages: np.ndarray  # int32
    counts: np.ndarray  # int32

    @classmethod
    def of_bags(cls, bags: Bags, terms: int, first_row: int) -> "Postings":
        frequency = np.bincount(bags.terms, minlength=terms)
        passage_of = np.repeat(np.arange(first_row, first_row + len(bags), dtype=np.int32), np.diff(bags.first))
        order = np.argsort(bags.terms, kind="stable")  # by term, each term's passages in row order
        return cls(np.concatenate([[0], np.cumsum(frequency)]).astype(np.int64), passage_of[order],
                   np.asarray(bags.counts)[order].astype(np.int32))

    def of_term(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        if number + 1 >= len(self.first):  # a term first seen in a later segment
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        start, end = int(self.first[number]), int(self.first[number + 1])
        return self.passages[start:end], self.counts[start:end]

    def frequency(self, number: int) -> int:
        """How many of this segment's passages hold the term."""
        return int(self.first[number + 1] - self.first[number]) if number + 1 < len(self.first) else 0

    def save(self, folder: Path) -> None:
        for name in ("first", "passages", "counts"):
            np.save(folder / f"postings_{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: Path) -> "Postings":
        return cls(*(np.load(folder / f"postings_{name}.npy", mmap_mode="r") for name in ("first", "passages", "counts")))


class LexicalIndex:
    """BM25 over the postings of a generation's segments, with the statistics of all of them (passage count,
    average length, document frequencies) taken when a question is asked."""

    def __init__(self, parts: Sequence[Postings], vocabulary: dict[str, int], lengths: np.ndarray,
                 settings: LexicalSettings) -> None:
        self.parts = list(parts)
        self.vocabulary = vocabulary
        self.count = len(lengths)  # passages
        self.settings = settings  # how its terms were cut: questions are cut the same way
        average = float(lengths.mean()) if self.count and lengths.sum() else 1.0
        self._norm = (K1 * (1 - B + B * np.asarray(lengths, dtype=np.float64) / average)).astype(np.float32)

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.settings)

    @classmethod
    def build(cls, vocabulary: dict[str, int], bags: Bags, settings: LexicalSettings) -> tuple["LexicalIndex", Bags]:
        """The index of one segment holding every passage, and the bags with the vocabulary compacted to the terms
        some passage still holds (letters removed leave terms nobody uses)."""
        frequency = np.bincount(bags.terms, minlength=len(vocabulary))
        used = frequency > 0
        renumbered = np.cumsum(used) - 1
        words = [word for word, number in sorted(vocabulary.items(), key=lambda item: item[1]) if used[number]]
        bags = Bags(np.asarray(bags.first), renumbered[bags.terms].astype(np.int32), np.asarray(bags.counts),
                    np.asarray(bags.lengths))
        return cls([Postings.of_bags(bags, len(words), 0)], {word: number for number, word in enumerate(words)},
                   bags.lengths, settings), bags

    def save(self, folder: Path) -> None:
        """Write a generation's only segment (`write_segment` writes one appended to others)."""
        (part,) = self.parts
        write_segment(folder, part, sorted(self.vocabulary, key=self.vocabulary.__getitem__), 0, self.settings)

    @classmethod
    def load(cls, folders: Sequence[Path]) -> "LexicalIndex":
        """The segments' postings, in order; each segment's vocabulary holds the words first seen in it."""
        words: list[str] = []
        parts, lengths = [], []
        settings = LexicalSettings()
        for folder in folders:
            params = json.loads((folder / "params.json").read_text())
            if params.get("first_term", 0) != len(words):
                raise ValueError(f"{folder}: its terms begin at {params.get('first_term')}, not {len(words)}")
            words += json.loads((folder / "vocabulary.json").read_text())
            parts.append(Postings.load(folder))
            lengths.append(np.load(folder / "bags_lengths.npy"))
            settings = LexicalSettings(params.get("stemmer", "dutch"), bool(params.get("compounds", False)))
        return cls(parts, {word: number for number, word in enumerate(words)},
                   np.concatenate(lengths) if lengths else np.zeros(0, np.int32), settings)

    @staticmethod
    def load_vocabulary(folders: Sequence[Path]) -> dict[str, int]:
        words = [word for folder in folders for word in json.loads((folder / "vocabulary.json").read_text())]
        return {word: number for number, word in enumerate(words)}

    def _postings(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        found = [part.of_term(number) for part in self.parts]
        if len(found) == 1:
            return found[0]
        return np.concatenate([rows for rows, _ in found]), np.concatenate([counts for _, counts in found])

    def _idf(self, frequency: int) -> float:
        return float(np.log(1 + (self.count - frequency + 0.5) / (frequency + 0.5)))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for the query (zeros when no query term is known)."""
        ids = [self.vocabulary[token] for token in self.tokenize(query) if token in self.vocabulary]
        rows, weights = [], []
        for number in ids:
            passages, counts = self._postings(number)
            frequency = counts.astype(np.float32)
            rows.append(passages)
            weights.append(np.float32(self._idf(len(passages))) * frequency / (frequency + self._norm[passages]))
        if not rows:
            return np.zeros(self.count, dtype=np.float32)
        return np.bincount(np.concatenate(rows), weights=np.concatenate(weights), minlength=self.count).astype(np.float32)

    def top(self, query: str, depth: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The `depth` best passages with a positive score (among those `mask` admits), best first; only the
        passages holding a query term are ranked, not the whole corpus."""
        scores = self.scores(query)
        candidates = np.flatnonzero(scores if mask is None else scores * mask)
        if not len(candidates):
            return []
        values = scores[candidates]
        if len(candidates) > depth:
            keep = np.argpartition(-values, depth - 1)[:depth]
            candidates, values = candidates[keep], values[keep]
        order = np.lexsort((candidates, -values))  # best first; equal scores by row, as a stable sort would
        return [(int(candidates[i]), float(values[i])) for i in order]

    def compounds_with(self, term: str, most: int = 40) -> list[int]:
        """The numbers of the terms that begin or end with `term` (the compounds it is part of: "vangst" in
        "bijvangst", "rebel" in "rebellenleger"), at most `most` of each."""
        forward, backward = self._affix_tables
        found = []
        for table, key in ((forward, term), (backward, term[::-1])):
            position = bisect.bisect_left(table, (key,))
            for candidate, number in table[position:position + most]:
                if not candidate.startswith(key):
                    break
                found.append(number)
        return found

    @functools.cached_property
    def _affix_tables(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        return (sorted(self.vocabulary.items()), sorted((word[::-1], number) for word, number in self.vocabulary.items()))

    def passages_holding(self, number: int) -> np.ndarray:
        return self._postings(number)[0]

    def idf(self, tokens: Sequence[str]) -> list[float]:
        """The inverse document frequency of each (stemmed) token; a token no passage holds gets the highest."""
        values = []
        for token in tokens:
            index = self.vocabulary.get(token)
            values.append(self._idf(sum(part.frequency(index) for part in self.parts) if index is not None else 0))
        return values


def write_segment(folder: Path, postings: Postings, words: Sequence[str], first_term: int,
                  settings: LexicalSettings) -> None:
    """A segment's postings, the words first seen in it (numbered from `first_term`) and how its terms were cut."""
    folder.mkdir(parents=True, exist_ok=True)
    postings.save(folder)
    (folder / "vocabulary.json").write_text(json.dumps(list(words), ensure_ascii=False))
    (folder / "params.json").write_text(json.dumps({
        "k1": K1, "b": B, "first_term": first_term, "tokenizer": tokenizer_id(settings),
        "stemmer": settings.stemmer, "compounds": settings.compounds}))
