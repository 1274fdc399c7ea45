"""Letters uploaded in the chat page: checked and kept in the data folder before they are indexed."""

from __future__ import annotations

import shutil
from pathlib import Path

from rag.errors import InputError, RagError
from rag.readers.document import read_document
from rag.settings import ServeSettings


def store_letters(files: list[Path], folder: Path, settings: ServeSettings) -> list[Path]:
    """Uploaded letters, checked (type, size, readable) and stored in the data folder."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for file in files:
        name = Path(file.name).name
        if Path(name).suffix.lower() not in settings.upload_types:
            raise InputError(f"{name}: alleen PDF, XML of tekst (.pdf, .xml, .txt) kan worden toegevoegd")
        if file.stat().st_size > settings.max_upload_bytes:
            raise InputError(f"{name}: groter dan {settings.max_upload_bytes // 2**20} MB")
        target = folder / name
        shutil.copyfile(file, target)
        try:
            read_document(target)
        except RagError as error:
            target.unlink(missing_ok=True)
            raise InputError(f"{name} is niet te lezen als brief ({error})") from None
        saved.append(target)
    return saved
