"""The index: Documents in, a generation of searchable passages out.

Chunking (`chunking`), Dutch BM25 (`lexical`), FAISS (`vector_index`), writing a generation
(`ingest`, `unchanged`, `vector_pool`: what changed, incremental and checkpointed; `segments`: its
files, new letters appended as a segment or all merged; `build`: crash-safe, made live), reading one
(`store`) and showing a cited passage in its letter (`show`). Imports `rag.readers` and the shared modules; never the
stages after it (search, answer, serve, evaluation) nor the model: ingest is handed a function
that embeds.
"""
