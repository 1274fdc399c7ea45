"""Training the question tower (`rag.embed.tower`): low-rank updates to every layer of the default model, fitted so a
question lands near the stored vectors of the passage and the sentence that answer it, against the other passages
today's retrieval brings and the other sentences of the passages an answer reads. The stored vectors stay as the
plain model made them; the updates start at zero, so training starts from today's similarity.

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
    """One question and what it is scored against: passage vectors (today's top passages, and the gold ones) and
    sentence vectors (of the passages an answer reads, and the gold ones), each labelled. A question the letters
    searched do not answer has no positive: it teaches the tower to keep such questions away from every sentence."""

    question: str
    passages: np.ndarray  # (n, dimension) float16
    passage_labels: np.ndarray  # (n,) 0/1
    sentences: np.ndarray
    sentence_labels: np.ndarray

    @property
    def answerable(self) -> bool:
        return bool(self.sentence_labels.any())


def train_tower(model_folder: Path, examples: list[TowerExample], dev: list[TowerExample], settings: TowerSettings,
                query_prompt: str, progress=print) -> tuple[dict[str, np.ndarray], dict]:
    """The updates of the epoch that did best on `dev`, and the record of the training (dev before and after)."""
    quiet_libraries()
    import torch

    torch.manual_seed(settings.seed)
    order = random.Random(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer, model = _tower_model(model_folder, settings, device)
    # Where the nearest sentence's similarity parts questions the letters answer from those they do not (learned).
    threshold = torch.nn.Parameter(torch.tensor(settings.answer_similarity, device=device))
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad] + [threshold]
    optimiser = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    before = _dev_scores(tokenizer, model, dev, query_prompt, device)
    progress(f"dev before training: best sentence answers {before['sentence_top1']:.3f}, a gold passage in the dense "
             f"top 5 {before['passage_hit5']:.3f}, nearest sentence tells answerable (AUC) {before['answerable_auc']:.3f}")
    best, best_updates, history = None, _updates(model), []
    started = time.perf_counter()
    examples = list(examples)
    for epoch in range(settings.epochs):
        order.shuffle(examples)
        total = 0.0
        for first in range(0, len(examples), settings.batch):
            batch = examples[first:first + settings.batch]
            questions = _encode(tokenizer, model, [example.question for example in batch], query_prompt, device)
            loss = sum(_loss(question, example, threshold, settings, device) for question, example in zip(questions, batch)) / len(batch)
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
            best, best_updates = {"epoch": epoch + 1, **scores}, _updates(model)
    record = {"rank": settings.rank, "scale": settings.alpha / settings.rank, "targets": list(TARGETS),
              "answer_similarity": round(float(threshold.detach()), 4),
              "dev_before": before, "dev_best": best, "epochs": history, "examples": len(examples),
              "dev_examples": len(dev), "device": device, "seconds": round(time.perf_counter() - started)}
    return best_updates, record


def _merit(scores: dict[str, float]) -> float:
    """What the epoch is chosen by on dev: quoting the answer, finding its passage, knowing whether there is one."""
    return scores["sentence_top1"] + scores["passage_hit5"] + scores["answerable_auc"]


def _tower_model(model_folder: Path, settings: TowerSettings, device: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_folder))
    model = AutoModel.from_pretrained(str(model_folder), dtype=torch.float32).to(device)
    for parameter in model.parameters():
        parameter.requires_grad = False
    for layer in model.encoder.layer:
        for target in TARGETS:
            owner_path, _, name = target.rpartition(".")
            owner = layer.get_submodule(owner_path)
            setattr(owner, name, _LowRank(getattr(owner, name), settings.rank, settings.alpha))
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


def _updates(model) -> dict[str, np.ndarray]:
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


def _loss(question, example: TowerExample, threshold, settings: TowerSettings, device: str):
    """Which sentence and passage answer (contrastive, for a question the letters answer), and whether one does (the
    nearest sentence's similarity against a learned threshold, for every question)."""
    import torch

    similarities = torch.from_numpy(example.sentences.astype(np.float32)).to(device) @ question
    nearest = settings.temperature * torch.logsumexp(similarities / settings.temperature, 0)  # a smooth maximum
    answered = torch.nn.functional.binary_cross_entropy_with_logits(
        (nearest - threshold) / settings.temperature, torch.tensor(float(example.answerable), device=device))
    if not example.answerable:
        return settings.answerable_weight * answered
    return (_contrastive(question, example.sentences, example.sentence_labels, settings.temperature, device)
            + settings.passage_weight * _contrastive(question, example.passages, example.passage_labels,
                                                     settings.temperature, device)
            + settings.answerable_weight * answered)


def _contrastive(question, candidates: np.ndarray, labels: np.ndarray, temperature: float, device: str):
    """InfoNCE with several positives: -log of the positives' share of the softmax over the candidates."""
    import torch

    logits = torch.from_numpy(candidates.astype(np.float32)).to(device) @ question / temperature
    positives = torch.from_numpy(labels.astype(bool)).to(device)
    return torch.logsumexp(logits, 0) - torch.logsumexp(logits[positives], 0)


def _dev_scores(tokenizer, model, dev: list[TowerExample], prompt: str, device: str) -> dict[str, float]:
    """How often the most similar sentence answers, a gold passage stands in the dense top 5 of today's top 50, and
    how well the nearest sentence's similarity parts the questions the letters answer from the others (AUC)."""
    import torch

    model.eval()
    top1 = hit5 = answerable = 0
    nearest, labels = [], []
    with torch.no_grad():
        for first in range(0, len(dev), 64):
            batch = dev[first:first + 64]
            for question, example in zip(_encode(tokenizer, model, [e.question for e in batch], prompt, device).cpu().numpy(), batch):
                similarities = example.sentences.astype(np.float32) @ question
                nearest.append(float(similarities.max()) if len(similarities) else 0.0)
                labels.append(example.answerable)
                if not example.answerable:
                    continue
                answerable += 1
                top1 += int(example.sentence_labels[int(np.argmax(similarities))])
                shown = example.passages[:50].astype(np.float32) @ question
                hit5 += int(example.passage_labels[:50][np.argsort(-shown)[:5]].any())
    model.train()
    return {"sentence_top1": round(top1 / max(1, answerable), 4), "passage_hit5": round(hit5 / max(1, answerable), 4),
            "answerable_auc": round(_auc(np.asarray(nearest), np.asarray(labels)), 4)}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives):
        return float("nan")
    return float((positives[:, None] > negatives[None, :]).mean() + 0.5 * (positives[:, None] == negatives[None, :]).mean())
