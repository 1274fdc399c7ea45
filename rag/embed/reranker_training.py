"""Training the sentence reranker (`rag.embed.reranker`): the first layers of the default model with low-rank updates
and a linear head, reading each training question together with each of its best candidate sentences (today's
ranking), beside today's score times a learned weight.

The loss is listwise over a question's candidates and a "none" slot. Each answerable question is taken twice: with its
candidates as they are (the target: its gold sentences) and with the gold ones taken out (the target: none). The same
question is then answered and not answered, so its wording cannot decide; a model trained on the helpers' near-topic
questions instead learned how those are worded (README). The none slot only keeps the logits in scale here: whether
to answer stays with the answer scorer and the decision fitted on dev.

Torch is imported here and only here, by `rag train`; a GPU is used when one is visible.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.embed.reranker import PAIR_TOKENS, second_text
from rag.embed.tower import TARGETS
from rag.embed.tower_training import low_rank_model, low_rank_updates
from rag.settings import RerankerSettings, quiet_libraries


@dataclass(frozen=True)
class RerankerExample:
    """A question and its best candidate sentences in today's order, with today's scores and which answer it."""

    question: str
    sections: tuple[str, ...]
    sentences: tuple[str, ...]
    scores: np.ndarray  # (n,) float32
    labels: np.ndarray  # (n,) bool


def train_reranker(model_folder: Path, training: list[RerankerExample], dev: list[RerankerExample],
                   settings: RerankerSettings, query_prompt: str, progress=print) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays `tower.write_updates` stores (updates and head) of the epoch that did best on `dev`, and the
    record of the training (dev before and after)."""
    quiet_libraries()
    import torch


    torch.manual_seed(settings.seed)
    order = random.Random(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer, model = low_rank_model(model_folder, settings.rank, settings.alpha, device, settings.layers)
    head = torch.nn.Linear(model.config.hidden_size, 1).to(device)
    torch.nn.init.normal_(head.weight, std=0.02)
    torch.nn.init.zeros_(head.bias)
    score_weight = torch.nn.Parameter(torch.tensor(settings.score_weight, device=device))
    none = torch.nn.Parameter(torch.tensor(settings.none_start, device=device))
    optimiser = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": settings.learning_rate},
        {"params": list(head.parameters()), "lr": settings.head_learning_rate},
        {"params": [score_weight, none], "lr": settings.scalar_learning_rate}], weight_decay=0.0)

    def logits(example: RerankerExample):
        batch = tokenizer([query_prompt + example.question] * len(example.sentences),
                          [second_text(section, sentence) for section, sentence in zip(example.sections, example.sentences)],
                          padding=True, truncation="only_second", max_length=PAIR_TOKENS, return_tensors="pt").to(device)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    def full(example: RerankerExample, cross):
        return score_weight * torch.from_numpy(example.scores).to(device) + cross

    def dev_scores() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            chosen = [example.labels[int(torch.argmax(full(example, logits(example))))] for example in dev]
        model.train()
        return {"gold_first": round(float(np.mean(chosen)), 4)}

    before = {"gold_first": round(float(np.mean([example.labels[int(np.argmax(example.scores))] for example in dev])), 4)}
    progress(f"sentence reranker: dev before training (today's ranking): gold sentence first {before['gold_first']:.3f}")
    best, best_arrays, history = None, None, []
    started = time.perf_counter()
    for epoch in range(settings.epochs):
        examples = list(training)
        order.shuffle(examples)
        total = 0.0
        for first in range(0, len(examples), settings.batch):
            loss = 0.0
            for example in examples[first:first + settings.batch]:
                scored = full(example, logits(example))
                gold = torch.from_numpy(example.labels).to(device)
                answered = torch.logsumexp(torch.cat([scored, none.view(1)]), 0) - torch.logsumexp(scored[gold], 0)
                unanswered = torch.logsumexp(torch.cat([scored[~gold], none.view(1)]), 0) - none
                loss = loss + answered + unanswered
            loss = loss / len(examples[first:first + settings.batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            if first // settings.batch % 500 == 0:
                progress(f"sentence reranker: epoch {epoch + 1}, {first}/{len(examples)} questions, loss "
                         f"{total / (first // settings.batch + 1):.3f} ({time.perf_counter() - started:.0f} s)")
        scores = dev_scores()
        history.append({"epoch": epoch + 1, **scores})
        progress(f"sentence reranker: epoch {epoch + 1}: dev gold sentence first {scores['gold_first']:.3f} "
                 f"({time.perf_counter() - started:.0f} s)")
        if best is None or scores["gold_first"] > best["gold_first"]:
            best = {"epoch": epoch + 1, **scores}
            best_arrays = {**low_rank_updates(model), "head.weight": head.weight.detach().cpu().numpy().copy(),
                           "head.bias": head.bias.detach().cpu().numpy().copy()}
            best_scalars = {"score_weight": round(float(score_weight.detach()), 4), "none": round(float(none.detach()), 4)}
    record = {"layers": settings.layers, "rank": settings.rank, "scale": settings.alpha / settings.rank,
              "targets": list(TARGETS), **best_scalars, "dev_before": before, "dev_best": best, "epochs": history,
              "examples": len(training), "dev_examples": len(dev), "device": device,
              "seconds": round(time.perf_counter() - started)}
    return best_arrays, record
