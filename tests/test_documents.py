"""Letters -> documents on the real seed letters: metadata, structure and clean text."""

from __future__ import annotations

import re

import pytest

from rag.readers.document import parse_letter, read_documents
from rag.errors import InputError

EXPECTED = {
    "000_cee59b6ea59e1ee0": {
        "title": "Verslag van de bijeenkomst van NAVO ministers van Buitenlandse Zaken van 23 en 24 maart 2021",
        "date": "2021-03-24", "kind": "verslag", "ministers": ("Stef Blok",),
        "sections": ["Afghanistan", "Zuidflank", "NAVO2030 en voorbereiding NAVO Top", "China",
                     "Rusland en wapenbeheersing", "NATO Foreign Ministerial Statement", "Voetnoten"],
    },
    "001_f33fb6bfa58033f7": {
        "title": "Verslag bijeenkomst NAVO ministers van Buitenlandse Zaken van 1 en 2 december 2020",
        "date": "2020-12-02", "kind": "verslag", "ministers": ("Stef Blok",),
        "sections": ["SESSIE 1 > NAVO 2030", "SESSIE 1 > Rusland en Arms control, Disarmament and Non-proliferation (ADN)",
                     "SESSIE 1 > Afghanistan", "SESSIE 2 > China", "SESSIE 3 > Zwarte Zee"],
    },
    "002_0eaa6607556f058b": {
        "title": "Geannoteerde agenda ministeriële bijeenkomsten van de NAVO-ministers van Buitenlandse Zaken en van Defensie van 1 juni 2021",
        "date": "2021-06-01", "kind": "geannoteerde agenda", "ministers": ("Stef Blok", "Ank Bijleveld-Schouten"),
        "sections": ["NAVO2030", "Politieke consultatie en besluitvorming", "Weerbaarheid",
                     "Behoud van technologische voorsprong", "Partnerschappen (w.o. NAVO-EU)", "Klimaat",
                     "Strategisch Concept", "Gemeenschappelijke financiering", "Afghanistan",
                     "Afschrikking en verdediging", "NAVO-EU samenwerking", "Cyber",
                     "Conflict gerelateerd seksueel geweld", "Voetnoten"],
    },
    "003_2b3a2a813bb728d5": {
        "title": "Verslag bijeenkomst NAVO ministers van Buitenlandse Zaken van 2 april 2020",
        "date": "2020-04-02", "kind": "verslag", "ministers": ("S.A. Blok",),
        "sections": ["COVID-19", "Het Zuiden > Irak", "Het Zuiden > Midden Oosten en Noord Afrika",
                     "Het Zuiden > Turkije/Syrië", "Voetnoten"],
    },
    "004_7863b943b4599ff8": {
        "title": "Verslag van de bijeenkomst van de Noord-Atlantische Raad (NAR) op het niveau van de Ministers van Buitenlandse Zaken",
        "date": "2017-03-31", "kind": "verslag", "ministers": ("Bert Koenders",),
        "sections": ["Trans-Atlantische betrekkingen, mede in relatie tot defensie-uitgaven",
                     "Terrorismebestrijding en zuidflank", "Westelijke Balkan", "Rusland", "Oekraïne"],
    },
}


@pytest.mark.parametrize("doc_id", sorted(EXPECTED))
def test_metadata_as_the_letter_states_it(documents, doc_id):
    document, expected = documents[doc_id], EXPECTED[doc_id]
    assert document.title == expected["title"]
    assert document.date == expected["date"]
    assert document.kind == expected["kind"]
    assert document.ministers == expected["ministers"]
    labels = [section.label for section in document.sections]
    for section in expected["sections"]:
        assert section in labels


def test_every_seed_letter_is_read(documents):
    assert sorted(documents) == sorted(EXPECTED)


def test_sections_point_at_their_headings(documents):
    for document in documents.values():
        for section in document.sections:
            if section.heading != "Inleiding":
                assert document.text[section.heading_start:].startswith(section.heading)
            assert 0 <= section.heading_start <= section.start <= section.end <= len(document.text)


def test_hyphenation_repaired_and_real_hyphens_kept(documents):
    text = {doc_id: document.text for doc_id, document in documents.items()}
    assert "over wapenbeheersing, ontwapening" in text["003_2b3a2a813bb728d5"]  # wapenbe-/heersing
    assert "onderstreepten het belang zich" in text["003_2b3a2a813bb728d5"]  # onder-/streepten
    assert "voor partnerlanden Georgië" in text["003_2b3a2a813bb728d5"]
    assert "gaf de Secretaris-generaal van de NAVO" in text["003_2b3a2a813bb728d5"]  # spelled so elsewhere
    assert "van de NAVO-partnerlanden Zweden en Finland" in text["000_cee59b6ea59e1ee0"]
    assert "hun defensie-uitgaven de komende jaren" in text["004_7863b943b4599ff8"]
    assert "Trans-Atlantisch politiek platform" in text["001_f33fb6bfa58033f7"]
    for document in documents.values():
        assert not re.search(r"[a-z]-\n", document.text)


def test_line_wrapping_undone_and_paragraphs_kept(documents):
    document = documents["000_cee59b6ea59e1ee0"]
    assert "Deze organisaties hebben immers complementaire mandaten en gereedschapskisten en kunnen elkaar goed aanvullen." in document.text
    for paragraph in document.text.split("\n\n"):
        assert "\n" not in paragraph or paragraph.startswith("De minister")


def test_footnotes_leave_the_running_text_but_are_kept(documents):
    document = documents["000_cee59b6ea59e1ee0"]
    assert "jegens coalitietroepen. Minister Blinken" in document.text
    (footnote,) = document.footnotes
    assert "Kamerstuk 28676, nr. 353" in document.text[footnote.start:footnote.end]
    assert document.text[footnote.anchor - len("coalitietroepen."):footnote.anchor] == "coalitietroepen."
    assert document.sections[-1].heading == "Voetnoten"
    letter = documents["003_2b3a2a813bb728d5"]
    assert "in februari 2020 genomen." in letter.text
    assert "Deze verklaring gaat u in de bijlage toe." in letter.text
    assert "Kamerstuk 28 676, nr. 334" in letter.text[letter.footnotes[1].start:letter.footnotes[1].end]


def test_no_placeholders_markers_or_page_noise(documents, chunks):
    for document in documents.values():
        assert "[Ondertekenaar" not in document.text
        assert not re.search(r"[\ue000-\uf8ff\f]", document.text)
        assert "  " not in document.text
        running = document.text[: document.sections[-1].heading_start]
        assert not re.search(r"[a-zë]\d\.", running), "footnote marker glued to a word"
        assert "https://www.nato.int" not in running
    for chunk in chunks:
        assert "[Ondertekenaar" not in chunk.text


def test_headings_are_not_confused_with_last_lines(documents):
    labels = {s.heading for d in documents.values() for s in d.sections}
    assert "Stef Blok" not in labels
    assert not any(label.endswith((".", ",")) for label in labels)
    assert "Issued by the NATO Foreign Ministers Brussels, 23rd-24th March 2021" not in labels


def test_letter_without_structure_reads_as_one_section_with_warning():
    raw = "Dit is een korte brief zonder kopjes.\nHij gaat over niets bijzonders en eindigt hier.\n"
    document = parse_letter(raw, doc_id="kort", source="kort.txt")
    assert len(document.sections) == 1
    assert document.text[document.sections[0].start:document.sections[0].end].startswith("Dit is een korte brief")
    assert any("no headings" in warning for warning in document.warnings)


def test_letters_whose_names_give_one_id_are_both_read_under_ids_of_their_own(tmp_path):
    names = {"a": "brief.txt", "b": "brief.txt", "c": "Brief.txt", "d": "brief ü.txt"}
    for folder, name in names.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text(f"Geachte voorzitter,\n\nEen brief uit map {folder}.\n", encoding="utf-8")
    notes: list[str] = []
    documents = {d.doc_id: d for d in read_documents([tmp_path], notes=notes)}
    assert {doc_id: d.source.split("/")[-2] for doc_id, d in documents.items()} == {
        "brief": "c", "brief-2": "a", "brief-3": "b", "brief-u": "d"}  # sorted by name, then path: stable
    assert len(notes) == 2 and all("has the id 'brief'" in note for note in notes)
    assert "indexed as 'brief-2'" in notes[0] and "a/brief.txt" in notes[0]


def _write_pdf(path, pages: list[list[str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for lines in pages:
            figure = plt.figure(figsize=(8.27, 11.69))
            for number, line in enumerate(lines):
                figure.text(0.1, 0.9 - number * 0.03, line, fontsize=11)
            pdf.savefig(figure)
            plt.close(figure)


def test_pdf_letters_are_read_like_text_letters(tmp_path):
    path = tmp_path / "brief.pdf"
    _write_pdf(path, [
        ["Betreft Verslag van de proefbijeenkomst van 3 maart 2022", "", "Geachte voorzitter,", "",
         "Hierbij bied ik u het verslag aan van de proefbijeenkomst.", "", "Oekraïne", "",
         "De ministers spraken over de steun aan Oekraïne en de wapenbe-", "heersing in Europa."],
        ["Zwarte Zee", "", "Nederland sprak steun uit voor de territoriale integriteit."],
    ])
    (document,) = read_documents([path])
    assert document.title == "Verslag van de proefbijeenkomst van 3 maart 2022" and document.date == "2022-03-03"
    assert {"Oekraïne", "Zwarte Zee"} <= {s.label for s in document.sections}
    assert "de wapenbeheersing in Europa." in document.text


def test_broken_pdf_is_a_clear_error(tmp_path):
    path = tmp_path / "kapot.pdf"
    path.write_bytes(b"%PDF-1.4\n%%garbage that is no pdf at all\n")
    with pytest.raises(InputError, match="kapot.pdf"):
        read_documents([path])


def test_ministry_letter_head_numbered_sections_and_bullets():
    """The usual ministry layout (address, Datum/Betreft/kenmerk labels, numbered headings, bullets, page footer)."""
    from pathlib import Path

    (document,) = read_documents([Path(__file__).parent / "data" / "letter_head_layout.txt"])
    assert document.title == "Voortgang van de aanpak van de stikstofproblematiek"
    assert document.date == "2022-11-15"
    assert document.ministers == ("Christianne van der Wal-Zeggelink",)
    labels = [s.label for s in document.sections]
    assert "1. Inleiding" in labels and "2. Stand van zaken > 2.1 Financiering" in labels
    # The letter head is metadata, never body text.
    assert document.text.startswith("Geachte voorzitter,") and ("kenmerk", "DGSN-NS/22512345") in document.identifiers
    assert not any(word in document.text for word in ("Datum 15 november", "Betreft", "Postbus", "Ons kenmerk"))
    assert document.ministry == "Natuur en Stikstof"
    assert "gehanteerd:\n\n- de wettelijke doelen blijven leidend;\n\n- boeren krijgen" in document.text
    assert "stikstofproblematiek" in document.text and "Pagina 1 van 2" not in document.text
