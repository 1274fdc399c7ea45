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

OCR_DPI = 300  # Tesseract reads typed text best at about 300 dpi
OCR_LANGUAGES = "nld+eng"


class MissingOCR(LetterSkipped):
    """Tesseract (or its Dutch model) is not installed: the scan is skipped with this message."""


def read_scan(path: Path) -> Reading:
    if shutil.which("tesseract") is None:
        raise MissingOCR(f"{path}: a scan without text; install Tesseract to read it "
                         f"(`apt-get install tesseract-ocr tesseract-ocr-nld`, or `make install`)")
    import pypdfium2
    import pytesseract

    if "nld" not in pytesseract.get_languages(config=""):
        raise MissingOCR(f"{path}: a scan without text; install Tesseract's Dutch model (`apt-get install tesseract-ocr-nld`)")
    pages = []
    document = pypdfium2.PdfDocument(str(path))
    try:
        for page in document:
            image = page.render(scale=OCR_DPI / 72).to_pil()
            pages.append(pytesseract.image_to_string(image, lang=OCR_LANGUAGES))
    finally:
        document.close()
    text = "\f".join(pages)
    if not text.strip():
        raise InputError(f"{path}: OCR found no text on the scan; check that it is a letter")
    reading = reading_of_text(text)
    reading.ocr = True
    return reading
