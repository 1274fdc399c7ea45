"""The index: Documents in, a generation of searchable passages out.

Chunking (`chunking`), Dutch BM25 (`lexical`), FAISS (`vector_index`), writing a generation
(`build`, `ingest`: incremental, checkpointed, crash-safe), reading one (`store`) and showing a
cited passage in its letter (`show`). Imports `rag.readers` and the shared modules; never the
stages after it (search, answer, serve, evaluation) nor the model: ingest is handed a function
that embeds.
"""
