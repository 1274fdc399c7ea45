"""`rag train`, assembled: what the project learns, from data that is not the eval's.

1. The question tower (`rag.embed.tower`): the training letters of `eval/training/` indexed with the plain model,
   each question in users' words (and each of parliament's own questions those letters answer under a "Vraag"
   heading) scored against today's top passages and the sentences an answer reads; fitted with the eval's dev
   questions to choose the epoch, never its test split.
2. The learned answer scorer (`rag.answer.training`), fitted for the question encoder in use: on the training
   questions, each asked with its letter and again without it, on the near-topic questions the training letters do
   not answer, on off-topic questions and, when the corpus is at hand, on its answers to Kamervragen.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.answer.extractive import score_sentences
from rag.answer.training import (OFF_TOPIC, asked_of_pairs, background_of, corpus_letters, examples, qa_pairs, train,
                                 write_scorer)
from rag.answer.training_data import check_questions, data_files, load_training_data, section_pairs, write_letters
from rag.embed.model import load_embedder, resolve_model
from rag.embed.reranker_training import RerankerExample, train_reranker
from rag.embed.tower import tower_id, write_updates
from rag.embed.tower_training import TowerData, TowerExample, train_tower
from rag.errors import InputError
from rag.evaluation.dataset import load_questions, locate
from rag.files import file_sha256
from rag.index.store import Generation, load_index
from rag.search.retrieval import Filters, rank
from rag.serve.pipeline import Pipeline, run_ingest
from rag.settings import EVAL_QUESTIONS, RERANKER_ROUNDS, TRAINING_ROUNDS, Settings, display_path

Span = tuple[str, int, int]
Asked = tuple[str, list[Span] | None, tuple[str, ...]]  # a question, what answers it (None: nothing), letters left out
Progress = Callable[[str], None]


def training_pipeline(settings: Settings, work_dir: Path, question_tower: bool, letters_limit: int | None = None,
                      rounds: Sequence[Path] = TRAINING_ROUNDS) -> tuple[Pipeline, list]:
    """The training letters of `rounds` (the first `letters_limit` of them, for a quick run) indexed with the model
    (questions through the tower or not), and their questions."""
    letters, questions = {}, []
    for folder in rounds:
        round_letters, round_questions = load_training_data(folder)
        problems = check_questions(round_letters, round_questions)
        if problems:
            raise InputError(f"{folder}: {len(problems)} training questions fail their check, the first: {problems[0]}")
        letters.update(round_letters)
        questions += round_questions
    if letters_limit is not None:
        letters = dict(list(letters.items())[:letters_limit])
        questions = [question for question in questions if question.letter in letters]
    settings = replace(settings, endpoint=None, model=replace(settings.model, question_tower=question_tower))
    embedder = load_embedder(settings.model)
    files = write_letters(list(letters.values()), work_dir / "training-letters")
    index_dir = work_dir / ("training-index" if tuple(rounds) == TRAINING_ROUNDS else f"training-index-{len(rounds)}")
    run_ingest(files, index_dir, settings, embedder)
    generation = load_index(index_dir, embedder.name, embedder.fingerprint, settings.chunking, settings.index,
                            settings.lexical)
    return Pipeline(embedder, generation, index_dir, settings), questions


def asked_in_training(pipeline: Pipeline, questions, parliament: bool = True) -> list[tuple[str, list[Span]]]:
    """The answerable training questions with their evidence located in the stored letters, and (`parliament`)
    parliament's own questions with the answers printed under them."""
    generation = pipeline.generation
    asked = []
    for question in questions:
        if not question.answerable:
            continue
        doc_id = question.letter.replace("/", "-")
        document = generation.document(doc_id)
        spans = [(doc_id, *found) for evidence in question.evidence
                 if document is not None and (found := locate(" ".join(evidence.split()), document.text))]
        if spans:
            asked.append((question.question, spans))
    for letter in generation.letters if parliament else ():
        for question, start, end in section_pairs(generation.document_at(letter.row)):
            asked.append((question, [(letter.doc_id, start, end)]))
    return asked


def asked_in_dev(pipeline: Pipeline) -> list[tuple[str, list[Span]]]:
    """The eval's answerable dev questions (every corpus) with their evidence located: the tower's yardstick."""
    texts = pipeline.generation.documents
    asked = []
    for question in load_questions(EVAL_QUESTIONS, "dev"):
        spans = [(doc_id, *found) for doc_id, evidence in question.gold
                 if doc_id in texts and (found := locate(evidence, texts[doc_id].text))]
        if spans and not question.context:
            asked.append((question.question, spans))
    return asked


def with_unanswerable(answered: list[tuple[str, list[Span]]], unanswerable: list[str]) -> list[Asked]:
    """Each answered question as it is, and again without its own letters (these letters cannot answer it then), and
    the questions no letter answers."""
    return ([(question, spans, ()) for question, spans in answered]
            + [(question, None, tuple(dict.fromkeys(doc_id for doc_id, *_ in spans))) for question, spans in answered]
            + [(question, None, ()) for question in unanswerable])


def tower_data(pipeline: Pipeline, asked: Sequence[Asked], candidates: int) -> TowerData:
    """Each question against today's top passages (plus the gold ones at the end) and the sentences of the passages
    an answer reads (plus the gold passages'), labelled: a passage holds most of an evidence, a sentence shares at
    least half of the shorter of it and an evidence. A question these letters do not answer has no positive. With
    every passage vector of the index, which training mines for the passages the tower itself ranks high."""
    generation = pipeline.generation
    found = []
    for question, spans, without in asked:
        query = pipeline.query(question, Filters(without=without))
        vector = pipeline.embedder.encode_queries([query.text])[0]
        rows = [hit.row for hit in rank(generation, query, vector, candidates, pipeline.retrieval)]
        gold = _gold_passages(generation, spans or [])
        rows += [row for row in sorted(gold) if row not in rows]
        read = list(dict.fromkeys(rows[:pipeline.settings.answer.passages_read] + sorted(gold)))
        sentences, labels = [], []
        for row in read:
            doc_id = generation.letters[int(generation.chunk_letter[row])].doc_id
            starts, ends, vectors = generation.sentences_of(row)
            for start, end, sentence in zip(starts.tolist(), ends.tolist(), np.asarray(vectors)):
                if end - start >= pipeline.settings.answer.shortest_sentence:
                    sentences.append(sentence)
                    labels.append(any(d == doc_id and _shared(start, end, s, e) >= 0.5 * min(end - start, e - s)
                                      for d, s, e in spans or ()))
        if not sentences or (spans and not any(labels)):
            continue
        found.append(TowerExample(question, np.asarray(rows, dtype=np.int64),
                                  np.asarray([row in gold for row in rows], dtype=np.int8),
                                  np.asarray(sentences, dtype=np.float16), np.asarray(labels, dtype=np.int8)))
    return TowerData(np.asarray(generation.vectors.block(0, len(generation.vectors)), dtype=np.float16), found)


def _shared(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return max(0, min(a_end, b_end) - max(a_start, b_start))


def _gold_passages(generation: Generation, spans: list[Span]) -> set[int]:
    """The passages that hold at least 80% of an evidence, or the one that holds most of it."""
    gold = set()
    for doc_id, start, end in spans:
        rows = generation.passages_of(generation.letter(doc_id).row)
        held = [_shared(int(generation.chunk_start[row]), int(generation.chunk_end[row]), start, end) for row in rows]
        chosen = [int(row) for row, share in zip(rows, held) if share >= 0.8 * (end - start)]
        gold.update(chosen or [int(rows[int(np.argmax(held))])])
    return gold


def train_question_tower(settings: Settings, work_dir: Path, progress: Progress = print) -> dict:
    """Fit the question tower on the training data, choose its epoch on the dev questions, write it where the model
    settings say; its record."""
    from rag.evaluation.runner import open_eval_pipeline

    pipeline, questions = training_pipeline(settings, work_dir, question_tower=False)
    near_topic = [question.question for question in questions if not question.answerable]
    training = tower_data(pipeline, with_unanswerable(asked_in_training(pipeline, questions), near_topic),
                          settings.tower.candidates)
    plain = replace(settings, model=replace(settings.model, question_tower=False))
    dev_pipeline = open_eval_pipeline(plain)
    unanswerable_dev = [question.question for question in load_questions(EVAL_QUESTIONS, "dev") if not question.gold]
    dev = tower_data(dev_pipeline, with_unanswerable(asked_in_dev(dev_pipeline), unanswerable_dev),
                     settings.tower.candidates)
    answerable = sum(example.answerable for example in training.examples)
    progress(f"question tower: {answerable} answerable and {len(training.examples) - answerable} unanswerable training "
             f"questions over {len(pipeline.generation.letters)} letters, {len(dev.examples)} dev questions")
    updates, record = train_tower(Path(resolve_model(settings.model)), training, dev, settings.tower,
                                  pipeline.embedder.query_prompt, progress)
    record["data_sha256"] = _training_data_hash()
    record["settings"] = {name: getattr(settings.tower, name) for name in settings.tower.__dataclass_fields__}
    write_updates(settings.model.tower_file, updates, record)
    record["tower"] = tower_id(settings.model.tower_file)
    return record


def train_answer_scorer(settings: Settings, work_dir: Path, corpus: Path | None = None, limit: int | None = None,
                        progress: Progress = print, letters_limit: int | None = None) -> dict:
    """Fit the answer scorer for the question encoder in use and store it; its record. It learns from the training
    questions (each answerable one with its letter and again without it, each near-topic one as written) and, when
    `corpus` is given and present, from its answers to Kamervragen (`limit` of them at most) the same way."""
    pipeline, questions = training_pipeline(settings, work_dir, settings.model.question_tower, letters_limit)
    near_topic = [question.question for question in questions if not question.answerable]
    asked = with_unanswerable(asked_in_training(pipeline, questions), near_topic)
    data = examples(pipeline, asked_of_pairs([]) + asked)
    trained_on = {"training_questions": len(questions), "training_letters": len(pipeline.generation.letters)}
    digests = [_training_data_hash()]
    if corpus is not None and corpus.exists():
        corpus_pipeline = _corpus_pipeline(settings, corpus, work_dir, limit)
        pairs = [(letter.doc_id, question, start, end) for letter in corpus_pipeline.generation.letters
                 for question, start, end in qa_pairs(corpus_pipeline.generation.document_at(letter.row))]
        examples(corpus_pipeline, asked_of_pairs(pairs)[:-len(OFF_TOPIC)], data)
        trained_on.update(corpus_sha256=file_sha256(corpus), pairs=len(pairs))
        digests.append(trained_on["corpus_sha256"])
    elif corpus is not None:
        progress(f"{corpus} is not here: the scorer learns from the training questions alone")
    record = train(data, background_of(pipeline.generation), trained_on, hashlib.sha256("".join(digests).encode()).hexdigest())
    write_scorer(pipeline.embedder.question_encoder, record, settings.answer.scorer_file)
    return record


def reranker_examples(pipeline: Pipeline, asked: Sequence[tuple[str, list[Span]]], candidates: int) -> list[RerankerExample]:
    """Each question's best candidate sentences as today's ranking orders them, labelled as the tower's are (a sentence
    shares at least half of the shorter of it and an evidence); a question none of whose candidates answers is left
    out (nothing to learn the order from)."""
    found = []
    for question, spans in asked:
        query = pipeline.query(question, Filters())
        index, vector, hits, _allowed = pipeline._retrieved(query, 6)
        top = score_sentences(query.text, hits, index, vector, pipeline.settings.answer)[:candidates]
        labels = np.asarray([any(d == s.hit.doc_id and _shared(s.start, s.end, a, b) >= 0.5 * min(s.end - s.start, b - a)
                                 for d, a, b in spans) for s in top], dtype=bool)
        if labels.any():
            found.append(RerankerExample(question, tuple(s.hit.section for s in top),
                                         tuple(s.hit.text[s.start - s.hit.start:s.end - s.hit.start] for s in top),
                                         np.asarray([s.score for s in top], dtype=np.float32), labels))
    return found


def train_sentence_reranker(settings: Settings, work_dir: Path, progress: Progress = print) -> dict:
    """Fit the sentence reranker on the training questions of every written round (parliament's own questions aside:
    they share the letters' words), choose its epoch on the dev questions, write it where the answer settings say;
    its record."""
    from rag.evaluation.runner import open_eval_pipeline

    pipeline, questions = training_pipeline(settings, work_dir, settings.model.question_tower, rounds=RERANKER_ROUNDS)
    off = replace(settings, answer=replace(settings.answer, rerank=False))
    candidates = settings.answer.rerank_candidates
    training = reranker_examples(pipeline, asked_in_training(pipeline, questions, parliament=False), candidates)
    dev_pipeline = open_eval_pipeline(off)
    dev = reranker_examples(dev_pipeline, asked_in_dev(dev_pipeline), candidates)
    progress(f"sentence reranker: {len(training)} training questions over {len(pipeline.generation.letters)} letters "
             f"with an answering sentence among their best {candidates}, {len(dev)} dev questions")
    arrays, record = train_reranker(Path(resolve_model(settings.model)), training, dev, settings.reranker,
                                    pipeline.embedder.query_prompt, progress)
    record["data_sha256"] = _training_data_hash(RERANKER_ROUNDS)
    record["settings"] = {name: getattr(settings.reranker, name) for name in settings.reranker.__dataclass_fields__}
    write_updates(settings.answer.reranker_file, arrays, record)
    record["reranker"] = tower_id(settings.answer.reranker_file)
    return record


def _corpus_pipeline(settings: Settings, corpus: Path, work_dir: Path, limit: int | None) -> Pipeline:
    """The corpus's answers to Kamervragen indexed with the model, questions through the encoder in use."""
    settings = replace(settings, endpoint=None)
    embedder = load_embedder(settings.model)
    letters = corpus_letters(corpus, work_dir / "corpus-letters", limit)
    index_dir = work_dir / "corpus-index"
    run_ingest(letters, index_dir, settings, embedder)
    generation = load_index(index_dir, embedder.name, embedder.fingerprint, settings.chunking, settings.index,
                            settings.lexical)
    return Pipeline(embedder, generation, index_dir, settings)


def _training_data_hash(rounds: Sequence[Path] = TRAINING_ROUNDS) -> str:
    digest = hashlib.sha256()
    for folder in rounds:
        for path in data_files(folder):
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def tower_summary(tower: dict, settings: Settings) -> str:
    best = tower["dev_best"]
    return (f"question tower {tower['tower']} trained on {tower['examples']} questions (data "
            f"{tower['data_sha256'][:12]}); dev, best epoch {best['epoch']}: best sentence answers "
            f"{tower['dev_before']['sentence_top1']} -> {best['sentence_top1']}, gold passage in the dense "
            f"top 5 {tower['dev_before']['passage_hit5']} -> {best['passage_hit5']} "
            f"(written to {display_path(settings.model.tower_file)})")


def scorer_summary(record: dict, settings: Settings) -> str:
    trained, metrics = record["trained_on"], record["metrics_held_out"]
    return (f"answer scorer trained on {trained['training_questions']} training questions, "
            f"{trained.get('pairs', 0)} answers to Kamervragen of the corpus and {trained['off_topic']} "
            f"off-topic questions ({trained['sentence_rows']} sentences); held-out letters: sentence AUC "
            f"{metrics['sentence_auc']}, best sentence answers {metrics['best_sentence_answers']}, answerable "
            f"AUC {metrics['answerable_auc']} (written to {display_path(settings.answer.scorer_file)}; run "
            f"`rag eval --calibrate` next)")


def reranker_summary(record: dict, settings: Settings) -> str:
    best = record["dev_best"]
    return (f"sentence reranker {record['reranker']} trained on {record['examples']} questions (data "
            f"{record['data_sha256'][:12]}); dev, best epoch {best['epoch']}: gold sentence first "
            f"{record['dev_before']['gold_first']} -> {best['gold_first']} (written to "
            f"{display_path(settings.answer.reranker_file)}; run `rag eval --calibrate` next)")
