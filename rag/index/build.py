"""Writing a generation: the unchanged letters carried over from the live one, the new ones appended.

Nothing of an unchanged letter is read, chunked, tokenized or embedded again: its rows in the
SQLite store are copied by SQL, and its passages' offsets, sentences, vectors and bags of words
by numpy slicing, so the cost of an ingest that adds ten letters to a million passages is that of
copying files, not of Python objects per passage. FAISS is updated in place where its kind allows
(`vector_index`), BM25 recomputed from the bags (`lexical`). The generation is written beside the
live one, fsynced, and made live by replacing CURRENT; the previous generation stays on disk for
the readers of the old pointer.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np

from rag import __version__
from rag.errors import RagError
from rag.files import file_sha256
from rag.index.chunking import Chunk, chunking_manifest
from rag.index.folder import FORMAT_VERSION, POINTER, current_generation_name
from rag.index.lexical import Bags, LexicalIndex, ranges, tokenizer_id
from rag.index.store import UnusableIndex, opened
from rag.index.vector_index import VectorIndex
from rag.readers.document import READER_VERSION, Document
from rag.settings import ChunkSettings, IndexSettings, LexicalSettings


@dataclass(frozen=True)
class NewLetters:
    """Letters read for this ingest, with their passages, sentences and vectors."""

    documents: list[Document]
    file_hashes: dict[str, str]
    chunks: list[Chunk]
    sentences: list[list[tuple[int, int]]]
    vectors: np.ndarray  # (passages, dimension) float32
    sentence_vectors: np.ndarray  # (sentences, dimension) float16


@dataclass(frozen=True)
class Carried:
    """What the live generation lends: its folder, manifest and the rows of the letters kept unchanged."""

    folder: Path
    manifest: dict
    letters: np.ndarray  # letter rows in the live generation, in their order


def text_hash(text: str) -> str:
    """What identifies an embedded text: a passage whose text was embedded before keeps its vectors."""
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()


def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fault_point(fault: str, name: str, count: int | None = None) -> None:
    """Die here, as a power cut would, when `fault` (the setting RAG_FAULT) names this point (`after-embed-batch:2`,
    `while-writing`, `before-pointer-switch`, `after-pointer-switch`); with `:no-space` (`while-writing:no-space`)
    the disk is full here instead. The crash-safety tests make faults happen at named points."""
    import errno
    import signal

    point, _, detail = fault.partition(":")
    if point != name:
        return
    if detail == "no-space":
        raise OSError(errno.ENOSPC, "No space left on device")
    if not detail or count is None or detail == str(count):
        os.kill(os.getpid(), signal.SIGKILL)


def write_generation(index_dir: Path, carried: Carried | None, new: NewLetters, model: dict,
                     chunk_settings: ChunkSettings, index_settings: IndexSettings, fault: str = "",
                     unreadable: dict[str, dict] | None = None,
                     lexical_settings: LexicalSettings = LexicalSettings()) -> dict:
    """Write and switch to a generation of the carried letters followed by the new ones; its manifest."""
    name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = index_dir / f".{name}.partial"
    try:
        staging.mkdir()
        manifest = _write(staging, carried, new, model, chunk_settings, index_settings, fault, unreadable or {},
                          lexical_settings)
        _fsync_tree(staging)
    except OSError as error:  # a full disk, a quota, a folder gone read-only: the live index is untouched
        shutil.rmtree(staging, ignore_errors=True)
        raise RagError(f"cannot write the new index in {index_dir} ({error.strerror or type(error).__name__}); "
                       f"free space or fix the folder and run `rag ingest` again; the index in use is unchanged") from None
    try:
        _check_before_going_live(staging, manifest, index_settings)
        staging.rename(index_dir / name)
        fsync_folder(index_dir)
        fault_point(fault, "before-pointer-switch")
        previous = current_generation_name(index_dir)
        _switch_pointer(index_dir, name)
        fault_point(fault, "after-pointer-switch")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The previous generation stays: a reader that read the old pointer can still open all its files.
    _remove_old_generations(index_dir, keep={name, previous})
    return manifest


def _check_before_going_live(staging: Path, manifest: dict, index_settings: IndexSettings) -> None:
    """Load the new generation as a server will and check it: one that fails is never made current."""
    try:
        opened(staging, manifest, index_settings, "the new index is inconsistent", "run `rag ingest` again").close()
    except UnusableIndex as problem:
        raise RagError(f"the new index was not made live, the index in use is unchanged: {problem}") from None


def _write(staging: Path, carried: Carried | None, new: NewLetters, model: dict, chunk_settings: ChunkSettings,
           index_settings: IndexSettings, fault: str, unreadable: dict[str, dict],
           lexical_settings: LexicalSettings) -> dict:
    old = dict(np.load(carried.folder / "arrays.npz")) if carried else None
    kept_letters = carried.letters if carried else np.zeros(0, np.int64)
    if old is not None:
        keep = np.zeros(carried.manifest["counts"]["letters"], dtype=bool)
        keep[kept_letters] = True
        carried_rows = np.flatnonzero(keep[old["chunk_letter"]])
    else:
        carried_rows = np.zeros(0, np.int64)
    dimension = int(model["dimension"])
    old_sections = old["chunk_section"][carried_rows] if old is not None else np.zeros(0, np.int32)
    sections = _write_store(staging, carried, kept_letters, carried_rows, old_sections, new)
    arrays, carried_sentences = _arrays(old, kept_letters, carried_rows, new, sections)
    _write_vectors(staging, carried, carried_rows, carried_sentences, new, dimension, index_settings.copy_block)
    fault_point(fault, "while-writing")
    index_record = _write_vector_index(staging, carried, old, arrays, len(carried_rows), index_settings)
    np.savez(staging / "arrays.npz", **arrays)
    lexical_record = _write_lexical(staging, carried, carried_rows, new, lexical_settings)
    counts = {"letters": len(kept_letters) + len(new.documents), "chunks": len(arrays["chunk_letter"]),
              "sentences": len(arrays["sentence_start"])}
    import faiss

    manifest = {
        "format_version": FORMAT_VERSION,
        "model": model,
        "chunking": chunking_manifest(chunk_settings),
        "reader": {"version": READER_VERSION},
        "index": index_record,
        "lexical": lexical_record,
        "counts": counts,
        "skipped": unreadable,  # files that could not be read, by path: their hash and why (said again, not read again)
        "versions": {"rag": __version__, "faiss": faiss.__version__, "numpy": np.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {
            str(path.relative_to(staging)): {"size": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(staging.rglob("*")) if path.is_file()
        },
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


def _write_store(staging: Path, carried: Carried | None, kept_letters: np.ndarray, carried_rows: np.ndarray,
                 old_sections: np.ndarray, new: NewLetters) -> dict[str, int]:
    """Letters, sections and passages in SQLite: the kept ones copied by SQL, the new ones appended.
    Returns the section rows by label."""
    database = sqlite3.connect(staging / "store.sqlite", uri=True)
    try:
        database.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            # What a serving process keeps of every letter has columns of its own (read without parsing JSON);
            # the rest of the reading (sections, footnotes, signatories) is in `meta`, read with the text.
            f"CREATE TABLE letters (row INTEGER PRIMARY KEY, doc_id TEXT UNIQUE NOT NULL, {LETTER_COLUMNS},"
            " file_sha256 TEXT, passages INTEGER NOT NULL, meta TEXT NOT NULL, text TEXT NOT NULL);"
            "CREATE TABLE sections (row INTEGER PRIMARY KEY, label TEXT UNIQUE NOT NULL);"
            "CREATE TABLE chunks (row INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL, text_hash TEXT NOT NULL);"
        )
        section_row: dict[str, int] = {}
        if carried is not None and len(kept_letters):
            database.execute("ATTACH DATABASE ? AS old", (f"file:{carried.folder / 'store.sqlite'}?mode=ro&immutable=1",))
            database.execute("CREATE TEMP TABLE kept (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
            database.executemany("INSERT INTO temp.kept VALUES (?, ?)", zip(kept_letters.tolist(), range(len(kept_letters))))
            columns = ", ".join(f"l.{name}" for name in LETTER_COLUMN_NAMES)
            database.execute(f"INSERT INTO letters SELECT k.new, l.doc_id, {columns}, l.file_sha256, l.passages, l.meta, l.text"
                             " FROM temp.kept k JOIN old.letters l ON l.row = k.old ORDER BY k.new")
            database.execute("CREATE TEMP TABLE carried (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
            database.executemany("INSERT INTO temp.carried VALUES (?, ?)", zip(carried_rows.tolist(), range(len(carried_rows))))
            database.execute("INSERT INTO chunks SELECT c.new, o.chunk_id, o.text_hash"
                             " FROM temp.carried c JOIN old.chunks o ON o.row = c.old ORDER BY c.new")
            labels = dict(database.execute("SELECT row, label FROM old.sections"))
            for old_row in np.unique(old_sections).tolist():
                section_row[labels[old_row]] = len(section_row)
            database.commit()
            database.execute("DETACH DATABASE old")
        first_letter = len(kept_letters)
        passages = {document.doc_id: 0 for document in new.documents}
        for chunk in new.chunks:
            passages[chunk.doc_id] += 1
            section_row.setdefault(chunk.section, len(section_row))
        database.executemany(f"INSERT INTO letters VALUES ({', '.join('?' * (len(LETTER_COLUMN_NAMES) + 6))})", (
            (first_letter + number, document.doc_id, *letter_columns(document), new.file_hashes.get(document.doc_id),
             passages[document.doc_id], json.dumps(_meta(document), ensure_ascii=False), document.text)
            for number, document in enumerate(new.documents)))
        database.executemany("INSERT INTO chunks VALUES (?, ?, ?)", (
            (len(carried_rows) + number, chunk.chunk_id, text_hash(chunk.embed_text)) for number, chunk in enumerate(new.chunks)))
        database.executemany("INSERT INTO sections VALUES (?, ?)", ((row, label) for label, row in section_row.items()))
        database.execute("CREATE INDEX chunks_by_text ON chunks (text_hash)")
        database.commit()
    except sqlite3.IntegrityError as error:
        raise RagError(f"two letters or passages share an id ({error}); rename one of the letters") from None
    finally:
        database.close()
    return section_row


def _arrays(old, kept_letters: np.ndarray, carried_rows: np.ndarray, new: NewLetters,
            sections: dict[str, int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The per-passage and per-sentence arrays; also the positions of the carried sentences in the old ones."""
    letter_row = {document.doc_id: len(kept_letters) + number for number, document in enumerate(new.documents)}
    counts = np.array([len(spans) for spans in new.sentences], dtype=np.int64)
    flat = [span for spans in new.sentences for span in spans]
    fresh = {
        "chunk_letter": np.array([letter_row[c.doc_id] for c in new.chunks], dtype=np.int32),
        "chunk_start": np.array([c.start for c in new.chunks], dtype=np.int32),
        "chunk_end": np.array([c.end for c in new.chunks], dtype=np.int32),
        "chunk_section": np.array([sections[c.section] for c in new.chunks], dtype=np.int32),
        "sentence_start": np.array([s for s, _e in flat], dtype=np.int32),
        "sentence_end": np.array([e for _s, e in flat], dtype=np.int32),
    }
    if old is None or not len(carried_rows):
        sentence_counts = counts
        carried_sentences = np.zeros(0, np.int64)
        arrays = dict(fresh)
        # Slots are never reused: an index updated in place may still hold the old ones (HNSW tombstones).
        next_slot = int(old["next_slot"]) if old is not None else 0
    else:
        renumber_letter = np.full(int(kept_letters.max()) + 1, -1, dtype=np.int32)
        renumber_letter[kept_letters] = np.arange(len(kept_letters), dtype=np.int32)
        old_sections = old["chunk_section"][carried_rows]
        renumber_section = np.full(int(old_sections.max()) + 1, -1, dtype=np.int32)
        used = np.unique(old_sections)
        renumber_section[used] = np.arange(len(used), dtype=np.int32)  # the order _write_store gave them
        carried_sentences, offsets = ranges(old["sentence_first"], carried_rows)
        sentence_counts = np.concatenate([np.diff(offsets), counts])
        arrays = {
            "chunk_letter": np.concatenate([renumber_letter[old["chunk_letter"][carried_rows]], fresh["chunk_letter"]]),
            "chunk_start": np.concatenate([old["chunk_start"][carried_rows], fresh["chunk_start"]]),
            "chunk_end": np.concatenate([old["chunk_end"][carried_rows], fresh["chunk_end"]]),
            "chunk_section": np.concatenate([renumber_section[old_sections], fresh["chunk_section"]]),
            "sentence_start": np.concatenate([old["sentence_start"][carried_sentences], fresh["sentence_start"]]),
            "sentence_end": np.concatenate([old["sentence_end"][carried_sentences], fresh["sentence_end"]]),
        }
        next_slot = int(old["next_slot"])
    carried_slots = old["faiss_ids"][carried_rows] if old is not None and len(carried_rows) else np.zeros(0, np.int64)
    arrays["faiss_ids"] = np.concatenate([carried_slots, next_slot + np.arange(len(new.chunks), dtype=np.int64)])
    arrays["next_slot"] = np.array(next_slot + len(new.chunks), dtype=np.int64)
    arrays["sentence_first"] = np.concatenate([[0], np.cumsum(sentence_counts)]).astype(np.int64)
    return arrays, carried_sentences


def _write_vectors(staging: Path, carried: Carried | None, carried_rows: np.ndarray, carried_sentences: np.ndarray,
                   new: NewLetters, dimension: int, copy_block: int) -> None:
    """Passage vectors (float32) and sentence vectors (float16), copied block by block: never all in memory."""
    for name, rows, fresh, dtype in (("vectors.npy", carried_rows, new.vectors, np.float32),
                                     ("sentence_vectors.npy", carried_sentences, new.sentence_vectors, np.float16)):
        old = np.load(carried.folder / name, mmap_mode="r") if carried is not None and len(rows) else None
        out = np.lib.format.open_memmap(staging / name, mode="w+", dtype=dtype, shape=(len(rows) + len(fresh), dimension))
        for first in range(0, len(rows), copy_block):
            block = rows[first:first + copy_block]
            out[first:first + len(block)] = old[block]
        if len(fresh):
            out[len(rows):] = fresh
        out.flush()
        del out


def _write_vector_index(staging: Path, carried: Carried | None, old, arrays: dict[str, np.ndarray], carried_count: int,
                        settings: IndexSettings) -> dict:
    """FAISS updated from the live generation's where it can be, else built anew from the vectors just written
    (with the slots numbered afresh, so they stay as few as the passages)."""
    vectors = np.load(staging / "vectors.npy", mmap_mode="r")
    slots = arrays["faiss_ids"]
    if carried is not None and old is not None:
        index = VectorIndex.load(carried.folder, carried.manifest["index"], settings)
        removed = np.setdiff1d(old["faiss_ids"], slots[:carried_count])
        if index.updated(removed, vectors[carried_count:], slots[carried_count:], settings, len(slots)):
            return {**index.save(staging), "rebuilt": False}
    arrays["faiss_ids"] = np.arange(len(slots), dtype=np.int64)
    arrays["next_slot"] = np.array(len(slots), dtype=np.int64)
    return {**VectorIndex.build(vectors, arrays["faiss_ids"], settings).save(staging), "rebuilt": True}


def _write_lexical(staging: Path, carried: Carried | None, carried_rows: np.ndarray, new: NewLetters,
                   settings: LexicalSettings) -> dict:
    """BM25 from the bags of words: the carried passages' bags sliced, only the new passages tokenized."""
    folder = staging / "lexical"
    folder.mkdir()
    if carried is not None and len(carried_rows):
        vocabulary = LexicalIndex.load_vocabulary(carried.folder / "lexical")
        parts = [Bags.load(carried.folder / "lexical").take(carried_rows)]
    else:
        vocabulary, parts = {}, []
    parts.append(Bags.of_texts([chunk.embed_text for chunk in new.chunks], vocabulary, settings))
    lexical, bags = LexicalIndex.build(vocabulary, Bags.joined(parts), settings)
    lexical.save(folder)
    bags.save(folder)
    return {"method": "bm25 lucene k1=1.2 b=0.75", "tokenizer": tokenizer_id(settings),
            "stemmer": f"snowball {settings.stemmer}", "compounds": settings.compounds, "terms": len(lexical.vocabulary)}


LETTER_COLUMN_NAMES = ("source", "title", "date", "date_sure", "kind", "ministry", "identifiers", "refs", "ocr")
LETTER_COLUMNS = ("source TEXT NOT NULL, title TEXT NOT NULL, date TEXT, date_sure INTEGER NOT NULL, kind TEXT NOT NULL, "
                  "ministry TEXT, identifiers TEXT NOT NULL, refs TEXT NOT NULL, ocr INTEGER NOT NULL")


def letter_columns(document: Document) -> tuple:
    return (document.source, document.title, document.date, int(document.date_sure), document.kind, document.ministry,
            json.dumps(document.identifiers, ensure_ascii=False), json.dumps(document.references), int(document.ocr))


def _meta(document: Document) -> dict:
    meta = asdict(document)
    del meta["text"]
    return meta


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
        stale_build = path.name.startswith("gen-") and path.name not in keep and not _in_use(path)
        leftover = path.name.startswith(".gen-") or path.name.startswith(f".{POINTER}.")
        if path.is_dir() and (stale_build or leftover):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and leftover:
            path.unlink(missing_ok=True)


def _in_use(folder: Path) -> bool:
    """Whether a serving process still holds this generation (its shared lock on the manifest, `store.Generation`)."""
    try:
        with (folder / "manifest.json").open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
