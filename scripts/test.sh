#!/usr/bin/env bash
# Set-up plus the whole test suite: what CI runs (.ci/run) and what a newcomer runs.
#   scripts/test.sh          full tier: all tests, then the unit tests again under ASan+UBSan, then a
#                            bounded fuzz run of the GGUF reader and tokenizer
#   scripts/test.sh --fast   fast tier (< 5 min): the tests labelled "fast" in the Release build
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

if [[ "$tier" == "--fast" ]]; then
  step "fast tier"
  ctest --test-dir build -L fast -j "$jobs" --output-on-failure
  exit 0
fi

step "all tests (Release)"
ctest --test-dir build -j "$jobs" --output-on-failure

step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
if [[ ! -f build-asan/build.ninja ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTERN_SANITIZE=address,undefined \
        -DTERN_BUILD_BENCH=OFF >/dev/null
fi
ninja -C build-asan --quiet
# The forward-pass goldens (label "full") already ran above; under ASan they would take most of the budget.
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan -LE full -j "$jobs" --output-on-failure

step "fuzz: GGUF reader, inspect and tokenizer on mutated files (ASan+UBSan, bounded)"
build-asan/fuzz/gguf_fuzz --seconds "${TERN_FUZZ_SECONDS:-120}" --seed "$(date +%s)" \
  "$TERN_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$TERN_HOME/models/gemma-3-270m-q4_k_m.gguf"
