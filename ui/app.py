"""The Gradio chat page, in Dutch. Thin: every answer comes from `rag.pipeline.Pipeline`."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from rag import config  # noqa: E402
from rag.answer import Answer  # noqa: E402
from rag.conversation import Conversation  # noqa: E402
from rag.errors import InputError, RagError  # noqa: E402
from rag.feedback import record_feedback  # noqa: E402
from rag.pipeline import Pipeline, parse_filters  # noqa: E402
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


def letter_choices(pipeline: Pipeline) -> list[tuple[str, str]]:
    documents = sorted(pipeline.index.documents.values(), key=lambda d: d.date or "")
    return [(f"{d.date or '----'} · {d.title[:80]}", d.doc_id) for d in documents]


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


def build_app(pipeline: Pipeline, data_dir: Path = config.DEFAULT_DATA) -> gr.Blocks:
    def respond(message: object, history: list[dict], letters: list[str], since: str, until: str,
                previous: Answer | None, conversation: Conversation | None) -> Iterator[tuple]:
        message = message_text(message)
        history = list(history or [])
        if not conversation or not conversation.turns:
            # A client that sends its own history (and no session state): each earlier question is read once.
            conversation = Conversation.from_questions(asked_questions(history))
        shown_sources = sources_html(previous)  # unchanged until the new answer is complete
        history.append({"role": "user", "content": message})
        try:
            filters = parse_filters(letters or (), (since or "").strip() or None, (until or "").strip() or None)
            query = pipeline.query(message, filters, history=conversation)
        except InputError as error:
            history.append({"role": "assistant", "content": f"**Let op:** {as_markdown_text(str(error))}"})
            yield history, shown_sources, previous, message, conversation, status_line(pipeline)
            return
        history.append({"role": "assistant", "content": "_Ik zoek in de brieven…_"})
        yield history, shown_sources, previous, "", conversation, status_line(pipeline)
        conversation = conversation.then(query.turn)
        try:
            answer = pipeline.answer_query(query)
        except RagError as error:  # e.g. a language model that answers wrongly: the user can act on it
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
                    letters = gr.Dropdown(letter_choices(pipeline), multiselect=True, label="Alleen deze brieven", value=[])
                    with gr.Row():
                        since = gr.Textbox(label="Vanaf (JJJJ-MM-DD)", placeholder="2020-01-01")
                        until = gr.Textbox(label="Tot en met (JJJJ-MM-DD)", placeholder="2021-12-31")
                    reset = gr.Button("Filters wissen", size="sm")
                with gr.Row():
                    good = gr.Button("Goed antwoord", size="sm", elem_id="feedback-good")
                    wrong = gr.Button("Fout antwoord", size="sm", elem_id="feedback-wrong")
                remark = gr.Textbox(label="Opmerking bij het antwoord (optioneel)", lines=1)
                feedback_note = gr.Markdown()
            with gr.Column(scale=2):
                sources = gr.HTML(sources_html(None), elem_id="sources")
                letter = gr.HTML(EMPTY_LETTER, elem_id="letter-view")
        cite_target = gr.Textbox(visible="hidden", elem_id="cite-target")
        cite_open = gr.Button("open", visible="hidden", elem_id="cite-open")

        inputs = [question, chatbot, letters, since, until, last_answer, conversation]
        outputs = [chatbot, sources, last_answer, question, conversation, status]
        for trigger in (question.submit, ask_button.click):
            # The letter view belongs to the previous answer's citations: a new answer empties it.
            trigger(respond, inputs, outputs, api_visibility="private").then(
                lambda: EMPTY_LETTER, None, letter, api_visibility="private")
        clear_button.click(lambda: ([], sources_html(None), None, "", EMPTY_LETTER, Conversation()), None,
                           [chatbot, sources, last_answer, question, letter, conversation], api_visibility="private")
        # A page opened after `rag ingest` switched the index shows the new counts and letters.
        app.load(lambda: (status_line(pipeline), gr.Dropdown(choices=letter_choices(pipeline))), None, [status, letters],
                 api_visibility="private")
        reset.click(lambda: ([], "", ""), None, [letters, since, until], api_visibility="private")
        cite_open.click(open_citation, [cite_target, last_answer], letter, api_visibility="private").then(
            None, js=SCROLL_TO_CITATION)
        good.click(lambda r, a: give_feedback("goed", r, a), [remark, last_answer], [feedback_note, remark], api_visibility="private")
        wrong.click(lambda r, a: give_feedback("fout", r, a), [remark, last_answer], [feedback_note, remark], api_visibility="private")

        def ask(question: str) -> dict:
            """Answer a question with cited passages (JSON as `rag ask --json`)."""
            try:
                return pipeline.ask(question).as_json()
            except InputError as error:
                return {"question": question, "error": str(error)}

        gr.api(ask, api_name="ask")
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


def launch(pipeline: Pipeline, host: str = "127.0.0.1", port: int = 7860, data_dir: Path = config.DEFAULT_DATA,
           block: bool = True) -> tuple[gr.Blocks, str]:
    """Serve the chat; a taken port moves to the next free one, said aloud."""
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
    _limit_malloc_arenas()
    app = build_app(pipeline, data_dir)
    pipeline.watch()  # a new generation from `rag ingest` goes live between requests
    # As many answers at once as there are cores: more only makes torch threads fight and memory grow.
    app.queue(default_concurrency_limit=max(1, min(4, os.cpu_count() or 1)), max_size=64)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{chosen}"
    print(f"rag: the chat runs on {url} (Ctrl-C stops it)", file=sys.stderr)
    app.launch(server_name=host, server_port=chosen, auth=auth, css=CSS, head=HEAD, show_error=False,
               prevent_thread_lock=not block, quiet=True, footer_links=[])
    return app, url
