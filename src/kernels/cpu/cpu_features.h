#pragma once
// What the processor we run on can do, read once at start-up. Kernels are chosen from this at run
// time, so one binary runs on AVX2-only machines and uses AVX-512 VNNI where it exists.

#include <optional>
#include <string>

namespace tern::kernels {

enum class Isa {
  SCALAR,      ///< portable reference code
  AVX2,        ///< AVX2 + FMA + F16C (Haswell and later, Zen)
  AVX512_VNNI, ///< AVX-512 F/BW/VL + VNNI (Ice Lake, Sapphire Rapids, Zen 4)
};

/// The best ISA this machine supports, capped by the environment variable TERN_ISA=scalar|avx2|avx512
/// (a cap above what the CPU has changes nothing; an unknown value is reported on stderr and ignored).
/// Tests and CI use the cap to run the AVX2 and scalar paths on an AVX-512 machine.
Isa best_isa();
/// "scalar", "avx2", "avx512" (or "avx512-vnni") -> the ISA; anything else -> nullopt.
std::optional<Isa> parse_isa(const char* name);
/// The lower of the two.
Isa cap_isa(Isa hardware, Isa cap);
const char* isa_name(Isa isa);

}  // namespace tern::kernels
