"""Letters -> a new generation of the index: incremental, checkpointed, crash-safe.

Letters are compared by the hash of their file: an unchanged letter read by the same reader
version, chunked and tokenized the same way, is carried into the next generation as stored
(`rag.index.segments`), without being read, chunked or embedded again. Of the letters that are new or
changed, a passage whose embedded text was embedded before (in the live generation or in a
checkpoint of an interrupted ingest) keeps its vectors. The rest is embedded in batches sorted
by length, each written to `.embedded/` as soon as it is done, so a killed ingest resumes where
it stopped; batches may come back in any order (a Ray cluster returns them as its workers finish).
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from rag.errors import InputError, RagError
from rag.files import file_sha256, write_atomically
from rag.index import unchanged
from rag.index.build import write_generation
from rag.index.chunking import Chunk, chunk_document, chunking_manifest, sentence_spans
from rag.index.folder import FORMAT_VERSION, LENDS_VECTORS, Stores, live_build, shown, stored_documents
from rag.index.lexical import tokenizer_id
from rag.index.segments import Carried, NewLetters, fault_point, text_hash
from rag.index.vector_pool import VectorPool
from rag.language import iso_date
from rag.readers import is_letter_file
from rag.readers.document import READER_VERSION, Document, cannot_read, doc_id_for, read_or_reason, unique_ids
from rag.settings import PROJECT_ROOT, ChunkSettings, IndexSettings, LexicalSettings, display_paths

CHECKPOINTS = ".embedded"
UPLOADS = "uploads"  # letters uploaded in the chat page, inside the index folder
KEPT_BEFORE = "; the version indexed before stays in the index"

# Texts and each text's sentence spans -> batches as they are done: (positions in the texts, passage vectors,
# sentence vectors of those texts' spans in order). Batches may arrive in any order.
EmbedBatches = Callable[[list[str], list[list[tuple[int, int]]]], Iterator[tuple[list[int], np.ndarray, np.ndarray]]]


@dataclass
class IngestSummary:
    letters: int
    read: int  # letters read from their files (the rest carried over as stored)
    chunks: int
    embedded: int
    reused: int
    removed: int
    seconds: float
    changed: bool
    warnings: list[str] = field(default_factory=list)
    index: str = ""  # the FAISS index kind, and whether it was updated in place or rebuilt
    embedding_seconds: float = 0.0  # of `seconds`, the time spent embedding
    skipped: list[str] = field(default_factory=list)  # letters that could not be read, each with what to do
    skipped_files: list[Path] = field(default_factory=list)  # their files
    uploads: int = 0  # letters added in the chat page, kept with the index

    def said(self) -> dict:
        """What an ingest of these letters says again when nothing changed (kept by `rag.index.unchanged`)."""
        return {"letters": self.letters, "chunks": self.chunks, "skipped": self.skipped,
                "skipped_files": [str(path) for path in self.skipped_files], "uploads": self.uploads}

    @classmethod
    def recalled(cls, said: dict, seconds: float) -> "IngestSummary":
        """The no-op's summary from what the last ingest of unchanged letters said (`said`)."""
        return cls(said["letters"], 0, said["chunks"], 0, said["chunks"], 0, seconds, changed=False,
                   skipped=said["skipped"], skipped_files=[Path(p) for p in said["skipped_files"]], uploads=said["uploads"])

    def line(self) -> str:
        kept = f", {self.uploads} of them uploaded in the chat (kept)" if self.uploads else ""
        if not self.changed:
            return f"index up to date: {self.letters} letters{kept}, {self.chunks} chunks ({self.seconds:.2f} s)"
        skipped = f"; {len(self.skipped)} letters skipped (see above)" if self.skipped else ""
        return (
            f"indexed {self.letters} letters ({self.read} read){kept}, {self.chunks} chunks: {self.embedded} newly embedded, "
            f"{self.reused} reused, {self.removed} letters removed; {self.index} ({self.seconds:.1f} s){skipped}"
        )


def ingest(paths: Sequence[str | Path] | None, index_dir: Path, model_name: str, fingerprint: str, embed: EmbedBatches,
           chunk_settings: ChunkSettings = ChunkSettings(), index_settings: IndexSettings = IndexSettings(),
           fault: str = "", exclude: frozenset[str] = frozenset(), wait: bool = False,
           lexical_settings: LexicalSettings = LexicalSettings(), fresh_uploads: frozenset[Path] = frozenset(),
           seen: unchanged.Seen | None = None, added_only: bool = False) -> IngestSummary:
    """Bring the index in line with the letter files `paths` (folders expanded by `letter_paths`) and the letters
    uploaded into it, without the doc_ids in
    `exclude`, embedding only what is new. `paths` None: the letters the live index holds now, read from disk
    under the lock, so a change made by a server never undoes an ingest made elsewhere meanwhile; a letter whose
    file has moved or gone stays as stored (only `exclude` removes). Uploads not yet indexed are said, except the
    `fresh_uploads` the caller has just stored.

    One writer at a time: a second writer is refused (`wait` False: a command) or waits its turn (a server).
    `seen`: what was seen of these letters before they were listed (`unchanged.seen_now`), kept for the next ingest.
    `added_only`: `paths` are the letter files added since the last ingest and nothing else changed
    (`unchanged.added_letters`): the letters the index holds stay as stored, their files are not looked at.
    """
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RagError(f"{shown(index_dir)}: another `rag ingest` is writing this index; wait for it to finish") from None
        keep_stored = paths is None or added_only
        if paths is None:
            paths = _indexed_letter_files(index_dir)
        summary = _ingest(paths, index_dir, model_name, fingerprint, embed, chunk_settings, index_settings, fault,
                          exclude, lexical_settings, keep_stored, fresh_uploads, added_only)
        listed = added_only or not keep_stored  # `seen` is what these paths hold
        unchanged.remember(index_dir, seen if listed and not (exclude or fresh_uploads) else None, summary.said())
        return summary


def _indexed_letter_files(index_dir: Path) -> list[Path]:
    """The files the live generation's letters were read from (those still on disk)."""
    build = live_build(index_dir)
    if build is None:
        return []
    with Stores(*build) as stores:
        sources = [source for (source,) in stores.all("SELECT source FROM letters ORDER BY row")]
    return [path for path in (PROJECT_ROOT / source for source in sources) if path.is_file()]


@dataclass(frozen=True)
class _Previous:
    folder: Path
    manifest: dict
    letters: dict[str, tuple[int, str | None]]  # doc_id -> (row, file hash)
    sources: dict[str, str]  # doc_id -> the file it was read from, as stored (`display_path`)
    lends_rows: bool  # of this format: unchanged letters carried as stored (else chunked again, vectors kept)
    complete: bool = True  # `letters` and `sources` hold every letter (else those some files' names could name)


def _ingest(paths, index_dir: Path, model_name: str, fingerprint: str, embed: EmbedBatches, chunk_settings: ChunkSettings,
            index_settings: IndexSettings, fault: str, exclude: frozenset[str], lexical_settings: LexicalSettings,
            keep_stored: bool = False, fresh_uploads: frozenset[Path] = frozenset(), added_only: bool = False
            ) -> IngestSummary:
    started = time.perf_counter()
    uploads = uploaded_letters(index_dir)
    files = sorted({path if isinstance(path, Path) else Path(path) for path in paths} | set(uploads),
                   key=lambda p: (p.name, str(p)))
    skipped: list[str] = []
    skipped_files: list[Path] = []
    previous = _previous_build(index_dir, model_name, fingerprint, files if added_only else None)
    if previous is not None and not (previous.complete or _carries(previous, chunk_settings, lexical_settings)):
        previous = _previous_build(index_dir, model_name, fingerprint)  # every letter is chunked anew: all are read
    known_stats = {} if added_only else _letter_stats(index_dir, fingerprint)  # only new files: hashed
    hashes, stats = {}, {}
    for path in files:
        try:
            status = path.stat()
            known = known_stats.get(str(path))
            same = known is not None and known[:2] == [status.st_size, status.st_mtime_ns]
            hashes[path] = known[2] if same else file_sha256(path)
            stats[str(path)] = [status.st_size, status.st_mtime_ns, hashes[path]]
        except OSError as error:
            skipped.append(str(cannot_read(path, error)))
            skipped_files.append(path)
    files = [path for path in files if path in hashes]
    stored = previous.letters if previous else {}
    shown = display_paths(files)
    ids, renamed = unique_ids(files, _held_ids(previous, files, hashes, keep_stored, shown, moved=not added_only), shown)
    warnings: list[str] = list(renamed)
    files = [path for path in files if ids[path] not in exclude]
    doc_ids = [ids[path] for path in files]
    # A letter the index holds whose file is not among these stays as stored when nothing asked for it to go.
    unlisted = set(stored) - set(doc_ids) - exclude if keep_stored else set()
    same_reading = previous is not None and previous.manifest["reader"]["version"] == READER_VERSION
    carry = previous is not None and _carries(previous, chunk_settings, lexical_settings)
    kept: list[int] = []
    rechunk: set[str] = set()  # unchanged letters whose stored text is chunked anew
    to_read: list[Path] = []
    # Files this reader could not read last time and that have not changed: said again, not read again.
    known_unreadable = previous.manifest.get("skipped", {}) if same_reading else {}
    unreadable: dict[str, dict] = dict(known_unreadable) if added_only else {}  # not listed: said again as they were
    skipped += [known["reason"] for known in unreadable.values()]
    skipped_files += [Path(name) for name in unreadable]
    pending = [path.name for path in uploads if path in ids and ids[path] not in stored and ids[path] not in exclude
               and path not in fresh_uploads and str(path) not in known_unreadable]
    if pending and previous is not None:  # an upload cut off by a stop of the server is indexed now, and said
        warnings.append(f"{len(pending)} letters uploaded in the chat were not indexed yet (the server stopped "
                        f"before it was done); indexing them now: {', '.join(pending)}")
    for doc_id in sorted(unlisted):  # its text as stored; its file is not read
        if carry:
            kept.append(stored[doc_id][0])
        else:
            rechunk.add(doc_id)
    for path, doc_id in zip(files, doc_ids):
        row, file_hash = stored.get(doc_id, (None, None))
        known = known_unreadable.get(str(path))
        if known and known["file_sha256"] == hashes[path]:
            unreadable[str(path)] = known
            skipped_files.append(path)
            if carry and row is not None:
                kept.append(row)
                skipped.append(known["reason"] + KEPT_BEFORE)
            else:
                skipped.append(known["reason"])
        elif row is not None and same_reading and file_hash == hashes[path]:  # unchanged, wherever it is now
            if carry:
                kept.append(row)
            else:
                rechunk.add(doc_id)
        else:
            to_read.append(path)
    removed = len(set(stored) - set(doc_ids) - unlisted)
    if carry and not to_read and len(kept) == len(stored) and unreadable == known_unreadable and (
            previous.manifest["index"]["settings"] == index_settings.as_manifest()):
        if stats != known_stats and not added_only:  # a no-op writes nothing when nothing changed
            _keep_letter_stats(index_dir, fingerprint, stats)
        counts = previous.manifest["counts"]
        return IngestSummary(counts["letters"], 0, counts["chunks"], 0, counts["chunks"], 0,
                             time.perf_counter() - started, changed=False, skipped=skipped, skipped_files=skipped_files,
                             uploads=len(uploads))

    documents: list[Document] = list(stored_documents(previous.folder, previous.manifest, rechunk).values()) if rechunk else []
    reused_letters = len(documents)
    chunks = [chunk for document in documents for chunk in chunk_document(document, chunk_settings)]
    for path in to_read:
        read = _read_letter(path, ids[path], chunk_settings)
        if isinstance(read, str):  # unreadable: skipped and named, the rest indexed
            unreadable[str(path)] = {"file_sha256": hashes[path], "reason": read}
            row, _hash = stored.get(ids[path], (None, None))
            if carry and row is not None:
                kept.append(row)
                read += KEPT_BEFORE
            skipped.append(read)
            skipped_files.append(path)
            continue
        document, letter_chunks = read
        warnings.extend(document.warnings)
        documents.append(document)
        chunks.extend(letter_chunks)
    if not documents and not (carry and kept):
        if skipped:
            raise InputError(skipped[0] + (f" (and {len(skipped) - 1} more letters could not be read)" if len(skipped) > 1 else ""))
        raise InputError("the letters give nothing to index; check that they hold text")
    file_hashes = {doc_id: hashes[path] for path, doc_id in zip(files, doc_ids)}

    texts = {d.doc_id: d.text for d in documents}
    sentences = [sentence_spans(texts[c.doc_id], c.start, c.end) for c in chunks]
    pool = VectorPool(index_dir / CHECKPOINTS, (previous.folder, previous.manifest) if previous else None, fingerprint)
    wanted = [text_hash(chunk.embed_text) for chunk in chunks]
    pool.look_up(wanted)
    # A text embedded before keeps its vectors, unless its sentences were cut otherwise (the same words as another
    # chunker's passage): those are embedded again.
    missing = list({key: row for row, key in enumerate(wanted) if not pool.has(key, len(sentences[row]))}.values())
    embedding_started = time.perf_counter()
    if missing:
        # Sentence spans relative to the embedded text, which ends with the passage.
        header = [len(chunks[row].embed_text) - len(chunks[row].text) - chunks[row].start for row in missing]
        spans = [[(start + shift, end + shift) for start, end in sentences[row]] for row, shift in zip(missing, header)]
        for number, (positions, vectors, sentence_vectors) in enumerate(
                embed([chunks[row].embed_text for row in missing], spans), start=1):
            pool.checkpoint([wanted[missing[p]] for p in positions], vectors, sentence_vectors,
                            [len(spans[p]) for p in positions])
            fault_point(fault, "after-embed-batch", number)
    embedding_seconds = time.perf_counter() - embedding_started

    dimension = pool.dimension or (previous.manifest["model"]["dimension"] if previous else 0)
    if not dimension:
        raise InputError("the letters give no passages to index; check that they hold text")
    vectors = np.zeros((len(chunks), dimension), dtype=np.float32)
    sentence_vectors = []
    for row, key in enumerate(wanted):
        vectors[row], of_sentences = pool.get(key)
        if len(of_sentences) != len(sentences[row]):
            raise RagError("a passage's sentence vectors do not match its sentences; run `rag ingest` again")
        sentence_vectors.append(of_sentences)
    new = NewLetters(documents, file_hashes, chunks, sentences, vectors,
                     np.concatenate(sentence_vectors).astype(np.float16) if sentence_vectors
                     else np.zeros((0, dimension), np.float16))
    model = {"name": model_name, "fingerprint": fingerprint, "dimension": int(dimension)}
    manifest = write_generation(index_dir, Carried(previous.folder, previous.manifest, _kept_rows(previous, kept))
                                if carry else None, new, model, chunk_settings, index_settings, fault, unreadable,
                                lexical_settings)
    if not added_only:  # else what it knew stands, and the next full check hashes the added files
        _keep_letter_stats(index_dir, fingerprint, stats)
    pool.clear()
    return IngestSummary(manifest["counts"]["letters"], len(documents) - reused_letters, manifest["counts"]["chunks"], len(missing),
                         len(chunks) - len(missing), removed, time.perf_counter() - started, changed=True,
                         warnings=warnings, embedding_seconds=embedding_seconds, skipped=skipped, skipped_files=skipped_files, uploads=len(uploads),
                         index=_written(manifest))


def _written(manifest: dict) -> str:
    """How the FAISS index was written, for the ingest's line."""
    record = manifest["index"]
    if "appended" in record:
        return f"{record['kind']} index kept, the new letters appended as segment {len(manifest['segments'])}"
    return f"{record['kind']} index {'rebuilt' if record['rebuilt'] else 'updated in place'}"


def _carries(previous: _Previous, chunk_settings: ChunkSettings, lexical_settings: LexicalSettings) -> bool:
    """Whether unchanged letters are carried as stored: today's reading, chunking and tokenizing would give the same
    passages and bags."""
    manifest = previous.manifest
    return (manifest["reader"]["version"] == READER_VERSION and previous.lends_rows
            and manifest["chunking"] == chunking_manifest(chunk_settings)
            and manifest["lexical"].get("tokenizer") == tokenizer_id(lexical_settings))


def _kept_rows(previous: _Previous, kept: list[int]) -> np.ndarray:
    """The rows of the letters carried as stored: `kept`, and when the previous build was read only for the letters
    some files could name, every letter it did not read as well."""
    rows = np.array(sorted(kept), dtype=np.int64)
    if previous.complete:
        return rows
    read = np.array([row for row, _hash in previous.letters.values()], dtype=np.int64)
    return np.union1d(np.setdiff1d(np.arange(previous.manifest["counts"]["letters"]), read), rows)


def _read_letter(path: Path, doc_id: str, chunk_settings: ChunkSettings) -> tuple[Document, list[Chunk]] | str:
    """A letter and its passages, or the line that says why it cannot be indexed and what to do."""
    document = read_or_reason(path, doc_id)
    if isinstance(document, str):
        return document
    try:
        return document, chunk_document(document, chunk_settings)
    except Exception as error:  # one letter the chunker cannot cut must not stop the batch
        return f"{path}: cannot cut this letter into passages ({type(error).__name__}); please report it with the file"


def _held_ids(previous: "_Previous | None", files: list[Path], hashes: dict[Path, str], keep_stored: bool,
              shown: dict[Path, str], moved: bool = True) -> dict[str, str]:
    """The ids letters hold and keep (source -> doc_id): of the letters read from these files before (`shown`: each
    file as a source is stored), a file moved elsewhere with its content unchanged (unless no file can have gone:
    `moved` False), and (`keep_stored`) every letter the index holds."""
    if previous is None:
        return {}
    sources = set(shown.values())
    held = {source: doc_id for doc_id, source in previous.sources.items() if keep_stored or source in sources}
    gone = {previous.letters[doc_id][1]: doc_id for doc_id, source in previous.sources.items()
            if source not in sources} if moved else {}
    for path in files:
        doc_id = gone.pop(hashes[path], None)
        if doc_id is not None and shown[path] not in held:
            held[shown[path]] = doc_id
    return held


STATS = "letter-files.json"  # letter files by path: size, modification time (ns), hash


def _letter_stats(index_dir: Path, fingerprint: str) -> dict[str, list]:
    """What the last ingest of this index knew of its letter files: a file whose size and modification time are
    unchanged is not read again to hash it (make and git trust them the same way)."""
    try:
        kept = json.loads((index_dir / STATS).read_text())
        return kept["files"] if kept.get("fingerprint") == fingerprint else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _keep_letter_stats(index_dir: Path, fingerprint: str, stats: dict[str, list]) -> None:
    write_atomically(index_dir / STATS, json.dumps({"fingerprint": fingerprint, "files": stats}))


def uploaded_letters(index_dir: Path) -> list[Path]:
    """Letters added in the chat page: kept in the index folder, so that every ingest of this index keeps them."""
    folder = Path(index_dir) / UPLOADS
    return sorted(path for path in folder.iterdir() if path.is_file() and is_letter_file(path)) if folder.is_dir() else []


def _previous_build(index_dir: Path, model_name: str, fingerprint: str, named: Sequence[Path] | None = None
                    ) -> _Previous | None:
    """The live build, when it can lend to the next one: vectors of the same model, stored letters. `named`: only
    the letters whose ids these files' names give (`<id>` or `<id>-N`), for letters added to an archive whose other
    letters stay as stored: a million letters' rows are not read to index ten."""
    try:
        build = live_build(index_dir)
    except RagError:
        return None
    if build is None:
        return None
    folder, manifest = build
    built_with = manifest.get("model", {})
    if manifest.get("format_version") not in LENDS_VECTORS or (built_with.get("name"), built_with.get("fingerprint")) != (
            model_name, fingerprint):
        return None
    columns = "SELECT row, doc_id, file_sha256, source FROM letters"
    try:
        with Stores(folder, manifest) as stores:
            if named is None:
                rows = stores.all(columns)
            else:  # by the unique index on doc_id; '-' < '.' bounds the ids that begin "<id>-". No letter was read
                # from a file added since (every letter's file was seen by the last ingest), so none is found by source.
                bases = sorted({doc_id_for(path) for path in named})
                rows = [row for base in bases for row in stores.all(
                    f"{columns} WHERE doc_id = ? OR (doc_id > ? AND doc_id < ?)", (base, f"{base}-", f"{base}."))]
            letters = {doc_id: (row, file_hash) for row, doc_id, file_hash, _source in rows}
            sources = {doc_id: source for _row, doc_id, _hash, source in rows}
            # Dates the calendar does not have come from an older reader only: today's never stores one.
            dates = [] if manifest["reader"]["version"] == READER_VERSION else [
                stated for (stated,) in stores.all("SELECT date FROM letters WHERE date IS NOT NULL")]
    except sqlite3.Error:
        return None  # a damaged live build lends nothing; everything is read and embedded anew
    if any(iso_date(stated) != stated for stated in dates):
        return None  # letters stored with a date the calendar does not have (an older reader): read them anew
    return _Previous(folder, manifest, letters, sources, manifest["format_version"] == FORMAT_VERSION, named is None)
