"""Bad letters and paths: one clear line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

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


def test_unreadable_file_in_ingest(tmp_path):
    (tmp_path / "onleesbaar.txt").symlink_to("/proc/self/mem")
    _assert_clean_error(run_rag("ingest", str(tmp_path), "--index", str(tmp_path / "index")), "cannot read this file")
