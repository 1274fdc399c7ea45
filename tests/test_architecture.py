"""The package's shape, checked from its source: the folder is the architecture diagram.

Data flows one way, readers -> index -> search -> answer -> serve -> evaluation/bench/cli/ui; the
model (`embed`) stands beside the index and the search, which receive vectors, not the model. No
import runs back up, the environment is read in `rag/settings.py` alone, and every module stays
readable in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

from rag.settings import PROJECT_ROOT

RAG = PROJECT_ROOT / "rag"
# The stage of each subpackage; a module may import its own stage, the shared modules and the stages before it.
STAGES = {"readers": 1, "embed": 1, "index": 2, "search": 3, "answer": 4, "serve": 5, "evaluation": 6, "bench": 7}
SHARED = {"rag", "rag.settings", "rag.errors", "rag.language", "rag.files"}
MOST_LINES = 450


def _modules() -> list[Path]:
    return sorted(path for path in RAG.rglob("*.py") if "__pycache__" not in path.parts)


def _imports(path: Path) -> list[str]:
    """Every `rag...` and `ui...` module a file imports, at its top or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name.split(".")[0] in ("rag", "ui")]


def _stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.get(parts[1]) if len(parts) > 1 and parts[0] == "rag" else None


def test_no_import_runs_back_up_the_pipeline():
    backwards = []
    for path in _modules():
        relative = path.relative_to(PROJECT_ROOT).with_suffix("")
        own = _stage(".".join(relative.parts))
        for imported in _imports(path):
            if imported.startswith("ui") and relative.parts[-1] != "cli":  # the CLI hands the page to the server
                backwards.append(f"{relative} imports {imported}: the page is handed to the server, never imported")
            target = _stage(imported)
            if own is not None and target is not None and target > own:
                backwards.append(f"{relative} imports {imported}")
            if own is not None and own < STAGES["serve"] and imported.startswith("rag.embed") and relative.parts[1] != "embed":
                backwards.append(f"{relative} imports {imported}: index, search and answer receive vectors, not the model")
    assert not backwards, "\n".join(backwards)


def test_the_folder_shows_the_stages():
    packages = [path.name for path in RAG.iterdir() if (path / "__init__.py").exists()]
    top_modules = [path.name for path in RAG.glob("*.py")]
    assert len(packages) >= 5 and set(STAGES) <= set(packages)
    assert len(top_modules) <= 6, top_modules
    for package in packages:
        docstring = ast.get_docstring(ast.parse((RAG / package / "__init__.py").read_text()))
        assert docstring and "import" in docstring.lower(), f"rag/{package}/__init__.py must say what comes in and out and what it must not import"


def test_only_the_settings_read_the_environment():
    readers = [str(path.relative_to(PROJECT_ROOT)) for path in _modules() + sorted((PROJECT_ROOT / "ui").glob("*.py"))
               if "os.environ" in path.read_text() or "getenv(" in path.read_text()]
    assert readers == ["rag/settings.py"]


def test_every_module_is_readable_in_one_sitting():
    long = {str(path.relative_to(PROJECT_ROOT)): lines for path in _modules()
            if (lines := len(path.read_text().splitlines())) > MOST_LINES}
    assert not long, long


def test_importing_the_package_has_no_side_effects():
    import os
    import subprocess
    import sys

    check = ("import os; before = dict(os.environ); "
             "import rag.settings, rag.embed.model, rag.serve.pipeline, rag.serve.server, ui.app; "
             "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            env={key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TOKENIZERS", "TRANSFORMERS", "GRADIO"))})
    assert result.returncode == 0, result.stderr[-800:]
