"""The Gradio chat page, in Dutch. Thin: every answer comes from `rag.serve.pipeline.Pipeline`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import gradio as gr
from gradio.utils import get_upload_folder as gradio_upload_folder

from rag.answer.extractive import Answer
from rag.errors import InputError, RagError
from rag.search.conversation import Conversation, asked_questions, message_text
from rag.serve.feedback import record_feedback
from rag.serve.pipeline import Pipeline, parse_filters
from rag.settings import DEFAULT_DATA, lean_gradio
from ui.render import answer_markdown, as_markdown_text, letter_html, notes_markdown, sources_html

log = logging.getLogger("rag.ui")

EXAMPLES = [
    "Wat zei Nederland over China?",
    "Wat is de Nederlandse inzet in Afghanistan?",
    "Wat staat er in de laatste brief over de NAVO-top?",
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
    index = pipeline.generation
    return [index.letters[int(row)] for row in index.letters_by_date[::-1][:count]]


def letter_choices(pipeline: Pipeline) -> list[tuple[str, str]]:
    letters = newest_letters(pipeline, pipeline.settings.serve.ui_letter_choices)[::-1]
    return [(f"{letter.date or '----'} · {(letter.title or letter.doc_id)[:80]}", letter.doc_id) for letter in letters]


def letter_choice_label(pipeline: Pipeline, label: str) -> str:
    total = len(pipeline.generation.letters)
    if total <= pipeline.settings.serve.ui_letter_choices:
        return label
    return f"{label} (de {pipeline.settings.serve.ui_letter_choices} nieuwste van {total}; filter op dossier of datum voor oudere)"


LETTER_COLUMNS = ["datum", "titel", "soort", "ministerie", "verwijst naar", "doc_id"]
FILTER_LABEL = "Alleen deze brieven"
REMOVE_LABEL = "Brief uit de index halen"


def letters_rows(pipeline: Pipeline) -> list[list[str]]:
    return [[letter.date or "", letter.title, letter.kind, letter.ministry or "", ", ".join(letter.references[:6]),
             letter.doc_id] for letter in newest_letters(pipeline, pipeline.settings.serve.ui_letter_rows)]


def letters_table_label(pipeline: Pipeline) -> str:
    total = len(pipeline.generation.letters)
    shown = f"de {pipeline.settings.serve.ui_letter_rows} nieuwste van {total}" if total > pipeline.settings.serve.ui_letter_rows else f"alle {total}"
    return f"Brieven in de index ({shown})"


def build_app(pipeline: Pipeline, data_dir: Path = DEFAULT_DATA, changes_allowed: bool = True) -> gr.Blocks:
    serve = pipeline.settings.serve

    def respond(message: object, history: list[dict], letters: list[str], since: str, until: str, dossier: str,
                ministry: str, previous: Answer | None, conversation: Conversation | None) -> Iterator[tuple]:
        message = message_text(message)
        history = list(history or [])
        if not conversation or not conversation.turns:
            # A client that sends its own history (and no session state): each earlier question is read once.
            conversation = Conversation.from_questions(asked_questions(history), pipeline.retrieval)
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
        # The extractive answer is whole once computed: sent at once with its sources (each message of a stream costs
        # the server a round of the page's outputs, which 20 users at once feel as queueing).
        notes = notes_markdown(answer)
        history[-1] = {"role": "assistant", "content": "\n".join(([notes] if notes else []) + [answer_markdown(answer)])}
        yield history, sources_html(answer), answer, "", conversation, status_line(pipeline)

    def open_citation(number: str, answer: Answer | None) -> str:
        if answer is None or not number.strip().isdigit():
            return EMPTY_LETTER
        citation = next((c for c in answer.citations if c.n == int(number)), None)
        if citation is None:
            return "<div class='sources-empty'>Deze bron hoort bij een eerder antwoord; stel de vraag opnieuw.</div>"
        document = pipeline.generation.documents.get(citation.hit.doc_id)
        if document is None or document.text[citation.start:citation.end] != citation.quote:
            return "<div class='sources-empty'>Deze brief is intussen uit de index gehaald of gewijzigd; stel de vraag opnieuw.</div>"
        return letter_html(document, citation.start, citation.end, (citation.hit.start, citation.hit.end))

    def letters_update(note: str) -> tuple:
        choices = letter_choices(pipeline)
        return (note, gr.Dataframe(letters_rows(pipeline), label=letters_table_label(pipeline)),
                gr.Dropdown(choices=choices, value=None, label=letter_choice_label(pipeline, REMOVE_LABEL)),
                gr.Dropdown(choices=choices, label=letter_choice_label(pipeline, FILTER_LABEL)), status_line(pipeline))

    def add_uploaded(files: list | None, progress=gr.Progress(track_tqdm=True)) -> tuple:
        """The panel after the upload, and an emptied upload field."""
        if not files:
            return *letters_update("Kies eerst een of meer brieven (PDF, XML of tekst)."), None
        paths = [Path(getattr(f, "name", f)) for f in files]
        cache = Path(gradio_upload_folder()).resolve()
        if any(cache not in path.resolve().parents for path in paths):  # Gradio's own rule, checked again here
            return *letters_update("**Niet toegevoegd:** alleen bestanden die via dit veld zijn geüpload."), None
        try:
            progress(0, desc="brieven lezen en inbedden")
            stored, summary = pipeline.upload_letters(paths, [path.name for path in paths], progress=True)
        except RagError as error:
            return *letters_update(f"**Niet toegevoegd:** {as_markdown_text(str(error))}"), None
        unread = [upload for upload in stored if upload.path in summary.skipped_files]
        added = [upload for upload in stored if upload not in unread and not upload.already]
        notes = []
        if added:
            notes.append(f"Toegevoegd: {as_markdown_text(', '.join(upload.name for upload in added))} "
                         f"({summary.embedded} nieuwe passages ingebed).")
        notes += [as_markdown_text(upload.note()) + "." for upload in stored if upload not in unread and upload.note()]
        reasons = dict(zip(summary.skipped_files, summary.skipped))
        notes += [f"**Niet toegevoegd:** {as_markdown_text(reasons[upload.path])}" for upload in unread]
        return *letters_update(" ".join(notes) + f" {pipeline.counts_line()}."), None

    def remove_chosen(doc_id: str | None) -> tuple:
        if not doc_id:
            return letters_update("Kies eerst de brief die uit de index moet.")
        letter = pipeline.generation.letter(doc_id)
        try:
            pipeline.remove_letter(doc_id)
        except RagError as error:
            return letters_update(f"**Niet verwijderd:** {as_markdown_text(str(error))}")
        return letters_update(f"Verwijderd: {as_markdown_text(letter.title or doc_id)}. {pipeline.counts_line()}.")

    def give_feedback(verdict: str, remark: str, answer: Answer | None) -> tuple[str, str]:
        if answer is None:
            return "Stel eerst een vraag; daarna kun je het antwoord beoordelen.", remark
        record_feedback(data_dir, answer, verdict, remark or "")
        return f"Bedankt: feedback ({verdict}) opgeslagen.", ""

    lean_gradio()
    with gr.Blocks(title="Kamerbrieven: vraag en antwoord", analytics_enabled=False) as app:
        last_answer = gr.State(None)
        conversation = gr.State(Conversation(settings=pipeline.retrieval))
        gr.Markdown("## Vraag het de Kamerbrieven\nElk antwoord citeert letterlijk uit de brieven; klik op een bron [n] om de passage in de brief te zien.")
        status = gr.Markdown(status_line(pipeline), elem_id="status")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Gesprek", height=480, elem_id="chat", sanitize_html=True,
                                     feedback_options=None, buttons=["copy"])
                question = gr.Textbox(label="Je vraag", placeholder="Bijvoorbeeld: Wat zei Nederland over China?",
                                      max_length=pipeline.retrieval.max_question_chars, elem_id="question", lines=1)
                with gr.Row():
                    ask_button = gr.Button("Vraag", variant="primary", elem_id="ask")
                    clear_button = gr.Button("Wis gesprek", elem_id="clear")
                gr.Examples(EXAMPLES, inputs=question, label="Voorbeeldvragen")
                with gr.Accordion("Filters", open=False):
                    # Filled when the page loads, behind the login: the API description that Gradio writes into
                    # the login page would otherwise list every letter's id.
                    letters = gr.Dropdown([], multiselect=True, value=[], allow_custom_value=True, label=FILTER_LABEL)
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
                    if changes_allowed:
                        upload = gr.File(label="Brieven toevoegen: PDF, XML (officielebekendmakingen) of tekst, "
                                         f"meerdere tegelijk, elk tot {serve.max_upload_bytes // 2**20} MB",
                                         file_count="multiple", file_types=list(serve.upload_types), elem_id="upload")
                        add_button = gr.Button("Toevoegen aan de index", elem_id="add-letters")
                        remove_choice = gr.Dropdown(letter_choices(pipeline), label=letter_choice_label(pipeline, REMOVE_LABEL),
                                                    elem_id="remove-choice")
                        remove_button = gr.Button("Verwijderen uit de index", variant="stop", elem_id="remove-letter")
                    else:
                        gr.Markdown("Brieven toevoegen of verwijderen kan alleen met inloggen: start `rag serve` met "
                                    "RAG_UI_USER en RAG_UI_PASSWORD (en RAG_API_KEY).")
                        remove_choice = gr.State(None)
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
                    concurrency_id="answer", concurrency_limit=serve.answer_slots + serve.answer_queue).then(
                lambda: EMPTY_LETTER, None, letter, api_visibility="private")
        clear_button.click(lambda: ([], sources_html(None), None, "", EMPTY_LETTER, Conversation(settings=pipeline.retrieval)), None,
                           [chatbot, sources, last_answer, question, letter, conversation], api_visibility="private")
        # A page opened after `rag ingest` switched the index shows the new counts and letters.
        app.load(lambda: (status_line(pipeline), gr.Dropdown(choices=letter_choices(pipeline),
                                                             label=letter_choice_label(pipeline, FILTER_LABEL))),
                 None, [status, letters], api_visibility="private")
        reset.click(lambda: ([], "", "", "", ""), None, [letters, since, until, dossier, ministry], api_visibility="private")
        changed = [upload_note, letters_table, remove_choice, letters, status]
        if changes_allowed:  # one change of the index at a time, adding or removing
            add_button.click(add_uploaded, [upload], changed + [upload], api_visibility="private",
                             concurrency_id="letters", concurrency_limit=1)
            remove_button.click(remove_chosen, [remove_choice], changed, api_visibility="private",
                                concurrency_id="letters", concurrency_limit=1)
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

        gr.api(ask, api_name="ask", concurrency_id="answer", concurrency_limit=serve.answer_slots + serve.answer_queue)
    return app


def mount_page(api, pipeline: Pipeline, data_dir: Path, changes_allowed: bool, login: tuple[str, str] | None):
    """The chat page mounted at / of the API's app (`rag.serve.server.launch` serves the result)."""
    serve = pipeline.settings.serve
    blocks = build_app(pipeline, data_dir, changes_allowed)
    # Gradio's queue is bounded as the answer slots' queue is: past it, a user is told it is busy.
    blocks.queue(default_concurrency_limit=serve.answer_slots, max_size=serve.answer_slots + serve.answer_queue)
    app = gr.mount_gradio_app(api, blocks, path="/", auth=login, css=CSS, head=HEAD, show_error=False,
                              footer_links=[], max_file_size=serve.max_upload_bytes)
    # Gradio checks that a file named in an event was uploaded to its cache only once its app "has launched",
    # which a mounted app never is: without this, any page event could name any file on the server.
    blocks.has_launched = True
    return app
