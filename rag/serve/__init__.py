"""Serving: the pipeline facade that the CLI, the chat, the HTTP API and the evaluation call.

`pipeline` loads the model and the index once and answers (`Pipeline.ask`, `.search`), switches
to a new index generation by itself and takes letters added or removed while serving; `slots`
bounds how many answers run at once; `uploads` keeps letters added in the chat; `api` is the
OpenAI-compatible and REST HTTP API; `server` runs the page and the API in one uvicorn process
behind its access policy. Imports every stage above it; the Gradio page (`ui/`) is handed in,
never imported.
"""
