"""The training data: questions in users' words over real Kamerstukken, checked as they were written, and parliament's
own question-answer pairs parsed from the layouts they come in."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from rag.answer.training_data import check_questions, data_files, load_training_data, section_pairs, shared_words
from rag.evaluation.dataset import load_questions
from rag.readers.document import parse_letter
from rag.settings import EVAL_QUESTIONS, PROJECT_ROOT, TRAINING_DATA, TRAINING_ROUNDS


HELD_OUT_YEARS = ("2020", "2021", "2023")  # the archive's years that measure the project: never trained on


# Every round of training data the project holds (eval/training/README.md): those `rag train` learns from and one
# written and checked but not learned from yet.
ROUNDS = (TRAINING_DATA, *sorted(folder for folder in TRAINING_DATA.glob("round*")
                                 if all(path.exists() for path in data_files(folder))))


@pytest.fixture(scope="module", params=ROUNDS, ids=["round1", *(path.name for path in ROUNDS[1:])])
def training(request):
    return load_training_data(request.param)


def test_rag_train_learns_from_rounds_the_project_holds():
    assert set(TRAINING_ROUNDS) <= set(ROUNDS) and len(ROUNDS) == 4


def test_every_training_question_passes_the_check_it_was_written_against(training):
    letters, questions = training
    assert check_questions(letters, questions) == []
    answerable = [question for question in questions if question.answerable]
    assert len({question.letter for question in questions}) >= 60 and len(answerable) >= 400
    assert {question.kind for question in questions} >= {"fact", "number", "date", "stance", "reason", "en", "unanswerable"}


def test_the_training_letters_are_neither_the_evals_nor_the_held_out_years(training):
    letters, _questions = training
    sources = (PROJECT_ROOT / "eval" / "blind" / "README.md").read_text(encoding="utf-8")
    eval_paths = set((PROJECT_ROOT / "eval" / "paraphrased" / "SOURCES.tsv").read_text(encoding="utf-8").split())
    for letter in letters.values():
        assert letter.repo_path.split("/")[3] not in HELD_OUT_YEARS, letter.repo_path
        assert letter.repo_path not in eval_paths
    extracts = {line.split("\t")[2] for line in (PROJECT_ROOT.parent / "shared" / "real-extracts" / "SOURCES.tsv")
                .read_text(encoding="utf-8").splitlines()[1:]} if (PROJECT_ROOT.parent / "shared").exists() else set()
    assert not extracts & {letter.repo_path for letter in letters.values()}
    eval_texts = {hashlib.sha256(path.read_bytes()).hexdigest() for path in (PROJECT_ROOT / "eval" / "extracts").glob("*.txt")}
    assert not eval_texts & {hashlib.sha256(letter.text.encode()).hexdigest() for letter in letters.values()}
    assert "blind" in sources.lower()


def test_the_check_refuses_what_a_careless_writer_would_hand_in(training):
    letters, questions = training
    good = next(question for question in questions if question.answerable)
    broken = [
        replace(good, evidence=(good.evidence[0].replace(" ", "  ", 1)[:-3] + "xyz",)),  # not verbatim
        replace(good, question=" ".join(good.evidence[0].split()[:12]) + "?"),  # the letter's own words
        replace(good, kind="trivia"),
        replace(good, kind="unanswerable"),  # unanswerable, yet with evidence
        replace(good, letter="2019/0000-bestaat-niet"),
    ]
    problems = check_questions(letters, broken)
    assert len(problems) == 5, problems
    assert ["not in the letter", "of its words are the evidence's", "kind 'trivia'", "an unanswerable question with",
            "no such letter"] == [next(needle for needle in ("not in the letter", "of its words are the evidence's",
                                                             "kind 'trivia'", "an unanswerable question with",
                                                             "no such letter") if needle in problem) for problem in problems]


def test_questions_are_asked_in_other_words_than_their_evidence(training):
    _letters, questions = training
    shares = [shared_words(question.question, question.evidence) for question in questions if question.answerable]
    assert max(shares) <= 0.40 and sum(shares) / len(shares) <= 0.25


def test_the_dev_questions_come_from_letters_of_their_own(training):
    letters, _questions = training
    dev = [question for question in load_questions(EVAL_QUESTIONS, "dev") if question.corpus == "paraphrased"]
    assert len(dev) >= 150 and len({doc_id for question in dev for doc_id, _evidence in question.gold}) >= 40
    training_files = {letter.file_name[:-4] for letter in letters.values()}
    assert not training_files & {doc_id for question in dev for doc_id, _evidence in question.gold}
    blind = [question for question in load_questions(EVAL_QUESTIONS, "test") if question.corpus == "blind"]
    assert len(blind) == 160 and all(question.split == "test" for question in blind)
    given = [json.loads(line) for line in (PROJECT_ROOT / "eval" / "blind" / "questions.jsonl").read_text().splitlines()]
    assert [question.question for question in blind] == [item["question"] for item in given]


INTERLEAVED = """Antwoorden op Kamervragen van het lid Jansen over de zorg op Saba

Vraag 1
Bent u bekend met het bericht dat het ziekenhuis op Saba geen tandarts meer heeft?

Antwoord 1
Ja, daarmee ben ik bekend. Sinds maart is de tandarts met pensioen en is er een tijdelijke regeling met Sint Maarten.

Vraag 2
Hoeveel patiënten zijn sindsdien naar Sint Maarten gebracht voor tandheelkundige zorg?

Antwoord 2
Tot en met juni zijn 84 patiënten per vliegtuig naar Sint Maarten gebracht. De kosten daarvan draagt het zorgverzekeringskantoor.

Vraag 3
Wanneer komt er weer een vaste tandarts?
"""


def test_interleaved_questions_and_answers_give_one_pair_each_without_the_next_question():
    document = parse_letter(INTERLEAVED, doc_id="saba", source="saba.txt")
    pairs = section_pairs(document)
    answers = [document.text[start:end] for _question, start, end in pairs]
    assert [question for question, _start, _end in pairs] == [
        "Bent u bekend met het bericht dat het ziekenhuis op Saba geen tandarts meer heeft?",
        "Hoeveel patiënten zijn sindsdien naar Sint Maarten gebracht voor tandheelkundige zorg?"]
    assert answers[0].startswith("Ja, daarmee ben ik bekend") and "Vraag 2" not in answers[0]
    assert answers[1].strip().endswith("zorgverzekeringskantoor.") and "Wanneer" not in answers[1]
