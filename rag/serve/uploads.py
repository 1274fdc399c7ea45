"""Letters uploaded in the chat page: checked, then kept in the index's own `uploads/` folder, which every
ingest of that index reads too (so an ingest elsewhere keeps them).

An upload never replaces a letter: it is stored under the id its name gives when no letter holds that id,
else under the first free `<id>-2`, `<id>-3`...; the same content under the id of a letter that has it is
that letter, not a second copy. Stored names are the id itself (`Brief ü.PDF` -> `brief-u.pdf`), so an odd
name never reaches the disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rag.errors import InputError
from rag.files import file_sha256
from rag.readers import is_letter_file
from rag.readers.document import doc_id_for
from rag.settings import ServeSettings

# doc_id -> the content hash of the indexed letter with that id, None when no letter has it.
IndexedHash = Callable[[str], str | None]


@dataclass(frozen=True)
class Upload:
    name: str  # as the user named the file
    path: Path  # where it is kept
    doc_id: str
    already: bool  # the index holds this very file already under `doc_id`: nothing new was stored

    def note(self) -> str:
        """What the page says of it, beyond "added"."""
        if self.already:
            return f"{self.name} staat al in de index ({self.doc_id})"
        if self.doc_id != doc_id_for(Path(self.name)):
            return f"{self.name} is opgeslagen als {self.doc_id}: een andere brief heeft de naam {doc_id_for(Path(self.name))}"
        return ""


def store_letters(files: list[Path], uploads: Path, settings: ServeSettings, indexed: IndexedHash,
                  names: list[str] | None = None) -> list[Upload]:
    """Check each uploaded file (type, size, pages) and keep it in `uploads` under an id no other letter has.
    `names` are the names the user gave (default: the files' own). Reading it is the ingest's work, once: a
    letter that cannot be read is taken out again (`forget`)."""
    names = names or [file.name for file in files]
    for file, name in zip(files, names):
        _check(file, Path(name).name, settings)
    uploads.mkdir(parents=True, exist_ok=True)
    return [_keep(file, Path(name).name, uploads, indexed) for file, name in zip(files, names)]


def forget(paths: list[Path]) -> None:
    """Uploads the ingest could not read: taken out of the uploads folder (earlier uploads are never touched)."""
    for path in paths:
        path.unlink(missing_ok=True)


def _check(file: Path, name: str, settings: ServeSettings) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in settings.upload_types:
        raise InputError(f"{name}: alleen PDF, XML of tekst (.pdf, .xml, .txt) kan worden toegevoegd")
    if not is_letter_file(Path(name)):
        raise InputError(f"{name} beschrijft een publicatie en is zelf geen brief; voeg de brief toe (de .xml of .pdf ernaast)")
    if file.stat().st_size > settings.max_upload_bytes:
        raise InputError(f"{name}: groter dan {settings.max_upload_bytes // 2**20} MB")
    if suffix == ".pdf":
        pages = _pdf_pages(file)
        if pages is None:
            raise InputError(f"{name} is geen leesbare PDF; exporteer de brief opnieuw")
        if pages > settings.max_upload_pages:
            raise InputError(f"{name}: {pages} pagina's, meer dan de {settings.max_upload_pages} die een brief mag hebben")


def _pdf_pages(file: Path) -> int | None:
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(str(file))
    except Exception:  # PDFium's own error for a damaged or protected file
        return None
    try:
        return len(document)
    finally:
        document.close()


def _keep(file: Path, name: str, uploads: Path, indexed: IndexedHash) -> Upload:
    """The file copied into `uploads` as `<id><suffix>` under the first id that neither a letter of the index nor
    another upload has; the same content under an id that has it is the letter already there."""
    base, suffix = doc_id_for(Path(name)), Path(name).suffix.lower()
    digest = file_sha256(file)
    held = {doc_id_for(path) for path in uploads.iterdir()}
    for number in range(1, 10_000):
        doc_id = base if number == 1 else f"{base}-{number}"
        target = uploads / f"{doc_id}{suffix}"
        known = indexed(doc_id)
        if known == digest or (target.exists() and file_sha256(target) == digest):
            return Upload(name, target, doc_id, already=known == digest)
        if known is not None or doc_id in held:
            continue
        with file.open("rb") as source, tempfile.NamedTemporaryFile(dir=uploads, prefix=".incoming-", delete=False) as staging:
            shutil.copyfileobj(source, staging)
        try:
            os.link(staging.name, target)  # fails if another upload took the name meanwhile: never overwrites
        except FileExistsError:
            continue
        finally:
            os.unlink(staging.name)
        return Upload(name, target, doc_id, already=False)
    raise InputError(f"{name}: te veel brieven met deze naam; geef het bestand een andere naam")
