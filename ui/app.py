"""The Gradio chat page, in Dutch. Thin: every answer comes from `rag.serve.pipeline.Pipeline`."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from rag import config  # noqa: E402
from rag.answer.extractive import Answer  # noqa: E402
from rag.search.conversation import Conversation  # noqa: E402
from rag.errors import InputError, RagError  # noqa: E402
from rag.serve.feedback import record_feedback  # noqa: E402
from rag.serve.pipeline import Pipeline, parse_filters, store_letters  # noqa: E402
from ui.render import answer_markdown, as_markdown_text, letter_html, notes_markdown, sources_html  # noqa: E402

log = logging.getLogger("rag.ui")

EXAMPLES = [
    "Wat zei Nederland over China?",
    "Wat is de Nederlandse inzet in Afghanistan?",
    "Wat staat er in de laatste brief over Rusland?",
    "What did the ministers agree about Afghanistan?",
]
EMPTY_LETTER = "<div class='sources-empty'>Klik op een bron [n] om de brief te openen.</div>"
FAILURE = "Er ging iets mis bij het beantwoorden van deze vraag. Probeer het opnieuw; de details staan in het logboek."

CSS = """
.sources .source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; margin: 8px 0; }
.sources .meta { font-size: 0.85em; color: var(--body-text-color-subdued); margin-bottom: 4px; }
.sources .where { font-size: 0.75em; color: var(--body-text-color-subdued); }
.sources .related { opacity: 0.85; border-style: dashed; }
.sources mark, .letter mark { background: #ffe58a; color: inherit; }
.letter { max-height: 520px; overflow-y: auto; border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px; }
.letter-body { white-space: pre-wrap; line-height: 1.45; }
.passage-shade { background: rgba(255, 229, 138, 0.25); }
#status { font-size: 0.85em; }
"""

# A click on [n] (in the answer or the source list) asks the server for that letter view.
HEAD = """
<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest('a[href^="#cite-"]');
  if (!link) return;
  event.preventDefault();
  event.stopPropagation();
  const box = document.querySelector("#cite-target textarea, #cite-target input");
  if (!box) return;
  box.value = link.getAttribute("href").slice("#cite-".length);
  box.dispatchEvent(new Event("input", { bubbles: true }));
  setTimeout(() => document.querySelector("#cite-open")?.click(), 80);
}, true);
</script>
"""
SCROLL_TO_CITATION = "() => { setTimeout(() => document.querySelector('#letter-view mark.cited')?.scrollIntoView({block: 'center'}), 150); }"


def status_line(pipeline: Pipeline) -> str:
    return (f"{pipeline.counts_line()} · model `{pipeline.embedder.name}` · "
            f"antwoordmodus: {pipeline.answer_mode_label}")


def newest_letters(pipeline: Pipeline, count: int) -> list:
    """The `count` newest letters, newest first (letters without a date last)."""
    index = pipeline.index
    return [index.letters[int(row)] for row in index.letters_by_date[::-1][:count]]


def letter_choices(pipeline: Pipeline) -> list[tuple[str, str]]:
    letters = newest_letters(pipeline, config.UI_LETTER_CHOICES)[::-1]
    return [(f"{letter.date or '----'} · {(letter.title or letter.doc_id)[:80]}", letter.doc_id) for letter in letters]


def letter_choice_label(pipeline: Pipeline, label: str) -> str:
    total = len(pipeline.index.letters)
    if total <= config.UI_LETTER_CHOICES:
        return label
    return f"{label} (de {config.UI_LETTER_CHOICES} nieuwste van {total}; filter op dossier of datum voor oudere)"


def message_text(content: object) -> str:
    """The text of a chat message in any shape Gradio hands it: a string, a list of parts, a dict."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return message_text(content.get("text", content.get("content", "")))
    if isinstance(content, (list, tuple)):
        return " ".join(part for part in map(message_text, content) if part)
    return ""


def asked_questions(history: list[dict]) -> list[str]:
    return [message_text(message.get("content")) for message in history or [] if message.get("role") == "user"]


LETTER_COLUMNS = ["datum", "titel", "soort", "ministerie", "verwijst naar", "doc_id"]
FILTER_LABEL = "Alleen deze brieven"
REMOVE_LABEL = "Brief uit de index halen"


def letters_rows(pipeline: Pipeline) -> list[list[str]]:
    return [[letter.date or "", letter.title, letter.kind, letter.ministry or "", ", ".join(letter.references[:6]),
             letter.doc_id] for letter in newest_letters(pipeline, config.UI_LETTER_ROWS)]


def letters_table_label(pipeline: Pipeline) -> str:
    total = len(pipeline.index.letters)
    shown = f"de {config.UI_LETTER_ROWS} nieuwste van {total}" if total > config.UI_LETTER_ROWS else f"alle {total}"
    return f"Brieven in de index ({shown})"


def build_app(pipeline: Pipeline, data_dir: Path = config.DEFAULT_DATA, uploads_allowed: bool = True) -> gr.Blocks:
    def respond(message: object, history: list[dict], letters: list[str], since: str, until: str, dossier: str,
                ministry: str, previous: Answer | None, conversation: Conversation | None) -> Iterator[tuple]:
        message = message_text(message)
        history = list(history or [])
        if not conversation or not conversation.turns:
            # A client that sends its own history (and no session state): each earlier question is read once.
            conversation = Conversation.from_questions(asked_questions(history))
        shown_sources = sources_html(previous)  # unchanged until the new answer is complete
        history.append({"role": "user", "content": message})
        try:
            filters = parse_filters(letters or (), (since or "").strip() or None, (until or "").strip() or None,
                                    dossier, ministry)
            query = pipeline.query(message, filters, history=conversation)
        except InputError as error:
            history.append({"role": "assistant", "content": f"**Let op:** {as_markdown_text(str(error))}"})
            yield history, shown_sources, previous, message, conversation, status_line(pipeline)
            return
        history.append({"role": "assistant", "content": "_Ik zoek in de brieven…_"})
        yield history, shown_sources, previous, "", conversation, status_line(pipeline)
        conversation = conversation.then(query.turn)
        try:
            with pipeline.slots:
                answer = pipeline.answer_query(query)
        except RagError as error:  # busy, or a language model that answers wrongly: the user can act on it
            history[-1] = {"role": "assistant", "content": f"**Let op:** {as_markdown_text(str(error))}"}
            yield history, shown_sources, previous, "", conversation, status_line(pipeline)
            return
        except Exception:  # the page shows a friendly line; the details go to the log
            log.exception("answering %r failed", message)
            history[-1] = {"role": "assistant", "content": FAILURE}
            yield history, shown_sources, previous, "", conversation, status_line(pipeline)
            return
        shown = []
        notes = notes_markdown(answer)
        for line in ([notes] if notes else []) + answer_markdown(answer).split("\n"):
            shown.append(line)  # streamed line by line as the answer is composed
            history[-1] = {"role": "assistant", "content": "\n".join(shown)}
            yield history, shown_sources, previous, "", conversation, status_line(pipeline)
        yield history, sources_html(answer), answer, "", conversation, status_line(pipeline)

    def open_citation(number: str, answer: Answer | None) -> str:
        if answer is None or not number.strip().isdigit():
            return EMPTY_LETTER
        citation = next((c for c in answer.citations if c.n == int(number)), None)
        if citation is None:
            return "<div class='sources-empty'>Deze bron hoort bij een eerder antwoord; stel de vraag opnieuw.</div>"
        document = pipeline.index.documents.get(citation.hit.doc_id)
        if document is None or document.text[citation.start:citation.end] != citation.quote:
            return "<div class='sources-empty'>Deze brief is intussen uit de index gehaald of gewijzigd; stel de vraag opnieuw.</div>"
        return letter_html(document, citation.start, citation.end, (citation.hit.start, citation.hit.end))

    uploads = data_dir / "uploads"

    def letters_update(note: str) -> tuple:
        choices = letter_choices(pipeline)
        return (note, gr.Dataframe(letters_rows(pipeline), label=letters_table_label(pipeline)),
                gr.Dropdown(choices=choices, value=None, label=letter_choice_label(pipeline, REMOVE_LABEL)),
                gr.Dropdown(choices=choices, label=letter_choice_label(pipeline, FILTER_LABEL)), status_line(pipeline))

    def add_uploaded(files: list | None, progress=gr.Progress(track_tqdm=True)) -> tuple:
        """The panel after the upload, and an emptied upload field."""
        if not files:
            return *letters_update("Kies eerst een of meer brieven (PDF, XML of tekst)."), None
        try:
            saved = store_letters([Path(getattr(f, "name", f)) for f in files], uploads)
            progress(0, desc="brieven lezen en inbedden")
            summary = pipeline.add_letters(saved, progress=True)
        except RagError as error:
            return *letters_update(f"**Niet toegevoegd:** {as_markdown_text(str(error))}"), None
        added = ", ".join(path.name for path in saved)
        return *letters_update(f"Toegevoegd: {as_markdown_text(added)} ({summary.embedded} nieuwe passages ingebed). "
                               f"{pipeline.counts_line()}."), None

    def remove_chosen(doc_id: str | None) -> tuple:
        if not doc_id:
            return letters_update("Kies eerst de brief die uit de index moet.")
        letter = pipeline.index.letter(doc_id)
        try:
            pipeline.remove_letter(doc_id)
        except RagError as error:
            return letters_update(f"**Niet verwijderd:** {as_markdown_text(str(error))}")
        stored = config.PROJECT_ROOT / letter.source
        if uploads.resolve() in stored.resolve().parents:
            stored.unlink(missing_ok=True)  # an upload of ours; the user's own files are never deleted
        return letters_update(f"Verwijderd: {as_markdown_text(letter.title or doc_id)}. {pipeline.counts_line()}.")

    def give_feedback(verdict: str, remark: str, answer: Answer | None) -> tuple[str, str]:
        if answer is None:
            return "Stel eerst een vraag; daarna kun je het antwoord beoordelen.", remark
        record_feedback(data_dir, answer, verdict, remark or "")
        return f"Bedankt: feedback ({verdict}) opgeslagen.", ""

    with gr.Blocks(title="Kamerbrieven: vraag en antwoord") as app:
        last_answer = gr.State(None)
        conversation = gr.State(Conversation())
        gr.Markdown("## Vraag het de Kamerbrieven\nElk antwoord citeert letterlijk uit de brieven; klik op een bron [n] om de passage in de brief te zien.")
        status = gr.Markdown(status_line(pipeline), elem_id="status")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Gesprek", height=480, elem_id="chat", sanitize_html=True,
                                     feedback_options=None, buttons=["copy"])
                question = gr.Textbox(label="Je vraag", placeholder="Bijvoorbeeld: Wat zei Nederland over China?",
                                      max_length=config.MAX_QUESTION_CHARS, elem_id="question", lines=1)
                with gr.Row():
                    ask_button = gr.Button("Vraag", variant="primary", elem_id="ask")
                    clear_button = gr.Button("Wis gesprek", elem_id="clear")
                gr.Examples(EXAMPLES, inputs=question, label="Voorbeeldvragen")
                with gr.Accordion("Filters", open=False):
                    letters = gr.Dropdown(letter_choices(pipeline), multiselect=True, value=[],
                                          label=letter_choice_label(pipeline, FILTER_LABEL))
                    with gr.Row():
                        since = gr.Textbox(label="Vanaf (JJJJ-MM-DD)", placeholder="2020-01-01")
                        until = gr.Textbox(label="Tot en met (JJJJ-MM-DD)", placeholder="2021-12-31")
                    with gr.Row():
                        dossier = gr.Textbox(label="Kamerstukdossier", placeholder="28676", elem_id="dossier")
                        ministry = gr.Textbox(label="Ministerie", placeholder="Buitenlandse Zaken", elem_id="ministry")
                    reset = gr.Button("Filters wissen", size="sm")
                with gr.Row():
                    good = gr.Button("Goed antwoord", size="sm", elem_id="feedback-good")
                    wrong = gr.Button("Fout antwoord", size="sm", elem_id="feedback-wrong")
                remark = gr.Textbox(label="Opmerking bij het antwoord (optioneel)", lines=1)
                feedback_note = gr.Markdown()
                with gr.Accordion("Brieven in de index", open=False, elem_id="letters-panel"):
                    letters_table = gr.Dataframe(letters_rows(pipeline), headers=LETTER_COLUMNS, interactive=False,
                                                 wrap=True, elem_id="letters-table", label=letters_table_label(pipeline))
                    if uploads_allowed:
                        upload = gr.File(label="Brieven toevoegen: PDF, XML (officielebekendmakingen) of tekst, "
                                         f"meerdere tegelijk, elk tot {config.MAX_UPLOAD_BYTES // 2**20} MB",
                                         file_count="multiple", file_types=list(config.UPLOAD_TYPES), elem_id="upload")
                        add_button = gr.Button("Toevoegen aan de index", elem_id="add-letters")
                    else:
                        gr.Markdown("Brieven toevoegen kan alleen met inloggen: start `rag serve` met "
                                    "RAG_UI_USER en RAG_UI_PASSWORD.")
                    remove_choice = gr.Dropdown(letter_choices(pipeline), label=letter_choice_label(pipeline, REMOVE_LABEL),
                                                elem_id="remove-choice")
                    remove_button = gr.Button("Verwijderen uit de index", variant="stop", elem_id="remove-letter")
                    upload_note = gr.Markdown(elem_id="upload-note")
            with gr.Column(scale=2):
                sources = gr.HTML(sources_html(None), elem_id="sources")
                letter = gr.HTML(EMPTY_LETTER, elem_id="letter-view")
        cite_target = gr.Textbox(visible="hidden", elem_id="cite-target")
        cite_open = gr.Button("open", visible="hidden", elem_id="cite-open")

        inputs = [question, chatbot, letters, since, until, dossier, ministry, last_answer, conversation]
        outputs = [chatbot, sources, last_answer, question, conversation, status]
        # The chat's own streaming event is callable by gradio_client as `/chat` (the load test drives it); the
        # button runs the same function. Answer slots are shared with the API (`pipeline.slots`), so Gradio's own
        # limit only keeps its worker threads bounded.
        for trigger, name in ((question.submit, "chat"), (ask_button.click, None)):
            # The letter view belongs to the previous answer's citations: a new answer empties it.
            trigger(respond, inputs, outputs, api_name=name, api_visibility="public" if name else "private",
                    concurrency_id="answer", concurrency_limit=config.ANSWER_SLOTS + config.ANSWER_QUEUE).then(
                lambda: EMPTY_LETTER, None, letter, api_visibility="private")
        clear_button.click(lambda: ([], sources_html(None), None, "", EMPTY_LETTER, Conversation()), None,
                           [chatbot, sources, last_answer, question, letter, conversation], api_visibility="private")
        # A page opened after `rag ingest` switched the index shows the new counts and letters.
        app.load(lambda: (status_line(pipeline), gr.Dropdown(choices=letter_choices(pipeline),
                                                             label=letter_choice_label(pipeline, FILTER_LABEL))),
                 None, [status, letters], api_visibility="private")
        reset.click(lambda: ([], "", "", "", ""), None, [letters, since, until, dossier, ministry], api_visibility="private")
        changed = [upload_note, letters_table, remove_choice, letters, status]
        if uploads_allowed:
            add_button.click(add_uploaded, [upload], changed + [upload], api_visibility="private", concurrency_limit=1)
        remove_button.click(remove_chosen, [remove_choice], changed, api_visibility="private",
                            concurrency_limit=1)
        cite_open.click(open_citation, [cite_target, last_answer], letter, api_visibility="private").then(
            None, js=SCROLL_TO_CITATION)
        good.click(lambda r, a: give_feedback("goed", r, a), [remark, last_answer], [feedback_note, remark], api_visibility="private")
        wrong.click(lambda r, a: give_feedback("fout", r, a), [remark, last_answer], [feedback_note, remark], api_visibility="private")

        def ask(question: str) -> dict:
            """Answer a question with cited passages (JSON as `rag ask --json`)."""
            try:
                with pipeline.slots:
                    return pipeline.ask(question).as_json()
            except RagError as error:
                return {"question": question, "error": str(error)}

        gr.api(ask, api_name="ask", concurrency_id="answer", concurrency_limit=config.ANSWER_SLOTS + config.ANSWER_QUEUE)
    return app


def free_port(host: str, port: int, tries: int = 20) -> int:
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


def launch(pipeline: Pipeline, host: str = "127.0.0.1", port: int = 7860, data_dir: Path = config.DEFAULT_DATA,
           block: bool = True) -> tuple[Served, str]:
    """Serve the chat page at / and the API at /v1 and /api, from one process and one pipeline; a taken port
    moves to the next free one, said aloud."""
    import uvicorn

    from rag.serve.api import create_api

    chosen = free_port(host, port)
    if chosen != port:
        print(f"rag: port {port} is taken; serving on port {chosen} instead", file=sys.stderr)
    auth = None
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"rag: warning: serving on {host}: the letters become visible on the network", file=sys.stderr)
        user, password = os.environ.get("RAG_UI_USER"), os.environ.get("RAG_UI_PASSWORD")
        if user and password:
            auth = (user, password)
        else:
            print("rag: warning: no RAG_UI_USER/RAG_UI_PASSWORD set, so anyone who can reach the page can use it", file=sys.stderr)
        if not os.environ.get("RAG_API_KEY"):
            print("rag: warning: no RAG_API_KEY set, so anyone who can reach /v1 and /api can use them", file=sys.stderr)
    _limit_malloc_arenas()
    # Letters can be added from the page on this machine, or behind the login when the page is exposed.
    exposed = host not in ("127.0.0.1", "localhost", "::1")
    blocks = build_app(pipeline, data_dir, uploads_allowed=not exposed or auth is not None)
    # Gradio's queue is bounded as the answer slots' queue is: past it, a user is told it is busy.
    blocks.queue(default_concurrency_limit=config.ANSWER_SLOTS, max_size=config.ANSWER_SLOTS + config.ANSWER_QUEUE)
    app = gr.mount_gradio_app(create_api(pipeline), blocks, path="/", auth=auth, css=CSS, head=HEAD, show_error=False,
                              footer_links=[], max_file_size=config.MAX_UPLOAD_BYTES)
    pipeline.watch()  # a new generation from `rag ingest` goes live between requests
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{chosen}"
    # Open streams (a browser, a gradio_client) do not hold up a Ctrl-C or SIGTERM for more than a few seconds.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=chosen, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=3))
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
