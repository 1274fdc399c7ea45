"""Whether anything changed since the last ingest of the same letters: the no-op of a ministry's archive in one pass
over its directory entries.

An ingest remembers (`last-ingest.json` in the index folder) a digest of what it was given and what it saw: the
working folder, the paths as given (a folder with where it leads), every file under them in the order the directory
lists them with its device, inode (a link pointing elsewhere is another file), size and modification time, the
letters uploaded into the index, and the model, reader, chunker, tokenizer and index settings it indexed with;
beside it, the generation it left live and what it said. The next ingest takes the same digest from the directory
entries alone (one `stat` a file: no `Path` objects, nothing hashed or read), and when it equals the remembered one,
that generation is still live, its manifest as it was and its files whole, it is done: nothing a full check would
look at has changed (it trusts size and modification time as make and git do, and as the full check does before it
hashes a file). Anything else, a path that is not there included, falls through to the full check of
`rag.index.ingest`, which says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Sequence

from rag.files import entries_under, write_atomically
from rag.index.chunking import chunking_manifest
from rag.index.folder import FORMAT_VERSION, current_generation_name
from rag.index.lexical import tokenizer_id
from rag.readers.document import READER_VERSION
from rag.settings import ChunkSettings, IndexSettings, LexicalSettings

SNAPSHOT = "last-ingest.json"


def seen_now(paths: Sequence[str | Path], uploads: Path, model_name: str, fingerprint: str,
             chunk_settings: ChunkSettings, index_settings: IndexSettings, lexical_settings: LexicalSettings) -> str | None:
    """What an ingest of `paths` (files and folders as given) with these settings sees now, as one digest; None when a
    path cannot be listed (the full check says why)."""
    settings = {"model": model_name, "fingerprint": fingerprint, "format": FORMAT_VERSION, "reader": READER_VERSION,
                "chunking": chunking_manifest(chunk_settings), "tokenizer": tokenizer_id(lexical_settings),
                "index": index_settings.as_manifest()}
    seen: list[str] = [json.dumps([settings, os.getcwd()], sort_keys=True), "\n"]
    try:
        for given in paths:
            name = os.fspath(given)
            info = os.stat(name)
            if stat.S_ISDIR(info.st_mode):
                seen.append(f"{name}\0{os.path.realpath(name)}\n")
                _list(name, seen)
            else:
                seen.append(_file(name, info))
        seen.append("uploads\n")
        if uploads.is_dir():
            _list(os.fspath(uploads), seen)
    except (OSError, RecursionError):  # RecursionError: a folder linked inside itself
        return None
    return hashlib.sha256("".join(seen).encode("utf-8", "surrogateescape")).hexdigest()


def _list(folder: str, seen: list[str]) -> None:
    seen.extend(_file(entry.path, entry.stat()) for entry in entries_under(folder))


def _file(name: str, info: os.stat_result) -> str:
    # the file itself (a link pointing elsewhere is another file) with what tells a changed file
    return f"{name}\0{info.st_dev}\0{info.st_ino}\0{info.st_size}\0{info.st_mtime_ns}\n"


def remembers_an_ingest(index_dir: Path) -> bool:
    return (Path(index_dir) / SNAPSHOT).is_file()


def recalled(index_dir: Path, seen: str | None) -> dict | None:
    """What the last ingest said, when it saw what is seen now and left the generation that is still live, whole."""
    if seen is None:
        return None
    try:
        last = json.loads((Path(index_dir) / SNAPSHOT).read_text())
        live = last["generation"]
        if last["digest"] != seen or live != current_generation_name(index_dir):
            return None
        folder = Path(index_dir) / live
        manifest = (folder / "manifest.json").read_bytes()
        if hashlib.sha256(manifest).hexdigest() != last["manifest"] or any(
                (folder / name).stat().st_size != entry["size"] for name, entry in json.loads(manifest)["files"].items()):
            return None
        return last["said"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(index_dir: Path, seen: str | None, said: dict) -> None:
    """Kept by the ingest that saw `seen`, under its lock, once its generation is live; without one (or when it cannot
    be kept) the next ingest checks in full."""
    path = Path(index_dir) / SNAPSHOT
    live = current_generation_name(index_dir)
    try:
        if seen is None or live is None:
            path.unlink(missing_ok=True)
            return
        manifest = hashlib.sha256((Path(index_dir) / live / "manifest.json").read_bytes()).hexdigest()
        write_atomically(path, json.dumps({"digest": seen, "generation": live, "manifest": manifest, "said": said}))
    except OSError:
        path.unlink(missing_ok=True)
