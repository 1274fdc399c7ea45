"""What `rag train` learns from, never the eval's letters or questions.

1. Questions in users' words (`eval/training/`): Kamerstukken of 2019 and 2022 from the public archive the eval's
   extracts come from (none of those 80, none of the eval's dev letters), each as a PDF-to-text tool left it, and
   questions written over each by a helper that saw only that letter and paraphrased as a policy officer asks:
   each with the verbatim span that answers it, or none for a near-topic question the letter does not answer.
   `check_questions` is the check every question passed (`eval/training/README.md` tells how they were made; a
   second round, `eval/training/round2/`, over Kamerstukken of 2017 and 2018, a third, `round3/`, over those of
   2016, and a fourth, `round4/`, over those of 2015 (not learned from yet), were made and checked the same way).
2. Parliament's own question-answer pairs: an MP's or a committee's question with the answer printed under it, in
   the layouts answers to Kamervragen, a schriftelijk overleg or feitelijke vragen have ("Vraag 3" ... "Antwoord 3",
   read by the letter reader as sections), and the older Aanhangsel layout of the Staten-Generaal corpus
   (`rag.answer.training.qa_pairs`). An answer ends where the next question's heading starts.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputError
from rag.language import ANSWER_HEADING, QUESTION_HEADING
from rag.readers.document import Document

KINDS = ("fact", "number", "date", "stance", "reason", "en", "kamervragen", "unanswerable")
EVIDENCE_CHARS = (30, 400)
MOST_SHARED_WORDS = 0.40  # of a question's content words, at most this share may stand in its evidence
_HYPHEN_BREAK = "\x00"  # "woor-\nden" in a letter, read as "woorden", "woor-den" or "woor- den"
_TOKEN = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:['’][^\W\d_]+)?")
_STOP = frozenset("""
de het een en of van in op te ten ter voor met aan door bij naar uit om over tot als dat die dit deze er is zijn was
waren wordt worden werd werden heeft hebben had hadden kan kunnen kon konden moet moeten moest zal zullen zou zouden
wil willen wilde mag mogen gaat gaan ging doet doen deed niet geen nog al ook wel dan maar want wie wat welke welk waar
waarom hoe hoeveel wanneer waarover waarvoor waardoor waarmee hij zij ze ik je jij u we wij hun haar mijn ons onze uw
zich zo meer veel per na tegen sinds zoals volgens tussen onder dus toch daar hier nu elk elke iedere ieder alle alles
andere ander iets men eigenlijk precies eens even zelf zelfs steeds hoelang hoever nou via binnen zonder tijdens vanaf
rond geleden eerst ofwel hoezo mee toe heb hebt ben bent krijgt krijgen kreeg kregen staat staan stond the a an and or
of in on to for with at by from as that this these those there is are was were be been being has have had do does did
can could will would shall should may might must not no any what which who whom whose where why how when than then
also its it they their them he she his her we our you your i my me into about after before under over between per
since so such if up out more most many much only own same other some each all according""".split())


@dataclass(frozen=True)
class TrainingLetter:
    name: str  # "2019/0115-beantwoording-kamervragen-over-..."
    text: str  # as the PDF-to-text tool left it (the first 32,000 characters of a longer document)
    repo_path: str
    commit: str

    @property
    def file_name(self) -> str:
        return self.name.replace("/", "-") + ".txt"


@dataclass(frozen=True)
class TrainingQuestion:
    letter: str
    question: str
    kind: str
    lang: str
    evidence: tuple[str, ...]  # verbatim spans of the letter that answer it; () for a near-topic unanswerable one

    @property
    def answerable(self) -> bool:
        return bool(self.evidence)


def data_files(folder: Path) -> tuple[Path, Path]:
    """The letters and the questions of one round of training data: what is read, and what `rag train` hashes."""
    return folder / "letters.jsonl.gz", folder / "questions.jsonl"


def load_training_data(folder: Path) -> tuple[dict[str, TrainingLetter], list[TrainingQuestion]]:
    """The letters and the questions written over them, from `folder` (eval/training/)."""
    letters_file, questions_file = data_files(folder)
    try:
        with gzip.open(letters_file, "rt", encoding="utf-8") as lines:
            letters = {row["name"]: TrainingLetter(row["name"], row["text"], row["repo_path"], row["commit"])
                       for row in map(json.loads, lines)}
        with questions_file.open(encoding="utf-8") as lines:
            questions = [TrainingQuestion(row["letter"], row["question"], row["kind"], row["lang"], tuple(row["evidence"]))
                         for row in map(json.loads, lines) if row]
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{folder}: the training data cannot be read ({type(error).__name__}: {error})") from None
    return letters, questions


def write_letters(letters: list[TrainingLetter], folder: Path) -> list[Path]:
    """The letters as text files to index, named after their archive path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for letter in letters:
        path = folder / letter.file_name
        path.write_text(letter.text, encoding="utf-8")
        paths.append(path)
    return paths


# --- the check every question passed ----------------------------------------------------------

def check_questions(letters: dict[str, TrainingLetter], questions: list[TrainingQuestion]) -> list[str]:
    """What is wrong with the questions, one line each: an unknown letter or kind, an evidence span that is not in its
    letter word for word (spaces collapsed, a word broken at a line's hyphen read whole) or not 30-400 characters, a
    question that borrows more than 40% of its content words from its evidence (not asked in a user's words)."""
    problems = []
    normalised = {name: _normalised_letter(letter.text) for name, letter in letters.items()}
    for number, question in enumerate(questions, start=1):
        where = f"question {number} ({question.letter})"
        if question.letter not in letters:
            problems.append(f"{where}: no such letter")
            continue
        if question.kind not in KINDS or (question.lang == "en") != (question.kind == "en"):
            problems.append(f"{where}: kind {question.kind!r} with lang {question.lang!r}")
        if question.answerable == (question.kind == "unanswerable"):
            problems.append(f"{where}: {'an unanswerable question with' if question.evidence else 'no'} evidence")
        for evidence in question.evidence:
            evidence = " ".join(evidence.split())
            if not EVIDENCE_CHARS[0] <= len(evidence) <= EVIDENCE_CHARS[1]:
                problems.append(f"{where}: evidence of {len(evidence)} characters")
            if not occurs(normalised[question.letter], evidence):
                problems.append(f"{where}: evidence not in the letter: {evidence[:60]!r}")
        if question.evidence and shared_words(question.question, question.evidence) > MOST_SHARED_WORDS:
            problems.append(f"{where}: {shared_words(question.question, question.evidence):.0%} of its words are the evidence's")
    return problems


def shared_words(question: str, evidence: tuple[str, ...]) -> float:
    """The share of the question's content words that stand in its evidence."""
    asked = _content_words(question)
    found = set().union(*(_content_words(span) for span in evidence))
    return len(asked & found) / len(asked) if asked else 0.0


def _content_words(text: str) -> set[str]:
    return {word for word in _TOKEN.findall(unicodedata.normalize("NFC", text.lower())) if word not in _STOP and len(word) > 1}


def _normalised_letter(raw: str) -> str:
    return " ".join(re.sub(r"-[ \t\r\f\v]*\n\s*", _HYPHEN_BREAK, raw).split())


def occurs(letter: str, evidence: str) -> bool:
    """Whether `evidence` stands in the normalised letter, where a word broken at a line's hyphen may be read joined,
    with its hyphen, or with "- " ("Onderzoeks- en")."""
    if evidence in letter:
        return True
    first = evidence[:1]
    return bool(first) and any(letter[i] == first and _occurs_at(letter, i, evidence) for i in range(len(letter)))


def _occurs_at(letter: str, start: int, evidence: str) -> bool:
    stack, seen = [(start, 0)], set()
    while stack:
        at, done = stack.pop()
        if (at, done) in seen:
            continue
        seen.add((at, done))
        if done == len(evidence):
            return True
        if at >= len(letter):
            continue
        if letter[at] == _HYPHEN_BREAK:
            stack.append((at + 1, done))
            if evidence[done] in "- ":
                stack.append((at + 1, done + 1))
                if evidence[done] == "-" and evidence[done + 1:done + 2] == " ":
                    stack.append((at + 1, done + 2))
        elif letter[at] == evidence[done]:
            stack.append((at + 1, done + 1))
    return False


# --- parliament's own pairs ----------------------------------------------------------------

def section_pairs(document: Document) -> list[tuple[str, int, int]]:
    """(question, start, end of its answer in the stored text) for each "Vraag N" section followed by its answer
    ("Antwoord", "Antwoord N", "Antwoord op vraag N"): the question as a user would type it (its longest sentence
    that asks), the answer as the reader cut it, up to the next heading."""
    from rag.answer.training import question_sentence

    pairs = []
    sections = document.sections
    for asked, answered in zip(sections, sections[1:]):
        if not QUESTION_HEADING.match(asked.label):
            continue
        if not (ANSWER_HEADING.match(answered.label) or answered.label.startswith("Antwoord")):
            continue
        question = question_sentence(document.text[asked.start:asked.end])
        if question and answered.end - answered.start >= 40:
            pairs.append((question, answered.start, answered.end))
    return pairs
