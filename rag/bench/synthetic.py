"""Synthetic passages beyond a real corpus, for `rag bench --scale`: each a real passage's vector plus noise
scaled by that passage's own distance to its nearest real neighbour, with one factor bisected until the
nearest-neighbour similarity distribution of a synthetic sample matches the real one; its text, letter date
and dossier are a real letter's."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.settings import PROJECT_ROOT, Settings, display_path

NEIGHBOUR_SAMPLE = 1_000  # passages whose nearest neighbour is looked up for the similarity distributions


def nearest_neighbour_similarities(vectors: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """For each sampled row, the similarity of its nearest other row."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    for first in range(0, len(vectors), 262_144):
        index.add(np.ascontiguousarray(vectors[first:first + 262_144], dtype=np.float32))
    scores, ids = index.search(np.ascontiguousarray(vectors[sample], dtype=np.float32), 2)
    # The first is the row itself, unless an identical row came first: either way the other one counts.
    return np.where(ids[:, 0] == sample, scores[:, 1], scores[:, 0])


def synthetic_vectors(real: np.ndarray, bases: np.ndarray, scales: np.ndarray, noise: np.ndarray, factor: float) -> np.ndarray:
    """Each synthetic vector: its real base plus noise of the base's own size (times `factor`), unit length."""
    out = np.empty((len(bases), real.shape[1]), dtype=np.float32)
    for first in range(0, len(bases), 262_144):
        rows = bases[first:first + 262_144]
        block = real[rows] + (factor * scales[rows])[:, None] * noise[first:first + 262_144]
        out[first:first + 262_144] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def calibrate_noise(real: np.ndarray, bases: np.ndarray, rng: np.random.Generator) -> dict:
    """Noise that keeps the real neighbourhood structure, with both similarity distributions.

    Each real passage lends its own noise size: the one at which two noisy copies of it are as similar to
    each other as the passage is to its nearest real neighbour (for isotropic noise of relative size a in
    d dimensions, copies have similarity 1 / (1 + a^2)). A dense real neighbourhood stays dense, a lonely
    passage stays lonely, so the synthetic distribution keeps the real one's shape; one factor on all
    sizes, found by bisection, then matches the medians (a copy's nearest neighbour is the closest of its
    siblings and real neighbours, which the per-passage sizes alone do not account for).
    """
    dimension = real.shape[1]
    own = nearest_neighbour_similarities(real, np.arange(len(real)))
    scales = np.sqrt((1 / np.clip(own, 0.5, 1.0) - 1) / dimension).astype(np.float32)
    noise = rng.standard_normal((len(bases), dimension), dtype=np.float32)
    target = own[rng.choice(len(real), min(NEIGHBOUR_SAMPLE, len(real)), replace=False)]
    synthetic_sample = rng.choice(len(bases), min(NEIGHBOUR_SAMPLE, len(bases)), replace=False)
    low, high = 0.25, 4.0
    for _ in range(9):
        factor = (low + high) / 2
        found = nearest_neighbour_similarities(synthetic_vectors(real, bases, scales, noise, factor), synthetic_sample)
        if np.median(found) > np.median(target):
            low = factor  # neighbours too close: more noise
        else:
            high = factor
    quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
    return {"factor": round(factor, 4), "scales": scales, "noise": noise,
            "real_quantiles": np.quantile(target, quantiles).round(4).tolist(),
            "synthetic_quantiles": np.quantile(found, quantiles).round(4).tolist(),
            "real_similarities": target, "synthetic_similarities": found}


def rows_by_letter(real) -> list[np.ndarray]:
    """Each letter's passage rows, in order."""
    return np.split(np.argsort(real.chunk_letter, kind="stable"),
                    np.cumsum(np.bincount(real.chunk_letter, minlength=len(real.letters)))[:-1])


def synthetic_plan(real, size: int, leave_out: set[str]) -> list[tuple[int, int]]:
    """(copy number, real letter row) for each synthetic letter, in order, until `size` passages; the letters
    in `leave_out` (to be added later) are not copied."""
    passages = np.bincount(real.chunk_letter, minlength=len(real.letters))
    passages[[letter.row for letter in real.letters if letter.doc_id in leave_out]] = 0
    plan, total, copy = [], 0, 0
    while total < size:
        for letter in range(len(real.letters)):
            if total >= size:
                break
            if passages[letter]:
                plan.append((copy, letter))
                total += int(passages[letter])
        copy += 1
    return plan


def build_synthetic_index(real, plan: list[tuple[int, int]], vectors: np.ndarray, index_dir: Path,
                          letters_dir: Path, settings: Settings) -> tuple[list[Path], float]:
    """A generation of the planned copies of the real letters (text, passages, metadata; their files written
    to `letters_dir`), with the given vectors, written by the ingest's own writer; its letter files and the
    seconds the writing took."""
    from rag.files import file_sha256
    from rag.index.build import write_generation
    from rag.index.segments import NewLetters
    from rag.index.chunking import chunk_document
    from rag.index.lexical import ranges

    letters_dir.mkdir(parents=True, exist_ok=True)
    index_dir.mkdir(parents=True, exist_ok=True)
    rows_of_letter = rows_by_letter(real)
    originals = {}
    sentence_vectors = np.load(real.folder / "sentence_vectors.npy", mmap_mode="r")
    documents, chunks, sentences, hashes, files, sentence_rows = [], [], [], {}, [], []
    for copy, letter in plan:
        if letter not in originals:
            document = real.document_at(letter)
            source = PROJECT_ROOT / document.source
            originals[letter] = (document, chunk_document(document, settings.chunking), source.read_bytes(), file_sha256(source))
        document, letter_chunks, content, content_sha = originals[letter]
        doc_id = f"{document.doc_id}-x{copy:03d}"
        path = letters_dir / f"{doc_id}.txt"
        path.write_bytes(content)
        files.append(path)
        shown = display_path(path)
        documents.append(replace(document, doc_id=doc_id, source=shown))
        hashes[doc_id] = content_sha
        rows = rows_of_letter[letter]
        if len(rows) != len(letter_chunks):
            raise RuntimeError("the real index and a re-chunking of its letter disagree; rebuild it")
        for chunk, row in zip(letter_chunks, rows):
            chunks.append(replace(chunk, chunk_id=f"{doc_id}#{chunk.chunk_id.split('#')[1]}", doc_id=doc_id, source=shown))
            first, last = int(real.sentence_first[row]), int(real.sentence_first[row + 1])
            sentences.append(list(zip(real.sentence_start[first:last].tolist(), real.sentence_end[first:last].tolist())))
            sentence_rows.append(row)
    positions, _ = ranges(real.sentence_first, np.array(sentence_rows, dtype=np.int64))
    new = NewLetters(documents, hashes, chunks, sentences, vectors, np.asarray(sentence_vectors[positions]))
    model = real.manifest["model"]
    started = time.perf_counter()
    write_generation(index_dir, None, new, model, settings.chunking, settings.index)
    return files, time.perf_counter() - started
