#pragma once
// Small float-vector primitives used by attention over the F16 KV cache, dispatched like vec_dot.

#include <cstdint>

namespace tern::kernels {

struct VectorOps {
  /// sum x[i] * half(y[i])
  float (*dot_f32_f16)(int64_t n, const float* x, const uint16_t* y);
  /// y[i] += a * half(x[i])
  void (*axpy_f16)(int64_t n, float a, const uint16_t* x, float* y);
  /// y[i] = half(x[i]), round to nearest even
  void (*to_f16)(int64_t n, const float* x, uint16_t* y);
  /// out[r] = sum_d q[d] * half(rows[r * stride + d]) for r < num_rows (one KV block of keys)
  void (*dot_rows_f16)(const float* q, const uint16_t* rows, int64_t stride, int64_t num_rows, int64_t dim, float* out);
  /// out[d] += sum_r weights[r] * half(rows[r * stride + d]) (one KV block of values)
  void (*axpy_rows_f16)(const float* weights, const uint16_t* rows, int64_t stride, int64_t num_rows, int64_t dim, float* out);
  /// y[i] = float(half(x[i])): x rounded to F16 precision (y may be x)
  void (*round_f16)(int64_t n, const float* x, float* y);
  /// x = half(softmax(scale * x)) in place: attention weights, rounded to F16 as llama.cpp's F16 V
  /// product rounds them. Terms below e^-87 of the largest are taken as 0 (they round to 0 anyway).
  void (*softmax_f16)(int64_t n, float scale, float* x);
};

/// The best implementation for this machine.
const VectorOps& vector_ops();
const VectorOps& scalar_vector_ops();
const VectorOps& avx2_vector_ops();

}  // namespace tern::kernels
