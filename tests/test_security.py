"""Attacks on a real `rag serve`, started as a user starts it, in each serving mode: on this machine only, and
on the network with an API key and a page login. Each attack is a table; each must be refused with one line while
the server goes on answering, nothing may be read, copied or indexed that the server should not, and the server's
memory stays near its resting size through all of it."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from rag.bench.speed import resident_memory_mb, start_server
from rag.serve.server import free_port
from rag.settings import PROJECT_ROOT, ServeSettings

from conftest import SEEDS, run_rag

pytestmark = pytest.mark.slow

KEY, USER, PASSWORD = "sleutel-voor-de-test", "analist", "wachtwoord"
MODES = {
    "loopback": ("127.0.0.1", {}),
    "network": ("0.0.0.0", {"RAG_API_KEY": KEY, "RAG_UI_USER": USER, "RAG_UI_PASSWORD": PASSWORD}),
}
SEED_ID = "000_cee59b6ea59e1ee0"
FAKE = ("Tweede Kamer der Staten-Generaal\n\nBetreft: een valse brief\n\nGeachte voorzitter,\n\nDeze brief is vals. "
        "Nederland steunt de aanpak van China zonder enig voorbehoud en ziet geen enkel risico.\n\nDe minister\n")


@dataclass
class Served:
    mode: str
    url: str
    process: subprocess.Popen
    index_dir: Path
    secret: Path  # a file on the server that no client may read through it
    cache: Path  # Gradio's upload cache of this server
    resting_mb: float
    started_with: str  # what the server said when it started
    client: httpx.Client = field(repr=False, default=None)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def letters(self) -> dict[str, dict]:
        response = self.client.get("/api/letters")
        response.raise_for_status()
        return {letter["doc_id"]: letter for letter in response.json()}

    def event(self, name: str, data: list) -> dict:
        """One event of the page, as the browser sends it (queue/join, then its stream); the final message."""
        dependencies = self.client.get("/config").json()["dependencies"]
        index = next(number for number, dependency in enumerate(dependencies) if dependency.get("api_name") == name)
        return self.event_at(index, data)

    def event_at(self, index: int, data: list) -> dict:
        session = uuid.uuid4().hex
        joined = self.client.post("/gradio_api/queue/join", json={"data": data, "fn_index": index, "session_hash": session,
                                                                   "event_data": None, "trigger_id": None})
        if joined.status_code != 200:
            return {"success": False, "refused": joined.status_code, "text": joined.text}
        with self.client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}, timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return message
        raise AssertionError("the event stream ended without its result")

    def upload(self, name: str, content: bytes) -> dict:
        """A file sent to the page's upload field, then its "add letters" event: the final message."""
        uploaded = self.client.post("/gradio_api/upload", files=[("files", (name, content, "application/octet-stream"))])
        uploaded.raise_for_status()
        return self.event("add_uploaded", [[_file_data(uploaded.json()[0], name)]])


def _file_data(path: str | Path, name: str = "brief.txt") -> dict:
    return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}, "mime_type": "text/plain"}


def _note(message: dict) -> str:
    """The line the letters panel shows after an upload."""
    assert message["success"], message
    return message["output"]["data"][0]


@pytest.fixture(scope="module", params=list(MODES))
def served(request, seed_index_dir, tmp_path_factory):
    host, env = MODES[request.param]
    work = tmp_path_factory.mktemp(f"served-{request.param}")
    index_dir = work / "index"
    shutil.copytree(seed_index_dir, index_dir)
    # An upload a stop cut off before it was indexed: the server indexes it when it starts, and says so.
    (index_dir / "uploads").mkdir()
    (index_dir / "uploads" / "afgebroken.txt").write_text(FAKE.replace("vals", "half geupload"), encoding="utf-8")
    secret = work / "geheim.txt"
    secret.write_text(f"GEHEIM-{uuid.uuid4().hex}\n", encoding="utf-8")
    cache = work / "gradio-cache"
    port = free_port("127.0.0.1", 0)
    process = start_server(index_dir, port, work / "data", host=host,
                           env={**os.environ, **env, "GRADIO_TEMP_DIR": str(cache)})
    said = []
    while not said or "the chat runs on" not in said[-1]:  # printed before it serves, so all there by now
        said.append(process.stderr.readline())
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {KEY}"} if env else {})
    if env:
        client.post("/login", data={"username": USER, "password": PASSWORD}).raise_for_status()  # the page's cookie
    server = Served(request.param, url, process, index_dir, secret, cache, 0.0, "".join(said), client)
    for question in ("Wat zei Nederland over China?", "Wat is de inzet in Afghanistan?"):  # warm, then measure
        client.post("/api/ask", json={"question": question}).raise_for_status()
    server.resting_mb = resident_memory_mb(process.pid)
    yield server
    client.close()
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("rag serve did not stop on SIGTERM")


# --- 1. files on the server named in page events ---------------------------------------------

def test_a_server_file_named_in_any_page_event_is_refused_and_never_copied_served_or_indexed(served):
    before = set(served.letters())
    secret_text = served.secret.read_text(encoding="utf-8").strip()
    config = served.client.get("/config").json()
    kinds = {component["id"]: component["type"] for component in config["components"]}
    attacked = 0
    for index, dependency in enumerate(config["dependencies"]):
        inputs = [component for component in dependency["inputs"] if kinds[component] != "state"]
        for position, component in enumerate(inputs):
            data: list = [None] * len(inputs)
            file = _file_data(served.secret, "geheim.txt")
            if kinds[component] == "chatbot":
                data[position] = [{"role": "user", "content": [{"type": "file", "file": file}]},
                                  {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]
            elif kinds[component] == "file":
                data[position] = [file]
            else:
                data[position] = file
            message = served.event_at(index, data)
            attacked += 1
            assert secret_text not in json.dumps(message), (dependency.get("api_name"), kinds[component])
            for path in _paths_in(message):
                assert secret_text not in served.client.get(f"/gradio_api/file={path}").text
    assert attacked >= 10  # every page event with an input, each input in turn
    assert not [path for path in served.cache.rglob("*") if path.is_file() and secret_text in _text_of(path)]
    assert set(served.letters()) == before
    assert secret_text not in served.client.get(f"/gradio_api/file={served.secret}").text


def _paths_in(message: dict) -> list[str]:
    found = []

    def walk(value) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("path"), str):
                found.append(value["path"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(message)
    return found


def _text_of(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


# --- 2. traversal and odd names ---------------------------------------------------------------

TRAVERSALS = [
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/letters/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/letters/%2Fetc%2Fpasswd",
    "/api/letters/%00",
    "/api/letters/" + "a" * 5000,
    "/api/show/..%2F..%2Fetc%2Fpasswd:0-100",
    "/api/show/000_cee59b6ea59e1ee0:-5-999999999999",
    "/api/search?q=China&doc=..%2F..%2Fetc%2Fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_in_any_route_is_a_clean_refusal(served, path):
    response = served.client.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
    assert "root:" not in response.text and "Traceback" not in response.text
    if path.startswith(("/api/", "/v1/")):
        assert set(response.json()["error"]) >= {"message", "type"}


ODD_NAMES = ["../../buiten.txt", "..", "metadata.xml", "regel\nbreuk.txt", "x" * 240 + ".txt", ".verborgen.txt",
             "geen-brief.exe", "brief.TXT"]


def test_uploads_with_odd_names_stay_in_the_uploads_folder_or_are_refused_in_one_line(served):
    outside_before = {path for path in served.index_dir.parent.rglob("*") if "gradio-cache" not in path.parts}
    for name in ODD_NAMES:
        uploaded = served.client.post("/gradio_api/upload", files=[("files", (name, FAKE.encode(), "text/plain"))])
        if uploaded.status_code != 200:
            continue  # Gradio refused the name itself
        message = served.event("add_uploaded", [[_file_data(uploaded.json()[0], name)]])
        # Refused by the page (one line), or by Gradio's own check of the type (its one-line error).
        note = message["output"]["data"][0] if message["success"] else message["output"]["error"]
        assert note and "\n" not in note.strip() and "Traceback" not in note, (name, message)
    stored = [path for path in (served.index_dir / "uploads").iterdir() if not path.name.startswith(".")]
    assert all(path.name == path.name.encode("ascii", "ignore").decode() and "\n" not in path.name for path in stored)
    new_elsewhere = {path for path in served.index_dir.parent.rglob("*") if "gradio-cache" not in path.parts
                     } - outside_before
    assert all(served.index_dir in path.parents for path in new_elsewhere), new_elsewhere
    assert not any(path.name == "metadata.xml" for path in stored)


# --- 3. streams dropped by the client ---------------------------------------------------------

def test_streams_dropped_at_once_give_their_answer_slots_back(served):
    body = json.dumps({"model": "kamerbrief-rag", "stream": True,
                       "messages": [{"role": "user", "content": "Wat zei Nederland over China?"}]}).encode()
    auth = f"Authorization: Bearer {KEY}\r\n" if served.mode == "network" else ""
    for _ in range(2 * ServeSettings().answer_slots + 2):  # more streams than slots, each closed as it is sent
        with socket.create_connection(("127.0.0.1", served.port)) as connection:
            connection.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: "
                               f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    # With a slot lost per dropped stream, this would wait for a slot that never comes (and time out).
    search = served.client.get("/api/search", params={"q": "China"}, timeout=60)
    assert search.status_code == 200 and search.json()["hits"]
    answer = served.client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Wat zei Nederland over Rusland?"}]},
                                timeout=60)
    assert answer.status_code == 200 and answer.json()["citations"]


# --- 4. bodies: credentials first, then their size --------------------------------------------

def _raw_request(server: Served, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as connection:
        connection.sendall(head.encode() + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            part = connection.recv(65536)
            if not part:
                break
            reply += part
    status = int(reply.split(b" ", 2)[1]) if reply else 0
    return status, reply


@pytest.mark.parametrize("path", ["/api/ask", "/v1/chat/completions", "/gradio_api/queue/join", "/api/letters"])
@pytest.mark.parametrize("with_key", [False, True])
def test_a_huge_body_is_refused_before_a_byte_of_it_is_read(served, path, with_key):
    """200 MB announced and never sent: the answer comes at once (401 without the key on the network, 413
    otherwise), without waiting for the body; the server's memory does not grow by the body."""
    auth = f"Authorization: Bearer {KEY}\r\n" if with_key else ""
    status, reply = _raw_request(served, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
                                         f"Content-Length: {200 * 2**20}\r\n\r\n")
    needs_key = served.mode == "network" and not with_key and path.startswith(("/api/", "/v1/"))
    assert status == (401 if needs_key else 413), reply[:300]


def test_a_chunked_body_that_grows_past_its_limit_is_cut_off(served):
    auth = f"Authorization: Bearer {KEY}\r\n" if served.mode == "network" else ""
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4))  # 256 KB, past /api/ask's 64 KB
    status, reply = _raw_request(served, f"POST /api/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
                                         "Transfer-Encoding: chunked\r\n\r\n", body)
    assert status == 413, reply[:300]
    assert served.client.get("/api/search", params={"q": "China"}).status_code == 200


# --- 5. uploads never replace a letter --------------------------------------------------------

def test_an_upload_never_replaces_a_letter_and_colliding_names_are_both_kept(served):
    seed_text = served.client.get(f"/api/letters/{SEED_ID}").json()["text"]
    note = _note(served.upload(f"{SEED_ID}.txt", FAKE.encode()))
    assert f"opgeslagen als {SEED_ID}-2" in note.replace("\\", "")
    assert served.client.get(f"/api/letters/{SEED_ID}").json()["text"] == seed_text
    assert "Deze brief is vals" in served.client.get(f"/api/letters/{SEED_ID}-2").json()["text"]
    again = _note(served.upload(f"{SEED_ID}.txt", FAKE.encode()))
    assert "staat al in de index" in again and f"{SEED_ID}-3" not in served.letters()

    for name, which in (("Nota.txt", "de eerste"), ("nota.txt", "de tweede"), ("nota ü.txt", "de derde")):
        _note(served.upload(name, FAKE.replace("is vals", f"is {which}").encode()))
    for doc_id, which in (("nota", "de eerste"), ("nota-2", "de tweede"), ("nota-u", "de derde")):
        assert f"Deze brief is {which}" in served.client.get(f"/api/letters/{doc_id}").json()["text"]
    ingest = run_rag("ingest", str(SEEDS), "--index", str(served.index_dir))
    assert ingest.returncode == 0, ingest.stderr
    assert {"nota", "nota-2", "nota-u", f"{SEED_ID}-2", SEED_ID} <= set(served.letters())  # an ingest keeps them all


# --- 6. XML bombs ------------------------------------------------------------------------------

BOMB = ('<?xml version="1.0" encoding="{encoding}"?>\n<!DOCTYPE bom [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>\n'
        '<officiele-publicatie><al>&c;&c;&c;&c;&c;&c;&c;&c;</al></officiele-publicatie>\n')
ENCODINGS = {"utf-8": ("UTF-8", "utf-8", b""), "utf-16-le": ("UTF-16", "utf-16-le", codecs.BOM_UTF16_LE),
             "utf-16-be": ("UTF-16", "utf-16-be", codecs.BOM_UTF16_BE), "utf-16-le-no-bom": ("UTF-16", "utf-16-le", b""),
             "utf-32-le": ("UTF-32", "utf-32-le", codecs.BOM_UTF32_LE), "utf-32-be": ("UTF-32", "utf-32-be", codecs.BOM_UTF32_BE)}


def _bomb(encoding: str) -> bytes:
    declared, codec, mark = ENCODINGS[encoding]
    return mark + BOM.format(encoding=declared).encode(codec)


BOM = BOMB


def test_xml_bombs_uploaded_in_every_encoding_are_refused(served):
    before = set(served.letters())
    for encoding in ENCODINGS:
        note = _note(served.upload(f"bom-{encoding}.xml", _bomb(encoding)))
        assert "Niet toegevoegd" in note and "DOCTYPE" in note, (encoding, note)
    assert set(served.letters()) == before
    assert not list((served.index_dir / "uploads").glob("bom-*"))


def test_xml_bombs_and_honest_xml_in_every_encoding_on_the_command_line(tmp_path):
    honest = next((PROJECT_ROOT / "tests" / "data" / "real").rglob("kst-*.xml"))
    text = honest.read_text(encoding="utf-8")
    for encoding in ENCODINGS:
        (tmp_path / f"bom-{encoding}.xml").write_bytes(_bomb(encoding))
        declared, codec, mark = ENCODINGS[encoding]
        (tmp_path / f"echt-{encoding}.xml").write_bytes(mark + text.replace('encoding="UTF-8"', f'encoding="{declared}"', 1)
                                                         .replace("encoding='UTF-8'", f"encoding='{declared}'", 1).encode(codec))
    chunks = run_rag("chunks", "--json", str(tmp_path))
    assert chunks.returncode == 3, chunks.stderr  # letters skipped, the rest read
    refused = [line for line in chunks.stderr.splitlines() if "DOCTYPE or entities" in line]
    assert len(refused) == len(ENCODINGS) and "Traceback" not in chunks.stderr
    read = {json.loads(line)["doc_id"] for line in chunks.stdout.splitlines()}
    assert read == {f"echt-{encoding}" for encoding in ENCODINGS}  # the same letter reads in every encoding
    assert len(chunks.stdout) < 20 * len(text) * len(ENCODINGS)  # nothing expanded


# --- 7. nothing before the login; errors in OpenAI's shape; the Host a loopback server answers ---

def test_nothing_about_the_letters_before_login(served):
    if served.mode != "network":
        pytest.skip("only a server on the network has a login")
    anonymous = httpx.Client(base_url=served.url, timeout=60)
    page = anonymous.get("/")
    assert page.status_code == 200
    for letter in served.letters().values():
        assert letter["doc_id"] not in page.text and letter["title"] not in page.text
    for path in ("/config", "/gradio_api/info", "/api/letters", "/openapi.json"):
        assert anonymous.get(path).status_code == 401, path


@pytest.mark.parametrize("request_", [
    ("POST", "/v1/chat/completions", {"json": {}}),
    ("POST", "/v1/chat/completions", {"content": b"\xff\xfe{niet-utf8", "headers": {"Content-Type": "application/json"}}),
    ("POST", "/v1/chat/completions", {"content": b"geen json", "headers": {"Content-Type": "application/json"}}),
    ("POST", "/v1/chat/completions", {"json": {"messages": "tekst"}}),
    ("GET", "/v1/bestaat-niet", {}),
    ("DELETE", "/v1/models", {}),
    ("GET", "/api/search?q=China&k=veel", {}),
    ("POST", "/api/ask", {"json": {"question": ["lijst"]}}),
], ids=lambda request_: f"{request_[0]} {request_[1]}")
def test_api_errors_are_always_openai_error_objects(served, request_):
    method, path, arguments = request_
    response = served.client.request(method, path, **arguments)
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error["message"] and "\n" not in error["message"] and error["type"] == "invalid_request_error"


def test_a_loopback_server_answers_only_to_its_own_names(served):
    if served.mode != "loopback":
        pytest.skip("a server on the network is reached by whatever name the network gives it")
    for host, allowed in (("localhost", True), (f"127.0.0.1:{served.port}", True), ("rebind.example.com", False),
                          ("127.0.0.1.nip.io", False)):
        response = served.client.get("/api/letters", headers={"Host": host})
        assert (response.status_code == 200) == allowed, (host, response.status_code)
    assert "127.0.0.1 or localhost" in served.client.get("/", headers={"Host": "rebind.example.com"}).text


# --- 8. a fuzz of the API from its own description ---------------------------------------------

def test_a_fuzz_of_the_api_from_its_openapi_description_finds_no_5xx_or_hang(served, tmp_path):
    headers = ["-H", f"Authorization: Bearer {KEY}"] if served.mode == "network" else []
    fuzz = subprocess.run([str(Path(sys.executable).with_name("schemathesis")), "run", f"{served.url}/openapi.json", *headers,
                           "--checks", "not_a_server_error", "--max-examples", "12", "--max-response-time", "30",
                           "--request-timeout", "60", "--seed", "7", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert fuzz.returncode == 0, fuzz.stdout[-3000:]
    assert served.client.get("/api/search", params={"q": "China"}).status_code == 200


# --- 9. after all of it ------------------------------------------------------------------------

def test_after_the_attacks_the_server_answers_and_its_memory_is_near_its_resting_size(served):
    answer = served.client.post("/api/ask", json={"question": "Wat zei Nederland over China?"})
    assert answer.status_code == 200 and answer.json()["citations"]
    assert resident_memory_mb(served.process.pid) - served.resting_mb <= 100


def test_an_upload_cut_off_by_a_stop_is_indexed_when_the_server_starts_and_said(served):
    assert "were not indexed yet" in served.started_with and "indexing them now: afgebroken.txt" in served.started_with
    assert "afgebroken" in served.letters()


# --- 10. the guard itself, with the faults made at its seams ----------------------------------

def _through_guard(receive_parts, headers: list[tuple[bytes, bytes]], path: str = "/api/ask", timeout_s: float = 0.05):
    """One request through the real Guard around an app that reads its whole body; what the client got."""
    import asyncio

    from rag.serve.guard import Guard

    sent: list[dict] = []

    async def app(scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    async def receive() -> dict:
        part = receive_parts.pop(0) if receive_parts else None
        if part is None:
            await asyncio.Event().wait()  # a client that stopped sending: never returns
        return {"type": "http.request", "body": part, "more_body": bool(receive_parts)}

    async def send(message: dict) -> None:
        sent.append(message)

    guard = Guard(app, ServeSettings(body_timeout_s=timeout_s), loopback=True)
    scope = {"type": "http", "path": path, "headers": [(b"host", b"127.0.0.1:7860"), *headers]}
    asyncio.run(asyncio.wait_for(guard(scope, receive, send), 10))
    return sent[0]["status"], b"".join(message.get("body", b"") for message in sent[1:])


def test_the_guard_cuts_off_a_body_that_stalls_or_outgrows_its_route_and_passes_one_that_fits():
    status, body = _through_guard([b"x" * 100, None], [])  # the client stops halfway
    assert status == 408 and b"niet binnen" in body
    status, body = _through_guard([b"x" * 40_000, b"x" * 40_000, b"x"], [])  # 80 KB, no length, for a 64 KB route
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    status, body = _through_guard([b"x" * 1000], [(b"content-length", b"1000")])
    assert status == 200 and body == b"read"
