"""The assembled pipeline: model and index loaded once, shared by the CLI, the UI and the evaluation."""

from __future__ import annotations

import logging
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Sequence

from rag import config
from rag.answer.extractive import Answer, Calibration, extractive_answer
from rag.index.chunking import ChunkSettings
from rag.search.conversation import Conversation
from rag.readers.document import read_document
from rag.readers import letter_paths
from rag.embed.model import Embedder, load_embedder, model_fingerprint
from rag.errors import InputError, RagError
from rag.answer.generated import Endpoint, generated_answer
from rag.index.ingest import IngestSummary, ingest
from rag.search.retrieval import Filters, Hit, Query, RetrievalSettings, rank, understand
from rag.index.store import Generation, check_compatible, current_generation_name, load_index, read_manifest
from rag.index.vector_index import IndexSettings

log = logging.getLogger("rag.serve.pipeline")
History = Sequence[str] | Conversation


def check_question(question: str) -> str:
    question = " ".join(question.split())
    if not question:
        raise InputError("De vraag is leeg; typ een vraag, bijvoorbeeld \"Wat zei Nederland over China?\"")
    if len(question) > config.MAX_QUESTION_CHARS:
        raise InputError(f"De vraag is {len(question)} tekens lang; houd hem onder de {config.MAX_QUESTION_CHARS} tekens")
    return question


def check_k(k: int) -> int:
    if k < 1:
        raise InputError(f"-k must be at least 1 (got {k})")
    return k


def parse_filters(doc_ids: Sequence[str] = (), since: str | None = None, until: str | None = None,
                  dossier: str | None = None, ministry: str | None = None, kind: str | None = None) -> Filters:
    # Shown in the chat page and the API as well as on the command line, so in Dutch.
    for value in (since, until):
        if value:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise InputError(f"{value!r} is geen datum; schrijf JJJJ-MM-DD, bijvoorbeeld 2021-03-24") from None
    if since and until and since > until:
        raise InputError(f"de begindatum {since} ligt na de einddatum {until}")
    if dossier and not re.fullmatch(r"\d{2}\s?\d{3}(?:[-\s]?[A-Za-z0-9]{1,4})?", dossier.strip()):
        raise InputError(f"{dossier!r} is geen dossiernummer; schrijf bijvoorbeeld 28676 of 21501-02")
    return Filters(tuple(doc_ids), since, until, (dossier or "").strip() or None, (ministry or "").strip() or None,
                   (kind or "").strip() or None)


def run_ingest(
    paths: Sequence[str | Path] = (),
    index_dir: Path = config.DEFAULT_INDEX,
    model_name: str | None = None,
    model_dir: Path | None = None,
    index_settings: IndexSettings = IndexSettings(),
    chunk_settings: ChunkSettings = ChunkSettings(),
    embedder: Embedder | None = None,
    progress: bool = False,
    ray_address: str | None = None,
) -> IngestSummary:
    """Ingest letters (default: seeds/); the model is loaded only when something must be embedded.

    With `ray_address` ("local" for a Ray instance on this machine) the embedding runs on a Ray cluster.
    """
    model_name = model_name or config.model_name()
    # Letters first: a wrong path is reported before the model is looked up (or built).
    files = letter_paths(list(paths) or [config.DEFAULT_SEEDS])
    fingerprint = model_fingerprint(model_name, model_dir)

    def embed(texts: list[str], sentence_spans: list[list[tuple[int, int]]]):
        if ray_address is not None:
            from rag.embed.cluster import ray_passage_batches

            return ray_passage_batches(ray_address, model_name, fingerprint, texts, sentence_spans, progress)
        return (embedder or load_embedder(model_name, model_dir)).passage_batches(texts, sentence_spans, progress=progress)

    return ingest(files, Path(index_dir), model_name, fingerprint, embed, chunk_settings, index_settings)


class Busy(RagError):
    """Every answer slot is taken and the queue is full: the caller should try again in a moment."""


class AnswerSlots:
    """One concurrency group for everything that answers (chat, buttons, API): as many answers at once
    as there are cores, and a bounded queue behind them; past that, Busy at once instead of a long wait."""

    def __init__(self, slots: int = config.ANSWER_SLOTS, queue: int = config.ANSWER_QUEUE) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self.queue = queue

    def __enter__(self) -> "AnswerSlots":
        if self._slots.acquire(blocking=False):
            return self
        with self._lock:
            if self._waiting >= self.queue:
                raise Busy("het is te druk: alle plaatsen in de wachtrij zijn bezet; probeer het over enkele seconden opnieuw")
            self._waiting += 1
        try:
            self._slots.acquire()
        finally:
            with self._lock:
                self._waiting -= 1
        return self

    def __exit__(self, *exc) -> None:
        self._slots.release()


@dataclass
class Pipeline:
    embedder: Embedder
    index: Generation
    index_dir: Path
    notes: list[str] = field(default_factory=list)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    endpoint: Endpoint | None = field(default_factory=Endpoint.from_environment)  # None: extractive answers
    calibration: Calibration | None = None  # None: the one stored for the model
    slots: AnswerSlots = field(default_factory=AnswerSlots, repr=False)
    _refused: str | None = field(default=None, repr=False)  # a new generation that could not be loaded
    _watching: threading.Event | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.calibration = self.calibration or Calibration.for_model(self.embedder.name)

    def query(self, question: str, filters: Filters = Filters(), history: History = ()) -> Query:
        """The question as retrieval reads it; `history` holds the earlier questions (or a chat's resolved turns)."""
        conversation = history if isinstance(history, Conversation) else Conversation.from_questions(history)
        turn = conversation.resolve(check_question(question))
        return understand(turn, self.index, filters, self.retrieval)

    def search(self, question: str, k: int = 5, filters: Filters = Filters(), history: History = ()) -> list[Hit]:
        return self.search_query(self.query(question, filters, history), k)

    @property
    def answer_mode_label(self) -> str:
        if self.endpoint is None:
            return "extractief (letterlijke citaten, zonder taalmodel)"
        return f"gegenereerd door {self.endpoint.model}, elke [n] gecontroleerd op de brieven"

    def ask(self, question: str, filters: Filters = Filters(), history: History = (), k: int = 6) -> Answer:
        return self.answer_query(self.query(question, filters, history), k)

    def answer_query(self, query: Query, k: int = 6) -> Answer:
        """The answer; the question is embedded once and scored by BM25 once, nothing else is embedded."""
        index = self.index  # one generation for the whole answer, even when a newer one goes live meanwhile
        vector = self.embedder.encode_queries([query.text])[0]
        hits = rank(index, query, vector, check_k(k), self.retrieval)
        answer = extractive_answer(query.text, hits, index, vector, self.calibration, notes=query.notes)
        if self.endpoint is not None:
            texts = {hit.doc_id: index.document(hit.doc_id).text for hit in hits}
            answer = generated_answer(self.endpoint, query.text, hits, texts, answer)
        return replace(answer, question=query.question)  # answered as resolved, recorded as asked

    def search_query(self, query: Query, k: int = 5) -> list[Hit]:
        vector = self.embedder.encode_queries([query.text])[0] if self.retrieval.mode != "lexical" else None
        return rank(self.index, query, vector, check_k(k), self.retrieval)

    # --- letters added and removed while serving --------------------------------------------

    def add_letters(self, files: Sequence[Path], progress: bool = False) -> IngestSummary:
        """Ingest these letter files beside the ones indexed now, and serve the result at once."""
        return self._reindex([*self.index.letter_files, *map(Path, files)], progress)

    def remove_letter(self, doc_id: str) -> IngestSummary:
        """The index without this letter (its file stays where it is), served at once."""
        letter = self.index.letter(doc_id)
        if letter is None:
            raise InputError(f"onbekende brief {doc_id!r}")
        remaining = [path for path in self.index.letter_files if path != config.PROJECT_ROOT / letter.source]
        if not remaining:
            raise InputError("dit is de laatste brief in de index; voeg eerst een andere toe")
        return self._reindex(remaining, progress=False)

    def _reindex(self, files: list[Path], progress: bool) -> IngestSummary:
        settings = IndexSettings.from_manifest(self.index.manifest["index"]["settings"])  # the index type the index has
        summary = run_ingest(files, self.index_dir, self.embedder.name, index_settings=settings, embedder=self.embedder,
                             progress=progress)
        self.refresh()
        return summary

    # --- live index updates ---------------------------------------------------------------

    def refresh(self) -> bool:
        """Switch to the generation `rag ingest` made live since; True when it did.

        Requests in flight keep the generation they started with (`answer_query` holds it), and
        an ingest keeps the previous generation on disk, so nothing they read disappears.
        """
        live = current_generation_name(self.index_dir)
        if live is None or live in (self.index.folder.name, self._refused):
            return False
        try:
            self.index = load_index(self.index_dir, self.embedder.name, self.embedder.fingerprint)
        except RagError as error:
            self._refused = live  # said once; the old generation keeps answering
            log.warning("not switching to the new index generation %s: %s", live, error)
            return False
        log.warning("switched to the new index generation %s: %s", self.index.folder.name, self.counts_line())
        return True

    def watch(self, interval_s: float = 1.0) -> threading.Event:
        """Check for a new generation every `interval_s` in the background (once per pipeline); set the returned
        event to stop."""
        if self._watching is not None and not self._watching.is_set():
            return self._watching
        stop = self._watching = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # a watcher that dies would freeze the served index without a word
                    log.exception("checking for a new index generation failed")

        threading.Thread(target=loop, name="rag-index-watch", daemon=True).start()
        return stop

    def counts_line(self) -> str:
        counts = self.index.manifest["counts"]
        return f"{counts['letters']} brieven · {counts['chunks']} passages"


def store_letters(files: list[Path], folder: Path) -> list[Path]:
    """Uploaded letters, checked (type, size, readable) and stored in the data folder."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for file in files:
        name = Path(file.name).name
        if Path(name).suffix.lower() not in config.UPLOAD_TYPES:
            raise InputError(f"{name}: alleen PDF, XML of tekst (.pdf, .xml, .txt) kan worden toegevoegd")
        if file.stat().st_size > config.MAX_UPLOAD_BYTES:
            raise InputError(f"{name}: groter dan {config.MAX_UPLOAD_BYTES // 2**20} MB")
        target = folder / name
        shutil.copyfile(file, target)
        try:
            read_document(target)
        except RagError as error:
            target.unlink(missing_ok=True)
            raise InputError(f"{name} is niet te lezen als brief ({error})") from None
        saved.append(target)
    return saved


def open_pipeline(
    index_dir: Path = config.DEFAULT_INDEX,
    model_name: str | None = None,
    model_dir: Path | None = None,
    device: str | None = None,
) -> Pipeline:
    """Load the model and the index; build the index from seeds/ when there is none yet."""
    index_dir = Path(index_dir)
    model_name = model_name or config.model_name()
    endpoint = Endpoint.from_environment()  # a wrong setting is said before seconds go into loading
    manifest = read_manifest(index_dir)
    if manifest is not None:
        check_compatible(manifest, index_dir, model_name, None, ChunkSettings())  # a foreign index before the model
    # Questions are embedded one at a time: one thread each, as many at once as the server allows.
    embedder = load_embedder(model_name, model_dir, device, threads=config.QUERY_THREADS)
    notes = []
    if manifest is None:
        summary = run_ingest([config.DEFAULT_SEEDS], index_dir, model_name, model_dir)
        notes.append(f"no index in {index_dir}; built one from seeds/: {summary.line()}")
        print(f"rag: {notes[-1]}", file=sys.stderr)
    index = load_index(index_dir, model_name, embedder.fingerprint)
    return Pipeline(embedder, index, index_dir, notes, endpoint=endpoint)


def open_eval_pipeline(index_dir: Path = config.EVAL_INDEX, model_name: str | None = None,
                       model_dir: Path | None = None) -> Pipeline:
    """The pipeline `rag eval` measures: the seeds and the real letters of eval/letters/ in one index,
    brought up to date first (nothing is embedded again when nothing changed)."""
    model_name = model_name or config.model_name()
    embedder = load_embedder(model_name, model_dir)
    summary = run_ingest([config.DEFAULT_SEEDS, config.EVAL_LETTERS], index_dir, model_name, model_dir, embedder=embedder)
    for warning in summary.warnings:
        log.info("eval letters: %s", warning)
    return Pipeline(embedder, load_index(index_dir, model_name, embedder.fingerprint), Path(index_dir))


def variant(pipeline: Pipeline, chunk_settings: ChunkSettings, retrieval: RetrievalSettings, work_dir: Path) -> Pipeline:
    """The same letters and model under other settings (for `rag eval --compare`)."""
    if chunk_settings == ChunkSettings():
        return Pipeline(pipeline.embedder, pipeline.index, pipeline.index_dir, retrieval=retrieval)
    index_dir = work_dir / f"index-{chunk_settings.strategy}-{chunk_settings.max_chars}-{chunk_settings.overlap_chars}"
    run_ingest(pipeline.index.letter_files, index_dir, pipeline.embedder.name, chunk_settings=chunk_settings, embedder=pipeline.embedder)
    index = load_index(index_dir, pipeline.embedder.name, pipeline.embedder.fingerprint, chunk_settings)
    return Pipeline(pipeline.embedder, index, index_dir, retrieval=retrieval)
