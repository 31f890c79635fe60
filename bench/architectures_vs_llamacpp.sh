#!/usr/bin/env bash
# The "Model catalogue" rows of docs/benchmarks.md: prefill (pp512) and decode (tg128) of a dense
# Llama 3.2 1B-shaped model and an 8-expert top-2 qwen3moe, random weights, Q4_0 (made by
# tools/make_bench_models.py), llama.cpp's llama-bench against tern's inference_throughput on the same
# files and threads, round after round (each engine alone on the machine).
#   bench/architectures_vs_llamacpp.sh [ROUNDS]     default 3; needs build-peer/ (tools/build_llama_server.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${TERN_HOME:-$HOME/.cache/tern}/bench"
[[ -f "$dir/moe-8x2-bench.gguf" ]] || .venv-tests/bin/python tools/make_bench_models.py "${TERN_HOME:-$HOME/.cache/tern}/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$dir"
date -u; lscpu | grep "Model name"
for round in $(seq "${1:-3}"); do
  for model in llama3-1b-bench moe-8x2-bench; do
    echo "== round $round $model"
    build-peer/bin/llama-bench -m "$dir/$model.gguf" -t 2 -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"
    # Prefill from a 512-token prompt; decode from a 1-token one (llama-bench's tg128 starts at depth 0).
    build/bench/inference_throughput "$dir/$model.gguf" --threads 2 --prompt-tokens 512 --decode-tokens 16 | tail -1
    build/bench/inference_throughput "$dir/$model.gguf" --threads 2 --prompt-tokens 1 --decode-tokens 128 | tail -1
  done
done
date -u
