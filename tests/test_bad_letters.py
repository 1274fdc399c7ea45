"""One batch of every kind of bad letter beside the seeds, through the real `rag ingest`: the good letters are
indexed and answerable, each bad one is named with what to do, nothing prints a traceback, the index loads."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from conftest import SEEDS, run_rag

pytestmark = pytest.mark.slow
REAL = Path(__file__).parent / "data" / "real"
BODY = ("Geachte voorzitter,\n\nHierbij informeer ik u over de voortgang van het programma voor de versterking van de "
        "dijken langs de grote rivieren. Het programma ligt op schema en de kosten blijven binnen de begroting.\n")


def _letter(subject: str, date_line: str = "Datum 3 maart 2021") -> str:
    return f"Ministerie van Infrastructuur en Waterstaat\n\n{date_line}\nBetreft {subject}\n\n{BODY}"


def _publication(date: str, body: str = "<al>De minister antwoordt dat de dijken op tijd versterkt worden.</al>") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?><officiele-publicatie><kamerstuk><dossier><titel>Dijkversterking'
            f'</titel></dossier><stuk><algemeen><al><datum isodatum="{date}">een datum</datum></al></algemeen>{body}'
            f'</stuk></kamerstuk></officiele-publicatie>')


def _metadata(identifier: str, received: str, doctype: bool = False) -> str:
    head = '<!DOCTYPE metadata_gegevens [<!ENTITY x "x">]>' if doctype else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>{head}<metadata_gegevens>'
            f'<metadata name="DC.identifier" content="{identifier}"/>'
            f'<metadata name="OVERHEIDop.datumOntvangst" content="{received}"/></metadata_gegevens>')


def _pdf(pages: list[str | None]) -> bytes:
    """A PDF with a text page for each string and a scanned page (an image of the text) for each None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    out = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(out) as pdf:
        for text in pages:
            figure = plt.figure(figsize=(8.27, 11.69))
            if text is not None:
                figure.text(0.1, 0.9, text, fontsize=11, va="top")
            else:
                scan = plt.figure(figsize=(8.27, 11.69), dpi=150)
                scan.text(0.1, 0.8, "Bijlage: de versterking van de dijken kost in totaal\n42 miljoen euro in 2021.",
                          fontsize=14, va="top")
                image = io.BytesIO()
                scan.savefig(image, format="png")
                plt.close(scan)
                image.seek(0)
                axes = figure.add_axes([0, 0, 1, 1])
                axes.imshow(plt.imread(image))
                axes.axis("off")
            pdf.savefig(figure)
            plt.close(figure)
    return out.getvalue()


def _encrypted_pdf() -> bytes:
    """A PDF under the standard security handler whose password nobody gave."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
               b"<< /Filter /Standard /V 1 /R 2 /O <" + b"41" * 32 + b"> /U <" + b"42" * 32 + b"> /P -44 >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode() + b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Encrypt 4 0 R /ID [<00112233445566778899aabbccddeeff> "
            f"<00112233445566778899aabbccddeeff>] >>\nstartxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def _bad_batch(folder: Path) -> tuple[dict[str, str], dict[str, str | None]]:
    """Writes the batch; returns the files that must be skipped (name -> what their line says) and the letters that
    must be indexed (doc_id -> what their date must be, None for undated)."""
    shutil.copytree(SEEDS, folder)
    write = lambda name, data: (folder / name).parent.mkdir(parents=True, exist_ok=True) or (  # noqa: E731
        (folder / name).write_bytes(data) if isinstance(data, bytes) else (folder / name).write_text(data, encoding="utf-8"))
    skipped = {
        "leeg.txt": ("", "the file is empty"),
        "spaties.txt": ("  \n\t\n   \n", "the file is empty"),
        "binair.txt": (bytes(range(256)) * 40, "not a text file"),
        "nul-bytes.txt": (BODY.encode() + b"\x00\x00\x00" * 50 + BODY.encode(), "not a text file"),
        "pdf-als-tekst.txt": (_pdf(["Een brief als PDF, bewaard als .txt"]), "not a text file"),
        "afgebroken.pdf": ((REAL / "BNC_Fiche.pdf").read_bytes()[:20_000], "cannot read this PDF"),
        "versleuteld.pdf": (_encrypted_pdf(), "protected with a password"),
        "geen-pdf.pdf": (BODY, "cannot read this PDF"),
        "nul-paginas.pdf": (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages "
                            b"/Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n", "PDF"),
        "lege-scan.pdf": (_blank_scan(), "OCR found no text"),
        "doctype.xml": ('<?xml version="1.0"?><!DOCTYPE officiele-publicatie SYSTEM "file:///etc/passwd">'
                        '<officiele-publicatie/>', "DOCTYPE"),
        "entiteiten.xml": ('<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">'
                           ']><officiele-publicatie>&b;</officiele-publicatie>', "DOCTYPE or entities"),
        "kapot.xml": ("<officiele-publicatie><kamerstuk>", "not well-formed"),
        "vreemd.xml": ("<html><body>Geen publicatie</body></html>", "not an officielebekendmakingen publication"),
        "leeg-publicatie.xml": ("<officiele-publicatie><kamerstuk/></officiele-publicatie>", "no readable text"),
        "te-groot.txt": (BODY * 80_000, "is no letter"),
    }
    for name, (data, _needle) in skipped.items():
        write(name, data)
    (folder / "onleesbaar.txt").symlink_to("/proc/self/mem")  # reading it fails with an I/O error, even for root
    skipped["onleesbaar.txt"] = ("", "cannot read this file")
    indexed = {
        "datum-31-februari": (_letter("Dijken in februari", "Datum 31 februari 2021"), None),
        "datum-0-januari": (_letter("Dijken in januari", "Datum 0 januari 2021"), None),
        "windows-1252": (_letter("Dijken in Zeeland en Oekraïne").encode("cp1252"), "2021-03-03"),
        "utf-16": (_letter("Dijken in Limburg").encode("utf-16"), "2021-03-03"),
        "utf-16-zonder-bom": (_letter("Dijken in Gelderland").encode("utf-16-le"), "2021-03-03"),
        "stuurtekens": (_letter("Dijken\x07 in\x1b Friesland").replace("programma", "pro\x08gramma"), "2021-03-03"),
        "bidi": (_letter("Dijken in \u202eGroningen\u202c"), "2021-03-03"),
        "oude-mac": (_letter("Dijken in Utrecht").replace("\n", "\r"), "2021-03-03"),
        "voetnoten": (_letter("Dijken met voetnoten").replace("begroting.", " ".join(
            f"bron{n} zegt dit{n}." for n in range(1, 301))) + "\n\n" + "\n".join(f"{n} Bron nummer {n}." for n in range(1, 301)),
            "2021-03-03"),
        "alleen-briefhoofd": ("Ministerie van Defensie\n\nDatum 4 maart 2021\nBetreft Oefening in Noorwegen\n", "2021-03-04"),
        "gemengd": (_pdf(["Betreft Dijkversterking met bijlage\nDatum 5 maart 2021\n\n" + BODY, None]), "2021-03-05"),
        "kst-onmogelijk": (_publication("2021-02-30"), None),
        "ah-onmogelijk/ah-onmogelijk": (_publication("2021-06-03"), None),
        "meta-doctype/meta-doctype": (_publication("2021-06-03"), "2021-06-03"),
        "luchtvaart-onmogelijk": ((REAL / "Kamerbrief_emissie_luchtvaart.pdf").read_bytes(), None),
    }
    suffixes = {"gemengd": ".pdf", "kst-onmogelijk": ".xml", "ah-onmogelijk/ah-onmogelijk": ".xml",
                "meta-doctype/meta-doctype": ".xml", "luchtvaart-onmogelijk": ".pdf"}
    for name, (data, _date) in indexed.items():
        write(name + suffixes.get(name, ".txt"), data)
    # Another letter of a seed's name: indexed under an id of its own, the seed keeps its id.
    write("dubbel/000_cee59b6ea59e1ee0.txt", _letter("Een andere brief met dezelfde naam"))
    write("ah-onmogelijk/metadata.xml", _metadata("ah-onmogelijk", "2021-13-45"))
    write("meta-doctype/metadata.xml", _metadata("meta-doctype", "1999-01-01", doctype=True))  # not read: stays 2021
    write("luchtvaart-onmogelijk.manifest.xml", '<?xml version="1.0"?><document><dcterms.issued>2021-02-29'
                                                 '</dcterms.issued></document>')
    return {name: needle for name, (_data, needle) in skipped.items()}, {
        **{Path(name).name: date for name, (_data, date) in indexed.items()}, "000_cee59b6ea59e1ee0-2": "2021-03-03"}


def _blank_scan() -> bytes:
    """A scanned page with nothing on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.backends.backend_pdf import PdfPages

    out = io.BytesIO()
    with PdfPages(out) as pdf:
        figure = plt.figure(figsize=(8.27, 11.69))
        axes = figure.add_axes([0, 0, 1, 1])
        axes.imshow(np.ones((100, 70, 3)))
        axes.axis("off")
        pdf.savefig(figure)
        plt.close(figure)
    return out.getvalue()


def test_one_batch_of_every_kind_of_bad_letter(tmp_path, seed_index_dir, embedder):
    from rag.index.store import load_index

    letters = tmp_path / "letters"
    skipped, indexed = _bad_batch(letters)
    # Every file of the batch has its expected outcome in the table (a file written but not listed would go untested).
    written = [path for path in letters.rglob("*") if path.name != "metadata.xml" and not path.name.endswith(".manifest.xml")
               and (path.is_file() or path.is_symlink())]
    assert len(skipped) + len(indexed) + len(list(SEEDS.glob("*.txt"))) == len(written)
    index_dir = tmp_path / "index"
    shutil.copytree(seed_index_dir, index_dir)

    result = run_rag("ingest", str(letters), "--index", str(index_dir))
    assert result.returncode == 3, result.stderr[-2000:]  # done, but some letters were skipped
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for name, needle in skipped.items():
        said = [line for line in lines if line.startswith("rag: skipped: ") and name in line]
        assert len(said) == 1 and needle in said[0], (name, said)
    assert f"{len(skipped)} letters skipped" in result.stdout
    assert any("dubbel/000_cee59b6ea59e1ee0.txt" in line and "indexed as '000_cee59b6ea59e1ee0-2'" in line for line in lines)

    generation = load_index(index_dir, embedder.name, embedder.fingerprint)
    for doc_id, date in indexed.items():
        letter = generation.letter(doc_id)
        assert letter is not None and letter.date == date, (doc_id, letter)
    assert {seed.stem for seed in SEEDS.glob("*.txt")} <= {letter.doc_id for letter in generation.letters}
    assert len(generation.letters) == 5 + len(indexed)
    assert any("does not exist" in line and "datum-31-februari" in line for line in lines)
    assert any("read by OCR" in line for line in lines)
    text_of = lambda doc_id: generation.document(doc_id).text  # noqa: E731
    assert "42 miljoen euro" in text_of("gemengd")  # the scanned page of a PDF with text pages
    assert generation.letter("bidi").title == "Dijken in Groningen"  # the direction marks are gone, the words stay
    assert "programma" in text_of("stuurtekens") and "\x08" not in text_of("stuurtekens")

    # The index loads and answers, a date filter works beside the undated letters, and the next ingest is calm.
    answer = run_rag("ask", "--json", "Wat zei Nederland over China?", "--index", str(index_dir))
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["citations"]
    dated = run_rag("search", "--json", "--since", "2021-03-01", "--until", "2021-03-31", "dijkversterking",
                    "--index", str(index_dir))
    hits = json.loads(dated.stdout)["hits"] if dated.returncode == 0 else []
    assert hits and all(hit["date"].startswith("2021-03") for hit in hits), dated.stderr
    again = run_rag("ingest", str(letters), "--index", str(index_dir))
    assert again.returncode == 3 and "index up to date" in again.stdout and "Traceback" not in again.stderr


def test_a_batch_with_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "leeg.txt").write_text("", encoding="utf-8")
    (tmp_path / "kapot.pdf").write_bytes(b"%PDF-1.4 kapot")
    result = run_rag("ingest", str(tmp_path), "--index", str(tmp_path / "index"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "1 more letters could not be read" in result.stderr
