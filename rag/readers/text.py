"""Text letters: text that a PDF extractor or another tool produced, in UTF-8 or Windows-1252."""

from __future__ import annotations

from pathlib import Path

from rag.errors import LetterSkipped
from rag.readers.lines import prepare_lines
from rag.readers.reading import Reading
from rag.settings import ReaderSettings


def read_text(path: Path, most_bytes: int = ReaderSettings.max_text_bytes) -> Reading:
    if path.stat().st_size > most_bytes:
        raise LetterSkipped(f"{path}: {path.stat().st_size // 2**20} MB of text is no letter (at most "
                            f"{most_bytes // 2**20} MB); split it into its letters")
    data = path.read_bytes()
    if not data.strip():
        raise LetterSkipped(f"{path}: the file is empty; remove it or export the letter again")
    if _is_utf16(data):  # Windows' "Unicode" text: two bytes a character, NULs between the letters
        text = data.decode("utf-16", errors="replace").lstrip("\ufeff")
        if not text.strip():
            raise LetterSkipped(f"{path}: the file is empty; remove it or export the letter again")
        return reading_of_text(text)
    if b"\x00" in data[:4096] or _control_ratio(data[:4096]) > 0.05:
        raise LetterSkipped(f"{path}: not a text file (binary content); give a .txt, .pdf or .xml letter")
    warnings = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Windows exports are usually cp1252; decoding keeps every character a user can see.
        text = data.decode("cp1252", errors="replace")
        warnings.append(f"{path}: not UTF-8, read as Windows-1252/Latin-1; save it as UTF-8 to be sure")
    return reading_of_text(text, warnings)


def reading_of_text(text: str, warnings: list[str] | None = None) -> Reading:
    return Reading(lines=prepare_lines(text), warnings=list(warnings or []), extracted=True)


def _is_utf16(data: bytes) -> bool:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    sample = data[:4096]
    # Without a byte order mark: text of Latin letters has a NUL as every other byte, and only there.
    return len(sample) >= 16 and (sample[1::2].count(0) > 0.9 * len(sample[1::2]) > 0 or
                                  sample[0::2].count(0) > 0.9 * len(sample[0::2]) > 0)


def _control_ratio(data: bytes) -> float:
    controls = sum(1 for byte in data if byte < 9 or 13 < byte < 32)
    return controls / max(1, len(data))
