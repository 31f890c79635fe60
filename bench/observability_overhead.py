#!/usr/bin/env python3
"""What observability costs `tern serve`: output tokens/s and inter-token p99 at 16 and 64 streams with
everything on - the request log, --metrics-compat vllm, traces kept (4096) and exported over OTLP to a
collector (a minimal one in this process that reads and discards), /metrics scraped every second as
Prometheus would, and the web console open (its data polled every second as the page does) - against
all of it off (--traces 0 --console off), the two servers alternating within each round (in turn
first) on this machine.

    python3 bench/observability_overhead.py [--rounds 3] [--streams 16,64] [--requests-per-stream 3]
    python3 bench/observability_overhead.py --threads 1 --server-cpus 0 --client-cpus 1   # observers off the server's core
    python3 bench/observability_overhead.py ... --profile 20   # and tern's own share of CPU in observability code

--profile S samples the "on" server with `perf record` (call stacks) for S seconds during its last run
at the highest stream count and reports the share of its CPU samples whose stack is in observability
code (the request log, trace store and timelines, OTLP export, the console's sampler and data, /metrics):
what tern itself spends, free of this machine's run-to-run noise.

Load from `tern bench` (closed loop, 128 -> 64 tokens, ignore_eos). Medians over --rounds. Targets (issue
"Observability"): < 2 % throughput and < 5 % p99 cost. Writes --out/summary.json.
"""
import argparse
import http.server
import json
import os
import re
import subprocess
import statistics
import sys
import tempfile
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402
import serve_vs_llamacpp  # noqa: E402
from serve_vs_llamacpp import Server, bench, summary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Collector:
    """An OTLP/HTTP endpoint that reads each POST and answers 200 (what a collector costs tern is the
    export, not the collector's work)."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# Frames of tern's observability code: a sample with any of them on its stack is observability's cost.
OBSERVE_FRAMES = re.compile(r"tern::observe::|RequestLog|OtlpExporter|LiveStats|TraceStore|Trace::|metrics_text|vllm_compat|"
                            r"register_observe_routes|trace_chunk|observe_finished")


def observability_share(perf_data):
    """(samples, samples in observability code, the top frames there) from a `perf record -g` file."""
    script = subprocess.run(["perf", "script", "-i", perf_data, "-F", "comm,tid,ip,sym"], capture_output=True, text=True, check=True).stdout
    total, hits, frames = 0, 0, {}
    for sample in script.split("\n\n"):
        lines = sample.strip().split("\n")
        if not lines or not lines[0]:
            continue
        total += 1
        matched = [line for line in lines[1:] if OBSERVE_FRAMES.search(line)]
        if matched:
            hits += 1
            frame = re.sub(r"^\s*[0-9a-f]+\s+", "", matched[-1])[:100]  # the outermost observability frame
            frames[frame] = frames.get(frame, 0) + 1
    return total, hits, sorted(frames.items(), key=lambda kv: -kv[1])[:8]


class Scraper:
    """GETs a path every second while the load runs: /metrics as a Prometheus server would, or the
    console's data as an open console page does."""

    def __init__(self, url, path="/metrics"):
        self.url, self.stop_event = url + path, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_event.wait(1.0):
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
            except OSError:
                pass

    def stop(self):
        self.stop_event.set()
        self.thread.join()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tern", default=os.path.join(ROOT, "build/tern"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--streams", default="16,64")
    p.add_argument("--requests-per-stream", type=int, default=3)
    p.add_argument("--server-cpus", help="run tern serve on these CPUs only (taskset list, e.g. 0)")
    p.add_argument("--client-cpus", help="run the load, the collector and the pollers on these CPUs only (e.g. 1): what is "
                                         "measured is then tern's own observability work, not its observers'")
    p.add_argument("--profile", type=float, default=0, metavar="S",
                   help="perf-record the 'on' server for S seconds in its last run at the most streams; report observability's CPU share")
    p.add_argument("--out", default=os.path.join(ROOT, "build/observability-bench"))
    args = p.parse_args()
    if args.client_cpus:  # this process's threads (collector, pollers) and its children (tern bench)
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    pin = ["taskset", "-c", args.server_cpus] if args.server_cpus else []
    os.makedirs(args.out, exist_ok=True)
    serve_vs_llamacpp.OUT = args.out
    log_dir = tempfile.mkdtemp(prefix="tern-obs-bench-")
    collector = Collector()
    configs = {
        "off": ["--traces", "0", "--console", "off"],
        "on": ["--request-log", os.path.join(log_dir, "requests.jsonl"), "--metrics-compat", "vllm", "--otlp-endpoint", collector.url],
    }
    results = {level: {name: [] for name in configs} for level in (int(s) for s in args.streams.split(","))}
    print(f"CPU: {cpu_name()}, {args.threads} threads, server CPUs {args.server_cpus or 'all'}, client CPUs {args.client_cpus or 'all'}")
    for round_index in range(args.rounds):
        for level in results:
            # The order alternates between rounds: a machine that slows down over the run favours neither.
            order = list(configs.items()) if round_index % 2 == 0 else list(reversed(configs.items()))
            for name, extra in order:
                server = Server(f"tern-{name}", [*pin, args.tern, "serve", "-m", args.model, "--port", "18192", "-t", str(args.threads),
                                                 "--max-running", "64", "--kv-cache-memory", "1G", *extra], 18192)
                scrapers = [Scraper(server.url), Scraper(server.url, "/admin/console/data")] if name == "on" else []
                perf = None
                if args.profile > 0 and name == "on" and round_index == args.rounds - 1 and level == max(results):
                    perf = subprocess.Popen(["perf", "record", "-q", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(server.proc.pid),
                                             "-o", os.path.join(args.out, "perf.data"), "--", "sleep", str(args.profile)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    workload = {"seed": 1, "input_tokens": 128, "output_tokens": 64, "ignore_eos": True,
                                "stages": [{"arrival": {"type": "concurrency", "concurrency": level}, "requests": level * args.requests_per_stream}]}
                    results[level][name].append(summary(bench(args, server, workload, f"c{level}")[0]))
                finally:
                    if perf is not None:
                        perf.wait()
                    for scraper in scrapers:
                        scraper.stop()
                    server.stop()
    report = {"cpu": cpu_name(), "threads": args.threads, "server_cpus": args.server_cpus, "client_cpus": args.client_cpus, "levels": {}}
    print("\n| streams | tok/s off | tok/s on | ratio | ITL p99 off (ms) | ITL p99 on (ms) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for level, per in results.items():
        med = {name: {k: statistics.median(r[k] for r in runs) for k in ("out_tok_s", "itl_p99")} for name, runs in per.items()}
        report["levels"][level] = {"median": med, "raw": per}
        off, on = med["off"], med["on"]
        print(f"| {level} | {off['out_tok_s']:.0f} | {on['out_tok_s']:.0f} | {on['out_tok_s'] / off['out_tok_s']:.3f} | "
              f"{off['itl_p99']:.1f} | {on['itl_p99']:.1f} | {on['itl_p99'] / off['itl_p99']:.3f} |")
    if args.profile > 0:
        total, hits, frames = observability_share(os.path.join(args.out, "perf.data"))
        share = 100.0 * hits / max(total, 1)
        report["profile"] = {"samples": total, "observability_samples": hits, "share_percent": share, "frames": frames}
        print(f"\nperf, 'on' server, {max(results)} streams, {args.profile:g} s: {hits} of {total} CPU samples in observability code = {share:.2f} %")
        for frame, count in frames:
            print(f"  {count:5d}  {frame}")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
