// AVX2 + FMA kernels; compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt), called only after
// cpu_features says the machine has them.
#define TERN_SIMD_VNNI 0
#include "kernels/cpu/vec_dot_simd.inc"

namespace tern::kernels {
VecDotKernel avx2_vec_dot(DType type) { return simd_table(type, Isa::AVX2); }
}  // namespace tern::kernels

#include "kernels/cpu/vector_ops.h"

namespace tern::kernels {
const VectorOps& avx2_vector_ops() {
  static const VectorOps ops{simd_dot_f32_f16,   simd_axpy_f16,   simd_to_f16,   simd_dot_rows_f16,
                             simd_axpy_rows_f16, simd_round_f16, simd_softmax_f16, simd_sampling_weights, simd_quantize_q8,
                             simd_quantize_q8k};
  return ops;
}
}  // namespace tern::kernels
