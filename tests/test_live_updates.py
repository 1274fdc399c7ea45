"""A serving pipeline whose index changes under it: its own changes (uploads, removals) and other processes'
`rag ingest` never undo each other, and what it serves stays readable while it serves it."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from rag.index.show import show_citation, show_served
from rag.serve.pipeline import run_ingest

from conftest import SEEDS, serving

pytestmark = pytest.mark.slow
REAL = Path(__file__).parent / "data" / "real"
NOORDPOOL = ("Betreft Noordpool\n\nGeachte voorzitter,\n\nDe minister bezocht het onderzoeksstation op Spitsbergen en "
             "sprak er over de smeltende ijskap rond de Noordpool.\n")


@pytest.fixture()
def served(tmp_path, seed_index_dir, settings, embedder):
    """A pipeline over a copy of the seed index, and a folder of letters beside it (the seeds)."""
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    letters = tmp_path / "letters"
    shutil.copytree(SEEDS, letters)
    return serving(index_dir, settings, embedder), letters


def _doc_ids(pipeline) -> set[str]:
    return {letter.doc_id for letter in pipeline.generation.letters}


def _upload(pipeline, path: Path) -> None:
    """A letter added in the page: kept among the index's uploads and indexed."""
    stored, summary = pipeline.upload_letters([path], [path.name])
    assert not summary.skipped, summary.skipped


def test_letters_whose_files_moved_stay_when_a_letter_is_uploaded(tmp_path, settings, embedder):
    """An index of letters whose files were moved away afterwards (a share reorganised, a laptop's Downloads
    emptied): adding a letter in the page keeps every one of them, as stored; only a removal removes."""
    letters = tmp_path / "letters"
    shutil.copytree(SEEDS, letters)
    for number in range(3):
        (letters / f"01{number}_pool.txt").write_text(NOORDPOOL.replace("Noordpool", f"Pool {number}"), encoding="utf-8")
    index_dir = tmp_path / "index"
    run_ingest([letters], index_dir, settings, embedder)
    pipeline = serving(index_dir, settings, embedder)
    before = _doc_ids(pipeline)
    citation = pipeline.ask("Wat zei Nederland over China?").citations[0]
    shutil.move(letters, tmp_path / "elders")
    _upload(pipeline, REAL / "Kamerbrief_emissie_luchtvaart.pdf")
    assert _doc_ids(pipeline) == before | {"kamerbrief_emissie_luchtvaart"}
    shown = show_served(pipeline.generation, f"{citation.hit.doc_id}:{citation.start}-{citation.end}")
    assert shown.passage == citation.quote  # the moved letter's text is still the one its citations quote
    pipeline.remove_letter("010_pool")
    assert _doc_ids(pipeline) == before - {"010_pool"} | {"kamerbrief_emissie_luchtvaart"}


def test_an_upload_on_a_stale_server_keeps_what_an_ingest_elsewhere_added(served, settings, embedder, tmp_path):
    pipeline, letters = served
    (letters / "010_noordpool.txt").write_text(NOORDPOOL, encoding="utf-8")
    run_ingest([letters], pipeline.index_dir, settings, embedder)  # elsewhere; this server has not switched yet
    assert "010_noordpool" not in _doc_ids(pipeline)
    _upload(pipeline, REAL / "Kamerbrief_emissie_luchtvaart.pdf")
    assert {"010_noordpool", "kamerbrief_emissie_luchtvaart"} <= _doc_ids(pipeline)
    assert {seed.stem for seed in SEEDS.glob("*.txt")} <= _doc_ids(pipeline)


def test_an_ingest_of_another_folder_keeps_the_uploads(served, settings, embedder):
    pipeline, letters = served
    _upload(pipeline, REAL / "Kamerbrief_emissie_luchtvaart.pdf")
    summary = run_ingest([letters], pipeline.index_dir, settings, embedder)
    assert summary.uploads == 1 and "uploaded in the chat (kept)" in summary.line()
    pipeline.refresh()
    assert "kamerbrief_emissie_luchtvaart" in _doc_ids(pipeline)


def test_adding_and_removing_at_once_both_happen(served, settings):
    pipeline, _letters = served
    errors: list[BaseException] = []

    def run(change) -> None:
        try:
            change()
        except BaseException as error:  # collected: the test fails on any of them
            errors.append(error)

    threads = [threading.Thread(target=run, args=(lambda: _upload(pipeline, REAL / "Kamerbrief_emissie_luchtvaart.pdf"),)),
               threading.Thread(target=run, args=(lambda: pipeline.remove_letter("003_2b3a2a813bb728d5"),))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert "kamerbrief_emissie_luchtvaart" in _doc_ids(pipeline) and "003_2b3a2a813bb728d5" not in _doc_ids(pipeline)


def test_two_ingests_in_a_row_leave_the_served_generation_readable(served, settings, embedder):
    pipeline, letters = served
    before = pipeline.ask("Wat zei Nederland over China?")
    citation = before.citations[0]
    served_folder = pipeline.generation.folder
    (letters / "010_noordpool.txt").write_text(NOORDPOOL, encoding="utf-8")
    run_ingest([letters], pipeline.index_dir, settings, embedder)
    (letters / "011_zuidpool.txt").write_text(NOORDPOOL.replace("Noord", "Zuid"), encoding="utf-8")
    run_ingest([letters], pipeline.index_dir, settings, embedder)
    assert served_folder.is_dir()  # two generations later, still on disk: this process serves it
    again = pipeline.ask("Wat zei Nederland over China?")  # still the generation it served before the ingests
    assert [(c.hit.doc_id, c.start, c.quote) for c in again.citations] == [
        (c.hit.doc_id, c.start, c.quote) for c in before.citations]
    assert show_served(pipeline.generation, f"{citation.hit.doc_id}:{citation.start}-{citation.end}").passage == citation.quote
    assert pipeline.refresh() and "011_zuidpool" in _doc_ids(pipeline)
    run_ingest([SEEDS], pipeline.index_dir, settings, embedder)
    assert not served_folder.exists()  # no longer served by anyone: removed by the next ingest


def test_show_reads_the_generation_being_served(served, settings, embedder):
    pipeline, letters = served
    citation = pipeline.ask("Wat zei Nederland over China?").citations[0]
    letter = letters / f"{citation.hit.doc_id}.txt"
    letter.write_text("Betreft Iets anders\n\nGeachte voorzitter,\n\nDeze brief gaat nu over iets heel anders, "
                      "namelijk de visserij in de Noordzee en de quota voor schol en tong.\n", encoding="utf-8")
    run_ingest([letters], pipeline.index_dir, settings, embedder)  # the letter changed on disk; not served yet
    shown = show_served(pipeline.generation, f"{citation.hit.doc_id}:{citation.start}-{citation.end}")
    assert shown.passage == citation.quote  # the server shows the text its citation was taken from
    by_chunk = show_served(pipeline.generation, citation.hit.chunk_id)
    assert citation.quote in by_chunk.passage
    on_disk = show_citation(pipeline.index_dir, f"{citation.hit.doc_id}:0-40")
    assert "Iets anders" in on_disk.title  # the command line reads the index as it is now


def test_two_serve_replicas_on_one_index_folder_switch_together_while_an_ingest_writes(tmp_path, seed_index_dir):
    """The README's replica set-up: two `rag serve` processes on one index folder, a `rag ingest` beside them; both
    answer from the new letter without a restart, and no request to either fails while the index switches."""
    import httpx

    from rag.bench.speed import start_server
    from rag.serve.server import free_port

    from conftest import run_rag

    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)
    letters = tmp_path / "letters"
    shutil.copytree(SEEDS, letters)
    (letters / "010_noordpool.txt").write_text(NOORDPOOL, encoding="utf-8")
    ports = [free_port("127.0.0.1", 0) for _ in range(2)]
    replicas = [start_server(index_dir, port, tmp_path / f"data-{port}") for port in ports]
    urls = [f"http://127.0.0.1:{port}/api/ask" for port in ports]
    failures: list[str] = []
    stop = threading.Event()

    def keep_asking(url: str) -> None:
        while not stop.is_set():
            try:
                response = httpx.post(url, json={"question": "Wat zei Nederland over China?"}, timeout=60)
                if response.status_code != 200 or not response.json()["citations"]:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:  # any failure is what this test is about
                failures.append(f"{type(error).__name__}: {error}")

    askers = [threading.Thread(target=keep_asking, args=(url,)) for url in urls]
    try:
        for asker in askers:
            asker.start()
        ingested = run_rag("ingest", str(letters), "--index", str(index_dir))
        assert ingested.returncode == 0, ingested.stderr
        for url in urls:
            for _attempt in range(600):  # until this replica has switched (it checks the pointer every second)
                answer = httpx.post(url, json={"question": "Wat zag de minister op Spitsbergen?"}, timeout=60).json()
                if any(c["doc_id"] == "010_noordpool" for c in answer["citations"]):
                    break
            else:
                pytest.fail(f"the replica at {url} never answered from the newly ingested letter")
        stop.set()
        for asker in askers:
            asker.join(60)
        assert not failures, failures[:3]
    finally:
        stop.set()
        for replica in replicas:
            replica.terminate()
            replica.wait(30)
