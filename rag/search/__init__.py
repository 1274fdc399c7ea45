"""Search: a question (and the conversation before it) in, ranked passages (`Hit`s) out.

`conversation` resolves a follow-up against the previous turn once; `retrieval` reads the time
a question names, applies filters as arrays and ranks passages by dense and BM25 scores fused
with the best sentence's similarity. Imports the index and the readers' shared pieces; never the
answer, serve or evaluation stages, nor the model (the question's vector is handed in).
"""
