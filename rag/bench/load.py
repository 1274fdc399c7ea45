"""Simulated users on a running `rag serve`, from a process of their own: what `rag bench` and the load
test in `make test` drive.

    python -m rag.bench.load URL --users 20 --seconds 20 [--questions FILE]

Each user has a session of the page and asks questions in turn through the page's own events, as the page sends
them: the chat's streaming event (`chat`) and, for every other question, the `ask` function, each joined to
Gradio's queue (`/gradio_api/queue/join`) and followed on the session's event stream (`/gradio_api/queue/data`),
the chat's state left to the server as a page leaves it. All users share one asyncio loop with httpx, so the load
costs its own process little: gradio_client's threads took 1.45 of this machine's 2 cores for 20 users, and the
server waited for its load generator. Prints one JSON object: answers, errors, throughput, latency percentiles and
the cores the client used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from typing import Sequence

from rag.bench.speed import latency_summary


def drive(url: str, questions: Sequence[str], users: int, seconds: float, max_requests: int = 10_000) -> dict:
    return asyncio.run(_drive(url.rstrip("/"), questions, users, seconds, max_requests))


async def _drive(url: str, questions: Sequence[str], users: int, seconds: float, max_requests: int) -> dict:
    import httpx

    latencies: dict[str, list[float]] = {"chat": [], "ask": []}
    errors: list[str] = []

    async def answered(client: httpx.AsyncClient, events: dict, session: str, route: str, question: str) -> bool:
        event = events[route]
        # the page's inputs: for the chat its history, filters and (None: the server's own) session state
        data = [question, [], [], "", "", "", "", *[None] * (event["inputs"] - 7)] if route == "chat" else [question]
        joined = await client.post(f"{url}/gradio_api/queue/join", json={
            "data": data, "event_data": None, "fn_index": event["id"], "trigger_id": None, "session_hash": session})
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        async with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            stream.raise_for_status()
            async for line in stream.aiter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(str(message.get("output"))[:200])
                    result = message["output"]["data"]
                    if route == "chat":
                        return bool(result and result[0] and result[0][-1]["role"] == "assistant")
                    return isinstance(result[0], dict) and "answer" in result[0]
        raise RuntimeError("the event stream ended without the event's result")

    async def user(client: httpx.AsyncClient, events: dict, number: int, deadline: float) -> None:
        session, turn = uuid.uuid4().hex[:11], number
        while time.monotonic() < deadline and sum(map(len, latencies.values())) + len(errors) < max_requests:
            question = questions[turn % len(questions)]
            route = "chat" if turn % 2 == 0 else "ask"
            turn += users
            asked = time.perf_counter()
            try:
                ok, problem = await answered(client, events, session, route, question), "no answer in the result"
            except Exception as error:  # every failed request is an error of the run, never silence
                ok, problem = False, f"{type(error).__name__}: {error}"
            if ok:
                latencies[route].append((time.perf_counter() - asked) * 1000)
            else:
                errors.append(f"{route}: {problem[:200]}")

    limits = httpx.Limits(max_connections=2 * users, max_keepalive_connections=2 * users)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        config = (await client.get(f"{url}/config")).raise_for_status().json()  # the page's events, as the page loads them
        events = {d["api_name"]: {"id": d["id"], "inputs": len(d["inputs"])}
                  for d in config["dependencies"] if d.get("api_name") in ("chat", "ask")}
        cpu, started = os.times(), time.perf_counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(user(client, events, number, deadline) for number in range(users)))
        elapsed, used = time.perf_counter() - started, os.times()
    everything = latencies["chat"] + latencies["ask"]
    client_cores = (used.user + used.system - cpu.user - cpu.system) / max(elapsed, 1e-9)
    return {"users": users, "seconds": round(elapsed, 1), "answers": len(everything), "errors": len(errors),
            "error_examples": errors[:3], "throughput_per_s": round(len(everything) / elapsed, 2),
            **latency_summary(everything), "chat": latency_summary(latencies["chat"]),
            "ask": latency_summary(latencies["ask"]), "client_cores": round(client_cores, 2)}


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
