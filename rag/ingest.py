"""Letters -> a new generation of the index: incremental, checkpointed, crash-safe.

Letters are compared by the hash of their file: an unchanged letter read by the same reader
version is reused as stored, and a passage whose embedded text was embedded before (in the
live generation or in a checkpoint of an interrupted ingest) keeps its vectors. New passages
are embedded in batches, each written to `.embedded/` as it is done, so a killed ingest
resumes where it stopped. The generation is written beside the live one, fsynced, and only
then made live by replacing `CURRENT`; the previous generation stays on disk for readers of
the old pointer.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag import __version__
from rag.chunking import Chunk, ChunkSettings, chunk_document, sentence_spans
from rag.documents import READER_VERSION, Document, cannot_read, doc_id_for, read_document, refuse_duplicate_ids
from rag.errors import InputError, RagError
from rag.files import file_sha256
from rag.lexical import TOKENIZER_VERSION as LEXICAL_TOKENIZER_VERSION
from rag.lexical import LexicalIndex
from rag.readers import letter_paths
from rag.readers.ocr import MissingOCR
from rag.store import (
    FORMAT_VERSION, POINTER, IndexSettings, current_generation_name, fsync_folder, live_build, shown, stored_documents,
    stored_text_hashes, text_hash, write_store,
)

EMBED_BATCH = 64  # passages embedded, and checkpointed, at a time
CHECKPOINTS = ".embedded"

# (texts, sentence spans per text) -> (vectors, sentence vectors, all texts' spans in order)
Embed = Callable[[list[str], list[list[tuple[int, int]]]], tuple[np.ndarray, np.ndarray]]


@dataclass
class IngestSummary:
    letters: int
    read: int  # letters read from their files (the rest reused as stored)
    chunks: int
    embedded: int
    reused: int
    removed: int
    seconds: float
    changed: bool
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        if not self.changed:
            return f"index up to date: {self.letters} letters, {self.chunks} chunks ({self.seconds:.2f} s)"
        return (
            f"indexed {self.letters} letters ({self.read} read), {self.chunks} chunks: {self.embedded} newly embedded, "
            f"{self.reused} reused, {self.removed} letters removed ({self.seconds:.1f} s)"
        )


def faiss_id(chunk_id: str) -> int:
    """A FAISS id that belongs to the chunk itself, so rows can never drift to another chunk."""
    import hashlib

    return int.from_bytes(hashlib.sha1(chunk_id.encode()).digest()[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def fault_point(name: str, count: int | None = None) -> None:
    """Die here, as a power cut would, when RAG_FAULT names this point (`after-embed-batch:2`, `while-writing`,
    `before-pointer-switch`, `after-pointer-switch`): the crash-safety tests make faults happen at named points."""
    wanted = os.environ.get("RAG_FAULT", "")
    point, _, number = wanted.partition(":")
    if point == name and (not number or count is None or number == str(count)):
        os.kill(os.getpid(), signal.SIGKILL)


def ingest(paths: Sequence[str | Path], index_dir: Path, model_name: str, fingerprint: str, embed: Embed,
           chunk_settings: ChunkSettings = ChunkSettings(), index_settings: IndexSettings = IndexSettings()) -> IngestSummary:
    """Bring the index in line with the letters at `paths`, embedding only what is new.

    One writer at a time: a second `rag ingest` on the same folder is refused, not interleaved.
    """
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RagError(f"{shown(index_dir)}: another `rag ingest` is writing this index; wait for it to finish") from None
        return _ingest(paths, index_dir, model_name, fingerprint, embed, chunk_settings, index_settings)


def _ingest(paths, index_dir: Path, model_name: str, fingerprint: str, embed: Embed, chunk_settings: ChunkSettings,
            index_settings: IndexSettings) -> IngestSummary:
    started = time.perf_counter()
    files = letter_paths(paths)
    hashes = {}
    for path in files:
        try:
            hashes[path] = file_sha256(path)
        except OSError as error:
            raise cannot_read(path, error) from None
    previous = _previous_build(index_dir, model_name, fingerprint)
    old_letters = previous.manifest["letters"] if previous else {}
    # Stored text is reused only when today's reader would read the letter the same way.
    same_reader = previous is not None and previous.manifest.get("reader", {}).get("version") == READER_VERSION
    by_hash = {entry["file_sha256"]: doc_id for doc_id, entry in old_letters.items()} if same_reader else {}
    kept_ids = {by_hash[hashes[path]] for path in files if by_hash.get(hashes[path]) == doc_id_for(path)}
    reused_documents = stored_documents(previous.folder, kept_ids) if previous else {}

    documents: list[Document] = []
    file_hashes: dict[str, str] = {}
    warnings: list[str] = []
    for path in files:
        document = reused_documents.get(doc_id_for(path)) if by_hash.get(hashes[path]) == doc_id_for(path) else None
        if document is None:
            try:
                document = read_document(path)
            except MissingOCR as missing:  # a scan without Tesseract: skipped, said, the rest indexed
                warnings.append(str(missing))
                continue
            warnings.extend(document.warnings)
        documents.append(document)
        file_hashes[document.doc_id] = hashes[path]
    refuse_duplicate_ids(documents)

    current_ids = {d.doc_id for d in documents}
    removed = len(set(old_letters) - current_ids)
    read_count = sum(d.doc_id not in kept_ids for d in documents)
    if previous is not None and read_count == 0 and current_ids == set(old_letters) and (
            previous.manifest["index"]["settings"] == asdict(index_settings)
            and previous.manifest["chunking"] == chunk_settings.as_manifest()
            and previous.manifest.get("lexical", {}).get("tokenizer_version") == LEXICAL_TOKENIZER_VERSION):
        counts = previous.manifest["counts"]
        return IngestSummary(counts["letters"], 0, counts["chunks"], 0, counts["chunks"], 0,
                             time.perf_counter() - started, changed=False, warnings=warnings)

    chunks = [chunk for document in documents for chunk in chunk_document(document, chunk_settings)]
    texts = {d.doc_id: d.text for d in documents}
    sentences = [sentence_spans(texts[c.doc_id], c.start, c.end) for c in chunks]
    pool = _VectorPool(index_dir / CHECKPOINTS, previous)
    missing = [row for row, chunk in enumerate(chunks) if not pool.has(text_hash(chunk.embed_text))]
    missing = list({text_hash(chunks[row].embed_text): row for row in missing}.values())
    for number, first in enumerate(range(0, len(missing), EMBED_BATCH), start=1):
        batch = missing[first:first + EMBED_BATCH]
        batch_texts = [chunks[row].embed_text for row in batch]
        # Sentence spans relative to the embedded text, which ends with the passage.
        header = [len(chunks[row].embed_text) - len(chunks[row].text) - chunks[row].start for row in batch]
        spans = [[(start + shift, end + shift) for start, end in sentences[row]] for row, shift in zip(batch, header)]
        vectors, sentence_vectors = embed(batch_texts, spans)
        pool.checkpoint([text_hash(text) for text in batch_texts], vectors, sentence_vectors, [len(s) for s in spans])
        fault_point("after-embed-batch", number)

    _write_generation(index_dir, documents, file_hashes, chunks, sentences, pool, model_name, fingerprint,
                      chunk_settings, index_settings)
    pool.clear()
    return IngestSummary(len(documents), read_count, len(chunks), len(missing), len(chunks) - len(missing), removed,
                         time.perf_counter() - started, changed=True, warnings=warnings)


@dataclass
class _Previous:
    folder: Path
    manifest: dict


def _previous_build(index_dir: Path, model_name: str, fingerprint: str) -> _Previous | None:
    """The live build, when it can lend to the next one: vectors of the same model, stored letters."""
    try:
        build = live_build(index_dir)
    except RagError:
        return None
    if build is None:
        return None
    folder, manifest = build
    built_with = manifest.get("model", {})
    if manifest.get("format_version") != FORMAT_VERSION or (built_with.get("name"), built_with.get("fingerprint")) != (
            model_name, fingerprint):
        return None
    return _Previous(folder, manifest)


class _VectorPool:
    """Vectors by embedded-text hash: from the live generation, from checkpoints, and new ones."""

    def __init__(self, checkpoints: Path, previous: _Previous | None) -> None:
        self.checkpoints = checkpoints
        self.sources: list[tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray]] = []
        if previous is not None:
            try:
                hashes = stored_text_hashes(previous.folder)
                arrays = np.load(previous.folder / "arrays.npz")
                vectors = np.load(previous.folder / "vectors.npy", mmap_mode="r")
                sentence_vectors = np.load(previous.folder / "sentence_vectors.npy", mmap_mode="r")
                if len(hashes) == len(vectors):
                    self._add(hashes, vectors, sentence_vectors, arrays["sentence_first"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged live build lends nothing; everything is embedded anew
        for path in sorted(checkpoints.glob("batch-*.npz")) if checkpoints.exists() else []:
            try:
                saved = np.load(path)
                self._add(list(saved["hashes"]), saved["vectors"], saved["sentence_vectors"], saved["sentence_first"])
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)  # a checkpoint cut off by the crash it was for

    def _add(self, hashes, vectors, sentence_vectors, sentence_first) -> None:
        self.sources.append(({str(h): row for row, h in enumerate(hashes)}, vectors, sentence_vectors, sentence_first))

    def has(self, key: str) -> bool:
        return any(key in rows for rows, *_ in self.sources)

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        for rows, vectors, sentence_vectors, first in self.sources:
            row = rows.get(key)
            if row is not None:
                return vectors[row], sentence_vectors[first[row]:first[row + 1]]
        raise KeyError(key)

    def checkpoint(self, hashes: list[str], vectors: np.ndarray, sentence_vectors: np.ndarray, counts: list[int]) -> None:
        first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.checkpoints.mkdir(exist_ok=True)
        path = self.checkpoints / f"batch-{len(list(self.checkpoints.glob('batch-*.npz'))):06d}-{uuid.uuid4().hex[:6]}.npz"
        temporary = path.with_suffix(".partial.npz")
        np.savez(temporary, hashes=np.array(hashes), vectors=vectors, sentence_vectors=sentence_vectors.astype(np.float16),
                 sentence_first=first)
        os.replace(temporary, path)
        self._add(hashes, vectors, sentence_vectors.astype(np.float16), first)

    def clear(self) -> None:
        shutil.rmtree(self.checkpoints, ignore_errors=True)


def build_faiss(vectors: np.ndarray, ids: np.ndarray, settings: IndexSettings):
    """An ID-mapped FAISS index of the kind the settings (or the corpus size) call for."""
    import faiss

    count, dimension = vectors.shape
    kind = settings.resolved_kind(count)
    if kind == "flat":
        inner = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
    elif kind == "ivf":
        lists = max(1, min(int(4 * np.sqrt(max(count, 1))), count // 39 or 1))
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        inner.train(vectors)
    else:
        raise InputError(f"unknown index type {kind!r}; choose auto, flat, hnsw or ivf")
    index = faiss.IndexIDMap2(inner)
    if count:
        index.add_with_ids(vectors, ids)
    return index, kind


def _write_generation(index_dir: Path, documents: list[Document], file_hashes: dict[str, str], chunks: list[Chunk],
                      sentences: list[list[tuple[int, int]]], pool: _VectorPool, model_name: str, fingerprint: str,
                      chunk_settings: ChunkSettings, index_settings: IndexSettings) -> None:
    import faiss

    name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = index_dir / f".{name}.partial"
    staging.mkdir()
    try:
        ids = np.array([faiss_id(chunk.chunk_id) for chunk in chunks], dtype=np.int64)
        if len(set(ids.tolist())) != len(ids):
            raise RagError("two chunks share a FAISS id; this should not happen, please report it")
        looked_up = [pool.get(text_hash(chunk.embed_text)) for chunk in chunks]
        dimension = len(looked_up[0][0]) if looked_up else 0
        vectors = np.array([vector for vector, _ in looked_up], dtype=np.float32).reshape(len(chunks), dimension)
        sentence_vectors = [vectors_of_sentences for _, vectors_of_sentences in looked_up]
        for chunk_sentences, spans in zip(sentence_vectors, sentences):
            if len(chunk_sentences) != len(spans):
                raise RagError("a passage's sentence vectors do not match its sentences; run `rag ingest` again")
        faiss_index, kind = build_faiss(vectors, ids, index_settings)
        faiss.write_index(faiss_index, str(staging / "vectors.faiss"))
        np.save(staging / "vectors.npy", vectors)
        np.save(staging / "sentence_vectors.npy", np.concatenate(sentence_vectors).astype(np.float16)
                if sentence_vectors else np.zeros((0, dimension), np.float16))
        fault_point("while-writing")
        write_store(staging, documents, file_hashes, chunks, sentences, ids)
        LexicalIndex.build([chunk.embed_text for chunk in chunks]).save(staging / "lexical")
        letter_chunks: dict[str, int] = {}
        for chunk in chunks:
            letter_chunks[chunk.doc_id] = letter_chunks.get(chunk.doc_id, 0) + 1
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": {"name": model_name, "fingerprint": fingerprint, "dimension": int(dimension)},
            "chunking": chunk_settings.as_manifest(),
            "reader": {"version": READER_VERSION},
            "index": {"kind": kind, "settings": asdict(index_settings)},
            "lexical": {"method": "bm25 lucene k1=1.2 b=0.75", "tokenizer_version": LEXICAL_TOKENIZER_VERSION,
                        "stemmer": "snowball dutch"},
            "letters": {d.doc_id: {"source": d.source, "file_sha256": file_hashes[d.doc_id],
                                   "chunks": letter_chunks.get(d.doc_id, 0)} for d in documents},
            "counts": {"letters": len(documents), "chunks": len(chunks), "sentences": sum(map(len, sentences))},
            "versions": {"rag": __version__, "faiss": faiss.__version__, "numpy": np.__version__},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {
                str(path.relative_to(staging)): {"size": path.stat().st_size, "sha256": file_sha256(path)}
                for path in sorted(staging.rglob("*")) if path.is_file()
            },
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        _fsync_tree(staging)
        staging.rename(index_dir / name)
        fsync_folder(index_dir)
        fault_point("before-pointer-switch")
        previous = current_generation_name(index_dir)
        _switch_pointer(index_dir, name)
        fault_point("after-pointer-switch")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The previous generation stays: a reader that read the old pointer can still open all its files.
    _remove_old_generations(index_dir, keep={name, previous})


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_folder(path)


def _switch_pointer(index_dir: Path, name: str) -> None:
    temporary = index_dir / f".{POINTER}.{uuid.uuid4().hex[:8]}"
    temporary.write_text(name + "\n")
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, index_dir / POINTER)
    fsync_folder(index_dir)


def _remove_old_generations(index_dir: Path, keep: set[str | None]) -> None:
    for path in index_dir.iterdir():
        stale_build = path.name.startswith("gen-") and path.name not in keep
        leftover = path.name.startswith(".gen-") or path.name.startswith(f".{POINTER}.")
        if path.is_dir() and (stale_build or leftover):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and leftover:
            path.unlink(missing_ok=True)
