#pragma once
// Small float-vector primitives (attention over the F16 KV cache, activation quantization),
// dispatched like vec_dot.

#include <cstdint>

#include "kernels/cpu/quant_act.h"

namespace tern::kernels {

struct VectorOps {
  /// sum x[i] * half(y[i])
  float (*dot_f32_f16)(int64_t n, const float* x, const uint16_t* y);
  /// y[i] += a * half(x[i])
  void (*axpy_f16)(int64_t n, float a, const uint16_t* x, float* y);
  /// y[i] = half(x[i]), round to nearest even
  void (*to_f16)(int64_t n, const float* x, uint16_t* y);
  /// Scores of num_q queries (q[g * dim ...], e.g. the heads sharing a KV head) against one KV block of
  /// keys, each key converted once for all queries: out[g * out_stride + r] = sum_d q[g * dim + d] *
  /// half(rows[r * stride + d]) for r < num_rows. A query's arithmetic does not depend on num_q.
  void (*dot_rows_f16)(const float* q, int num_q, const uint16_t* rows, int64_t stride, int64_t num_rows, int64_t dim,
                       float* out, int64_t out_stride);
  /// Weighted sums of one KV block of values for num_q queries: out[g * dim + d] += sum_r
  /// weights[g * weights_stride + r] * half(rows[r * stride + d]). Same independence of num_q.
  void (*axpy_rows_f16)(const float* weights, int64_t weights_stride, int num_q, const uint16_t* rows, int64_t stride,
                        int64_t num_rows, int64_t dim, float* out);
  /// y[i] = float(half(x[i])): x rounded to F16 precision (y may be x)
  void (*round_f16)(int64_t n, const float* x, float* y);
  /// x = half(softmax(scale * x)) in place: attention weights, rounded to F16 as llama.cpp's F16 V
  /// product rounds them. Terms below e^-87 of the largest are taken as 0 (they round to 0 anyway).
  void (*softmax_f16)(int64_t n, float scale, float* x);
  /// Sampling weights: weights[i] = e^((logits[i] - max) / T) with 1/T = inverse_temperature (so the
  /// largest is exactly 1); returns their sum (in double). -inf logits and terms below e^-87 give 0;
  /// all -inf gives all 0 and a sum of 0.
  double (*sampling_weights)(int64_t n, float inverse_temperature, const float* logits, float* weights);
  /// One row of k activations to ActQ8 blocks (bit-identical to quantize_q8_reference)
  void (*quantize_q8)(const float* x, ActQ8* out, int64_t k);
  /// One row of k activations to ActQ8K blocks (bit-identical to quantize_q8k_reference)
  void (*quantize_q8k)(const float* x, ActQ8K* out, int64_t k);
};

/// The best implementation for this machine.
const VectorOps& vector_ops();
const VectorOps& scalar_vector_ops();
const VectorOps& avx2_vector_ops();

}  // namespace tern::kernels
