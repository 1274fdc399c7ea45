"""`rag serve`: the chat page and the HTTP API in one uvicorn process, behind the access policy.

The page is built by the caller (`ui.app.build_app`) and handed in, so serving imports no UI.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import Callable

from rag.errors import InputError, RagError
from rag.serve.pipeline import Pipeline
from rag.settings import DEFAULT_DATA, LOOPBACK, ServeSettings


def free_port(host: str, port: int, tries: int = 20) -> int:
    """`port` or the first free one after it on `host`; with port 0, any port nothing listens on right now."""
    if port == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            return probe.getsockname()[1]
    for candidate in range(port, port + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
                return candidate
            except OSError:
                continue
    raise RagError(f"ports {port}-{port + tries - 1} on {host} are all taken; stop the other program or give --port")


def _limit_malloc_arenas() -> None:
    """glibc gives every worker thread its own malloc arena; under load that reads as memory growth."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


class Served:
    """A running `rag serve`: the chat page and the HTTP API in one uvicorn server."""

    def __init__(self, server, thread: threading.Thread | None, url: str) -> None:
        self.server, self.thread, self.url = server, thread, url

    def close(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(30)


def check_exposure(host: str, serve: ServeSettings, insecure: bool) -> None:
    """Beyond loopback, every route that reads letters or changes the index needs credentials: the page a login,
    the API a key. Without them the server does not start, unless `insecure` says so on purpose."""
    if host in LOOPBACK or insecure or (serve.api_key and serve.ui_login):
        return
    missing = " and ".join(name for name, absent in (("RAG_API_KEY", not serve.api_key),
                                                      ("RAG_UI_USER/RAG_UI_PASSWORD", serve.ui_login is None)) if absent)
    raise InputError(f"serving on {host} makes the letters visible on the network: set {missing} first "
                     f"(or give --insecure to serve them to anyone who can reach this machine)")


# Mounts the chat page on the API app: (api, pipeline, data_dir, uploads_allowed, login) -> the app to serve.
MountPage = Callable[..., object]


def launch(pipeline: Pipeline, mount_page: MountPage, host: str = "127.0.0.1", port: int = 7860,
           data_dir: Path = DEFAULT_DATA, block: bool = True, insecure: bool = False) -> tuple[Served, str]:
    """Serve the chat page at / and the API at /v1 and /api, from one process and one pipeline; a taken port
    moves to the next free one, said aloud. Beyond this machine, every route that reads letters or changes the
    index asks for credentials: without an API key and a page login the server refuses to start, unless
    `insecure` is given."""
    import uvicorn

    from rag.serve.api import create_api
    from rag.serve.guard import Guard

    serve = pipeline.settings.serve
    check_exposure(host, serve, insecure)
    exposed = host not in LOOPBACK
    login = serve.ui_login if exposed else None
    chosen = free_port(host, port)
    if chosen != port:
        print(f"rag: port {port} is taken; serving on port {chosen} instead", file=sys.stderr)
    if exposed:
        print(f"rag: warning: serving on {host}: the letters become visible on the network"
              + ("" if login and serve.api_key else ", without credentials (--insecure)"), file=sys.stderr)
    _limit_malloc_arenas()
    cut_off = pipeline.index_cut_off_uploads()
    for warning in cut_off.warnings if cut_off else ():
        print(f"rag: {warning}", file=sys.stderr)
    # Letters can be added and removed from the page on this machine, or behind the login when the page is exposed.
    api = create_api(pipeline, docs_login=login if exposed else None)
    app = Guard(mount_page(api, pipeline, data_dir, not exposed or login is not None, login), serve, loopback=not exposed)
    pipeline.watch()  # a new generation from `rag ingest` goes live between requests
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{chosen}"
    # Open streams (a browser, a gradio_client) do not hold up a Ctrl-C or SIGTERM for more than a few seconds.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=chosen, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=3, limit_concurrency=serve.max_connections))
    print(f"rag: the chat runs on {url}, the API on {url}/v1 and {url}/api (docs: {url}/docs; Ctrl-C stops it)",
          file=sys.stderr)
    if block:
        server.run()
        return Served(server, None, url), url
    thread = threading.Thread(target=server.run, name="rag-serve", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)  # waiting for the server's own "started" event, not for a number of seconds
    if not server.started:
        raise RagError(f"the server on {host}:{chosen} did not start; see the messages above")
    return Served(server, thread, url), url
