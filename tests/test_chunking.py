"""Documents -> chunks: offsets, section boundaries, sizes and stable ids on the seed letters."""

from __future__ import annotations

import json

from rag.index.chunking import ChunkSettings, chunk_documents
from rag.readers.document import read_documents

from conftest import SEEDS, run_rag


def test_chunk_text_is_exactly_the_document_slice(documents, chunks):
    for chunk in chunks:
        assert chunk.text == documents[chunk.doc_id].text[chunk.start:chunk.end]
        assert chunk.text == chunk.text.strip() and chunk.text


def test_no_chunk_crosses_a_section(documents, chunks):
    for chunk in chunks:
        document = documents[chunk.doc_id]
        section = document.section_at(chunk.start)
        assert section.start <= chunk.start and chunk.end <= section.end
        assert chunk.section.endswith(section.label)


def test_sizes_stay_well_under_the_model_limit(chunks):
    limit = ChunkSettings().max_chars
    assert all(len(chunk.text) <= limit for chunk in chunks)
    assert all(len(chunk.embed_text) < 1500 for chunk in chunks)


def test_long_sections_split_at_sentence_ends_with_overlap(chunks):
    china = [c for c in chunks if c.doc_id == "001_f33fb6bfa58033f7" and c.section == "SESSIE 2 > China"]
    assert len(china) >= 2
    assert china[1].start < china[0].end, "consecutive pieces of a section overlap a little"
    for chunk in china:
        assert chunk.text[-1] in ".”’\"»)"


def test_embedded_text_carries_title_date_and_section(chunks):
    chunk = next(c for c in chunks if c.section == "SESSIE 2 > China")
    assert chunk.embed_text.startswith("Verslag bijeenkomst NAVO ministers van Buitenlandse Zaken van 1 en 2 december 2020 (2 december 2020)\nSESSIE 2 > China\n\n")
    assert chunk.embed_text.endswith(chunk.text)


def test_ids_stable_across_runs_and_file_order(chunks):
    files = sorted(SEEDS.glob("*.txt"))
    again = chunk_documents(read_documents(list(reversed(files))))
    assert sorted(c.chunk_id for c in again) == sorted(c.chunk_id for c in chunks)
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_heading_only_section_joins_the_next(chunks):
    sections = {c.section for c in chunks}
    assert "SESSIE 2" not in sections and "SESSIE 2 > China" in sections


def test_rag_chunks_json_shows_every_seed_section():
    result = run_rag("chunks", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert set(rows[0]) == {"chunk_id", "doc_id", "title", "date", "section", "start", "end", "text", "source"}
    assert {r["doc_id"] for r in rows} == {p.stem for p in SEEDS.glob("*.txt")}
    assert rows[0]["source"].startswith("seeds/")
    assert "SESSIE 3 > Zwarte Zee" in {r["section"] for r in rows}
