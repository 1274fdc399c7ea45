"""Load on a real `rag serve`, an ingest killed halfway, and the scale benchmark at a small size."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rag import config
from rag.bench import free_local_port, load_test, scale_figures, start_server
from rag.index import load_index, read_manifest

from conftest import SEEDS

pytestmark = pytest.mark.slow


def test_twenty_users_get_answers_without_errors(seed_index_dir, eval_questions, tmp_path):
    port = free_local_port()
    server = start_server(seed_index_dir, port, tmp_path / "data")
    try:
        questions = [q.question for q in eval_questions]
        report = load_test(f"http://127.0.0.1:{port}/", questions, users=20, seconds=15, max_requests=200,
                           server_pid=server.pid)
    finally:
        server.terminate()
        server.wait(30)
    assert report["errors"] == 0, report["error_examples"]
    assert report["requests"] >= 10 and report["p95_ms"] > 0
    assert report["server_memory_mb_after"] < report["server_memory_mb_warm"] * 1.25


def test_ingest_killed_halfway_leaves_the_previous_index(tmp_path, seed_index_dir, embedder):
    corpus = tmp_path / "letters"
    shutil.copytree(SEEDS, corpus)
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    before = (index_dir / "CURRENT").read_text()
    for number in range(6):  # new letters that take a while to embed
        text = (SEEDS / "001_f33fb6bfa58033f7.txt").read_text(encoding="utf-8")
        (corpus / f"1{number:02d}_kopie.txt").write_text(text.replace("China", f"Land{number}"), encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", str(corpus), "--index", str(index_dir)],
                               cwd=config.PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(12)  # model loaded, embedding under way
    assert process.poll() is None, "ingest finished before it could be killed; give it more work"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert (index_dir / "CURRENT").read_text() == before
    index = load_index(index_dir, embedder.name, embedder.fingerprint)
    assert len(index.documents) == 5
    vector = embedder.encode_queries(["Wat zei Nederland over China?"])[0]
    assert index.dense_search(vector[None], 3)[0]

    from rag.pipeline import run_ingest

    summary = run_ingest([corpus], index_dir, embedder=embedder)
    assert summary.letters == 11 and read_manifest(index_dir)["counts"]["letters"] == 11
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".gen-")]


def test_scale_step_measures_recall_and_latency(pipeline, eval_questions):
    questions = [q.question for q in eval_questions[:12]]
    figures = scale_figures(pipeline, pipeline.embedder.encode_queries(questions), questions, [3000])
    row = figures["3000"]
    assert row["flat"]["recall@10"] == 1.0
    assert row["hnsw"]["recall@10"] >= 0.8
    assert all(row[kind]["p50_ms"] > 0 for kind in ("flat", "hnsw", "ivf", "bm25"))
    assert np.isfinite(row["hnsw"]["p50_vs_flat"])
