"""The `rag` command line: thin wrappers around the library, JSON on request.

Heavy libraries (torch, faiss, gradio) are imported inside the commands that need them, so
`rag --help` and `rag chunks` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rag.errors import InputError, RagError
from rag.settings import (DEFAULT_CORPUS, DEFAULT_DATA, DEFAULT_INDEX, DEFAULT_MODEL, DEFAULT_SEEDS, EVAL_BASELINE,
                          EVAL_INDEX, EVAL_QUESTIONS, REPORT_DIR, Settings, display_path, from_environment)


SOME_SKIPPED = 3  # exit status: the rest was done, but some letters could not be read (each named on stderr)


def _echo_json(payload: dict) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False))


def _warn(message: str) -> None:
    click.echo(f"rag: warning: {message}", err=True)


def _letter_paths(paths: tuple[str, ...]) -> list[str]:
    return list(paths) if paths else [str(DEFAULT_SEEDS)]


def _settings(model_name: str | None = None, model_dir: Path | None = None, device: str | None = None) -> Settings:
    """The environment's settings, read once per command, with the model the options chose."""
    from dataclasses import replace

    settings = from_environment()
    return replace(settings, model=settings.model.with_choice(model_name, model_dir, device))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kamerbrief-rag")
def cli() -> None:
    """Ask questions of Dutch letters to parliament and get answers with cited passages."""


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per chunk.")
def chunks(paths: tuple[str, ...], as_json: bool) -> None:
    """Show the chunks the letters give (default: seeds/), without embedding anything."""
    from rag.index.chunking import chunk_documents
    from rag.readers.document import read_documents

    skipped: list[str] = []
    renamed: list[str] = []
    documents = read_documents(_letter_paths(paths), skipped, renamed)
    for message in skipped:
        click.echo(f"rag: skipped: {message}", err=True)
    for note in renamed:
        _warn(note)
    for document in documents:
        for warning in document.warnings:
            _warn(warning)
    for chunk in chunk_documents(documents):
        if as_json:
            _echo_json(chunk.as_json())
        else:
            preview = " ".join(chunk.text.split())[:90]
            click.echo(f"{chunk.chunk_id}\t{chunk.date or '-'}\t{chunk.section}\t{chunk.start}-{chunk.end}\t{preview}")
    if skipped:
        sys.exit(SOME_SKIPPED)


def _index_option(function):
    return click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
                        default=DEFAULT_INDEX, show_default="index/", help="The index folder.")(function)


def _model_options(function):
    function = click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="Cache folder for the converted default model (or set RAG_MODEL_DIR).")(function)
    return click.option("--model", "model_name", default=None, metavar="NAME_OR_PATH",
                        help=f"A sentence-transformers model id or folder (default {DEFAULT_MODEL}, or RAG_MODEL).")(function)


def _filter_options(function):
    function = click.option("--kind", default=None, metavar="KIND",
                            help="Only letters of this kind (brief, antwoord op Kamervragen, verslag, ...).")(function)
    function = click.option("--ministry", default=None, metavar="NAME", help="Only letters of this ministry (part of its name).")(function)
    function = click.option("--dossier", default=None, metavar="NUMBER",
                            help="Only letters of this Kamerstuk dossier or citing it, e.g. 28676.")(function)
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
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Embed on a Ray cluster (ray://host:10001, or auto); without ADDRESS a local Ray instance.")
def ingest(paths: tuple[str, ...], index_dir: Path, model_name: str | None, model_dir: Path | None, index_type: str,
           ray_address: str | None) -> None:
    """Read letters (default: seeds/), embed what is new or changed, write the index atomically."""
    from dataclasses import replace

    from rag.serve.pipeline import run_ingest

    if ray_address is not None and ray_address != "local" and Path(ray_address).exists():
        # `--ray letters/` would take the folder for an address and ingest (and prune to) the seeds instead.
        raise InputError(f"--ray took {ray_address!r} for a Ray address; put the letters before --ray, "
                         f"or write --ray=ADDRESS (--ray=local for a Ray instance on this machine)")
    settings = _settings(model_name, model_dir)
    settings = replace(settings, index=replace(settings.index, kind=index_type))
    summary = run_ingest(_letter_paths(paths), index_dir, settings, progress=sys.stderr.isatty(), ray_address=ray_address)
    for warning in summary.warnings:
        _warn(warning)
    for problem in summary.skipped:
        click.echo(f"rag: skipped: {problem}", err=True)
    click.echo(summary.line())
    if summary.skipped:
        sys.exit(SOME_SKIPPED)


@cli.command()
@click.argument("question", required=False)
@click.option("-k", "k", type=int, default=5, show_default=True, help="How many passages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question.")
@_filter_options
@_index_option
@_model_options
def search(question: str | None, k: int, as_json: bool, doc_ids: tuple[str, ...], since: str | None,
           until: str | None, dossier: str | None, ministry: str | None, kind: str | None, index_dir: Path,
           model_name: str | None, model_dir: Path | None) -> None:
    """The passages that best match QUESTION (or each line of standard input)."""
    from rag.serve.pipeline import check_k, check_question, open_pipeline, parse_filters

    check_k(k)
    settings = _settings(model_name, model_dir)
    filters = parse_filters(doc_ids, since, until, dossier, ministry, kind)
    questions = [check_question(q, settings.retrieval.max_question_chars) for q in _questions(question)]
    pipeline = open_pipeline(index_dir, settings=settings)
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


@cli.command()
@click.argument("question", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question.")
@_filter_options
@_index_option
@_model_options
def ask(question: str | None, as_json: bool, doc_ids: tuple[str, ...], since: str | None, until: str | None,
        dossier: str | None, ministry: str | None, kind: str | None, index_dir: Path, model_name: str | None,
        model_dir: Path | None) -> None:
    """Answer QUESTION (or each line of standard input) with quoted, cited passages."""
    from rag.serve.pipeline import check_question, open_pipeline, parse_filters

    settings = _settings(model_name, model_dir)
    filters = parse_filters(doc_ids, since, until, dossier, ministry, kind)
    questions = [check_question(q, settings.retrieval.max_question_chars) for q in _questions(question)]
    pipeline = open_pipeline(index_dir, settings=settings)
    for text in questions:
        answer = pipeline.ask(text, filters)
        if as_json:
            _echo_json(answer.as_json())
            continue
        click.echo(f"? {text}")
        for note in answer.notes:
            click.echo(f"  ({note})")
        click.echo(answer.text)
        if answer.abstained and answer.related:
            click.echo("\nMogelijk relevant:")
            for hit in answer.related:
                click.echo(f"  - {hit.title} ({hit.date}), {hit.section}  [{hit.doc_id}:{hit.start}-{hit.end}]")
        for citation in answer.citations:
            click.echo(f"  [{citation.n}] {citation.hit.doc_id}:{citation.start}-{citation.end}  {citation.hit.source}")
        click.echo()


@cli.command()
@click.argument("citation")
@click.option("--context", "context_chars", type=int, default=400, show_default=True, help="Characters shown around the passage.")
@click.option("--json", "as_json", is_flag=True, help="The passage, its letter and surrounding text as JSON.")
@_index_option
def show(citation: str, context_chars: int, as_json: bool, index_dir: Path) -> None:
    """Show a cited passage in its letter: CITATION is a chunk id or DOC_ID:START-END."""
    from rag.index.show import show_citation

    found = show_citation(index_dir, citation, context_chars)
    if as_json:
        _echo_json(found.as_json())
        return
    click.echo(f"{found.title} ({found.date or 'zonder datum'}) — {found.section}")
    click.echo(f"{found.source}  [{found.doc_id}:{found.start}-{found.end}]\n")
    click.echo(found.before + click.style(">>>", bold=True) + found.passage + click.style("<<<", bold=True) + found.after)


@cli.command()
@_index_option
def verify(index_dir: Path) -> None:
    """Check every file of the live index against the size and SHA-256 its manifest records."""
    from rag.index.folder import UnusableIndex, shown, verify as verify_index

    problems = verify_index(index_dir)
    if problems:
        raise UnusableIndex(f"{shown(index_dir)} is damaged: {'; '.join(problems)}; run `rag ingest --index {shown(index_dir)}` to rebuild it")
    click.echo(f"{shown(index_dir)}: every file matches its manifest")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 makes the letters visible on the network.")
@click.option("--port", type=int, default=7860, show_default=True, help="A taken port moves to the next free one.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA,
              show_default="data/", help="Where feedback on answers is kept.")
@click.option("--insecure", is_flag=True, help="Serve beyond this machine without RAG_API_KEY and a page login "
              "(anyone who can reach it reads the letters and changes the index).")
@_index_option
@_model_options
def serve(host: str, port: int, data_dir: Path, insecure: bool, index_dir: Path, model_name: str | None,
          model_dir: Path | None) -> None:
    """The chat in the browser (Gradio), on http://127.0.0.1:7860 by default."""
    from rag.serve.pipeline import open_pipeline
    from rag.serve.server import check_exposure, launch
    from ui.app import mount_page

    if not 0 < port < 65536:
        raise InputError(f"--port {port} is no port; choose one between 1024 and 65535")
    settings = _settings(model_name, model_dir)
    check_exposure(host, settings.serve, insecure)  # refused before seconds go into loading the model
    launch(open_pipeline(index_dir, settings=settings), mount_page, host, port, data_dir, insecure=insecure)


@cli.command(name="eval")
@click.option("--questions", "questions_path", type=click.Path(dir_okay=False, path_type=Path),
              default=EVAL_QUESTIONS, show_default="eval/questions.jsonl")
@click.option("--split", type=click.Choice(["dev", "test", "all"]), default="all", show_default=True,
              help="dev: for tuning; test: reported and gated, never tuned on.")
@click.option("-k", "k", type=int, default=5, show_default=True, help="Hits per question that count.")
@click.option("--json", "as_json", is_flag=True, help="Everything machine-readable.")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fail (exit 1) when a metric moves the wrong way past its tolerance against this baseline.")
@click.option("--write-baseline", is_flag=True, help="Write this run's metrics as the baseline (on purpose).")
@click.option("--compare", is_flag=True, help="Each choice against the default, one row each; table and chart in eval/report/.")
@click.option("--calibrate", is_flag=True, help="Fit the abstention thresholds for the model on the dev split "
              "and store them in rag/answer/calibration.json (on purpose, like --write-baseline).")
@click.option("--trec", "trec_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write each configuration's run and passage-level qrels here (trec_eval, ranx).")
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=EVAL_INDEX,
              show_default="eval/index/", help="The index of the seeds and eval/letters/ (built or updated first).")
@_model_options
@click.option("--distractors", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Also index a corpus's unrelated documents (JSON lines of URL and Content, .gz too), among which the "
                   "eval's letters must still be found; in an index of its own beside --index.")
@click.option("--distractor-limit", type=int, default=1000, show_default=True, help="Its first N distinct documents.")
def evaluate_command(questions_path: Path, split: str, k: int, as_json: bool, baseline_path: Path | None,
                     write_baseline: bool, compare: bool, calibrate: bool, trec_dir: Path | None, index_dir: Path,
                     distractors: Path | None, distractor_limit: int, model_name: str | None, model_dir: Path | None) -> None:
    """Retrieval and answer quality on the seeds and on real letters, dev and test; a regression gate."""
    from rag.evaluation import calibrate as calibration_fit
    from rag.evaluation import reports
    from rag.evaluation import runner as evaluation
    from rag.evaluation.dataset import load_questions
    from rag.serve.pipeline import check_k

    check_k(k)
    if distractors is not None and (write_baseline or calibrate):
        raise InputError("--distractors measures the eval in a crowd: leave out --write-baseline and --calibrate")
    settings = _settings(model_name, model_dir)
    if calibrate:
        pipeline = evaluation.open_eval_pipeline(settings, index_dir)
        calibration, effect = calibration_fit.calibrate(pipeline, load_questions(questions_path, "dev"),
                                                        settings.evaluation.false_abstention_budget,
                                                        settings.evaluation.decision_l2)
        calibration_fit.write_calibration(pipeline.embedder.question_encoder, calibration, settings.answer.calibration_file)
        rule = (f"abstain below a P(answerable) of {calibration.answerable} ({calibration.answerable_english} for "
                f"English questions)" if calibration.answerable is not None else
                f"abstain below a best-sentence similarity of {calibration.weak_evidence} or with under "
                f"{calibration.key_terms:.0%} of the key terms")
        click.echo(f"calibrated {pipeline.embedder.question_encoder} on the dev split: {rule}; on dev "
                   f"{effect['false_abstention']:.1%} wrong abstentions, {effect['abstention_unanswerable']:.1%} of the "
                   f"unanswerable refused (written to {display_path(settings.answer.calibration_file)})")
        return
    questions = load_questions(questions_path, split)
    baseline = evaluation.read_baseline(baseline_path) if baseline_path and not write_baseline else None
    pipeline = evaluation.open_eval_pipeline(settings, index_dir, distractors, distractor_limit)
    result = evaluation.run(pipeline, questions, k, compare, trec_dir, REPORT_DIR)
    drops: list[str] = []
    if write_baseline:
        baseline_path = baseline_path or EVAL_BASELINE
        evaluation.write_baseline(result["report"], baseline_path, settings.evaluation)
    elif baseline is not None:
        drops = evaluation.compare_to_baseline(result["report"], baseline)
        result["baseline"] = {"file": str(baseline_path), "drops": drops}
    if as_json:
        _echo_json(result)
    else:
        click.echo(reports.format_report(result["report"]))
        if compare:
            click.echo("\n" + result["compare_table"] + f"\n(tables and charts in {display_path(REPORT_DIR)}/)")
        if write_baseline:
            click.echo(f"\nbaseline written to {display_path(baseline_path)}")
        elif baseline is not None:
            click.echo("\n" + ("baseline: nothing moved the wrong way" if not drops else "baseline: DROPPED\n  " + "\n  ".join(drops)))
    if drops:
        sys.exit(1)


@cli.command()
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CORPUS,
              show_default="../shared/corpora/statengeneraal-digitaal-20k.jsonl.gz",
              help="JSON lines of URL and Content (.gz too) whose answers to Kamervragen the scorer learns from too "
                   "(left out, and said, when the file is not there).")
@click.option("--limit", type=int, default=None, help="Only the first N answers to Kamervragen of the corpus.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the training letters and indexes here (reused by the next run); a temporary folder otherwise.")
@click.option("--only", type=click.Choice(["tower", "scorer", "reranker"]), default=None,
              help="Train only the question tower, the answer scorer (for the tower in use) or the sentence reranker.")
@_model_options
def train(corpus: Path, limit: int | None, work_dir: Path | None, only: str | None, model_name: str | None,
          model_dir: Path | None) -> None:
    """Train the question tower and the sentence reranker on the questions of eval/training/ and the answer scorer on
    question-answer pairs that are not the eval; stores them in rag/embed/question_tower.npz, rag/answer/scorer.json
    and rag/embed/sentence_reranker.npz."""
    import tempfile

    from rag.evaluation import train as training

    settings = _settings(model_name, model_dir)
    progress = lambda line: click.echo(f"rag: {line}", err=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="rag-train-") as temporary:
        folder = Path(work_dir or temporary)
        if only in (None, "tower"):
            click.echo(training.tower_summary(training.train_question_tower(settings, folder, progress), settings))
        if only in (None, "scorer"):
            click.echo(training.scorer_summary(training.train_answer_scorer(settings, folder, corpus, limit, progress),
                                               settings))
        if only in (None, "reranker"):
            click.echo(training.reranker_summary(training.train_sentence_reranker(settings, folder, progress), settings))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="All figures as JSON.")
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Scale bench instead: ingest this corpus (JSON lines of URL and Content, .gz too) with the real model "
                   "and measure it, e.g. ../shared/corpora/statengeneraal-digitaal-20k.jsonl.gz.")
@click.option("--limit", type=int, default=None, help="With --corpus: only its first N distinct documents.")
@click.option("--scale", "sizes", type=int, multiple=True, metavar="N",
              help="With --corpus: also a synthetic index of N passages beyond the corpus (repeatable, e.g. 1000000).")
@click.option("--device", default=None, help="Encode on this device, e.g. cuda.")
@click.option("--load-users", type=int, default=20, show_default=True, help="Simulated users in the load test (0 skips it).")
@click.option("--load-seconds", type=float, default=20.0, show_default=True)
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=REPORT_DIR,
              show_default="eval/report/", help="Where the figures (JSON) and charts are written.")
@_index_option
@_model_options
def bench(as_json: bool, corpus: Path | None, limit: int | None, sizes: tuple[int, ...], device: str | None,
          load_users: int, load_seconds: float, report_dir: Path, index_dir: Path, model_name: str | None,
          model_dir: Path | None) -> None:
    """Speed and memory: ingest, query latency, cold start, load; with --corpus, scale on real text and beyond."""
    import tempfile

    from rag.bench import speed as benchmarks
    from rag.evaluation.dataset import load_questions

    settings = _settings(model_name, model_dir, device)
    questions = [q.question for q in load_questions(EVAL_QUESTIONS)]
    if corpus is None:
        if sizes or limit is not None:
            raise InputError("--scale and --limit go with --corpus FILE: the scale bench needs real passages to start from")
        from rag.serve.pipeline import open_pipeline

        report = benchmarks.run_bench(open_pipeline(index_dir, settings=settings), questions, load_users, load_seconds)
        benchmarks.save(report, report_dir)
        click.echo(json.dumps(report) if as_json else benchmarks.format_bench(report) +
                   f"\n(bench.json in {display_path(report_dir)}/)")
        return
    from rag.bench import scale

    if limit is not None and limit <= scale.HELD_OUT:
        raise InputError(f"--limit {limit} is too small: {scale.HELD_OUT} letters are held out to be added; give more")
    if any(size < 1000 for size in sizes):
        raise InputError("--scale sizes are passages: give 1000 or more")
    with tempfile.TemporaryDirectory(prefix="rag-scale-") as work:
        report = scale.run_scale_bench(corpus, limit, sorted(sizes), questions, Path(work), report_dir, settings)
    benchmarks.save(report, report_dir, "scale.json")
    click.echo(json.dumps(report) if as_json else scale.format_scale(report) + "\n(scale.json, scale.png and "
               f"scale-neighbours.png in {display_path(report_dir)}/)")


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
