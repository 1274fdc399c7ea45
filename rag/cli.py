"""The `rag` command line: thin wrappers around the library, JSON on request.

Heavy libraries (torch, faiss, gradio) are imported inside the commands that need them, so
`rag --help` and `rag chunks` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rag import config
from rag.errors import InputError, RagError


def _echo_json(payload: dict) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False))


def _warn(message: str) -> None:
    click.echo(f"rag: warning: {message}", err=True)


def _letter_paths(paths: tuple[str, ...]) -> list[str]:
    return list(paths) if paths else [str(config.DEFAULT_SEEDS)]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kamerbrief-rag")
def cli() -> None:
    """Ask questions of Dutch letters to parliament and get answers with cited passages."""


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per chunk.")
def chunks(paths: tuple[str, ...], as_json: bool) -> None:
    """Show the chunks the letters give (default: seeds/), without embedding anything."""
    from rag.chunking import chunk_documents
    from rag.documents import read_documents

    documents = read_documents(_letter_paths(paths))
    for document in documents:
        for warning in document.warnings:
            _warn(warning)
    for chunk in chunk_documents(documents):
        if as_json:
            _echo_json(chunk.as_json())
        else:
            preview = " ".join(chunk.text.split())[:90]
            click.echo(f"{chunk.chunk_id}\t{chunk.date or '-'}\t{chunk.section}\t{chunk.start}-{chunk.end}\t{preview}")


def _index_option(function):
    return click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
                        default=config.DEFAULT_INDEX, show_default="index/", help="The index folder.")(function)


def _model_options(function):
    function = click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Cache folder for the converted default model (or set RAG_MODEL_DIR).")(function)
    return click.option("--model", "model_name", default=None, metavar="NAME_OR_PATH",
                        help=f"A sentence-transformers model id or folder (default {config.DEFAULT_MODEL}, or RAG_MODEL).")(function)


def _filter_options(function):
    function = click.option("--until", default=None, metavar="YYYY-MM-DD", help="Only letters dated on or before.")(function)
    function = click.option("--since", default=None, metavar="YYYY-MM-DD", help="Only letters dated on or after.")(function)
    return click.option("--doc", "doc_ids", multiple=True, metavar="DOC_ID", help="Only this letter (repeatable).")(function)


def _questions(question: str | None) -> list[str]:
    """The question given, or one per line from standard input."""
    if question is not None:
        return [question]
    if sys.stdin.isatty():
        click.echo("rag: reading questions from standard input, one per line (Ctrl-D ends)", err=True)
    questions = [line.strip() for line in sys.stdin if line.strip()]
    if not questions:
        raise InputError("no question given; pass one as an argument or one per line on standard input")
    return questions


@cli.command()
@click.argument("paths", nargs=-1)
@_index_option
@_model_options
@click.option("--index-type", type=click.Choice(["auto", "flat", "hnsw", "ivf"]), default="auto", show_default=True,
              help="FAISS index: exact (flat) or approximate (hnsw, ivf); auto picks by corpus size.")
def ingest(paths: tuple[str, ...], index_dir: Path, model_name: str | None, model_dir: Path | None, index_type: str) -> None:
    """Read letters (default: seeds/), embed what is new or changed, write the index atomically."""
    from rag.index import IndexSettings
    from rag.pipeline import run_ingest

    summary = run_ingest(_letter_paths(paths), index_dir, model_name, model_dir,
                         IndexSettings(kind=index_type), progress=sys.stderr.isatty())
    for warning in summary.warnings:
        _warn(warning)
    click.echo(summary.line())


@cli.command()
@click.argument("question", required=False)
@click.option("-k", "k", type=int, default=5, show_default=True, help="How many passages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question.")
@_filter_options
@_index_option
@_model_options
def search(question: str | None, k: int, as_json: bool, doc_ids: tuple[str, ...], since: str | None,
           until: str | None, index_dir: Path, model_name: str | None, model_dir: Path | None) -> None:
    """The passages that best match QUESTION (or each line of standard input)."""
    from rag.pipeline import check_k, check_question, open_pipeline, parse_filters

    check_k(k)
    filters = parse_filters(doc_ids, since, until)
    questions = [check_question(q) for q in _questions(question)]
    pipeline = open_pipeline(index_dir, model_name, model_dir)
    for text in questions:
        hits = pipeline.search(text, k, filters)
        if as_json:
            _echo_json({"question": text, "hits": [hit.as_json() for hit in hits]})
            continue
        click.echo(f"? {text}")
        if not hits:
            click.echo("  (no passages: the filters leave no letters)")
        for hit in hits:
            click.echo(f"{hit.rank:>2}. {hit.score:.3f}  {hit.title} ({hit.date or 'zonder datum'})")
            click.echo(f"    {hit.section}  [{hit.doc_id}:{hit.start}-{hit.end}]")
            click.echo("    " + " ".join(hit.text.split()))
        click.echo()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("rag: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except RagError as error:
        click.echo(f"rag: {error}", err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("rag: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)


if __name__ == "__main__":
    main()
