"""Bad letters, paths, settings, endpoints and index files: one clear line on stderr, never a traceback."""

from __future__ import annotations

import json

import pytest

from conftest import SEEDS, run_rag


def _assert_clean_error(result, needle: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_missing_path(tmp_path):
    _assert_clean_error(run_rag("chunks", str(tmp_path / "nope.txt")), "no such file")


def test_empty_file(tmp_path):
    (tmp_path / "leeg.txt").write_text("  \n\n", encoding="utf-8")
    _assert_clean_error(run_rag("chunks", str(tmp_path / "leeg.txt")), "empty")


def test_binary_file(tmp_path):
    (tmp_path / "plaatje.txt").write_bytes(bytes(range(256)) * 20)
    _assert_clean_error(run_rag("chunks", str(tmp_path / "plaatje.txt")), "not a text file")


def test_folder_without_letters(tmp_path):
    (tmp_path / "notities.docx").write_bytes(b"PK")
    _assert_clean_error(run_rag("chunks", str(tmp_path)), "no letters here")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "brief.docx").write_bytes(b"PK")
    _assert_clean_error(run_rag("chunks", str(tmp_path / "brief.docx")), "unsupported file type")


def test_latin1_file_is_read_with_a_warning(tmp_path):
    text = (SEEDS / "001_f33fb6bfa58033f7.txt").read_text(encoding="utf-8").replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    (tmp_path / "latin.txt").write_bytes(text.encode("latin-1"))
    result = run_rag("chunks", "--json", str(tmp_path / "latin.txt"))
    assert result.returncode == 0
    assert "not UTF-8" in result.stderr
    assert "Oekraïne" in result.stdout and "Ã" not in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["chunks", "--help"]])
def test_help_is_available(args):
    result = run_rag(*args)
    assert result.returncode == 0 and "Usage" in result.stdout


def test_unreadable_file(tmp_path):
    link = tmp_path / "onleesbaar.txt"
    link.symlink_to("/proc/self/mem")  # reading it fails with an I/O error, even for root
    _assert_clean_error(run_rag("chunks", str(link)), "cannot read this file")


@pytest.mark.slow  # the ingest looks up the model's fingerprint, which builds the model when it is missing
def test_unreadable_file_in_ingest(tmp_path):
    (tmp_path / "onleesbaar.txt").symlink_to("/proc/self/mem")
    _assert_clean_error(run_rag("ingest", str(tmp_path), "--index", str(tmp_path / "index")), "cannot read this file")


# --- every kind of bad input, over the real `rag` command -------------------------------------

def _endpoint(kind: str):
    from conftest import ChatServer

    servers = {"null content": lambda: ChatServer(lambda body: None), "cut off": lambda: ChatServer(lambda body: "Ja. [1]", cut=True),
               "refused key": lambda: ChatServer(status=401)}
    return servers[kind]()


def _endpoint_env(url: str, **extra: str) -> dict:
    return {"RAG_LLM_BASE_URL": url, "RAG_LLM_MODEL": "test-model", **extra}


BAD_INPUT = [
    # (case, arguments, environment or endpoint kind, exit status, what the one line must say)
    ("timeout not a number", ["ask", "China"], {"RAG_LLM_TIMEOUT": "abc", **_endpoint_env("http://127.0.0.1:9/v1")}, 2,
     "RAG_LLM_TIMEOUT must be a number"),
    ("timeout negative", ["ask", "China"], {"RAG_LLM_TIMEOUT": "-5", **_endpoint_env("http://127.0.0.1:9/v1")}, 2,
     "RAG_LLM_TIMEOUT must be a number"),
    ("endpoint answers null", ["ask", "Wat zei Nederland over China?"], "null content", 1, "answered without any text"),
    ("endpoint cuts the connection", ["ask", "Wat zei Nederland over China?"], "cut off", 1, "broke off"),
    ("endpoint refuses the key", ["ask", "Wat zei Nederland over China?"], "refused key", 1, "HTTP 401"),
    ("garbage pointer", ["search", "China"], "garbage CURRENT", 1, "pointer names a missing build"),
    ("citation past the end", ["show", "000_cee59b6ea59e1ee0:10-99999999"], {}, 2, "lies outside letter"),
    ("citation of an unknown letter", ["show", "onbekend:1-20"], {}, 2, "no letter 'onbekend'"),
    ("not a citation", ["show", "zomaar iets"], {}, 2, "is no citation"),
    ("unknown letter filter", ["search", "--doc", "onbekend", "China"], {}, 2, "onbekende brief 'onbekend'"),
    ("bad date filter", ["ask", "--since", "gisteren", "China"], {}, 2, "is geen datum"),
    ("missing eval file", ["eval", "--questions", "/nonexistent/questions.jsonl"], {}, 2, "cannot read the questions"),
    ("broken eval line", ["eval", "--questions", "{broken}"], {}, 2, "not a question line"),
    ("eval evidence not in its letter", ["eval", "--questions", "{wrong evidence}"], {}, 2, "evidence not found"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case, args, setting, status, needle", BAD_INPUT, ids=[row[0] for row in BAD_INPUT])
def test_bad_input_gets_one_clear_line(case, args, setting, status, needle, seed_index_dir, tmp_path, request):
    import shutil

    index_dir = tmp_path / "index"
    # `rag eval` brings its index up to the eval letters first: the session's eval index, so nothing is embedded
    source = request.getfixturevalue("eval_pipeline").index_dir if args[0] == "eval" else seed_index_dir
    shutil.copytree(source, index_dir)
    env, server = {}, None
    if isinstance(setting, dict):
        env = setting
    elif setting == "garbage CURRENT":
        (index_dir / "CURRENT").write_bytes(b"\x00\xffgen-../../etc\n")
    else:
        server = _endpoint(setting)
        env = _endpoint_env(server.url)
    (tmp_path / "broken.jsonl").write_text('{"id": "x", "question": \n', encoding="utf-8")
    (tmp_path / "wrong.jsonl").write_text(json.dumps({"id": "x", "question": "Wat zei Nederland over China?", "gold": [
        {"doc_id": "001_f33fb6bfa58033f7", "evidence": "Deze zin staat in geen enkele brief."}]}) + "\n", encoding="utf-8")
    args = [{"{broken}": str(tmp_path / "broken.jsonl"), "{wrong evidence}": str(tmp_path / "wrong.jsonl")}.get(a, a) for a in args]
    try:
        result = run_rag(*args, "--index", str(index_dir), env=env)
    finally:
        if server:
            server.close()
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.slow
def test_an_endpoint_that_is_down_still_gives_the_extractive_answer(seed_index_dir):
    result = run_rag("ask", "--json", "Wat zei Nederland over China?", "--index", str(seed_index_dir),
                     env=_endpoint_env("http://127.0.0.1:9/v1"))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["mode"] == "extractive" and answer["citations"]
    assert any("taalmodel is niet bereikbaar" in note for note in answer["notes"])


def test_serving_on_the_network_without_credentials_is_refused_before_loading():
    result = run_rag("serve", "--host", "0.0.0.0", "--index", "/nonexistent/index")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "RAG_API_KEY" in line and "RAG_UI_USER" in line and "--insecure" in line
    half = run_rag("serve", "--host", "0.0.0.0", "--index", "/nonexistent/index", env={"RAG_API_KEY": "sleutel"})
    assert half.returncode == 2 and "RAG_UI_USER" in half.stderr and "RAG_API_KEY" not in half.stderr.split("set ")[1]
