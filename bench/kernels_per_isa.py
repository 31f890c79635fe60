#!/usr/bin/env python3
"""Which kernel family is faster on this CPU, per quantized type: the AVX2 kernels against the AVX-512
VNNI ones (as matmul picks them: two groups at a time from 5 activation rows on, one group below),
one thread, the interleaved layout, at the shapes of the default models' weights, for one activation
row (decode) and 512 (prefill).

    python3 bench/kernels_per_isa.py [--rounds 4] [--types q4_0,q4_1,...] [--rows 1,512] [--streaming]

The default shapes fit in L2/L3 (compute); --streaming makes every matrix 32 times taller (45-86 MB),
so that one activation row streams the weights from memory, as decode does.

Each round runs every (type, M) once per ISA, alternating the ISAs, so slow spells of a shared machine
fall on both; the table shows the median GMAC/s over the rounds and the AVX-512/AVX2 ratio. It reads
build/bench/matmul_throughput (a Release build) and needs an AVX-512 VNNI CPU for the second column.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

from machine import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "build", "bench", "matmul_throughput")
# K x N of a weight each default model multiplies by: SmolLM2 (Q4_1 everywhere but its Q8_0/Q6_K
# output), Gemma 3 (Q5_0 attention/up/gate, Q4_K and Q6_K down/parts, Q8_0 output).
SHAPES = {"q4_0": (576, 1536), "q4_1": (576, 1536), "q5_0": (640, 2048), "q5_1": (640, 2048),
          "q8_0": (640, 2048), "q4_k": (2048, 640), "q6_k": (2048, 640)}


def shape(dtype, tall):
    k, n = SHAPES[dtype]
    return k, n * tall


def gmacs(isa, dtype, m, repeats, tall):
    k, n = shape(dtype, tall)
    env = dict(os.environ, TERN_ISA=isa)
    out = subprocess.run([BINARY, dtype, str(k), str(n), str(m), str(repeats)], env=env, check=True,
                         capture_output=True, text=True).stdout
    # The last block is the interleaved layout where the ISA has one (both do for these types).
    values = re.findall(r"M=\s*%d\s+([\d.]+) GMAC/s" % m, out)
    if not values:
        sys.exit(f"no M={m} figure in matmul_throughput's output:\n{out}")
    return float(values[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5, help="matmul_throughput repeats per figure (it keeps the median)")
    p.add_argument("--types", default=",".join(SHAPES))
    p.add_argument("--rows", default="1,512", help="activation rows (M) to measure")
    p.add_argument("--streaming", action="store_true", help="matrices 32x taller, read from memory")
    args = p.parse_args()
    types = args.types.split(",")
    for t in types:
        if t not in SHAPES:
            sys.exit(f"unknown type '{t}' (one of {', '.join(SHAPES)})")
    if not os.access(BINARY, os.X_OK):
        sys.exit(f"{BINARY} is missing: build the Release tree first (cmake --build build)")
    rows = [int(m) for m in args.rows.split(",")]
    tall = 32 if args.streaming else 1
    results = {}  # (type, m, isa) -> [GMAC/s per round]
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for t in types:
            for m in rows:
                isas = ("avx2", "avx512") if r % 2 == 0 else ("avx512", "avx2")
                for isa in isas:
                    results.setdefault((t, m, isa), []).append(gmacs(isa, t, m, args.repeats, tall))
    print(f"{cpu_name()}, 1 thread, interleaved layout, medians of {args.rounds} rounds (GMAC/s)\n")
    print("| type | K x N | M | AVX2 | AVX-512 VNNI | AVX-512 / AVX2 |")
    print("|---|---|---|---|---|---|")
    for t in types:
        k, n = shape(t, tall)
        for m in rows:
            a = statistics.median(results[(t, m, "avx2")])
            b = statistics.median(results[(t, m, "avx512")])
            print(f"| {t} | {k} x {n} | {m} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
