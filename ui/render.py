"""Presentation of answers for the chat page: Markdown for the chat, HTML for sources and letters.

Every piece of letter or question text is escaped here: a letter containing `<script>` or
an `<img onerror>` shows as text, never as markup.
"""

from __future__ import annotations

import html
import re

from rag.answer.extractive import Answer, Citation
from rag.language import shown_date
from rag.readers.document import Document

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def as_markdown_text(text: str) -> str:
    """Letter text shown literally in Markdown: no markup, no HTML."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def answer_markdown(answer: Answer) -> str:
    """The answer for the chat; each [n] is a link that opens the cited passage in its letter."""
    if answer.abstained:
        lines = [f"**{as_markdown_text(answer.text)}**"]
        if answer.related:
            lines.append("\nMogelijk relevant (geen antwoord, wel in de buurt):")
            lines += [f"- {as_markdown_text(h.title)} ({shown_date(h.date)}), {as_markdown_text(h.section)}" for h in answer.related]
        return "\n".join(lines)
    text = as_markdown_text(answer.text)
    # The escaped markers "\[n\]" become links; the page's script opens the letter on click.
    return re.sub(r"\\\[(\d+)\\\]", r"[[\1]](#cite-\1)", text)


def notes_markdown(answer: Answer) -> str:
    return "\n".join(f"_{as_markdown_text(note)}_" for note in answer.notes)


def _highlighted_passage(citations: list[Citation]) -> str:
    """The passage with every quoted sentence of it marked; offsets are into the letter, `hit.text` starts at
    hit.start (the citations of one card share their passage)."""
    hit = citations[0].hit
    parts, cursor = [], 0
    for citation in sorted(citations, key=lambda c: c.start):
        start, end = max(cursor, citation.start - hit.start), citation.end - hit.start
        parts.append(html.escape(hit.text[cursor:start]) + f"<mark>{html.escape(hit.text[start:end])}</mark>")
        cursor = end
    return "".join(parts) + html.escape(hit.text[cursor:])


def sources_html(answer: Answer | None) -> str:
    if answer is None:
        return "<div class='sources-empty'>Bronnen verschijnen hier bij elk antwoord.</div>"
    if answer.abstained:
        cards = [
            f"<div class='source related'><div class='meta'>{html.escape(h.title)} · {shown_date(h.date)} · {html.escape(h.section)}</div>"
            f"<div class='passage'>{html.escape(h.text[:600])}{'…' if len(h.text) > 600 else ''}</div></div>"
            for h in answer.related
        ]
        return f"<div class='sources' {_asked(answer)}><h3>Mogelijk relevant</h3><p class='hint'>Geen antwoord gevonden; deze passages liggen het dichtst bij de vraag.</p>" + "".join(cards) + "</div>"
    # Two quotes from one passage are one card, with both sentences marked.
    by_passage: dict[tuple[str, int, int], list[Citation]] = {}
    for citation in answer.citations:
        by_passage.setdefault((citation.hit.doc_id, citation.hit.start, citation.hit.end), []).append(citation)
    cards = []
    for citations in by_passage.values():
        hit = citations[0].hit
        links = " ".join(f"<a href='#cite-{c.n}' class='cite'>[{c.n}]</a>" for c in citations)
        where = ", ".join(f"{html.escape(hit.doc_id)}:{c.start}-{c.end}" for c in citations)
        cards.append(
            f"<div class='source' id='source-{citations[0].n}'>"
            f"<div class='meta'>{links} "
            f"{html.escape(hit.title or hit.doc_id)} · {shown_date(hit.date)} · {html.escape(hit.section)}"
            f"{_origin(hit)}</div>"
            f"<div class='passage'>{_highlighted_passage(citations)}</div>"
            f"<div class='where'>{where}</div></div>"
        )
    return f"<div class='sources' {_asked(answer)}><h3>Bronnen</h3>" + "".join(cards) + "</div>"


def _origin(hit) -> str:
    """The ministry, the kind and the Kamerstukken a passage's letter cites, when the letter states them."""
    parts = [hit.ministry or "", hit.kind if hit.kind and hit.kind != "brief" else ""]
    if hit.references:
        parts.append("verwijst naar " + ", ".join(hit.references[:4]) + ("…" if len(hit.references) > 4 else ""))
    shown = " · ".join(html.escape(part) for part in parts if part)
    return f"<br><span class='origin'>{shown}</span>" if shown else ""


def _asked(answer: Answer) -> str:
    """The question the sources belong to, as an attribute: the page (and its tests) can tell answers apart."""
    return f"data-question=\"{html.escape(answer.question)}\""


def letter_html(document: Document, start: int, end: int, passage: tuple[int, int] | None = None) -> str:
    """The whole letter, the cited sentences marked (and their passage shaded), scrolled to by the page."""
    outer_start, outer_end = passage or (start, end)
    text = document.text
    body = (
        html.escape(text[:outer_start])
        + "<span class='passage-shade'>" + html.escape(text[outer_start:start])
        + f"<mark class='cited' id='cited'>{html.escape(text[start:end])}</mark>"
        + html.escape(text[end:outer_end]) + "</span>"
        + html.escape(text[outer_end:])
    )
    return (
        f"<div class='letter'><div class='letter-head'><strong>{html.escape(document.title)}</strong><br>"
        f"{shown_date(document.date)} · {html.escape(document.source)}</div>"
        f"<div class='letter-body'>{body}</div></div>"
    )
