#pragma once
// The LoRA update of one activation row, y += scale · B (A x): shrink x to `rank` values through A,
// then expand them through B and add. A is [rank, in] and B is kept transposed, [rank, out], so both
// steps stream contiguous F16 rows: rank dot products of length `in`, then rank axpys of length `out`.
// The SIMD path runs on the dispatched VectorOps (dot_f32_f16, axpy_f16); the reference below is the
// plain formula in double precision that tests/kernels/lora_kernel_test.cpp checks it against.

#include <cstdint>

#include "kernels/cpu/vector_ops.h"

namespace tern::kernels {

struct LoraWeights {
  const uint16_t* a = nullptr;    ///< [rank][in], F16
  const uint16_t* b_t = nullptr;  ///< [rank][out], F16 (B transposed)
  int64_t rank = 0, in = 0, out = 0;
  float scale = 1.0f;
};

/// y[0..out) += scale · B (A x[0..in)). `shrunk` holds `rank` floats of scratch.
void lora_add_row(const VectorOps& ops, const LoraWeights& w, const float* x, float* y, float* shrunk);

/// The same in double precision, element by element: the reference the SIMD path is tested against.
void lora_add_row_reference(const LoraWeights& w, const float* x, float* y);

}  // namespace tern::kernels
