"""Real published letters in every form: ministry PDFs, answers to Kamervragen, XML, a scan, extracted text.

The expected values are read from the documents themselves (tests/data/real/, copied from
../shared/real-letters/; see its README for where they come from).
"""

from __future__ import annotations

import re
import shutil
from difflib import SequenceMatcher
from pathlib import Path

import pytest

from rag.index.chunking import chunk_document
from rag.readers.document import read_document
from rag.readers import letter_paths

REAL = Path(__file__).parent / "data" / "real"
# Page furniture and letterhead that must never reach a passage.
FURNITURE = re.compile(r"Retouradres|Postbus \d|Ons kenmerk|[Pp]\s?agina \d+ van \d+|[\uf000-\uf0ff]|\bP agina\b|"
                       r"Inf rastructuur|^www\.rijksoverheid\.nl\S*$|ISSN 0921|Vragen gesteld door de leden der Kamer",
                       re.MULTILINE)

LETTERS = {
    "Kamerbrief_emissie_luchtvaart.pdf": dict(
        title="Emissies door de luchtvaart", date="2022-12-22", kind="brief", ministry="Infrastructuur en Waterstaat",
        identifiers={("kenmerk", "IENW/BSK-2022/268034")}, cites={"30175-414", "29665-432"}),
    "text/Kamerbrief_emissie_luchtvaart.txt": dict(
        title="Emissies door de luchtvaart", date="2022-12-22", kind="brief", ministry="Infrastructuur en Waterstaat",
        identifiers={("kenmerk", "IENW/BSK-2022/268034")}, cites={"30175-414"}),
    "Kamerbrief_circulaire_economie.pdf": dict(
        title="Nationaal Programma Circulaire Economie 2023-2030 (NPCE) incl. kabinetsreactie op ICER en SER-verkenning",
        date="2023-02-03", ministry="Infrastructuur en Waterstaat", identifiers={("kenmerk", "IENW/BSK-2023/33017")},
        cites={"32852-209"}),
    "text/Kamerbrief_circulaire_economie.txt": dict(
        title="Nationaal Programma Circulaire Economie 2023-2030 (NPCE) incl. kabinetsreactie op ICER en SER-verkenning",
        date="2023-02-03", ministry="Infrastructuur en Waterstaat", identifiers={("kenmerk", "IENW/BSK-2023/33017")}),
    "20110301-5687928a-draagmoederschap.pdf": dict(
        title="Draagmoederschap", date="2011-03-01", kind="brief", identifiers={("kenmerk", "5687928/11")},
        cites={"32123-XVI-30"}, signed="F. Teeven"),
    "text/20110301-5687928a-draagmoederschap.txt": dict(title="Draagmoederschap", date="2011-03-01", signed="F. Teeven"),
    "BNC_Fiche.pdf": dict(title="Fiche 1: Wijziging verordeningen betreffende instant payments in euro", kind="fiche"),
    "kst-35538-4-advies-raad-van-state.pdf": dict(
        kind="advies en nader rapport", ministry="Volksgezondheid, Welzijn en Sport",
        identifiers={("dossier", "35538"), ("kamerstuk", "35538-4")}, signed="H.M. de Jonge"),
    "ah-tk-20202021-3235/ah-tk-20202021-3235.xml": dict(
        title="Antwoord op vragen van de leden Van Weyenberg, Romke de Jong en Kat over de Tozo", date="2021-06-21",
        kind="antwoord op Kamervragen", ministry="Sociale Zaken en Werkgelegenheid",
        identifiers={("id", "ah-tk-20202021-3235"), ("aanhangsel", "3235"), ("vergaderjaar", "2020-2021")}),
    "ah-tk-20202021-3235/ah-tk-20202021-3235.pdf": dict(
        date="2021-06-21", kind="antwoord op Kamervragen", ministry="Sociale Zaken en Werkgelegenheid",
        identifiers={("aanhangsel", "3235")}),
    "kst-32545-143/kst-32545-143.xml": dict(
        date="2021-07-06", kind="motie", identifiers={("dossier", "32545"), ("kamerstuk", "32545-143")}),
}
# Answers to Kamervragen: the day the answer was received ("ontvangen"), not the day the questions were sent.
ANSWERS = {
    "00fe7edd-24c8-4857-98da-774ed3b06836": "2024-03-25", "01b2bcad-7296-43bb-bc44-e727fc69b23f": "2024-06-28",
    "1a2d8959-7ce1-411d-bffe-c78970ae8d6b": "2024-07-23", "1a529d02-ba4d-418b-8d6a-5400a4ac07bc": "2024-08-12",
    "1aa9bd01-68a1-4a4a-a808-5b0183bc217a": "2024-02-20", "1b0f0b98-7c34-418c-98dc-43de7930e685": "2024-05-21",
    "1b26915f-b542-4707-8495-b5c21f0edfe1": "2024-05-17", "1b2d2126-a21e-4c3e-9b18-42206b4cc791": "2024-08-29",
    "1b38043f-a835-4a63-a135-42c593d3ba77": "2024-03-21",
}


@pytest.fixture(scope="module")
def read():
    cache: dict[str, object] = {}

    def read_once(name: str):
        if name not in cache:
            cache[name] = read_document(REAL / name)
        return cache[name]

    return read_once


@pytest.mark.parametrize("name", sorted(LETTERS))
def test_metadata_read_from_the_letter(name, read):
    document, expected = read(name), LETTERS[name]
    for field in ("title", "date", "kind", "ministry"):
        if field in expected:
            assert getattr(document, field) == expected[field], field
    assert expected.get("identifiers", set()) <= set(document.identifiers)
    assert expected.get("cites", set()) <= set(document.references)
    if "signed" in expected:
        assert expected["signed"] in document.ministers
    if "date" in expected:
        assert document.date_sure


@pytest.mark.parametrize("name", sorted(LETTERS) + [f"kamervragen/{stem}.pdf" for stem in sorted(ANSWERS)])
def test_no_passage_holds_letterhead_or_page_furniture(name, read):
    document = read(name)
    for chunk in chunk_document(document):
        assert not FURNITURE.search(chunk.text), (chunk.section, FURNITURE.search(chunk.text).group(0), chunk.text[:200])
        assert chunk.text == document.text[chunk.start:chunk.end]
    title = document.title
    assert not re.search(r"Den Haag|Postbus|www\.|Staten-Generaal$|^\d", title), title


@pytest.mark.parametrize("stem", sorted(ANSWERS))
def test_answers_to_kamervragen_pair_each_question_with_its_answer(stem, read):
    document = read(f"kamervragen/{stem}.pdf")
    assert document.kind == "antwoord op Kamervragen" and document.date == ANSWERS[stem] and document.date_sure
    assert document.title.startswith("Vragen van")
    chunks = chunk_document(document)
    answers = re.findall(r"^Antwoord(?:en)? (\d+(?:[ ,en]+\d+)*)$", document.text, re.MULTILINE)
    assert answers
    for numbers in answers:
        holding = [c for c in chunks if f"\nAntwoord {numbers}\n" in f"\n{c.text}\n" or c.text.startswith(f"Antwoord {numbers}")]
        assert holding, numbers
        assert any(c.section.startswith("Vraag") for c in holding), (numbers, [c.section for c in holding])
        first = min(holding, key=lambda c: c.start)
        assert document.text[:first.start].rstrip().endswith("?") or first.section.startswith("Vraag"), numbers


def test_xml_and_pdf_of_one_answer_agree(read):
    xml = read("ah-tk-20202021-3235/ah-tk-20202021-3235.xml")
    pdf = read("ah-tk-20202021-3235/ah-tk-20202021-3235.pdf")

    def question_sections(document):
        return [s.label for s in document.sections if re.match(r"^(Vraag|Antwoord) \d", s.label)]

    assert question_sections(xml) == question_sections(pdf) and len(question_sections(xml)) == 18
    assert [c.section for c in chunk_document(xml) if c.section.startswith("Vraag")] == \
        [c.section for c in chunk_document(pdf) if c.section.startswith("Vraag")]

    def words(document):
        body = document.text[: document.sections[-1].heading_start] if document.footnotes else document.text
        return re.findall(r"\w+", body.lower())

    assert SequenceMatcher(None, words(xml), words(pdf), autojunk=False).ratio() >= 0.95


def test_a_folder_with_one_publication_in_several_forms_reads_it_once(tmp_path):
    shutil.copytree(REAL / "ah-tk-20202021-3235", tmp_path / "ah")
    assert [p.name for p in letter_paths([tmp_path])] == ["ah-tk-20202021-3235.xml"]


def test_typeset_kamerstuk_reads_in_reading_order(read):
    document = read("kst-35538-4-advies-raad-van-state.pdf")
    labels = [s.label for s in document.sections]
    assert "3. Gegevensbescherming > a. Doelomschrijving" in labels
    # The italic advice and the roman reply are one running text, in order, footnotes moved out.
    text = document.text
    assert text.index("Het voorstel wijzigt de Wet publieke gezondheid") < text.index("2. Noodzaak wettelijke grondslag")
    assert len(document.footnotes) >= 50 and "Tweede Kamer, vergaderjaar" not in text


def test_letter_spaced_words_and_bullets_in_extracted_text(read):
    document = read("text/Kamerbrief_emissie_luchtvaart.txt")
    assert "Infrastructuur" in document.text or document.ministry == "Infrastructuur en Waterstaat"
    assert "\n\n- Blootstellingsonderzoek: er is zicht op" in document.text
    assert not re.search(r"\bP agina\b|\bInf rastructuur\b", document.text)


def test_footnotes_leave_the_running_text(read):
    document = read("Kamerbrief_emissie_luchtvaart.pdf")
    assert len(document.footnotes) == 16
    assert "aan de Kamer aangeboden. In die brief" in document.text  # marker "1" taken out
    first = document.footnotes[0]
    assert "Kamerstukken II 2021/22, 30175, nr. 414" in document.text[first.start:first.end]


@pytest.mark.slow
def test_the_scan_is_read_by_ocr():
    import shutil as tools

    if tools.which("tesseract") is None:
        pytest.fail("Tesseract is missing: `make install` installs tesseract-ocr and tesseract-ocr-nld")
    document = read_document(REAL / "blg-1007826" / "blg-1007826.pdf")
    assert document.ocr
    for visible in ("Kamerbrief over aangenomen moties", "zienswijzen", "Toelichting", "Geadviseerd besluit"):
        assert visible in document.text, visible
    assert document.title.startswith("Beslisnota")  # from the publication's metadata.xml


def test_without_tesseract_a_scan_is_skipped_with_what_to_install(monkeypatch):
    import rag.readers.ocr as ocr
    from rag.readers.document import read_documents

    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    skipped: list[str] = []
    documents = read_documents([REAL / "blg-1007826", REAL / "BNC_Fiche.pdf"], skipped)
    assert [d.doc_id for d in documents] == ["bnc_fiche"]
    assert len(skipped) == 1 and "blg-1007826.pdf" in skipped[0] and "apt-get install tesseract-ocr" in skipped[0]
