"""Speed and memory on the seed letters, measured side by side in one run so the figures read as ratios
(scale, on a real corpus and beyond it, is `rag.bench.scale`).

What the serving path costs is measured the way users meet it: a cold `rag search` process
against the time `import torch` alone takes, a real `rag serve` after 40 answers, and 20 users
driven from a process of their own through the chat's own event and the `/ask` function.
The engines for the default model (ONNX Runtime, which serving uses, and sentence-transformers
on torch) are measured in the same run, each in a fresh process for its memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.serve.server import free_port
from rag.settings import PROJECT_ROOT


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    position = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[position]


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 0.5), 2), "p95_ms": round(percentile(samples, 0.95), 2)}


def resident_memory_mb(pid: int | str = "self", part: str = "VmRSS") -> float:
    """Resident memory; `part` RssAnon is what the process itself holds, RssFile the file pages it has touched
    (memory-mapped vectors and postings), which the kernel can drop and read again."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{part}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _timed(function: Callable, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _probe(*arguments: str, timeout: float = 3600) -> dict:
    """A measurement in a fresh interpreter (`rag.bench.probe`), whose imports and memory are its own."""
    result = subprocess.run([sys.executable, "-m", "rag.bench.probe", *arguments], capture_output=True, text=True,
                            timeout=timeout, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"measurement failed: {result.stderr[-600:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- engines: the torch path and the ONNX path side by side -------------------------------------

def engine_figures(passages: Sequence[str], questions: Sequence[str], work_dir: Path) -> dict:
    """ONNX Runtime (what serving uses) against sentence-transformers on torch (fp32): query latency,
    passages per second (batches sorted by length), load time, resident memory, agreement of vectors."""
    figures = {}
    for name, torch, precision in (("onnxruntime", False, "int8"), ("onnxruntime-fp32", False, "fp32"), ("torch", True, "fp32")):
        spec = work_dir / f"{name}.json"
        spec.write_text(json.dumps({"threads": os.cpu_count() or 1, "torch": torch, "precision": precision,
                                    "questions": list(questions[:40]), "passages": list(passages),
                                    "vectors_path": str(work_dir / f"{name}.npy")}))
        figures[name] = _probe("engine", str(spec))
    vectors = {name: np.load(work_dir / f"{name}.npy") for name in ("onnxruntime", "onnxruntime-fp32", "torch")}
    figures["agreement"] = _agreement(vectors["onnxruntime"], vectors["torch"])
    figures["int8_agreement"] = _agreement(vectors["onnxruntime"], vectors["onnxruntime-fp32"])
    figures["fp32_agreement"] = _agreement(vectors["onnxruntime-fp32"], vectors["torch"])
    figures["ingest_speedup"] = round(figures["onnxruntime"]["passages_per_s"] / figures["torch"]["passages_per_s"], 2)
    figures["query_speedup"] = round(figures["torch"]["query_p50_ms"] / figures["onnxruntime"]["query_p50_ms"], 2)
    figures["int8_vs_fp32_passages"] = round(figures["onnxruntime"]["passages_per_s"]
                                             / figures["onnxruntime-fp32"]["passages_per_s"], 2)
    return figures


def _agreement(ours: np.ndarray, reference: np.ndarray) -> dict:
    cosines = (ours * reference).sum(axis=1)
    return {"mean_cosine": round(float(cosines.mean()), 6), "min_cosine": round(float(cosines.min()), 6)}


# --- the pipeline on the seed letters --------------------------------------------------------

def ingest_figures(pipeline, work_dir: Path) -> dict:
    from rag.index.chunking import chunk_documents
    from rag.embed.model import load_embedder
    from rag.serve.pipeline import run_ingest

    embedder = load_embedder(pipeline.settings.model)  # all cores, as `rag ingest`
    texts = [chunk.embed_text for chunk in chunk_documents(pipeline.generation.documents.values())]
    started = time.perf_counter()
    embedder.encode_passages(texts)
    model_seconds = time.perf_counter() - started
    letters = pipeline.generation.letter_files
    started = time.perf_counter()
    summary = run_ingest(letters, work_dir / "bench-index", pipeline.settings, embedder)
    full_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run_ingest(letters, work_dir / "bench-index", pipeline.settings)
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
    from rag.serve.pipeline import Pipeline

    figures = {}
    for mode in ("dense", "lexical", "hybrid"):
        settings = replace(pipeline.settings, endpoint=None, retrieval=replace(pipeline.retrieval, mode=mode))
        variant = Pipeline(pipeline.embedder, pipeline.generation, pipeline.index_dir, settings)
        for question in questions[:3]:
            variant.search(question)  # warm up
        samples = [sample for question in questions for sample in _timed(lambda q=question: variant.search(q), 1)]
        figures[f"search_{mode}"] = latency_summary(samples)
    for question in questions[:3]:
        pipeline.ask(question)
    samples = [sample for question in questions for sample in _timed(lambda q=question: pipeline.ask(q), 1)]
    figures["ask"] = latency_summary(samples)
    dense = figures["search_dense"]["p50_ms"]
    for name in ("search_lexical", "search_hybrid", "ask"):
        figures[name]["p50_vs_dense"] = round(figures[name]["p50_ms"] / dense, 2)
    return figures


def cold_start_figures(index_dir: Path) -> dict:
    """A cold `rag search` process against the time `import torch` alone takes, in the same run."""
    def seconds(command: list[str]) -> float:
        best = float("inf")
        for _ in range(3):  # the fastest of three: the file cache warm, the process cold
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=PROJECT_ROOT)
            best = min(best, time.perf_counter() - started)
        return best

    torch = seconds([sys.executable, "-c", "import torch"])
    search = seconds([sys.executable, "-m", "rag.cli", "search", "--index", str(index_dir), "-k", "3", "Wat zei Nederland over China?"])
    help_seconds = seconds([sys.executable, "-m", "rag.cli", "--help"])
    return {"import_torch_s": round(torch, 2), "cold_search_s": round(search, 2),
            "cold_search_vs_import_torch": round(search / torch, 2), "help_s": round(help_seconds, 3)}


# --- a real server ---------------------------------------------------------------------------

def start_server(index_dir: Path, port: int, data_dir: Path, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """A real `rag serve` in its own process (with the environment `env`, else this one's), ready when this returns:
    it answers on its port (a login or a key it asks for counts as an answer)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--index", str(index_dir), "--port", str(port), "--data-dir", str(data_dir),
         "--host", host],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 900  # a million passages take a while to load
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rag serve exited: {process.stderr.read()[-500:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/letters", timeout=2)
            return process
        except urllib.error.HTTPError:
            return process  # it answered: with 401, it asks for its key
        except OSError:
            time.sleep(0.2)  # polling for the event "the server answers", with a deadline
    process.kill()
    raise RuntimeError("rag serve did not come up within 900 s")


def run_load(url: str, users: int, seconds: float) -> dict:
    """The load client in a process of its own (`python -m rag.bench.load`), as a separate user machine would be."""
    result = subprocess.run([sys.executable, "-m", "rag.bench.load", url, "--users", str(users), "--seconds", str(seconds)],
                            capture_output=True, text=True, timeout=seconds + 600, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"the load client failed: {result.stderr[-500:]}")
    return json.loads(result.stdout)


def serving_figures(index_dir: Path, work_dir: Path, questions: Sequence[str], users: int, seconds: float) -> dict:
    """Memory of a real server idle after start and after 40 answers; then 20 users, memory at the end."""
    import httpx

    port = free_port("127.0.0.1", 0)
    server = start_server(index_dir, port, work_dir / "data")
    url = f"http://127.0.0.1:{port}"
    try:
        idle = resident_memory_mb(server.pid)
        single = []
        for question in list(questions)[:40]:
            started = time.perf_counter()
            httpx.post(f"{url}/api/ask", json={"question": question}, timeout=120).raise_for_status()
            single.append((time.perf_counter() - started) * 1000)
        after_40 = resident_memory_mb(server.pid)
        figures = {"idle_after_start_mb": round(idle, 1), "after_40_answers_mb": round(after_40, 1),
                   "after_40_answers_anon_mb": round(resident_memory_mb(server.pid, "RssAnon"), 1),
                   "single_user": latency_summary(single)}
        if users:
            load = run_load(f"{url}/", users, seconds)
            load["server_memory_mb_start"] = round(after_40, 1)
            load["server_memory_mb_end"] = round(resident_memory_mb(server.pid), 1)
            load["memory_growth"] = round(load["server_memory_mb_end"] / idle, 3)
            figures["load"] = load
        return figures
    finally:
        server.terminate()
        server.wait(30)


# --- the whole run -----------------------------------------------------------------------

def run_bench(pipeline, questions: Sequence[str], load_users: int = 20, load_seconds: float = 20.0) -> dict:
    from rag.index.chunking import chunk_documents

    report: dict = {"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        passages = [chunk.embed_text for chunk in chunk_documents(pipeline.generation.documents.values())]
        report["engines"] = engine_figures(passages, questions, work_dir)
        report["ingest"] = ingest_figures(pipeline, work_dir)
        report["query"] = query_figures(pipeline, questions)
        report["cold_start"] = cold_start_figures(work_dir / "bench-index")
        report["serving"] = serving_figures(work_dir / "bench-index", work_dir, questions, load_users, load_seconds)
    return report


def format_bench(report: dict) -> str:
    lines = [f"rag bench, {report['date']}, {report['cpu_count']} CPU cores, device {report['ingest']['device']}"]
    engines = report["engines"]
    for name in ("onnxruntime", "onnxruntime-fp32", "torch"):
        e = engines[name]
        lines.append(f"engine {name:<12} query p50 {e['query_p50_ms']} ms, {e['passages_per_s']} passages/s, "
                     f"load {e['load_s']} s, {e['resident_mb']} MB resident, torch imported: {e['torch_imported']}")
    lines.append(f"  agreement with torch fp32: mean cosine {engines['agreement']['mean_cosine']}, min "
                 f"{engines['agreement']['min_cosine']} (int8; fp32 {engines['fp32_agreement']['min_cosine']}); onnxruntime "
                 f"{engines['query_speedup']}x faster per question, {engines['ingest_speedup']}x the passages/s; int8 "
                 f"{engines['int8_vs_fp32_passages']}x the passages/s of fp32 (min cosine {engines['int8_agreement']['min_cosine']})")
    ingest = report["ingest"]
    lines.append(f"ingest: {ingest['ingest_passages_per_s']} passages/s end to end = {ingest['ingest_vs_model']}x the model alone "
                 f"({ingest['model_passages_per_s']}/s); no-op re-ingest {ingest['noop_reingest_s']} s = {ingest['noop_vs_full']}x a full ingest")
    for name, figures in report["query"].items():
        ratio = f" ({figures['p50_vs_dense']}x dense)" if "p50_vs_dense" in figures else ""
        lines.append(f"{name:<16} p50 {figures['p50_ms']:>8.1f} ms   p95 {figures['p95_ms']:>8.1f} ms{ratio}")
    cold = report["cold_start"]
    lines.append(f"cold `rag search` {cold['cold_search_s']} s = {cold['cold_search_vs_import_torch']}x `import torch` "
                 f"({cold['import_torch_s']} s); `rag --help` {cold['help_s']} s")
    serving = report["serving"]
    lines.append(f"rag serve: {serving['idle_after_start_mb']} MB idle after start, {serving['after_40_answers_mb']} MB after "
                 f"40 answers; one user p50 {serving['single_user']['p50_ms']:.0f} ms, p95 {serving['single_user']['p95_ms']:.0f} ms")
    if "load" in serving:
        load = serving["load"]
        lines.append(f"load: {load['users']} users for {load['seconds']} s (chat event and /ask): {load['answers']} answers, "
                     f"{load['errors']} errors, {load['throughput_per_s']}/s, p50 {load['p50_ms']:.0f} ms, p95 {load['p95_ms']:.0f} ms, "
                     f"the client on {load['client_cores']} cores; "
                     f"server memory {load['server_memory_mb_start']} -> {load['server_memory_mb_end']} MB "
                     f"({load['memory_growth']}x idle)")
    return "\n".join(lines)


def save(report: dict, report_dir: Path, name: str = "bench.json") -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / name).write_text(json.dumps(report, indent=2))
