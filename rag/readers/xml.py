"""officielebekendmakingen XML (`kst-*.xml`, `ah-tk-*.xml`), the preferred form of a publication.

The XML gives the structure the PDF only shows: questions and answers, headings, lists,
footnotes, the signature; `metadata.xml` beside it gives dossier, number, vergaderjaar,
ministry and dates. Only the official publication format is read: a file whose root is not
`<officiele-publicatie>` is refused with a line that says so.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import defusedxml.ElementTree as defused
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from rag.errors import InputError
from rag.readers.layout import Block
from rag.readers.lines import FOOTNOTE_MARK, RawFootnote
from rag.readers.reading import Facts, Reading

_SKIPPED = {"metadata", "kamervraagkop", "kamerstukkop", "meta", "noot", "nr", "li.nr", "noot.nr"}
_HEADINGS = {"tussenkop", "kop", "titel", "stuktitel"}
_PARAGRAPHS = {"al", "tekstregel", "datumtekst", "slotformule", "aanhef", "dagtekening"}
_CONTAINERS_OF_LINES = {"al-groep", "ondertekening"}


# Byte order marks, and the first bytes of `<?` in each encoding without one (UTF-32 before UTF-16: their marks share
# a start). Expat reads UTF-8 and UTF-16 itself but no UTF-32; each is decoded here so that every encoding meets
# the same parser with the same refusals.
_ENCODINGS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"), (b"<\0\0\0", "utf-32-le"),
              (b"\0\0\0<", "utf-32-be"), (b"<\0?\0", "utf-16-le"), (b"\0<\0?", "utf-16-be"))
_DECLARED_ENCODING = re.compile(r"""^(<\?xml[^>]*?\bencoding\s*=\s*)(["'])[^"']*\2""")


def parse_xml(path: Path) -> ElementTree.Element:
    """The root of an XML file, by defusedxml: a DOCTYPE, entities or external references are refused with one
    line in every encoding (officielebekendmakingen files have none), so nothing expands; so is XML that is not
    well-formed."""
    data = path.read_bytes()
    encoding = next((name for mark, name in _ENCODINGS if data.startswith(mark)), None)
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not readable as {encoding.upper()} text, as its first bytes say; download the "
                             "publication again") from None
        data = _DECLARED_ENCODING.sub(r"\1\2utf-8\2", text, count=1).encode("utf-8")
    try:
        return defused.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden):
        raise InputError(f"{path}: XML with a DOCTYPE or entities is not read (officielebekendmakingen files have none)") from None
    except ElementTree.ParseError as error:
        raise InputError(f"{path}: not well-formed XML ({error}); download the publication again") from None


def read_xml(path: Path) -> Reading:
    root = parse_xml(path)
    if root.tag != "officiele-publicatie":
        raise InputError(f"{path}: not an officielebekendmakingen publication (root <{root.tag}>); give its .xml, .pdf or .txt")
    walker = _Walker()
    walker.walk(root)
    facts = walker.facts
    metadata = path.parent / "metadata.xml"
    if metadata.is_file():
        _read_metadata(metadata, facts)
    facts.identifier = facts.identifier or path.stem
    return Reading(facts=facts, blocks=walker.blocks, footnotes=walker.footnotes)


class _Walker:
    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.footnotes: list[RawFootnote] = []
        self.facts = Facts()

    def walk(self, element: ElementTree.Element) -> None:
        tag = element.tag
        if tag in _SKIPPED:
            return
        if tag == "kamervraagnummer":
            self.facts.aanhangsel = _text(element)
        elif tag == "kamervraagomschrijving":
            self._description(element)
        elif tag in ("vraag", "antwoord", "mededeling"):
            number = element.find("nr")
            label = _text(number) if number is not None else tag.capitalize()
            self.blocks.append(Block(label, "heading"))
            for child in element:
                self.walk(child)
        elif tag == "dossier":
            found = element.find("dossiernummer/dossiernr")
            if found is not None:
                self.facts.dossier = re.sub(r"\s+", "", _text(found))
            title = element.find("titel")
            if title is not None and not self.facts.title:
                self.facts.title = _text(title)
        elif tag == "stuknr":
            found = element.find("ondernummer")
            self.facts.number = _text(found if found is not None else element).removeprefix("Nr.").strip()
        elif tag in _HEADINGS:
            text = self._inline(element)
            if text:
                self.blocks.append(Block(text, "heading", caps=text.isupper()))
        elif tag in _PARAGRAPHS:
            text = self._inline(element)
            if text:
                self.blocks.append(Block(text, "paragraph"))
            self._date(element)
        elif tag == "li":
            text = self._inline(element, skip=("li.nr",))
            if text:
                self.blocks.append(Block(f"- {text}", "paragraph"))
        elif tag in _CONTAINERS_OF_LINES:
            lines = [self._inline(child) for child in element]
            text = "\n".join(line for line in lines if line) or self._inline(element)
            if text:
                self.blocks.append(Block(text, "signature" if tag == "ondertekening" else "paragraph"))
        elif tag == "row":
            cells = [self._inline(cell) for cell in element]
            text = " | ".join(cell for cell in cells if cell)
            if text:
                self.blocks.append(Block(text, "paragraph"))
        else:
            for child in element:
                self.walk(child)

    def _description(self, element: ElementTree.Element) -> None:
        """"Vragen van ... (ingezonden ...)" and "Antwoord van Minister X (Ministerie) (ontvangen ...)"."""
        text = self._inline(element)
        self.blocks.append(Block(text, "paragraph"))
        date = element.find(".//datum[@isodatum]")
        if element.get("type") == "vraag":
            self.facts.title = self.facts.title or text
        elif element.get("type") == "antwoord":
            if date is not None:
                self.facts.date = date.get("isodatum")  # the day the answer was received
            organisation = element.find(".//organisatie")
            if organisation is not None:
                self.facts.ministry = _text(organisation)

    def _date(self, element: ElementTree.Element) -> None:
        found = element.find(".//datum[@isodatum]")
        if found is not None and not self.facts.date:
            self.facts.date = found.get("isodatum")

    def _inline(self, element: ElementTree.Element, skip: tuple[str, ...] = ()) -> str:
        """The element's text with its inline markup; a footnote becomes a marker and a footnote."""
        return " ".join(self._raw(element, skip).split())

    def _raw(self, element: ElementTree.Element, skip: tuple[str, ...] = ()) -> str:
        parts = [element.text or ""]
        for child in element:
            if child.tag == "noot":
                number = len(self.footnotes) + 1
                note_text = " ".join(self._raw(part) for part in child if part.tag != "noot.nr")
                self.footnotes.append(RawFootnote(number, " ".join(note_text.split())))
                parts.append(chr(FOOTNOTE_MARK + number))
            elif child.tag not in skip:
                parts.append(self._raw(child))
            parts.append(child.tail or "")
        return "".join(parts)


def _text(element: ElementTree.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def _read_metadata(path: Path, facts: Facts) -> None:
    try:
        root = parse_xml(path)
    except (InputError, OSError):
        return  # the publication itself still reads; metadata is a bonus
    values: dict[str, list[str]] = {}
    for meta in root.iter("metadata"):
        if meta.get("name") and meta.get("content"):
            values.setdefault(meta.get("name"), []).append(meta.get("content"))

    def first(name: str) -> str | None:
        return values.get(name, [None])[0]

    facts.identifier = first("DC.identifier") or facts.identifier
    facts.dossier = facts.dossier or first("OVERHEIDop.dossiernummer")
    facts.number = facts.number or first("OVERHEIDop.ondernummer")
    facts.aanhangsel = facts.aanhangsel or first("OVERHEIDop.aanhangselNummer")
    facts.vergaderjaar = first("OVERHEIDop.vergaderjaar") or facts.vergaderjaar
    facts.date = first("OVERHEIDop.datumOntvangst") or facts.date or first("DCTERMS.issued")
    title = first("OVERHEIDop.documenttitel") or first("DC.title")
    if title:
        facts.title = title
    for kind in values.get("DC.type", []):
        if kind in ("Antwoord", "Motie", "Brief", "Verslag", "Amendement", "Nota"):
            facts.kind = {"Antwoord": "antwoord op Kamervragen"}.get(kind, kind.lower())
    creator = first("DC.creator")
    if not facts.ministry and creator and creator.lower().startswith("ministerie"):
        facts.ministry = creator


def read_sidecar(path: Path, facts: Facts) -> None:
    """Publisher's metadata beside a PDF: officielebekendmakingen's `metadata.xml` for this publication,
    or a PLOOI `<name>.manifest.xml` (title, date, ministry)."""
    metadata = path.parent / "metadata.xml"
    if metadata.is_file() and f'content="{path.stem}"' in metadata.read_text(encoding="utf-8", errors="replace"):
        _read_metadata(metadata, facts)
    manifest = path.with_name(f"{path.stem}.manifest.xml")
    if not manifest.is_file():
        return
    try:
        root = parse_xml(manifest)
    except (InputError, OSError):
        return  # the letter itself still reads; its manifest is a bonus
    fields = {element.tag: " ".join("".join(element.itertext()).split()) for element in root.iter()}
    facts.date = facts.date or fields.get("dcterms.issued") or fields.get("dcterms.available")
    creator = fields.get("dcterms.creator") or fields.get("overheid.authority")
    if creator and not facts.ministry:
        facts.ministry = creator
    if fields.get("dcterms.type") and not facts.kind:
        facts.kind = fields["dcterms.type"]
