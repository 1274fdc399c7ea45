"""Reports of an eval run: plain-text tables, charts, and TREC runs and qrels for trec_eval or ranx."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from rag.evaluation.metrics import ANSWERS, CITATION_LIMIT, COVERAGE, RETRIEVAL, TRUST, covers


def format_report(report: dict) -> str:
    lines = [f"{report['questions']} questions, k={report['k']}; a hit is a passage of at most {CITATION_LIMIT} "
             f"characters holding {COVERAGE:.0%} of an evidence\n"]
    columns = [c for c in RETRIEVAL + ANSWERS if any(c in m for m in report["groups"].values())]
    lines.append(table(report["groups"], columns + ["questions"], first="corpus/split"))
    if any("answered_right" in m for m in report["groups"].values()):
        lines.append("\ntrust (shares of the questions: answered right or wrong, abstained right or wrong):")
        lines.append(table(report["groups"], list(TRUST), first="corpus/split"))
    lines.append("\nby kind (kinds with at least 8 questions in a split):")
    lines.append(table(report["by_kind"], columns + ["questions"], first="kind/split"))
    misses = [row for row in report["per_question"] if row["answerable"] and row["metrics"]["hit@k"] == 0]
    if misses:
        lines.append(f"\nmisses (no gold evidence in the first {report['k']}):")
        for row in misses:
            lines.append(f"  {row['id']} [{row['split']}] {row['question']}")
            lines.append(f"     wanted: {row['missed'][0][:90]}")
            for doc_id, section, text in row["found"][:2]:
                lines.append(f"     found:  {doc_id} / {section[:40]}: {text[:60]}")
    wrong = [row for row in report["per_question"] if "abstained" in row and row["abstained"] != (not row["answerable"])]
    if wrong:
        lines.append("\nabstention mistakes:")
        lines += [f"  {row['id']} [{row['split']}] {'abstained' if row['abstained'] else 'answered'}: {row['question']}"
                  for row in wrong]
    return "\n".join(lines)


def table(rows: dict[str, dict[str, float]], columns: Sequence[str], first: str = "configuration") -> str:
    """A plain-text table of rows by metrics (columns)."""
    width = max([len(name) for name in rows] + [len(first)]) + 2
    sizes = [max(8, len(column) + 2) for column in columns]
    lines = [first.ljust(width) + "".join(column.rjust(size) for column, size in zip(columns, sizes))]
    for name, metrics in rows.items():
        cells = "".join(_cell(metrics.get(c)).rjust(size) for c, size in zip(columns, sizes))
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3f}"


def write_trec(report: dict, name: str, folder: Path, chunks: Sequence) -> None:
    """The run and its passage-level qrels, for trec_eval or ranx: a chunk is relevant when it covers
    an evidence (the citation rule above)."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^\w.-]+", "_", name)
    with (folder / f"{tag}.run").open("w") as run:
        for row in report["per_question"]:
            for rank, (chunk_id, score) in enumerate(row["run"], start=1):
                run.write(f"{row['id']} Q0 {chunk_id} {rank} {score:.4f} {tag}\n")
    with (folder / f"{tag}.qrels").open("w") as qrels:
        for row in report["per_question"]:
            for chunk in chunks:
                if any(covers((chunk.doc_id, chunk.start, chunk.end), tuple(g)) for g in row["gold_spans"]):
                    qrels.write(f"{row['id']} 0 {chunk.chunk_id} 1\n")


def write_chart(rows: dict[str, dict[str, float]], columns: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(rows)
    for offset, (name, metrics) in enumerate(rows.items()):
        positions = [i + offset * width for i in range(len(columns))]
        axis.bar(positions, [metrics.get(c, 0.0) for c in columns], width, label=name)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(columns))], list(columns))
    axis.set_ylim(0, 1)
    axis.set_ylabel("score")
    axis.set_title(title)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
