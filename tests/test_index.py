"""The persistent FAISS index and `rag ingest` / `rag search` on the seed letters, real model."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.index.folder import read_manifest
from rag.index.store import load_index
from rag.serve.pipeline import run_ingest

from conftest import SEEDS, run_rag

pytestmark = pytest.mark.slow


def test_dense_search_alone_finds_the_passage_that_answers(pipeline):
    """Without BM25, which finds the word "China" anywhere, the question's vector finds the passage with the answer."""
    from dataclasses import replace

    from rag.serve.pipeline import Pipeline

    dense = Pipeline(pipeline.embedder, pipeline.generation, pipeline.index_dir,
                     replace(pipeline.settings, retrieval=replace(pipeline.retrieval, mode="dense")))
    hits = dense.search("Wat zei Nederland over China?", k=3)
    assert any("gaf Nederland aan China als uitdaging te zien" in hit.text for hit in hits)


def test_a_hybrid_search_runs_its_dense_half_beside_its_bm25_half(pipeline, monkeypatch):
    """Each half waits until the other has begun: run one after the other, the first would wait in vain."""
    import threading

    from rag.search.conversation import Turn
    from rag.search.retrieval import Filters, Query, rank

    generation = pipeline.generation
    question = "Welke afspraken maakten de bondgenoten over defensie-uitgaven?"
    query = Query(Turn(question, question), Filters())
    vector = pipeline.embedder.encode_queries([question])[0]
    alone = rank(generation, query, vector, 5, pipeline.retrieval)
    begun = {"dense": threading.Event(), "bm25": threading.Event()}

    def meeting(half: str, other: str, search):
        def searched(*arguments):
            begun[half].set()
            assert begun[other].wait(60), f"the {other} half did not run beside the {half} half"
            return search(*arguments)
        return searched

    monkeypatch.setattr(generation, "dense_search", meeting("dense", "bm25", generation.dense_search))
    monkeypatch.setattr(generation.lexical, "top", meeting("bm25", "dense", generation.lexical.top))
    assert rank(generation, query, vector, 5, pipeline.retrieval) == alone


def test_english_question_finds_dutch_afghanistan_passages(pipeline):
    hits = pipeline.search("What did the ministers agree about Afghanistan?", k=5)
    assert sum("Afghanistan" in hit.section for hit in hits[:3]) >= 2


def test_hits_quote_the_stored_text_exactly(pipeline):
    for hit in pipeline.search("Wat is het standpunt over New START?", k=5):
        assert hit.text == pipeline.generation.documents[hit.doc_id].text[hit.start:hit.end]


def test_save_load_search_gives_the_same_hits(pipeline, seed_index_dir, embedder):
    again = load_index(seed_index_dir, embedder.name, embedder.fingerprint)
    vector = embedder.encode_queries(["Wat werd besloten over de NAVO-missie in Irak?"])[0]
    first = pipeline.generation.dense_search(vector, 5)
    second = again.dense_search(vector, 5)
    assert [row for row, _ in first] == [row for row, _ in second]
    assert [pipeline.generation.chunks[r].chunk_id for r, _ in first] == [again.chunks[r].chunk_id for r, _ in second]


def test_manifest_records_what_the_index_holds(seed_index_dir, embedder):
    manifest = read_manifest(seed_index_dir)
    assert manifest["model"] == {"name": embedder.name, "fingerprint": embedder.fingerprint, "dimension": 384}
    assert manifest["counts"]["letters"] == 5 and manifest["index"]["kind"] == "flat"
    assert {"vectors.faiss", "store.sqlite", "arrays.npz", "vectors.npy", "sentence_vectors.npy", "tombstones.npy",
            "lexical/postings_counts.npy", "lexical/bags_terms.npy"} <= set(manifest["files"])
    assert manifest["counts"]["sentences"] > manifest["counts"]["chunks"]
    index = load_index(seed_index_dir, embedder.name, embedder.fingerprint)
    assert sorted(path.name for path in index.letter_files) == sorted(path.name for path in SEEDS.glob("*.txt"))


def test_incremental_add_change_remove(tmp_path, embedder, seed_index_dir):
    corpus = tmp_path / "letters"
    shutil.copytree(SEEDS, corpus)
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)  # start from the seed build: nothing to embed

    assert run_ingest([corpus], index_dir, embedder=embedder).changed is False

    extra = corpus / "005_extra.txt"
    extra.write_text((SEEDS / "003_2b3a2a813bb728d5.txt").read_text(encoding="utf-8").replace("Irak", "Jemen"), encoding="utf-8")
    added = run_ingest([corpus], index_dir, embedder=embedder)
    index = load_index(index_dir, embedder.name, embedder.fingerprint)
    new_chunks = int((index.chunk_letter == index.letter("005_extra").row).sum())
    assert added.letters == 6 and 0 < added.embedded <= new_chunks and added.read == 1
    index.close()  # no longer served: the next ingests may remove it

    letter = corpus / "000_cee59b6ea59e1ee0.txt"
    letter.write_text(letter.read_text(encoding="utf-8").replace("Zuidflank", "Zuidflank\n\nNieuwe alinea over Mali.\n", 1), encoding="utf-8")
    changed = run_ingest([corpus], index_dir, embedder=embedder)
    assert changed.changed and 0 < changed.embedded <= 3 and changed.letters == 6

    (corpus / "004_7863b943b4599ff8.txt").unlink()
    removed = run_ingest([corpus], index_dir, embedder=embedder)
    assert removed.removed == 1 and removed.embedded == 0 and removed.letters == 5
    index = load_index(index_dir, embedder.name, embedder.fingerprint)
    assert "004_7863b943b4599ff8" not in index.documents and "005_extra" in index.documents
    assert len(index.chunks) == index.stored_vectors == read_manifest(index_dir)["counts"]["chunks"]

    assert len([p for p in index_dir.iterdir() if p.name.startswith("gen-")]) == 2  # the live one and the previous


def test_nothing_changed_needs_no_model(tmp_path, seed_index_dir, monkeypatch):
    import rag.serve.pipeline

    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)

    def no_model(*args, **kwargs):
        raise AssertionError("an ingest with nothing to embed loaded the model")

    monkeypatch.setattr(rag.serve.pipeline, "load_embedder", no_model)
    assert run_ingest([SEEDS], index_dir).changed is False


def test_truncated_faiss_file_is_refused(tmp_path, seed_index_dir, embedder):
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    faiss_file = next(index_dir.glob("gen-*/vectors.faiss"))
    faiss_file.write_bytes(faiss_file.read_bytes()[:1000])
    with pytest.raises(RagError, match=r"damaged.*run `rag ingest --index"):
        load_index(index_dir, embedder.name, embedder.fingerprint)


def test_a_changed_byte_in_the_store_is_found_by_rag_verify(tmp_path, seed_index_dir):
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    assert run_rag("verify", "--index", str(index_dir)).returncode == 0
    store = next(index_dir.glob("gen-*/store.sqlite"))
    data = bytearray(store.read_bytes())
    data[-500] ^= 0x01  # same size: only the content hash can tell
    store.write_bytes(bytes(data))
    result = run_rag("verify", "--index", str(index_dir))
    assert result.returncode == 1 and "store.sqlite" in result.stderr and "Traceback" not in result.stderr


def test_a_truncated_store_is_refused_on_load(tmp_path, seed_index_dir, embedder):
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    store = next(index_dir.glob("gen-*/store.sqlite"))
    store.write_bytes(store.read_bytes()[:4096])
    with pytest.raises(RagError, match="damaged"):
        load_index(index_dir, embedder.name, embedder.fingerprint)


def test_index_of_another_model_is_refused(tmp_path, seed_index_dir, embedder):
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    manifest_path = next(index_dir.glob("gen-*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["model"]["name"] = "sentence-transformers/all-MiniLM-L6-v2"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RagError, match=r"built with the model 'sentence-transformers/all-MiniLM-L6-v2'.*rag ingest"):
        load_index(index_dir, embedder.name, embedder.fingerprint)
    result = run_rag("search", "--index", str(index_dir), "Wat zei Nederland over China?")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "rag ingest" in result.stderr


def test_search_cli_json_and_stdin_with_a_missing_index(tmp_path):
    index_dir = tmp_path / "fresh"
    questions = "Wat zei Nederland over China?\n\nWhat did the ministers agree about Afghanistan?\n"
    result = run_rag("search", "--json", "-k", "3", "--index", str(index_dir), input=questions)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["question"] for row in rows] == ["Wat zei Nederland over China?", "What did the ministers agree about Afghanistan?"]
    hit = rows[0]["hits"][0]
    assert set(hit) >= {"rank", "score", "chunk_id", "doc_id", "title", "date", "section", "text", "start", "end", "source"}
    assert [h["rank"] for h in rows[0]["hits"]] == [1, 2, 3]
    assert "built one from seeds/" in result.stderr and read_manifest(index_dir) is not None


@pytest.mark.parametrize("args, needle", [
    (["search", ""], "De vraag is leeg"),
    (["ask", "x" * 1200], "tekens"),
    (["search", "-k", "0", "China"], "-k must be at least 1"),
    (["search", "--since", "maart", "China"], "JJJJ-MM-DD"),
    (["search", "--since", "2021-05-01", "--until", "2021-01-01", "China"], "ligt na de einddatum"),
])
def test_search_usage_errors(args, needle):
    result = run_rag(*args)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_index_read_by_another_reader_version_is_refused_and_reread(tmp_path, seed_index_dir, embedder):
    from rag.readers.document import READER_VERSION

    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    manifest_path = next(index_dir.glob("gen-*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["reader"]["version"] = READER_VERSION - 1
    manifest_path.write_text(json.dumps(manifest))

    result = run_rag("search", "--index", str(index_dir), "Wat zei Nederland over China?")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "re-read" in result.stderr and "rag ingest" in result.stderr

    summary = run_ingest([SEEDS], index_dir, embedder=embedder)
    assert summary.changed and summary.read == 5 and summary.embedded == 0  # re-read, nothing re-embedded
    assert read_manifest(index_dir)["reader"]["version"] == READER_VERSION
    assert load_index(index_dir, embedder.name, embedder.fingerprint).documents


def test_a_no_op_ingest_trusts_size_and_modification_time_and_writes_nothing(tmp_path, settings, embedder, monkeypatch):
    """Nothing changed: no letter file is read to hash it and nothing is written, not even what the ingest knew of
    the files. One letter changed: that one file, and only it, is hashed and read again."""
    import rag.index.ingest as ingest_module

    letters = tmp_path / "letters"
    shutil.copytree(SEEDS, letters)
    index = tmp_path / "index"
    run_ingest([letters], index, settings, embedder)
    hashed = []
    real_hash = ingest_module.file_sha256
    monkeypatch.setattr(ingest_module, "file_sha256", lambda path: hashed.append(path.name) or real_hash(path))
    stats = index / ingest_module.STATS
    before = (stats.stat().st_mtime_ns, stats.read_bytes(), (index / "CURRENT").read_bytes())
    again = run_ingest([letters], index, settings, embedder)
    assert again.changed is False and hashed == []
    assert (stats.stat().st_mtime_ns, stats.read_bytes(), (index / "CURRENT").read_bytes()) == before

    changed = sorted(letters.glob("*.txt"))[2]
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nEen nieuwe alinea over de Noordzee.\n", encoding="utf-8")
    after = run_ingest([letters], index, settings, embedder)
    assert after.changed and after.read == 1 and hashed == [changed.name]
    assert stats.stat().st_mtime_ns != before[0]


def test_an_unchanged_archive_is_answered_from_its_directory_entries(tmp_path, settings, embedder, monkeypatch):
    """Ingested again unchanged, an archive is not even listed as letters: one pass over its directory entries equals
    what the last ingest saw, and the last ingest's summary (its unreadable letter included) is said again. A letter
    added deep in a folder is read alone, still without listing the archive. Whatever else a full check could see
    differently sends the ingest to it: a letter touched, a letter gone, other chunking, a generation a server wrote,
    a damaged generation."""
    import os

    import rag.serve.pipeline as pipeline_module
    from rag.index.ingest import ingest
    from rag.index.unchanged import SNAPSHOT

    letters = tmp_path / "letters"
    shutil.copytree(SEEDS, letters / "a" / "b")
    (letters / "kapot.pdf").write_bytes(b"%PDF-1.4 niet meer dan dit")
    index = tmp_path / "index"
    first = run_ingest([letters], index, settings, embedder)
    listed = []
    real_listing = pipeline_module.letter_paths
    monkeypatch.setattr(pipeline_module, "letter_paths", lambda paths: listed.append(1) or real_listing(paths))

    def again(expect_listed: bool, **changes):
        listed.clear()
        summary = run_ingest([letters], index, replace(settings, **changes), embedder)
        assert bool(listed) == expect_listed
        return summary

    same = again(False)
    assert (same.changed, same.letters, same.chunks, same.skipped) == (False, first.letters, first.chunks, first.skipped)
    assert len(same.skipped) == 1 and "kapot.pdf" in same.skipped[0]

    deep = sorted((letters / "a" / "b").glob("*.txt"))[1]
    os.utime(deep, ns=(deep.stat().st_atime_ns, deep.stat().st_mtime_ns + 10**9))  # touched: checked, not changed
    assert again(True).changed is False and again(False).changed is False
    (letters / "a" / "nieuw.txt").write_text(deep.read_text(encoding="utf-8").replace("Noordzee", "Waddenzee"), encoding="utf-8")
    added = again(False)
    assert (added.letters, added.read, added.skipped) == (first.letters + 1, 1, first.skipped)
    assert again(False).changed is False
    (letters / "a" / "nieuw.txt").unlink()
    assert again(True).letters == first.letters and again(False).changed is False
    ingest(None, index, embedder.name, embedder.fingerprint, lambda texts, spans: iter(()), settings.chunking,
           settings.index, exclude=frozenset({first_doc_id(index)}), lexical_settings=settings.lexical)  # as a server does
    assert not (index / SNAPSHOT).exists() and again(True).letters == first.letters
    assert again(False).changed is False
    smaller = replace(settings.chunking, max_chars=settings.chunking.max_chars - 200)
    assert again(True, chunking=smaller).changed and again(False, chunking=smaller).changed is False
    vectors = next(index.glob(f"{(index / 'CURRENT').read_text().strip()}/vectors.npy"))
    with vectors.open("r+b") as handle:
        handle.truncate(vectors.stat().st_size - 4)
    again(True, chunking=smaller)


def first_doc_id(index_dir):
    from rag.index.folder import live_build, open_store

    database = open_store(live_build(index_dir)[0])
    try:
        return database.execute("SELECT doc_id FROM letters ORDER BY row LIMIT 1").fetchone()[0]
    finally:
        database.close()


def test_display_paths_of_many_files_are_each_files_display_path(tmp_path):
    """One folder resolved for many files gives what resolving each file gives: inside the project relative, outside
    absolute, through a linked folder and for a linked file alike."""
    import os

    from rag.settings import PROJECT_ROOT, display_path, display_paths

    (tmp_path / "real").mkdir()
    files = [tmp_path / "real" / f"brief-{n}.txt" for n in range(3)]
    for path in files:
        path.write_text("tekst", encoding="utf-8")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "link.txt").symlink_to(files[0])
    relative = os.path.relpath(SEEDS, os.getcwd())
    given = [*files, tmp_path / "linked" / "brief-1.txt", tmp_path / "real" / "link.txt",
             *sorted(SEEDS.glob("*.txt"))[:2], *sorted(Path(relative).glob("*.txt"))[:1]]
    shown = display_paths(given)
    assert shown == {path: display_path(path) for path in given}
    assert shown[given[-1]].startswith("seeds/") and not shown[given[0]].startswith(str(PROJECT_ROOT))


def test_passage_vectors_are_read_by_row_without_mapping_the_file(pipeline, tmp_path):
    """Vectors read as numpy indexes them (a row, a slice, rows in any order, repeated), and a search and an answer
    leave no memory map of the vectors file in the process: a map would keep megabytes around every row read."""
    import numpy as np

    from rag.files import NpyRows

    stored = np.random.default_rng(5).standard_normal((50, 8)).astype(np.float32)
    np.save(tmp_path / "rows.npy", stored)
    rows = NpyRows(tmp_path / "rows.npy")
    for index in (3, -1, slice(None), slice(4, 20), slice(2, 40, 7), np.array([9, 2, 2, 10, 11, 49])):
        assert np.array_equal(rows[index], stored[index])
    assert np.array_equal(np.asarray(rows, dtype=np.float64), stored.astype(np.float64))
    for wrong in (50, -51, np.array([0, 50])):
        with pytest.raises(IndexError):
            rows[wrong]
    rows.close()

    pipeline.ask("Wat zei Nederland over China?")
    vectors_file = str(pipeline.generation.folder / "vectors.npy")
    with open("/proc/self/maps") as maps:
        assert vectors_file not in maps.read()
