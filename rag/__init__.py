"""kamerbrief-rag: answers with verifiable citations over Dutch letters to parliament."""

from rag.errors import InputError, RagError

__all__ = ["InputError", "RagError"]
__version__ = "0.1.0"
