"""The index folder on disk: the pointer to the live generation, its manifest, and access to a
generation's store without loading it (for an ingest, `rag show` and `rag verify`).

    CURRENT                  the name of the live generation
    gen-<time>-<id>/         one complete build (`store` reads it, `build` writes it): its first segment's files,
        seg-<id>/            and those of the segments appended to it since (`build`)
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rag.errors import RagError
from rag.files import file_sha256
from rag.index.chunking import chunking_manifest
from rag.index.lexical import tokenizer_id
from rag.readers.document import READER_VERSION, Document, document_from_json
from rag.settings import ChunkSettings, LexicalSettings, display_path

# 4: BM25 postings hold term counts and a generation may have segments. A generation of format 3 still lends its
# vectors to the next ingest (`ingest`): its letters are chunked again from their stored text, nothing is embedded.
FORMAT_VERSION = 4
LENDS_VECTORS = (3, 4)
POINTER = "CURRENT"


class UnusableIndex(RagError):
    """The index is missing, damaged, or built with other settings."""


def shown(index_dir: Path) -> str:
    """The folder as a user would type it: `index/` inside the project, else the path given."""
    return display_path(Path(index_dir))


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
        raise UnusableIndex(f"{shown(index_dir)}: the index pointer names a missing build ({name[:40]!r}); "
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
        raise UnusableIndex(f"{shown(index_dir)}: the manifest is unreadable ({type(error).__name__}); "
                          f"run `rag ingest --index {shown(index_dir)}`") from None


def read_manifest(index_dir: Path) -> dict | None:
    build = live_build(index_dir)
    return build[1] if build else None


def check_compatible(manifest: dict, index_dir: Path, model_name: str, fingerprint: str | None,
                     chunk_settings: ChunkSettings, lexical_settings: LexicalSettings = LexicalSettings()) -> None:
    """Refuse an index of another format, model, chunking, tokenizer or reader, in one line that says what to run.

    `fingerprint` None checks the model's name only: a process that has not loaded the model yet can
    refuse a foreign index before spending seconds on it.
    """
    where = shown(index_dir)
    rebuild = f"run `rag ingest --index {where}` (add --model to choose the model) to rebuild it"
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UnusableIndex(f"{where}: the index has format {manifest.get('format_version')}, this rag reads {FORMAT_VERSION}; {rebuild}")
    built_with = manifest["model"]
    if built_with["name"] != model_name or (fingerprint is not None and built_with["fingerprint"] != fingerprint):
        raise UnusableIndex(f"{where}: the index was built with the model {built_with['name']!r} "
                          f"({built_with['fingerprint'][:19]}), not {model_name!r}; {rebuild}")
    if manifest.get("lexical", {}).get("tokenizer") != tokenizer_id(lexical_settings):
        raise UnusableIndex(f"{where}: the index was built with another lexical tokenizer; {rebuild}")
    if manifest["chunking"] != chunking_manifest(chunk_settings):
        raise UnusableIndex(f"{where}: the index was built with other chunk settings ({manifest['chunking']}); {rebuild}")
    if manifest.get("reader", {}).get("version") != READER_VERSION:
        raise UnusableIndex(
            f"{where}: its letters were read by another version of the letter reader "
            f"({manifest.get('reader', {}).get('version')}, this rag reads with {READER_VERSION}); "
            f"run `rag ingest LETTERS --index {where}` with the letters it holds to re-read them"
        )


def verify(index_dir: Path) -> list[str]:
    """Every file of the live generation against the size and SHA-256 its manifest records; the mismatches."""
    build = live_build(Path(index_dir))
    if build is None:
        raise UnusableIndex(f"{shown(index_dir)}: no index here; run `rag ingest --index {shown(index_dir)}`")
    folder, manifest = build
    problems = []
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
            problems.append(f"{name}: does not match its manifest")
    return problems




# --- a generation's store, read without loading the generation --------------------------

def open_store(folder: Path, **options) -> sqlite3.Connection:
    """A segment's database, read-only and immutable: it is never written after its build."""
    return sqlite3.connect(f"file:{folder / 'store.sqlite'}?mode=ro&immutable=1", uri=True, **options)


def segment_records(manifest: dict) -> list[dict]:
    """A generation's segments in order, each with its path in the generation folder and its counts."""
    if "segments" in manifest:
        return manifest["segments"]
    return [{"path": ".", **manifest["counts"], "index": manifest["index"]}]  # written before segments


def segment_folders(folder: Path, manifest: dict) -> list[Path]:
    return [folder / record["path"] for record in segment_records(manifest)]


def generation_arrays(folder: Path, manifest: dict, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The per-passage and per-sentence arrays of all segments as one (a segment numbers letters, sections,
    passages, sentences and slots on from the segments before it): all of them, or only those `names` (each read
    alone from the npz)."""
    parts = []
    for segment in segment_folders(folder, manifest):
        with np.load(segment / "arrays.npz") as arrays:
            parts.append({name: arrays[name] for name in (names or arrays.files)})
    if len(parts) == 1:
        return parts[0]
    joined = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]
              if name not in ("sentence_first", "next_slot")}
    if "sentence_first" in parts[0]:
        joined["sentence_first"] = np.concatenate([parts[0]["sentence_first"],
                                                   *(part["sentence_first"][1:] for part in parts[1:])])
    if "next_slot" in parts[0]:
        joined["next_slot"] = parts[-1]["next_slot"]
    return joined


class Stores:
    """A generation's databases, one per segment, read as one: letters and passages are numbered across them."""

    def __init__(self, folder: Path, manifest: dict, **options) -> None:
        self.connections: list[sqlite3.Connection] = []
        try:
            for segment in segment_folders(folder, manifest):
                self.connections.append(open_store(segment, **options))
        except sqlite3.Error:
            self.close()
            raise

    def all(self, query: str, parameters: Sequence = ()) -> list[tuple]:
        """The rows of every segment, in segment order."""
        return [row for connection in self.connections for row in connection.execute(query, parameters)]

    def one(self, query: str, parameters: Sequence = ()) -> tuple | None:
        """The first row any segment has."""
        for connection in self.connections:
            found = connection.execute(query, parameters).fetchone()
            if found is not None:
                return found
        return None

    def where_in(self, query: str, keys: Sequence) -> Iterator[tuple]:
        for connection in self.connections:
            yield from rows_where_in(connection, query, keys)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()

    def __enter__(self) -> "Stores":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def rows_where_in(database: sqlite3.Connection, query: str, keys: Sequence) -> Iterator[tuple]:
    """The rows of `query` (ending in `IN ({})`) for every key, asked 500 keys at a time (SQLite's variable limit)."""
    for first in range(0, len(keys), 500):
        part = list(keys[first:first + 500])
        yield from database.execute(query.format(",".join("?" * len(part))), part)


def stored_documents(folder: Path, manifest: dict, doc_ids: set[str]) -> dict[str, Document]:
    """Stored letters of a generation, as they were read, for an ingest that reuses them unchanged."""
    if not doc_ids:
        return {}
    with Stores(folder, manifest) as stores:
        return {doc_id: document_from_json({**json.loads(meta), "text": text}) for doc_id, meta, text in
                stores.where_in("SELECT doc_id, meta, text FROM letters WHERE doc_id IN ({})", sorted(doc_ids))}
