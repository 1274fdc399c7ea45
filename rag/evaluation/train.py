"""`rag train`, assembled: the corpus's answers to Kamervragen indexed with the real model, the pipeline over them,
and the learned answer scorer fitted on them (`rag.answer.training`) and stored for the model in use."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rag.answer.training import corpus_letters, qa_pairs, train, write_scorer
from rag.embed.model import load_embedder
from rag.files import file_sha256
from rag.index.store import load_index
from rag.serve.pipeline import Pipeline, run_ingest
from rag.settings import Settings


def train_answer_scorer(corpus: Path, work_dir: Path, settings: Settings, limit: int | None = None) -> dict:
    """Train on the corpus (its answers to Kamervragen, `limit` of them at most) and store the scorer; its record."""
    settings = replace(settings, endpoint=None)
    embedder = load_embedder(settings.model)
    letters = corpus_letters(corpus, work_dir / "letters", limit)
    index_dir = work_dir / "index"
    run_ingest(letters, index_dir, settings, embedder)
    generation = load_index(index_dir, embedder.name, embedder.fingerprint, settings.chunking, settings.index,
                            settings.lexical)
    pipeline = Pipeline(embedder, generation, index_dir, settings)
    pairs = [(letter.doc_id, question, start, end) for letter in generation.letters
             for question, start, end in qa_pairs(generation.document_at(letter.row))]
    record = train(pipeline, pairs, file_sha256(corpus))
    write_scorer(embedder.name, record, settings.answer.scorer_file)
    return record
