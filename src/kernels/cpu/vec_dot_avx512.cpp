// AVX-512 VNNI kernels (256-bit vectors with VL, so both builds share one source); compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni, called only on machines that have them.
#define TERN_SIMD_VNNI 1
// GCC 12's AVX-512 headers pass _mm512_undefined_*() as the "don't care" source of unmasked intrinsics,
// and -Wmaybe-uninitialized reports it at every inlined use (GCC bug 105593, fixed in GCC 13): false
// positives located in the compiler's own header, so they are silenced for that header only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
#include "kernels/cpu/vec_dot_simd.inc"

namespace tern::kernels {
VecDotKernel avx512_vec_dot(DType type) { return simd_table(type, Isa::AVX512_VNNI); }
}  // namespace tern::kernels
