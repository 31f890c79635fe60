#!/usr/bin/env bash
# Builds xgrammar's C++ core (the grammar engine that compiles JSON Schemas into per-token masks;
# Apache-2.0) from its PyPI source distribution, pinned by version and SHA-256, as a static library:
# the candidate for constrained decoding on local models (issue 29, item 3). No Python bindings.
# About 3-4 minutes on 2 cores.
#   tools/build_xgrammar.sh [OUT_DIR]   (default: build-deps/xgrammar) -> OUT_DIR/lib/libxgrammar.a, OUT_DIR/include
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.2.9
sha256=87b466bca2475e29bb0323abc62c6c33cbcbcff47e5fb800a3e2099ac9620b90
out="$(realpath -m "${1:-build-deps/xgrammar}")"
work="$out/src"
mkdir -p "$work"
archive="$work/xgrammar-$version.tar.gz"
if [[ ! -f "$archive" ]]; then
  # Only xgrammar itself as source; pip prepares its metadata with prebuilt build tools.
  python3 -m pip download --quiet --no-deps --no-binary xgrammar "xgrammar==$version" -d "$work"
fi
echo "$sha256  $archive" | sha256sum --check --quiet
[[ -d "$work/xgrammar-$version" ]] || tar -xzf "$archive" -C "$work"
src="$work/xgrammar-$version"
mkdir -p "$out/build"
# Its cmake/config.cmake turns the Python bindings on; a config.cmake in the build folder wins.
printf '%s\n' 'set(XGRAMMAR_BUILD_PYTHON_BINDINGS OFF)' 'set(XGRAMMAR_BUILD_CXX_TESTS OFF)' 'set(XGRAMMAR_ENABLE_CPPTRACE OFF)' \
  'set(XGRAMMAR_ENABLE_COVERAGE OFF)' 'set(XGRAMMAR_ENABLE_INTERNAL_CHECK OFF)' > "$out/build/config.cmake"
# No link-time optimization (its CMakeLists adds -flto=auto; a later -fno-lto wins): LTO objects in the
# archive make tern's link run GCC's LTO, which fails with an internal error in the -g sanitizer build.
cmake -S "$src" -B "$out/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_CXX_FLAGS=-fno-lto >/dev/null
ninja -C "$out/build" -j "${JOBS:-$(nproc)}" xgrammar
mkdir -p "$out/lib" "$out/include"
cp "$out/build/libxgrammar.a" "$out/lib/"
cp -r "$src/include/xgrammar" "$src/3rdparty/dlpack/include/dlpack" "$out/include/"
echo "built $out/lib/libxgrammar.a (headers in $out/include)"
