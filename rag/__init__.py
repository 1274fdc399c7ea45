"""kamerbrief-rag: answers with verifiable citations over Dutch letters to parliament.

    from rag import open_pipeline
    rag = open_pipeline()
    print(rag.ask("Wat zei Nederland over China?").text)
"""

from rag.errors import InputError, RagError

__all__ = ["InputError", "RagError", "open_pipeline", "run_ingest"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use, so that `rag --help` and `rag chunks` need no numpy or faiss.
    if name in ("open_pipeline", "run_ingest"):
        from rag.serve import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
