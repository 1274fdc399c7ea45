"""Training the question tower (`rag.embed.tower`): low-rank updates to every layer of the default model, fitted so a
question lands near the stored vectors of the passage and the sentence that answer it, against the other passages
today's retrieval brings, the passages the tower in training itself ranks highest of the whole index (mined again
every few steps), and the other sentences of the passages an answer reads. The stored vectors stay as the plain model made
them, so mining is one matrix product; the updates start at zero, so training starts from today's similarity.

Torch is imported here and only here, by `rag train`; a GPU is used when one is visible.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.embed.tower import TARGETS
from rag.settings import TowerSettings, quiet_libraries


@dataclass(frozen=True)
class TowerExample:
    """One question and what it is scored against: passages (rows of the index asked: today's top passages, then the
    gold ones) and sentence vectors (of the passages an answer reads, and the gold ones), each labelled. A question the
    letters searched do not answer has no positive: it teaches the tower to keep such questions away from every
    sentence."""

    question: str
    passage_rows: np.ndarray  # (n,) int
    passage_labels: np.ndarray  # (n,) 0/1
    sentences: np.ndarray  # (m, dimension) float16
    sentence_labels: np.ndarray

    @property
    def answerable(self) -> bool:
        return bool(self.sentence_labels.any())


@dataclass(frozen=True)
class TowerData:
    """Questions and the index they were asked of: every stored passage vector, by row (what mining searches)."""

    passages: np.ndarray  # (rows, dimension) float16
    examples: list[TowerExample]


def train_tower(model_folder: Path, training: TowerData, dev: TowerData, settings: TowerSettings,
                query_prompt: str, progress=print) -> tuple[dict[str, np.ndarray], dict]:
    """The updates of the epoch that did best on `dev`, and the record of the training (dev before and after)."""
    quiet_libraries()
    import torch

    torch.manual_seed(settings.seed)
    order = random.Random(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer, model = low_rank_model(model_folder, settings.rank, settings.alpha, device)
    # Where the nearest sentence's similarity parts questions the letters answer from those they do not (learned).
    threshold = torch.nn.Parameter(torch.tensor(settings.answer_similarity, device=device))
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad] + [threshold]
    optimiser = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    before = _dev_scores(tokenizer, model, dev, query_prompt, device)
    progress(f"dev before training: best sentence answers {before['sentence_top1']:.3f}, a gold passage in the dense "
             f"top 5 {before['passage_hit5']:.3f}, nearest sentence tells answerable (AUC) {before['answerable_auc']:.3f}")
    best, best_updates, history = None, low_rank_updates(model), []
    started = time.perf_counter()
    passages = training.passages.astype(np.float32)
    stretch = settings.batch * settings.mining_steps
    for epoch in range(settings.epochs):
        examples = list(training.examples)
        order.shuffle(examples)
        total = 0.0
        for first in range(0, len(examples), settings.batch):
            if first % stretch == 0:  # the negatives of the next stretch, mined by the tower as it is now
                mined = _mine(tokenizer, model, passages, examples[first:first + stretch], settings.mined, query_prompt,
                              device)
            batch = list(zip(examples[first:first + settings.batch], mined[first % stretch:]))
            questions = _encode(tokenizer, model, [example.question for example, _ in batch], query_prompt, device)
            loss = sum(_loss(question, example, passages[np.concatenate([example.passage_rows, negatives])],
                             threshold, settings, device)
                       for question, (example, negatives) in zip(questions, batch)) / len(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        scores = _dev_scores(tokenizer, model, dev, query_prompt, device)
        history.append({"epoch": epoch + 1, "loss": round(total / max(1, len(examples)), 4), **scores})
        progress(f"epoch {epoch + 1}: loss {total / max(1, len(examples)):.3f}; dev: best sentence answers "
                 f"{scores['sentence_top1']:.3f}, gold passage in the dense top 5 {scores['passage_hit5']:.3f}, answerable "
                 f"AUC {scores['answerable_auc']:.3f} ({time.perf_counter() - started:.0f} s)")
        if best is None or _merit(scores) > _merit(best):
            best, best_updates = {"epoch": epoch + 1, **scores}, low_rank_updates(model)
    record = {"rank": settings.rank, "scale": settings.alpha / settings.rank, "targets": list(TARGETS),
              "answer_similarity": round(float(threshold.detach()), 4),
              "dev_before": before, "dev_best": best, "epochs": history, "examples": len(training.examples),
              "dev_examples": len(dev.examples), "device": device, "seconds": round(time.perf_counter() - started)}
    return best_updates, record


def _merit(scores: dict[str, float]) -> float:
    """What the epoch is chosen by on dev: quoting the answer, finding its passage, knowing whether there is one."""
    return scores["sentence_top1"] + scores["passage_hit5"] + scores["answerable_auc"]


def low_rank_model(model_folder: Path, rank: int, alpha: float, device: str, layers: int | None = None):
    """The tokenizer and the model (its first `layers` layers, all by default) with every weight frozen and a trained
    low-rank update beside each of `TARGETS`, in training mode (the tower's; the sentence reranker's)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_folder))
    model = AutoModel.from_pretrained(str(model_folder), dtype=torch.float32).to(device)
    if layers is not None:
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    for parameter in model.parameters():
        parameter.requires_grad = False
    for layer in model.encoder.layer:
        for target in TARGETS:
            owner_path, _, name = target.rpartition(".")
            owner = layer.get_submodule(owner_path)
            setattr(owner, name, _LowRank(getattr(owner, name), rank, alpha))
    return tokenizer, model.train()


def _low_rank_class():
    import torch

    class LowRank(torch.nn.Module):
        """A frozen linear map plus a trained low-rank update, B @ A, that starts at zero."""

        def __init__(self, base, rank: int, alpha: float) -> None:
            super().__init__()
            self.base = base
            self.a = torch.nn.Parameter(torch.randn(rank, base.in_features, device=base.weight.device)
                                        / math.sqrt(base.in_features))
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
            self.scale = alpha / rank

        def forward(self, inputs):
            return self.base(inputs) + (inputs @ self.a.T @ self.b.T) * self.scale

    return LowRank


def _LowRank(base, rank: int, alpha: float):  # noqa: N802 (a class made on use: torch is imported only here)
    return _low_rank_class()(base, rank, alpha)


def low_rank_updates(model) -> dict[str, np.ndarray]:
    """The low-rank factors by layer and target: `layer.{i}.{target}.a` and `.b`."""
    updates = {}
    for number, layer in enumerate(model.encoder.layer):
        for target in TARGETS:
            module = layer.get_submodule(target)
            updates[f"layer.{number}.{target}.a"] = module.a.detach().cpu().numpy().copy()
            updates[f"layer.{number}.{target}.b"] = module.b.detach().cpu().numpy().copy()
    return updates


def _encode(tokenizer, model, questions: list[str], prompt: str, device: str):
    import torch

    batch = tokenizer([prompt + question for question in questions], padding=True, truncation=True, max_length=128,
                      return_tensors="pt").to(device)
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def _encoded(tokenizer, model, questions: list[str], prompt: str, device: str) -> np.ndarray:
    """The questions as the tower in training puts them now, without gradients."""
    import torch

    model.eval()
    with torch.no_grad():
        vectors = [_encode(tokenizer, model, questions[first:first + 64], prompt, device).cpu().numpy()
                   for first in range(0, len(questions), 64)]
    model.train()
    return np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)


def _mine(tokenizer, model, passages: np.ndarray, examples: list[TowerExample], count: int, prompt: str,
          device: str) -> list[np.ndarray]:
    """For each question the letters answer, the `count` passages of the whole index the tower in training ranks
    highest, beyond those it is already scored against (its gold ones among them): the negatives it confuses now.
    Today's retrieval alone never shows it the passages it learns to prefer."""
    answerable = [number for number, example in enumerate(examples) if example.answerable]
    mined = [np.zeros(0, dtype=np.int64) for _ in examples]
    vectors = _encoded(tokenizer, model, [examples[number].question for number in answerable], prompt, device)
    for number, vector in zip(answerable, vectors):
        similarities = passages @ vector
        similarities[examples[number].passage_rows] = -np.inf
        best = np.argpartition(-similarities, count)[:count] if count < len(passages) else np.arange(len(passages))
        best = best[np.argsort(-similarities[best], kind="stable")]
        mined[number] = best[np.isfinite(similarities[best])]
    return mined


def _loss(question, example: TowerExample, passages: np.ndarray, threshold, settings: TowerSettings, device: str):
    """Which sentence and passage answer (contrastive, for a question the letters answer; `passages` are the example's
    and its mined negatives' vectors), and whether one does (the nearest sentence's similarity against a learned
    threshold, for every question)."""
    import torch

    similarities = torch.from_numpy(example.sentences.astype(np.float32)).to(device) @ question
    nearest = settings.temperature * torch.logsumexp(similarities / settings.temperature, 0)  # a smooth maximum
    answered = torch.nn.functional.binary_cross_entropy_with_logits(
        (nearest - threshold) / settings.temperature, torch.tensor(float(example.answerable), device=device))
    if not example.answerable:
        return settings.answerable_weight * answered
    return (_contrastive(question, example.sentences, example.sentence_labels, settings.temperature, device)
            + settings.passage_weight * _contrastive(question, passages, np.pad(example.passage_labels,
                                                                                 (0, len(passages) - len(example.passage_labels))),
                                                     settings.temperature, device)
            + settings.answerable_weight * answered)


def _contrastive(question, candidates: np.ndarray, labels: np.ndarray, temperature: float, device: str):
    """InfoNCE with several positives: -log of the positives' share of the softmax over the candidates."""
    import torch

    logits = torch.from_numpy(candidates.astype(np.float32)).to(device) @ question / temperature
    positives = torch.from_numpy(labels.astype(bool)).to(device)
    return torch.logsumexp(logits, 0) - torch.logsumexp(logits[positives], 0)


def _dev_scores(tokenizer, model, dev: TowerData, prompt: str, device: str) -> dict[str, float]:
    """How often the most similar sentence answers, a gold passage stands in the dense top 5 of the whole index (what
    the tower's own search finds, filters aside), and how well the nearest sentence's similarity parts the questions the
    letters answer from the others (AUC)."""
    top1 = hit5 = answerable = 0
    nearest, labels = [], []
    vectors = _encoded(tokenizer, model, [example.question for example in dev.examples], prompt, device)
    passages = dev.passages.astype(np.float32)
    for question, example in zip(vectors, dev.examples):
        similarities = example.sentences.astype(np.float32) @ question
        nearest.append(float(similarities.max()) if len(similarities) else 0.0)
        labels.append(example.answerable)
        if not example.answerable:
            continue
        answerable += 1
        top1 += int(example.sentence_labels[int(np.argmax(similarities))])
        shown = passages @ question
        fifth = -np.partition(-shown, 4)[4] if len(shown) > 5 else -np.inf
        hit5 += int(shown[example.passage_rows[example.passage_labels.astype(bool)]].max() >= fifth)
    return {"sentence_top1": round(top1 / max(1, answerable), 4), "passage_hit5": round(hit5 / max(1, answerable), 4),
            "answerable_auc": round(_auc(np.asarray(nearest), np.asarray(labels)), 4)}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives):
        return float("nan")
    return float((positives[:, None] > negatives[None, :]).mean() + 0.5 * (positives[:, None] == negatives[None, :]).mean())
