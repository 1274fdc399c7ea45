"""Scanned letters: PDF pages without a text layer, read by Tesseract with its Dutch model.

Pages are rendered by PDFium (pypdfium2, which pdfplumber already uses) and read through
pytesseract. The text is marked as OCR text in the metadata. Without Tesseract the letter is
skipped with a warning that says what to install.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rag.errors import InputError, LetterSkipped
from rag.readers.reading import Reading
from rag.readers.text import reading_of_text
from rag.settings import ReaderSettings

OCR_DPI = 300  # Tesseract reads typed text best at about 300 dpi
OCR_LANGUAGES = "nld+eng"


class MissingOCR(LetterSkipped):
    """Tesseract (or its Dutch model) is not installed: the scan is skipped with this message."""


def read_scan(path: Path, max_pages: int = ReaderSettings.ocr_max_pages) -> Reading:
    """A PDF without any text layer, read by OCR."""
    text = "\f".join(ocr_pages(path, None, max_pages))
    if not text.strip():
        raise LetterSkipped(f"{path}: OCR found no text on the scan; check that it is a letter, or export it with text")
    reading = reading_of_text(text)
    reading.ocr = True
    return reading


def ocr_pages(path: Path, numbers: list[int] | None, max_pages: int = ReaderSettings.ocr_max_pages) -> list[str]:
    """The text Tesseract reads on these pages (all when None), at most `max_pages` of them."""
    if shutil.which("tesseract") is None:
        raise MissingOCR(f"{path}: a scan without text; install Tesseract to read it "
                         f"(`apt-get install tesseract-ocr tesseract-ocr-nld`, or `make install`)")
    import pypdfium2
    import pytesseract

    if "nld" not in pytesseract.get_languages(config=""):
        raise MissingOCR(f"{path}: a scan without text; install Tesseract's Dutch model (`apt-get install tesseract-ocr-nld`)")
    document = pypdfium2.PdfDocument(str(path))
    try:
        numbers = list(range(len(document))) if numbers is None else numbers
        if len(numbers) > max_pages:
            raise InputError(f"{path}: {len(numbers)} scanned pages, more than the {max_pages} read by OCR at once; "
                             f"split the file")
        return [pytesseract.image_to_string(document[number].render(scale=OCR_DPI / 72).to_pil(), lang=OCR_LANGUAGES)
                for number in numbers]
    finally:
        document.close()
