"""What changed since the last ingest of the same letters, from one pass over the directory entries: nothing (the
no-op of a ministry's archive), or only letter files added.

An ingest remembers (`last-ingest.json` in the index folder) what it was given and what it saw: the working
folder, the folders as given with where they lead, every file under the paths given in the order the directory
lists them with its device, inode (a link pointing elsewhere is another file), size and modification time (one line
a file, in `last-ingest-files.txt`), the letters uploaded into the index, and the model, reader, chunker, tokenizer
and index settings it indexed with; beside it, the generation it left live and what it said. The next ingest takes
the same from the directory entries alone (one `stat` a file: no `Path` objects, nothing hashed or read). When it is
the same, that generation is still live, its manifest as it was and its files whole, it is done: nothing a full
check would look at has changed (it trusts size and modification time as make and git do, and as the full check does
before it hashes a file). When every file seen before is still there unchanged and the only new ones are letter
files, only those are handed to the ingest (`added_letters`): the letters of the index stay as stored, and a million
passages' letter files are not listed, resolved or hashed again. Anything else, a path that is not there included,
falls through to the full check of `rag.index.ingest`, which says what is wrong.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rag.files import entries_under, write_atomically
from rag.index.chunking import chunking_manifest
from rag.index.folder import FORMAT_VERSION, current_generation_name
from rag.index.lexical import tokenizer_id
from rag.readers import is_letter_file
from rag.readers.document import READER_VERSION
from rag.settings import ChunkSettings, IndexSettings, LexicalSettings

SNAPSHOT = "last-ingest.json"
FILES = "last-ingest-files.txt"  # the files seen under the paths given, a line each


@dataclass(frozen=True)
class Seen:
    """What an ingest sees from the directory entries alone."""

    head: str  # the settings, the working folder, the folders given and where they lead
    files: tuple[str, ...]  # a line per file under the paths given: name, device, inode, size, modification time
    uploads: str  # the same of the letters uploaded into the index, as one digest

    @functools.cached_property
    def files_digest(self) -> str:
        return _sha256("".join(self.files))

    @functools.cached_property
    def digest(self) -> str:  # a million files' lines are hashed once, for this and for `remember`
        return _sha256(f"{self.head}\0{self.files_digest}\0{self.uploads}")


def seen_now(paths: Sequence[str | Path], uploads: Path, model_name: str, fingerprint: str,
             chunk_settings: ChunkSettings, index_settings: IndexSettings, lexical_settings: LexicalSettings) -> Seen | None:
    """What an ingest of `paths` (files and folders as given) with these settings sees now; None when a path cannot
    be listed (the full check says why)."""
    settings = {"model": model_name, "fingerprint": fingerprint, "format": FORMAT_VERSION, "reader": READER_VERSION,
                "chunking": chunking_manifest(chunk_settings), "tokenizer": tokenizer_id(lexical_settings),
                "index": index_settings.as_manifest()}
    head: list[str] = [json.dumps([settings, os.getcwd()], sort_keys=True), "\n"]
    files: list[str] = []
    try:
        for given in paths:
            name = os.fspath(given)
            info = os.stat(name)
            if stat.S_ISDIR(info.st_mode):
                head.append(f"{name}\0{os.path.realpath(name)}\n")
                _list(name, files)
            else:
                files.append(_file(name, info))
        uploaded: list[str] = []
        if uploads.is_dir():
            _list(os.fspath(uploads), uploaded)
    except (OSError, RecursionError):  # RecursionError: a folder linked inside itself
        return None
    return Seen("".join(head), tuple(files), _sha256("uploads\n" + "".join(uploaded)))


def _list(folder: str, seen: list[str]) -> None:
    seen.extend(_file(entry.path, entry.stat()) for entry in entries_under(folder))


def _file(name: str, info: os.stat_result) -> str:
    # the file itself (a link pointing elsewhere is another file) with what tells a changed file
    return f"{name}\0{info.st_dev}\0{info.st_ino}\0{info.st_size}\0{info.st_mtime_ns}\n"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def remembers_an_ingest(index_dir: Path) -> bool:
    return (Path(index_dir) / SNAPSHOT).is_file()


def _last(index_dir: Path) -> dict | None:
    """What the last ingest remembered, when the generation it left is still live and whole."""
    try:
        last = json.loads((Path(index_dir) / SNAPSHOT).read_text())
        live = last["generation"]
        if live != current_generation_name(index_dir):
            return None
        folder = Path(index_dir) / live
        manifest = (folder / "manifest.json").read_bytes()
        if hashlib.sha256(manifest).hexdigest() != last["manifest"] or any(
                (folder / name).stat().st_size != entry["size"] for name, entry in json.loads(manifest)["files"].items()):
            return None
        return last
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recalled(index_dir: Path, seen: Seen | None) -> dict | None:
    """What the last ingest said, when it saw what is seen now and left the generation that is still live, whole."""
    last = _last(index_dir) if seen is not None else None
    return last["said"] if last is not None and last.get("digest") == seen.digest else None


def added_letters(index_dir: Path, seen: Seen | None) -> list[Path] | None:
    """The letter files that are new under the same paths since the last ingest, when nothing else changed: the same
    settings, folders and uploads, every file seen then still there unchanged, every new file a letter that is not
    another form of a publication seen then (`kst-1.xml` beside `kst-1.pdf` replaces it). None otherwise."""
    last = _last(index_dir) if seen is not None else None
    if last is None or (last.get("head"), last.get("uploads")) != (seen.head, seen.uploads):
        return None
    try:
        text = (Path(index_dir) / FILES).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    if _sha256(text) != last.get("files"):
        return None
    before = set(text.splitlines(keepends=True))
    if not before <= set(seen.files):
        return None  # a file changed, moved or went
    names = [line.split("\0", 1)[0] for line in seen.files if line not in before]
    if not names or not all(is_letter_file(Path(name)) for name in names):
        return None
    publications = {os.path.splitext(name)[0].lower() for name in names}
    folders = tuple({os.path.dirname(name) for name in names})
    if any(os.path.splitext(line.split("\0", 1)[0])[0].lower() in publications
           for line in before if line.startswith(folders)):
        return None
    return [Path(name) for name in names]


def remember(index_dir: Path, seen: Seen | None, said: dict) -> None:
    """Kept by the ingest that saw `seen`, under its lock, once its generation is live; without one (or when it cannot
    be kept) the next ingest checks in full."""
    path = Path(index_dir) / SNAPSHOT
    live = current_generation_name(index_dir)
    try:
        if seen is None or live is None:
            path.unlink(missing_ok=True)
            return
        write_atomically(Path(index_dir) / FILES, "".join(seen.files))  # before the snapshot that vouches for it
        manifest = hashlib.sha256((Path(index_dir) / live / "manifest.json").read_bytes()).hexdigest()
        write_atomically(path, json.dumps({"digest": seen.digest, "generation": live, "manifest": manifest, "said": said,
                                           "head": seen.head, "uploads": seen.uploads, "files": seen.files_digest}))
    except (OSError, ValueError):  # ValueError: a file name no encoding can write
        path.unlink(missing_ok=True)
