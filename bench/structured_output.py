#!/usr/bin/env python3
"""Structured output on a local model: what constrained decoding (response_format json_schema, a
grammar mask before every sampled token) costs against unconstrained decoding of the same length, on
one `tern serve`, at 1 and --streams concurrent streams.

Per mode and concurrency, --requests requests of the same prompt, streamed (the openai SDK):
  * decode tok/s per request: (completion tokens - 1) / (last chunk - first chunk);
  * output tok/s over the run: all completion tokens / wall time.
The constrained requests ask for a schema whose answers are long (an array of --items objects); the
unconstrained ones generate exactly as many tokens (ignore_eos, max_tokens = the constrained median).
Also: time to first token of the first request with a new schema (cold compilation) against the same
schema again (cached), medians over --rounds fresh schemas; and whether every constrained output
validates (jsonschema). Medians over --rounds rounds.

    python3 bench/structured_output.py --tern build/tern [--model smollm2-135m] [--streams 16] [--rounds 3]

Run it alone on the machine (it measures speed). Needs the tests' venv (openai, jsonschema):
run with .venv-tests/bin/python.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import jsonschema
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402

PROMPT = [{"role": "user", "content": "List items for a shopping trip as JSON."}]


def schema(items, tag=""):
    item = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16}, "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
            "required": ["name", "qty"], "additionalProperties": False}
    # `tag` makes a schema nobody compiled yet (a cold compilation) without changing what it accepts much.
    return {"type": "object", "properties": {"list" + tag: {"type": "array", "items": item, "minItems": items, "maxItems": items}},
            "required": ["list" + tag], "additionalProperties": False}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tern, model, threads):
    port = free_port()
    proc = subprocess.Popen([tern, "serve", "-m", model, "--port", str(port), "-t", str(threads), "--ledger", "off",
                             "--keys-db", os.path.join("/tmp", f"tern-structured-{port}.db")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, f"http://127.0.0.1:{port}/v1"
        except Exception:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("tern serve did not become ready")


def one(client, model, **kwargs):
    """(completion tokens, ttft s, decode tok/s, text) of one streamed request."""
    start = time.perf_counter()
    first = last = None
    text, tokens = "", 0
    for chunk in client.chat.completions.create(model=model, messages=PROMPT, stream=True, stream_options={"include_usage": True}, **kwargs):
        now = time.perf_counter()
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or now
            last = now
            text += chunk.choices[0].delta.content
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    decode = (tokens - 1) / (last - first) if first and last and last > first else 0.0
    return tokens, (first or time.perf_counter()) - start, decode, text


def run(client, model, concurrency, requests, **kwargs):
    """Median per-request decode tok/s, output tok/s over the run, and the texts."""
    results, errors, lock = [], [], threading.Lock()
    queue = list(range(requests))

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                queue.pop()
            try:
                r = one(client, model, **kwargs)
            except Exception as e:  # a failed request fails the measurement, never shortens it silently
                with lock:
                    errors.append(e)
                return
            with lock:
                results.append(r)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} of {requests} requests failed; the first: {errors[0]}")
    return statistics.median(r[2] for r in results), sum(r[0] for r in results) / wall, [r[0] for r in results], [r[3] for r in results]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tern", required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--requests", type=int, default=0, help="requests per measurement (default: 2 x the streams, at least 4)")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    proc, url = start_server(args.tern, args.model, args.threads)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    rows = []
    try:
        fmt = {"type": "json_schema", "json_schema": {"name": "trip", "strict": True, "schema": schema(args.items)}}
        one(client, args.model, max_tokens=8)  # warm-up: first allocations, the step-time model
        one(client, args.model, max_tokens=512, temperature=0, response_format=fmt)  # the vocabulary's grammar tables
        for streams in (1, args.streams):
            requests = args.requests or max(4, 2 * streams)
            per_round = []
            for _ in range(args.rounds):
                c_decode, c_rate, lengths, texts = run(client, args.model, streams, requests, max_tokens=1024, temperature=0.7,
                                                        response_format=fmt)
                for text in texts:
                    jsonschema.validate(json.loads(text), fmt["json_schema"]["schema"])
                length = int(statistics.median(lengths))
                u_decode, u_rate, _, _ = run(client, args.model, streams, requests, max_tokens=length, temperature=0.7,
                                              extra_body={"ignore_eos": True})
                per_round.append((c_decode, u_decode, c_rate, u_rate, length))
            med = [statistics.median(r[i] for r in per_round) for i in range(5)]
            rows.append((streams, *med))
        cold, warm = [], []
        for i in range(args.rounds):
            fresh = {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema(args.items, tag=f"_{time.time_ns()}_{i}")}}
            cold.append(one(client, args.model, max_tokens=4, temperature=0, response_format=fresh)[1])
            warm.append(one(client, args.model, max_tokens=4, temperature=0, response_format=fresh)[1])
        plain = [one(client, args.model, max_tokens=4, temperature=0)[1] for _ in range(args.rounds)]
    finally:
        proc.terminate()
        proc.wait(30)

    print(f"# structured output on {args.model}, {args.threads} threads, {cpu_name()}; medians of {args.rounds} rounds; every constrained output validated")
    print("| streams | tokens/request | decode tok/s per request: json_schema / unconstrained | ratio | output tok/s: json_schema / unconstrained | ratio |")
    print("|---|---|---|---|---|---|")
    for streams, c_decode, u_decode, c_rate, u_rate, length in rows:
        print(f"| {streams} | {length:.0f} | {c_decode:.1f} / {u_decode:.1f} | {c_decode / u_decode:.3f}x | {c_rate:.1f} / {u_rate:.1f} | {c_rate / u_rate:.3f}x |")
    print(f"TTFT (4-token requests): new schema {1000 * statistics.median(cold):.1f} ms, same schema again {1000 * statistics.median(warm):.1f} ms, "
          f"no response_format {1000 * statistics.median(plain):.1f} ms")


if __name__ == "__main__":
    main()
