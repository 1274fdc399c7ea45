"""A corpus dump of parliamentary documents (JSON lines of {"URL", "Content"}, as the Staten-Generaal Digitaal dump,
.gz too) as letter files: what `rag bench --corpus` scales on and `rag eval --distractors` crowds the eval with."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from rag.errors import InputError


def corpus_letters(corpus: Path, folder: Path, limit: int | None = None) -> list[Path]:
    """One text letter per distinct document of the corpus (the dump holds many documents several times),
    in corpus order, at most `limit`."""
    if not corpus.is_file():
        raise InputError(f"{corpus}: no such corpus file; give a .jsonl or .jsonl.gz of {{\"URL\", \"Content\"}} objects")
    folder.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if corpus.suffix == ".gz" else open
    seen: set[str] = set()
    files: list[Path] = []
    try:
        with opener(corpus, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if limit is not None and len(files) >= limit:
                    break
                try:
                    record = json.loads(line)
                    url, content = record["URL"], record["Content"]
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"{corpus}, line {number}: not a {{\"URL\", \"Content\"}} object") from None
                key = re.sub(r"[^0-9A-Za-z]+", "-", url.rstrip("/").removesuffix("/ocr").rsplit("/", 1)[-1]).strip("-")
                if key in seen or not content.strip():
                    continue
                seen.add(key)
                path = folder / f"sgd-{key}.txt"
                path.write_text(content, encoding="utf-8")
                files.append(path)
    except (OSError, EOFError) as error:
        raise InputError(f"{corpus}: cannot read it ({error}); check the file") from None
    if not files:
        raise InputError(f"{corpus}: no document with text in it; give a corpus of {{\"URL\", \"Content\"}} objects")
    return files
