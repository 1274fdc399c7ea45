"""The learned answer scorer: small logistic models over what the answer stage already knows of a question and its
candidate sentences, trained by `rag train` on question-answer pairs that are not the eval (`rag.answer.training`).

Two models, one file (`rag/answer/scorer.json`, per embedding model, with the hash of the data it was trained on
and its metrics on held-out letters):
- `sentence`: P(this sentence answers the question), from its similarity, the question's terms it and its
  neighbours hold, what the question asks for against what it holds, its place and length;
- `answerable`: P(these letters answer the question), from the best sentence's P, the margin to the next, the
  question's terms that no letter holds (and how rare they are in Dutch at large), agreement between letters.
When to abstain is decided on the eval's dev split (`rag eval --calibrate`, `DECISION_FEATURES`): the second's P
set beside the sentence that would be quoted first, and a threshold on the result. Which
sentences to quote stays with the hand-set ranking (similarity plus small bonuses): trained on whole answers as
positives, the sentence model tells an answer's sentences from the rest of a letter well enough to say whether
there is one, but on the eval's dev split it chose the gold sentence less often (`rag eval --compare` shows both).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SENTENCE_FEATURES = (
    "dense", "dense_behind_best", "passage_dense", "inverse_rank", "terms_held", "terms_held_nearby", "asked_held",
    "asks_a_kind", "opens_passage", "log_length", "leans_back", "english",
)
QUESTION_FEATURES = (
    "best_sentence", "best_dense", "dense_margin", "terms_absent", "rarest_absent", "terms_near", "log_terms",
    "english", "letters_agreeing", "rare_terms_near", "best_terms_nearby", "dense_contrast",
)

# The last word on abstaining, fitted on the eval's dev split (`rag eval --calibrate`): the scorer's P(answerable) as
# log-odds, the similarity and sentence-model P of the sentence the answer would quote first, and the scorer's own
# question features. The scorer is trained on the training letters' questions; on the dev questions, written as users
# write them, the similarity of the quoted sentence tells near-topic questions apart better than its P does
# (cross-validated on dev, at 12% of the answerable wrongly refused: 49% of the near-topic refused against 31%), and
# with reciprocal rank fusion's constant at 10 the question features refuse as many asked without their letters as
# before it (cross-validated on dev: 55% with them, 50% without them, 54% with the constant at 60).
DECISION_FEATURES = ("answerable_logit", "first_dense", "first_answers") + QUESTION_FEATURES

# What an English question shares with Dutch letters, or misses in them, says nothing of whether they answer it.
_LEXICAL = {"terms_held", "terms_held_nearby", "terms_absent", "rarest_absent", "terms_near", "rare_terms_near",
            "best_terms_nearby"}


def english_view(features: tuple[float, ...], names: tuple[str, ...]) -> tuple[float, ...]:
    """The features as an English question's are read: the lexical ones zero, `english` set, the similarities as
    they are. Dutch questions are trained on in this view too, since the corpus holds no English ones."""
    return tuple(0.0 if name in _LEXICAL else 1.0 if name == "english" else value for name, value in zip(names, features))


@dataclass(frozen=True)
class LogisticModel:
    """P = sigmoid(weights . (features - mean) / scale + bias)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def probability(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-(((rows - self.mean) / self.scale) @ self.weights + self.bias)))

    def as_json(self) -> dict:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias}

    @classmethod
    def from_json(cls, data: dict, expected: tuple[str, ...]) -> "LogisticModel":
        if tuple(data["features"]) != expected:
            raise ValueError("the stored scorer was trained on other features; run `rag train`")
        return cls(expected, np.asarray(data["mean"]), np.asarray(data["scale"]), np.asarray(data["weights"]),
                   float(data["bias"]))

    @classmethod
    def fit(cls, rows: np.ndarray, labels: np.ndarray, features: tuple[str, ...], l2: float = 1.0,
            steps: int = 3000) -> "LogisticModel":
        """Regularised logistic regression by Newton's method (a few dozen features, thousands of rows: exact and
        deterministic, no solver to install)."""
        rows = np.asarray(rows, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        mean, scale = rows.mean(axis=0), rows.std(axis=0)
        scale[scale < 1e-9] = 1.0
        x = np.hstack([(rows - mean) / scale, np.ones((len(rows), 1))])
        w = np.zeros(x.shape[1])
        penalty = np.full(x.shape[1], l2 / max(len(rows), 1))
        penalty[-1] = 0.0  # no penalty on the bias
        for _ in range(min(steps, 100)):
            p = 1.0 / (1.0 + np.exp(-x @ w))
            gradient = x.T @ (p - labels) / len(rows) + penalty * w
            hessian = (x * (p * (1 - p))[:, None]).T @ x / len(rows) + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hessian, gradient)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(features, mean, scale, w[:-1], float(w[-1]))


def without_retired_towers(stored: dict, model_name: str) -> dict:
    """What a file stores per question encoder, less what it holds for this model's other question towers: a tower's
    scorer and thresholds go with it, and only the committed tower is used. Writing the plain model's, or another
    model's, keeps every tower's."""
    if "+tower-" not in model_name:
        return dict(stored)
    base = model_name.split("+tower-")[0]
    return {name: entry for name, entry in stored.items()
            if name == model_name or "+tower-" not in name or name.split("+tower-")[0] != base}


BACKGROUND = 256  # passages of the training letters, the background a question's best similarity is set against


def background_as_json(vectors: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vectors, dtype="<f2").tobytes()).decode("ascii")


def background_from_json(text: str, dimensions: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32).reshape(-1, dimensions)


@dataclass(frozen=True)
class LearnedScorer:
    sentence: LogisticModel
    answerable: LogisticModel
    # Passages of the letters it was trained on: how far a question's best sentence stands above them is measured
    # against the same background whatever letters are loaded (five letters on one topic, or a ministry's all).
    background: np.ndarray

    @classmethod
    def for_model(cls, model_name: str, path: Path) -> "LearnedScorer | None":
        """The scorer trained for this embedding model; None when there is none (the hand-set scorer stands in)."""
        try:
            stored = json.loads(path.read_text())[model_name]
            return cls(LogisticModel.from_json(stored["sentence"], SENTENCE_FEATURES),
                       LogisticModel.from_json(stored["answerable"], QUESTION_FEATURES),
                       background_from_json(stored["background"], int(stored["dimensions"])))
        except (OSError, ValueError, KeyError, TypeError):
            return None
