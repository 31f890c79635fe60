#include "kernels/cpu/ops.h"

#include <cmath>
#include <vector>

#include "tensor/half.h"

namespace tern::kernels {

void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps) {
  double sum = 0;  // double: a 1-ulp difference here moves every value of the row
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
  if (weight != nullptr) {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale;
  }
}

void rope(float* x, int64_t head_dim, int64_t rotary_dims, int64_t pos, float freq_base, RopeStyle style) {
  const int64_t half = rotary_dims / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double theta = static_cast<double>(pos) * std::pow(static_cast<double>(freq_base), -2.0 * i / rotary_dims);
    const float c = static_cast<float>(std::cos(theta));
    const float s = static_cast<float>(std::sin(theta));
    const int64_t a = style == RopeStyle::NORM ? 2 * i : i;
    const int64_t b = style == RopeStyle::NORM ? 2 * i + 1 : i + half;
    const float x0 = x[a];
    const float x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
  }
  (void)head_dim;
}

void softmax(float* x, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inverse = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

namespace {

// GELU of every half-precision input, as llama.cpp tabulates it: inputs are rounded to F16 and looked
// up. Matching its table (not just its formula) keeps Gemma's activations alike, and is faster than tanh.
const std::vector<float>& gelu_table() {
  static const std::vector<float> table = [] {
    std::vector<float> values(65536);
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    for (uint32_t bits = 0; bits < 65536; ++bits) {
      const float x = f16_to_float(static_cast<uint16_t>(bits));
      const float gelu = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + 0.044715f * x * x)));
      values[bits] = f16_to_float(float_to_f16(gelu));
    }
    return values;
  }();
  return table;
}

}  // namespace

void gelu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const std::vector<float>& table = gelu_table();
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    if (g <= -10.0f) out[i] = 0.0f;
    else if (g >= 10.0f) out[i] = g * up[i];
    else out[i] = table[float_to_f16(g)] * up[i];
  }
}

}  // namespace tern::kernels
