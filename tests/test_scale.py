"""Scale: incremental generations equal full builds, FAISS updates in place, BM25 from stored bags,
embedding on a local Ray instance, and `rag bench --corpus` on a sample of the real corpus."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.index.folder import live_build, read_manifest
from rag.index.store import load_index
from rag.index.vector_index import SlotBitmap, VectorIndex, describe
from rag.settings import IndexSettings, LexicalSettings, Settings

LEXICAL = LexicalSettings()

from conftest import SEEDS, run_rag

CORPUS_SAMPLE = Path(__file__).parent / "data" / "statengeneraal-sample.jsonl.gz"


def _by_chunk(index) -> dict[str, int]:
    return {index.chunk_id(row): row for row in range(len(index))}


def _assert_same_as_a_full_build(incremental: Path, letters: Path, full: Path, settings: Settings, embedder) -> None:
    """The generation must hold exactly what a build from scratch of the same letters holds: passages, sentences,
    vectors, BM25 scores, dense hits."""
    from rag.serve.pipeline import run_ingest

    run_ingest([letters], full, settings, embedder)
    ours, theirs = (load_index(folder, embedder.name, embedder.fingerprint) for folder in (incremental, full))
    mine, reference = _by_chunk(ours), _by_chunk(theirs)
    assert set(mine) == set(reference) and len(ours) == ours.stored_vectors - ours.tombstones
    for chunk_id, row in mine.items():
        other = reference[chunk_id]
        assert ours.chunk(row) == theirs.chunk(other)
        assert np.array_equal(ours.vectors[row], theirs.vectors[other])
        for mine_part, their_part in zip(ours.sentences_of(row), theirs.sentences_of(other)):
            assert np.array_equal(mine_part, their_part)
    for question in ("Wat zei Nederland over China?", "NAVO-missie Irak trainers", "Mali Sahel"):
        scores, reference_scores = ours.lexical.scores(question), theirs.lexical.scores(question)
        assert all(abs(scores[row] - reference_scores[reference[chunk_id]]) < 1e-5 for chunk_id, row in mine.items())
        vector = embedder.encode_queries([question])[0]
        assert [ours.chunk_id(row) for row, _ in ours.dense_search(vector, 5)] == \
               [theirs.chunk_id(row) for row, _ in theirs.dense_search(vector, 5)]
    ours.close()
    theirs.close()


def _seed_letters_ingested(tmp_path: Path, count: int, settings: Settings, embedder) -> tuple[Path, Path, list[Path]]:
    """A folder of the first `count` seed letters, ingested into an index: the folder, the index and every seed."""
    from rag.serve.pipeline import run_ingest

    seeds = sorted(SEEDS.glob("*.txt"))
    letters = tmp_path / "letters"
    letters.mkdir()
    for path in seeds[:count]:
        shutil.copy(path, letters)
    index_dir = tmp_path / "index"
    run_ingest([letters], index_dir, settings, embedder)
    return letters, index_dir, seeds


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_an_incremental_ingest_equals_a_full_build(kind, tmp_path, embedder):
    """Add letters (appended as a segment, the live files linked, not copied), then change and remove letters (merged
    into one segment, FAISS updated in place rather than rebuilt): each time the generation must hold exactly what
    a build from scratch of the same letters holds."""
    from rag.serve.pipeline import run_ingest

    settings = Settings(index=IndexSettings(kind=kind))
    letters, incremental, seeds = _seed_letters_ingested(tmp_path, 3, settings, embedder)
    first = live_build(incremental)[0]
    for path in seeds[3:]:
        shutil.copy(path, letters)
    added = run_ingest([letters], incremental, settings, embedder)
    assert added.read == len(seeds) - 3 and "appended as segment 2" in added.index, added.index
    appended = live_build(incremental)[0]
    for name in ("store.sqlite", "vectors.npy", "vectors.faiss", "lexical/postings_counts.npy"):
        assert (appended / name).stat().st_ino == (first / name).stat().st_ino  # the same file, linked
    _assert_same_as_a_full_build(incremental, letters, tmp_path / "full-added", settings, embedder)

    changed_letter = letters / seeds[0].name
    changed_letter.write_text(changed_letter.read_text(encoding="utf-8") + "\n\nNieuwe alinea over Mali en de Sahel.\n",
                              encoding="utf-8")
    changed = run_ingest([letters], incremental, settings, embedder)
    (letters / seeds[1].name).unlink()
    removed = run_ingest([letters], incremental, settings, embedder)
    assert changed.read == 1 and removed.read == 0 and removed.removed == 1
    assert len(read_manifest(incremental)["segments"]) == 1  # merged
    # HNSW cannot remove: the changed and removed letter's passages are tombstones, over 10% of so small a graph,
    # so it is rebuilt.
    for summary in (changed, removed):
        assert ("rebuilt" if kind == "hnsw" else "updated in place") in summary.index, summary.index
    _assert_same_as_a_full_build(incremental, letters, tmp_path / "full", settings, embedder)


@pytest.mark.slow
def test_appended_segments_stay_few_and_are_merged_into_one_past_their_limit(tmp_path, embedder):
    """Each ingest that adds a letter appends a segment until `max_segments` stand beside the first; the next one
    merges them all into one. Every generation finds each added letter by its own words and its passage by its vector."""
    from rag.serve.pipeline import run_ingest

    settings = Settings(index=IndexSettings(max_segments=2))
    letters, index_dir, seeds = _seed_letters_ingested(tmp_path, 2, settings, embedder)
    segments = []
    for number, path in enumerate(seeds[2:5]):
        text = path.read_text(encoding="utf-8") + f"\n\nDe Kamer ontvangt het overzicht Zeldzaamwoord{number} nog dit jaar.\n"
        (letters / path.name).write_text(text, encoding="utf-8")
        summary = run_ingest([letters], index_dir, settings, embedder)
        segments.append(len(read_manifest(index_dir)["segments"]))
        index = load_index(index_dir, embedder.name, embedder.fingerprint)
        assert len(index.documents) == 3 + number and summary.embedded < len(index)
        (row, _score), *_ = index.lexical.top(f"Zeldzaamwoord{number}", 5)
        assert index.letters[int(index.chunk_letter[row])].doc_id == path.stem
        assert index.dense_search(np.asarray(index.vectors[row], dtype=np.float32), 1)[0][0] == row  # its own vector
        index.close()
    assert segments == [2, 3, 1]


def test_bm25_from_stored_bags_scores_as_bm25s(documents, chunks):
    import bm25s

    from rag.index.lexical import Bags, LexicalIndex, tokenize

    texts = [chunk.embed_text for chunk in chunks]
    vocabulary: dict[str, int] = {}
    ours, _bags = LexicalIndex.build(vocabulary, Bags.of_texts(texts, vocabulary, LEXICAL), LEXICAL)
    reference = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    reference.index([tokenize(text) for text in texts], show_progress=False)
    for question in ("Wat zei Nederland over China?", "bondgenoten defensie-uitgaven twee procent", "Oekraïne Krim"):
        known = [token for token in tokenize(question) if token in reference.vocab_dict]
        assert np.allclose(ours.scores(question), reference.get_scores(known), atol=1e-5)


def test_bags_carried_to_a_new_generation_drop_terms_nobody_uses(chunks):
    from rag.index.lexical import Bags, LexicalIndex

    vocabulary: dict[str, int] = {}
    bags = Bags.of_texts([chunk.embed_text for chunk in chunks], vocabulary, LEXICAL)
    kept = np.arange(0, len(bags), 2)
    index, compacted = LexicalIndex.build(dict(vocabulary), bags.take(kept), LEXICAL)
    assert len(index.vocabulary) < len(vocabulary) and index.count == len(kept)
    fresh_vocabulary: dict[str, int] = {}
    fresh, _ = LexicalIndex.build(fresh_vocabulary, Bags.of_texts([chunks[row].embed_text for row in kept], fresh_vocabulary,
                                                                  LEXICAL), LEXICAL)
    for question in ("China", "Afghanistan missie", "Rusland sancties"):
        assert np.allclose(index.scores(question), fresh.scores(question), atol=1e-6)
    assert compacted.terms.max() < len(index.vocabulary)


def _unit_vectors(count: int, seed: int = 3) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, 64)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_hnsw_removals_are_tombstones_that_no_search_returns():
    vectors = _unit_vectors(3000)
    slots = np.arange(3000, dtype=np.int64)
    index = VectorIndex.build(vectors, slots, IndexSettings(kind="hnsw"))
    removed = slots[::50]  # 2 %: kept as tombstones, not a rebuild
    extra = _unit_vectors(20, seed=4)
    assert index.updated(removed, extra, np.arange(3000, 3020), IndexSettings(kind="hnsw"), 3020 - len(removed))
    assert index.stored == 3020 and len(index.tombstones) == len(removed)
    live = np.setdiff1d(np.arange(3020), removed)
    bitmap = SlotBitmap(live, 3020)
    for query in np.concatenate([vectors[removed[:10]], extra[:5]]):
        _, found = index.search(query, 10, bitmap)
        assert not set(found.tolist()) & set(removed.tolist())
    _, found = index.search(extra[0], 1, bitmap)
    assert found[0] == 3000  # an added vector is found
    allowed = live[live % 7 == 0]
    _, found = index.search(vectors[14], 10, SlotBitmap(allowed, 3020), depth_hint=400)
    assert set(found[found >= 0].tolist()) <= set(allowed.tolist())
    # Past the tombstone share the caller is told to rebuild.
    assert not index.updated(slots[1::5], extra[:0], np.zeros(0, np.int64), IndexSettings(kind="hnsw"), 2400)


def test_hnsw_holds_real_vectors_in_a_byte_per_dimension_at_the_recall_of_exact_search(pipeline, tmp_path):
    """The seed letters' sentence vectors in an HNSW graph of 8-bit codes: half the bytes of float16, the same ten
    nearest as exact search for the passages' vectors asked as queries, and the form recorded so that a graph built
    before it (float16, nothing recorded) is rebuilt rather than updated."""
    import faiss

    generation = pipeline.generation
    vectors = np.concatenate([np.asarray(generation.sentences_of(row)[2], dtype=np.float32) for row in range(len(generation))])
    queries = np.asarray(generation.vectors[:], dtype=np.float32)
    slots = np.arange(len(vectors), dtype=np.int64)
    built = {form: VectorIndex.build(vectors, slots, IndexSettings(kind="hnsw", hnsw_vectors=form)) for form in ("sq8", "fp16")}
    sizes = {form: len(faiss.serialize_index(index.index)) for form, index in built.items()}
    graph = 2 * IndexSettings().hnsw_m * 4 * len(vectors)  # the links of the bottom layer, alike in both
    assert sizes["sq8"] - graph <= 0.6 * (sizes["fp16"] - graph)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = np.stack([built["sq8"].search(query, 10)[1] for query in queries])
    recall = np.mean([len(set(row) & set(truth)) / 10 for row, truth in zip(found.tolist(), exact.tolist())])
    assert recall >= 0.95, recall

    recorded = built["sq8"].save(tmp_path)
    assert recorded["settings"]["hnsw_vectors"] == "sq8" and "8-bit" in describe(recorded)
    assert VectorIndex.load(tmp_path, recorded, IndexSettings()).settings.hnsw_vectors == "sq8"
    before = {**recorded, "settings": {k: v for k, v in recorded["settings"].items() if k != "hnsw_vectors"}}
    legacy = VectorIndex.load(tmp_path, before, IndexSettings())
    assert legacy.settings.hnsw_vectors == "fp16" and "float16" in describe(before)
    assert not legacy.updated(np.zeros(0, np.int64), vectors[:0], np.zeros(0, np.int64), IndexSettings(kind="hnsw"),
                              len(vectors) + IndexSettings().exact_search_limit)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_flat_and_ivf_indexes_remove_what_was_removed(kind):
    vectors = _unit_vectors(2000)
    index = VectorIndex.build(vectors, np.arange(2000, dtype=np.int64), IndexSettings(kind=kind))
    removed = np.arange(0, 2000, 3, dtype=np.int64)
    assert index.updated(removed, vectors[:0], np.zeros(0, np.int64), IndexSettings(kind=kind), 2000 - len(removed))
    assert index.stored == 2000 - len(removed) and len(index.tombstones) == 0
    _, found = index.search(vectors[3], 5)
    assert 3 not in found.tolist() and len(set(found.tolist())) == 5


def test_auto_picks_exact_search_for_small_corpora_and_ivf_over_8_bit_codes_for_large():

    assert IndexSettings().resolved_kind(IndexSettings.exact_search_limit) == "flat"
    assert IndexSettings().resolved_kind(IndexSettings.exact_search_limit + 1) == "ivf"
    assert IndexSettings().ivf_vectors == "sq8"
    assert IndexSettings(kind="hnsw").resolved_kind(10) == "hnsw"


def test_ivf_over_8_bit_codes_is_a_quarter_of_float32_and_read_as_recorded(tmp_path):
    """The codes take a byte a dimension; an IVF index whose manifest predates the choice is float32, as it was built."""
    import faiss

    vectors = _unit_vectors(4000)
    slots = np.arange(len(vectors), dtype=np.int64)
    built = {form: VectorIndex.build(vectors, slots, IndexSettings(kind="ivf", ivf_vectors=form)) for form in ("sq8", "flat")}
    sizes = {form: len(faiss.serialize_index(index.index)) for form, index in built.items()}
    codes = {form: size - 8 * len(vectors) - 4 * 64 * faiss.extract_index_ivf(built[form].index).nlist
             for form, size in sizes.items()}  # less the ids and the lists' centres
    assert codes["sq8"] <= 0.3 * codes["flat"], codes
    recorded = built["sq8"].save(tmp_path)
    assert recorded["settings"]["ivf_vectors"] == "sq8" and "8-bit" in describe(recorded)
    before = {**recorded, "settings": {k: v for k, v in recorded["settings"].items() if k != "ivf_vectors"}}
    legacy = VectorIndex.load(tmp_path, before, IndexSettings())
    assert legacy.settings.ivf_vectors == "flat" and "float32" in describe(before)
    assert not legacy.updated(np.zeros(0, np.int64), vectors[:0], np.zeros(0, np.int64), IndexSettings(kind="ivf"),
                              len(vectors))  # the default is 8-bit codes: rebuilt


def test_a_filter_searches_as_many_more_ivf_lists_as_it_admits_fewer_passages():
    """Few lists searched hold few of a narrow filter's passages: the search widens by the share the filter admits,
    so it still returns k of them, nearly all of the exact best."""
    vectors = _unit_vectors(20000)
    settings = IndexSettings(kind="ivf", ivf_nprobe=4)
    index = VectorIndex.build(vectors, np.arange(len(vectors), dtype=np.int64), settings)
    admitted = np.random.default_rng(5).choice(len(vectors), 400, replace=False)
    bitmap = SlotBitmap(admitted, len(vectors))
    query = vectors[admitted[0]] + 0.5 * vectors[7]
    narrow = index.search(query, 10, bitmap)[1]
    assert (narrow >= 0).sum() < 10  # searched as if it admitted everything: too few of its passages found
    _, found = index.search(query, 10, bitmap, share=len(admitted) / len(vectors))
    exact = admitted[np.argsort(-(vectors[admitted] @ query))[:10]]
    assert set(found.tolist()) <= set(admitted.tolist()) and len(set(found.tolist())) == 10
    assert len(set(found.tolist()) & set(exact.tolist())) >= 8


def _same_vectors(index_dir, reference_dir, embedder) -> None:
    on_ray, local = (load_index(folder, embedder.name, embedder.fingerprint) for folder in (index_dir, reference_dir))
    mine, reference = _by_chunk(on_ray), _by_chunk(local)
    assert set(mine) == set(reference)
    for chunk_id, row in mine.items():
        other = reference[chunk_id]
        assert float(on_ray.vectors[row] @ local.vectors[other]) >= 0.9999
        ours, theirs = (np.asarray(index.sentences_of(r)[2], dtype=np.float32) for index, r in ((on_ray, row), (local, other)))
        cosines = (ours * theirs).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosines.min() >= 0.999  # float16 both ways


@pytest.mark.slow
def test_ray_ingest_on_a_local_instance_gives_the_local_vectors(tmp_path, seed_index_dir, embedder):
    result = run_rag("ingest", str(SEEDS), "--index", str(tmp_path / "index"), "--ray", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "85 newly embedded" in result.stdout
    _same_vectors(tmp_path / "index", seed_index_dir, embedder)


@pytest.mark.slow
def test_ray_ingest_on_a_cluster_of_two_nodes_gives_the_local_vectors(tmp_path, seed_index_dir, embedder):
    """A head node and a worker node started as a user starts them (`ray start`), each its own process with its own
    object store; `rag ingest --ray ADDRESS` embeds on the cluster and writes what a local ingest writes."""
    import os
    import secrets
    import subprocess
    import sys

    from rag.serve.server import free_port

    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port("127.0.0.1", 0)
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    # Ray's token authentication (on by default for `ray start --head` since 2.5x): every node and client shares a token
    cluster = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **cluster}
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                        *common], check=True, capture_output=True, timeout=300, env=env)
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common],
                       check=True, capture_output=True, timeout=300, env=env)
        nodes = subprocess.run([sys.executable, "-c", "import ray, json; ray.init(address=f'127.0.0.1:{port}', "
                                "logging_level='ERROR'); print(json.dumps([n['Alive'] for n in ray.nodes()]))".replace(
                                    "{port}", str(port))], capture_output=True, text=True, timeout=300, env=env)
        assert json.loads(nodes.stdout.strip().splitlines()[-1]) == [True, True], nodes.stderr[-1000:]
        result = run_rag("ingest", str(SEEDS), "--index", str(tmp_path / "index"), f"--ray=127.0.0.1:{port}",
                         env=cluster, timeout=900)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "85 newly embedded" in result.stdout
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=300, env=env)
    _same_vectors(tmp_path / "index", seed_index_dir, embedder)


@pytest.mark.slow
def test_scale_bench_on_a_sample_of_the_real_corpus(tmp_path):
    result = run_rag("bench", "--corpus", str(CORPUS_SAMPLE), "--limit", "30", "--scale", "2000", "--json",
                     "--report-dir", str(tmp_path / "report"), timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["corpus"]["documents"] == 30 and report["corpus"]["held_out"] == 10
    real, synthetic = report["real"][-1], report["synthetic"][0]
    assert real["passages"] > 50 and real["recall@10_served"] == 1.0 and real["ingest"]["embedded"] > 0
    assert synthetic["passages"] >= 2000 and synthetic["index"]["kind"] == "flat"
    for figures in (real, synthetic):
        assert {"dense", "lexical", "hybrid", "filtered_broad"} <= set(figures["latency"])
        assert figures["serve"]["after_40_answers_mb"] > figures["serve"]["after_40_answers_anon_mb"] > 0
        incremental = figures["incremental"]
        assert incremental["noop_changed"] is False and incremental["added_passages"] > 0
        assert "appended as segment 2" in incremental["index"] and incremental["merged_s"] > 0
    real_median, synthetic_median = real_quantile = (synthetic["calibration"]["real_quantiles"][2],
                                                     synthetic["calibration"]["synthetic_quantiles"][2])
    assert abs(real_median - synthetic_median) < 0.01, real_quantile
    assert {"scale.json", "scale.png", "scale-neighbours.png"} <= {p.name for p in (tmp_path / "report").iterdir()}


@pytest.mark.parametrize("args, needle", [
    (("--corpus", "geen-corpus.jsonl.gz"), "no such corpus file"),
    (("--scale", "5000"), "go with --corpus"),
    (("--corpus", str(CORPUS_SAMPLE), "--limit", "5"), "too small"),
])
def test_scale_bench_refuses_bad_input_in_one_line(args, needle):
    result = run_rag("bench", *args)
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_a_corpus_line_that_is_not_a_record_is_named(tmp_path):
    corpus = tmp_path / "kapot.jsonl.gz"
    with gzip.open(CORPUS_SAMPLE, "rt", encoding="utf-8") as good, gzip.open(corpus, "wt", encoding="utf-8") as bad:
        bad.write(good.readline())
        bad.write("{niet json\n")
    result = run_rag("bench", "--corpus", str(corpus))
    assert result.returncode == 2 and "line 2" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_index_whose_letters_all_changed_never_reuses_a_slot(tmp_path, embedder):
    """All letters replaced, the HNSW index updated in place: the new passages get slots the old tombstoned
    vectors do not hold, so no search meets an old vector under a new passage's slot."""
    from rag.serve.pipeline import run_ingest

    settings = IndexSettings(kind="hnsw")
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    (before / "korte_brief.txt").write_text("Betreft: Korte brief\n\nNederland steunt de missie in Mali met twee "
                                            "helikopters.\n", encoding="utf-8")
    shutil.copytree(SEEDS, after)
    index_dir = tmp_path / "index"
    run_ingest([before], index_dir, Settings(index=settings), embedder)
    old = load_index(index_dir, embedder.name, embedder.fingerprint)
    old_slots = set(old.faiss_ids.tolist())
    replaced = run_ingest([after], index_dir, Settings(index=settings), embedder)
    assert "updated in place" in replaced.index  # few tombstones beside many new passages: no rebuild
    new = load_index(index_dir, embedder.name, embedder.fingerprint)
    assert not old_slots & set(new.faiss_ids.tolist())
    assert set(new.vector_indexes[0].tombstones.tolist()) == old_slots
    for question in ("Wat zei Nederland over China?", "defensie-uitgaven twee procent"):
        rows = [row for row, _ in new.dense_search(embedder.encode_queries([question])[0], 10)]
        assert len(rows) == len(set(rows)) == 10


def test_ray_needs_an_address_not_the_letters(tmp_path):
    result = run_rag("ingest", "--ray", str(SEEDS), "--index", str(tmp_path / "index"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "put the letters before --ray" in result.stderr and not (tmp_path / "index").exists()


def test_a_dropped_row_reader_closes_its_file(tmp_path):
    import os

    from rag.files import NpyRows

    np.save(tmp_path / "rows.npy", np.ones((4, 3), np.float32))
    open_before = len(os.listdir("/proc/self/fd"))
    rows = NpyRows(tmp_path / "rows.npy")
    assert len(os.listdir("/proc/self/fd")) == open_before + 1
    del rows
    assert len(os.listdir("/proc/self/fd")) == open_before


@pytest.mark.slow
def test_letters_added_to_an_archive_ingested_before_are_indexed_without_listing_it_again(tmp_path, embedder,
                                                                                           monkeypatch):
    """Letter files added to an archive and nothing else changed: the ingest finds them from the directory entries
    and reads only them (the archive is not listed, its letters stay as stored), a copy of a letter under another
    name is a letter of its own, not the first one moved; any other change falls back to the full check."""
    from rag.readers import letter_paths
    from rag.readers.document import read_document
    from rag.serve import pipeline

    archive, index_dir, seeds = _seed_letters_ingested(tmp_path, 3, Settings(), embedder)
    listed = []
    monkeypatch.setattr(pipeline, "letter_paths", lambda paths: listed.append(paths) or letter_paths(paths))

    shutil.copy(seeds[3], archive)
    shutil.copy(seeds[0], archive / "kopie_van_de_eerste.txt")
    (archive / "later").mkdir()
    shutil.copy(seeds[4], archive / "later" / seeds[0].name)  # the name of a letter the index holds, another letter
    added = pipeline.run_ingest([archive], index_dir, Settings(), embedder)
    assert listed == [] and added.read == 3 and added.letters == 6 and "appended" in added.index, added.line()
    index = load_index(index_dir, embedder.name, embedder.fingerprint)
    assert {seeds[0].stem, seeds[3].stem, "kopie_van_de_eerste", f"{seeds[0].stem}-2"} <= set(index.documents)
    assert index.documents[seeds[0].stem].text == read_document(seeds[0], "x").text
    assert index.documents[f"{seeds[0].stem}-2"].text == read_document(seeds[4], "x").text
    index.close()
    assert not pipeline.run_ingest([archive], index_dir, Settings(), embedder).changed and listed == []

    changed = archive / seeds[1].name
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nNieuwe alinea over Mali.\n", encoding="utf-8")
    shutil.copy(seeds[4], archive)
    summary = pipeline.run_ingest([archive], index_dir, Settings(), embedder)
    assert len(listed) == 1 and summary.read == 2 and summary.letters == 7 and "appended" not in summary.index
