"""Feedback on answers, appended to a JSONL file so real questions can become eval questions."""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

from rag.answer.extractive import Answer


def record_feedback(data_dir: Path, answer: Answer, verdict: str, remark: str = "") -> Path:
    """Append one verdict ("goed" or "fout") on an answer; never rewrites earlier lines."""
    if verdict not in ("goed", "fout"):
        raise ValueError(f"verdict must be 'goed' or 'fout', not {verdict!r}")
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "feedback.jsonl"
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "question": answer.question,
        "verdict": verdict,
        "remark": remark.strip()[:2000],
        "abstained": answer.abstained,
        "answer": answer.text,
        "citations": [{"n": c.n, "doc_id": c.hit.doc_id, "start": c.start, "end": c.end} for c in answer.citations],
    }
    with path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return path
