"""`rag train`: the learned answer scorer, trained on question-answer pairs that are not the eval.

The pairs are the answers to Kamervragen in the Staten-Generaal corpus (`../shared/corpora/`, given with
`--corpus`): each MP's question with the minister's answer to it, parsed from the Aanhangsel as printed
("Vragen van het lid ... (Ingezonden ...)", numbered questions, "Antwoord van ... (Ontvangen ...)",
numbered answers) or from "Vraag N"/"Antwoord N" headings. They are indexed with the real model, and each
question is answered as the pipeline answers: its candidate sentences, labelled by whether they stand in the
minister's answer, are the sentence model's rows; the question, answerable, is a row of the answerable
model. Asked again with its own letter left out, the same question becomes a near-topic question these
letters cannot answer (every candidate is a negative, the question unanswerable); a fixed list of off-topic
questions adds the far ones. A fifth of the letters is held out to report the models' quality. The weights,
the hash of the data and the metrics go to `rag/answer/scorer.json`; thresholds are chosen on the eval's dev
split by `rag eval --calibrate`, never here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.answer.extractive import score_sentences, weigh_evidence
from rag.answer.scorer import (BACKGROUND, QUESTION_FEATURES, SENTENCE_FEATURES, LogisticModel, background_as_json,
                               english_view, without_retired_towers)
from rag.index.chunking import split_sentences
from rag.readers.document import Document
from rag.search.retrieval import Filters

HELD_OUT = 5  # every fifth letter is held out to measure the models
QUOTED = 0.5  # a sentence is a positive when this share of it lies in the minister's answer
# Questions no letter to parliament answers, in the shapes people type (not the eval's off-topic questions).
OFF_TOPIC = (
    "Hoe lang moet een ei koken voor een zachtgekookt ei?", "Wie won de Elfstedentocht van 1997?",
    "Hoe maak ik een zuurdesemstarter?", "Wat is de hoofdstad van Mongolië?", "Hoe installeer ik Python op Windows?",
    "Welke band schreef het nummer Bohemian Rhapsody?", "Hoeveel calorieën zitten er in een banaan?",
    "Wat is het recept voor erwtensoep?", "Wie speelde de hoofdrol in de film Titanic?",
    "Hoe verwijder ik een rode wijnvlek uit een tapijt?", "Wat is de snelste landdier ter wereld?",
    "Welke kleur krijg je als je blauw en geel mengt?", "How do I reset my router?",
    "Who won the football world cup in 2010?", "What is the boiling point of water on Mount Everest?",
    "Hoe schrijf je een for-loop in JavaScript?", "Wanneer bloeien tulpen in de Keukenhof?",
    "Hoe vaak moet ik mijn cactus water geven?", "Wat is de langste rivier van Afrika?",
    "Welke schaakopening is het best voor beginners?", "How many legs does a spider have?",
    "Wat kost een ticket voor een concert van Taylor Swift?", "Hoe bereid ik sushirijst?",
    "Wie schilderde de Nachtwacht?", "Wat is de formule voor de oppervlakte van een cirkel?",
    "Hoe kan ik mijn fietsband plakken?", "Which planet has the most moons?", "Wat eten pinguïns?",
    "Hoe zet ik een screenshot op een Mac?", "Welke wijn past bij kaasfondue?",
)


# --- the pairs ---------------------------------------------------------------------------

def corpus_letters(corpus: Path, folder: Path, limit: int | None) -> list[Path]:
    """The corpus's answers to Kamervragen (distinct documents holding questions and an answer) as letter files."""
    folder.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if corpus.suffix == ".gz" else open
    seen, files = set(), []
    with opener(corpus, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            url, content = record.get("URL", ""), record.get("Content", "")
            if url in seen or "Ingezonden" not in content or not re.search(r"\b(?:Antwoord|ANTWOORD)\b", content):
                continue
            seen.add(url)
            path = folder / f"kv-{hashlib.sha1(url.encode()).hexdigest()[:12]}.txt"
            path.write_text(content, encoding="utf-8")
            files.append(path)
            if limit is not None and len(files) >= limit:
                break
    return files


# "Antwoord van Minister ... (Ontvangen 8 augustus 1980)" and, before 1975, "ANTWOORD van ... (Ingezonden ...)".
_ANSWER_MARK = re.compile(r"\b(?:Antwoord|ANTWOORD)(?:en|EN)?\b[^\n]{0,240}?\(\s*(?:[Oo]ntvangen|[Ii]ngezonden)[^)]*\)\.?"
                          r"|^\s*Antwoord(?:en)?\b.*$", re.MULTILINE)
_ITEM = re.compile(r"(?:^|(?<=[.?!)\]}:]\s)|(?<=\n))\s*(?:Vraag\s+|Antwoord\s+)?(\d{1,2})(?:[.)]?\s+|(?=[A-Z][a-z]))(?=[A-Z])", re.MULTILINE)


def qa_pairs(document: Document) -> list[tuple[str, int, int]]:
    """(question, start, end of the answer in the stored text) for each question the letter answers."""
    text = document.text
    mark = _ANSWER_MARK.search(text)
    if mark is None:
        return []
    asked, answered = _items(text, 0, mark.start()), _items(text, mark.end(), len(text))
    if not asked or not answered:
        return []
    if set(asked) & set(answered) and len(asked) > 1:
        pairs = [(asked[number], answered[number]) for number in asked if number in answered]
    else:  # unnumbered: the questions together, the answer together
        pairs = [((min(s for s, _e in asked.values()), max(e for _s, e in asked.values())),
                  (min(s for s, _e in answered.values()), max(e for _s, e in answered.values())))]
    found = []
    for (ask_start, ask_end), (start, end) in pairs:
        question = question_sentence(text[ask_start:ask_end])
        if question and end - start >= 40:
            found.append((question, start, end))
    return found


def _items(text: str, start: int, end: int) -> dict[str, tuple[int, int]]:
    """Numbered items (questions or answers) in text[start:end], by number: marks "1", "2", ... in sequence, at a
    line's start or after a sentence ("... januari 1980) 1 Is het waar ..."); the whole stretch as "1" without."""
    marks, expected = [], 1
    for match in _ITEM.finditer(text, start, end):
        if int(match.group(1)) == expected:
            marks.append(match)
            expected += 1
    if len(marks) < 2:
        stripped = text[start:end].strip()
        return {"1": (start, end)} if stripped else {}
    return {match.group(1): (match.end(), marks[n + 1].start() if n + 1 < len(marks) else end)
            for n, match in enumerate(marks)}


def question_sentence(asked: str) -> str:
    """The question as a user would type it: the longest sentence that asks something."""
    asked = re.sub(r"\((?:[Ii]ngezonden|[Oo]ntvangen)[^)]*[)}]", " ", asked)
    sentences = [re.sub(r"^\d{1,2}[.)]?\s+", "", " ".join(asked[s:e].split())) for s, e in split_sentences(asked)]
    questions = [sentence for sentence in sentences if sentence.endswith("?") and 15 <= len(sentence) <= 400]
    return max(questions, key=len) if questions else ""  # no question asked: a memorandum, not Kamervragen


# --- rows --------------------------------------------------------------------------------

Span = tuple[str, int, int]  # doc_id, start, end
# A question as the scorer learns from it: its text, the spans that answer it (None: these letters do not), and the
# letters left out when it is asked (its own, to make it a question these letters cannot answer).
Asked = tuple[str, list[Span] | None, tuple[str, ...]]


def asked_of_pairs(pairs: list[tuple[str, str, int, int]]) -> list[Asked]:
    """Each pair (doc_id, question, answer start, answer end) asked with its letter and again without it, and the
    off-topic questions."""
    asked: list[Asked] = []
    for doc_id, question, start, end in pairs:
        asked.append((question, [(doc_id, start, end)], ()))
        asked.append((question, None, (doc_id,)))  # near-topic: its own letter left out
    return asked + [(question, None, ()) for question in OFF_TOPIC]


def examples(pipeline, asked: list[Asked], data: dict[str, list] | None = None) -> dict[str, list]:
    """Sentence rows (features, label, group) and question rows (sentence P from `score` later) of the questions as
    this pipeline answers them, added to `data` (rows of several indexes train one scorer)."""
    from rag.search.retrieval import allowed_rows, rank

    data = data if data is not None else {"sentences": [], "labels": [], "groups": [], "questions": []}
    index = pipeline.generation
    for question, gold, without in asked:
        filters = Filters(without=without)
        query = pipeline.query(question, filters)
        vector = pipeline.embedder.encode_queries([query.text])[0]
        hits = rank(index, query, vector, 6, pipeline.retrieval)
        scored = score_sentences(query.text, hits, index, vector, pipeline.settings.answer)
        labels = [float(any(s.hit.doc_id == doc_id and max(0, min(s.end, end) - max(s.start, start)) >= QUOTED * (s.end - s.start)
                            for doc_id, start, end in gold or ())) for s in scored]
        if gold and not any(labels):
            continue  # the letter answers, but retrieval did not bring the answer: no row says anything true
        group = len(data["questions"])
        for sentence, label in zip(scored, labels):
            data["sentences"].append(sentence.features)
            data["labels"].append(label)
            data["groups"].append(group)
        allowed = allowed_rows(index, filters) if filters.without else None
        letter = gold[0][0] if gold else (without[0] if without else "")
        data["questions"].append((group, float(bool(gold)), letter, query.text, scored, allowed, vector, index))
    return data


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    order = np.argsort(np.concatenate([positives, negatives]), kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives)))


def train(data: dict[str, list], background: np.ndarray, trained_on: dict, data_sha256: str) -> dict:
    """Fit both models on the letters not held out; their metrics on the held-out ones; the record to store.
    `background`: stored passage vectors the best sentence's similarity is set against."""
    letters = sorted({doc_id for _group, _a, doc_id, *_ in data["questions"] if doc_id})
    held = {doc_id for number, doc_id in enumerate(letters) if number % HELD_OUT == 0}
    held_group = np.array([data["questions"][group][2] in held or (not data["questions"][group][2] and group % HELD_OUT == 0)
                           for group in data["groups"]], dtype=bool)
    rows, labels = np.asarray(data["sentences"]), np.asarray(data["labels"])
    # Every row once more as an English question's would be read (the words shared with the letters unseen): the
    # corpus holds no English questions, and without these rows the models would not know them.
    english_rows = np.asarray([english_view(tuple(row), SENTENCE_FEATURES) for row in rows])
    sentence = LogisticModel.fit(np.concatenate([rows[~held_group], english_rows[~held_group]]),
                                 np.concatenate([labels[~held_group], labels[~held_group]]), SENTENCE_FEATURES)
    question_rows, question_labels, question_held = [], [], []
    for group, answerable, doc_id, text, scored, allowed, vector, index in data["questions"]:
        views = set()
        for english in (False, True):
            read = (lambda f: english_view(f, SENTENCE_FEATURES)) if english else (lambda f: f)  # noqa: E731
            rescored = [replace(s, answers=float(sentence.probability(read(s.features))[0])) for s in scored]
            features = weigh_evidence(text, rescored, index, vector, None, allowed, background).features
            views.add(english_view(features, QUESTION_FEATURES) if english else features)
        for features in views:
            question_rows.append(features)
            question_labels.append(answerable)
            question_held.append(doc_id in held or (not doc_id and group % HELD_OUT == 0))
    question_rows, question_labels = np.asarray(question_rows), np.asarray(question_labels)
    question_held = np.asarray(question_held)
    answerable = LogisticModel.fit(question_rows[~question_held], question_labels[~question_held], QUESTION_FEATURES)
    metrics = _metrics(sentence, answerable, rows, labels, np.asarray(data["groups"]), held_group, question_rows,
                       question_labels, question_held)
    return {"sentence": sentence.as_json(), "answerable": answerable.as_json(), "data_sha256": data_sha256,
            "dimensions": int(background.shape[1]), "background": background_as_json(background),
            "trained_on": {**trained_on, "off_topic": len(OFF_TOPIC), "sentence_rows": int(len(rows)),
                           "question_rows": int(len(question_rows)), "held_out_letters": len(held)},
            "metrics_held_out": metrics, "date": time.strftime("%Y-%m-%d")}


def _metrics(sentence, answerable, rows, labels, groups, held_group, question_rows, question_labels, question_held) -> dict:
    p = sentence.probability(rows[held_group])
    top_right = []
    for group in np.unique(groups[held_group]):
        members = np.flatnonzero((groups == group) & held_group)
        if labels[members].any():
            top_right.append(labels[members[np.argmax(sentence.probability(rows[members]))]])
    q = answerable.probability(question_rows[question_held])
    return {"sentence_auc": round(_auc(p, labels[held_group]), 4),
            "best_sentence_answers": round(float(np.mean(top_right)), 4) if top_right else None,
            "answerable_auc": round(_auc(q, question_labels[question_held]), 4),
            "questions_held_out": int(question_held.sum())}


def background_of(generation) -> np.ndarray:
    """Passage vectors spread over an index, as stored (so training reads what serving reads)."""
    vectors = generation.vectors
    return np.asarray(vectors[np.linspace(0, len(vectors) - 1, min(len(vectors), BACKGROUND)).astype(np.int64)],
                      dtype=np.float16).astype(np.float32)


def write_scorer(model_name: str, record: dict, path: Path) -> None:
    stored = without_retired_towers(json.loads(path.read_text()) if path.exists() else {}, model_name)
    stored[model_name] = record
    path.write_text(json.dumps(stored, indent=1) + "\n")
