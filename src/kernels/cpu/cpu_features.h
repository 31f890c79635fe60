#pragma once
// What the processor we run on can do, read once at start-up. Kernels are chosen from this at run
// time, so one binary runs on AVX2-only machines and uses AVX-512 VNNI where it exists.

#include <string>

namespace tern::kernels {

enum class Isa {
  SCALAR,      ///< portable reference code
  AVX2,        ///< AVX2 + FMA + F16C (Haswell and later, Zen)
  AVX512_VNNI, ///< AVX-512 F/BW/VL + VNNI (Ice Lake, Sapphire Rapids, Zen 4)
};

/// The best ISA this machine supports, unless TERN_ISA=scalar|avx2|avx512 asks for a lower one.
Isa best_isa();
const char* isa_name(Isa isa);

}  // namespace tern::kernels
