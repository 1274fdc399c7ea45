"""HTTP: an OpenAI-compatible chat endpoint with citations, and a small REST API. Thin routes.

Everything here calls the same pipeline functions as the CLI and the chat page: no retrieval
or answer logic in the routes. With RAG_API_KEY set, every /v1 and /api request needs
`Authorization: Bearer <key>`. Answers share the chat's answer slots: when those and their
queue are full, a request gets 429 at once.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from fastapi import APIRouter, Depends, FastAPI, Query as Parameter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from rag import __version__
from rag.answer.extractive import Answer
from rag.errors import InputError, RagError
from rag.index.show import show_served
from rag.language import shown_date
from rag.search.conversation import message_text
from rag.serve.pipeline import Pipeline, parse_filters
from rag.serve.slots import Busy, Slot

MODEL_ID = "kamerbrief-rag"


# --- request shapes ----------------------------------------------------------------------

class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat request; `temperature`, `max_tokens` and the rest are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = MODEL_ID
    messages: list[ChatMessage]
    stream: bool = False


class AskRequest(BaseModel):
    question: str
    history: list[str] = []
    doc: list[str] = []
    since: str | None = None
    until: str | None = None
    dossier: str | None = None
    ministry: str | None = None
    kind: str | None = None


class ApiError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "code"}}, with its HTTP status."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code


# --- helpers -----------------------------------------------------------------------------

def sources_block(answer: Answer) -> str:
    """The short "Bronnen" list after an answer: letter, date, section and the id `rag show` takes."""
    if not answer.citations:
        return ""
    lines = ["", "Bronnen:"]
    for citation in answer.citations:
        hit = citation.hit
        lines.append(f"[{citation.n}] {hit.title or hit.doc_id} ({shown_date(hit.date)}), {hit.section} "
                     f"— {hit.doc_id}:{citation.start}-{citation.end}")
    return "\n".join(lines)


def _key_check(key: str | None):
    """The dependency every /v1 and /api route has: with a key set, the request must bring it."""

    def require_key(request: Request) -> None:
        if key:
            _check_key(request, key)

    return require_key


_DESCRIPTION = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def _may_read_description(request: Request, key: str | None, login: tuple[str, str] | None) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and key:
        return hmac.compare_digest(value.encode(), key.encode())
    if scheme.lower() == "basic" and login:
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(f"{user}:{password}".encode(), f"{login[0]}:{login[1]}".encode())
    return False


def _check_key(request: Request, key: str) -> None:
    given = request.headers.get("authorization", "")
    token = given[7:] if given.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(token.encode(), key.encode()):
        raise ApiError(401, "geen of een verkeerde API-sleutel; stuur Authorization: Bearer <RAG_API_KEY>",
                       "invalid_request_error", "invalid_api_key")


def _answered(pipeline: Pipeline, question: str, history: list[str], filters=None) -> Answer:
    try:
        with pipeline.slots:
            return pipeline.ask(question, filters or parse_filters(), history=history)
    except Busy as busy:
        raise ApiError(429, str(busy), "rate_limit_error", "rate_limit_exceeded") from None


# --- the application ---------------------------------------------------------------------

def create_api(pipeline: Pipeline, docs_login: tuple[str, str] | None = None) -> FastAPI:
    """The API app; with a key (or a page login for a server on the network) its description at /docs and
    /openapi.json asks for them too: it lists every route."""
    app = FastAPI(title="kamerbrief-rag", version=__version__,
                  description="Vragen aan Kamerbrieven, met antwoorden die elke bewering citeren. "
                              "OpenAI-compatibel onder /v1, REST onder /api.")
    serve = pipeline.settings.serve
    if serve.api_key or docs_login:
        @app.middleware("http")
        async def guard_the_description(request: Request, call_next):
            if request.url.path in _DESCRIPTION and not _may_read_description(request, serve.api_key, docs_login):
                return Response("log in (the page's login) or send Authorization: Bearer <RAG_API_KEY>", status_code=401,
                                headers={"WWW-Authenticate": 'Basic realm="kamerbrief-rag"'})
            return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return _error_response(error.status, str(error), error.kind, error.code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _error_response(400, _first_problem(error), "invalid_request_error", "invalid_body")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> Response:
        message = {400: "de inhoud van het verzoek is geen leesbare JSON (UTF-8)", 404: "deze route bestaat niet",
                   405: "deze methode kan hier niet"}.get(error.status_code, str(error.detail))
        return _error_response(error.status_code, message, "invalid_request_error", None, error.headers)

    require_key = Depends(_key_check(serve.api_key))
    openai = APIRouter(prefix="/v1", dependencies=[require_key], tags=["OpenAI-compatible"])
    rest = APIRouter(prefix="/api", dependencies=[require_key], tags=["REST"])

    @openai.get("/models")
    def models() -> dict:
        return {"object": "list", "data": [{
            "id": MODEL_ID, "object": "model", "created": 0, "owned_by": "kamerbrief-rag",
            "metadata": {"embedding_model": pipeline.embedder.name, "answers": pipeline.answer_mode_label},
        }]}

    @openai.post("/chat/completions")
    def chat_completions(request: ChatRequest):
        asked = [message_text(m.content) for m in request.messages if m.role == "user"]
        if not asked or not asked[-1].strip():
            raise ApiError(400, "de laatste gebruikersvraag is leeg; stel een vraag", "invalid_request_error", "empty_question")
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if request.stream:
            try:
                query = pipeline.query(asked[-1], history=asked[:-1])
            except InputError as error:
                raise ApiError(400, str(error), "invalid_request_error", "invalid_question") from None
            slot = _slot(pipeline)  # taken now, so a full server says 429 before the stream starts
            return _SlotStream(slot, _stream(pipeline, query, slot, completion_id, created))
        try:
            answer = _answered(pipeline, asked[-1], asked[:-1])
        except InputError as error:
            raise ApiError(400, str(error), "invalid_request_error", "invalid_question") from None
        except RagError as error:
            raise ApiError(502, str(error), "api_error", "answer_failed") from None
        content = answer.text + sources_block(answer)
        citations = [citation.as_json() for citation in answer.citations]
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "citations": citations, "abstained": answer.abstained, "notes": list(answer.notes),
        }

    @rest.get("/search")
    def search(q: str, k: int = 5, doc: list[str] = Parameter(default=[]), since: str | None = None,
               until: str | None = None, dossier: str | None = None, ministry: str | None = None,
               kind: str | None = None) -> dict:
        if not 1 <= k <= serve.max_hits:
            raise ApiError(400, f"k moet tussen 1 en {serve.max_hits} liggen", "invalid_request_error", "bad_k")
        with _rest_errors():
            filters = parse_filters(doc, since, until, dossier, ministry, kind)
            with pipeline.slots:
                hits = pipeline.search(q, k, filters)
        return {"question": " ".join(q.split()), "hits": [hit.as_json() for hit in hits]}

    @rest.post("/ask")
    def ask(request: AskRequest) -> dict:
        with _rest_errors():
            filters = parse_filters(request.doc, request.since, request.until, request.dossier, request.ministry,
                                    request.kind)
            return _answered(pipeline, request.question, request.history, filters).as_json()

    @rest.get("/letters")
    def letters(response: Response, offset: int = 0, limit: int = serve.api_letters_limit) -> list[dict]:
        """The letters, newest first, a page at a time (`X-Total-Count` says how many there are); metadata and
        section names from what the server holds, no letter's text."""
        if offset < 0 or not 0 < limit <= serve.api_letters_limit:
            raise ApiError(400, f"offset moet 0 of meer zijn en limit tussen 1 en {serve.api_letters_limit}",
                           "invalid_request_error", "bad_page")
        index = pipeline.generation
        page = [index.letters[int(row)] for row in index.letters_by_date[::-1][offset:offset + limit]]
        response.headers["X-Total-Count"] = str(len(index.letters))
        return [{"doc_id": letter.doc_id, "title": letter.title, "date": letter.date, "kind": letter.kind,
                 "ministry": letter.ministry, "references": list(letter.references),
                 "identifiers": dict(letter.identifiers), "sections": _section_labels(index, letter.row),
                 "passages": len(index.passages_of(letter.row)), "source": letter.source} for letter in page]

    @rest.get("/letters/{doc_id}")
    def letter(doc_id: str) -> dict:
        document = pipeline.generation.document(doc_id)
        if document is None:
            raise ApiError(404, f"onbekende brief {doc_id!r}; GET /api/letters toont de doc_ids", "not_found_error", "unknown_letter")
        return {"doc_id": document.doc_id, "title": document.title, "date": document.date, "kind": document.kind,
                "ministry": document.ministry, "source": document.source, "text": document.text,
                "identifiers": dict(document.identifiers), "references": list(document.references),
                "sections": [{"label": s.label, "start": s.start, "end": s.end} for s in document.sections]}

    @rest.get("/show/{citation:path}")
    def show(citation: str) -> dict:
        with _rest_errors():
            return show_served(pipeline.generation, citation).as_json()

    for router in (openai, rest):
        @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                          include_in_schema=False)
        def unknown_route(request: Request, rest: str) -> None:
            """Under /v1 and /api an unknown route is the API's own 404, in its error object (the page would say
            its own "Not Found" otherwise)."""
            raise ApiError(404, f"{request.method} {request.url.path} bestaat niet; /docs beschrijft de routes",
                           "invalid_request_error", "unknown_route")

        app.include_router(router)
    return app


def _section_labels(index, row: int) -> list[str]:
    """The sections a letter's passages stand in, in order (read from the arrays, not from the letter's text)."""
    return [index.sections[section] for section in dict.fromkeys(index.chunk_section[index.passages_of(row)].tolist())]


@contextmanager
def _rest_errors() -> Iterator[None]:
    """A user's mistake is 400 (404 for what does not exist) with the Dutch line; busy is 429."""
    try:
        yield
    except Busy as busy:
        raise ApiError(429, str(busy), "rate_limit_error", "rate_limit_exceeded") from None
    except InputError as error:
        missing = str(error).startswith(("onbekende brief", "no letter", "no chunk"))
        raise ApiError(404 if missing else 400, str(error), "invalid_request_error") from None
    except RagError as error:
        raise ApiError(500, str(error), "api_error") from None


def _error_response(status: int, message: str, kind: str, code: str | None, headers: dict | None = None) -> JSONResponse:
    """OpenAI's error object, on every route of the API and for every error: {"error": {message, type, code}}."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status, headers=headers)


def _first_problem(error: RequestValidationError) -> str:
    """A body that does not fit the route, in one line: where and what."""
    problems = error.errors()
    if not problems:
        return "het verzoek past niet bij deze route"
    first = problems[0]
    if first.get("type") == "json_invalid":
        return "de inhoud van het verzoek is geen geldige JSON (UTF-8)"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    more = f" (en {len(problems) - 1} andere)" if len(problems) > 1 else ""
    return f"{where}: {first.get('msg', 'ongeldig')}{more}"


def _slot(pipeline: Pipeline) -> Slot:
    try:
        return pipeline.slots.take()
    except Busy as busy:
        raise ApiError(429, str(busy), "rate_limit_error", "rate_limit_exceeded") from None


class _SlotStream(StreamingResponse):
    """A stream that gives its answer slot back however it ends: finished, failed, or dropped by the client
    before or while it runs (then its generator is never run to its end, and its own `finally` never comes)."""

    def __init__(self, slot: Slot, content: Iterator[str]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.slot = slot

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def _stream(pipeline: Pipeline, query, slot, completion_id: str, created: int) -> Iterator[str]:
    """OpenAI's chunk format: the role, the answer as it is written (a generated answer's sentences as the endpoint
    streams them, each checked first), the sources, then the end with the citations."""

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        answer, written = None, []
        try:
            for part in pipeline.answer_stream(query):
                if isinstance(part, Answer):
                    answer = part
                elif part:
                    written.append(part)
                    yield chunk({"content": part})
        except RagError as error:  # the endpoint failed mid-answer: said in the stream, which has begun
            yield chunk({"content": f"\n\nLet op: {error}"}, "stop")
            yield "data: [DONE]\n\n"
            return
        if "".join(written) != answer.text:  # the endpoint's text fell back to the extractive answer
            yield chunk({"content": ("\n\n" if written else "") + answer.text})
        yield chunk({"content": sources_block(answer)})
        yield chunk({}, "stop", citations=[citation.as_json() for citation in answer.citations],
                    abstained=answer.abstained, notes=list(answer.notes))
        yield "data: [DONE]\n\n"
    finally:
        slot.release()
