"""`rag bench --corpus`: scale measured on real parliamentary text, and to a million passages beyond it.

The corpus (JSON lines of {"URL", "Content"}, as the Staten-Generaal Digitaal dump) becomes one
text letter per distinct document, ingested with the real model in steps (about 10,000 passages,
then all), each step measured as users meet it: ingest throughput and build time, the memory of
a process that loaded the index, search latency (dense, BM25, hybrid, filtered), and the recall@10
of approximate FAISS indexes against exact search on the real vectors. Then the index is taken
further than the corpus reaches: synthetic letters that repeat the real ones (their texts,
passages and metadata), with vectors that are the real ones plus noise whose size is calibrated
so that each passage's nearest-neighbour similarity is distributed as among the real passages.
The synthetic index is written by the same code as a real ingest, its letters are files on disk,
and a real ingest then re-checks it (a no-op) and adds ten held-out real letters to it, so the
incremental path is measured at that size too. Latencies exclude the question's embedding (the
questions are embedded once, beforehand); the memory is that of a real `rag serve`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.bench.synthetic import build_synthetic_index, calibrate_noise, rows_by_letter, synthetic_plan, synthetic_vectors
from rag.errors import InputError
from rag.readers.corpus import corpus_letters
from rag.settings import Settings

HELD_OUT = 10  # real letters kept aside, to be added to each index as an incremental ingest
REAL_STEP = 10_000  # passages of the first, smaller real step
RECALL_K = 10
EF_SEARCH_SWEEP = (64, 128, 256, 512, 1024)
NPROBE_SWEEP = (32, 64, 128, 256, 512)


# --- the corpus as letters ------------------------------------------------------------------

# --- one index, measured --------------------------------------------------------------------

def search_figures(index_dir: str, queries: str, started: float) -> dict:
    """Run in a fresh process (`rag.bench.probe`): load the index, then time every kind of search for the prepared
    questions."""
    from rag.bench.speed import latency_summary, resident_memory_mb
    from rag.search.conversation import Turn
    from rag.search.retrieval import Filters, Query, RetrievalSettings, allowed_rows, rank
    from rag.index.store import load_index

    prepared = json.loads(Path(queries).read_text())
    vectors = np.load(prepared["vectors"])
    index = load_index(Path(index_dir), prepared["model"], None)
    loaded = time.perf_counter() - started
    memory_loaded = resident_memory_mb()
    filters = {"broad": Filters(since=prepared["broad"][0], until=prepared["broad"][1]),
               "narrow": Filters(dossier=prepared["narrow"]) if prepared["narrow"] else None}
    timings: dict[str, list[float]] = {name: [] for name in ("dense", "lexical", "hybrid", "filtered_broad", "filtered_narrow")}
    top: list[list[int]] = []
    for text, vector in zip(prepared["questions"], vectors):
        query = Query(Turn(text, text), Filters())
        t = time.perf_counter()
        found = index.dense_search(vector, 50)
        timings["dense"].append((time.perf_counter() - t) * 1000)
        top.append([row for row, _ in found[:RECALL_K]])
        t = time.perf_counter()
        rank(index, query, None, 5, RetrievalSettings(mode="lexical", sentence_weight=0))
        timings["lexical"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        rank(index, query, vector, 5)
        timings["hybrid"].append((time.perf_counter() - t) * 1000)
        for name, chosen in filters.items():
            if chosen is None:
                continue
            t = time.perf_counter()
            rank(index, replace(query, filters=chosen), vector, 5)
            timings[f"filtered_{name}"].append((time.perf_counter() - t) * 1000)
    shares = {name: round(float(allowed_rows(index, chosen).mean()), 4) for name, chosen in filters.items() if chosen}
    return {"passages": len(index), "letters": len(index.letters), "load_s": round(loaded, 2),
            "memory_after_load_mb": round(memory_loaded, 1), "memory_after_searches_mb": round(resident_memory_mb(), 1),
            "latency": {name: latency_summary(samples) for name, samples in timings.items() if samples},
            "filter_share": shares, "dense_top": top, "index": index.manifest["index"]}


def measure_index(index_dir: Path, prepared: Path) -> dict:
    from rag.bench.speed import _probe

    return _probe("search", str(index_dir), str(prepared))


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = RECALL_K) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top k (scores, rows) by brute force."""
    import faiss

    exact = faiss.IndexFlatIP(vectors.shape[1])
    for first in range(0, len(vectors), 262_144):
        exact.add(np.ascontiguousarray(vectors[first:first + 262_144], dtype=np.float32))
    return exact.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def recall_at_k(found: Sequence[Sequence[int]], vectors: np.ndarray, queries: np.ndarray, exact_scores: np.ndarray) -> float:
    """recall@k against exact search, counting ties: a found row scoring at least the k-th exact score is right
    (two identical passages are equally correct answers)."""
    hits = []
    for rows, query, best in zip(found, queries, exact_scores):
        rows = [row for row in rows if row >= 0]
        scores = np.asarray(vectors[sorted(rows)], dtype=np.float32) @ query if rows else np.zeros(0)
        hits.append(min(int((scores >= best[-1] - 1e-5).sum()), len(best)) / len(best))
    return round(float(np.mean(hits)), 4)


def approximate_sweep(vectors: np.ndarray, queries: np.ndarray, exact_scores: np.ndarray, served=None) -> dict:
    """recall@10 and latency of HNSW over efSearch and of IVF over nprobe, each without the exact rescoring a
    server adds; each is the served index when it is of that kind (rows are its slots: it was just built), else one
    built here with the default settings."""
    import faiss

    from rag.bench.speed import latency_summary
    from rag.index.vector_index import IndexSettings, VectorIndex

    slots = np.arange(len(vectors), dtype=np.int64)
    figures: dict = {}
    for kind, values in (("hnsw", EF_SEARCH_SWEEP), ("ivf", NPROBE_SWEEP)):
        started = time.perf_counter()
        mine = served is not None and served.kind == kind
        index = served if mine else VectorIndex.build(vectors, slots, IndexSettings(kind=kind))
        rows = {}
        for value in values:
            params = faiss.SearchParametersHNSW(efSearch=value) if kind == "hnsw" else faiss.SearchParametersIVF(nprobe=value)
            samples, found = [], []
            for query in queries:
                t = time.perf_counter()
                _, ids = index.index.search(query[None, :].astype(np.float32), RECALL_K, params=params)
                samples.append((time.perf_counter() - t) * 1000)
                found.append(ids[0].tolist())
            rows[str(value)] = {"recall@10": recall_at_k(found, vectors, queries, exact_scores), **latency_summary(samples)}
        figures[kind] = {"build_s": None if mine else round(time.perf_counter() - started, 1), "sweep": rows}
    return figures


# --- the synthetic extension ----------------------------------------------------------------

def _plan_real_steps(files: list[Path]) -> tuple[list[list[Path]], dict]:
    """Real steps (about REAL_STEP passages, then everything) and what the filters are made of."""
    from collections import Counter

    from rag.index.chunking import chunk_document
    from rag.readers.document import read_document
    from rag.errors import LetterSkipped

    counts, years, dossiers = [], [], Counter()
    for path in files:
        try:
            document = read_document(path)
        except LetterSkipped:
            counts.append(0)
            continue
        counts.append(len(chunk_document(document)))
        if document.date:
            years.append(int(document.date[:4]))
        dossiers.update(value for name, value in document.identifiers if name == "dossier")
    cumulative = np.cumsum(counts)
    steps = []
    if cumulative[-1] > 1.5 * REAL_STEP:
        steps.append(files[:int(np.searchsorted(cumulative, REAL_STEP)) + 1])
    steps.append(files)
    middle = int(np.median(years)) if years else 1990
    return steps, {"broad": [f"{middle - 5}-01-01", f"{middle + 4}-12-31"],
                   "narrow": dossiers.most_common(1)[0][0] if dossiers else None, "passages": int(cumulative[-1])}


def incremental_figures(index_dir: Path, files: list[Path], held_out: list[Path], embedder, settings: Settings) -> dict:
    """A no-op re-ingest (after a first check that hashes the files, as an archive copied in needs once), then the
    held-out letters added: against embedding their passages alone, and appended as a segment against merged into
    a copy of the whole index (made in a folder of hard links to the same files, which no ingest changes)."""
    from rag.index.chunking import chunk_document, sentence_spans
    from rag.readers.document import read_documents
    from rag.serve.pipeline import run_ingest

    started = time.perf_counter()
    run_ingest(files, index_dir, settings, embedder)  # the first check hashes every file and records what it saw
    first_check = time.perf_counter() - started
    started = time.perf_counter()
    again = run_ingest(files, index_dir, settings, embedder)
    noop = time.perf_counter() - started
    documents = read_documents(held_out, [])
    chunks = [chunk for document in documents for chunk in chunk_document(document)]
    texts = {document.doc_id: document.text for document in documents}
    spans = [[(s + len(c.embed_text) - len(c.text) - c.start, e + len(c.embed_text) - len(c.text) - c.start)
              for s, e in sentence_spans(texts[c.doc_id], c.start, c.end)] for c in chunks]
    started = time.perf_counter()
    for _ in embedder.passage_batches([c.embed_text for c in chunks], spans):
        pass
    alone = time.perf_counter() - started
    copy = index_dir.with_name(f"{index_dir.name}-merged")
    shutil.copytree(index_dir, copy, copy_function=os.link)
    merging = replace(settings, index=replace(settings.index, max_segments=0))
    started = time.perf_counter()
    run_ingest([*files, *held_out], copy, merging, embedder)
    merged = time.perf_counter() - started
    shutil.rmtree(copy)
    started = time.perf_counter()
    added = run_ingest([*files, *held_out], index_dir, settings, embedder)
    seconds = time.perf_counter() - started
    return {"first_check_s": round(first_check, 2), "noop_reingest_s": round(noop, 2), "noop_changed": again.changed,
            "added_letters": len(documents),
            "added_passages": added.embedded, "add_s": round(seconds, 2), "embed_alone_s": round(alone, 2),
            "add_vs_embed_alone": round(seconds / max(alone, 1e-9), 2), "merged_s": round(merged, 2),
            "append_vs_merge": round(seconds / max(merged, 1e-9), 3), "index": added.index}


def run_scale_bench(corpus: Path, limit: int | None, sizes: Sequence[int], questions: Sequence[str], work_dir: Path,
                    report_dir: Path, settings: Settings, serve_memory: bool = True) -> dict:
    from rag.readers.document import doc_id_for
    from rag.embed.model import load_embedder
    from rag.serve.pipeline import run_ingest
    from rag.index.store import load_index

    letters = corpus_letters(corpus, work_dir / "letters", limit)
    if len(letters) <= HELD_OUT:
        raise InputError(f"{corpus}: {len(letters)} distinct documents; the scale bench needs more than {HELD_OUT}")
    embedder = load_embedder(settings.model)  # all cores, as `rag ingest`
    held_out, base = letters[-HELD_OUT:], letters[:-HELD_OUT]
    steps, plan = _plan_real_steps(base)
    queries = embedder.encode_queries(list(questions))
    np.save(work_dir / "queries.npy", queries)
    prepared = work_dir / "queries.json"
    prepared.write_text(json.dumps({"questions": list(questions), "vectors": str(work_dir / "queries.npy"),
                                    "model": embedder.name, "broad": plan["broad"], "narrow": plan["narrow"]}))
    report: dict = {"date": time.strftime("%Y-%m-%d"), "corpus": {"file": corpus.name, "documents": len(letters),
                    "held_out": len(held_out), "passages": plan["passages"]},
                    "filters": {"broad": plan["broad"], "narrow_dossier": plan["narrow"]}, "real": [], "synthetic": []}
    real_dir = work_dir / "index-real"
    for step in steps:
        started = time.perf_counter()
        summary = run_ingest(step, real_dir, settings, embedder)
        seconds = time.perf_counter() - started
        figures = _index_figures(real_dir, prepared, queries, work_dir, questions, serve_memory, settings)
        figures["ingest"] = {"letters": summary.letters, "embedded": summary.embedded, "seconds": round(seconds, 1),
                             "embedding_s": round(summary.embedding_seconds, 1),
                             "build_s": round(seconds - summary.embedding_seconds, 1),
                             "passages_per_s": round(summary.embedded / max(summary.embedding_seconds, 1e-9), 1)}
        report["real"].append(figures)
    report["real"][-1]["incremental"] = incremental_figures(real_dir, base, held_out, embedder, settings)

    real = load_index(real_dir, embedder.name, embedder.fingerprint, settings.chunking, settings.index, settings.lexical)
    real_vectors = np.asarray(real.vectors, dtype=np.float32)
    rng = np.random.default_rng(20261124)
    for size in sizes:
        plan_rows = synthetic_plan(real, size, {doc_id_for(path) for path in held_out})
        rows_of_letter = rows_by_letter(real)
        bases = np.concatenate([rows_of_letter[letter] for _copy, letter in plan_rows])
        calibration = calibrate_noise(real_vectors, bases, rng)
        vectors = synthetic_vectors(real_vectors, bases, calibration.pop("scales"), calibration.pop("noise"),
                                    calibration["factor"])
        index_dir, letters_dir = work_dir / f"index-{size}", work_dir / f"letters-{size}"
        files, build_seconds = build_synthetic_index(real, plan_rows, vectors, index_dir, letters_dir, settings)
        del vectors
        figures = _index_figures(index_dir, prepared, queries, work_dir, questions, serve_memory, settings)
        figures["build_s"] = round(build_seconds, 1)
        figures["calibration"] = {k: v for k, v in calibration.items() if not k.endswith("similarities")}
        figures["incremental"] = incremental_figures(index_dir, files, held_out, embedder, settings)
        report["synthetic"].append(figures)
        write_neighbour_chart(calibration["real_similarities"], calibration["synthetic_similarities"], size,
                              report_dir / "scale-neighbours.png")
        shutil.rmtree(index_dir, ignore_errors=True)
        shutil.rmtree(letters_dir, ignore_errors=True)
    real.close()
    write_scale_chart(report, report_dir / "scale.png")
    return report


def _index_figures(index_dir: Path, prepared: Path, queries: np.ndarray, work_dir: Path, questions: Sequence[str],
                   serve_memory: bool, settings: Settings) -> dict:
    """Search figures from a fresh process, recall of the served and of approximate indexes, a real server's memory."""
    from rag.bench.speed import serving_figures
    from rag.index.folder import live_build
    from rag.index.vector_index import VectorIndex

    figures = measure_index(index_dir, prepared)
    folder, manifest = live_build(index_dir)
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    exact_scores, _ = exact_top(vectors, queries)
    figures["recall@10_served"] = recall_at_k(figures.pop("dense_top"), vectors, queries, exact_scores)
    served = VectorIndex.load(folder, manifest["index"], settings.index) if manifest["index"]["kind"] != "flat" else None
    figures["approximate"] = approximate_sweep(np.asarray(vectors), queries, exact_scores, served)
    if serve_memory:
        figures["serve"] = serving_figures(index_dir, work_dir, questions, users=0, seconds=0)
    return figures


# --- report ---------------------------------------------------------------------------------

def _rows(report: dict) -> list[tuple[str, dict]]:
    return [("real", figures) for figures in report["real"]] + [("synthetic", f) for f in report["synthetic"]]


def write_scale_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [figures for _origin, figures in _rows(report)]
    sizes = [figures["passages"] for figures in rows]
    figure, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in (("hybrid", "hybrid (as answers use it)"), ("dense", "dense (FAISS)"), ("lexical", "BM25"),
                        ("filtered_broad", "hybrid, broad filter"), ("filtered_narrow", "hybrid, narrow filter")):
        points = [(size, figures["latency"][name]["p50_ms"]) for size, figures in zip(sizes, rows) if name in figures["latency"]]
        if points:
            latency.plot(*zip(*points), marker="o", label=label)
    latency.set(xscale="log", yscale="log", xlabel="passages", ylabel="p50 per question (ms, embedding excluded)",
                title="Search latency")
    latency.legend(fontsize=8)
    for key, label in (("after_40_answers_mb", "rag serve after 40 answers"),
                       ("after_40_answers_anon_mb", "of which its own (not file pages)")):
        points = [(size, figures["serve"][key]) for size, figures in zip(sizes, rows) if "serve" in figures]
        if points:
            memory.plot(*zip(*points), marker="o", label=label)
    memory.set(xscale="log", xlabel="passages", ylabel="resident memory (MB)", title="Serving memory")
    memory.legend(fontsize=8)
    figure.suptitle(f"rag bench --corpus {report['corpus']['file']} ({report['date']}; first points real, then synthetic)",
                    fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_neighbour_chart(real: np.ndarray, synthetic: np.ndarray, size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(real.min(), synthetic.min()), 1.0, 40)
    axis.hist(real, bins=bins, alpha=0.6, density=True, label=f"real passages ({len(real)} sampled)")
    axis.hist(synthetic, bins=bins, alpha=0.6, density=True, label=f"synthetic set of {size:,} ({len(synthetic)} sampled)")
    axis.set(xlabel="similarity to the nearest other passage", ylabel="density",
             title="Nearest-neighbour similarity: real against synthetic")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _memory(figures: dict) -> str:
    serve = figures.get("serve")
    return f"{serve['after_40_answers_mb']:.0f} ({serve['after_40_answers_anon_mb']:.0f})" if serve else "-"


def format_scale(report: dict) -> str:
    """The README's scale table (markdown) and the incremental figures."""
    from rag.index.vector_index import describe

    lines = [f"rag bench --corpus {report['corpus']['file']}, {report['date']}: {report['corpus']['documents']} distinct "
             f"documents ({report['corpus']['held_out']} held out to be added), {report['corpus']['passages']} passages",
             "", "| passages | origin | index | hybrid p50/p95 ms | dense p50 | BM25 p50 | filtered broad / narrow p50 | "
             "recall@10 | rag serve MB (own) | load s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for origin, figures in _rows(report):
        latency = figures["latency"]
        narrow = latency.get("filtered_narrow", {}).get("p50_ms", "-")
        lines.append(
            f"| {figures['passages']:,} | {origin} | {describe(figures['index'])} | {latency['hybrid']['p50_ms']} / "
            f"{latency['hybrid']['p95_ms']} | {latency['dense']['p50_ms']} | {latency['lexical']['p50_ms']} | "
            f"{latency['filtered_broad']['p50_ms']} / {narrow} | {figures['recall@10_served']} | "
            f"{_memory(figures)} | {figures['load_s']} |")
    shares = report["real"][-1]["filter_share"]
    lines.append(f"\nfilters: broad = letters dated {report['filters']['broad'][0]} to {report['filters']['broad'][1]} "
                 f"({shares.get('broad', 0):.1%} of the real passages); narrow = dossier {report['filters']['narrow_dossier']} "
                 f"({shares.get('narrow', 0):.2%})")
    for origin, figures in _rows(report):
        incremental = figures.get("incremental")
        if incremental:
            lines.append(f"\nat {figures['passages']:,} ({origin}): first check {incremental['first_check_s']} s, no-op "
                         f"re-ingest {incremental['noop_reingest_s']} s; adding "
                         f"{incremental['added_letters']} letters ({incremental['added_passages']} passages) "
                         f"{incremental['add_s']} s = {incremental['add_vs_embed_alone']}x embedding them alone "
                         f"({incremental['embed_alone_s']} s), merged into a copy of the index instead {incremental['merged_s']} s "
                         f"(appending takes {incremental['append_vs_merge']}x of it); {incremental['index']}")
        if "ingest" in figures:
            ingest = figures["ingest"]
            lines.append(f"ingest to {figures['passages']:,} passages: {ingest['embedded']} embedded at "
                         f"{ingest['passages_per_s']}/s ({ingest['embedding_s']} s), the rest {ingest['build_s']} s")
        if "build_s" in figures:
            calibration = figures["calibration"]
            lines.append(f"synthetic {figures['passages']:,}: written in {figures['build_s']} s; noise factor "
                         f"{calibration['factor']}; nearest-neighbour similarity quantiles (5/25/50/75/95 %) real "
                         f"{calibration['real_quantiles']}, synthetic {calibration['synthetic_quantiles']}")
        for kind, sweep in figures["approximate"].items():
            cells = ", ".join(f"{value}: {row['recall@10']} in {row['p50_ms']} ms" for value, row in sweep["sweep"].items())
            lines.append(f"  {kind} ({'efSearch' if kind == 'hnsw' else 'nprobe'}): {cells}")
    return "\n".join(lines)
