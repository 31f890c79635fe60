#include "kernels/cpu/vector_ops.h"

#include <cmath>

#include "kernels/cpu/cpu_features.h"
#include "tensor/half.h"

namespace tern::kernels {
namespace {

float dot_f32_f16(int64_t n, const float* x, const uint16_t* y) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * f16_to_float(y[i]);
  return sum;
}
void axpy_f16(int64_t n, float a, const uint16_t* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * f16_to_float(x[i]);
}
void to_f16(int64_t n, const float* x, uint16_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_f16(x[i]);
}

void dot_rows_f16(const float* q, int num_q, const uint16_t* rows, int64_t stride, int64_t num_rows, int64_t dim, float* out,
                  int64_t out_stride) {
  for (int g = 0; g < num_q; ++g) {
    for (int64_t r = 0; r < num_rows; ++r) out[g * out_stride + r] = dot_f32_f16(dim, q + g * dim, rows + r * stride);
  }
}
void axpy_rows_f16(const float* weights, int64_t weights_stride, int num_q, const uint16_t* rows, int64_t stride,
                   int64_t num_rows, int64_t dim, float* out) {
  for (int g = 0; g < num_q; ++g) {
    for (int64_t r = 0; r < num_rows; ++r) axpy_f16(dim, weights[g * weights_stride + r], rows + r * stride, out + g * dim);
  }
}

void round_f16(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = f16_to_float(float_to_f16(x[i]));
}
void softmax_f16(int64_t n, float scale, float* x) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) x[i] *= scale, max = std::max(max, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = x[i] - max < -87.0f ? 0.0f : std::exp(x[i] - max);
    sum += x[i];
  }
  const float inverse = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] = f16_to_float(float_to_f16(x[i] * inverse));
}

double sampling_weights(int64_t n, float inverse_temperature, const float* logits, float* weights) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float x = max > -INFINITY ? (logits[i] - max) * inverse_temperature : -INFINITY;
    weights[i] = x < -87.0f ? 0.0f : std::exp(x);
    sum += weights[i];
  }
  return sum;
}

}  // namespace

const VectorOps& scalar_vector_ops() {
  static const VectorOps ops{dot_f32_f16,   axpy_f16,  to_f16,      dot_rows_f16,
                             axpy_rows_f16, round_f16, softmax_f16, sampling_weights, quantize_q8_reference, quantize_q8k_reference};
  return ops;
}

const VectorOps& vector_ops() {
  static const VectorOps& ops = best_isa() == Isa::SCALAR ? scalar_vector_ops() : avx2_vector_ops();
  return ops;
}

}  // namespace tern::kernels
