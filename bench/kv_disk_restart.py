#!/usr/bin/env python3
"""The KV disk tier across a restart: the first request of a returning prompt after `tern serve`
restarted, read back from --kv-disk-cache, against computing it (the same prompt on a server that
never saw it).

    .venv/bin/python bench/kv_disk_restart.py [--tokens 1024,2048,3584] [--prompts 5] [--threads 2]

For each prompt length: N distinct prompts (random token ids) are sent once to a fresh server with an
empty disk tier (each computed from scratch: the "recompute" time), the server is stopped (SIGTERM
writes the queued blocks), a new server starts on the same directory, and the same prompts are sent
again (read from disk). Time = wall time of a non-streaming completion with max_tokens=1, i.e. the
time to first token including HTTP. Reports medians and the ratio, and the CPU.
"""
import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request

from machine import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Server:
    def __init__(self, tern, disk_dir, threads, context):
        self.proc = subprocess.Popen([tern, "serve", "-m", "smollm2-135m", "--port", "0", "-t", str(threads), "--context", str(context),
                                      "--kv-disk-cache", disk_dir, "--ledger", "off", "--keys-db", os.path.join(disk_dir, "keys.db")],
                                     stderr=subprocess.PIPE, text=True)
        self.url = None
        for line in self.proc.stderr:
            m = re.search(r"listening on (http://[\d.]+:\d+)", line)
            if m:
                self.url = m.group(1)
            if "tern serve: ready" in line:
                break
        if self.url is None:
            raise RuntimeError("tern serve did not start")

    def complete(self, tokens):
        body = {"model": "smollm2-135m", "prompt": tokens, "max_tokens": 1, "temperature": 0}
        request = urllib.request.Request(self.url + "/v1/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as r:
            usage = json.loads(r.read())["usage"]
        return time.perf_counter() - start, usage["prompt_tokens_details"]["cached_tokens"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern", default=os.path.join(ROOT, "build", "tern"))
    parser.add_argument("--tokens", default="1024,2048,3584")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    lengths = [int(x) for x in args.tokens.split(",")]
    print(f"CPU: {cpu_name()}, {args.threads} threads; SmolLM2-135M Q4_1; {args.prompts} prompts per length")
    print(f"{'prompt tokens':>14} | {'recompute (ms)':>15} | {'from disk (ms)':>15} | {'cached tokens':>13} | ratio")
    rng = random.Random(7)
    for length in lengths:
        prompts = [[rng.randrange(100, 49000) for _ in range(length)] for _ in range(args.prompts)]
        with tempfile.TemporaryDirectory(prefix="tern-kv-disk-bench-") as disk:
            server = Server(args.tern, disk, args.threads, max(lengths) + 64)
            server.complete([1, 2, 3])  # warm-up (thread pool, first allocation)
            cold = [server.complete(p)[0] for p in prompts]
            server.stop()
            server = Server(args.tern, disk, args.threads, max(lengths) + 64)
            server.complete([1, 2, 3])
            warm, cached = [], []
            for p in prompts:
                seconds, hit = server.complete(p)
                warm.append(seconds)
                cached.append(hit)
            server.stop()
        c, w = statistics.median(cold), statistics.median(warm)
        print(f"{length:>14} | {c * 1000:>15.1f} | {w * 1000:>15.1f} | {min(cached):>13} | {c / w:.1f}x")


if __name__ == "__main__":
    main()
