"""What `rag eval --compare` sets side by side: the default, each row changing one thing, and the references
a LangChain tutorial would build."""

from __future__ import annotations

from dataclasses import replace

from rag.settings import Settings


def configurations(settings: Settings) -> dict[str, Settings]:
    """What `rag eval --compare` sets side by side: the default, each row changing one thing, and the
    references a LangChain tutorial would build (fixed 1,000/200 pieces of the raw text, the plain model's questions,
    dense and hybrid)."""
    retrieval, chunking, lexical = settings.retrieval, settings.chunking, settings.lexical
    naive = replace(chunking, max_chars=1000, overlap_chars=200, strategy="fixed")
    plain = replace(settings.model, question_tower=False)
    unread = replace(settings.answer, rerank=False)  # today's ranking of sentences alone, with the same thresholds
    rows = {
        "default": settings,
        "reference: fixed 1000/200, dense": replace(settings, model=plain, chunking=naive, answer=unread, retrieval=replace(
            retrieval, mode="dense", understand_time=False, sentence_weight=0.0)),
        "reference: fixed 1000/200, BM25 + dense, RRF": replace(settings, model=plain, chunking=naive, answer=unread,
                                                                 retrieval=replace(retrieval, fusion="rrf", rrf_k=60,
                                                                                   understand_time=False, sentence_weight=0.0)),
        "no sentence reranker": replace(settings, answer=unread),
        "dense only": replace(settings, retrieval=replace(retrieval, mode="dense")),
        "BM25 only": replace(settings, retrieval=replace(retrieval, mode="lexical")),
        "reciprocal rank fusion": replace(settings, retrieval=replace(retrieval, fusion="rrf")),
        "RRF constant 60": replace(settings, retrieval=replace(retrieval, rrf_k=60)),
        "dense weight 0.8": replace(settings, retrieval=replace(retrieval, dense_weight=0.8)),
        "dense weight 0.4": replace(settings, retrieval=replace(retrieval, dense_weight=0.4)),
        "no best-sentence score": replace(settings, retrieval=replace(retrieval, sentence_weight=0.0)),
        "no time words": replace(settings, retrieval=replace(retrieval, understand_time=False)),
        "stemmer: snowball dutch": replace(settings, lexical=replace(lexical, stemmer="dutch")),
        "stemmer: dutch_porter": replace(settings, lexical=replace(lexical, stemmer="dutch_porter")),
        f"compound parts in BM25: {'off' if lexical.compounds else 'on'}": replace(
            settings, lexical=replace(lexical, compounds=not lexical.compounds)),
        "adjacent pieces merged (old)": replace(settings, retrieval=replace(retrieval, merge_adjacent=True)),
        "answers: hand-set scorer (old)": replace(settings, answer=replace(settings.answer, scorer="hand-set")),
        # What the project did before the question tower: questions through the plain model, its own answer scorer
        # and thresholds, the fusion chosen for it.
        "before the tower: plain e5 questions, weighted fusion": replace(
            settings, model=plain, retrieval=replace(retrieval, fusion="weighted")),
        "plain e5 questions": replace(settings, model=plain),
    }
    # A row that is the default under another name is left out.
    return {name: row for name, row in rows.items() if name == "default" or row != settings}
