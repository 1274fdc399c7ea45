"""The index folder: one immutable generation per build, behind an atomically replaced pointer.

    CURRENT                  the name of the live generation
    gen-<time>-<id>/         one complete build:
        manifest.json        model, settings, versions, counts, letters (file hashes), file sizes and hashes
        store.sqlite         letters (stored text and metadata), passages and sentences (offsets)
        vectors.npy          passage vectors, float32 (read by ingest to reuse them, never by serving)
        sentence_vectors.npy sentence vectors, float16, memory-mapped at answer time
        vectors.faiss        FAISS over the passage vectors, ids derived from chunk ids
        lexical/             BM25 (bm25s)

SQLite, one database per generation: a generation is written once and never changed, so a
reader of the old pointer keeps a consistent view while the next one is written, and the
switch is one atomic rename of the pointer. The price is that an ingest copies the unchanged
rows into its new database (seconds at 100,000 passages). A serving process holds the numbers
per passage (letter, offsets, section, date) as numpy arrays and the FAISS and BM25 indexes;
texts are read from SQLite by row when a hit or an answer needs them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rag import config
from rag.chunking import Chunk, ChunkSettings
from rag.documents import READER_VERSION, Document, document_from_json
from rag.errors import RagError
from rag.files import NpyRows, file_sha256
from rag.lexical import TOKENIZER_VERSION as LEXICAL_TOKENIZER_VERSION
from rag.lexical import LexicalIndex

FORMAT_VERSION = 2
POINTER = "CURRENT"
NO_DATE = np.iinfo(np.int32).min  # the day number of a letter without a date
LETTER_CACHE = 256  # stored letters kept in memory, most recently used
FILTER_BY_OVERFETCH = 0.05  # a filter admitting at least this share of passages is applied after a deeper search


class IndexError_(RagError):
    """The index is missing, damaged, or built with other settings."""


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


def shown(index_dir: Path) -> str:
    """The folder as a user would type it: `index/` inside the project, else the path given."""
    return config.display_path(Path(index_dir))


def day_number(iso: str | None) -> int:
    return date.fromisoformat(iso).toordinal() if iso else int(NO_DATE)


# --- the pointer and the manifest --------------------------------------------------------

def current_generation_name(index_dir: Path) -> str | None:
    """The name CURRENT points at (None when there is no pointer); one small read, cheap enough to poll."""
    try:
        return (Path(index_dir) / POINTER).read_text(errors="replace").strip() or None
    except OSError:
        return None


def current_generation(index_dir: Path) -> Path | None:
    index_dir = Path(index_dir)
    if not (index_dir / POINTER).exists():
        return None
    name = current_generation_name(index_dir) or ""
    folder = index_dir / name
    if not name or "/" in name or not name.startswith("gen-") or not folder.is_dir():
        raise IndexError_(f"{shown(index_dir)}: the index pointer names a missing build ({name[:40]!r}); "
                          f"run `rag ingest --index {shown(index_dir)}`")
    return folder


def live_build(index_dir: Path) -> tuple[Path, dict] | None:
    """The live generation and its manifest, from one reading of the pointer (an ingest may switch it)."""
    folder = current_generation(index_dir)
    if folder is None:
        return None
    try:
        return folder, json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as error:
        raise IndexError_(f"{shown(index_dir)}: the manifest is unreadable ({type(error).__name__}); "
                          f"run `rag ingest --index {shown(index_dir)}`") from None


def read_manifest(index_dir: Path) -> dict | None:
    build = live_build(index_dir)
    return build[1] if build else None


def check_compatible(manifest: dict, index_dir: Path, model_name: str, fingerprint: str | None,
                     chunk_settings: ChunkSettings) -> None:
    """Refuse an index of another format, model, chunking, tokenizer or reader, in one line that says what to run.

    `fingerprint` None checks the model's name only: a process that has not loaded the model yet can
    refuse a foreign index before spending seconds on it.
    """
    where = shown(index_dir)
    rebuild = f"run `rag ingest --index {where}` (add --model to choose the model) to rebuild it"
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexError_(f"{where}: the index has format {manifest.get('format_version')}, this rag reads {FORMAT_VERSION}; {rebuild}")
    built_with = manifest["model"]
    if built_with["name"] != model_name or (fingerprint is not None and built_with["fingerprint"] != fingerprint):
        raise IndexError_(f"{where}: the index was built with the model {built_with['name']!r} "
                          f"({built_with['fingerprint'][:19]}), not {model_name!r}; {rebuild}")
    if manifest.get("lexical", {}).get("tokenizer_version") != LEXICAL_TOKENIZER_VERSION:
        raise IndexError_(f"{where}: the index was built with another lexical tokenizer; {rebuild}")
    if manifest["chunking"] != chunk_settings.as_manifest():
        raise IndexError_(f"{where}: the index was built with other chunk settings ({manifest['chunking']}); {rebuild}")
    if manifest.get("reader", {}).get("version") != READER_VERSION:
        raise IndexError_(
            f"{where}: its letters were read by another version of the letter reader "
            f"({manifest.get('reader', {}).get('version')}, this rag reads with {READER_VERSION}); "
            f"run `rag ingest LETTERS --index {where}` with the letters it holds to re-read them"
        )


# --- reading a generation ----------------------------------------------------------------

class Generation:
    """One loaded generation: arrays per passage and per letter in memory, texts in SQLite."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        import faiss

        self.folder = folder
        self.manifest = manifest
        self._database = sqlite3.connect(f"file:{folder / 'store.sqlite'}?mode=ro&immutable=1", uri=True,
                                         check_same_thread=False)
        self._lock = threading.Lock()
        self._letters_cache: OrderedDict[int, Document] = OrderedDict()
        rows = self._query("SELECT row, doc_id, meta FROM letters ORDER BY row")
        self.letters: list[LetterInfo] = [_letter_info(row, doc_id, json.loads(meta)) for row, doc_id, meta in rows]
        self._letter_of_id = {letter.doc_id: letter for letter in self.letters}
        self.sections: list[str] = [label for (label,) in self._query("SELECT label FROM sections ORDER BY row")]
        arrays = np.load(folder / "arrays.npz")
        self.chunk_letter = arrays["chunk_letter"]
        self.chunk_start = arrays["chunk_start"]
        self.chunk_end = arrays["chunk_end"]
        self.chunk_section = arrays["chunk_section"]
        self.faiss_ids = arrays["faiss_ids"]
        self.sentence_first = arrays["sentence_first"]  # passage i's sentences: sentence_first[i]:sentence_first[i+1]
        self.sentence_start = arrays["sentence_start"]
        self.sentence_end = arrays["sentence_end"]
        self.letter_day = np.array([day_number(letter.date) for letter in self.letters], dtype=np.int32)
        self.letter_sure = np.array([letter.date_sure for letter in self.letters], dtype=bool)
        self.letters_by_date = np.argsort(self.letter_day, kind="stable")
        self.sentence_vectors = NpyRows(folder / "sentence_vectors.npy")  # read by passage when an answer needs them
        self.faiss_index = faiss.read_index(str(folder / "vectors.faiss"))
        self.lexical = LexicalIndex.load(folder / "lexical")
        # FAISS ids -> rows without a dict of a million Python ints: the ids sorted, and where each came from.
        self._id_order = np.argsort(self.faiss_ids, kind="stable")
        self._sorted_ids = self.faiss_ids[self._id_order]
        # Per letter, what the filters look at, so a filter costs numpy work, not a Python loop per question.
        self.letter_ministry = np.array([(letter.ministry or "").lower() for letter in self.letters], dtype=object)
        self.letter_kind = np.array([letter.kind.lower() for letter in self.letters], dtype=object)
        self.letters_of_dossier: dict[str, list[int]] = {}
        for letter in self.letters:
            own = {value for name, value in letter.identifiers if name == "dossier"}
            cited = {reference.rsplit("-", 1)[0] for reference in letter.references}
            for dossier in own | cited:
                self.letters_of_dossier.setdefault(dossier, []).append(letter.row)

    def __len__(self) -> int:
        return len(self.chunk_letter)

    def _query(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._database.execute(sql, parameters).fetchall()

    def close(self) -> None:
        self._database.close()
        self.sentence_vectors.close()

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
        ((meta, text),) = self._query("SELECT meta, text FROM letters WHERE row = ?", (row,))
        document = document_from_json({**json.loads(meta), "text": text})
        with self._lock:
            self._letters_cache[row] = document
            while len(self._letters_cache) > LETTER_CACHE:
                self._letters_cache.popitem(last=False)
        return document

    @property
    def documents(self) -> "_Documents":
        return _Documents(self)

    @property
    def letter_files(self) -> list[Path]:
        """The files the indexed letters were read from."""
        return [config.PROJECT_ROOT / entry["source"] for entry in self.manifest["letters"].values()]

    # passages

    def chunk(self, row: int) -> Chunk:
        letter = self.letters[int(self.chunk_letter[row])]
        start, end = int(self.chunk_start[row]), int(self.chunk_end[row])
        text = self.document_at(letter.row).text[start:end]
        return Chunk(self.chunk_id(row), letter.doc_id, letter.title, letter.date, self.sections[self.chunk_section[row]],
                     start, end, text, letter.source, embed_text="")

    def chunk_id(self, row: int) -> str:
        ((chunk_id,),) = self._query("SELECT chunk_id FROM chunks WHERE row = ?", (int(row),))
        return chunk_id

    def chunk_row(self, chunk_id: str) -> int | None:
        found = self._query("SELECT row FROM chunks WHERE chunk_id = ?", (chunk_id,))
        return found[0][0] if found else None

    @property
    def chunks(self) -> "_Chunks":
        return _Chunks(self)

    def sentences_of(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A passage's sentences: start and end offsets in the letter, and their vectors."""
        first, last = int(self.sentence_first[row]), int(self.sentence_first[row + 1])
        return self.sentence_start[first:last], self.sentence_end[first:last], self.sentence_vectors.block(first, last)

    def rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        return self._id_order[np.searchsorted(self._sorted_ids, ids)]

    def dense_search(self, query_vector: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The best passage rows for one question; `mask` (a boolean per row) restricts the search.

        A filter that admits many passages searches more deeply and drops the others (cheap); one that admits
        few hands FAISS the ids it may return. Either way the cost does not grow with the corpus in Python.
        """
        import faiss

        allowed = len(self) if mask is None else int(mask.sum())
        k = min(k, allowed)
        if k <= 0:
            return []
        vector = np.asarray(query_vector, dtype=np.float32)[None, :]
        if mask is None or allowed >= FILTER_BY_OVERFETCH * len(self):
            depth = k if mask is None else min(len(self), int(k * len(self) / allowed * 2) + k)
            scores, ids = self.faiss_index.search(vector, depth)
            found = [(row, float(score)) for row, score, i in zip(self.rows_of_ids(np.maximum(ids[0], 0)), scores[0], ids[0])
                     if i >= 0 and (mask is None or mask[row])]
            if len(found) >= k or depth >= len(self):
                return [(int(row), score) for row, score in found[:k]]
        selector = faiss.IDSelectorBatch(self.faiss_ids[mask])
        params = _search_parameters(self.manifest["index"]["kind"], selector, self.manifest["index"]["settings"])
        scores, ids = self.faiss_index.search(vector, k, params=params)
        return [(int(row), float(score)) for row, score, i in zip(self.rows_of_ids(np.maximum(ids[0], 0)), scores[0], ids[0])
                if i >= 0]


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


def _letter_info(row: int, doc_id: str, meta: dict) -> LetterInfo:
    return LetterInfo(row, doc_id, meta["title"], meta["date"], meta.get("date_sure", True), meta["kind"],
                      meta.get("ministry"), meta["source"], tuple(tuple(pair) for pair in meta.get("identifiers", ())),
                      tuple(meta.get("references", ())), meta.get("ocr", False))


def _search_parameters(kind: str, selector, settings: dict):
    import faiss

    if kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=settings["hnsw_ef_search"])
    if kind == "ivf":
        return faiss.SearchParametersIVF(sel=selector, nprobe=settings["ivf_nprobe"])
    return faiss.SearchParameters(sel=selector)


def load_index(index_dir: Path, model_name: str, fingerprint: str | None,
               chunk_settings: ChunkSettings = ChunkSettings()) -> Generation:
    """The live generation, checked. A load that meets an ingest switching generations tries once more."""
    index_dir = Path(index_dir)
    build = live_build(index_dir)
    if build is None:
        raise IndexError_(f"{shown(index_dir)}: no index here; run `rag ingest --index {shown(index_dir)}`")
    try:
        return _load_generation(index_dir, *build, model_name, fingerprint, chunk_settings)
    except IndexError_:
        again = live_build(index_dir)
        if again is None or again[0] == build[0]:
            raise
        return _load_generation(index_dir, *again, model_name, fingerprint, chunk_settings)


def _load_generation(index_dir: Path, folder: Path, manifest: dict, model_name: str, fingerprint: str | None,
                     chunk_settings: ChunkSettings) -> Generation:
    check_compatible(manifest, index_dir, model_name, fingerprint, chunk_settings)
    damaged = f"{shown(index_dir)}: the index is damaged"
    rebuild = f"run `rag ingest --index {shown(index_dir)}` to rebuild it"
    # Sizes on every load (cheap); full content hashes after ingest and on demand (`rag verify`).
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.exists() or path.stat().st_size != expected["size"]:
            raise IndexError_(f"{damaged} ({name} does not match its manifest); {rebuild}")
    try:
        generation = Generation(folder, manifest)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, sqlite3.Error) as error:
        raise IndexError_(f"{damaged} ({type(error).__name__}); {rebuild}") from None
    if not (generation.faiss_index.ntotal == len(generation) == manifest["counts"]["chunks"]
            == generation.lexical.count):
        raise IndexError_(f"{damaged} ({generation.faiss_index.ntotal} vectors for {len(generation)} passages); {rebuild}")
    return generation


def verify(index_dir: Path) -> list[str]:
    """Every file of the live generation against the size and SHA-256 its manifest records; the mismatches."""
    build = live_build(Path(index_dir))
    if build is None:
        raise IndexError_(f"{shown(index_dir)}: no index here; run `rag ingest --index {shown(index_dir)}`")
    folder, manifest = build
    problems = []
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
            problems.append(f"{name}: does not match its manifest")
    return problems


# --- writing a generation ----------------------------------------------------------------

@dataclass(frozen=True)
class IndexSettings:
    kind: str = "auto"  # auto, flat, hnsw, ivf
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 16

    def resolved_kind(self, count: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if count <= config.EXACT_SEARCH_LIMIT else "hnsw"


def write_store(folder: Path, documents: Sequence[Document], file_hashes: dict[str, str], chunks: Sequence[Chunk],
                sentences: Sequence[Sequence[tuple[int, int]]], faiss_ids: np.ndarray) -> None:
    """The SQLite store and the per-passage arrays of a generation being written."""
    letter_row = {document.doc_id: row for row, document in enumerate(documents)}
    section_row: dict[str, int] = {}
    database = sqlite3.connect(folder / "store.sqlite")
    try:
        database.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            "CREATE TABLE letters (row INTEGER PRIMARY KEY, doc_id TEXT UNIQUE NOT NULL, file_sha256 TEXT, meta TEXT, text TEXT);"
            "CREATE TABLE sections (row INTEGER PRIMARY KEY, label TEXT UNIQUE NOT NULL);"
            "CREATE TABLE chunks (row INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL, letter INTEGER, start INTEGER,"
            " end INTEGER, text_hash TEXT);"
        )
        database.executemany("INSERT INTO letters VALUES (?, ?, ?, ?, ?)", (
            (row, document.doc_id, file_hashes.get(document.doc_id), json.dumps(_meta(document), ensure_ascii=False),
             document.text) for row, document in enumerate(documents)))
        for chunk in chunks:
            section_row.setdefault(chunk.section, len(section_row))
        database.executemany("INSERT INTO sections VALUES (?, ?)", ((row, label) for label, row in section_row.items()))
        database.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", (
            (row, chunk.chunk_id, letter_row[chunk.doc_id], chunk.start, chunk.end, text_hash(chunk.embed_text))
            for row, chunk in enumerate(chunks)))
        database.commit()
    finally:
        database.close()
    counts = np.array([len(spans) for spans in sentences], dtype=np.int64)
    flat = [span for spans in sentences for span in spans]
    np.savez(
        folder / "arrays.npz",
        chunk_letter=np.array([letter_row[c.doc_id] for c in chunks], dtype=np.int32),
        chunk_start=np.array([c.start for c in chunks], dtype=np.int32),
        chunk_end=np.array([c.end for c in chunks], dtype=np.int32),
        chunk_section=np.array([section_row[c.section] for c in chunks], dtype=np.int32),
        faiss_ids=faiss_ids.astype(np.int64),
        sentence_first=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        sentence_start=np.array([s for s, _e in flat], dtype=np.int32),
        sentence_end=np.array([e for _s, e in flat], dtype=np.int32),
    )


def _meta(document: Document) -> dict:
    meta = asdict(document)
    del meta["text"]
    return meta


def text_hash(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()


def stored_text_hashes(folder: Path) -> list[str]:
    """The embedded-text hash of every passage of a generation, by row (what ingest reuses vectors by)."""
    database = sqlite3.connect(f"file:{folder / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return [value for (value,) in database.execute("SELECT text_hash FROM chunks ORDER BY row")]
    finally:
        database.close()


def stored_documents(folder: Path, doc_ids: set[str]) -> dict[str, Document]:
    """Stored letters of a generation, as they were read, for an ingest that reuses them unchanged."""
    if not doc_ids:
        return {}
    database = sqlite3.connect(f"file:{folder / 'store.sqlite'}?mode=ro", uri=True)
    try:
        found = {}
        for doc_id, meta, text in database.execute("SELECT doc_id, meta, text FROM letters"):
            if doc_id in doc_ids:
                found[doc_id] = document_from_json({**json.loads(meta), "text": text})
        return found
    finally:
        database.close()


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
