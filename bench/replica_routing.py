#!/usr/bin/env python3
"""Replica routing in tern's gateway, measured: two `tern serve` replicas of SmolLM2 (one compute thread
each) behind `tern serve --config` with one route, its policy in turn random, least-outstanding,
prefix-affinity and kv-events (the replicas publish their KV-cache events to the gateway), on a
multi-tenant shared-prefix workload: 32 system prompts of 2,048 tokens chosen by Zipf (s = 1), each
request one of them plus 64 tokens of its own, 32 tokens out, a closed loop of 8 streams.

    python3 bench/replica_routing.py [--requests 480] [--warmup 0] [--concurrency 8] [--kv-cache-memory 1G] [--rounds 1]

Each policy starts from fresh replicas (empty caches), so every policy pays its own cold misses; with
--warmup N, N requests of the same workload go first and are left out of every figure (steady state:
a router runs for days, its replicas' caches are warm). Each
replica's KV cache holds about 20 of the 32 prompts: routing that keeps a tenant on one replica needs
half of them per replica, which fit; random routing needs all of them on both, which do not. Reported per policy: throughput
(requests/s, output tokens/s), TTFT p50/p99, the share of prompt tokens served from cache. Target (issue
"Beyond one machine"): kv-events or prefix-affinity >= 1.8x random's throughput with a lower TTFT p99.
Writes --out/summary.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402
import serve_vs_llamacpp  # noqa: E402
from serve_vs_llamacpp import Server  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICIES = ["random", "least-outstanding", "prefix-affinity", "kv-events"]


def run_policy(args, policy, round_index):
    base = 8700 + 10 * round_index
    events = f"tcp://127.0.0.1:{base + 9}"
    replicas = []
    logs = [os.path.join(args.out, f"{policy}-{round_index}-replica-{i}.jsonl") for i in (1, 2)]
    for i in (1, 2):
        if os.path.exists(logs[i - 1]):
            os.remove(logs[i - 1])  # the log appends
        replicas.append(Server(f"{policy}-replica-{i}",
                               [args.tern, "serve", "-m", args.model, "--port", str(base + i), "-t", "1", "--context", "4096",
                                "--kv-cache-memory", args.kv_cache_memory, "--kv-events-endpoint", events,
                                "--kv-events-pod", f"replica-{i}", "--request-log", logs[i - 1]], base + i))
    config = os.path.join(args.out, f"{policy}.yaml")
    extra = f", tokenizer: {args.model}" if policy == "kv-events" else ""
    with open(config, "w") as f:
        f.write(f"kv_events: {{listen: \"{events}\"}}\n"
                "deployments:\n"
                f"  - {{name: replica-1, kind: openai, base_url: \"http://127.0.0.1:{base + 1}/v1\", model: {args.model}, max_connections: 256}}\n"
                f"  - {{name: replica-2, kind: openai, base_url: \"http://127.0.0.1:{base + 2}/v1\", model: {args.model}, max_connections: 256}}\n"
                "routes:\n"
                f"  - {{name: tenants, deployments: [replica-1, replica-2], policy: {policy}{extra}}}\n")
    gateway = Server(f"{policy}-gateway", [args.tern, "serve", "--config", config, "--port", str(base)], base)
    workload = {"seed": 42 + round_index, "input_tokens": 64, "output_tokens": 32, "ignore_eos": True, "temperature": 0,
                "prefix": {"groups": 32, "length_tokens": 2048, "zipf_s": args.zipf, "fraction": 1.0},
                "arrival": {"type": "concurrency", "concurrency": args.concurrency}, "requests": args.requests}
    wl_path = os.path.join(args.out, f"{policy}.workload.json")
    out_path = os.path.join(args.out, f"{policy}-{round_index}.json")
    with open(wl_path, "w") as f:
        json.dump(workload, f)
    warmup = ["--warmup", str(args.warmup)] if args.warmup > 0 else []
    try:
        subprocess.run([args.tern, "bench", "--workload", wl_path, "--target", f"http://127.0.0.1:{base}/v1", "--name", policy,
                        "--model", "tenants", "--json", out_path, "-q", *warmup], check=True, stdout=subprocess.DEVNULL)
    finally:
        gateway.stop()
        for r in replicas:
            r.stop()
    with open(out_path) as f:
        result = json.load(f)["results"][0]
    lat, tokens = result["latency_ms"], result["tokens"]
    misses = classify_misses(logs, skip=args.warmup)
    return {"misses": misses, "ok": result["requests"]["ok"], "failed": result["requests"]["failed"],
            "req_s": result["throughput"]["requests_per_s"], "out_tok_s": result["throughput"]["output_tokens_per_s"],
            "ttft_p50": lat["ttft"]["p50"], "ttft_p99": lat["ttft"]["p99"],
            "cached_share": tokens["cached"] / max(1, tokens["prompt"]["server"] or 1)}


def classify_misses(logs, skip=0):
    """Each replica's request log (prefix_hash: the system prompt) says where the shared prompts were
    computed. A request that computed at least half its prompt is a miss, and it is one of: `first` (no
    replica had seen that prompt), `spill` (another replica had, this one had not: a duplicate placed by
    the router), `concurrent` (this replica had, but that request's prefill was still running: nothing
    to reuse yet), `evicted` (this replica had computed it and dropped it since). The first `skip`
    requests (the warm-up) are followed but not counted."""
    rows = []
    for replica, path in enumerate(logs):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row.get("status") == 200 and row.get("prefix_hash"):
                    rows.append((row["timestamp"], replica, row))
    rows.sort(key=lambda r: r[0])
    seen = {}  # (prefix, replica) -> first-token times of earlier requests there
    anywhere = set()  # prefixes some replica has been asked for
    counts = {"requests": max(0, len(rows) - skip), "hits": 0, "first": 0, "spill": 0, "concurrent": 0, "evicted": 0}
    for index, (arrival, replica, row) in enumerate(rows):
        prefix = row["prefix_hash"]
        computed = row["prompt_tokens"] - row["cached_tokens"]
        here = seen.setdefault((prefix, replica), [])
        if computed * 2 < row["prompt_tokens"]:
            kind = "hits"
        elif prefix not in anywhere:
            kind = "first"
        elif not here:
            kind = "spill"
        elif any(t > arrival for t in here):
            kind = "concurrent"
        else:
            kind = "evicted"
        if index >= skip:
            counts[kind] += 1
        here.append(arrival + row.get("ttft_ms", row["e2e_ms"]) / 1000.0)
        anywhere.add(prefix)
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tern", default=os.path.join(ROOT, "build/tern"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--requests", type=int, default=480)
    p.add_argument("--warmup", type=int, default=0, help="requests sent first and left out of every figure")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--zipf", type=float, default=1.0)
    p.add_argument("--kv-cache-memory", default="1G", help="per replica (1G: 46,600 SmolLM2 tokens, about 20 of the 32 prompts)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--out", default=os.path.join(ROOT, "build/replica-routing"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    serve_vs_llamacpp.OUT = args.out
    policies = args.policies.split(",")
    runs = {policy: [] for policy in policies}
    for r in range(args.rounds):
        for policy in policies:
            runs[policy].append(run_policy(args, policy, r))
            s = runs[policy][-1]
            print(f"round {r + 1} {policy:18s} {s['req_s']:6.2f} req/s  {s['out_tok_s']:7.1f} out tok/s  TTFT p50 {s['ttft_p50']:7.0f} ms "
                  f"p99 {s['ttft_p99']:7.0f} ms  cached {100 * s['cached_share']:4.1f} %  ({s['failed']} failed)", file=sys.stderr)
            m = s["misses"]
            print(f"        of {m['requests']} requests: {m['hits']} hits; misses: {m['first']} first, {m['spill']} spilled to the other "
                  f"replica, {m['concurrent']} while its prefill ran, {m['evicted']} after an eviction", file=sys.stderr)
    summary = {"cpu": cpu_name(), "args": vars(args), "policies": {}}
    random_req_s = None
    print(f"\nCPU: {cpu_name()}; 2 replicas x 1 thread, {args.model}, 32 prompts x 2,048 tokens (Zipf s={args.zipf}), "
          f"{args.concurrency} streams, {args.requests} requests after {args.warmup} warm-up, medians of {args.rounds} round(s)")
    print(f"{'policy':18s} {'req/s':>7s} {'vs random':>9s} {'TTFT p50':>9s} {'TTFT p99':>9s} {'cached':>7s}")
    for policy in policies:
        med = {k: statistics.median(run[k] for run in runs[policy]) for k in ("req_s", "out_tok_s", "ttft_p50", "ttft_p99", "cached_share")}
        summary["policies"][policy] = {"median": med, "runs": runs[policy]}
        if policy == "random":
            random_req_s = med["req_s"]
        ratio = f"{med['req_s'] / random_req_s:8.2f}x" if random_req_s else "        -"
        print(f"{policy:18s} {med['req_s']:7.2f} {ratio} {med['ttft_p50']:7.0f}ms {med['ttft_p99']:7.0f}ms {100 * med['cached_share']:6.1f}%")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
