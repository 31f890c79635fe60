// AVX-512 VNNI kernels (256-bit vectors with VL, so both builds share one source); compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni, called only on machines that have them.
#define TERN_SIMD_VNNI 1
#include "kernels/cpu/vec_dot_simd.inc"

namespace tern::kernels {
VecDotKernel avx512_vec_dot(DType type) { return simd_table(type, Isa::AVX512_VNNI); }
}  // namespace tern::kernels
