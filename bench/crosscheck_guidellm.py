#!/usr/bin/env python3
"""Cross-check `tern bench` against an independent client, GuideLLM, on the same endpoint.

Both clients run the same shape of traffic (closed loop at a concurrency, or with --rate Poisson
arrivals at a known rate; fixed prompt and output token counts, chat completions, streaming) against one OpenAI-compatible server, alternating run by run so that
drift in the server's speed hits both alike. The script prints each figure from both clients and their
difference; the bar (docs/bench.md, "Cross-check") is agreement within 5 %.

    scripts: /tmp/venv/bin/pip install guidellm   (any venv with guidellm 0.8)
    python3 bench/crosscheck_guidellm.py --target http://127.0.0.1:18123 --model fixture \\
        --tokenizer-dir /tmp/smollm2-tokenizer --concurrency 8 --requests 128 --repeats 2

--client-cpus 0 runs both clients under `taskset -c 0`: with the server pinned to other cores
(`taskset -c 1 build/tests/bench/bench_fixture_server ...`), client and server never share a core.

GuideLLM needs a Hugging Face tokenizer directory to size its synthetic prompts; make one offline from the
GGUF with transformers: AutoTokenizer.from_pretrained(dir, gguf_file=name).save_pretrained(out).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def pinned(args, command):
    return (["taskset", "-c", args.client_cpus] if args.client_cpus else []) + command


def run_tern(args, out_path):
    load = ["--rate", str(args.rate)] if args.rate else ["--concurrency", str(args.concurrency)]
    command = [args.tern, "bench", "--target", args.target.rstrip("/") + "/v1", "--model", args.model,
               *load, "--requests", str(args.requests),
               "--input-tokens", str(args.input_tokens), "--output-tokens", str(args.output_tokens),
               "--api", args.api, "--tokenizer", args.tern_tokenizer, "--json", out_path, "--quiet"]
    subprocess.run(pinned(args, command), check=True, stdout=subprocess.DEVNULL)
    with open(out_path) as f:
        result = json.load(f)["results"][0]
    latency = result["latency_ms"]
    return {
        "TTFT p50 (ms)": latency["ttft"]["p50"],
        "TTFT mean (ms)": latency["ttft"]["mean"],
        "TPOT p50 (ms)": latency["tpot"]["p50"],
        "ITL p50 (ms)": latency["itl_per_chunk"]["p50"],
        "E2E p50 (ms)": latency["e2e"]["p50"],
        "E2E mean (ms)": latency["e2e"]["mean"],
        "requests/s": result["throughput"]["requests_per_s"],
        "output tokens/s": result["throughput"]["output_tokens_per_s"],
        "output tokens/request": result["tokens"]["output_per_request"]["p50"],
    }


def run_guidellm(args, out_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    command = [args.guidellm, "run",
               # validate_backend=false: not every server has GET /health (llama-cpp-python's has not).
               "--backend", f"kind=openai_http,target={args.target.rstrip('/')},model={args.model},"
                            f"request_format=/v1/{'chat/completions' if args.api == 'chat' else 'completions'},"
                            "validate_backend=false",
               "--profile", f"kind=poisson,rate={args.rate}" if args.rate else f"kind=concurrent,streams={args.concurrency}",
               "--data", f"kind=synthetic_text,prompt_tokens={args.input_tokens},output_tokens={args.output_tokens}",
               "--tokenizer", f"kind=hf_auto,model={args.tokenizer_dir}",
               "--constraint", f"kind=max_requests,count={args.requests}",
               "--output", f"kind=json,path={out_path}", "--disable-console"]
    subprocess.run(pinned(args, command), check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out_path) as f:
        benchmark = json.load(f)["benchmarks"][0]
    metrics = benchmark["metrics"]
    totals = metrics["request_totals"]
    if totals["successful"] == 0:
        sys.exit(f"guidellm: no request succeeded ({totals}); first error: "
                 f"{benchmark['requests']['errored'][0]['info']['error'] if benchmark['requests']['errored'] else '?'}")

    def successful(name):
        return metrics[name]["successful"]

    duration = benchmark["duration"]
    return {
        "TTFT p50 (ms)": successful("time_to_first_token_ms")["median"],
        "TTFT mean (ms)": successful("time_to_first_token_ms")["mean"],
        # GuideLLM's "ITL" is (latency - TTFT) / (output tokens - 1): what tern and vLLM call TPOT.
        "TPOT p50 (ms)": successful("inter_token_latency_ms")["median"],
        "ITL p50 (ms)": None,  # GuideLLM keeps no per-chunk gaps
        "E2E p50 (ms)": successful("request_latency")["median"] * 1000,
        "E2E mean (ms)": successful("request_latency")["mean"] * 1000,
        "requests/s": successful("request_latency")["count"] / duration,
        "output tokens/s": successful("output_token_count")["total_sum"] / duration,
        "output tokens/request": successful("output_token_count")["median"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="server root, e.g. http://127.0.0.1:18123 (no /v1)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer-dir", required=True, help="Hugging Face tokenizer directory for GuideLLM")
    parser.add_argument("--tern", default="build/tern")
    parser.add_argument("--tern-tokenizer", default="smollm2-135m")
    parser.add_argument("--guidellm", default="/tmp/venv/bin/guidellm")
    parser.add_argument("--api", choices=["chat", "completions"], default="chat",
                        help="completions for servers whose chat template rejects GuideLLM's list-of-parts content")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, help="open loop: Poisson arrivals per second instead of --concurrency")
    parser.add_argument("--client-cpus", help="run both clients under taskset -c on these CPUs (e.g. 0)")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--input-tokens", type=int, default=256)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()

    runs = {"tern": [], "guidellm": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            order = ["tern", "guidellm"] if repeat % 2 == 0 else ["guidellm", "tern"]
            for client in order:
                out_path = os.path.join(scratch, f"{client}-{repeat}.json")
                runs[client].append(run_tern(args, out_path) if client == "tern" else run_guidellm(args, out_path))
                print(f"run {repeat + 1}/{args.repeats} {client}: done", file=sys.stderr)

    load = f"Poisson {args.rate:g}/s" if args.rate else f"concurrency {args.concurrency}"
    print(f"target {args.target}, model {args.model}, {args.api}, {load}, {args.requests} requests, "
          f"{args.input_tokens} -> {args.output_tokens} tokens, median of {args.repeats} run(s) per client")
    print(f"{'figure':<24}{'tern':>12}{'guidellm':>12}{'difference':>12}")
    all_within = True
    for name in runs["tern"][0]:
        tern_value = statistics.median(run[name] for run in runs["tern"])
        guidellm_values = [run[name] for run in runs["guidellm"] if run[name] is not None]
        if not guidellm_values:
            print(f"{name:<24}{tern_value:>12.2f}{'-':>12}{'-':>12}")
            continue
        guidellm_value = statistics.median(guidellm_values)
        difference = (tern_value - guidellm_value) / guidellm_value if guidellm_value else 0.0
        within = abs(difference) <= args.tolerance
        all_within &= within
        print(f"{name:<24}{tern_value:>12.2f}{guidellm_value:>12.2f}{difference * 100:>+11.1f}%{'' if within else '  <- over'}")
    print("agreement within {:.0f} %: {}".format(args.tolerance * 100, "yes" if all_within else "NO"))
    return 0 if all_within else 1


if __name__ == "__main__":
    sys.exit(main())
