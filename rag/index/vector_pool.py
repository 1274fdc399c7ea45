"""Vectors by the hash of the text they embed: of passages the live generation holds, of batches an interrupted
ingest checkpointed in `.embedded/`, and of those embedded now; an ingest embeds only what none of them has."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np

from rag.files import NpyRows
from rag.index.folder import Stores, generation_arrays, segment_folders
from rag.index.lexical import ranges


def _rows(segments: list[Path], name: str, rows: np.ndarray) -> np.ndarray:
    """Rows of a generation's segmented .npy files."""
    table = NpyRows(*(segment / name for segment in segments))
    try:
        return table.take(rows)
    finally:
        table.close()


class VectorPool:
    """Vectors by embedded-text hash: of passages the live generation holds, from checkpoints, and new ones."""

    def __init__(self, checkpoints: Path, previous: tuple[Path, dict] | None, fingerprint: str) -> None:
        self.checkpoints = checkpoints
        self.previous = previous
        self.fingerprint = fingerprint
        self.found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.dimension = 0
        for path in sorted(checkpoints.glob("batch-*.npz")) if checkpoints.exists() else []:
            try:
                with np.load(path) as saved:
                    if str(saved["fingerprint"]) != fingerprint:  # left by an ingest with another model
                        path.unlink(missing_ok=True)
                        continue
                    self._add(list(saved["hashes"]), saved["vectors"], saved["sentence_vectors"], saved["sentence_first"])
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                path.unlink(missing_ok=True)  # a checkpoint cut off by the crash it was for

    def _add(self, hashes, vectors, sentence_vectors, sentence_first) -> None:
        for row, key in enumerate(hashes):
            self.found[str(key)] = (vectors[row], sentence_vectors[sentence_first[row]:sentence_first[row + 1]])
        if len(vectors):
            self.dimension = int(vectors.shape[1])

    def look_up(self, hashes: list[str]) -> None:
        """Fetch the vectors the live generation holds for these texts (one indexed query per 500)."""
        wanted = sorted({key for key in hashes if key not in self.found})
        if self.previous is None or not wanted:
            return
        folder, manifest = self.previous
        try:
            with Stores(folder, manifest) as stores:
                rows = dict(stores.where_in("SELECT text_hash, row FROM chunks WHERE text_hash IN ({})", wanted))
            if not rows:
                return
            order = np.array(sorted(rows.values()), dtype=np.int64)
            segments = segment_folders(folder, manifest)
            vectors = _rows(segments, "vectors.npy", order)
            positions, offsets = ranges(generation_arrays(folder, manifest, ["sentence_first"])["sentence_first"], order)
            sentence_vectors = _rows(segments, "sentence_vectors.npy", positions)
        except (OSError, ValueError, KeyError, sqlite3.Error):
            return  # a damaged live build lends nothing
        by_row = {row: key for key, row in rows.items()}
        self._add([by_row[row] for row in order.tolist()], vectors, sentence_vectors, offsets)

    def has(self, key: str, sentences: int) -> bool:
        return key in self.found and len(self.found[key][1]) == sentences

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.found[key]

    def checkpoint(self, hashes: list[str], vectors: np.ndarray, sentence_vectors: np.ndarray, counts: list[int]) -> None:
        first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.checkpoints.mkdir(exist_ok=True)
        name = f"batch-{time.time_ns()}-{uuid.uuid4().hex[:6]}.npz"
        path, temporary = self.checkpoints / name, self.checkpoints / f"partial-{name}"  # never read as a batch
        with temporary.open("wb") as handle:
            np.savez(handle, hashes=np.array(hashes), vectors=vectors, sentence_vectors=sentence_vectors.astype(np.float16),
                     sentence_first=first, fingerprint=np.array(self.fingerprint))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        self._add(hashes, vectors, sentence_vectors.astype(np.float16), first)

    def clear(self) -> None:
        shutil.rmtree(self.checkpoints, ignore_errors=True)
