#pragma once
// Dot products of one quantized weight row with up to kMaxActRows activation rows: the inner loop of
// every matrix product. Decoding a weight block costs about as much as the multiply-adds, so a kernel
// decodes each block once and uses it for several activation rows (prompt tokens) at a time.
//
// One table per ISA; `vec_dot_kernel(type)` picks the best for this machine once. Every SIMD kernel
// is tested against the scalar reference (tests/kernels/vec_dot_test.cpp).

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant_act.h"
#include "tensor/dtype.h"

namespace tern::kernels {

inline constexpr int kMaxActRows = 4;

/// out[r] = dot(weight_row, act_row r) for r < num_act_rows; act rows are `act_stride` bytes apart.
using VecDotFn = void (*)(int64_t k, const void* weight_row, const void* act, size_t act_stride, int num_act_rows,
                          float* out);

/// One group of 8 interleaved weight rows (kernels/cpu/interleave.h) against up to kMaxActRows
/// activation rows: y[r * y_stride + x] for activation row r and weight row x < num_weight_rows.
using InterleavedFn = void (*)(int64_t k, const void* group, const void* act, size_t act_stride, int num_act_rows, float* y,
                               size_t y_stride, int num_weight_rows);

/// Two consecutive groups (16 weight rows, `group_bytes` apart) at once: the same results as two
/// InterleavedFn calls, in 512-bit vectors whose halves are the two groups, so one broadcast
/// activation serves sixteen rows; num_weight_rows up to 16.
using InterleavedPairFn = void (*)(int64_t k, const void* groups, size_t group_bytes, const void* act, size_t act_stride,
                                   int num_act_rows, float* y, size_t y_stride, int num_weight_rows);

struct VecDotKernel {
  ActFormat act_format;
  VecDotFn fn;
  Isa isa;
  InterleavedFn interleaved = nullptr;  ///< optional (AVX2, AVX-512 VNNI): for matrices in the interleaved layout
  InterleavedPairFn interleaved_pair = nullptr;  ///< optional (AVX-512): faster where it exists
};

/// The kernel for `type` on this machine. Types without a direct kernel use a dequantizing F32 path.
VecDotKernel vec_dot_kernel(DType type);
/// The kernel for `type` at a given ISA (nullptr fn if that ISA has none): for tests and benchmarks.
VecDotKernel vec_dot_kernel(DType type, Isa isa);

// Per-ISA tables, defined in vec_dot_scalar.cpp / vec_dot_avx2.cpp / vec_dot_avx512.cpp.
VecDotKernel scalar_vec_dot(DType type);
VecDotKernel avx2_vec_dot(DType type);
VecDotKernel avx512_vec_dot(DType type);

}  // namespace tern::kernels
