"""File helpers shared by the model cache, the readers and the index."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Path, text: str) -> None:
    """`text` in `path`, written beside it and moved into place: a reader sees the old file or the new, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def entries_under(folder: str) -> Iterator[os.DirEntry]:
    """Every entry that is not a folder, in a folder and its subfolders, as the directories list them (no call per
    file to ask what it is; a linked folder is followed)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                yield from entries_under(entry.path)
            else:
                yield entry


def built_once(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, built on first use: `build` writes a staging file beside it, which is then moved into place
    atomically, so that a process killed while building, or two building at once, never leave half a file."""
    if target.exists():
        return target
    staging = target.with_name(f".{target.stem}.{os.getpid()}-{time.time_ns()}{target.suffix}")
    try:
        build(staging)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


class NpyRows:
    """Rows of 2-D .npy files read on demand with pread: the process holds only the rows it asked for. Several
    files (a generation's segments) read as one, their rows numbered on from one file to the next.

    A memory map would do the same work, but every page it ever touched stays in the process's resident
    memory until the system needs it back; a server's memory should show what it holds, not what it read.
    """

    def __init__(self, *paths: Path) -> None:
        import numpy as np

        self._parts: list[tuple[int, int, int, int]] = []  # descriptor, data offset, first row, rows
        self.shape, self.dtype = (0, 0), np.dtype(np.float32)
        total = 0
        for number, path in enumerate(paths):
            with path.open("rb") as handle:
                version = np.lib.format.read_magic(handle)
                header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = header(handle)
                offset = handle.tell()
            if fortran or len(shape) != 2 or (number and (shape[1], dtype) != (self.shape[1], self.dtype)):
                self.close()
                raise ValueError(f"{path}: not a C-ordered 2-D array like the others")
            self.shape, self.dtype = (total + shape[0], shape[1]), dtype
            self._parts.append((os.open(path, os.O_RDONLY), offset, total, shape[0]))
            total += shape[0]
        self.row_bytes = self.shape[1] * self.dtype.itemsize

    def __del__(self) -> None:
        # A server drops a generation when a newer one goes live; its files may be deleted by then.
        if getattr(self, "_parts", None):
            self.close()

    def __len__(self) -> int:
        return self.shape[0]

    def block(self, start: int, stop: int):
        """Rows start..stop (a contiguous block, one read per file it spans)."""
        import numpy as np

        pieces = []
        for descriptor, offset, first, rows in self._parts:
            low, high = max(start, first), min(stop, first + rows)
            if low < high:
                pieces.append(os.pread(descriptor, (high - low) * self.row_bytes, offset + (low - first) * self.row_bytes))
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        return np.frombuffer(data, dtype=self.dtype).reshape(max(0, stop - start), self.shape[1])

    def take(self, rows):
        """Rows by index, in the order given (one read per run of adjacent rows)."""
        import numpy as np

        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        if len(unique) and (unique[0] < 0 or unique[-1] >= len(self)):
            raise IndexError(f"rows {unique[0]}..{unique[-1]} asked of {len(self)}")
        runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1) if len(unique) else []
        found = np.concatenate([self.block(int(run[0]), int(run[-1]) + 1) for run in runs]) if runs else \
            np.zeros((0, self.shape[1]), dtype=self.dtype)
        return found[inverse.reshape(np.shape(rows))]

    def __getitem__(self, index):
        """Rows as numpy indexes them: one (an int), a slice, or many (an array of row numbers)."""
        import numpy as np

        if isinstance(index, (int, np.integer)):
            row = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"row {index} asked of {len(self)}")
            return self.block(row, row + 1)[0]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            return self.block(start, stop) if step == 1 else self.take(np.arange(start, stop, step))
        return self.take(index)

    def __array__(self, dtype=None, copy=None):
        rows = self.block(0, len(self))
        return rows if dtype is None else rows.astype(dtype)

    def close(self) -> None:
        parts, self._parts = self._parts, []
        for descriptor, *_ in parts:
            os.close(descriptor)
