"""Defaults and the environment variables that override them, in one place."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEEDS = PROJECT_ROOT / "seeds"
DEFAULT_INDEX = PROJECT_ROOT / "index"
DEFAULT_DATA = PROJECT_ROOT / "data"
EVAL_QUESTIONS = PROJECT_ROOT / "eval" / "questions.jsonl"
EVAL_BASELINE = PROJECT_ROOT / "eval" / "baseline.json"
EVAL_LETTERS = PROJECT_ROOT / "eval" / "letters"  # real letters outside the seeds that the eval set asks about
EVAL_INDEX = PROJECT_ROOT / "eval" / "index"  # the seeds and eval/letters together, built by `rag eval`
REPORT_DIR = PROJECT_ROOT / "eval" / "report"

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
EXACT_SEARCH_LIMIT = 50_000  # "auto" searches exactly up to this many passages, HNSW above (`rag bench --corpus`)
EXACT_FILTER_PASSAGES = 20_000  # a filter admitting at most this many passages is searched exactly over their vectors
FILTERED_SEARCH_DEPTH = 2_048  # the deepest graph search a narrow filter asks of HNSW
EMBED_BATCH = 64  # passages embedded, and checkpointed, at a time by `rag ingest`
RAY_CPUS_PER_ACTOR = 1  # `rag ingest --ray` on a cluster without GPUs: one model per CPU, one thread each
QUERY_THREADS = 1  # threads per embedded question: a server answers as many questions at once as it has cores
ANSWER_SLOTS = max(1, os.cpu_count() or 1)  # answers computed at once by a server (chat, buttons and API together)
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # a letter uploaded in the chat page
UPLOAD_TYPES = (".pdf", ".xml", ".txt")
ANSWER_QUEUE = 64  # answers waiting for a slot; one more is told to try again (HTTP 429, a note in the chat)
MAX_QUESTION_CHARS = 1000
MAX_TURNS = 10  # turns of a conversation that a follow-up can lean on
UI_LETTER_CHOICES = 1_000  # letters offered by name in the chat's filter and remove lists: the newest
UI_LETTER_ROWS = 500  # letters shown in the chat's table of the index: the newest
API_LETTERS_LIMIT = 1_000  # letters per page of GET /api/letters (?offset=&limit=, at most 10 times this)


def model_name() -> str:
    return os.environ.get("RAG_MODEL", DEFAULT_MODEL)


def model_cache_dir() -> Path:
    """Where the offline default model is materialised: $RAG_MODEL_DIR, else the user's cache."""
    if os.environ.get("RAG_MODEL_DIR"):
        return Path(os.environ["RAG_MODEL_DIR"]).expanduser()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache_home / "kamerbrief-rag" / "models"


def display_path(path: Path) -> str:
    """Paths inside the project are shown relative to it (`seeds/000_….txt`), others absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(resolved)
