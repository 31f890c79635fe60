#!/usr/bin/env python3
"""Structured output on a local model: what constrained decoding (response_format json_schema, a
grammar mask before every sampled token) costs against unconstrained decoding of the same length, on
`tern serve`, at 1 and --streams concurrent streams; and the same requests through llama.cpp's
server (llama-server, its JSON Schema -> GBNF path) in the same run, when it is built
(tools/build_llama_server.sh).

Per server, mode and concurrency, --requests requests of the same prompt, streamed (the openai SDK):
  * decode tok/s per request: (completion tokens - 1) / (last chunk - first chunk);
  * output tok/s over the run: all completion tokens / wall time;
  * the share of constrained outputs that parse and validate (jsonschema).
The constrained requests ask for a schema whose answers are long (an array of --items objects); the
unconstrained ones generate exactly as many tokens (ignore_eos, max_tokens = the constrained median).
For tern also: the grammar's per-token cost from /metrics over the constrained run at --streams (mask
fill time, off the critical path, and the time steps waited for and applied masks, on it, also as a
share of step time); and time to first token of a request with a new schema (cold compilation)
against the same schema again (cached). Medians over --rounds rounds.

    .venv-tests/bin/python bench/structured_output.py --tern build/tern [--model smollm2-135m] [--chat-template F]
        [--llama-server build-peer/bin/llama-server | none] [--streams 16] [--rounds 3]

Run it alone on the machine (it measures speed). Needs the tests' venv (openai, jsonschema).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import re
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


def wait_ready(proc, port, what, path):
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return f"http://127.0.0.1:{port}/v1"
        except Exception:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{what} did not become ready")


def start_tern(args):
    port = free_port()
    extra = ["--chat-template", args.chat_template] if args.chat_template else []
    proc = subprocess.Popen([args.tern, "serve", "-m", args.model, "--port", str(port), "-t", str(args.threads), "--ledger", "off",
                             "--max-running", str(max(64, args.streams)), "--kv-cache-memory", "1G",
                             "--keys-db", os.path.join("/tmp", f"tern-structured-{port}.db"), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, wait_ready(proc, port, "tern serve", "/ready"), port


def model_path(args):
    out = subprocess.run([args.tern, "pull", args.model], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return re.sub(r"^.*?(/\S+\.gguf).*$", r"\1", out)


def start_llama_server(args):
    port = free_port()
    extra = ["--chat-template-file", args.chat_template] if args.chat_template else []
    proc = subprocess.Popen([args.llama_server, "-m", model_path(args), "--alias", args.model, "--port", str(port),
                             "-t", str(args.threads), "-tb", str(args.threads), "-np", str(args.streams),
                             "-c", str(args.streams * 1024), "-b", "512", "-ub", "512", "--no-webui", "--jinja", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, wait_ready(proc, port, "llama-server", "/health"), port


def scrape(port, names):
    """Sums of the named tern metrics (all label sets) from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def one(client, model, **kwargs):
    """(completion tokens, ttft s, decode tok/s, text) of one streamed request."""
    start = time.perf_counter()
    first = last = None
    text, tokens, chunks = "", 0, 0
    for chunk in client.chat.completions.create(model=model, messages=PROMPT, stream=True, stream_options={"include_usage": True}, **kwargs):
        now = time.perf_counter()
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or now
            last = now
            text += chunk.choices[0].delta.content
            chunks += 1
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    tokens = tokens or chunks  # a server that reports no usage streams a token per chunk
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


def valid(text, schema):
    try:
        jsonschema.validate(json.loads(text), schema)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


GRAMMAR_METRICS = ("tern:grammar_masks_total", "tern:grammar_mask_fill_seconds_total", "tern:grammar_mask_critical_seconds_total",
                   "tern:step_time_seconds_sum")


def measure(client, args, fmt, port=None):
    """Per concurrency: medians over rounds of (constrained decode, unconstrained decode, constrained
    rate, unconstrained rate, tokens per request), the share of outputs that validated, and for tern
    the grammar metrics' growth over the constrained runs at --streams."""
    schema_ = fmt["json_schema"]["schema"]
    rows, grammar = [], None
    for streams in (1, args.streams):
        requests = args.requests or max(4, 2 * streams)
        per_round, num_valid, num_outputs = [], 0, 0
        for _ in range(args.rounds):
            before = scrape(port, GRAMMAR_METRICS) if port and streams == args.streams else None
            c_decode, c_rate, lengths, texts = run(client, args.model, streams, requests, max_tokens=1024, temperature=0.7,
                                                    response_format=fmt)
            if before:
                after = scrape(port, GRAMMAR_METRICS)
                delta = {k: after[k] - before[k] for k in GRAMMAR_METRICS}
                grammar = [delta] if grammar is None else grammar + [delta]
            num_valid += sum(valid(t, schema_) for t in texts)
            num_outputs += len(texts)
            length = int(statistics.median(lengths))
            u_decode, u_rate, _, _ = run(client, args.model, streams, requests, max_tokens=length, temperature=0.7,
                                          extra_body={"ignore_eos": True})
            per_round.append((c_decode, u_decode, c_rate, u_rate, length))
        rows.append((streams, *[statistics.median(r[i] for r in per_round) for i in range(5)], num_valid / num_outputs))
    return rows, grammar


def print_rows(name, rows):
    print(f"\n{name}:")
    print("| streams | tokens/request | decode tok/s per request: json_schema / unconstrained | ratio | output tok/s: json_schema / unconstrained | ratio | outputs valid |")
    print("|---|---|---|---|---|---|---|")
    for streams, c_decode, u_decode, c_rate, u_rate, length, share in rows:
        print(f"| {streams} | {length:.0f} | {c_decode:.1f} / {u_decode:.1f} | {c_decode / u_decode:.3f}x | {c_rate:.1f} / {u_rate:.1f} | "
              f"{c_rate / u_rate:.3f}x | {100 * share:.1f} % |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tern", required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--chat-template", default="", help="Jinja file for both servers (a model without its own, e.g. Gemma 3 270M base)")
    parser.add_argument("--llama-server", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build-peer", "bin", "llama-server"),
                        help="llama-server binary, or 'none'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--requests", type=int, default=0, help="requests per measurement (default: 2 x the streams, at least 4)")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "strict": True, "schema": schema(args.items)}}

    proc, url, port = start_tern(args)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    try:
        one(client, args.model, max_tokens=8)  # warm-up: first allocations, the step-time model
        one(client, args.model, max_tokens=512, temperature=0, response_format=fmt)  # the vocabulary's grammar tables
        tern_rows, grammar = measure(client, args, fmt, port)
        cold, warm = [], []
        for i in range(args.rounds):
            fresh = {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema(args.items, tag=f"_{time.time_ns()}_{i}")}}
            cold.append(one(client, args.model, max_tokens=4, temperature=0, response_format=fresh)[1])
            warm.append(one(client, args.model, max_tokens=4, temperature=0, response_format=fresh)[1])
        plain = [one(client, args.model, max_tokens=4, temperature=0)[1] for _ in range(args.rounds)]
    finally:
        proc.terminate()
        proc.wait(30)
    llama_rows = None
    if args.llama_server != "none" and os.path.exists(args.llama_server):
        proc, url, _ = start_llama_server(args)
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
        try:
            one(client, args.model, max_tokens=8)
            one(client, args.model, max_tokens=512, temperature=0, response_format=fmt)
            llama_rows, _ = measure(client, args, fmt)
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"# structured output on {args.model}, {args.threads} threads, {cpu_name()}; medians of {args.rounds} rounds, "
          f"{args.items}-item lists (temperature 0.7)")
    print_rows("tern", tern_rows)
    if llama_rows:
        print_rows("llama-server (JSON Schema -> GBNF)", llama_rows)
        for (streams, c_decode, _, c_rate, _, _, _), (_, l_decode, _, l_rate, _, _, _) in zip(tern_rows, llama_rows):
            print(f"json_schema at {streams} streams, tern / llama-server: decode per request {c_decode / l_decode:.2f}x, output tok/s {c_rate / l_rate:.2f}x")
    if grammar:
        masks = sum(g["tern:grammar_masks_total"] for g in grammar)
        fill = sum(g["tern:grammar_mask_fill_seconds_total"] for g in grammar)
        critical = sum(g["tern:grammar_mask_critical_seconds_total"] for g in grammar)
        steps = sum(g["tern:step_time_seconds_sum"] for g in grammar)
        print(f"grammar at {args.streams} streams (json_schema runs): mask fill {1e6 * fill / masks:.1f} us/token (beside the forward pass), "
              f"on the critical path {1e6 * critical / masks:.1f} us/token = {100 * critical / steps:.2f} % of step time")
    print(f"TTFT (4-token requests): new schema {1000 * statistics.median(cold):.1f} ms, same schema again {1000 * statistics.median(warm):.1f} ms, "
          f"no response_format {1000 * statistics.median(plain):.1f} ms")


if __name__ == "__main__":
    main()
