"""The eval set: questions with verbatim evidence, and where each evidence stands in the stored letters.

The set (eval/questions.jsonl) covers the seed letters and real letters outside them (eval/letters/),
each question in one fixed split: `dev` (for tuning anything) and `test` (reported and gated, never
tuned on). Gold is verbatim evidence, located in the stored text by its letters and digits, so the set
survives re-reading and re-chunking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputError
from rag.evaluation.metrics import Span

SPLITS = ("dev", "test")


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    lang: str
    kind: str
    gold: tuple[tuple[str, str], ...]  # (doc_id, evidence)
    context: tuple[str, ...] = ()
    corpus: str = "seeds"
    split: str = "dev"


def load_questions(path: Path, split: str = "all") -> list[EvalQuestion]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the questions ({getattr(error, 'strerror', None) or error})") from None
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question = EvalQuestion(
                row["id"], row["question"], row.get("lang", "nl"), row.get("kind", "other"),
                tuple((g["doc_id"], g["evidence"]) for g in row["gold"]), tuple(row.get("context", ())),
                row.get("corpus", "seeds"), row.get("split", "dev"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(f"{path}:{number}: not a question line ({type(error).__name__}: {error})") from None
        if question.split not in SPLITS:
            raise InputError(f"{path}:{number}: split {question.split!r}; use dev or test")
        if split in ("all", question.split):
            questions.append(question)
    if not questions:
        raise InputError(f"{path}: no questions in this file" + (f" for the {split} split" if split != "all" else ""))
    return questions


def _letters_and_digits(text: str) -> tuple[str, list[int]]:
    """The text's letters and digits, lower-cased, with each one's offset in the text."""
    kept, offsets = [], []
    for offset, character in enumerate(text):
        if character.isalnum():
            kept.append(character.lower())
            offsets.append(offset)
    return "".join(kept), offsets


def locate(evidence: str, text: str) -> tuple[int, int] | None:
    """Where an evidence stands in a stored letter: verbatim, or else by its letters and digits (a
    reader that joins a hyphenated word or drops a footnote marker does not lose the gold)."""
    start = text.find(evidence)
    if start >= 0:
        return start, start + len(evidence)
    wanted, _ = _letters_and_digits(evidence)
    if not wanted:
        return None
    letters, offsets = _letters_and_digits(text)
    found = letters.find(wanted)
    if found < 0:
        return None
    return offsets[found], offsets[found + len(wanted) - 1] + 1


def evidence_spans(question: EvalQuestion, texts: dict[str, str]) -> list[Span]:
    spans = []
    for doc_id, evidence in question.gold:
        found = locate(evidence, texts.get(doc_id, ""))
        if found is None:
            raise InputError(f"question {question.id}: evidence not found in {doc_id}: {evidence[:60]!r}; fix the questions file")
        spans.append((doc_id, *found))
    return spans
