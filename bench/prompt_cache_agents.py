#!/usr/bin/env python3
"""Prompt-cache retention on agent traffic: agent sessions (a shared system prompt, a context that grows
turn by turn, think time between turns) on a server that also carries one-shot background requests
churning its KV pool — tern with retention (every agent request sends prompt_cache_retention: 24h),
tern with plain LRU prefix caching, and tern with caching off, one after another on a fresh server.

    .venv/bin/python bench/prompt_cache_agents.py [--sessions 12] [--concurrency 6] [--think 10,30]
                                                  [--background 2,1500] [--pin-fraction 0.75]

Scaled to SmolLM2 on 2 cores (the issue's 4-8k-token prompts and 30-300 s think times take hours on this
machine; the shape is the same): system prompt 1024 tokens, 4 turns of 100-200 new tokens and 32 output
tokens, think time uniform in [10, 30] s, 6 sessions at a time (closed loop) out of 12; background: 2
streams of unique 1500-token prompts (8 output tokens) for as long as the agents run. KV cache 12k
tokens (270 MiB), of which retention may pin 75 %: it cannot hold every session and the background
besides. Both loads are `tern bench` runs against the same server; the agents' report is the result
(TTFT p50/p99, output tok/s, effective cost with input 1.0, cached 0.1, cache write 2.0, output 5.0 USD
per 1M tokens, cached share of prompt tokens).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from machine import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERN = os.path.join(ROOT, "build", "tern")
PRICE = {"input_per_mtok": 1.0, "cached_input_per_mtok": 0.1, "cache_write_per_mtok": 2.0, "output_per_mtok": 5.0}


def start_server(flags, state, pin_fraction):
    proc = subprocess.Popen([TERN, "serve", "-m", "smollm2-135m", "--port", "0", "-t", "2", "--context", "4096",
                             "--kv-cache-memory", "270M", "--kv-pin-fraction", str(pin_fraction), "--ledger", "off",
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
    return proc, url


def bench(url, workload, state, name):
    path = os.path.join(state, f"{name}.json")
    report = os.path.join(state, f"{name}-report.json")
    workload = dict(workload, targets=[{"name": name, "url": url + "/v1", "model": "smollm2-135m", "price": PRICE}])
    with open(path, "w") as f:
        json.dump(workload, f)
    return subprocess.Popen([TERN, "bench", "--workload", path, "--json", report, "-q", "--tokenizer", "smollm2-135m"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--think", default="10,30", help="think time range in seconds")
    parser.add_argument("--configs", default="retention,lru,off")
    parser.add_argument("--background", default="2,1500", help="background streams, prompt tokens")
    parser.add_argument("--pin-fraction", type=float, default=0.75)
    args = parser.parse_args()
    think_lo, think_hi = (float(x) for x in args.think.split(","))
    turns = 4
    agents = {"seed": 11, "prefix": {"groups": 1, "length_tokens": 1024},
              "sessions": {"turns": turns, "think_time_ms": think_lo * 1000, "think_time_max_ms": think_hi * 1000},
              "input_tokens": {"dist": "uniform", "min": 100, "max": 200}, "output_tokens": 32, "ignore_eos": True,
              "arrival": {"type": "concurrency", "concurrency": args.concurrency}, "requests": args.sessions * turns}
    bg_streams, bg_tokens = (int(x) for x in args.background.split(","))
    background = {"seed": 12, "input_tokens": bg_tokens, "output_tokens": 8, "ignore_eos": True,
                  "arrival": {"type": "concurrency", "concurrency": bg_streams}, "requests": 100000, "duration_s": 3600}
    print(f"CPU: {cpu_name()}; tern serve -t 2, SmolLM2-135M Q4_1, KV 270 MiB (~12k tokens), --kv-pin-fraction {args.pin_fraction}")
    print(f"agents: {args.sessions} sessions x {turns} turns, {args.concurrency} at a time, think {think_lo:g}-{think_hi:g} s; "
          f"background: {bg_streams} streams of unique {bg_tokens}-token prompts")
    print(f"{'config':<10} | {'TTFT p50 ms':>11} | {'TTFT p99 ms':>11} | {'out tok/s':>9} | {'cached %':>8} | "
          f"{'eff. cost $':>11} | {'list cost $':>11} | background reqs")
    for config in args.configs.split(","):
        with tempfile.TemporaryDirectory(prefix="tern-agents-") as state:
            flags = ["--no-prefix-caching"] if config == "off" else []
            server, url = start_server(flags, state, args.pin_fraction)
            try:
                workload = dict(agents, cache_retention="24h") if config == "retention" else agents
                bg, bg_report = bench(url, background, state, "background")
                time.sleep(2)
                agent, agent_report = bench(url, workload, state, config)
                _, err = agent.communicate()
                if agent.returncode != 0:
                    print(err, file=sys.stderr)
                bg.send_signal(signal.SIGINT)
                try:
                    bg.wait(120)
                except subprocess.TimeoutExpired:
                    bg.kill()
                with open(agent_report) as f:
                    result = json.load(f)["results"][0]
                bg_requests = "?"
                if os.path.exists(bg_report):
                    with open(bg_report) as f:
                        bg_requests = json.load(f)["results"][0]["requests"]["ok"]
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(60)
        ttft = result["latency_ms"]["ttft"]
        tokens = result["tokens"]
        prompt = tokens["prompt"]["server"]
        cost = result.get("cost", {})
        print(f"{config:<10} | {ttft['p50']:>11.0f} | {ttft['p99']:>11.0f} | {result['throughput']['output_tokens_per_s']:>9.2f} | "
              f"{100 * tokens['cached'] / max(prompt, 1):>8.1f} | {cost.get('effective_usd', float('nan')):>11.6f} | "
              f"{cost.get('list_usd', float('nan')):>11.6f} | {bg_requests}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
