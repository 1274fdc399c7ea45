"""Writing a generation and making it live: crash-safe, one writer at a time.

A generation is written beside the live one in a staging folder (`segments` writes its files: the
new letters appended as a segment, or everything merged into one), fsynced, checked as a server
will read it, renamed, and made live by replacing CURRENT atomically; the previous generation stays
on disk for the readers of the old pointer, older ones are removed when no server holds them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from pathlib import Path

from rag.errors import RagError
from rag.index.folder import POINTER, current_generation_name
from rag.index.segments import (Carried, NewLetters, appendable, check_appended, fault_point, write_appended,
                                write_merged)
from rag.index.store import UnusableIndex, opened
from rag.settings import ChunkSettings, IndexSettings, LexicalSettings

def fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_generation(index_dir: Path, carried: Carried | None, new: NewLetters, model: dict,
                     chunk_settings: ChunkSettings, index_settings: IndexSettings, fault: str = "",
                     unreadable: dict[str, dict] | None = None,
                     lexical_settings: LexicalSettings = LexicalSettings()) -> dict:
    """Write and switch to a generation of the carried letters followed by the new ones; its manifest."""
    name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = index_dir / f".{name}.partial"
    try:
        staging.mkdir()
        appended = appendable(carried, new, index_settings)
        if appended:
            manifest, segment = write_appended(staging, carried, new, fault, unreadable or {}, lexical_settings)
            _fsync_tree(staging / segment)
            for folder in [staging, *(path for path in staging.rglob("*") if path.is_dir())]:
                fsync_folder(folder)  # the links' entries (their files were made durable by the ingest that wrote them)
        else:
            manifest = write_merged(staging, carried, new, model, chunk_settings, index_settings, fault,
                                    unreadable or {}, lexical_settings)
            _fsync_tree(staging)
    except OSError as error:  # a full disk, a quota, a folder gone read-only: the live index is untouched
        shutil.rmtree(staging, ignore_errors=True)
        raise RagError(f"cannot write the new index in {index_dir} ({error.strerror or type(error).__name__}); "
                       f"free space or fix the folder and run `rag ingest` again; the index in use is unchanged") from None
    try:
        if appended:
            check_appended(staging, manifest)
        else:
            _check_before_going_live(staging, manifest, index_settings)
        staging.rename(index_dir / name)
        fsync_folder(index_dir)
        fault_point(fault, "before-pointer-switch")
        previous = current_generation_name(index_dir)
        _switch_pointer(index_dir, name)
        fault_point(fault, "after-pointer-switch")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # The previous generation stays: a reader that read the old pointer can still open all its files.
    _remove_old_generations(index_dir, keep={name, previous})
    return manifest


def _check_before_going_live(staging: Path, manifest: dict, index_settings: IndexSettings) -> None:
    """Load the new generation as a server will and check it: one that fails is never made current."""
    try:
        opened(staging, manifest, index_settings, "the new index is inconsistent", "run `rag ingest` again").close()
    except UnusableIndex as problem:
        raise RagError(f"the new index was not made live, the index in use is unchanged: {problem}") from None


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_folder(path)


def _switch_pointer(index_dir: Path, name: str) -> None:
    temporary = index_dir / f".{POINTER}.{uuid.uuid4().hex[:8]}"
    temporary.write_text(name + "\n")
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, index_dir / POINTER)
    fsync_folder(index_dir)


def _remove_old_generations(index_dir: Path, keep: set[str | None]) -> None:
    for path in index_dir.iterdir():
        stale_build = path.name.startswith("gen-") and path.name not in keep and not _in_use(path)
        leftover = path.name.startswith(".gen-") or path.name.startswith(f".{POINTER}.")
        if path.is_dir() and (stale_build or leftover):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and leftover:
            path.unlink(missing_ok=True)


def _in_use(folder: Path) -> bool:
    """Whether a serving process still holds this generation (its shared lock on the manifest, `store.Generation`)."""
    try:
        with (folder / "manifest.json").open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
