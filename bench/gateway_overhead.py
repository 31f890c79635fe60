#!/usr/bin/env python3
"""Gateway overhead, side by side on one machine: a fixture upstream that answers at once with a
32-chunk stream, reached (a) directly, (b) through `tern serve --config` with no keys and no ledger,
(c) through `tern serve` with everything a multi-tenant deployment runs — an API key checked on every
request, its requests/min, tokens/min, concurrency and budget limits, and a SQLite ledger row committed
before each response's last bytes — and (d) through LiteLLM's proxy (its documented minimal config),
each under the same `tern bench` load, one after another (they share this machine's cores, so they are
never loaded at the same moment):

  * open loop, Poisson arrivals at --rate req/s for --duration s;
  * closed loop, --concurrency requests in flight, --requests requests.

Reports, per proxy, the TTFT and end-to-end latency it adds over the direct path at p50 and p99, and its
CPU time per request (from /proc/PID/stat over the run, children included: LiteLLM's workers). Medians
over --rounds rounds.

    python3 bench/gateway_overhead.py --tern build/tern --fixture build/tests/bench/bench_fixture_server \
        --litellm .venv-litellm/bin/litellm [--rate 1000 --duration 10 --concurrency 64 --requests 5000 --rounds 3]

LiteLLM comes from PyPI in its own venv: python3 -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]==1.100.0'
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout} s")


def cpu_seconds(pid):
    """User + system CPU of a process and its live children (LiteLLM runs uvicorn workers)."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    except Exception:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            pass
    return total


def bench(tern, url, load_args, out, key=None):
    cmd = [tern, "bench", "--target", url, "--model", "fixture", "--input-tokens", "16", "--output-tokens", "32",
           "--tokenizer", "none", "--max-connections", "4096", "--json", out, "-q", *load_args]
    env = dict(os.environ)
    if key:
        cmd += ["--api-key-env", "TERN_OVERHEAD_KEY"]
        env["TERN_OVERHEAD_KEY"] = key
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    with open(out) as f:
        result = json.load(f)["results"][0]
    lat = result["latency_ms"]
    return {"ttft_p50": lat["ttft"]["p50"], "ttft_p99": lat["ttft"]["p99"], "e2e_p50": lat["e2e"]["p50"], "e2e_p99": lat["e2e"]["p99"],
            "ok": result["requests"]["ok"], "total": result["requests"]["total"], "rps": result["throughput"]["requests_per_s"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tern", default="build/tern")
    ap.add_argument("--fixture", default="build/tests/bench/bench_fixture_server")
    ap.add_argument("--litellm", default=".venv-litellm/bin/litellm", help="the litellm proxy executable ('' to skip)")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write all figures here")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    procs = []
    try:
        fixture_port = free_port()
        fixture = subprocess.Popen([args.fixture, "--port", str(fixture_port), "--ttft-ms", "0", "--itl-ms", "0"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(fixture)
        upstream = f"http://127.0.0.1:{fixture_port}/v1"
        wait_http(upstream.rsplit("/v1", 1)[0] + "/health", fixture)

        targets = {"direct": (upstream, None, None)}
        tern_config = os.path.join(tmp.name, "tern.yaml")
        with open(tern_config, "w") as f:
            f.write(f"deployments:\n  - name: fixture\n    kind: openai\n    base_url: {upstream}\n    model: fixture\n"
                    f"    max_connections: 4096\n    prices: {{input: 0.15, output: 0.60}}\n")
        # (b) no keys, no ledger; (c) a key with every limit set (high enough never to refuse) and the
        # SQLite ledger.
        keys_db = os.path.join(tmp.name, "keys.db")
        key = subprocess.run([args.tern, "keys", "--keys-db", keys_db, "create", "--name", "bench", "--org", "bench",
                              "--rpm", "100000000", "--tpm", "100000000000", "--max-parallel", "1000000", "--budget", "1000000"],
                             check=True, capture_output=True, text=True).stdout.strip()
        for name, extra, target_key in (
                ("tern", ["--keys-db", os.path.join(tmp.name, "empty-keys.db"), "--ledger", "off"], None),
                ("tern+tenants", ["--keys-db", keys_db, "--ledger", os.path.join(tmp.name, "ledger.db")], key)):
            tern_port = free_port()
            tern_proc = subprocess.Popen([args.tern, "serve", "--config", tern_config, "--port", str(tern_port), *extra],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(tern_proc)
            wait_http(f"http://127.0.0.1:{tern_port}/ready", tern_proc)
            targets[name] = (f"http://127.0.0.1:{tern_port}/v1", tern_proc, target_key)

        if args.litellm:
            litellm_port = free_port()
            litellm_config = os.path.join(tmp.name, "litellm.yaml")
            with open(litellm_config, "w") as f:  # LiteLLM's documented minimal proxy config
                f.write(f"model_list:\n  - model_name: fixture\n    litellm_params:\n      model: openai/fixture\n"
                        f"      api_base: {upstream}\n      api_key: unused\n")
            env = dict(os.environ, LITELLM_LOG="ERROR")
            litellm_proc = subprocess.Popen([args.litellm, "--config", litellm_config, "--port", str(litellm_port)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            procs.append(litellm_proc)
            wait_http(f"http://127.0.0.1:{litellm_port}/health/liveliness", litellm_proc, timeout=180)
            targets["litellm"] = (f"http://127.0.0.1:{litellm_port}/v1", litellm_proc, None)

        loads = {"open": ["--rate", str(args.rate), "--duration", str(args.duration)],
                 "closed": ["-c", str(args.concurrency), "-n", str(args.requests)]}
        # Warm every path once (connections, LiteLLM's lazy imports).
        for name, (url, _, target_key) in targets.items():
            bench(args.tern, url, ["-c", "8", "-n", "200"], os.path.join(tmp.name, "warm.json"), target_key)

        rounds = []
        for r in range(args.rounds):
            row = {}
            for load_name, load_args in loads.items():
                for name, (url, proc, target_key) in targets.items():
                    before = cpu_seconds(proc.pid) if proc else 0
                    figures = bench(args.tern, url, load_args, os.path.join(tmp.name, f"{name}.json"), target_key)
                    figures["cpu_ms_per_request"] = (cpu_seconds(proc.pid) - before) * 1000 / max(1, figures["total"]) if proc else 0
                    row[(load_name, name)] = figures
                    print(f"round {r + 1} {load_name:6} {name:12} ok {figures['ok']}/{figures['total']}  "
                          f"TTFT p50 {figures['ttft_p50']:.2f} p99 {figures['ttft_p99']:.2f}  "
                          f"E2E p50 {figures['e2e_p50']:.2f} p99 {figures['e2e_p99']:.2f} ms  "
                          f"CPU {figures['cpu_ms_per_request']:.3f} ms/req", file=sys.stderr)
            rounds.append(row)

        # Every request through tern+tenants left a ledger row (the warm-up's 200 included).
        import sqlite3
        sent = 200 + sum(rw[(load_name, "tern+tenants")]["total"] for rw in rounds for load_name in loads)
        with sqlite3.connect(os.path.join(tmp.name, "ledger.db")) as db:
            ledger_rows = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        print(f"tern+tenants ledger: {ledger_rows} rows for {sent} requests sent", file=sys.stderr)

        cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        print(f"\nmachine: {cpu_model}, {os.cpu_count()} cores; medians of {args.rounds} rounds; "
              f"open loop {args.rate:g} req/s x {args.duration:g} s, closed loop c={args.concurrency} x {args.requests}\n")
        print("| load | proxy | added TTFT p50 / p99 ms | added E2E p50 / p99 ms | CPU ms / request | ok |")
        print("|---|---|---|---|---|---|")
        summary = {}
        for load_name in loads:
            for name in targets:
                if name == "direct":
                    continue
                def added(key):
                    return statistics.median(rw[(load_name, name)][key] - rw[(load_name, "direct")][key] for rw in rounds)
                cpu = statistics.median(rw[(load_name, name)]["cpu_ms_per_request"] for rw in rounds)
                ok = sum(rw[(load_name, name)]["ok"] for rw in rounds)
                total = sum(rw[(load_name, name)]["total"] for rw in rounds)
                s = {k: added(k) for k in ("ttft_p50", "ttft_p99", "e2e_p50", "e2e_p99")}
                s["cpu_ms_per_request"], s["ok"], s["total"] = cpu, ok, total
                summary[f"{load_name}/{name}"] = s
                print(f"| {load_name} | {name} | {s['ttft_p50']:.2f} / {s['ttft_p99']:.2f} | {s['e2e_p50']:.2f} / {s['e2e_p99']:.2f} | "
                      f"{cpu:.3f} | {ok}/{total} |")
        for load_name in loads:
            if f"{load_name}/litellm" in summary:
                t, l = summary[f"{load_name}/tern"], summary[f"{load_name}/litellm"]
                ratio = lambda k: l[k] / t[k] if t[k] > 0 else float("inf")
                print(f"{load_name}: LiteLLM adds {ratio('ttft_p99'):.1f}x tern's TTFT p99, {ratio('e2e_p99'):.1f}x its E2E p99, "
                      f"{l['cpu_ms_per_request'] / max(t['cpu_ms_per_request'], 1e-9):.1f}x its CPU per request")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rounds": [{f"{k[0]}/{k[1]}": v for k, v in rw.items()} for rw in rounds], "summary": summary}, f, indent=1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
