#!/usr/bin/env python3
"""What an ingress costs per request: one tern replica (SmolLM2, 1 thread) answered directly, through
tern's own gateway (`tern serve --config` with the replica as a remote deployment) and through the Ray
Serve ingress of python/tern_ray (the same replica, started by Ray), one client, one request at a time
(1 output token, a 16-token prompt), the three paths taking turns in rounds.

    .venv-tests/bin/python bench/ray_ingress_overhead.py [--requests 200] [--rounds 3]

Reported: latency p50 / p99 per path, and each ingress's added latency (its p50 / p99 minus the direct
path's). Writes --out/summary.json.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python", "tern_ray"))
sys.path.insert(0, os.path.join(ROOT, "tests", "api"))


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def timed_requests(url, model, n):
    """Latencies (ms) of n sequential chat completions over one keep-alive connection."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say one word about rivers."}],
                       "max_tokens": 1, "temperature": 0})
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        out.append((time.perf_counter() - start) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {data[:200]!r}")
    conn.close()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tern", default=os.path.join(ROOT, "build/tern"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=os.path.join(ROOT, "build/ray-ingress"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import ray
    from ray import serve
    from tern_ray.app import build_app
    from tern_process import TernServe

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.join(ROOT, "python", "tern_ray")}})
    port = 18000 + os.getpid() % 1000
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(model=args.model, tern=args.tern, replicas=1, threads=1), name="tern", route_prefix="/")
    replica = serve.get_deployment_handle("TernReplica", app_name="tern")
    direct = replica.endpoint.remote().result()
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    config.write(f"deployments:\n  - {{name: replica, kind: openai, base_url: \"{direct}/v1\", model: {args.model}}}\n"
                 f"routes:\n  - {{name: {args.model}-gw, deployments: [replica]}}\n")
    config.close()
    gateway = TernServe(args.tern, ["--config", config.name])
    paths = {"direct": (direct, args.model), "tern gateway": (gateway.url, args.model + "-gw"),
             "Ray Serve ingress": (f"http://127.0.0.1:{port}", args.model)}
    latencies = {name: [] for name in paths}
    try:
        for name, (url, model) in paths.items():
            timed_requests(url, model, 20)  # warm-up: connections, caches
        for r in range(args.rounds):
            for name, (url, model) in paths.items():
                latencies[name] += timed_requests(url, model, args.requests)
    finally:
        gateway.stop()
        serve.shutdown()
        ray.shutdown()
    base50, base99 = percentile(latencies["direct"], 0.5), percentile(latencies["direct"], 0.99)
    summary = {"cpu": cpu_name(), "args": vars(args), "paths": {}}
    print(f"CPU: {cpu_name()}; {args.model}, 1 thread, 1 output token, {args.rounds} x {args.requests} requests per path")
    print(f"{'path':20s} {'p50 ms':>8s} {'p99 ms':>8s} {'added p50':>10s} {'added p99':>10s}")
    for name, values in latencies.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        summary["paths"][name] = {"p50_ms": p50, "p99_ms": p99, "mean_ms": statistics.mean(values)}
        print(f"{name:20s} {p50:8.2f} {p99:8.2f} {p50 - base50:10.2f} {p99 - base99:10.2f}")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
