#!/usr/bin/env bash
# The per-CPU table of docs/benchmarks.md: llama.cpp's llama-bench against tern's inference_throughput
# on both default models, pp512 and tg128 at depth 0 and 512, round after round (each engine alone on
# the machine). Rounds name a peer build and tern's ISA: native (build-peer/, tern's best kernels) or
# avx2 (build-peer-avx2/ from `tools/build_llama_server.sh build-peer-avx2 avx2`, TERN_ISA=avx2).
#   bench/inference_per_cpu.sh [ROUND ...]      default: native avx2 avx2 native
set -euo pipefail
cd "$(dirname "$0")/.."
models=~/.cache/tern/models
rounds=("$@")
[[ ${#rounds[@]} -gt 0 ]] || rounds=(native avx2 avx2 native)
date -u; lscpu | grep "Model name"
for round in "${rounds[@]}"; do
  case "$round" in
    native) peer=build-peer isa=avx512 ;;
    avx2) peer=build-peer-avx2 isa=avx2 ;;
    *) echo "unknown round '$round' (native, avx2)" >&2; exit 2 ;;
  esac
  for model in gemma-3-270m-q4_k_m SmolLM2-135M-Instruct.Q4_1; do
    echo "== $round $model"
    "$peer/bin/llama-bench" -m "$models/$model.gguf" -t 2 -p 512 -n 128 -d 0,512 -r 3 2>&1 | grep -E "pp512|tg128"
    TERN_ISA=$isa build/bench/inference_throughput "$models/$model.gguf" --threads 2 --prompt-tokens 512 --decode-tokens 128 | tail -1
    TERN_ISA=$isa build/bench/inference_throughput "$models/$model.gguf" --threads 2 --prompt-tokens 1 --decode-tokens 128 | tail -1
  done
done
date -u
