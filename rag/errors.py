"""Errors a user can act on. The CLI and the UI print their message as one line."""


class RagError(Exception):
    """A failure the user can fix by following the message (exit status 1)."""

    exit_code = 1


class InputError(RagError):
    """Bad usage or input: a missing file, an empty question, a wrong value (exit status 2)."""

    exit_code = 2


class LetterSkipped(InputError):
    """One letter that holds nothing to index (an empty file, no text a reader can find, a scan without
    Tesseract): among many letters it is skipped with this message and the rest are indexed; alone it is an error."""
