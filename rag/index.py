"""The index folder: FAISS vectors, the chunk store, the letters and a manifest that vouches for them.

Layout of `index/` (or any `--index DIR`):

    CURRENT            the name of the live generation, replaced atomically
    gen-<time>-<id>/   one complete build: manifest.json, vectors.npy, vectors.faiss,
                       chunks.jsonl, documents.jsonl (and lexical/ for BM25)

A build writes a new generation and only then points CURRENT at it, so an interrupted
`rag ingest` leaves the previous index intact and loadable. Loading checks the manifest
against the current model and settings and every file against its recorded size and hash.
"""

from __future__ import annotations

import hashlib
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

from rag import __version__, config
from rag.chunking import Chunk, ChunkSettings, chunk_document
from rag.documents import (
    READER_VERSION, Document, cannot_read, doc_id_for, document_from_json, document_to_json, letter_paths, read_document,
    refuse_duplicate_ids,
)
from rag.errors import InputError, RagError
from rag.readers.ocr import MissingOCR
from rag.files import file_sha256
from rag.lexical import TOKENIZER_VERSION as LEXICAL_TOKENIZER_VERSION
from rag.lexical import LexicalIndex

FORMAT_VERSION = 1
POINTER = "CURRENT"
EXACT_SEARCH_LIMIT = 200_000  # "auto" uses exact search up to this many passages (see `rag bench`)
EMBED_BATCH = 64  # passages handed to the model at a time


class IndexError_(RagError):
    """The index is missing, damaged, or built with other settings."""


@dataclass(frozen=True)
class IndexSettings:
    kind: str = "auto"  # auto, flat, hnsw, ivf
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 16

    def resolved_kind(self, count: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if count <= EXACT_SEARCH_LIMIT else "hnsw"


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
    return int.from_bytes(hashlib.sha1(chunk_id.encode()).digest()[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()



# --- reading an index --------------------------------------------------------------------

@dataclass
class CorpusIndex:
    folder: Path
    manifest: dict
    chunks: list[Chunk]
    faiss_ids: np.ndarray
    faiss_index: object
    documents: dict[str, Document]
    lexical: LexicalIndex
    _row_of_id: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._row_of_id = {int(i): row for row, i in enumerate(self.faiss_ids)}

    @property
    def letter_files(self) -> list[Path]:
        """The files the indexed letters were read from."""
        return [config.PROJECT_ROOT / entry["source"] for entry in self.manifest["letters"].values()]

    def dense_search(self, query_vectors: np.ndarray, k: int, rows: Sequence[int] | None = None) -> list[list[tuple[int, float]]]:
        """Best chunk rows per query; `rows` restricts the search (filters before ranking)."""
        import faiss

        k = min(k, len(self.chunks) if rows is None else len(rows))
        if k <= 0:
            return [[] for _ in range(len(query_vectors))]
        params = None
        if rows is not None:
            selector = faiss.IDSelectorBatch(self.faiss_ids[np.asarray(rows, dtype=np.int64)])
            params = _search_parameters(self.manifest["index"]["kind"], selector, self.manifest["index"]["settings"])
        scores, ids = self.faiss_index.search(np.asarray(query_vectors, dtype=np.float32), k, params=params)
        return [
            [(self._row_of_id[int(i)], float(s)) for s, i in zip(score_row, id_row) if i >= 0]
            for score_row, id_row in zip(scores, ids)
        ]


def _search_parameters(kind: str, selector, settings: dict):
    import faiss

    if kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=settings["hnsw_ef_search"])
    if kind == "ivf":
        return faiss.SearchParametersIVF(sel=selector, nprobe=settings["ivf_nprobe"])
    return faiss.SearchParameters(sel=selector)


def shown(index_dir: Path) -> str:
    """The folder as a user would type it: `index/` inside the project, else the path given."""
    return config.display_path(Path(index_dir))


def current_generation(index_dir: Path) -> Path | None:
    if not (index_dir / POINTER).exists():
        return None
    name = current_generation_name(index_dir) or ""
    folder = index_dir / name
    if not name or "/" in name or not folder.is_dir():
        raise IndexError_(f"{shown(index_dir)}: the index pointer names a missing build ({name!r}); run `rag ingest --index {shown(index_dir)}`")
    return folder


def live_build(index_dir: Path) -> tuple[Path, dict] | None:
    """The live generation and its manifest, from one reading of the pointer (an ingest may switch it)."""
    folder = current_generation(index_dir)
    if folder is None:
        return None
    try:
        return folder, json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as error:
        raise IndexError_(f"{shown(index_dir)}: the manifest is unreadable ({error}); run `rag ingest --index {shown(index_dir)}`") from None


def read_manifest(index_dir: Path) -> dict | None:
    build = live_build(index_dir)
    return build[1] if build else None


def check_compatible(manifest: dict, index_dir: Path, model_name: str, fingerprint: str, chunk_settings: ChunkSettings,
                     lexical: bool = True) -> None:
    """Refuse an index of another format, model, chunking or (unless lexical=False) tokenizer."""
    index_dir = shown(index_dir)
    rebuild = f"run `rag ingest --index {index_dir}` (add --model to choose the model) to rebuild it"
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexError_(f"{index_dir}: the index has format {manifest.get('format_version')}, this rag reads {FORMAT_VERSION}; {rebuild}")
    built_with = manifest["model"]
    if built_with["name"] != model_name or built_with["fingerprint"] != fingerprint:
        raise IndexError_(f"{index_dir}: the index was built with the model {built_with['name']!r} ({built_with['fingerprint'][:19]}), not {model_name!r}; {rebuild}")
    if lexical and manifest.get("lexical", {}).get("tokenizer_version") != LEXICAL_TOKENIZER_VERSION:
        raise IndexError_(f"{index_dir}: the index was built with another lexical tokenizer; {rebuild}")
    if manifest["chunking"] != chunk_settings.as_manifest():
        raise IndexError_(f"{index_dir}: the index was built with other chunk settings ({manifest['chunking']}); {rebuild}")
    if manifest.get("reader", {}).get("version") != READER_VERSION:
        raise IndexError_(
            f"{index_dir}: its letters were read by another version of the letter reader "
            f"({manifest.get('reader', {}).get('version')}, this rag reads with {READER_VERSION}); "
            f"run `rag ingest LETTERS --index {index_dir}` with the letters it holds to re-read them"
        )


def load_index(index_dir: Path, model_name: str, fingerprint: str, chunk_settings: ChunkSettings = ChunkSettings()) -> CorpusIndex:
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


def _load_generation(index_dir: Path, folder: Path, manifest: dict, model_name: str, fingerprint: str,
                     chunk_settings: ChunkSettings) -> CorpusIndex:
    import faiss

    check_compatible(manifest, index_dir, model_name, fingerprint, chunk_settings)
    index_dir = shown(index_dir)
    damaged = f"{index_dir}: the index is damaged"
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.exists() or path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
            raise IndexError_(f"{damaged} ({name} does not match its manifest); run `rag ingest --index {index_dir}` to rebuild it")
    try:
        chunks, ids = _read_chunks(folder / "chunks.jsonl")
        documents = read_stored_documents(folder)
        faiss_index = faiss.read_index(str(folder / "vectors.faiss"))
        lexical = LexicalIndex.load(folder / "lexical")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise IndexError_(f"{damaged} ({type(error).__name__}); run `rag ingest --index {index_dir}` to rebuild it") from None
    if faiss_index.ntotal != len(chunks) or len(chunks) != manifest["counts"]["chunks"]:
        raise IndexError_(f"{damaged} ({faiss_index.ntotal} vectors for {len(chunks)} chunks); run `rag ingest --index {index_dir}` to rebuild it")
    _apply_search_settings(faiss_index, manifest["index"])
    if lexical.retriever.scores["num_docs"] != len(chunks):
        raise IndexError_(f"{damaged} (the lexical index does not match the chunks); run `rag ingest --index {index_dir}` to rebuild it")
    return CorpusIndex(folder, manifest, chunks, ids, faiss_index, documents, lexical)


def _apply_search_settings(faiss_index, index_entry: dict) -> None:
    import faiss

    inner = faiss.downcast_index(faiss_index.index) if hasattr(faiss_index, "index") else faiss_index
    if index_entry["kind"] == "hnsw":
        inner.hnsw.efSearch = index_entry["settings"]["hnsw_ef_search"]
    elif index_entry["kind"] == "ivf":
        inner.nprobe = index_entry["settings"]["ivf_nprobe"]


def read_stored_documents(folder: Path) -> dict[str, Document]:
    """The cleaned letters of one build, by doc_id."""
    return {d.doc_id: d for d in map(document_from_json, _read_jsonl(folder / "documents.jsonl"))}


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _read_chunks(path: Path) -> tuple[list[Chunk], np.ndarray]:
    rows = _read_jsonl(path)
    chunks = [Chunk(**{k: row[k] for k in Chunk.__dataclass_fields__}) for row in rows]
    return chunks, np.array([row["faiss_id"] for row in rows], dtype=np.int64)


# --- building an index -------------------------------------------------------------------

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


def ingest(
    paths: Sequence[str | Path],
    index_dir: Path,
    model_name: str,
    fingerprint: str,
    embed: Callable[[list[str]], np.ndarray],
    chunk_settings: ChunkSettings = ChunkSettings(),
    index_settings: IndexSettings = IndexSettings(),
) -> IngestSummary:
    """Bring the index in line with the letters at `paths`, embedding only what is new.

    One writer at a time: a second `rag ingest` on the same folder is refused, not interleaved.
    """
    import fcntl

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RagError(f"{shown(index_dir)}: another `rag ingest` is writing this index; wait for it to finish") from None
        return _ingest(paths, index_dir, model_name, fingerprint, embed, chunk_settings, index_settings)


def _ingest(paths, index_dir: Path, model_name: str, fingerprint: str, embed, chunk_settings: ChunkSettings,
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
    old_letters = previous["manifest"]["letters"] if previous else {}
    # Stored text is reused only when today's reader would read the letter the same way.
    reusable = previous["documents"] if previous and previous["manifest"].get("reader", {}).get("version") == READER_VERSION else {}

    by_hash = {entry["file_sha256"]: doc_id for doc_id, entry in old_letters.items()}
    documents: list[Document] = []
    letter_hashes: dict[str, str] = {}
    warnings: list[str] = []
    kept_ids: set[str] = set()
    for path in files:
        doc_id = by_hash.get(hashes[path])
        if doc_id is not None and doc_id in reusable and doc_id == doc_id_for(path):
            document = reusable[doc_id]
            kept_ids.add(doc_id)
        else:
            try:
                document = read_document(path)
            except MissingOCR as missing:  # a scan without Tesseract: skipped, said, the rest indexed
                warnings.append(str(missing))
                continue
            warnings.extend(document.warnings)
        documents.append(document)
        letter_hashes[document.doc_id] = hashes[path]
    refuse_duplicate_ids(documents)

    current_ids = {d.doc_id for d in documents}
    removed = len(set(old_letters) - current_ids)
    unchanged = previous is not None and kept_ids == current_ids == set(old_letters) and (
        previous["manifest"]["index"]["settings"] == asdict(index_settings)
        and previous["manifest"]["chunking"] == chunk_settings.as_manifest()
        and previous["manifest"].get("lexical", {}).get("tokenizer_version") == LEXICAL_TOKENIZER_VERSION
    )
    if unchanged:
        counts = previous["manifest"]["counts"]
        return IngestSummary(counts["letters"], 0, counts["chunks"], 0, counts["chunks"], 0,
                             time.perf_counter() - started, changed=False, warnings=warnings)

    chunks = [chunk for document in documents for chunk in chunk_document(document, chunk_settings)]
    old_vectors = previous["vectors_by_text"] if previous else {}
    missing = list(dict.fromkeys(chunk.embed_text for chunk in chunks if text_hash(chunk.embed_text) not in old_vectors))
    fresh: dict[str, np.ndarray] = {}
    for number, first in enumerate(range(0, len(missing), EMBED_BATCH), start=1):
        batch = missing[first:first + EMBED_BATCH]
        fresh.update(zip(map(text_hash, batch), embed(batch)))
        fault_point("after-embed-batch", number)
    width = len(next(iter(fresh.values()))) if fresh else len(next(iter(old_vectors.values())))
    vectors = np.zeros((len(chunks), width), dtype=np.float32)
    for row, chunk in enumerate(chunks):
        key = text_hash(chunk.embed_text)
        vectors[row] = fresh[key] if key in fresh else old_vectors[key]

    _write_generation(index_dir, documents, chunks, vectors, letter_hashes, model_name, fingerprint,
                      chunk_settings, index_settings)
    return IngestSummary(len(documents), len(documents) - len(kept_ids), len(chunks), len(missing),
                         len(chunks) - len(missing), removed,
                         time.perf_counter() - started, changed=True, warnings=warnings)


def _previous_build(index_dir: Path, model_name: str, fingerprint: str) -> dict | None:
    """What the live build can lend to the next one: vectors of the same model, its stored letters."""
    try:
        build = live_build(index_dir)
        if build is None:
            return None
        folder, manifest = build
        built_with = manifest["model"]
        if manifest.get("format_version") != FORMAT_VERSION or (built_with["name"], built_with["fingerprint"]) != (model_name, fingerprint):
            return None
        documents = read_stored_documents(folder)
        rows = _read_jsonl(folder / "chunks.jsonl")
        vectors = np.load(folder / "vectors.npy")
        if len(rows) != len(vectors):
            return None
    except (RagError, OSError, ValueError, KeyError, TypeError):
        return None
    vectors_by_text = {row["text_hash"]: vectors[i] for i, row in enumerate(rows)}
    return {"manifest": manifest, "documents": documents, "vectors_by_text": vectors_by_text}


def _write_generation(index_dir, documents, chunks, vectors, letter_hashes, model_name, fingerprint,
                      chunk_settings, index_settings) -> None:
    import faiss

    index_dir.mkdir(parents=True, exist_ok=True)
    name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = index_dir / f".{name}.partial"
    staging.mkdir()
    try:
        ids = np.array([faiss_id(chunk.chunk_id) for chunk in chunks], dtype=np.int64)
        if len(set(ids.tolist())) != len(ids):
            raise RagError("two chunks share a FAISS id; this should not happen, please report it")
        faiss_index, kind = build_faiss(vectors, ids, index_settings)
        faiss.write_index(faiss_index, str(staging / "vectors.faiss"))
        np.save(staging / "vectors.npy", vectors)
        fault_point("while-writing")
        with (staging / "chunks.jsonl").open("w", encoding="utf-8") as handle:
            for chunk, chunk_faiss_id in zip(chunks, ids):
                record = {**asdict(chunk), "faiss_id": int(chunk_faiss_id), "text_hash": text_hash(chunk.embed_text)}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        LexicalIndex.build([chunk.embed_text for chunk in chunks]).save(staging / "lexical")
        with (staging / "documents.jsonl").open("w", encoding="utf-8") as handle:
            for document in documents:
                handle.write(json.dumps(document_to_json(document), ensure_ascii=False) + "\n")
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": {"name": model_name, "fingerprint": fingerprint, "dimension": int(vectors.shape[1])},
            "chunking": chunk_settings.as_manifest(),
            "reader": {"version": READER_VERSION},
            "index": {"kind": kind, "settings": asdict(index_settings)},
            "lexical": {"method": "bm25 lucene k1=1.2 b=0.75", "tokenizer_version": LEXICAL_TOKENIZER_VERSION,
                        "stemmer": "snowball dutch"},
            "letters": {
                d.doc_id: {"source": d.source, "file_sha256": letter_hashes[d.doc_id],
                           "chunks": sum(1 for c in chunks if c.doc_id == d.doc_id)}
                for d in documents
            },
            "counts": {"letters": len(documents), "chunks": len(chunks)},
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
        _fsync_folder(index_dir)
        fault_point("before-pointer-switch")
        previous = current_generation_name(index_dir)
        _switch_pointer(index_dir, name)
        fault_point("after-pointer-switch")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The previous generation stays: a reader that read the old pointer can still open all its files.
    _remove_old_generations(index_dir, keep={name, previous})


def fault_point(name: str, count: int | None = None) -> None:
    """Die here, as a power cut would, when RAG_FAULT names this point (`after-embed-batch:2`, `while-writing`,
    `before-pointer-switch`, `after-pointer-switch`): the crash-safety tests make faults happen at named points."""
    wanted = os.environ.get("RAG_FAULT", "")
    point, _, number = wanted.partition(":")
    if point == name and (not number or count is None or number == str(count)):
        os.kill(os.getpid(), signal.SIGKILL)


def current_generation_name(index_dir: Path) -> str | None:
    """The name CURRENT points at (None when there is no pointer); one small read, cheap enough to poll."""
    try:
        return (index_dir / POINTER).read_text(errors="replace").strip() or None
    except OSError:
        return None


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_folder(path)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _switch_pointer(index_dir: Path, name: str) -> None:
    temporary = index_dir / f".{POINTER}.{uuid.uuid4().hex[:8]}"
    temporary.write_text(name + "\n")
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, index_dir / POINTER)
    _fsync_folder(index_dir)


def _remove_old_generations(index_dir: Path, keep: set[str | None]) -> None:
    for path in index_dir.iterdir():
        stale_build = path.name.startswith("gen-") and path.name not in keep
        leftover = path.name.startswith(".gen-") or path.name.startswith(f".{POINTER}.")
        if path.is_dir() and (stale_build or leftover):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and leftover:
            path.unlink(missing_ok=True)

