"""The pipeline facade: the model and the live index generation loaded once, and the library functions
the CLI, the chat page, the HTTP API and the evaluation all call (`ask`, `search`, `run_ingest`)."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rag.answer.extractive import Answer, Calibration, Evidence, extractive_answer, score_sentences, weigh_evidence
from rag.answer.scorer import LearnedScorer
from rag.answer.generated import generated_answer, generated_answer_stream
from rag.embed.model import Embedder, load_embedder, model_fingerprint
from rag.embed.reranker import SentenceReranker
from rag.errors import InputError, RagError
from rag.index import unchanged
from rag.index.folder import check_compatible, current_generation_name, read_manifest
from rag.index.ingest import UPLOADS, IngestSummary, ingest, uploaded_letters
from rag.index.store import Generation, load_index
from rag.readers import letter_paths
from rag.search.conversation import Conversation
from rag.search.retrieval import Filters, Hit, Query, allowed_rows, rank, understand
from rag.serve.slots import AnswerSlots
from rag.serve.uploads import Upload, forget, store_letters
from rag.settings import DEFAULT_INDEX, DEFAULT_SEEDS, PROJECT_ROOT, RetrievalSettings, Settings, display_path, from_environment

log = logging.getLogger("rag.serve.pipeline")
History = Sequence[str] | Conversation


def check_question(question: str, most: int = RetrievalSettings.max_question_chars) -> str:
    question = " ".join(question.split())
    if not question:
        raise InputError("De vraag is leeg; typ een vraag, bijvoorbeeld \"Wat zei Nederland over China?\"")
    if len(question) > most:
        raise InputError(f"De vraag is {len(question)} tekens lang; houd hem onder de {most} tekens")
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
    index_dir: Path = DEFAULT_INDEX,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    progress: bool = False,
    ray_address: str | None = None,
) -> IngestSummary:
    """Ingest letters (default: seeds/); the model is loaded only when something must be embedded.

    With `ray_address` ("local" for a Ray instance on this machine) the embedding runs on a Ray cluster.
    """
    settings = settings or from_environment()
    given = list(paths) or [DEFAULT_SEEDS]
    # Letters first: a wrong path is reported before the model is looked up (or built). An index an ingest has
    # written knows its model, and an archive ingested into it again unchanged, or with letter files added, is
    # answered from its directory entries, before its letters are listed.
    started = time.perf_counter()
    files = None if unchanged.remembers_an_ingest(index_dir) else letter_paths(given)
    added = None
    fingerprint = model_fingerprint(settings.model)
    seen = unchanged.seen_now(given, Path(index_dir) / UPLOADS, settings.model.name, fingerprint, settings.chunking,
                              settings.index, settings.lexical)
    if files is None:
        if (said := unchanged.recalled(index_dir, seen)) is not None:
            return IngestSummary.recalled(said, time.perf_counter() - started)
        added = unchanged.added_letters(index_dir, seen)
        files = letter_paths(given) if added is None else added

    def embed(texts: list[str], sentence_spans: list[list[tuple[int, int]]]):
        if ray_address is not None:
            from rag.embed.cluster import ray_passage_batches

            return ray_passage_batches(ray_address, settings.model, fingerprint, texts, sentence_spans, progress)
        return (embedder or load_embedder(settings.model)).passage_batches(texts, sentence_spans, progress=progress)

    return ingest(files, Path(index_dir), settings.model.name, fingerprint, embed, settings.chunking, settings.index,
                  settings.fault, lexical_settings=settings.lexical, seen=seen, added_only=added is not None)


@dataclass
class Pipeline:
    embedder: Embedder
    generation: Generation  # the index generation being served
    index_dir: Path
    settings: Settings = field(default_factory=Settings)
    notes: list[str] = field(default_factory=list)
    calibration: Calibration | None = None  # None: the one stored for the model
    slots: AnswerSlots | None = field(default=None, repr=False)  # None: as many as the serve settings say
    _refused: str | None = field(default=None, repr=False)  # a new generation that could not be loaded
    _watching: threading.Event | None = field(default=None, repr=False)
    _changing: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one index change at a time
    scorer: LearnedScorer | None = field(default=None, init=False, repr=False)  # from the answer settings
    reranker: SentenceReranker | None = field(default=None, init=False, repr=False)  # likewise

    def __post_init__(self) -> None:
        self.calibration = self.calibration or Calibration.for_model(self.embedder.question_encoder, self.settings.answer)
        answer = self.settings.answer
        self.scorer = (LearnedScorer.for_model(self.embedder.question_encoder, answer.scorer_file)
                       if answer.scorer == "learned" else None)
        self.reranker = SentenceReranker.for_embedder(self.embedder, answer)
        serve = self.settings.serve
        self.slots = self.slots or AnswerSlots(serve.answer_slots, serve.answer_queue, serve.answer_wait_s)

    @property
    def retrieval(self):
        return self.settings.retrieval

    @property
    def endpoint(self):
        return self.settings.endpoint

    def query(self, question: str, filters: Filters = Filters(), history: History = ()) -> Query:
        """The question as retrieval reads it; `history` holds the earlier questions (or a chat's resolved turns)."""
        conversation = history if isinstance(history, Conversation) else Conversation.from_questions(history, self.retrieval)
        turn = conversation.resolve(check_question(question, self.retrieval.max_question_chars))
        return understand(turn, self.generation, filters, self.retrieval)

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
        index, hits, answer = self._extractive(query, k)
        if self.endpoint is not None:
            texts = {hit.doc_id: index.document(hit.doc_id).text for hit in hits}
            answer = generated_answer(self.endpoint, query.text, hits, texts, answer)
        return replace(answer, question=query.question)  # answered as resolved, recorded as asked

    def answer_stream(self, query: Query, k: int = 6) -> Iterator[str | Answer]:
        """The answer's text as it comes (a generated answer sentence by sentence as the endpoint writes and each is
        checked, an extractive one line by line), then the whole Answer."""
        index, hits, answer = self._extractive(query, k)
        if self.endpoint is None or answer.abstained:
            lines = answer.text.split("\n")
            yield from (line + ("\n" if number < len(lines) - 1 else "") for number, line in enumerate(lines))
            yield replace(answer, question=query.question)
            return
        texts = {hit.doc_id: index.document(hit.doc_id).text for hit in hits}
        for part in generated_answer_stream(self.endpoint, query.text, hits, texts, answer):
            yield replace(part, question=query.question) if isinstance(part, Answer) else part

    def evidence(self, query: Query, k: int = 6) -> Evidence:
        """How well the letters searched answer the query, weighed as the extractive answer weighs it (what the
        abstention thresholds are calibrated on)."""
        index, vector, hits, allowed = self._retrieved(query, k)
        scored = score_sentences(query.text, hits, index, vector, self.settings.answer, self.scorer)
        return weigh_evidence(query.text, scored, index, vector, self.scorer, allowed)

    def _extractive(self, query: Query, k: int) -> tuple[Generation, list[Hit], Answer]:
        index, vector, hits, allowed = self._retrieved(query, k)
        answer = extractive_answer(query.text, hits, index, vector, self.calibration, self.settings.answer,
                                   notes=query.notes, scorer=self.scorer, allowed=allowed, reranker=self.reranker)
        return index, hits, answer

    def _retrieved(self, query: Query, k: int) -> tuple[Generation, np.ndarray, list[Hit], np.ndarray | None]:
        """The passages an answer reads, with the question's vector and the mask of the letters searched."""
        index = self.generation  # one generation for the whole answer, even when a newer one goes live meanwhile
        vector = self.embedder.encode_queries([query.text])[0]
        hits = rank(index, query, vector, check_k(k), self.retrieval)
        allowed = allowed_rows(index, query.filters) if query.filters.active else None
        return index, vector, hits, allowed

    def search_query(self, query: Query, k: int = 5) -> list[Hit]:
        vector = self.embedder.encode_queries([query.text])[0] if self.retrieval.mode != "lexical" else None
        return rank(self.generation, query, vector, check_k(k), self.retrieval)

    # --- letters added and removed while serving --------------------------------------------

    @property
    def uploads(self) -> Path:
        """Where letters added in the chat page are kept: inside the index folder, so every ingest keeps them."""
        return self.index_dir / UPLOADS

    def add_letters(self, progress: bool = False) -> IngestSummary:
        """Index the letters stored in `uploads` beside the ones indexed now, and serve the result at once."""
        with self._changing:
            return self._reindex(frozenset(), progress)

    def upload_letters(self, files: list[Path], names: list[str], progress: bool = False) -> tuple[list[Upload], IngestSummary]:
        """Keep uploaded files among the index's uploads (`rag.serve.uploads`), each under an id no letter has, and
        index them beside the letters indexed now; an upload that cannot be read leaves nothing behind."""
        with self._changing:
            stored = store_letters(files, self.uploads, self.settings.serve, self._indexed_hash, names)
            fresh = [upload.path for upload in stored if not upload.already]
            try:
                summary = self._reindex(frozenset(), progress, frozenset(fresh))
            except BaseException:
                forget(fresh)
                raise
            forget([path for path in fresh if path in summary.skipped_files])
            return stored, summary

    def index_cut_off_uploads(self) -> IngestSummary | None:
        """Letters uploaded before the server stopped halfway through indexing them: indexed now (the summary's
        warnings name them); None when there are none."""
        indexed = {letter.source for letter in self.generation.letters}
        if all(display_path(path) in indexed for path in uploaded_letters(self.index_dir)):
            return None
        return self.add_letters()

    def _indexed_hash(self, doc_id: str) -> str | None:
        document = self.generation.document(doc_id)
        return document.content_hash if document is not None else None

    def remove_letter(self, doc_id: str) -> IngestSummary:
        """The index without this letter, served at once; the file of an uploaded letter goes too (it is ours),
        any other letter's file stays where it is."""
        with self._changing:
            letter = self.generation.letter(doc_id)
            if letter is None:
                raise InputError(f"onbekende brief {doc_id!r}")
            if len(self.generation.letters) == 1:
                raise InputError("dit is de laatste brief in de index; voeg eerst een andere toe")
            stored = PROJECT_ROOT / letter.source
            if self.uploads.resolve() in stored.resolve().parents:
                # First: a stop in between leaves the letter in the index as stored, not an upload that comes back.
                stored.unlink(missing_ok=True)
            return self._reindex(frozenset({doc_id}), progress=False)

    def _reindex(self, exclude: frozenset[str], progress: bool, fresh: frozenset[Path] = frozenset()) -> IngestSummary:
        """The index as it stands on disk now (read under the ingest lock, so an ingest elsewhere is never undone),
        with the uploads and without `exclude`; a server waits its turn behind a running `rag ingest`."""
        index_settings = self.settings.index.from_manifest(self.generation.manifest["index"]["settings"])
        settings = replace(self.settings, index=index_settings)  # the index type the index has
        fingerprint = self.embedder.fingerprint
        summary = ingest(None, self.index_dir, self.embedder.name, fingerprint,
                         lambda texts, spans: self.embedder.passage_batches(texts, spans, progress=progress),
                         settings.chunking, settings.index, settings.fault, exclude=exclude, wait=True,
                         lexical_settings=settings.lexical, fresh_uploads=fresh)
        self._switch()
        return summary

    # --- live index updates ---------------------------------------------------------------

    def refresh(self) -> bool:
        """Switch to the generation `rag ingest` made live since; True when it did.

        Requests in flight keep the generation they started with (`answer_query` holds it), and a generation
        stays on disk as long as a process serves it, so nothing they read disappears.
        """
        with self._changing:
            return self._switch()

    def _switch(self) -> bool:
        live = current_generation_name(self.index_dir)
        if live is None or live in (self.generation.folder.name, self._refused):
            return False
        try:
            self.generation = self._load()
        except RagError as error:
            self._refused = live  # said once; the old generation keeps answering
            log.warning("not switching to the new index generation %s: %s", live, error)
            return False
        log.warning("switched to the new index generation %s: %s", self.generation.folder.name, self.counts_line())
        return True

    def _load(self) -> Generation:
        return load_index(self.index_dir, self.embedder.name, self.embedder.fingerprint, self.settings.chunking,
                          self.settings.index, self.settings.lexical)

    def watch(self) -> threading.Event:
        """Check for a new generation every `watch_interval_s` in the background (once per pipeline); set the
        returned event to stop."""
        interval_s = self.settings.serve.watch_interval_s
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
        counts = self.generation.manifest["counts"]
        return f"{counts['letters']} brieven · {counts['chunks']} passages"


def open_pipeline(
    index_dir: Path = DEFAULT_INDEX,
    model_name: str | None = None,
    model_dir: Path | None = None,
    device: str | None = None,
    settings: Settings | None = None,
) -> Pipeline:
    """Load the model and the index; build the index from seeds/ when there is none yet. Without `settings`, they
    are read from the environment (a wrong one is said before seconds go into loading); the model arguments
    override them, as the command line's options do."""
    settings = settings or from_environment()
    settings = replace(settings, model=settings.model.with_choice(model_name, model_dir, device))
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    if manifest is not None:  # a foreign index is refused before the model is loaded
        check_compatible(manifest, index_dir, settings.model.name, None, settings.chunking, settings.lexical)
    # Questions are embedded one at a time: one thread each, as many at once as the server allows.
    embedder = load_embedder(settings.model, threads=settings.model.query_threads)
    notes = []
    if manifest is None:
        summary = run_ingest([DEFAULT_SEEDS], index_dir, settings)
        notes.append(f"no index in {index_dir}; built one from seeds/: {summary.line()}")
        print(f"rag: {notes[-1]}", file=sys.stderr)
    generation = load_index(index_dir, settings.model.name, embedder.fingerprint, settings.chunking, settings.index,
                            settings.lexical)
    return Pipeline(embedder, generation, index_dir, settings, notes)
