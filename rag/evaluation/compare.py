"""What `rag eval --compare` sets side by side: the default, each row changing one thing, and the references
a LangChain tutorial would build."""

from __future__ import annotations

from dataclasses import replace

from rag.settings import ChunkSettings, RetrievalSettings, Settings


def configurations(settings: Settings) -> dict[str, tuple[ChunkSettings, RetrievalSettings]]:
    """What `rag eval --compare` sets side by side: the default, each row changing one thing, and the
    references a LangChain tutorial would build (fixed 1,000/200 pieces of the raw text, dense and hybrid)."""
    default_chunks, default = settings.chunking, settings.retrieval
    naive_chunks = replace(default_chunks, max_chars=1000, overlap_chars=200, strategy="fixed")
    return {
        "default": (default_chunks, default),
        "reference: fixed 1000/200, dense": (naive_chunks, replace(default, mode="dense", understand_time=False,
                                                                                 sentence_weight=0.0)),
        "reference: fixed 1000/200, BM25 + dense, RRF": (naive_chunks, replace(
            default, fusion="rrf", understand_time=False, sentence_weight=0.0)),
        "dense only": (default_chunks, replace(default, mode="dense")),
        "BM25 only": (default_chunks, replace(default, mode="lexical")),
        "reciprocal rank fusion": (default_chunks, replace(default, fusion="rrf")),
        "no best-sentence score": (default_chunks, replace(default, sentence_weight=0.0)),
        "no time words": (default_chunks, replace(default, understand_time=False)),
        "adjacent pieces merged (old)": (default_chunks, replace(default, merge_adjacent=True)),
    }
