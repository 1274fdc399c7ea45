"""A loaded generation: one immutable build of the index, read by a serving process.

    gen-<time>-<id>/         one complete build (behind the pointer, `folder`):
        manifest.json        model, settings, versions, counts, segments, file sizes and hashes
        store.sqlite         letters (stored text, metadata, file hash), sections, passages (id, text hash)
        arrays.npz           per passage: letter, offsets, section, FAISS slot; per sentence: offsets
        vectors.npy          passage vectors, float32, read by row (candidates rescored, narrow filters searched)
        sentence_vectors.npy sentence vectors, float16, read by passage when an answer needs them
        vectors.faiss        FAISS over the passage vectors, ids are slots (`vector_index`)
        tombstones.npy       slots FAISS still holds but no passage uses (HNSW cannot remove)
        lexical/             BM25 postings (term counts) and each passage's bag of words (`lexical`)
        seg-<id>/            the same files for letters appended since (`segments`), numbered on from the above

A generation is read as one: letters, sections, passages, sentences and FAISS slots are numbered
across its segments, so per-passage arrays are concatenated, stores and vector files read by
row in the segment that holds it, and each segment's FAISS index searched and the hits merged.

SQLite, one database per generation rather than one database with generations as rows: a
generation is written once and never changed, so a reader of the old pointer keeps a consistent
view while the next one is written, it is opened immutable (no locks, no WAL to replay on a
read-only share), the switch is one atomic rename of the pointer, and `rag verify` can hash it
like any other file. An ingest that only adds letters links the live generation's files into the
new one and writes the new letters as a segment; any other change copies the kept rows into one
new database (by SQL, about a second per 100,000 passages). A serving process holds the numbers per passage
(letter, offsets, section, slot) and per letter (date, ministry, kind) as numpy arrays, and the
FAISS and BM25 indexes; texts are read from SQLite by row when a hit or an answer needs them.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rag.files import NpyRows
from rag.index.chunking import Chunk
from rag.index.folder import (Stores, UnusableIndex, check_compatible, generation_arrays, live_build, segment_folders,
                              segment_records, shown)
from rag.index.lexical import LexicalIndex
from rag.index.vector_index import SlotBitmap, VectorIndex
from rag.readers.document import Document, document_from_json
from rag.settings import PROJECT_ROOT, ChunkSettings, IndexSettings, LexicalSettings

NO_DATE = np.iinfo(np.int32).min  # the day number of a letter without a date


@dataclass(frozen=True)
class LetterInfo:
    """What a serving process keeps of a letter: its metadata, not its text."""

    row: int
    doc_id: str
    title: str
    date: str | None
    date_sure: bool
    kind: str
    ministry: str | None
    source: str
    identifiers: tuple[tuple[str, str], ...]
    references: tuple[str, ...]
    ocr: bool


def _day_of(letter: "LetterInfo") -> int:
    try:
        return day_number(letter.date)
    except ValueError:
        raise UnusableIndex(f"letter {letter.doc_id} ({letter.source}) has the date {letter.date!r}, which the calendar "
                            f"does not have; correct or remove that file, then run `rag ingest` again") from None


def day_number(iso: str | None) -> int:
    return date.fromisoformat(iso).toordinal() if iso else int(NO_DATE)


# --- reading a generation ----------------------------------------------------------------

class Generation:
    """One loaded generation: arrays per passage and per letter in memory, texts in SQLite."""

    def __init__(self, folder: Path, manifest: dict, settings: IndexSettings) -> None:
        self.folder = folder
        self.manifest = manifest
        self.settings = settings
        # A shared lock for as long as this generation is served: an ingest never removes a generation in use.
        self._in_use = (folder / "manifest.json").open("rb")
        fcntl.flock(self._in_use, fcntl.LOCK_SH)
        segments = segment_folders(folder, manifest)
        self._stores = Stores(folder, manifest, check_same_thread=False)
        self._lock = threading.Lock()
        self._letters_cache: OrderedDict[int, Document] = OrderedDict()
        rows = self._query("SELECT row, doc_id, title, date, date_sure, kind, ministry, source, identifiers, refs, ocr "
                           "FROM letters ORDER BY row")
        self.letters: list[LetterInfo] = [_letter_info(*row) for row in rows]
        self._letter_of_id = {letter.doc_id: letter for letter in self.letters}
        self.sections: list[str] = [label for (label,) in self._query("SELECT label FROM sections ORDER BY row")]
        arrays = generation_arrays(folder, manifest)
        self.chunk_letter = arrays["chunk_letter"]
        self.chunk_start = arrays["chunk_start"]
        self.chunk_end = arrays["chunk_end"]
        self.chunk_section = arrays["chunk_section"]
        self.faiss_ids = arrays["faiss_ids"]  # each passage's slot in FAISS
        self.next_slot = int(arrays["next_slot"])
        self.sentence_first = arrays["sentence_first"]  # passage i's sentences: sentence_first[i]:sentence_first[i+1]
        self.sentence_start = arrays["sentence_start"]
        self.sentence_end = arrays["sentence_end"]
        self.letter_day = np.array([_day_of(letter) for letter in self.letters], dtype=np.int32)
        self.letter_sure = np.array([letter.date_sure for letter in self.letters], dtype=bool)
        self.letters_by_date = np.argsort(self.letter_day, kind="stable")
        # Read by passage when an answer needs them.
        self.sentence_vectors = NpyRows(*(segment / "sentence_vectors.npy" for segment in segments))
        # Read by row (a question's candidates, a narrow filter's passages): memory-mapped, a few rows would map
        # megabytes of the page cache around each into the process (1.3 GB after 40 answers at a million passages).
        self.vectors = NpyRows(*(segment / "vectors.npy" for segment in segments))
        # One FAISS index per segment: the first of the kind the corpus called for, those appended since exact.
        self.vector_indexes = [VectorIndex.load(segment, record["index"], settings)
                               for segment, record in zip(segments, segment_records(manifest))]
        self.lexical = LexicalIndex.load([segment / "lexical" for segment in segments])
        # Each letter's passages are one run of rows when the letter rows never go back (as an ingest writes them).
        ordered = bool(np.all(np.diff(self.chunk_letter) >= 0))
        self._letter_first = np.searchsorted(self.chunk_letter, np.arange(len(self.letters) + 1)) if ordered else None
        self.row_of_slot = np.full(self.next_slot, -1, dtype=np.int64)
        self.row_of_slot[self.faiss_ids] = np.arange(len(self.faiss_ids))
        # Tombstoned slots are kept out of every search by a bitmap of the live ones.
        self._live = SlotBitmap(self.faiss_ids, self.next_slot) if self.tombstones else None
        # Per letter, what the filters look at, as codes into the few distinct values, so a filter costs numpy
        # work over integers, not string comparisons per letter.
        self.ministries, self.letter_ministry = _codes([(letter.ministry or "").lower() for letter in self.letters])
        self.kinds, self.letter_kind = _codes([letter.kind.lower() for letter in self.letters])
        self.letters_of_dossier: dict[str, list[int]] = {}
        for letter in self.letters:
            own = {value for name, value in letter.identifiers if name == "dossier"}
            cited = {reference.rsplit("-", 1)[0] for reference in letter.references}
            for dossier in own | cited:
                self.letters_of_dossier.setdefault(dossier, []).append(letter.row)

    def __len__(self) -> int:
        return len(self.chunk_letter)

    @property
    def stored_vectors(self) -> int:
        """Vectors in the segments' FAISS indexes, tombstones included."""
        return sum(index.stored for index in self.vector_indexes)

    @property
    def tombstones(self) -> int:
        return sum(len(index.tombstones) for index in self.vector_indexes)

    def _query(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        """The rows of every segment's store, in order."""
        with self._lock:
            return self._stores.all(sql, parameters)

    def _query_one(self, sql: str, parameters: Sequence = ()) -> tuple | None:
        with self._lock:
            return self._stores.one(sql, parameters)

    def close(self) -> None:
        self._stores.close()
        self.vectors.close()
        self.sentence_vectors.close()
        self._in_use.close()

    # letters

    def letter(self, doc_id: str) -> LetterInfo | None:
        return self._letter_of_id.get(doc_id)

    def document(self, doc_id: str) -> Document | None:
        letter = self._letter_of_id.get(doc_id)
        return self.document_at(letter.row) if letter else None

    def document_at(self, row: int) -> Document:
        with self._lock:
            cached = self._letters_cache.get(row)
            if cached is not None:
                self._letters_cache.move_to_end(row)
                return cached
        meta, text = self._query_one("SELECT meta, text FROM letters WHERE row = ?", (row,))
        document = document_from_json({**json.loads(meta), "text": text})
        with self._lock:
            self._letters_cache[row] = document
            while len(self._letters_cache) > self.settings.letter_cache:
                self._letters_cache.popitem(last=False)
        return document

    @property
    def documents(self) -> "_Documents":
        return _Documents(self)

    @property
    def letter_files(self) -> list[Path]:
        """The files the indexed letters were read from."""
        return [PROJECT_ROOT / source for (source,) in self._query("SELECT source FROM letters ORDER BY row")]

    # passages

    def chunk(self, row: int) -> Chunk:
        letter = self.letters[int(self.chunk_letter[row])]
        start, end = int(self.chunk_start[row]), int(self.chunk_end[row])
        text = self.document_at(letter.row).text[start:end]
        return Chunk(self.chunk_id(row), letter.doc_id, letter.title, letter.date, self.sections[self.chunk_section[row]],
                     start, end, text, letter.source, embed_text="")

    def chunk_id(self, row: int) -> str:
        (chunk_id,) = self._query_one("SELECT chunk_id FROM chunks WHERE row = ?", (int(row),))
        return chunk_id

    def row_of_chunk(self, chunk_id: str) -> int | None:
        found = self._query_one("SELECT row FROM chunks WHERE chunk_id = ?", (chunk_id,))
        return found[0] if found else None

    def passages_of(self, letter_row: int) -> np.ndarray:
        """The rows of a letter's passages, in order (an ingest writes each letter's passages together)."""
        return np.flatnonzero(self.chunk_letter == letter_row) if self._letter_first is None else \
            np.arange(self._letter_first[letter_row], self._letter_first[letter_row + 1])

    @property
    def chunks(self) -> "_Chunks":
        return _Chunks(self)

    def sentences_of(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A passage's sentences: start and end offsets in the letter, and their vectors."""
        first, last = int(self.sentence_first[row]), int(self.sentence_first[row + 1])
        return self.sentence_start[first:last], self.sentence_end[first:last], self.sentence_vectors.block(first, last)

    def dense_search(self, query_vector: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The best passage rows for one question; `mask` (a boolean per row) restricts the search.

        A filter that admits few passages is searched exactly over their vectors; a broader one hands FAISS
        a bitmap of the slots it may return, with a graph search as deep as the filter is narrow.
        """
        allowed = len(self) if mask is None else int(mask.sum())
        k = min(k, allowed)
        if k <= 0:
            return []
        vector = np.asarray(query_vector, dtype=np.float32)
        if mask is not None and allowed <= self.settings.exact_filter_passages:
            rows = np.flatnonzero(mask)
            scores = np.asarray(self.vectors[rows], dtype=np.float32) @ vector
            best = np.argsort(-scores, kind="stable")[:k]
            return [(int(rows[i]), float(scores[i])) for i in best]
        bitmap = self._live if mask is None else SlotBitmap(self.faiss_ids[mask], self.next_slot)
        depth = 0 if mask is None else min(4 * k * len(self) // allowed, self.settings.filtered_search_depth)
        share = allowed / len(self)
        found_scores, found_slots = [], []
        for index in self.vector_indexes:  # each segment's best, merged
            # Approximate: twice the candidates, rescored exactly from the vectors on disk (a few pages per question).
            scores, slots = index.search(vector, k if index.kind == "flat" else min(2 * k, allowed), bitmap, depth, share)
            found_scores.append(scores[slots >= 0])
            found_slots.append(slots[slots >= 0])
        if all(index.kind == "flat" for index in self.vector_indexes):
            scores, slots = np.concatenate(found_scores), np.concatenate(found_slots)
            best = np.argsort(-scores, kind="stable")[:k]
            return [(int(self.row_of_slot[slots[i]]), float(scores[i])) for i in best]
        rows = np.sort(self.row_of_slot[np.concatenate(found_slots)])
        scores = np.asarray(self.vectors[rows], dtype=np.float32) @ vector
        best = np.argsort(-scores, kind="stable")[:k]
        return [(int(rows[i]), float(scores[i])) for i in best]


class _Documents:
    """The stored letters by doc_id, read on demand."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation

    def __getitem__(self, doc_id: str) -> Document:
        document = self._generation.document(doc_id)
        if document is None:
            raise KeyError(doc_id)
        return document

    def get(self, doc_id: str, default=None):
        return self._generation.document(doc_id) or default

    def __contains__(self, doc_id: object) -> bool:
        return self._generation.letter(str(doc_id)) is not None

    def __len__(self) -> int:
        return len(self._generation.letters)

    def __iter__(self) -> Iterator[str]:
        return (letter.doc_id for letter in self._generation.letters)

    def keys(self) -> list[str]:
        return list(self)

    def values(self) -> list[Document]:
        return [self._generation.document_at(letter.row) for letter in self._generation.letters]

    def items(self) -> list[tuple[str, Document]]:
        return [(document.doc_id, document) for document in self.values()]


class _Chunks(Sequence):
    """The passages by row, built on demand from the arrays and the stored letters."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation

    def __len__(self) -> int:
        return len(self._generation)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self._generation.chunk(r) for r in range(*row.indices(len(self)))]
        return self._generation.chunk(int(row))


def _codes(values: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct values, and each item's position among them."""
    distinct, codes = np.unique(np.array(values, dtype=object), return_inverse=True) if values else (np.array([]), np.array([]))
    return [str(value) for value in distinct], codes.astype(np.int32)


def _letter_info(row: int, doc_id: str, title: str, date_: str | None, date_sure: int, kind: str, ministry: str | None,
                 source: str, identifiers: str, references: str, ocr: int) -> LetterInfo:
    return LetterInfo(row, doc_id, title, date_, bool(date_sure), kind, ministry, source,
                      tuple(tuple(pair) for pair in json.loads(identifiers)), tuple(json.loads(references)), bool(ocr))


def load_index(index_dir: Path, model_name: str, fingerprint: str | None,
               chunk_settings: ChunkSettings = ChunkSettings(), index_settings: IndexSettings = IndexSettings(),
               lexical_settings: LexicalSettings = LexicalSettings()) -> Generation:
    """The live generation, checked. A load that meets an ingest switching generations tries once more."""
    index_dir = Path(index_dir)
    build = live_build(index_dir)
    if build is None:
        raise UnusableIndex(f"{shown(index_dir)}: no index here; run `rag ingest --index {shown(index_dir)}`")
    try:
        return _load_generation(index_dir, *build, model_name, fingerprint, chunk_settings, index_settings, lexical_settings)
    except UnusableIndex:
        again = live_build(index_dir)
        if again is None or again[0] == build[0]:
            raise
        return _load_generation(index_dir, *again, model_name, fingerprint, chunk_settings, index_settings,
                                lexical_settings)


def _load_generation(index_dir: Path, folder: Path, manifest: dict, model_name: str, fingerprint: str | None,
                     chunk_settings: ChunkSettings, index_settings: IndexSettings,
                     lexical_settings: LexicalSettings) -> Generation:
    check_compatible(manifest, index_dir, model_name, fingerprint, chunk_settings, lexical_settings)
    damaged = f"{shown(index_dir)}: the index is damaged"
    rebuild = f"run `rag ingest --index {shown(index_dir)}` to rebuild it"
    # Sizes on every load (cheap); full content hashes after ingest and on demand (`rag verify`).
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.exists() or path.stat().st_size != expected["size"]:
            raise UnusableIndex(f"{damaged} ({name} does not match its manifest); {rebuild}")
    return opened(folder, manifest, index_settings, damaged, rebuild)


def opened(folder: Path, manifest: dict, index_settings: IndexSettings, damaged: str = "the index is damaged",
           rebuild: str = "run `rag ingest` to rebuild it") -> Generation:
    """A generation loaded as a serving process loads it, with its parts checked against each other: what
    `rag ingest` does to a new generation before the pointer moves to it, and every server on every load."""
    try:
        generation = Generation(folder, manifest, index_settings)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, sqlite3.Error) as error:
        raise UnusableIndex(f"{damaged} ({type(error).__name__}); {rebuild}") from None
    stored = generation.stored_vectors - generation.tombstones
    if not (stored == len(generation) == manifest["counts"]["chunks"] == generation.lexical.count == len(generation.vectors)):
        generation.close()
        raise UnusableIndex(f"{damaged} ({stored} vectors for {len(generation)} passages); {rebuild}")
    return generation
