"""The readers: letter files in, `Document`s out (text, sections, metadata, offsets into the stored text).

One reader per published form (`text`, `pdf`, `xml`, `ocr` for scans) hands `lines` or blocks to the
document builder (`document`), which recovers the letter head (`letterhead`), the blocks (`lines`,
`layout`), the metadata (`metadata`) and the references (`references`). The first stage: it imports
only the shared modules (settings, errors, language, files), never the index, the model or what follows.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rag.errors import InputError
from rag.files import entries_under
from rag.readers.reading import Facts, Reading


def _text(path: Path) -> Reading:
    from rag.readers.text import read_text

    return read_text(path)


def _pdf(path: Path) -> Reading:
    from rag.readers.pdf import read_pdf
    from rag.readers.xml import read_sidecar

    reading = read_pdf(path)
    read_sidecar(path, reading.facts)
    return reading


def _xml(path: Path) -> Reading:
    from rag.readers.xml import read_xml

    return read_xml(path)


# Imported on use: `rag chunks` on text letters needs no PDF library.
READERS: dict[str, Callable[[Path], Reading]] = {".txt": _text, ".pdf": _pdf, ".xml": _xml}
_FORM_PREFERENCE = (".xml", ".pdf", ".txt")  # one publication in several forms is read once, in the first
_NOT_LETTERS = ("metadata.xml", "metadata_owms.xml")


def is_letter_file(path: Path) -> bool:
    name = path.name.lower()
    return path.suffix.lower() in READERS and name not in _NOT_LETTERS and not name.endswith(".manifest.xml")


def letter_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the sorted list of letter files they hold.

    A folder holding one publication in several forms (`kst-1-2.xml` and `kst-1-2.pdf`) gives its
    preferred form only; metadata files beside the letters are read by the readers, not as letters.
    """
    found: list[Path] = []
    for given in paths:
        path = given if isinstance(given, Path) else Path(given)
        try:
            is_folder = stat.S_ISDIR(os.stat(path).st_mode)  # one call a path: a ministry's archive is many files
        except OSError:
            raise InputError(f"{path}: no such file or folder") from None
        if is_folder:
            letters = [file for file in _files_under(path) if is_letter_file(file)]
            if not letters:
                raise InputError(f"{path}: no letters here (looked for {', '.join(sorted(READERS))} files)")
            found.extend(_preferred_forms(letters))
        elif is_letter_file(path):
            found.append(path)
        else:
            raise InputError(f"{path}: unsupported file type; give {', '.join(sorted(READERS))} files")
    return sorted(set(found), key=lambda p: (p.name, str(p)))


def _files_under(folder: Path) -> Iterator[Path]:
    """The files in a folder and its subfolders, as `rglob` finds them."""
    return (Path(entry.path) for entry in entries_under(os.fspath(folder)) if entry.is_file())


def _preferred_forms(files: list[Path]) -> list[Path]:
    by_publication: dict[tuple[Path, str], Path] = {}
    for path in files:
        key = (path.parent, path.stem.lower())
        current = by_publication.get(key)
        if current is None or _FORM_PREFERENCE.index(path.suffix.lower()) < _FORM_PREFERENCE.index(current.suffix.lower()):
            by_publication[key] = path
    return list(by_publication.values())


def read(path: Path) -> Reading:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unsupported file type; give {', '.join(sorted(READERS))} files")
    return reader(path)


__all__ = ["Facts", "READERS", "Reading", "is_letter_file", "letter_paths", "read"]
