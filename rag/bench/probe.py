"""Measurements that need an interpreter of their own (its imports and its memory are what is measured):

    python -m rag.bench.probe engine SPEC.json    an embedding engine: load, query latency, passages/s, memory
    python -m rag.bench.probe search INDEX QUERIES.json    an index: load, every kind of search

Each prints one JSON object. `rag bench` starts them; the clock starts before the heavy imports.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def engine(spec: dict) -> dict:
    """One engine, timed from a cold start: ONNX Runtime (`torch` false, what serving uses, in the `precision` the
    spec names) or sentence-transformers (fp32, torch)."""
    import numpy as np

    from rag.bench.speed import latency_summary, resident_memory_mb
    from rag.embed.model import Embedder, SentenceTransformerEngine, default_model_folder, load_embedder, load_sentence_transformer
    from rag.settings import from_environment

    from dataclasses import replace

    settings = replace(from_environment().model, precision=spec.get("precision", "int8"))
    onnx = load_embedder(settings, threads=spec["threads"])
    embedder = onnx
    if spec["torch"]:
        model = load_sentence_transformer(default_model_folder(settings.cache_dir), None)
        embedder = Embedder(onnx.name, onnx.fingerprint, onnx.dimension, SentenceTransformerEngine(model), settings,
                            onnx.query_prompt, onnx.document_prompt)
    loaded = time.perf_counter() - STARTED
    questions, passages = spec["questions"], spec["passages"]
    embedder.encode_queries(questions[:2])
    samples = []
    for question in questions:
        started = time.perf_counter()
        embedder.encode_queries([question])
        samples.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    encoded = embedder.encode_passages(passages)
    seconds = time.perf_counter() - started
    np.save(spec["vectors_path"], encoded.vectors)
    latency = latency_summary(samples)
    return {"load_s": round(loaded, 2), "query_p50_ms": latency["p50_ms"], "query_p95_ms": latency["p95_ms"],
            "passages_per_s": round(len(passages) / seconds, 1), "resident_mb": round(resident_memory_mb(), 1),
            "torch_imported": "torch" in sys.modules}


def main(arguments: list[str]) -> None:
    if arguments[:1] == ["engine"]:
        print(json.dumps(engine(json.loads(Path(arguments[1]).read_text()))))
    elif arguments[:1] == ["search"]:
        from rag.bench.scale import search_figures

        print(json.dumps(search_figures(arguments[1], arguments[2], STARTED)))
    else:
        raise SystemExit("usage: python -m rag.bench.probe engine SPEC.json | search INDEX QUERIES.json")


if __name__ == "__main__":
    main(sys.argv[1:])
