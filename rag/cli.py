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
