#include "kernels/cpu/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace tern::kernels {
namespace {

Isa detect() {
  __builtin_cpu_init();
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool has_vnni = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  Isa isa = has_vnni ? Isa::AVX512_VNNI : has_avx2 ? Isa::AVX2 : Isa::SCALAR;
  // An override can only lower the choice: asking for an ISA the CPU lacks would crash.
  if (const char* wanted = std::getenv("TERN_ISA")) {
    if (std::strcmp(wanted, "scalar") == 0) isa = Isa::SCALAR;
    else if (std::strcmp(wanted, "avx2") == 0 && isa != Isa::SCALAR) isa = Isa::AVX2;
  }
  return isa;
}

}  // namespace

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
