"""Letters uploaded in the chat page: checked, then kept in the index's own `uploads/` folder, which every
ingest of that index reads too (so an ingest elsewhere keeps them). An upload never replaces another: a
second file of the same name and other content is kept under a name of its own; the same file again is
the letter already there."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rag.errors import InputError
from rag.files import file_sha256
from rag.settings import ServeSettings


def store_letters(files: list[Path], uploads: Path, settings: ServeSettings) -> list[Path]:
    """Check each uploaded file (type, size, pages) and keep it in `uploads`; the paths it is kept under.
    Reading it is the ingest's work, once: a letter that cannot be read is taken out again (`forget`)."""
    for file in files:
        _check(file, settings)
    uploads.mkdir(parents=True, exist_ok=True)
    return [_keep(file, uploads) for file in files]


def forget(paths: list[Path]) -> None:
    """Uploads the ingest could not read: taken out of the uploads folder (earlier uploads are never touched)."""
    for path in paths:
        path.unlink(missing_ok=True)


def _check(file: Path, settings: ServeSettings) -> None:
    name = Path(file.name).name
    if Path(name).suffix.lower() not in settings.upload_types:
        raise InputError(f"{name}: alleen PDF, XML of tekst (.pdf, .xml, .txt) kan worden toegevoegd")
    if file.stat().st_size > settings.max_upload_bytes:
        raise InputError(f"{name}: groter dan {settings.max_upload_bytes // 2**20} MB")
    if Path(name).suffix.lower() == ".pdf":
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


def _keep(file: Path, uploads: Path) -> Path:
    """The file copied into `uploads` under its own name, or a free variant of it (`brief-2.pdf`); the same
    content under the same name is the upload already there."""
    name = Path(file.name).name
    stem, suffix = Path(name).stem, Path(name).suffix
    digest = file_sha256(file)
    for number in range(1, 10_000):
        target = uploads / (name if number == 1 else f"{stem}-{number}{suffix}")
        if target.exists():
            if file_sha256(target) == digest:
                return target
            continue
        with file.open("rb") as source, tempfile.NamedTemporaryFile(dir=uploads, prefix=".incoming-", delete=False) as staging:
            shutil.copyfileobj(source, staging)
        try:
            os.link(staging.name, target)  # fails if another upload took the name meanwhile: never overwrites
        except FileExistsError:
            continue
        finally:
            os.unlink(staging.name)
        return target
    raise InputError(f"{name}: te veel brieven met deze naam; geef het bestand een andere naam")
