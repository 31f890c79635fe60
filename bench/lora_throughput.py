#!/usr/bin/env python3
"""Multi-LoRA serving throughput: tern serve against llama.cpp's llama-server, same base model, same
adapters, same threads, one server at a time on this machine.

    .venv/bin/python bench/lora_throughput.py [--adapters 0,1,8,64,256] [--levels 16,64] [--dists uniform,zipf]

Workload: 256-token prompts (random token ids, distinct per request), 128 output tokens (ignore_eos,
greedy), closed loop at each concurrency level; 3 x concurrency requests per run for tern, 1 x for
llama-server (about 4x slower; it runs a subset of the adapter counts, --peer-adapters). Each request names
one of N rank-16 adapters (made by tools/make_lora_adapters.py --count N --rank 16, attention and FFN)
drawn uniformly or Zipf(1.0); N = 0 is the base model alone. tern addresses an adapter by its served
name ("model": "a17"); llama-server has every adapter loaded at start (--lora ... --lora-init-without-apply)
and takes the request's `lora` field ([{"id": 17, "scale": 1}]). Output tokens/s = completion tokens of
all requests / wall time of the run.

Also: adapter load time from disk (tern's /v1/load_lora_adapter, median of 10) and memory per adapter
(tern's RSS with all N adapters loaded minus its RSS with none, / N).
"""
import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def post(url, body, timeout=600):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return json.loads(r.read())


def wait_ready(url, proc, path, timeout=600):
    """Until `path` answers 200: tern's /ready (its /health is up while the models load), llama-server's /health."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + path, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready in time")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, name, args, port, log_dir):
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(log_dir, f"{name}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(self.url, self.proc, "/ready" if name.startswith("tern") else "/health")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def adapter_files(args, count):
    directory = os.path.join(args.out, "adapters")
    paths = [os.path.join(directory, f"smollm2-bench-{i}.gguf") for i in range(count)]
    if not all(os.path.exists(p) for p in paths):
        print(f"making {count} rank-16 adapters in {directory} ...", file=sys.stderr)
        subprocess.run([args.python, os.path.join(ROOT, "tools/make_lora_adapters.py"), args.base, directory, "smollm2",
                        "--count", str(count), "--rank", "16"], check=True)
    return paths


def tern(args, port, adapters, tag, dtype="f16"):
    lora = [a for i, path in enumerate(adapters) for a in ("--lora", f"a{i}={path}")]
    return Server(f"tern-{dtype}-{tag}", [args.tern, "serve", "--lora-dtype", dtype, "-m", args.base, "--served-model-name", "base", "--port", str(port),
                                  "-t", str(args.threads), "--max-running", "64", "--kv-cache-memory", "1G", "--ledger", "off",
                                  "--keys-db", os.path.join(args.out, "keys.db"), "--max-loras", str(max(1, len(adapters))),
                                  *lora], port, args.out)


def llama(args, port, adapters, tag, slots):
    lora = [a for path in adapters for a in ("--lora", path)]
    extra = ["--lora-init-without-apply"] if adapters else []
    return Server(f"llama-server-{tag}", [args.llama_server, "-m", args.base, "--alias", "base", "--port", str(port),
                                          "-t", str(args.threads), "-tb", str(args.threads), "-np", str(slots),
                                          "-c", str(slots * (256 + 128 + 64)), "-b", "512", "-ub", "512", "--no-webui",
                                          *lora, *extra], port, args.out)


def choose(num_adapters, dist, count, rng):
    if num_adapters == 0:
        return [None] * count
    if dist == "uniform":
        return [rng.randrange(num_adapters) for _ in range(count)]
    weights = [1.0 / (k + 1) for k in range(num_adapters)]
    return rng.choices(range(num_adapters), weights=weights, k=count)


def run_load(server, kind, picks, concurrency, seed):
    """Closed loop: `concurrency` workers, each sending its share of requests one after another."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(1000, 40000) for _ in range(256)] for _ in picks]
    tokens, errors, lock = [0], [], threading.Lock()
    queue = list(range(len(picks)))

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop()
            body = {"model": "base", "prompt": prompts[i], "max_tokens": 128, "temperature": 0, "ignore_eos": True}
            if picks[i] is not None:
                if kind == "tern":
                    body["model"] = f"a{picks[i]}"
                else:
                    body["lora"] = [{"id": picks[i], "scale": 1.0}]
            try:
                usage = post(server.url + "/v1/completions", body)["usage"]
                with lock:
                    tokens[0] += usage["completion_tokens"]
            except Exception as e:  # counted, never hidden
                detail = e.read().decode(errors="replace")[:300] if hasattr(e, "read") else ""
                with lock:
                    errors.append(f"{e} {detail}")

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return {"out_tok_s": tokens[0] / elapsed, "seconds": elapsed, "tokens": tokens[0], "errors": len(errors),
            "first_error": errors[0] if errors else None}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tern", default=os.path.join(ROOT, "build/tern"))
    p.add_argument("--llama-server", default=os.path.join(ROOT, "build-peer/bin/llama-server"))
    p.add_argument("--base", default=os.path.expanduser("~/.cache/tern/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--python", default=os.path.join(ROOT, ".venv-tests/bin/python"), help="has gguf + numpy")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--adapters", default="0,1,8,64,256")
    p.add_argument("--levels", default="16,64")
    p.add_argument("--dists", default="uniform,zipf")
    p.add_argument("--servers", default="tern,llama-server",
                   help="tern (adapters kept as f16, the default), tern-q8 (--lora-dtype q8), llama-server")
    p.add_argument("--requests-per-slot", type=int, default=3)
    p.add_argument("--peer-adapters", default="0,8,64", help="adapter counts llama-server runs (it is slow: a subset)")
    p.add_argument("--peer-dists", default="uniform")
    p.add_argument("--peer-requests-per-slot", type=int, default=1)
    p.add_argument("--out", default=os.path.join(ROOT, "build/lora-bench"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    counts = [int(x) for x in args.adapters.split(",")]
    levels = [int(x) for x in args.levels.split(",")]
    all_adapters = adapter_files(args, max(counts))
    report = {"machine": os.uname().nodename, "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip(),
              "threads": args.threads, "runs": []}
    print(f"CPU: {report['cpu']}, {args.threads} threads", file=sys.stderr)

    peer_counts = [int(x) for x in args.peer_adapters.split(",")]
    for count in counts:
        adapters = all_adapters[:count]
        for kind in args.servers.split(","):
            is_tern = kind.startswith("tern")
            if kind == "tern-q8" and count == 0:
                continue  # the base model alone does not depend on how adapters are kept
            if not is_tern and count not in peer_counts:
                continue
            dists = ["-"] if count <= 1 else (args.dists if is_tern else args.peer_dists).split(",")
            per_slot = args.requests_per_slot if is_tern else args.peer_requests_per_slot
            if is_tern:
                server = tern(args, 18190, adapters, f"{count}", "q8" if kind == "tern-q8" else "f16")
            else:
                server = llama(args, 18191, adapters, f"{count}", max(levels))
            try:
                if is_tern:
                    report.setdefault(f"{kind.replace('-', '_')}_rss_mib", {})[count] = rss_mib(server.proc.pid)
                for dist in dists:
                    for c in levels:
                        picks = choose(count, dist, per_slot * c, random.Random(count * 1000 + c))
                        result = run_load(server, "tern" if is_tern else kind, picks, c, seed=c)
                        row = {"server": kind, "adapters": count, "dist": dist, "concurrency": c, **result}
                        report["runs"].append(row)
                        print(json.dumps(row), file=sys.stderr)
                if kind == "tern" and count == max(counts) and count > 0:
                    times = []
                    for i in range(10):
                        start = time.monotonic()
                        post(server.url + "/v1/load_lora_adapter", {"lora_name": f"extra{i}", "lora_path": adapters[i % count]})
                        times.append(time.monotonic() - start)
                    report["load_seconds_median"] = statistics.median(times)
            finally:
                server.stop()
    if 0 in report.get("tern_rss_mib", {}) and max(counts) > 0:
        n = max(counts)
        report["mib_per_adapter"] = (report["tern_rss_mib"][n] - report["tern_rss_mib"][0]) / n
        if n in report.get("tern_q8_rss_mib", {}):
            report["mib_per_adapter_q8"] = (report["tern_q8_rss_mib"][n] - report["tern_rss_mib"][0]) / n
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=1)

    print(f"\n## Multi-LoRA throughput, SmolLM2-135M Q4_1, rank-16 adapters, {args.threads} threads ({report['cpu']})\n")
    print("| adapters | distribution | concurrency | tern out tok/s | vs tern base | tern q8 out tok/s | vs tern base "
          "| llama-server out tok/s | tern / llama-server |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = report["runs"]

    def find(server, count, dist, c):
        return next((r for r in runs if r["server"] == server and r["adapters"] == count and r["dist"] == dist and r["concurrency"] == c), None)

    for count in counts:
        for dist in (["-"] if count <= 1 else args.dists.split(",")):
            for c in levels:
                t, l, base = find("tern", count, dist, c), find("llama-server", count, dist, c), find("tern", 0, "-", c)
                q8 = find("tern-q8", count, dist, c)
                cells = [f"{t['out_tok_s']:.1f}" if t else "-", f"{t['out_tok_s'] / base['out_tok_s']:.0%}" if t and base else "-",
                         f"{q8['out_tok_s']:.1f}" if q8 else "-", f"{q8['out_tok_s'] / base['out_tok_s']:.0%}" if q8 and base else "-",
                         f"{l['out_tok_s']:.1f}" if l else "-", f"{t['out_tok_s'] / l['out_tok_s']:.2f}x" if t and l else "-"]
                print(f"| {count} | {dist} | {c} | " + " | ".join(cells) + " |")
    if "load_seconds_median" in report:
        print(f"\nadapter load from disk (tern, /v1/load_lora_adapter, median of 10): {report['load_seconds_median'] * 1000:.0f} ms")
    if "mib_per_adapter" in report:
        print(f"memory per rank-16 adapter (tern RSS delta / adapters): {report['mib_per_adapter']:.1f} MiB")
    if "mib_per_adapter_q8" in report:
        print(f"memory per rank-16 adapter kept as q8: {report['mib_per_adapter_q8']:.1f} MiB")
    errors = sum(r["errors"] for r in runs)
    print(f"failed requests: {errors}")


if __name__ == "__main__":
    main()
