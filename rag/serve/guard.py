"""The server's outer wall, before any route runs: which Host a loopback server answers, credentials before a
byte of the body is read, how large a request body may be and how slowly it may arrive.

A plain ASGI middleware around the whole app (API and page), so it sees a request before FastAPI or Gradio
reads its body: a body that says it is too large is refused at once (413), one that grows past its limit or
stalls is cut off (413, 408) and the app is told the client went away.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Awaitable, Callable

from rag.settings import ServeSettings

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
API_PREFIXES = ("/v1/", "/api/")


class Guard:
    def __init__(self, app, serve: ServeSettings, loopback: bool) -> None:
        self.app, self.serve, self.loopback = app, serve, loopback

    def body_limit(self, path: str) -> int:
        serve = self.serve
        if path.endswith("/upload"):  # the page's file upload (Gradio writes it to disk as it arrives)
            return serve.max_upload_files * serve.max_upload_bytes + 2**20
        if path == "/api/ask":
            return serve.max_question_body_bytes
        if path == "/v1/chat/completions" or path.startswith("/gradio_api/"):
            return serve.max_chat_body_bytes
        return serve.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        path = scope["path"]
        if self.loopback and not _local(headers.get("host", "")):
            # A page elsewhere that made its name point at 127.0.0.1 (DNS rebinding) reaches this server with its own name.
            await _refuse(send, 403, "this server answers only as 127.0.0.1 or localhost (the Host header named another "
                                     "name); serve with --host to be reached otherwise", path)
            return
        key = self.serve.api_key
        if key and path.startswith(API_PREFIXES) and not _bearer_matches(headers.get("authorization", ""), key):
            await _refuse(send, 401, "geen of een verkeerde API-sleutel; stuur Authorization: Bearer <RAG_API_KEY>", path,
                          code="invalid_api_key")
            return
        limit = self.body_limit(path)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "Content-Length is geen getal", path)
                return
            if int(declared) > limit:
                await _refuse(send, 413, f"het verzoek is {int(declared)} bytes; hier mag het hoogstens {limit} bytes zijn",
                              path, code="request_too_large")
                return
        await _Guarded(self.app, limit, self.serve.body_timeout_s, path)(scope, receive, send)


class _Guarded:
    """One request whose body is counted and timed as it arrives."""

    def __init__(self, app, limit: int, timeout_s: float, path: str) -> None:
        self.app, self.limit, self.timeout_s, self.path = app, limit, timeout_s, path
        self.received = 0
        self.body_done = False  # the last part of the body has come
        self.started = False  # the app has begun its response
        self.refused = False  # the guard answered instead of the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> dict:
            if self.refused:
                return {"type": "http.disconnect"}
            if self.body_done:  # after the body, a receive waits for the client to go: a stream may last long
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                return await self._cut_off(send, 408, f"het verzoek kwam niet binnen {self.timeout_s:.0f} seconden binnen",
                                           "request_timeout")
            if message["type"] == "http.request":
                self.body_done = not message.get("more_body", False)
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    return await self._cut_off(send, 413, f"het verzoek is groter dan de {self.limit} bytes die hier mogen",
                                               "request_too_large")
            return message

        async def guarded_send(message: dict) -> None:
            if self.refused:
                return  # the client has its answer from the guard already
            self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not self.refused:
                raise  # the app's own failure, for its own error handling and the log

    async def _cut_off(self, send: Send, status: int, message: str, code: str) -> dict:
        if not self.started:
            await _refuse(send, status, message, self.path, code=code)
        self.refused = True
        return {"type": "http.disconnect"}


def _local(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name.lower() in LOCAL_HOSTS


def _bearer_matches(given: str, key: str) -> bool:
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def _refuse(send: Send, status: int, message: str, path: str, code: str | None = None) -> None:
    """One line: OpenAI's error object on the API, plain text elsewhere; the connection is closed after it."""
    if path.startswith(API_PREFIXES):
        kind = "invalid_request_error" if status < 500 else "api_error"
        body = json.dumps({"error": {"message": message, "type": kind, "code": code}}, ensure_ascii=False).encode()
        content_type = b"application/json"
    else:
        body, content_type = (message + "\n").encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
