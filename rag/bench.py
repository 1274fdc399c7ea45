"""Speed, memory and scale, measured side by side in one run so the figures read as ratios.

Synthetic corpora for the scale step are made from the seed chunks: vectors are seed chunk
vectors plus Gaussian noise (sigma 0.05 per dimension), re-normalised; texts are six seed
sentences drawn at random. Queries are the eval questions' own vectors and texts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag import config


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[position]


def resident_memory_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _timed(function: Callable, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _latency(samples: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 0.5), 2), "p95_ms": round(percentile(samples, 0.95), 2)}


# --- the pipeline on the seed letters --------------------------------------------------------

def ingest_figures(pipeline, work_dir: Path) -> dict:
    from rag.pipeline import run_ingest

    from rag.chunking import chunk_documents

    texts = [chunk.embed_text for chunk in chunk_documents(pipeline.index.documents.values())]
    started = time.perf_counter()
    pipeline.embedder.encode_passages(texts)
    model_seconds = time.perf_counter() - started
    letters = pipeline.index.letter_files
    started = time.perf_counter()
    summary = run_ingest(letters, work_dir / "bench-index", pipeline.embedder.name, embedder=pipeline.embedder)
    full_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run_ingest(letters, work_dir / "bench-index", pipeline.embedder.name, embedder=pipeline.embedder)
    noop_seconds = time.perf_counter() - started
    return {
        "device": pipeline.embedder.device,
        "passages": summary.chunks,
        "model_passages_per_s": round(len(texts) / model_seconds, 1),
        "ingest_passages_per_s": round(summary.chunks / full_seconds, 1),
        "ingest_vs_model": round((summary.chunks / full_seconds) / (len(texts) / model_seconds), 3),
        "noop_reingest_s": round(noop_seconds, 3),
        "noop_vs_full": round(noop_seconds / full_seconds, 4),
    }


def query_figures(pipeline, questions: Sequence[str]) -> dict:
    from rag.pipeline import Pipeline
    from rag.retrieval import RetrievalSettings

    figures = {}
    for mode in ("dense", "lexical", "hybrid"):
        variant = Pipeline(pipeline.embedder, pipeline.index, pipeline.index_dir, retrieval=RetrievalSettings(mode=mode))
        for question in questions[:3]:
            variant.search(question)  # warm up
        samples = [sample for question in questions for sample in _timed(lambda q=question: variant.search(q), 1)]
        figures[f"search_{mode}"] = _latency(samples)
    samples = [sample for question in questions for sample in _timed(lambda q=question: pipeline.ask(q), 1)]
    figures["ask"] = _latency(samples)
    dense = figures["search_dense"]["p50_ms"]
    for name in ("search_lexical", "search_hybrid", "ask"):
        figures[name]["p50_vs_dense"] = round(figures[name]["p50_ms"] / dense, 2)
    return figures


def cold_start_figures(index_dir: Path, warm_hybrid_ms: float) -> dict:
    command = [sys.executable, "-m", "rag.cli", "search", "--index", str(index_dir), "-k", "3", "Wat zei Nederland over China?"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=config.PROJECT_ROOT)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli", "--help"], check=True, capture_output=True, cwd=config.PROJECT_ROOT)
    help_seconds = time.perf_counter() - started
    return {"cold_search_s": round(cold, 2), "cold_vs_warm_hybrid": round(cold * 1000 / warm_hybrid_ms, 1),
            "help_s": round(help_seconds, 3)}


# --- scale -----------------------------------------------------------------------------------

def synthetic_vectors(seed_vectors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    base = seed_vectors[rng.integers(0, len(seed_vectors), count)]
    noisy = base + rng.normal(0, 0.05, base.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def synthetic_texts(seed_texts: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
    sentences = [s.strip() for text in seed_texts for s in text.split(". ") if len(s) > 30]
    picks = rng.integers(0, len(sentences), (count, 6))
    return [". ".join(sentences[i] for i in row) for row in picks]


def scale_figures(pipeline, query_vectors: np.ndarray, query_texts: Sequence[str], sizes: Sequence[int]) -> dict:
    import faiss

    from rag.ingest import build_faiss
    from rag.store import IndexSettings
    from rag.lexical import LexicalIndex

    rng = np.random.default_rng(7)
    seed_vectors = np.load(pipeline.index.folder / "vectors.npy")
    seed_texts = [chunk.text for chunk in pipeline.index.chunks]
    figures = {}
    for size in sizes:
        vectors = synthetic_vectors(seed_vectors, size, rng)
        ids = np.arange(size, dtype=np.int64)
        row: dict[str, dict] = {}
        exact = None
        for kind in ("flat", "hnsw", "ivf"):
            started = time.perf_counter()
            index, _ = build_faiss(vectors, ids, IndexSettings(kind=kind))
            build_seconds = time.perf_counter() - started
            if kind == "hnsw":
                faiss.downcast_index(index.index).hnsw.efSearch = 128
            if kind == "ivf":
                faiss.downcast_index(index.index).nprobe = 16
            samples = [_timed(lambda v=v: index.search(v[None, :], 10), 1)[0] for v in query_vectors]
            _, found = index.search(query_vectors, 10)
            if exact is None:
                exact = found
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))
            row[kind] = {**_latency(samples), "build_s": round(build_seconds, 2), "recall@10": round(recall, 3),
                         "memory_mb": round(faiss.serialize_index(index).nbytes / 2**20, 1)}
        texts = synthetic_texts(seed_texts, size, rng)
        started = time.perf_counter()
        lexical = LexicalIndex.build(texts)
        build_seconds = time.perf_counter() - started
        samples = [_timed(lambda q=q: lexical.scores(q), 1)[0] for q in query_texts]
        row["bm25"] = {**_latency(samples), "build_s": round(build_seconds, 2)}
        for kind in ("hnsw", "ivf", "bm25"):
            row[kind]["p50_vs_flat"] = round(row[kind]["p50_ms"] / row["flat"]["p50_ms"], 3)
        figures[str(size)] = row
    return figures


def write_scale_chart(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(size) for size in figures]
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for kind, label in (("flat", "FAISS exact (flat)"), ("hnsw", "FAISS HNSW"), ("ivf", "FAISS IVF-flat"), ("bm25", "BM25 (bm25s)")):
        axis.plot(sizes, [figures[str(s)][kind]["p50_ms"] for s in sizes], marker="o", label=label)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("passages in the corpus")
    axis.set_ylabel("p50 latency per query (ms)")
    axis.set_title("Search latency against corpus size")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- load --------------------------------------------------------------------------------------

def load_test(url: str, questions: Sequence[str], users: int = 20, seconds: float = 20.0,
              max_requests: int = 400, server_pid: int | None = None) -> dict:
    """Simulated users asking eval questions through the page's API, bounded in time and count."""
    from gradio_client import Client

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    memory_before = resident_memory_mb(server_pid) if server_pid else None

    def user(number: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as error:  # a user that cannot even connect is an error of the run
            with lock:
                errors.append(f"connect: {type(error).__name__}")
            return
        turn = number
        while time.monotonic() < deadline:
            with lock:
                if len(latencies) + len(errors) >= max_requests:
                    return
            question = questions[turn % len(questions)]
            turn += users
            started = time.perf_counter()
            try:
                result = client.predict(question, api_name="/ask")
                ok = isinstance(result, dict) and "answer" in result
            except Exception as error:
                ok, result = False, f"{type(error).__name__}: {error}"
            with lock:
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors.append(str(result)[:200])

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    for thread in threads:
        thread.start()
    # Memory is compared from a third into the run (caches and arenas warm) to its end.
    time.sleep(seconds / 3)
    memory_warm = resident_memory_mb(server_pid) if server_pid else None
    for thread in threads:
        thread.join(seconds + 120)
    elapsed = time.perf_counter() - started
    report = {"users": users, "seconds": round(elapsed, 1), "requests": len(latencies), "errors": len(errors),
              "error_examples": errors[:3], "throughput_per_s": round(len(latencies) / elapsed, 2), **_latency(latencies)}
    if server_pid:
        report["server_memory_mb_before"] = round(memory_before, 1)
        report["server_memory_mb_warm"] = round(memory_warm, 1)
        report["server_memory_mb_after"] = round(resident_memory_mb(server_pid), 1)
    return report


def start_server(index_dir: Path, port: int, data_dir: Path) -> subprocess.Popen:
    """A real `rag serve` in its own process, ready when this returns."""
    import urllib.request

    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--index", str(index_dir), "--port", str(port), "--data-dir", str(data_dir)],
        cwd=config.PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rag serve exited: {process.stderr.read()[-500:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("rag serve did not come up within 180 s")


# --- the whole run -----------------------------------------------------------------------

def run_bench(pipeline, questions: Sequence[str], sizes: Sequence[int], load_users: int = 20,
              load_seconds: float = 20.0) -> dict:
    report: dict = {"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        report["ingest"] = ingest_figures(pipeline, work_dir)
        report["query"] = query_figures(pipeline, questions)
        report["memory"] = {"serving_process_rss_mb": round(resident_memory_mb(), 1)}
        report["cold_start"] = cold_start_figures(work_dir / "bench-index", report["query"]["search_hybrid"]["p50_ms"])
        query_vectors = pipeline.embedder.encode_queries(list(questions))
        report["scale"] = scale_figures(pipeline, query_vectors, questions, sizes)
        if load_users:
            port = free_local_port()
            server = start_server(work_dir / "bench-index", port, work_dir / "data")
            try:
                report["load"] = load_test(f"http://127.0.0.1:{port}/", questions, load_users, load_seconds, server_pid=server.pid)
            finally:
                server.terminate()
                server.wait(30)
    return report


def free_local_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def format_bench(report: dict) -> str:
    lines = [f"rag bench, {report['date']}, {report['cpu_count']} CPU cores, device {report['ingest']['device']}"]
    ingest = report["ingest"]
    lines.append(f"ingest: {ingest['ingest_passages_per_s']} passages/s end to end = {ingest['ingest_vs_model']}x the model alone "
                 f"({ingest['model_passages_per_s']}/s); no-op re-ingest {ingest['noop_reingest_s']} s = {ingest['noop_vs_full']}x a full ingest")
    for name, figures in report["query"].items():
        ratio = f" ({figures['p50_vs_dense']}x dense)" if "p50_vs_dense" in figures else ""
        lines.append(f"{name:<16} p50 {figures['p50_ms']:>8.1f} ms   p95 {figures['p95_ms']:>8.1f} ms{ratio}")
    cold = report["cold_start"]
    lines.append(f"cold `rag search` {cold['cold_search_s']} s = {cold['cold_vs_warm_hybrid']}x a warm hybrid search; `rag --help` {cold['help_s']} s")
    lines.append(f"serving process memory {report['memory']['serving_process_rss_mb']} MB")
    lines.append("\nscale (p50 ms / recall@10 / build s / MB):")
    for size, row in report["scale"].items():
        cells = "  ".join(f"{kind} {v['p50_ms']:.2f}/{v.get('recall@10', '-')}/{v['build_s']}/{v.get('memory_mb', '-')}" for kind, v in row.items())
        lines.append(f"  {int(size):>9,}: {cells}")
    if "load" in report:
        load = report["load"]
        lines.append(f"\nload: {load['users']} users for {load['seconds']} s: {load['requests']} answers, {load['errors']} errors, "
                     f"{load['throughput_per_s']}/s, p50 {load['p50_ms']:.0f} ms, p95 {load['p95_ms']:.0f} ms, "
                     f"server memory {load['server_memory_mb_before']} MB at start, {load['server_memory_mb_warm']} MB warm, "
                     f"{load['server_memory_mb_after']} MB at the end")
    return "\n".join(lines)


def save(report: dict, report_dir: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "bench.json").write_text(json.dumps(report, indent=2))
    write_scale_chart(report["scale"], report_dir / "bench-latency.png")
