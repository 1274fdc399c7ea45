"""Answers: ranked passages in, an `Answer` out (quoted sentences with their [n], or an abstention).

`extractive` chooses and quotes sentences (no language model), `rerank` sets the sentence reranker's reading of
its best candidates beside today's ranking (the reranker itself is handed in: answers receive scores, not the
model); `generated` asks an optional
OpenAI-compatible endpoint and checks every [n] it writes; the abstention thresholds per model
are in `calibration.json`. Imports search (Hit), the index (the stored sentences) and the shared
modules; never serve, evaluation or the UI.
"""
