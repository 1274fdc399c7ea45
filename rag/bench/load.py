"""Simulated users on a running `rag serve`, from a process of their own: what `rag bench` and the load
test in `make test` drive.

    python -m rag.bench.load URL --users 20 --seconds 20 [--questions FILE]

Each user opens a session with gradio_client and asks questions in turn through what the page
itself calls: the chat's streaming event (`/chat`, as the page sends a question) and, for every
other question, the `/ask` function. Prints one JSON object: answers, errors, throughput and
latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Sequence

from rag.bench.speed import latency_summary


def drive(url: str, questions: Sequence[str], users: int, seconds: float, max_requests: int = 10_000) -> dict:
    from gradio_client import Client

    latencies: dict[str, list[float]] = {"chat": [], "ask": []}
    errors: list[str] = []
    lock = threading.Lock()
    deadline: list[float] = []
    started: list[float] = []

    def start_clock() -> None:  # run once, by the last thread to arrive, before any of them goes on
        started.append(time.perf_counter())
        deadline.append(time.monotonic() + seconds)

    ready = threading.Barrier(users + 1, action=start_clock)

    def user(number: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as error:  # a user that cannot even connect is an error of the run
            with lock:
                errors.append(f"connect: {type(error).__name__}")
            ready.wait()
            return
        ready.wait()  # everyone connected: the clock starts for all users at once
        turn = number
        while time.monotonic() < deadline[0]:
            with lock:
                if sum(map(len, latencies.values())) + len(errors) >= max_requests:
                    return
            question = questions[turn % len(questions)]
            route = "chat" if turn % 2 == 0 else "ask"
            turn += users
            asked = time.perf_counter()
            try:
                if route == "chat":
                    result = client.submit(question, [], [], "", "", "", "", api_name="/chat").result(timeout=120)
                    ok = bool(result and result[0] and result[0][-1]["role"] == "assistant")
                else:
                    result = client.predict(question, api_name="/ask")
                    ok = isinstance(result, dict) and "answer" in result
            except Exception as error:
                ok, result = False, f"{type(error).__name__}: {error}"
            with lock:
                if ok:
                    latencies[route].append((time.perf_counter() - asked) * 1000)
                else:
                    errors.append(f"{route}: {str(result)[:200]}")

    def counted(number: int) -> None:
        try:
            user(number)
        except Exception as error:  # a user whose thread dies is an error of the run, never silence
            with lock:
                errors.append(f"user {number}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=counted, args=(n,), daemon=True) for n in range(users)]
    for thread in threads:
        thread.start()
    ready.wait()
    for thread in threads:
        thread.join(seconds + 180)
    elapsed = time.perf_counter() - started[0]
    everything = latencies["chat"] + latencies["ask"]
    return {"users": users, "seconds": round(elapsed, 1), "answers": len(everything), "errors": len(errors),
            "error_examples": errors[:3], "throughput_per_s": round(len(everything) / elapsed, 2),
            **latency_summary(everything), "chat": latency_summary(latencies["chat"]),
            "ask": latency_summary(latencies["ask"])}


def main(arguments: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--questions", default=None, help="A file of questions, one per line (default: the eval set's).")
    options = parser.parse_args(arguments)
    if options.questions:
        with open(options.questions, encoding="utf-8") as handle:
            questions = [line.strip() for line in handle if line.strip()]
    else:
        from rag.evaluation.dataset import load_questions
        from rag.settings import EVAL_QUESTIONS

        questions = [q.question for q in load_questions(EVAL_QUESTIONS) if not q.context]
    json.dump(drive(options.url, questions, options.users, options.seconds), sys.stdout)


if __name__ == "__main__":
    main()
