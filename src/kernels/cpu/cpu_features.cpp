#include "kernels/cpu/cpu_features.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tern::kernels {
namespace {

Isa detect_hardware() {
  __builtin_cpu_init();
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool has_vnni = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return has_vnni ? Isa::AVX512_VNNI : has_avx2 ? Isa::AVX2 : Isa::SCALAR;
}

Isa detect() {
  const Isa hardware = detect_hardware();
  const char* wanted = std::getenv("TERN_ISA");
  if (wanted == nullptr || *wanted == '\0') return hardware;
  const std::optional<Isa> cap = parse_isa(wanted);
  if (!cap) {
    // Not fatal (the variable may be meant for another build), but never silent: a test run that
    // believes it forced AVX2 and did not would prove nothing.
    std::fprintf(stderr, "tern: TERN_ISA=%s is not one of scalar, avx2, avx512; using %s\n", wanted, isa_name(hardware));
    return hardware;
  }
  return cap_isa(hardware, *cap);
}

}  // namespace

std::optional<Isa> parse_isa(const char* name) {
  if (std::strcmp(name, "scalar") == 0) return Isa::SCALAR;
  if (std::strcmp(name, "avx2") == 0) return Isa::AVX2;
  if (std::strcmp(name, "avx512") == 0 || std::strcmp(name, "avx512-vnni") == 0) return Isa::AVX512_VNNI;
  return std::nullopt;
}

Isa cap_isa(Isa hardware, Isa cap) {
  // A cap can only lower the choice: running an ISA the CPU lacks would crash.
  return static_cast<int>(cap) < static_cast<int>(hardware) ? cap : hardware;
}

Isa best_isa() {
  static const Isa isa = detect();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::SCALAR: return "scalar";
    case Isa::AVX2: return "avx2";
    case Isa::AVX512_VNNI: return "avx512-vnni";
  }
  return "?";
}

}  // namespace tern::kernels
