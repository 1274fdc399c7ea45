"""Load on a real `rag serve`, and ingests killed at named fault points (and resumed)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from rag.bench.speed import start_server
from rag.serve.server import free_port
from rag.index.folder import read_manifest
from rag.index.store import load_index

from conftest import SEEDS, run_rag

pytestmark = pytest.mark.slow


def test_twenty_users_through_the_chat_event_get_answers_without_errors(seed_index_dir, tmp_path):
    """20 users in a process of their own drive the chat's streaming event and /ask on a real `rag serve`."""
    import httpx

    from rag.bench.speed import resident_memory_mb, run_load

    port = free_port("127.0.0.1", 0)
    server = start_server(seed_index_dir, port, tmp_path / "data")
    url = f"http://127.0.0.1:{port}"
    try:
        single = []  # one user alone, in this run: the yardstick for the loaded server
        for question in ("Wat zei Nederland over China?", "Wat is de Nederlandse inzet in Afghanistan?",
                         "Welke landen wilden een verlenging van New START?", "Wat zei Nederland over Rusland?"):
            started = time.perf_counter()
            httpx.post(f"{url}/api/ask", json={"question": question}, timeout=120).raise_for_status()
            single.append(time.perf_counter() - started)
        idle = resident_memory_mb(server.pid)  # after its first answers: what it loads on first use is loaded
        report = run_load(f"{url}/", users=20, seconds=12)
        end = resident_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    assert report["errors"] == 0, report["error_examples"]
    assert report["chat"]["p50_ms"] > 0 and report["ask"]["p50_ms"] > 0 and report["answers"] >= 20
    # 20 users share the cores' answer slots: a request waits for about users/slots answers at worst. The
    # bound is a ratio to this run's own single-user latency, so a faster or slower machine moves both.
    slots = max(1, os.cpu_count() or 1)
    assert report["p95_ms"] / 1000 <= 3 * (20 / slots) * max(single) + 2.0, (report, single)
    assert end <= 1.5 * idle, (idle, end)  # no growth without bound under load


def _letters_with_new_ones(folder: Path, count: int) -> Path:
    """The seed letters plus `count` new ones (copies with another country), enough for two embedding batches."""
    shutil.copytree(SEEDS, folder)
    text = (SEEDS / "001_f33fb6bfa58033f7.txt").read_text(encoding="utf-8")
    for number in range(count):
        (folder / f"1{number:02d}_kopie.txt").write_text(text.replace("China", f"Land{number}"), encoding="utf-8")
    return folder


@pytest.mark.parametrize("fault", ["after-embed-batch:1", "while-writing", "before-pointer-switch", "after-pointer-switch"])
def test_ingest_killed_at_any_point_leaves_an_index_that_answers(fault, tmp_path, seed_index_dir, embedder):
    from rag.serve.pipeline import Pipeline, run_ingest

    corpus = _letters_with_new_ones(tmp_path / "letters", 6)
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    before = (index_dir / "CURRENT").read_text()

    killed = run_rag("ingest", str(corpus), "--index", str(index_dir), env={"RAG_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    switched = fault == "after-pointer-switch"
    assert ((index_dir / "CURRENT").read_text() != before) == switched
    index = load_index(index_dir, embedder.name, embedder.fingerprint)  # never "damaged"
    assert len(index.documents) == (11 if switched else 5)
    answer = Pipeline(embedder, index, index_dir).ask("Wat zei Nederland over China?")
    assert not answer.abstained and answer.citations

    summary = run_ingest([corpus], index_dir, embedder=embedder)
    assert summary.letters == 11 and read_manifest(index_dir)["counts"]["letters"] == 11
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".gen-")]
    assert len([p for p in index_dir.iterdir() if p.name.startswith("gen-")]) <= 2  # the live one and the previous


def test_a_full_disk_while_writing_is_one_line_and_leaves_the_index_as_it_was(tmp_path, seed_index_dir, embedder):
    corpus = _letters_with_new_ones(tmp_path / "letters", 1)
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    before = (index_dir / "CURRENT").read_text()
    full = run_rag("ingest", str(corpus), "--index", str(index_dir), env={"RAG_FAULT": "while-writing:no-space"})
    assert full.returncode == 1 and "Traceback" not in full.stderr
    assert full.stderr.count("\n") == 1 and "No space left on device" in full.stderr and "unchanged" in full.stderr
    assert (index_dir / "CURRENT").read_text() == before
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".gen-")]  # no half-written generation left
    assert len(load_index(index_dir, embedder.name, embedder.fingerprint).documents) == 5


def test_ingest_keeps_the_previous_generation_for_readers_of_the_old_pointer(tmp_path, seed_index_dir, embedder):
    from rag.serve.pipeline import run_ingest

    corpus = _letters_with_new_ones(tmp_path / "letters", 1)
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    old = (index_dir / "CURRENT").read_text().strip()
    run_ingest([corpus], index_dir, embedder=embedder)
    assert (index_dir / old / "manifest.json").exists(), "a reader of the old pointer must still find its files"
    (corpus / "100_kopie.txt").unlink()
    run_ingest([corpus], index_dir, embedder=embedder)
    assert not (index_dir / old).exists(), "only the previous generation is kept, not every one"


def test_a_killed_ingest_resumes_without_embedding_finished_batches(tmp_path, seed_index_dir, embedder):
    """Killed after its first checkpointed batch, an ingest run again embeds only what that batch did not hold,
    and ends with the same index as an uninterrupted run."""
    from rag.settings import ModelSettings
    from rag.serve.pipeline import run_ingest

    corpus = tmp_path / "letters"
    shutil.copytree(SEEDS, corpus)
    text = (SEEDS / "001_f33fb6bfa58033f7.txt").read_text(encoding="utf-8")
    for number in range(6):  # nearly every passage new: several batches
        (corpus / f"1{number:02d}_kopie.txt").write_text(text.replace(" de ", f" de{number} "), encoding="utf-8")
    uninterrupted, resumed_dir = tmp_path / "uninterrupted", tmp_path / "resumed"
    shutil.copytree(seed_index_dir, uninterrupted)
    shutil.copytree(seed_index_dir, resumed_dir)
    total = run_ingest([corpus], uninterrupted, embedder=embedder).embedded
    assert total > ModelSettings.embed_batch

    killed = run_rag("ingest", str(corpus), "--index", str(resumed_dir), env={"RAG_FAULT": "after-embed-batch:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_ingest([corpus], resumed_dir, embedder=embedder)
    assert resumed.embedded == total - ModelSettings.embed_batch

    mine, theirs = (load_index(folder, embedder.name, embedder.fingerprint) for folder in (resumed_dir, uninterrupted))
    rows = {mine.chunk_id(row): row for row in range(len(mine))}
    assert set(rows) == {theirs.chunk_id(row) for row in range(len(theirs))}
    for other in range(len(theirs)):
        assert float(mine.vectors[rows[theirs.chunk_id(other)]] @ theirs.vectors[other]) >= 0.9999


def test_checkpoints_of_another_model_or_cut_off_by_a_crash_are_dropped(tmp_path):
    from rag.index.vector_pool import VectorPool

    folder = tmp_path / ".embedded"
    vectors = np.eye(2, 4, dtype=np.float32)
    VectorPool(folder, None, "model-a").checkpoint(["first", "second"], vectors, np.ones((3, 4), np.float32), [1, 2])
    assert VectorPool(folder, None, "model-a").has("second", 2)
    assert not VectorPool(folder, None, "model-b").has("second", 2)  # another model's vectors never enter this index
    assert not list(folder.glob("batch-*.npz"))

    VectorPool(folder, None, "model-a").checkpoint(["first"], vectors[:1], np.ones((1, 4), np.float32), [1])
    (batch,) = folder.glob("batch-*.npz")
    batch.write_bytes(batch.read_bytes()[:40])  # cut off halfway through writing
    (folder / "batch-0-empty.npz").write_bytes(b"")
    assert not VectorPool(folder, None, "model-a").has("first", 1)
    assert not list(folder.glob("batch-*.npz"))
