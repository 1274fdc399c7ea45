"""The answer slots: how many answers a serving process computes at once, and how many may wait."""

from __future__ import annotations

import threading

from rag.errors import RagError


class Busy(RagError):
    """Every answer slot is taken and the queue is full: the caller should try again in a moment."""


class AnswerSlots:
    """One concurrency group for everything that answers (chat, buttons, API): as many answers at once
    as there are cores, and a bounded queue behind them; past that, Busy at once instead of a long wait."""

    def __init__(self, slots: int, queue: int) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self.queue = queue

    def __enter__(self) -> "AnswerSlots":
        if self._slots.acquire(blocking=False):
            return self
        with self._lock:
            if self._waiting >= self.queue:
                raise Busy("het is te druk: alle plaatsen in de wachtrij zijn bezet; probeer het over enkele seconden opnieuw")
            self._waiting += 1
        try:
            self._slots.acquire()
        finally:
            with self._lock:
                self._waiting -= 1
        return self

    def __exit__(self, *exc) -> None:
        self._slots.release()
