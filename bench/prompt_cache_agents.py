#!/usr/bin/env python3
"""Prompt-cache retention on agent traffic: agent sessions (a shared system prompt, a context that grows
turn by turn, think time between turns) on a server that also carries one-shot background requests
churning its KV pool — tern with retention (every agent request is an Anthropic Messages request with
cache_control ttl 5m on the system prompt and on the conversation), tern with plain LRU prefix caching,
tern with caching off, and llama.cpp's llama-server with its prompt cache (same KV size), one after
another on a fresh server; optionally tern with OpenAI's prompt_cache_retention: 24h (retention-24h).

    .venv/bin/python bench/prompt_cache_agents.py [--sessions 12] [--concurrency 6] [--think 10,30]
                                                  [--prefix 8,2048] [--background 2,1500] [--kv 540M] [--context 4096]
                                                  [--pin-fraction 0.75] [--prefill-order shortest]
                                                  [--itl-target 1.4x]
                                                  [--configs retention,lru,off,llama-server]
                                                  [--out DIR]

Scaled to SmolLM2 on 2 cores (the issue's 4-8k-token prompts and 30-300 s think times take hours on this
machine; the shape is the same): 8 agent types, each with its own 2048-token system prompt and tools
(a session picks one), 4 turns of 100-200 new tokens and 32 output tokens, think time uniform in
[10, 30] s, 6 sessions at a time (closed loop) out of 12; background: 2 streams of unique 1500-token
prompts (8 output tokens) for as long as the agents run (stopped with SIGINT, which makes `tern bench`
report what it measured). KV cache 540 MiB (~24.5k tokens), of which retention may pin 75 %: it cannot
hold every agent type, the sessions' histories and the background. tern serves with
`--prefill-order shortest`. Both loads are `tern bench` runs against the same server; the agents'
report is the result: TTFT p50/p99 over all turns and over returning turns only (the turns after a think
time, the ones a cache can serve), output tok/s, cached share of prompt tokens, effective cost with
input 1.0, cached 0.1, cache write 1.25 (5-minute TTL) or 2.0 (1 hour and more), output 5.0 USD per 1M
tokens (Anthropic's ratios), and the server's KV evictions and pins given up under pressure. With --out,
each configuration's `tern bench` reports (with every request) and its server's log are kept in DIR.

The think times are well within a 5-minute TTL, refreshed on each hit, so 5 minutes is what a client
would ask for (and pay 1.25x input for); retention-24h shows the same retention at the 1-hour price.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from machine import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERN = os.path.join(ROOT, "build", "tern")
LLAMA_SERVER = os.path.join(ROOT, "build-peer", "bin", "llama-server")
MODEL_FILE = os.path.expanduser("~/.cache/tern/models/SmolLM2-135M-Instruct.Q4_1.gguf")
KV_BYTES_PER_TOKEN = 30 * 2 * 192 * 2  # SmolLM2-135M: 30 layers, K and V, 3 KV heads x 64, f16


def kv_tokens(size):
    """What --kv-cache-memory SIZE holds, in tokens: llama-server gets a unified KV of the same size."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(size[:-1]) * units[size[-1].upper()]) // KV_BYTES_PER_TOKEN
PRICE = {"input_per_mtok": 1.0, "cached_input_per_mtok": 0.1, "cache_write_per_mtok": 1.25, "cache_write_1h_per_mtok": 2.0,
         "output_per_mtok": 5.0}
# How each tern configuration asks for retention: (target api, the workload's cache_retention).
RETENTION = {"retention": ("messages", "5m"), "retention-24h": ("chat", "24h")}


def start_server(flags, state, args):
    proc = subprocess.Popen([TERN, "serve", "-m", "smollm2-135m", "--port", "0", "-t", "2", "--context", str(args.context),
                             "--kv-cache-memory", args.kv, "--kv-pin-fraction", str(args.pin_fraction), "--ledger", "off",
                             "--prefill-order", args.prefill_order, "--itl-target", args.itl_target,
                             "--keys-db", os.path.join(state, "keys.db"), *flags], stderr=subprocess.PIPE, text=True)
    url = None
    for line in proc.stderr:
        m = re.search(r"listening on (http://[\d.]+:\d+)", line)
        if m:
            url = m.group(1)
        if "tern serve: ready" in line:
            break
    if url is None:
        raise RuntimeError("tern serve did not start")
    # Keep reading what the server writes after it is ready (into its state folder): a full pipe
    # would block its writes, and with them the server.
    def drain(log_path):
        with open(log_path, "w") as log:
            shutil.copyfileobj(proc.stderr, log)
    proc.log_drain = threading.Thread(target=drain, args=(os.path.join(state, "tern-serve.log"),), daemon=True)
    proc.log_drain.start()
    return proc, url


def start_llama_server(state, kv):
    """llama.cpp's server as shipped: one unified KV of the same size as tern's, 8 slots (6 agents + 2
    background streams), its default prompt cache (per-slot prefix reuse, and --cache-ram, default 8 GiB
    of host RAM for prompts that leave a slot)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(state, "llama-server.log"), "w")
    proc = subprocess.Popen([LLAMA_SERVER, "-m", MODEL_FILE, "--alias", "smollm2-135m", "--port", str(port), "-t", "2",
                             "-tb", "2", "-np", "8", "-kvu", "-c", str(kv_tokens(kv)), "--no-webui"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError("llama-server not ready in time")


def percentile(values, q):
    """Linear interpolation between closest ranks (as tern bench reports them)."""
    if not values:
        return float("nan")
    values = sorted(values)
    rank = q / 100 * (len(values) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (rank - lo)


def kv_counters(url):
    """The server's KV counters: RAM evictions, pins given up under pressure, prefix-cache hits."""
    try:
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    except Exception:  # llama-server serves no /metrics without --metrics, and has none of these
        return {}
    wanted = {"tern:kv_evictions_total": "evictions", "tern:kv_pin_yields_total": "pin_yields",
              "tern:prefix_cache_hits_total": "hit_tokens"}
    out = {}
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in wanted:
            out[wanted[name]] = out.get(wanted[name], 0) + float(line.rsplit(" ", 1)[1])
    return out


def bench(url, workload, state, name, api="chat"):
    path = os.path.join(state, f"{name}.json")
    report = os.path.join(state, f"{name}-report.json")
    workload = dict(workload, targets=[{"name": name, "url": url + "/v1", "api": api, "model": "smollm2-135m", "price": PRICE}])
    with open(path, "w") as f:
        json.dump(workload, f)
    return subprocess.Popen([TERN, "bench", "--workload", path, "--json", report, "--json-requests", "-q", "--tokenizer", "smollm2-135m"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--think", default="10,30", help="think time range in seconds")
    parser.add_argument("--configs", default="retention,lru,off,llama-server")
    parser.add_argument("--background", default="2,1500", help="background streams, prompt tokens")
    parser.add_argument("--pin-fraction", type=float, default=0.75)
    parser.add_argument("--prefix", default="8,2048", help="agent types (system prompt + tools), tokens each")
    parser.add_argument("--kv", default="540M", help="tern serve --kv-cache-memory (llama-server gets the same tokens)")
    parser.add_argument("--prefill-order", default="shortest", help="tern serve --prefill-order: shortest or fcfs")
    parser.add_argument("--context", type=int, default=4096, help="tern serve --context (at least the system prompt + 4 turns)")
    parser.add_argument("--itl-target", default="1.4x", help="tern serve --itl-target (its default 1.4x; off: no inter-token bound)")
    parser.add_argument("--out", help="keep each configuration's tern bench reports (every request) in this folder")
    args = parser.parse_args()
    unknown = set(args.configs.split(",")) - {"retention", "retention-24h", "lru", "off", "llama-server"}
    if unknown:
        parser.error(f"--configs: unknown {', '.join(sorted(unknown))} (retention, retention-24h, lru, off, llama-server)")
    think_lo, think_hi = (float(x) for x in args.think.split(","))
    turns = 4
    prefix_groups, prefix_tokens = (int(x) for x in args.prefix.split(","))
    agents = {"seed": 11, "prefix": {"groups": prefix_groups, "length_tokens": prefix_tokens},
              "sessions": {"turns": turns, "think_time_ms": think_lo * 1000, "think_time_max_ms": think_hi * 1000},
              "input_tokens": {"dist": "uniform", "min": 100, "max": 200}, "output_tokens": 32, "ignore_eos": True,
              "arrival": {"type": "concurrency", "concurrency": args.concurrency}, "requests": args.sessions * turns}
    bg_streams, bg_tokens = (int(x) for x in args.background.split(","))
    background = {"seed": 12, "input_tokens": bg_tokens, "output_tokens": 8, "ignore_eos": True,
                  "arrival": {"type": "concurrency", "concurrency": bg_streams}, "requests": 2000, "duration_s": 3600}
    print(f"CPU: {cpu_name()}; tern serve -t 2, SmolLM2-135M Q4_1, KV {args.kv} (~{kv_tokens(args.kv)} tokens), "
          f"--kv-pin-fraction {args.pin_fraction}, "
          f"--prefill-order {args.prefill_order}, --itl-target {args.itl_target}")
    print(f"agents: {args.sessions} sessions x {turns} turns, {args.concurrency} at a time, think {think_lo:g}-{think_hi:g} s, "
          f"{prefix_groups} agent types with {prefix_tokens}-token system prompts; "
          f"background: {bg_streams} streams of unique {bg_tokens}-token prompts")
    print(f"{'config':<10} | {'TTFT p50 ms':>11} | {'TTFT p99 ms':>11} | {'out tok/s':>9} | {'cached %':>8} | "
          f"{'returning p50/p99 ms':>20} | {'eff. cost $':>11} | {'list cost $':>11} | background reqs | KV evictions | pin yields")
    for config in args.configs.split(","):
        with tempfile.TemporaryDirectory(prefix="tern-agents-") as state:
            if config == "llama-server":
                server, url = start_llama_server(state, args.kv)
            else:
                flags = ["--no-prefix-caching"] if config == "off" else []
                server, url = start_server(flags, state, args)
            try:
                api, retention = RETENTION.get(config, ("chat", None))
                workload = dict(agents, cache_retention=retention) if retention else agents
                bg, bg_report = bench(url, background, state, "background")
                time.sleep(2)
                agent, agent_report = bench(url, workload, state, config, api)
                _, err = agent.communicate()
                if agent.returncode != 0:
                    print(err, file=sys.stderr)
                counters = kv_counters(url)
                bg.send_signal(signal.SIGINT)
                try:
                    bg.wait(120)
                except subprocess.TimeoutExpired:
                    bg.kill()
                with open(agent_report) as f:
                    report = json.load(f)
                if args.out:
                    os.makedirs(args.out, exist_ok=True)
                    shutil.copy(agent_report, os.path.join(args.out, f"{config}-agents.json"))
                    if os.path.exists(bg_report):
                        shutil.copy(bg_report, os.path.join(args.out, f"{config}-background.json"))
                result = report["results"][0]
                # Returning turns: the requests after a think time, whose context a cache can have kept.
                returning = [r["ttft_ms"] for r in report["requests"] if r["turn"] > 0 and r["ttft_ms"] is not None]
                bg_requests = "?"
                if os.path.exists(bg_report):
                    with open(bg_report) as f:
                        bg_requests = json.load(f)["results"][0]["requests"]["ok"]
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(60)
                if hasattr(server, "log_drain"):
                    server.log_drain.join(10)  # the whole log written and closed before it is copied
                for log in ("tern-serve.log", "llama-server.log"):
                    if args.out and os.path.exists(os.path.join(state, log)):
                        os.makedirs(args.out, exist_ok=True)
                        shutil.copy(os.path.join(state, log), os.path.join(args.out, f"{config}-{log}"))
        def count(name):
            return f"{counters[name]:.0f}" if name in counters else "-"
        ttft = result["latency_ms"]["ttft"]
        returning_ttft = f"{percentile(returning, 50):.0f} / {percentile(returning, 99):.0f}"
        tokens = result["tokens"]
        prompt = tokens["prompt"]["server"]
        cost = result.get("cost", {})
        print(f"{config:<10} | {ttft['p50']:>11.0f} | {ttft['p99']:>11.0f} | {result['throughput']['output_tokens_per_s']:>9.2f} | "
              f"{100 * tokens['cached'] / max(prompt, 1):>8.1f} | {returning_ttft:>20} | {cost.get('effective_usd', float('nan')):>11.6f} | "
              f"{cost.get('list_usd', float('nan')):>11.6f} | {bg_requests} | {count('evictions')} | {count('pin_yields')}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
