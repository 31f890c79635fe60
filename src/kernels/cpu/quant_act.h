#pragma once
// Activations quantized on the fly to 8 bits, so that products with quantized weights run as integer
// dot products (the same scheme as llama.cpp's Q8_0/Q8_1 and Q8_K):
//
//   ActQ8  (38 B, 32 values): d (f16) | sum (i16, sum of qs) | s (f16, d * sum) | qs int8[32]
//          for the 32-value weight blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0); `sum` folds the weight
//          offset (-8, -16) into one multiply per block, `s` the min m of Q4_1 / Q5_1 (computed from
//          the unrounded d and kept as a half, exactly as llama.cpp's Q8_1 does).
//   ActQ8K (292 B, 256 values): d (f32) | qs int8[256] | bsums i16[16] (sums of each 16 values)
//          for the K super-blocks (Q2_K ... Q6_K); bsums serve the sub-block mins and Q6_K's -32.
//   F32: plain floats, for F32 / F16 / BF16 weights and the dequantizing fallback.

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace tern::kernels {

struct ActQ8 {
  uint16_t d;
  int16_t sum;
  uint16_t s;
  int8_t qs[32];
};
static_assert(sizeof(ActQ8) == 38);

struct ActQ8K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(ActQ8K) == 292);

enum class ActFormat { F32, Q8, Q8K };

/// Bytes one activation row of `k` values takes in `format`.
size_t act_row_bytes(ActFormat format, int64_t k);

/// Quantizes one row (k a multiple of the format's block size), with SIMD where the machine has it.
void quantize_act_row(ActFormat format, const float* x, void* out, int64_t k);

/// The scalar references for ActQ8 and ActQ8K rows (the SIMD versions give the same bytes).
void quantize_q8_reference(const float* x, ActQ8* out, int64_t k);
void quantize_q8k_reference(const float* x, ActQ8K* out, int64_t k);

}  // namespace tern::kernels
