#!/usr/bin/env bash
# The developer venv (.venv): reference implementations for goldens and peer benchmarks. Not needed by
# the tests. llama-cpp-python builds llama.cpp from source (about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-dev.txt
