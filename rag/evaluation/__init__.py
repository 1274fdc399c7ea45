"""Evaluation: the eval set and a pipeline in, metrics per corpus, split and kind out.

`metrics` are small pure functions over spans; `dataset` reads the questions and locates their
evidence in the stored letters; `runner` runs a pipeline configuration over them and gates the
result against the baseline; `calibrate` fits the abstention thresholds on the dev split;
`compare` lists the configurations set side by side; `reports` writes tables, charts and TREC
runs. Imports the serve facade (the same functions the CLI and the chat call) and the stages
above it; never the server or the UI.
"""
