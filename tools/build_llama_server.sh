#!/usr/bin/env bash
# Builds llama.cpp's own HTTP server (llama-server) from the llama.cpp source vendored in the same
# llama-cpp-python release as the dev venv, for bench/serve_vs_llamacpp.py. llama-cpp-python's
# `[server]` extra serves one request at a time; llama-server has continuous batching (-np slots), so
# it is the fair peer for a serving benchmark. llama-bench is built beside it (the peer for prefill and
# decode speed, without Python in the loop). About 15 minutes on 2 cores.
#   tools/build_llama_server.sh [OUT_DIR] [ISA]  (default: build-peer/, native) -> OUT_DIR/bin/llama-server, llama-bench
# ISA `avx2` builds for AVX2 + FMA only (no AVX-512), to compare with tern's AVX2 kernels (TERN_ISA=avx2)
# on a machine that has more.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-build-peer}")"
version="$(sed -n 's/^llama-cpp-python\(\[server\]\)\?==//p' tools/requirements-dev.txt)"
work="$out/src"
mkdir -p "$work"
if [[ ! -d "$work/llama_cpp_python-$version" ]]; then
  pip=.venv/bin/pip; [[ -x "$pip" ]] || pip="python3 -m pip"  # only the sdist is needed, not the dev venv
  $pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
  tar -xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
fi
case "${2:-native}" in
  native) isa_flags=(-DGGML_NATIVE=ON) ;;
  avx2) isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
                   -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF) ;;
  *) echo "unknown ISA '$2' (native, avx2)" >&2; exit 2 ;;
esac
cmake -S "$work/llama_cpp_python-$version/vendor/llama.cpp" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "${isa_flags[@]}" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_OPENSSL=OFF >/dev/null
ninja -C "$out" -j "${JOBS:-$(nproc)}" llama-server llama-bench
echo "built $out/bin/llama-server and $out/bin/llama-bench"
