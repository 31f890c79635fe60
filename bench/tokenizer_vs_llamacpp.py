#!/usr/bin/env python3
"""Tokenizer encode throughput: tern against llama.cpp (llama-cpp-python) on the same text, same run.

The text (about 1 MiB) mixes source code and English comments from the Python standard library with
the multilingual strings of the tokenizer goldens. Each tokenizer encodes it REPEATS times; the
median time is compared. Token counts must agree (both are checked to produce identical ids).

Usage: .venv/bin/python bench/tokenizer_vs_llamacpp.py [--repeats 7] [--models smollm2-135m gemma3-270m]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time

from llama_cpp import Llama

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TERN_HOME = os.environ.get("TERN_HOME", os.path.expanduser("~/.cache/tern"))
FILES = {"smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3-270m": "gemma-3-270m-q4_k_m.gguf"}


def build_text(target_bytes=1 << 20):
    stdlib = sysconfig.get_paths()["stdlib"]
    parts = []
    total = 0
    for sub in ["json", "email", "http", "logging", "asyncio", "concurrent"]:
        folder = os.path.join(stdlib, sub)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    parts.append(f.read())
                    total += len(parts[-1])
            if total >= target_bytes * 0.8:
                break
    with open(os.path.join(ROOT, "tests", "data", "tokenizer", "strings.json"), encoding="utf-8") as f:
        multilingual = "\n".join(json.load(f))
    while total < target_bytes:
        parts.append(multilingual)
        total += len(multilingual)
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=list(FILES))
    parser.add_argument("--tern-bench", default=os.path.join(ROOT, "build", "bench", "tokenizer_throughput"))
    args = parser.parse_args()

    text = build_text()
    text_path = os.path.join("/tmp", "tern_tokenizer_bench.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(text)
    data = text.encode("utf-8")
    print(f"text: {len(data)} bytes; {args.repeats} repeats each; median times")
    print(f"{'model':14} {'llama.cpp MB/s':>15} {'tern MB/s':>10} {'tokens':>8} {'tern / llama.cpp':>17}")
    for alias in args.models:
        path = os.path.join(TERN_HOME, "models", FILES[alias])
        llm = Llama(model_path=path, vocab_only=True, verbose=False)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ids = llm.tokenize(data, add_bos=True, special=False)
            times.append(time.perf_counter() - start)
        llama_seconds = statistics.median(times)
        out = subprocess.run([args.tern_bench, path, text_path, str(args.repeats)], check=True,
                             capture_output=True, text=True).stdout
        tern = json.loads(out)
        if tern["tokens"] != len(ids):
            print(f"{alias}: token counts differ: tern {tern['tokens']} vs llama.cpp {len(ids)}", file=sys.stderr)
            sys.exit(1)
        tern_seconds = tern["median_seconds"]
        mb = len(data) / 1e6
        print(f"{alias:14} {mb / llama_seconds:15.2f} {mb / tern_seconds:10.2f} {len(ids):8d} "
              f"{llama_seconds / tern_seconds:16.2f}x")


if __name__ == "__main__":
    main()
