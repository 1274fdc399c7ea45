"""The question tower: the default model with low-rank updates (LoRA) to its attention and feed-forward layers,
trained by `rag train` so that a question in a user's words lands near the passage and the sentence that answer
it. Passages keep the plain model's vectors, so an index needs nothing embedded again; only questions go through
the tower.

What is committed is the updates alone (`rag/embed/question_tower.npz`, a few MB): the tuned encoder is built from
the package weights plus those, as the default model itself is built, into the model's cache folder
(`onnx/question-<id>.onnx`), and run on ONNX Runtime like the plain encoder. No process that answers imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from rag.files import built_once

# The six linear maps of a BERT layer that carry updates: attention's query, key, value and output, and the
# feed-forward's two.
TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")


def tower_id(path: Path) -> str | None:
    """What identifies a trained tower (the first 12 hex digits of its file's SHA-256); None when there is none."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return None


def read_updates(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """A trained file's arrays (the tower's and the sentence reranker's updates, `layer.{i}.{target}.a` of rank x in,
    `.b` of out x rank; the reranker's head beside them) and what was recorded with them."""
    with np.load(path) as stored:
        updates = {name: stored[name].astype(np.float32) for name in stored.files if name != "record"}
        record = json.loads(str(stored["record"]))
    return updates, record


def write_updates(path: Path, updates: dict[str, np.ndarray], record: dict) -> None:
    """The arrays in fp16 (a few MB at most) with their record (rank, scale, data hash, metrics), written atomically."""
    arrays = {name: value.astype(np.float16) for name, value in updates.items()}
    with tempfile.NamedTemporaryFile(dir=Path(path).parent, suffix=".npz", delete=False) as handle:
        np.savez_compressed(handle, record=np.array(json.dumps(record, sort_keys=True)), **arrays)
    os.chmod(handle.name, 0o644)  # a file of the project, readable like the rest
    os.replace(handle.name, path)


def merged_state(state: dict[str, np.ndarray], updates: dict[str, np.ndarray], scale: float) -> dict[str, np.ndarray]:
    """The encoder's weights with the updates added in: W + scale * B @ A for every updated map."""
    merged = dict(state)
    for name in {key.rsplit(".", 1)[0] for key in updates}:
        weight = f"encoder.{name}.weight"
        merged[weight] = state[weight].astype(np.float32) + scale * (updates[f"{name}.b"] @ updates[f"{name}.a"])
    return merged


def updated_encoder(model_folder: Path, path: Path, kind: str) -> Path | None:
    """The encoder with a trained file's updates merged in (the question tower's; the sentence reranker's, of the first
    layers its record names) as an ONNX graph in the model's cache folder, `onnx/{kind}-{id}.onnx`, built on first use
    (atomically); None without a trained file."""
    identity = tower_id(path)
    if identity is None:
        return None

    def build(staging: Path) -> None:
        from safetensors.numpy import load_file

        from rag.embed.convert import export_encoder

        arrays, record = read_updates(path)
        updates = {name: value for name, value in arrays.items() if name.startswith("layer.")}
        state = {name: value.astype(np.float32)
                 for name, value in load_file(str(Path(model_folder) / "model.safetensors")).items()}
        export_encoder(Path(model_folder), merged_state(state, updates, float(record["scale"])), staging,
                       layers=record.get("layers"))

    return built_once(Path(model_folder) / "onnx" / f"{kind}-{identity}.onnx", build)
