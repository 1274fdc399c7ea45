"""The answer slots: how many answers a serving process computes at once, and how many may wait."""

from __future__ import annotations

import threading

from rag.errors import RagError


class Busy(RagError):
    """Every answer slot is taken and the queue is full: the caller should try again in a moment."""


class Slot:
    """One slot taken; released exactly once, however often `release` is called (a stream releases it when it
    ends and again when its response closes, whichever comes first)."""

    def __init__(self, semaphore: threading.BoundedSemaphore) -> None:
        self._semaphore = semaphore
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._semaphore.release()


class AnswerSlots:
    """One concurrency group for everything that answers (chat, buttons, API): as many answers at once
    as there are cores, and a bounded queue behind them; past that, Busy at once instead of a long wait,
    and Busy too for a request that waited `wait_s` without getting a slot."""

    def __init__(self, slots: int, queue: int, wait_s: float = 120.0) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self.queue = queue
        self.wait_s = wait_s

    def take(self) -> Slot:
        if self._slots.acquire(blocking=False):
            return Slot(self._slots)
        with self._lock:
            if self._waiting >= self.queue:
                raise Busy("het is te druk: alle plaatsen in de wachtrij zijn bezet; probeer het over enkele seconden opnieuw")
            self._waiting += 1
        try:
            acquired = self._slots.acquire(timeout=self.wait_s)
        finally:
            with self._lock:
                self._waiting -= 1
        if not acquired:
            raise Busy(f"het is te druk: na {self.wait_s:.0f} seconden wachten nog geen plaats vrij; probeer het opnieuw")
        return Slot(self._slots)

    def __enter__(self) -> "AnswerSlots":
        self.take()
        return self

    def __exit__(self, *exc) -> None:
        self._slots.release()
