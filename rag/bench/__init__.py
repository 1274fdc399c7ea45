"""Benchmarks: speed and memory (`speed`), many users at once (`load`), scale on a real corpus and
beyond it (`scale`). Measured side by side in one run, so the figures read as ratios. Imports any
stage; nothing imports it but the CLI.
"""
