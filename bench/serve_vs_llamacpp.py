#!/usr/bin/env python3
"""tern serve against llama.cpp's server (llama-server, built from the llama.cpp source of the dev
venv's llama-cpp-python by tools/build_llama_server.sh), same model, same threads, one server at a time
on this machine, load from `tern bench`.

    .venv/bin/python bench/serve_vs_llamacpp.py [--levels 1,4,16,64] [--threads 2] [--peers llama-server,llama-cpp-python,tern-itl-off,tern-itl=1.4x]

1. Concurrency sweep: 256-token prompts, 128 output tokens (ignore_eos), closed loop at each level:
   output tokens/s, TTFT and ITL p50/p99, per server, and tern/llama.cpp ratios.
2. Prefix-heavy: one 1,024-token shared prefix + 32-token user turns, 32 output tokens, concurrency 4:
   tern with prefix caching on and off (and llama-server, whose slots cache their own last prompt).
Raw `tern bench` JSON reports go to --out (default build/serve-bench/).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_ready(url, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        for path in ("/ready", "/health", "/v1/models"):
            try:
                with urllib.request.urlopen(url + path, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
        time.sleep(0.3)
    raise RuntimeError("server not ready in time")


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Server:
    def __init__(self, name, args, port):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(OUT, f"{name}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(self.url, self.proc)

    def stop(self):
        rss = peak_rss_mib(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return rss


def tern_server(args, port, extra=(), name=None):
    return Server(name or "tern" + "".join(extra).replace("--", "-"),
                  [args.tern, "serve", "-m", args.model, "--port", str(port), "-t", str(args.threads),
                   "--max-running", "64", "--kv-cache-memory", "1G", *extra], port)


def llama_server(args, port, slots, ctx_per_slot):
    path = subprocess.run([args.tern, "pull", args.model], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    path = re.sub(r"^.*?(/\S+\.gguf).*$", r"\1", path)
    return Server("llama-server", [args.llama_server, "-m", path, "--alias", args.model, "--port", str(port),
                                   "-t", str(args.threads), "-tb", str(args.threads), "-np", str(slots),
                                   "-c", str(slots * ctx_per_slot), "-b", "512", "-ub", "512", "--no-webui"], port)


def llama_cpp_python_server(args, port):
    """llama-cpp-python's `[server]` extra: one request at a time (no batching across requests)."""
    path = subprocess.run([args.tern, "pull", args.model], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return Server("llama-cpp-python", [sys.executable, "-m", "llama_cpp.server", "--model", path, "--model_alias", args.model,
                                       "--port", str(port), "--n_threads", str(args.threads),
                                       "--n_threads_batch", str(args.threads), "--n_ctx", "2048"], port)


def bench(args, server, workload, tag):
    wl_path = os.path.join(OUT, f"{tag}-{server.name}.workload.json")
    out_path = os.path.join(OUT, f"{tag}-{server.name}.json")
    with open(wl_path, "w") as f:
        json.dump(workload, f)
    subprocess.run([args.tern, "bench", "--workload", wl_path, "--target", server.url + "/v1", "--name", server.name,
                    "--model", args.model, "--api", "completions", "--json", out_path],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out_path) as f:
        return json.load(f)["results"]


def summary(result):
    lat = result["latency_ms"]
    return {"load": result["load"], "ok": result["requests"]["ok"], "failed": result["requests"]["failed"],
            "out_tok_s": result["throughput"]["output_tokens_per_s"],
            "ttft_p50": lat["ttft"]["p50"], "ttft_p99": lat["ttft"]["p99"],
            "itl_p50": lat["itl_per_chunk"]["p50"], "itl_p99": lat["itl_per_chunk"]["p99"],
            "cached": result["tokens"]["cached"]}


def main():
    global OUT
    p = argparse.ArgumentParser()
    p.add_argument("--tern", default=os.path.join(ROOT, "build/tern"))
    p.add_argument("--llama-server", default=os.path.join(ROOT, "build-peer/bin/llama-server"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--levels", default="1,4,16,64")
    p.add_argument("--out", default=os.path.join(ROOT, "build/serve-bench"))
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--skip-prefix", action="store_true")
    p.add_argument("--peers", default="llama-server",
                   help="comma list: llama-server (continuous batching), llama-cpp-python (its [server] extra)")
    args = p.parse_args()
    OUT = args.out
    os.makedirs(OUT, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",")]
    report = {"machine": os.uname().nodename, "threads": args.threads, "model": args.model}

    if not args.skip_sweep:
        workload = {"seed": 42, "input_tokens": 256, "output_tokens": 128, "ignore_eos": True, "temperature": 0,
                    "stages": [{"arrival": {"type": "concurrency", "concurrency": c}, "requests": max(8, 2 * c)}
                               for c in levels]}
        sweep = {}
        peers = args.peers.split(",")
        makers = [lambda: tern_server(args, 18180)]
        if "llama-server" in peers:
            makers.append(lambda: llama_server(args, 18181, max(levels), 256 + 128 + 64))
        if "llama-cpp-python" in peers:
            makers.append(lambda: llama_cpp_python_server(args, 18185))
        if "tern-itl-off" in peers:  # tern without the inter-token target: chunks fill --max-batch-tokens
            makers.append(lambda: tern_server(args, 18186, ("--itl-target", "off"), name="tern-itl-off"))
        for i, peer in enumerate(p for p in peers if p.startswith("tern-itl=")):  # e.g. tern-itl=1.4x, tern-itl=50ms
            value = peer.split("=", 1)[1]
            makers.append(lambda value=value, port=18187 + i: tern_server(args, port, ("--itl-target", value), name=f"tern-itl-{value}"))
        for make in makers:
            server = make()
            try:
                sweep[server.name] = [summary(r) for r in bench(args, server, workload, "sweep")]
            finally:
                sweep[server.name + "_peak_rss_mib"] = server.stop()
        report["sweep"] = sweep
        print(f"\n## Concurrency sweep: 256-token prompts, 128 output tokens, {args.threads} threads\n")
        print("| concurrency | server | out tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | failed |")
        print("|---|---|---|---|---|---|")
        names = [n for n in sweep if not n.endswith("_peak_rss_mib")]
        for i, c in enumerate(levels):
            for name in names:
                s = sweep[name][i]
                print(f"| {c} | {name} | {s['out_tok_s']:.1f} | {s['ttft_p50']:.0f} / {s['ttft_p99']:.0f} | "
                      f"{s['itl_p50']:.1f} / {s['itl_p99']:.1f} | {s['failed']} |")
        for peer in names[1:]:
            print(f"\n| concurrency | throughput tern / {peer} | TTFT p99 tern / {peer} | ITL p99 tern / {peer} |")
            print("|---|---|---|---|")
            for i, c in enumerate(levels):
                t, l = sweep["tern"][i], sweep[peer][i]
                print(f"| {c} | {t['out_tok_s'] / l['out_tok_s']:.2f}x | {t['ttft_p99'] / l['ttft_p99']:.2f} | "
                      f"{t['itl_p99'] / l['itl_p99']:.2f} |")
        print("\npeak RSS: " + ", ".join(f"{n} {sweep[n + '_peak_rss_mib']:.0f} MiB" for n in names))

    if not args.skip_prefix:
        workload = {"seed": 7, "input_tokens": 32, "output_tokens": 32, "ignore_eos": True, "temperature": 0,
                    "prefix": {"groups": 1, "length_tokens": 1024, "fraction": 1.0},
                    "arrival": {"type": "concurrency", "concurrency": 4}, "requests": 32}
        prefix = {}
        for make in (lambda: tern_server(args, 18182), lambda: tern_server(args, 18183, ("--no-prefix-caching",)),
                     lambda: llama_server(args, 18184, 4, 1024 + 32 + 32 + 64)):
            server = make()
            try:
                prefix[server.name] = summary(bench(args, server, workload, "prefix")[0])
            finally:
                server.stop()
        report["prefix"] = prefix
        print("\n## Prefix-heavy: 1,024-token shared prefix + 32-token turns, 32 output tokens, concurrency 4\n")
        print("| server | out tok/s | TTFT p50 / p99 ms | cached prompt tokens |")
        print("|---|---|---|---|")
        for name, s in prefix.items():
            label = {"tern": "tern, prefix caching on", "tern-no-prefix-caching": "tern, prefix caching off"}.get(name, name)
            print(f"| {label} | {s['out_tok_s']:.1f} | {s['ttft_p50']:.0f} / {s['ttft_p99']:.0f} | {s['cached']} |")

    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
