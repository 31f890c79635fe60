#!/usr/bin/env python3
"""Prefill and decode speed and peak memory: tern against llama.cpp (llama-cpp-python) on the same
GGUF, same thread count, run alternately in the same session.

Prefill: a 512-token prompt (the same English text repeated to length, tokenized by each engine's
own tokenizer: identical ids, checked by the tokenizer goldens) evaluated as one batch. Decode: 128
greedy tokens, one at a time (batch 1). Each engine runs in its own process, REPEATS times per
process; the median is reported. Peak RSS is each process's maximum resident set (llama.cpp's
includes the Python interpreter, about 30 MiB).

Usage: .venv/bin/python bench/inference_vs_llamacpp.py [--threads 2] [--repeats 3] [--rounds 3]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TERN_HOME = os.environ.get("TERN_HOME", os.path.expanduser("~/.cache/tern"))
FILES = {"smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3-270m": "gemma-3-270m-q4_k_m.gguf"}
TEXT = ("The history of natural language processing generally started in the 1950s, although work can be found from "
        "earlier periods. In 1950, Alan Turing published an article titled Computing Machinery and Intelligence. ")

LLAMA_CHILD = r'''
import json, resource, statistics, sys, time
import llama_cpp, numpy as np
from llama_cpp import Llama
path, threads, repeats, prompt_len, decode_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), 512, 128
llm = Llama(model_path=path, n_ctx=prompt_len + decode_len + 16, n_batch=prompt_len, n_ubatch=prompt_len,
            n_threads=threads, n_threads_batch=threads, verbose=False)
base = llm.tokenize(sys.argv[4].encode(), add_bos=False, special=False)
prompt = [base[i % len(base)] for i in range(prompt_len)]
def last():
    p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(p, shape=(llm.n_vocab(),))
prefill, decode = [], []
for _ in range(repeats):
    llm.reset()
    start = time.perf_counter(); llm.eval(prompt); prefill.append(prompt_len / (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(decode_len):
        llm.eval([int(np.argmax(last()))])
    decode.append(decode_len / (time.perf_counter() - start))
print(json.dumps({"prefill_tokens_per_second": statistics.median(prefill), "decode_tokens_per_second": statistics.median(decode),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def run_llama(path, threads, repeats):
    out = subprocess.run([sys.executable, "-c", LLAMA_CHILD, path, str(threads), str(repeats), TEXT], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_tern(path, threads, repeats):
    binary = os.path.join(ROOT, "build", "bench", "inference_throughput")
    out = subprocess.run([binary, path, "--threads", str(threads), "--repeats", str(repeats)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating tern / llama.cpp processes per model")
    parser.add_argument("--models", nargs="+", default=list(FILES))
    args = parser.parse_args()
    print(f"{args.threads} threads; prompt 512 tokens, decode 128 tokens; median of {args.rounds} rounds x {args.repeats} repeats")
    header = (f"{'model':13} {'prefill tok/s':>22} {'ratio':>6} {'decode tok/s':>20} {'ratio':>6} "
              f"{'peak RSS MiB':>17} {'decode % of bw bound':>21}")
    print(header)
    for alias in args.models:
        path = os.path.join(TERN_HOME, "models", FILES[alias])
        tern_runs, llama_runs = [], []
        for _ in range(args.rounds):
            tern_runs.append(run_tern(path, args.threads, args.repeats))
            llama_runs.append(run_llama(path, args.threads, args.repeats))
        med = lambda runs, key: statistics.median(r[key] for r in runs)
        tp, lp = med(tern_runs, "prefill_tokens_per_second"), med(llama_runs, "prefill_tokens_per_second")
        td, ld = med(tern_runs, "decode_tokens_per_second"), med(llama_runs, "decode_tokens_per_second")
        tr, lr = med(tern_runs, "peak_rss_mib"), med(llama_runs, "peak_rss_mib")
        # Decode is memory-bound: each token reads every weight once. Bound = copy bandwidth / bytes per token.
        bound = med(tern_runs, "copy_bandwidth_gb_per_second") * 1e9 / tern_runs[0]["bytes_per_decoded_token"]
        print(f"{alias:13} {tp:9.1f} vs {lp:9.1f} {tp / lp:5.2f}x {td:8.1f} vs {ld:8.1f} {td / ld:5.2f}x "
              f"{tr:7.1f} vs {lr:7.1f} {100 * td / bound:10.0f}% (tern), {100 * ld / bound:.0f}% (llama.cpp)")


if __name__ == "__main__":
    main()
