"""The files of a generation's segments: the new letters appended as a segment, or everything merged into one.

Nothing of an unchanged letter is read, chunked, tokenized or embedded again. An ingest that only
adds letters appends them as a segment of their own: the new generation holds hard links to the
live one's files (nothing is copied: a link costs the same at ten passages as at a million) and a
folder `seg-<id>/` with the new letters' store, arrays, vectors, exact FAISS index and BM25
postings, numbered on from the segments before it. Any other change (a letter removed or
changed), or appended segments grown past `IndexSettings.max_segments` or their share, merges:
the kept rows are copied into one segment, by SQL in the SQLite store and by numpy slicing for
offsets, sentences, vectors and bags of words, so its cost is that of copying files, not of
Python objects per passage; FAISS is updated in place where its kind allows (`vector_index`),
BM25's postings recomputed from the bags (`lexical`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from rag import __version__
from rag.errors import RagError
from rag.files import NpyRows, file_sha256
from rag.index.chunking import Chunk, chunking_manifest
from rag.index.folder import FORMAT_VERSION, generation_arrays, open_store, segment_folders, segment_records
from rag.index.lexical import Bags, LexicalIndex, Postings, ranges, tokenizer_id, write_segment
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


def write_merged(staging: Path, carried: Carried | None, new: NewLetters, model: dict, chunk_settings: ChunkSettings,
                 index_settings: IndexSettings, fault: str, unreadable: dict[str, dict],
                 lexical_settings: LexicalSettings) -> dict:
    """A generation of one segment: the carried letters of every segment of the live one, then the new ones; its
    manifest."""
    old = generation_arrays(carried.folder, carried.manifest) if carried else None
    kept_letters = carried.letters if carried else np.zeros(0, np.int64)
    if old is not None:
        keep = np.zeros(carried.manifest["counts"]["letters"], dtype=bool)
        keep[kept_letters] = True
        carried_rows = np.flatnonzero(keep[old["chunk_letter"]])
    else:
        carried_rows = np.zeros(0, np.int64)
    dimension = int(model["dimension"])
    old_sections = old["chunk_section"][carried_rows] if old is not None else np.zeros(0, np.int32)
    sections, renumber_section = write_store(staging, carried, kept_letters, carried_rows, old_sections, new)
    arrays, carried_sentences = _arrays(old, kept_letters, carried_rows, new, sections, renumber_section)
    _write_vectors(staging, carried, carried_rows, carried_sentences, new, dimension, index_settings.copy_block)
    fault_point(fault, "while-writing")
    index_record = _write_vector_index(staging, carried, old, arrays, len(carried_rows), index_settings)
    np.savez(staging / "arrays.npz", **arrays)
    lexical_record = _write_lexical(staging, carried, carried_rows, new, lexical_settings)
    counts = {"letters": len(kept_letters) + len(new.documents), "chunks": len(arrays["chunk_letter"]),
              "sentences": len(arrays["sentence_start"])}
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": model,
        "chunking": chunking_manifest(chunk_settings),
        "reader": {"version": READER_VERSION},
        "index": index_record,
        "lexical": lexical_record,
        "counts": counts,
        "segments": [{"path": ".", **counts, "sections": len(sections), "index": index_record}],
        "skipped": unreadable,  # files that could not be read, by path: their hash and why (said again, not read again)
        **_written_now(),
        "files": _file_records(staging, staging),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


def write_store(staging: Path, carried: Carried | None, kept_letters: np.ndarray, carried_rows: np.ndarray,
                old_sections: np.ndarray, new: NewLetters, first: tuple[int, int, int] = (0, 0, 0)
                ) -> tuple[dict[str, int], np.ndarray]:
    """Letters, sections and passages in SQLite: the kept ones copied by SQL from every segment of the live
    generation, the new ones numbered on from `first` (letters, passages, sections: where an appended segment
    begins). Returns the section rows by label, and the new row of each old section row the kept passages use."""
    database = sqlite3.connect(staging / "store.sqlite", uri=True)
    first_letter, first_chunk, first_section = first
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
        renumber_section = np.zeros(0, np.int32)
        if carried is not None and len(kept_letters):
            database.execute("CREATE TEMP TABLE kept (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
            database.executemany("INSERT INTO temp.kept VALUES (?, ?)", zip(kept_letters.tolist(), range(len(kept_letters))))
            database.execute("CREATE TEMP TABLE carried (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
            database.executemany("INSERT INTO temp.carried VALUES (?, ?)", zip(carried_rows.tolist(), range(len(carried_rows))))
            columns = ", ".join(f"l.{name}" for name in LETTER_COLUMN_NAMES)
            labels: dict[int, str] = {}
            for segment in segment_folders(carried.folder, carried.manifest):  # rows are numbered across segments
                database.execute("ATTACH DATABASE ? AS old", (f"file:{segment / 'store.sqlite'}?mode=ro&immutable=1",))
                database.execute(f"INSERT INTO letters SELECT k.new, l.doc_id, {columns}, l.file_sha256, l.passages, l.meta,"
                                 " l.text FROM temp.kept k JOIN old.letters l ON l.row = k.old ORDER BY k.new")
                database.execute("INSERT INTO chunks SELECT c.new, o.chunk_id, o.text_hash"
                                 " FROM temp.carried c JOIN old.chunks o ON o.row = c.old ORDER BY c.new")
                labels.update(database.execute("SELECT row, label FROM old.sections"))
                database.commit()
                database.execute("DETACH DATABASE old")
            used = np.unique(old_sections)
            renumber_section = np.full(int(used.max()) + 1 if len(used) else 0, -1, dtype=np.int32)
            for old_row in used.tolist():  # segments may each hold a label: one row for it now
                renumber_section[old_row] = section_row.setdefault(labels[old_row], len(section_row))
        first_letter += len(kept_letters)
        passages = {document.doc_id: 0 for document in new.documents}
        for chunk in new.chunks:
            passages[chunk.doc_id] += 1
            section_row.setdefault(chunk.section, first_section + len(section_row))
        database.executemany(f"INSERT INTO letters VALUES ({', '.join('?' * (len(LETTER_COLUMN_NAMES) + 6))})", (
            (first_letter + number, document.doc_id, *letter_columns(document), new.file_hashes.get(document.doc_id),
             passages[document.doc_id], json.dumps(_meta(document), ensure_ascii=False), document.text)
            for number, document in enumerate(new.documents)))
        database.executemany("INSERT INTO chunks VALUES (?, ?, ?)", (
            (first_chunk + len(carried_rows) + number, chunk.chunk_id, text_hash(chunk.embed_text))
            for number, chunk in enumerate(new.chunks)))
        database.executemany("INSERT INTO sections VALUES (?, ?)", ((row, label) for label, row in section_row.items()))
        database.execute("CREATE INDEX chunks_by_text ON chunks (text_hash)")
        database.commit()
    except sqlite3.IntegrityError as error:
        raise RagError(f"two letters or passages share an id ({error}); rename one of the letters") from None
    finally:
        database.close()
    return section_row, renumber_section


def fresh_arrays(new: NewLetters, sections: dict[str, int], first_letter: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The new letters' per-passage and per-sentence arrays, their letters numbered from `first_letter`; and the
    sentences each passage has."""
    letter_row = {document.doc_id: first_letter + number for number, document in enumerate(new.documents)}
    flat = [span for spans in new.sentences for span in spans]
    return {
        "chunk_letter": np.array([letter_row[c.doc_id] for c in new.chunks], dtype=np.int32),
        "chunk_start": np.array([c.start for c in new.chunks], dtype=np.int32),
        "chunk_end": np.array([c.end for c in new.chunks], dtype=np.int32),
        "chunk_section": np.array([sections[c.section] for c in new.chunks], dtype=np.int32),
        "sentence_start": np.array([s for s, _e in flat], dtype=np.int32),
        "sentence_end": np.array([e for _s, e in flat], dtype=np.int32),
    }, np.array([len(spans) for spans in new.sentences], dtype=np.int64)


def _arrays(old, kept_letters: np.ndarray, carried_rows: np.ndarray, new: NewLetters, sections: dict[str, int],
            renumber_section: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The per-passage and per-sentence arrays; also the positions of the carried sentences in the old ones."""
    fresh, counts = fresh_arrays(new, sections, len(kept_letters))
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
        old = NpyRows(*(segment / name for segment in segment_folders(carried.folder, carried.manifest))) \
            if carried is not None and len(rows) else None
        out = np.lib.format.open_memmap(staging / name, mode="w+", dtype=dtype, shape=(len(rows) + len(fresh), dimension))
        for first in range(0, len(rows), copy_block):
            block = rows[first:first + copy_block]
            out[first:first + len(block)] = old[block]
        if len(fresh):
            out[len(rows):] = fresh
        out.flush()
        del out
        if old is not None:
            old.close()


def _write_vector_index(staging: Path, carried: Carried | None, old, arrays: dict[str, np.ndarray], carried_count: int,
                        settings: IndexSettings) -> dict:
    """FAISS updated from the live generation's where it can be, else built anew from the vectors just written
    (with the slots numbered afresh, so they stay as few as the passages)."""
    vectors = np.load(staging / "vectors.npy", mmap_mode="r")
    slots = arrays["faiss_ids"]
    if carried is not None and old is not None:
        # The first segment's index takes in what the segments appended to it held, and the new passages.
        first = segment_records(carried.manifest)[0]
        index = VectorIndex.load(carried.folder / first["path"], first["index"], settings)
        in_first = old["faiss_ids"][:first["chunks"]]
        removed = np.setdiff1d(in_first, slots[:carried_count])
        adding = np.flatnonzero(~np.isin(slots, in_first))
        if index.updated(removed, vectors[adding], slots[adding], settings, len(slots)):
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
        folders = [segment / "lexical" for segment in segment_folders(carried.folder, carried.manifest)]
        vocabulary = LexicalIndex.load_vocabulary(folders)
        bags = [Bags.load(folder) for folder in folders]
        parts = [(bags[0] if len(bags) == 1 else Bags.joined(bags)).take(carried_rows)]
    else:
        vocabulary, parts = {}, []
    parts.append(Bags.of_texts([chunk.embed_text for chunk in new.chunks], vocabulary, settings))
    lexical, bags = LexicalIndex.build(vocabulary, Bags.joined(parts), settings)
    lexical.save(folder)
    bags.save(folder)
    return {"method": "bm25 lucene k1=1.2 b=0.75", "tokenizer": tokenizer_id(settings),
            "stemmer": f"snowball {settings.stemmer}", "compounds": settings.compounds, "terms": len(lexical.vocabulary)}

def appendable(carried: Carried | None, new: NewLetters, settings: IndexSettings) -> bool:
    """Whether this ingest only adds letters, and the segments appended so far leave room for them."""
    if carried is None or not new.chunks or "segments" not in carried.manifest:
        return False
    previous = carried.manifest
    records = previous["segments"]
    total = previous["counts"]["chunks"] + len(new.chunks)
    appended = sum(record["chunks"] for record in records[1:]) + len(new.chunks)
    return (np.array_equal(carried.letters, np.arange(previous["counts"]["letters"]))  # nothing removed or changed
            and len(records) <= settings.max_segments
            and appended <= max(settings.append_passages, settings.append_share * total)
            and previous["index"]["settings"] == settings.as_manifest()
            and settings.resolved_kind(total) == previous["index"]["kind"])


def write_appended(staging: Path, carried: Carried, new: NewLetters, fault: str, unreadable: dict[str, dict],
                   lexical_settings: LexicalSettings) -> tuple[dict, str]:
    """The live generation's files linked, the new letters written as a segment after its last; the manifest and
    the segment's folder name."""
    previous = carried.manifest
    for name in previous["files"]:  # the same files, not copies: a generation's files never change once written
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(carried.folder / name, staging / name)
        except OSError:  # a file system without hard links
            shutil.copy2(carried.folder / name, staging / name)
    name = f"seg-{uuid.uuid4().hex[:8]}"
    segment = staging / name
    segment.mkdir()
    counts = previous["counts"]
    records = previous["segments"]
    sections, _ = write_store(segment, None, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32), new,
                              (counts["letters"], counts["chunks"], sum(record["sections"] for record in records)))
    arrays, sentence_counts = fresh_arrays(new, sections, counts["letters"])
    with np.load(carried.folder / records[-1]["path"] / "arrays.npz") as last:
        next_slot = int(last["next_slot"])
    arrays["faiss_ids"] = next_slot + np.arange(len(new.chunks), dtype=np.int64)
    arrays["next_slot"] = np.array(next_slot + len(new.chunks), dtype=np.int64)
    arrays["sentence_first"] = counts["sentences"] + np.concatenate([[0], np.cumsum(sentence_counts)]).astype(np.int64)
    np.savez(segment / "arrays.npz", **arrays)
    np.save(segment / "vectors.npy", np.asarray(new.vectors, dtype=np.float32))
    np.save(segment / "sentence_vectors.npy", np.asarray(new.sentence_vectors, dtype=np.float16))
    fault_point(fault, "while-writing")
    exact = replace(IndexSettings().from_manifest(previous["index"]["settings"]), kind="flat")
    index_record = {**VectorIndex.build(new.vectors, arrays["faiss_ids"], exact).save(segment), "rebuilt": True}
    folders = [carried.folder / record["path"] / "lexical" for record in records]
    vocabulary = LexicalIndex.load_vocabulary(folders)
    first_term = len(vocabulary)
    bags = Bags.of_texts([chunk.embed_text for chunk in new.chunks], vocabulary, lexical_settings)
    words = sorted((number, word) for word, number in vocabulary.items() if number >= first_term)
    write_segment(segment / "lexical", Postings.of_bags(bags, len(vocabulary), counts["chunks"]),
                  [word for _number, word in words], first_term, lexical_settings)
    bags.save(segment / "lexical")
    added = {"letters": len(new.documents), "chunks": len(new.chunks), "sentences": int(sentence_counts.sum())}
    manifest = {
        **previous,
        "index": {**previous["index"], "appended": name},
        "lexical": {**previous["lexical"], "terms": len(vocabulary)},
        "counts": {key: counts[key] + added[key] for key in counts},
        "segments": [*records, {"path": name, **added, "sections": len(sections), "index": index_record}],
        "skipped": unreadable,
        **_written_now(),
        "files": {**previous["files"], **_file_records(staging, segment)},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest, name


def _written_now() -> dict:
    """What wrote a generation and when, for its manifest."""
    import faiss

    return {"versions": {"rag": __version__, "faiss": faiss.__version__, "numpy": np.__version__},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _file_records(staging: Path, folder: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file under `folder`, by its path in the generation (what `rag verify` checks)."""
    return {str(path.relative_to(staging)): {"size": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(folder.rglob("*")) if path.is_file()}


def check_appended(staging: Path, manifest: dict) -> None:
    """An appended segment checked against its record before it goes live: its store, arrays, vectors, FAISS and
    BM25 hold as many passages as it should, numbered on from the segments before it."""
    record = manifest["segments"][-1]
    segment = staging / record["path"]
    try:
        database = open_store(segment)
        try:
            ((letters,),) = database.execute("SELECT count(*) FROM letters").fetchall()
            ((chunks, first_chunk),) = database.execute("SELECT count(*), min(row) FROM chunks").fetchall()
        finally:
            database.close()
        with np.load(segment / "arrays.npz") as arrays:
            passages, sentences = len(arrays["chunk_letter"]), len(arrays["sentence_start"])
            last_sentence = int(arrays["sentence_first"][-1])
        vectors = NpyRows(segment / "vectors.npy")
        rows = len(vectors)
        vectors.close()
        stored = VectorIndex.load(segment, record["index"], IndexSettings()).stored
        bags = len(np.load(segment / "lexical" / "bags_lengths.npy"))
    except (OSError, ValueError, KeyError, sqlite3.Error) as error:
        raise RagError(f"the new index was not made live, the index in use is unchanged: the appended letters are "
                       f"unreadable ({type(error).__name__}); run `rag ingest` again") from None
    recorded = (record["letters"], record["chunks"], record["sentences"])
    if (letters, chunks, sentences) != recorded or not chunks == passages == rows == stored == bags or (
            first_chunk != manifest["counts"]["chunks"] - chunks or last_sentence != manifest["counts"]["sentences"]):
        raise RagError("the new index was not made live, the index in use is unchanged: the appended letters do not "
                       "match their record; run `rag ingest` again")


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


